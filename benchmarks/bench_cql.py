"""CQL throughput: seed-updates/s of the batched ensemble, with and without the evaluation schedule.

    python benchmarks/bench_cql.py                        # cuda if visible: E in 1,20,40, HalfCheetah dims
    python benchmarks/bench_cql.py --device cpu --members 1,2 --updates 20 --eval-episodes 2

Training uses random in-memory data with the task's dims (speed does not depend on the values).
"with eval" adds one real evaluation (gymnasium env, eval_episodes per member, <= 1000 steps)
per --eval-every updates: rate = updates / (train time + evaluations x time of one evaluation).
"overlapped" evaluates a snapshot in the background thread while training goes on (what
`synthrl run cql` does on CUDA): the interval then takes max(evaluation, training slowed by it).
Also times forward-dynamics pre-training. Prints one line per setting and the peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from synthrl.cql.algorithm import CQLEnsemble, LossSettings, MemberInit
from synthrl.envs import get_spec
from synthrl.utils.timing import sync


def random_data(n: int, obs_dim: int, act_dim: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
            "actions": rng.uniform(-0.999, 0.999, (n, act_dim)).astype(np.float32),
            "next_observations": rng.normal(size=(n, obs_dim)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "terminals": (rng.random(n) < 0.01).astype(np.float32)}


def bench_train(E: int, args, data) -> dict:
    device = args.device
    ens = CQLEnsemble([data], [MemberInit(seed=s, dataset=0) for s in range(E)], hidden=args.hidden,
                      batch_size=args.batch, loss=LossSettings(n_actions=args.n_actions), rng_chunk=args.rng_chunk,
                      device=device, accel=args.accel)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    ens.train(args.warmup)  # includes CUDA graph capture
    sync(device)
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    ens.train(args.updates)
    sync(device)
    train_s = time.perf_counter() - started
    stats = ens.pop_stats()
    out = {"members": E, "updates": args.updates, "train_s": round(train_s, 3), "warmup_s": round(warm_s, 3),
           "updates_per_s": round(args.updates / train_s, 2),
           "seed_updates_per_s": round(E * args.updates / train_s, 1),
           "graph": ens._graph is not None, "finite": bool(np.isfinite(stats["q_loss"]).all())}
    if device.startswith("cuda"):
        out["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    if args.eval_episodes > 0:
        from synthrl.cql.runner import EnsemblePolicy
        from synthrl.envs import evaluate

        evaluate(args.env, EnsemblePolicy(ens, args.eval_episodes), list(range(E)), args.eval_episodes, 0)  # start workers
        started = time.perf_counter()
        result = evaluate(args.env, EnsemblePolicy(ens, args.eval_episodes), list(range(E)), args.eval_episodes, 1)
        eval_s = time.perf_counter() - started
        per_update_s = train_s / args.updates
        with_eval = args.eval_every / (args.eval_every * per_update_s + eval_s)
        out.update({"eval_s": round(eval_s, 3), "eval_env_steps": int(result.lengths.sum()),
                    "eval_every": args.eval_every, "seed_updates_per_s_with_eval": round(E * with_eval, 1)})
        out.update(bench_overlap(ens, E, args, per_update_s))
    return out


def bench_overlap(ens: CQLEnsemble, E: int, args, per_update_s: float) -> dict:
    """Train while one evaluation of a snapshot runs in the background; project the schedule's rate."""
    from synthrl.cql.runner import EnsemblePolicy, PolicySnapshot
    from synthrl.envs import evaluate_async

    started = time.perf_counter()
    future = evaluate_async(args.env, EnsemblePolicy(PolicySnapshot(ens), args.eval_episodes), list(range(E)),
                            args.eval_episodes, 2)
    during = 0
    while not future.done():
        ens.train(args.rng_chunk)
        during += args.rng_chunk
    sync(args.device)
    eval_s = time.perf_counter() - started
    future.result()
    rate_during = during / eval_s  # updates/s while the evaluation runs
    if rate_during * eval_s >= args.eval_every:
        interval_s = max(eval_s, args.eval_every / rate_during)
    else:
        interval_s = eval_s + (args.eval_every - rate_during * eval_s) * per_update_s
    return {"overlap_eval_s": round(eval_s, 3), "overlap_updates_during_eval": during,
            "seed_updates_per_s_with_overlapped_eval": round(E * args.eval_every / interval_s, 1)}


def bench_pretrain(args, obs_dim: int, act_dim: int) -> dict:
    from types import SimpleNamespace

    from synthrl.cql.pretrain import pretrain_q_networks

    rng = np.random.default_rng(0)
    n = 100_000
    data = SimpleNamespace(state_table=(2 * rng.random((100, obs_dim)) - 1).astype(np.float32),
                           action_table=(2 * rng.random((100, act_dim)) - 1).astype(np.float32),
                           obs=rng.integers(0, 100, n), act=rng.integers(0, 100, n),
                           target_obs=rng.integers(0, 100, n), target_act=None)
    pretrain_q_networks(data, obs_dim, act_dim, updates=min(50, args.pretrain_updates), hidden=args.hidden,
                        device=args.device, accel=args.accel)  # warm-up (allocations, capture)
    sync(args.device)
    started = time.perf_counter()
    _, _, curve = pretrain_q_networks(data, obs_dim, act_dim, updates=args.pretrain_updates, hidden=args.hidden,
                                      device=args.device, accel=args.accel, log_every=args.pretrain_updates)
    sync(args.device)
    seconds = time.perf_counter() - started
    return {"pretrain_updates": args.pretrain_updates, "pretrain_s": round(seconds, 3),
            "pretrain_updates_per_s": round(args.pretrain_updates / seconds, 1),
            "projected_100k_s": round(100_000 * seconds / args.pretrain_updates, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--env", default="halfcheetah", help="dims (and evaluation env) of this task")
    p.add_argument("--members", default="1,20,40", help="ensemble sizes E")
    p.add_argument("--updates", type=int, default=2000)
    p.add_argument("--warmup", type=int, default=64)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--n-actions", type=int, default=3)
    p.add_argument("--rng-chunk", type=int, default=64)
    p.add_argument("--accel", default="auto", choices=("auto", "eager", "graph"))
    p.add_argument("--matmul-precision", default="highest", choices=("highest", "high", "medium"),
                   help="torch.set_float32_matmul_precision (high = TF32 on CUDA)")
    p.add_argument("--eval-episodes", type=int, default=10, help="0: skip the evaluation timing")
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--pretrain-updates", type=int, default=2000, help="0: skip pre-training timing")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--json", action="store_true", help="print JSON lines only")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)
    spec = get_spec(args.env)
    data = random_data(100_000, spec.obs_dim, spec.act_dim)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu x{torch.get_num_threads()} threads"
    header = {"device": device_name, "env": spec.name, "obs_dim": spec.obs_dim, "act_dim": spec.act_dim,
              "batch": args.batch, "n_actions": args.n_actions, "matmul_precision": args.matmul_precision,
              "torch": torch.__version__}
    print(json.dumps(header))
    for E in [int(x) for x in args.members.split(",")]:
        print(json.dumps(bench_train(E, args, data)), flush=True)
    if args.pretrain_updates > 0:
        print(json.dumps(bench_pretrain(args, spec.obs_dim, spec.act_dim)), flush=True)


if __name__ == "__main__":
    main()
