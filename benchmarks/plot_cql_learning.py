"""Plot normalised score (and TD / CQL losses) against updates from CQL run directories' metrics.csv.

    python benchmarks/plot_cql_learning.py RUN_DIR [RUN_DIR ...] --out curve.png [--behaviour 47.5]

Each run directory is one curve (mean over its seeds, shaded min..max); prints the table it plots.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path


def read(run_dir: Path) -> dict[int, dict[str, list[float]]]:
    by_update: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(run_dir / "metrics.csv", newline="") as f:
        for row in csv.DictReader(f):
            u = int(float(row["update"]))
            for key in ("normalized_score", "q_loss", "cql_loss", "q_data"):
                if row.get(key) not in (None, ""):
                    by_update[u][key].append(float(row[key]))
    return dict(sorted(by_update.items()))


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--behaviour", type=float, default=None, help="draw the behaviour policy's normalised score")
    args = p.parse_args()
    fig, (ax_score, ax_q) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in args.runs:
        data = read(run)
        updates = list(data)
        mean = [sum(d["normalized_score"]) / len(d["normalized_score"]) for d in data.values()]
        lo = [min(d["normalized_score"]) for d in data.values()]
        hi = [max(d["normalized_score"]) for d in data.values()]
        ax_score.plot(updates, mean, label=run.name)
        ax_score.fill_between(updates, lo, hi, alpha=0.2)
        ax_q.plot(updates, [sum(d["q_data"]) / len(d["q_data"]) for d in data.values()], label=f"{run.name} Q(s,a) data")
        print(f"## {run}")
        print("| update | normalised score (mean) | min | max | TD loss | CQL loss | mean Q on data |")
        print("|---|---|---|---|---|---|---|")
        for u, d in data.items():
            n = len(d["normalized_score"])
            print(f"| {u} | {sum(d['normalized_score']) / n:.1f} | {min(d['normalized_score']):.1f} | "
                  f"{max(d['normalized_score']):.1f} | {sum(d['q_loss']) / n:.2f} | {sum(d['cql_loss']) / n:.2f} | "
                  f"{sum(d['q_data']) / n:.1f} |")
    if args.behaviour is not None:
        ax_score.axhline(args.behaviour, color="gray", ls="--", label="behaviour policy")
    ax_score.set_xlabel("updates")
    ax_score.set_ylabel("D4RL normalised score")
    ax_score.legend(fontsize=7)
    ax_q.set_xlabel("updates")
    ax_q.set_ylabel("mean Q on dataset actions")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)


if __name__ == "__main__":
    main()
