"""IQL learning check: one IQL run (optionally pre-trained) into a run directory, on the CPU.

    OMP_NUM_THREADS=1 python benchmarks/learn_iql.py --dataset ../shared/data/hopper-medium-sac-200k.hdf5 \
        --out /tmp/iql_learn --updates 150000 --eval-every 5000 --eval-episodes 10 --seeds 0 --threads 1

The same run directory as ``synthrl run iql`` (params.json, metrics.csv, checkpoint/, DONE); run it
again with --resume to continue a stopped one. Prints each evaluation's mean normalised score;
plot with benchmarks/plot_learning.py.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True, help="D4RL name or D4RL-format HDF5 file")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--updates", type=int, default=150_000)
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seeds", default="0", help="0-3 or 0,3,7")
    p.add_argument("--pretrain", default="none", help="none | mdp | iid | identity | mapping")
    p.add_argument("--beta", type=float, default=3.0, help="advantage inverse temperature (0: plain behaviour cloning)")
    p.add_argument("--expectile", type=float, default=0.7)
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from synthrl.iql import IQLConfig, make_runner, run_params
    from synthrl.rundir import RunDir
    from synthrl.runner import drive
    from synthrl.store import ArtifactStore
    from synthrl.utils.io import parse_seeds

    config = IQLConfig(dataset=args.dataset, seeds=parse_seeds(args.seeds), updates=args.updates,
                       eval_every=args.eval_every, eval_episodes=args.eval_episodes, pretrain=args.pretrain,
                       beta=args.beta, expectile=args.expectile, device="cpu").validate()
    run_dir = RunDir(args.out)
    params = run_params(config)
    runner = make_runner(config, ArtifactStore(), progress=False)
    params["fast_path"] = runner.fast_path
    if not args.resume:
        run_dir.write_params(params)
    started = time.perf_counter()

    def report(rows):
        scores = [r["normalized_score"] for r in rows]
        print(f"update {rows[0]['update']:>7}: normalised score {sum(scores) / len(scores):6.1f} "
              f"({time.perf_counter() - started:7.0f} s)", flush=True)

    drive(runner, run_dir, resume=args.resume, progress=False, on_eval=report, desc=config.variant)


if __name__ == "__main__":
    main()
