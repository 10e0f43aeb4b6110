"""Timing on a device: what the benchmarks (benchmarks/bench_*.py) and ``synthrl doctor`` measure with."""

from __future__ import annotations

import time
from typing import Callable

import torch


def sync(device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously)."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def seconds_per_call(fn: Callable[[], object], calls: int, device, warmup: int = 1) -> float:
    """Wall-clock seconds per call of ``fn`` after ``warmup`` untimed calls (compilation, graph capture)."""
    for _ in range(warmup):
        fn()
    sync(device)
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    sync(device)
    return (time.perf_counter() - started) / max(1, calls)
