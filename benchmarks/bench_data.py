"""Benchmark: load a 1M-transition D4RL-format file and build both views (Q-learning and trajectories).

The file is made with random values in D4RL's v2 layout (halfcheetah-medium-v2's shape by default:
1,000,000 rows, 17-dim observations, 6-dim actions, 1000-step episodes ending in timeouts, plus
next_observations), since no D4RL file can be downloaded here and rollouts would take minutes.

    python benchmarks/bench_data.py [--rows 1000000] [--env halfcheetah] [--dir /tmp] [--gzip] [--keep]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from synthrl.data import load_dataset, write_d4rl_hdf5
from synthrl.envs import ENVS


def random_d4rl_arrays(rows: int, env: str, episode_length: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    spec = ENVS[env]
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((rows, spec.obs_dim), dtype=np.float32)
    timeouts = np.zeros(rows, bool)
    timeouts[episode_length - 1 :: episode_length] = True
    terminals = np.zeros(rows, bool)
    terminals[rng.choice(rows, size=rows // 5000, replace=False)] = True  # a few early terminations
    terminals &= ~timeouts
    return {
        "observations": obs,
        "actions": rng.uniform(-1, 1, (rows, spec.act_dim)).astype(np.float32),
        "rewards": rng.standard_normal(rows, dtype=np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
        "next_observations": np.concatenate([obs[1:], obs[-1:]]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--env", default="halfcheetah", choices=list(ENVS))
    parser.add_argument("--dir", default=None, help="where to write the file (default: a temporary directory)")
    parser.add_argument("--gzip", action="store_true", help="gzip-compress the arrays (as some shared files are)")
    parser.add_argument("--keep", action="store_true", help="keep the file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / f"{args.env}-random-1m.hdf5"
        t = time.perf_counter()
        write_d4rl_hdf5(path, random_d4rl_arrays(args.rows, args.env), {"env_id": ENVS[args.env].gym_id("v4")},
                        compression="gzip" if args.gzip else None)
        print(f"wrote {args.rows:,} rows ({path.stat().st_size / 1e6:.0f} MB{', gzip' if args.gzip else ''}) "
              f"in {time.perf_counter() - t:.2f} s")

        timings = {}
        t0 = time.perf_counter()
        dataset = load_dataset(str(path))
        timings["load + validate"] = time.perf_counter() - t0
        t = time.perf_counter()
        q = dataset.qlearning()
        timings["qlearning view"] = time.perf_counter() - t
        t = time.perf_counter()
        trajectories = dataset.trajectories()
        timings["trajectories view"] = time.perf_counter() - t
        t = time.perf_counter()
        dataset.state_mean_std()
        timings["state mean/std"] = time.perf_counter() - t
        total = time.perf_counter() - t0
        t = time.perf_counter()
        dataset.sha256
        timings["sha256 (lazy, on first use)"] = time.perf_counter() - t
        for name, seconds in timings.items():
            print(f"  {name:<28} {seconds:6.2f} s")
        print(f"load + both views + mean/std: {total:.2f} s  ({len(q['rewards']):,} transitions, "
              f"{len(trajectories):,} trajectories)")
        if args.keep:
            kept = Path.cwd() / path.name
            path.replace(kept)
            print(f"kept {kept}")


if __name__ == "__main__":
    main()
