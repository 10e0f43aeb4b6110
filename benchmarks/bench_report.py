"""How long `synthrl report --csv … --paper` takes on a paper-scale result (CPU only, no Ray).

A synthetic table-6-sized long CSV: 6 variants x 12 datasets x 20 seeds, each seed with an evaluation
every 5k updates over 1M updates (200 evaluations: 288k rows), as a real sweep would write. Timed end
to end as a user runs it (a fresh `python -m synthrl report` process: imports, reading, bootstraps,
figures, the page), plus the in-process stages.

    .venv/bin/python benchmarks/bench_report.py [--evals 200] [--seeds 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.records import PAPER_DATASETS

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ["CQL", "S=A=10", "S=A=100", "S=A=1000", "S=A=1e4", "S=A=1e5"]  # table 6's columns


def make_long_csv(path: Path, evals: int, seeds: int, datasets: list[str] = PAPER_DATASETS) -> int:
    """The long CSV (README format): a learning curve per seed rising to 60-80, variants a few points apart."""
    rng = np.random.default_rng(0)
    frames = []
    updates = np.arange(1, evals + 1) * 5000
    for v, variant in enumerate(VARIANTS):
        for d, dataset in enumerate(datasets):
            score = (60 + d + v) * (1 - np.exp(-updates / 2e5))[None, :] + rng.normal(0, 6, (seeds, evals))
            frames.append(pd.DataFrame({
                "algorithm": "cql", "variant": variant, "dataset": dataset,
                "seed": np.repeat(np.arange(seeds), evals), "update": np.tile(updates, seeds),
                "normalized_score": score.ravel(), "train_loss": np.tile(5 * np.exp(-updates / 3e5), seeds),
                "pretrain_updates": 0 if v == 0 else 100_000}))
    frame = pd.concat(frames, ignore_index=True)
    frame.to_csv(path, index=False)
    return len(frame)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evals", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "long.csv"
        rows = make_long_csv(csv, args.evals, args.seeds)
        print(f"long CSV: {len(VARIANTS)} variants x {len(PAPER_DATASETS)} datasets x {args.seeds} seeds x "
              f"{args.evals} evaluations = {rows} rows ({csv.stat().st_size / 1e6:.1f} MB)")
        out = Path(tmp) / "report.html"
        command = [sys.executable, "-m", "synthrl", "report", "--csv", str(csv), "--out", str(out), "--paper"]
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            subprocess.run(command, cwd=REPO, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        print(f"synthrl report --csv … --paper (end to end, fresh process): best {min(times):.2f} s, "
              f"median {sorted(times)[len(times) // 2]:.2f} s of {args.repeat}; page {out.stat().st_size / 1e6:.2f} MB")
        stages(csv)


def stages(csv: Path) -> None:
    """Where the time goes, in one process (imports already paid)."""
    from analysis import report as R
    from analysis.provenance import collect_provenance
    from analysis.records import load_records

    def timed(label, fn):
        start = time.perf_counter()
        value = fn()
        print(f"  {label:<40} {time.perf_counter() - start:6.2f} s")
        return value

    records = timed("read the CSV", lambda: load_records(csv=csv))
    prov = collect_provenance(csv=csv)
    chosen = timed("tables (final + best, --stats, paper)", lambda: R.choose_tables(records, True, 0))
    timed("verdicts", lambda: R._verdict_section(records, 0))
    timed("aggregate table, CI plot, profile", lambda: R._aggregate_section(chosen.tables, 0))
    timed("learning curves (average, ablation, per-dataset grids)", lambda: R._curves_section(records))
    timed("whole page (build_report)", lambda: R.build_report(records, title="bench", description="", provenance=prov,
                                                            paper=True, seed=0, running=None))


if __name__ == "__main__":
    main()
