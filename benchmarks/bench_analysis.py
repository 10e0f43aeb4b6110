"""How long `synthrl tables` / `synthrl curves` take on a paper-scale sweep (CPU only, no Ray).

A synthetic table-6-sized result: 6 variants x 12 datasets x 20 seeds x 200 evaluations (CQL:
1M updates, one evaluation per 5k) = 288k records, written once as 72 run directories (one
20-seed ensemble each, as the sweep writes them) and once as a long CSV.

    .venv/bin/python benchmarks/bench_analysis.py [--evals 200] [--seeds 20] [--curves]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import tables as T
from analysis.records import PAPER_DATASETS, read_long_csv, read_run_dirs, write_long_csv
from synthrl.rundir import RunDir

VARIANTS = ["CQL", "S=A=10", "S=A=100", "S=A=1000", "S=A=1e4", "S=A=1e5"]
COLUMNS = ["seed", "update", "normalized_score", "return", "q_loss", "cql_loss", "wall_clock_s"]


def make_results(root: Path, evals: int, seeds: int) -> int:
    rng = np.random.default_rng(0)
    rows = 0
    for v, variant in enumerate(VARIANTS):
        for dataset in PAPER_DATASETS:
            rd = RunDir(root / variant / dataset)
            rd.write_params({"algorithm": "cql", "variant": variant, "dataset": f"{dataset}-v2", "seeds": list(range(seeds)),
                             "pretrain_updates": 0 if v == 0 else 100_000, "finetune_ratio": 1.0,
                             "total_updates": evals * 5000, "config": {"eval_every": 5000}, "sweep": {"name": "bench"}})
            updates = np.arange(1, evals + 1) * 5000
            score = 80 * (1 - np.exp(-updates / 2e5))[None, :] + rng.normal(0, 5, (seeds, evals)) + v
            frame = pd.DataFrame({"seed": np.repeat(np.arange(seeds), evals), "update": np.tile(updates, seeds),
                                  "normalized_score": score.ravel(), "return": 30 * score.ravel(), "q_loss": 1.0,
                                  "cql_loss": 2.0, "wall_clock_s": np.tile(updates / 100.0, seeds)})
            rd.metrics_path.write_text(frame[COLUMNS].to_csv(index=False))
            rd.mark_done()
            rows += len(frame)
    return rows


def timed(label: str, fn, repeat: int = 3):
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    print(f"{label:<44} {best * 1000:9.1f} ms (best of {repeat})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evals", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--curves", action="store_true", help="also time the PNG figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "results"
        rows = make_results(root, args.evals, args.seeds)
        print(f"{rows} records in {len(VARIANTS) * len(PAPER_DATASETS)} run directories")
        records = timed("read run directories", lambda: read_run_dirs(root))
        csv = Path(tmp) / "long.csv"
        write_long_csv(records, csv)
        timed("read long CSV", lambda: read_long_csv(csv))
        for measure in ("final", "best", "updates-to-90", "compute"):
            table = timed(f"build table ({measure})", lambda: T.build_table(records, VARIANTS, measure))
        table = T.build_table(records, VARIANTS, "final")
        T.attach_paper(table, 6)
        for fmt in T.FORMATS:
            timed(f"render {fmt} (with the paper)", lambda: T.render(table, fmt))
        if args.curves:
            from analysis.curves import plot_curves

            figs = timed("curves (all PNGs)", lambda: plot_curves(records, Path(tmp) / "figs"), repeat=1)
            print(f"  {len(figs)} figures")


if __name__ == "__main__":
    main()
