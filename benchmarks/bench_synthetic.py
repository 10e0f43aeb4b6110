"""Speed of the synthetic data generators (issue 2's targets).

- CQL MDP: the default dataset (10^6 transitions, S = A = 100) on one CPU thread; target <= 5 s.
- DT tokens: tokens/s of ``token_source("mc", ...).sample(64, generator)`` (one pre-training step,
  65,536 tokens) for M = 100 and M = 100,000 on the CPU and, when present, on CUDA; targets on the
  GPU machine: >= 50 M tokens/s (M = 100) and >= 20 M tokens/s (M = 100,000).

Usage::

    python benchmarks/bench_synthetic.py                 # everything, cpu (+ cuda when present)
    python benchmarks/bench_synthetic.py --skip-mdp --states 100 1000 --samplers loop blocked
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import torch

from synthrl.synthetic import mdp_dataset
from synthrl.synthetic.tokens import MarkovTokens


def bench_mdp(repeats: int, **kwargs) -> tuple[float, float]:
    """Best wall-clock and best process-CPU seconds (CPU time is the fairer number on a shared machine)."""
    best, best_cpu = math.inf, math.inf
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        mdp_dataset(**kwargs)
        best, best_cpu = min(best, time.perf_counter() - start), min(best_cpu, time.process_time() - cpu)
    return best, best_cpu


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_tokens(states: int, device: str, sampler: str, batch: int, seconds: float, temperature: float = 1.0,
                 order: int = 1):
    dev = torch.device(device)
    start = time.perf_counter()
    source = MarkovTokens(states, order=order, temperature=temperature, device=dev, sampler=sampler)
    _sync(dev)
    build = time.perf_counter() - start
    generator = torch.Generator(device=dev).manual_seed(0)
    source.sample(batch, generator)  # warm-up (allocator, kernels)
    _sync(dev)
    calls, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        source.sample(batch, generator)
        calls += 1
        _sync(dev)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 2:
            break
    cpu = time.process_time() - cpu
    tokens = calls * batch * source.length
    return source.metadata(), build, tokens / elapsed, elapsed / calls, tokens / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when present")
    parser.add_argument("--states", nargs="+", type=int, default=[100, 100_000])
    parser.add_argument("--samplers", nargs="+", default=["auto"], help="auto, loop, blocked")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per token measurement")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: one core)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--order", type=int, default=1)
    parser.add_argument("--skip-mdp", action="store_true")
    parser.add_argument("--mdp-repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"# torch {torch.__version__}, {args.threads} CPU thread(s), {platform.processor() or platform.machine()}, "
          f"GPU: {gpu}")
    if not args.skip_mdp:
        for label, kwargs in (("default (tau 1, 1)", {}),
                              ("inf temperatures", dict(policy_temperature=math.inf, transition_temperature=math.inf)),
                              ("random start, tau 0.1", dict(random_start=True, policy_temperature=0.1,
                                                             transition_temperature=0.1))):
            seconds, cpu = bench_mdp(args.mdp_repeats, **kwargs)
            print(f"mdp 10^6 transitions S=A=100, {label}: {seconds:.2f} s wall, {cpu:.2f} s CPU "
                  f"(best of {args.mdp_repeats}, target <= 5 s)")
    print("| device | M | n | tau | row source | sampler | build s | ms / sample(64) | M tokens/s (wall) "
          "| M tokens/s (process CPU time) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for device in devices:
        for states in args.states:
            for sampler in args.samplers:
                try:
                    meta, build, rate, per_call, cpu_rate = bench_tokens(
                        states, device, sampler, args.batch, args.seconds, args.temperature, args.order)
                except Exception as e:  # a sampler that does not apply (blocked for large M)
                    print(f"| {device} | {states} | {args.order} | {args.temperature} | - | {sampler} | - | - | "
                          f"n/a: {e} | |")
                    continue
                print(f"| {device} | {states} | {args.order} | {args.temperature} | {meta['row_source']} | "
                      f"{meta['sampler']} | {build:.2f} | {per_call * 1e3:.1f} | {rate / 1e6:.2f} | "
                      f"{cpu_rate / 1e6:.2f} |")


if __name__ == "__main__":
    main()
