"""Plot normalised score against updates from CQL, IQL or DT run directories (their metrics.csv).

    python benchmarks/plot_learning.py RUN_DIR|metrics.csv [...] --out curve.png [--behaviour 47.5]

Each run is one curve (mean over its seeds, shaded min..max). The right panel shows the mean Q on
dataset actions (CQL, IQL), or DT's training loss. Prints the table it plots (markdown), with the
loss columns the run's metrics have.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

COLUMNS = ("normalized_score", "q_loss", "cql_loss", "v_loss", "policy_loss", "q_data", "v_data", "train_loss")
Q_LEARNING_COLUMNS = ("q_loss", "cql_loss", "v_loss", "q_data")  # the table's, where the run has them


def read(path: Path) -> dict[int, dict[str, list[float]]]:
    by_update: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(path / "metrics.csv" if path.is_dir() else path, newline="") as f:
        for row in csv.DictReader(f):
            u = int(float(row["update"]))
            for key in COLUMNS:
                if row.get(key) not in (None, ""):
                    by_update[u][key].append(float(row[key]))
    return dict(sorted(by_update.items()))


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def extra_columns(data: dict[int, dict[str, list[float]]]) -> tuple[str, ...]:
    """The loss columns every evaluation of the run has; the last one is the right panel's."""
    q_learning = tuple(k for k in Q_LEARNING_COLUMNS if all(k in d for d in data.values()))
    return q_learning if "q_data" in q_learning else ("train_loss",)


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--labels", help="comma-separated curve labels (default: the run names)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--behaviour", type=float, default=None, help="draw the behaviour policy's normalised score")
    args = p.parse_args()
    labels = args.labels.split(",") if args.labels else [r.stem if r.is_file() else r.name for r in args.runs]
    fig, (ax_score, ax_right) = plt.subplots(1, 2, figsize=(10, 3.6))
    axes_for: dict[str, object] = {}  # right panel: CQL's mean Q and DT's loss, each on its own y-axis
    for run, label in zip(args.runs, labels):
        data = read(run)
        updates = list(data)
        scores = [d["normalized_score"] for d in data.values()]
        ax_score.plot(updates, [mean(s) for s in scores], label=label)
        ax_score.fill_between(updates, [min(s) for s in scores], [max(s) for s in scores], alpha=0.2)
        extra = extra_columns(data)
        kind = "mean Q on dataset actions" if extra[-1] == "q_data" else "training loss (DT)"
        if kind not in axes_for:
            axes_for[kind] = ax_right if not axes_for else ax_right.twinx()
            axes_for[kind].set_ylabel(kind, fontsize=8)
        axes_for[kind].plot(updates, [mean(d[extra[-1]]) for d in data.values()], label=label,
                            color=ax_score.lines[-1].get_color())
        print(f"## {label} ({run})")
        print("| update | normalised score (mean) | min | max | " + " | ".join(extra) + " |")
        print("|---" * (4 + len(extra)) + "|")
        for u, d in data.items():
            s = d["normalized_score"]
            print(f"| {u} | {mean(s):.1f} | {min(s):.1f} | {max(s):.1f} | "
                  + " | ".join(f"{mean(d[k]):.3g}" for k in extra) + " |")
    if args.behaviour is not None:
        ax_score.axhline(args.behaviour, color="gray", ls="--", label="behaviour policy")
    ax_score.set_xlabel("updates")
    ax_score.set_ylabel("D4RL normalised score")
    ax_score.legend(fontsize=7)
    ax_right.set_xlabel("updates")
    ax_right.legend(handles=[line for a in axes_for.values() for line in a.lines], fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)


if __name__ == "__main__":
    main()
