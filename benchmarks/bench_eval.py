"""Benchmark: one evaluation round of a 20-seed ensemble, 200 HalfCheetah episodes x 1000 steps.

A 2x256 MLP policy (obs -> 256 -> 256 -> act, tanh) is called once per step on the whole batch; the
environments step in persistent worker processes. Reports the cold round (worker start-up included)
and warm rounds (what a training run pays per evaluation), env-steps/s and the worker count.

    python benchmarks/bench_eval.py [--env halfcheetah] [--seeds 20] [--episodes 10] [--workers N] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from synthrl.envs import ENVS, close_pools, evaluate
from synthrl.envs.evaluate import default_workers, get_pool
from synthrl.envs.policies import TorchPolicy


def mlp(obs_dim: int, act_dim: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(obs_dim, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, act_dim), torch.nn.Tanh(),
    )


def per_env_cpu_speed(envs: int = 10, steps: int = 300) -> None:
    """Steps per CPU-second of the evaluator's own stepping (_EnvSlice), random actions, no policy."""
    import numpy as np

    from synthrl.envs.evaluate import _EnvSlice

    rng = np.random.default_rng(0)
    for name, spec in ENVS.items():
        batch = _EnvSlice(name, "v4")
        batch.reset(list(range(envs)))
        done_steps, cpu = 0, time.process_time()
        for _ in range(steps):
            if not batch.active.any():
                batch.reset(list(rng.integers(0, 2**31 - 1, size=envs)))
            done_steps += int(batch.active.sum())
            batch.step(rng.uniform(-1, 1, (envs, spec.act_dim)).astype(np.float32))
        cpu = time.process_time() - cpu
        print(f"{spec.gym_id('v4'):<16} {done_steps / cpu:8,.0f} env-steps per CPU-second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="halfcheetah", choices=list(ENVS))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=2, help="warm rounds after the cold one")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in the parent (policy)")
    parser.add_argument("--per-env", action="store_true",
                        help="instead: env steps per CPU-second of each environment, in this process")
    args = parser.parse_args()
    if args.per_env:
        per_env_cpu_speed()
        return

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    torch.manual_seed(0)
    spec = ENVS[args.env]
    policy = TorchPolicy(mlp(spec.obs_dim, spec.act_dim), device=args.device)
    seeds = list(range(args.seeds))
    batch = args.seeds * args.episodes
    workers = default_workers(batch) if args.workers is None else args.workers
    print(f"{args.env}: {args.seeds} seeds x {args.episodes} episodes = {batch} envs, workers={workers}, "
          f"policy 2x256 MLP on {args.device}, cpus={os.cpu_count()}")
    pool = get_pool(args.env, "v4", workers)
    pool.cpu_seconds()  # waits until every worker has started
    print(f"worker start-up: {time.perf_counter() - started:.2f} s")
    for i in range(1 + args.rounds):
        worker_cpu, parent_cpu = pool.cpu_seconds(), time.process_time()
        started = time.perf_counter()
        result = evaluate(args.env, policy, seeds, args.episodes, eval_index=i, workers=workers)
        wall = time.perf_counter() - started
        worker_cpu, parent_cpu = pool.cpu_seconds() - worker_cpu, time.process_time() - parent_cpu
        label = "after worker start" if i == 0 else "warm"
        print(f"round {i} {label}: {wall:.2f} s wall, {result.env_steps} env steps, "
              f"{result.env_steps / wall:,.0f} env-steps/s; CPU s: workers {worker_cpu:.2f} "
              f"({result.env_steps / max(worker_cpu, 1e-9):,.0f} steps per worker-CPU-s), parent {parent_cpu:.2f}; "
              f"mean return {result.returns.mean():.1f}, {result.env_id}")
    close_pools()


if __name__ == "__main__":
    main()
