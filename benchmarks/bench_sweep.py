"""Sweep-service overheads: validating + planning every sweep file, and (with --ray) the wall time of a
tiny sweep on local Ray, i.e. what the service adds around the science (Ray start, stage 1 tasks,
Tune trial start-up, checkpoints per evaluation).

    python benchmarks/bench_sweep.py            # plan timings only
    python benchmarks/bench_sweep.py --ray      # + a 4-trial tiny CQL sweep on local Ray (2 CPUs)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def bench_plans() -> None:
    from synthrl.sweep.plan import make_plan
    from synthrl.sweep.schema import load_sweeps

    total_trials = 0
    started = time.perf_counter()
    for path in sorted((REPO / "sweeps").glob("*.yaml")):
        t0 = time.perf_counter()
        plans = [make_plan(s) for s in load_sweeps(path)]
        trials = sum(len(p.trials) for p in plans)
        total_trials += trials
        hours = sum(p.gpu_hours for p in plans)
        print(f"{path.name:32s} {trials:5d} trials {sum(len(p.artifacts) for p in plans):3d} artifacts "
              f"{hours:7.1f} GPU-h  planned in {1000 * (time.perf_counter() - t0):6.1f} ms")
    print(f"all sweep files: {total_trials} trials planned in {time.perf_counter() - started:.2f} s")


def bench_ray(trials: int, updates: int, reuse: bool) -> None:
    import ray

    import trainables.launcher as launcher

    launcher.REUSE_ACTORS = reuse
    from synthrl.sweep.schema import sweep_from_dict
    from trainables.launcher import run_sweep

    doc = {
        "name": "bench", "algorithm": "cql",
        "datasets": [{"name": "hopper-bench", "make": {"env": "hopper", "policy": "random", "steps": 600}}],
        "seeds": f"0-{trials - 1}", "seeds_per_trial": 1,
        "finetune": {"updates": updates, "eval_every": updates, "eval_episodes": 1,
                     "config": {"hidden": 32, "batch_size": 32}},
        "resources": {"cpus_per_trial": 1, "max_failures": 0},
        "variants": [{"name": "CQL"}],
    }
    with tempfile.TemporaryDirectory() as storage:
        t0 = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
        t_init = time.perf_counter() - t0
        try:
            t1 = time.perf_counter()
            code = run_sweep(sweep_from_dict(doc, "bench"), doc, {}, Path(storage), dashboard=False,
                             out=lambda _: None)
            t_sweep = time.perf_counter() - t1
        finally:
            ray.shutdown()
    print(f"ray.init (2 CPUs, no dashboard): {t_init:.1f} s")
    print(f"tiny sweep (reuse_actors={reuse}), {trials} trials x {updates} CQL updates + 1 evaluation, 2 at a time: "
          f"{t_sweep:.1f} s "
          f"(exit {code}); {t_sweep / trials * 2:.1f} s per trial slot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray", action="store_true")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--updates", type=int, default=20)
    parser.add_argument("--no-reuse", action="store_true", help="a fresh worker process per trial")
    args = parser.parse_args()
    bench_plans()
    if args.ray:
        bench_ray(args.trials, args.updates, reuse=not args.no_reuse)


if __name__ == "__main__":
    main()
