"""benchmarks/plot_learning.py on the metrics.csv columns of each algorithm (CQL, IQL, DT)."""

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="plot_learning.py draws with matplotlib, which is not installed")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "plot_learning.py"
LOSSES = {"cql": ("q_loss", "cql_loss", "policy_loss", "alpha", "q_data"),
          "iql": ("q_loss", "v_loss", "policy_loss", "q_data", "v_data"),
          "dt": ("train_loss",)}


def plot_learning():
    spec = importlib.util.spec_from_file_location("plot_learning", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_metrics(path: Path, losses: tuple[str, ...], seeds=(0, 1)) -> Path:
    path.mkdir(parents=True)
    columns = ["seed", "update", "normalized_score", *losses]
    with open(path / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for update in (1000, 2000, 3000):
            for seed in seeds:
                writer.writerow({"seed": seed, "update": update, "normalized_score": update / 100 + seed,
                                 **{k: 1.0 + seed + update / 1000 for k in losses}})
    return path


@pytest.mark.parametrize("algorithm", sorted(LOSSES))
def test_plots_and_tabulates_each_algorithm(tmp_path, monkeypatch, capsys, algorithm):
    run = write_metrics(tmp_path / algorithm, LOSSES[algorithm])
    out = tmp_path / "curve.png"
    monkeypatch.setattr(sys, "argv", ["plot_learning.py", str(run), "--out", str(out), "--behaviour", "47.5"])
    plot_learning().main()
    assert out.stat().st_size > 0
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("| update"))
    expected = {"cql": ["q_loss", "cql_loss", "q_data"], "iql": ["q_loss", "v_loss", "q_data"], "dt": ["train_loss"]}
    assert header.split("|")[5:-1] == [f" {k} " for k in expected[algorithm]]
    # the row of update 2000: mean over the seeds 0 and 1 of score 20 + seed, min 20, max 21
    assert "| 2000 | 20.5 | 20.0 | 21.0 |" in table


def test_iql_and_cql_runs_side_by_side(tmp_path, monkeypatch):
    runs = [write_metrics(tmp_path / a, LOSSES[a]) for a in ("cql", "iql", "dt")]
    out = tmp_path / "both.png"
    monkeypatch.setattr(sys, "argv", ["plot_learning.py", *map(str, runs), "--labels", "CQL,IQL,DT", "--out", str(out)])
    plot_learning().main()
    assert out.stat().st_size > 0
