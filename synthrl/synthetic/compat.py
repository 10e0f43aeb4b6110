"""Reference-compatible token streams ("compat" mode, spec: synthetic-data.md 1.2 and 1.3).

The reference generator works in iterations; in iteration ``i`` each of ``W`` workers makes ``b``
sequences, and position ``t`` of worker ``w`` draws from a fresh ``numpy.random.default_rng(σ +
i·L·W + W·t + w)``: position 0 with ``rng.choice(M, size=b, p=p0)``, later positions with
``rng.multinomial(1, P).argmax(1)`` over the b rows of the sequences' contexts (one call draws the
rows one after another from that stream). This module calls those NumPy functions themselves, so
the tokens equal the reference's bit for bit; it is single-threaded NumPy (≈ 0.3 M tokens/s at
M = 100: the sequential-binomial multinomial costs O(M) per token), meant for reproducing the
reference's exact datasets at small M, not for the GPU pre-training loop (``token_source`` is).

IID uniform tokens (1.3): in iteration ``i`` worker ``w`` draws its whole ``b × L`` block from one fresh
``default_rng(σ + i·W + w)`` as ``rng.multinomial(1, [1/M]·M, size=(b, L)).argmax(-1)``.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import numpy as np

from synthrl.errors import UserError
from synthrl.synthetic.chain_rows import DEFAULT_SEED, check_chain_params, first_token_row, mc_row, softmax64
from synthrl.synthetic.tokens import SEQUENCE_LENGTH

# n = 1 rows are tabulated once up to this M (float64 M x M: 128 MiB at 4096); above, rows are cached
TABLE_MAX_STATES = 4096
ROW_CACHE_ROWS = 65_536


def compat_seed(seed: int, iteration: int, position: int, worker: int, workers: int, length: int) -> int:
    """The reference's stream seed for (iteration, position, worker): σ + i·L·W + W·t + w."""
    return seed + iteration * length * workers + workers * position + worker


class _Rows:
    """Reference rows of contexts (tuples, oldest first), tabulated for small n = 1 chains, else LRU-cached."""

    def __init__(self, states: int, order: int, temperature: float, seed: int):
        self.states, self.order, self.temperature, self.seed = states, order, temperature, seed
        self.table = None
        if order == 1 and states <= TABLE_MAX_STATES:
            logits = np.stack([np.random.default_rng(s + 1 + seed).random(states) for s in range(states)])
            self.table = softmax64(logits, temperature)
        self.cache: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def __call__(self, contexts: np.ndarray) -> np.ndarray:
        """contexts int [b, k] -> rows float64 [b, M]."""
        if self.table is not None:
            return self.table[contexts[:, -1]]
        out = np.empty((len(contexts), self.states))
        for j, ctx in enumerate(map(tuple, contexts.tolist())):
            row = self.cache.get(ctx)
            if row is None:
                row = mc_row(ctx, self.states, self.temperature, self.seed)
                self.cache[ctx] = row
                if len(self.cache) > ROW_CACHE_ROWS:
                    self.cache.popitem(last=False)
            else:
                self.cache.move_to_end(ctx)
            out[j] = row
        return out


def check_layout(workers, rows_per_worker, iterations, length) -> None:
    """The reference's work layout: positive integers, named when not."""
    for name, value in (("workers", workers), ("rows_per_worker", rows_per_worker), ("iterations", iterations),
                        ("length", length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UserError(f"{name}: expected a positive integer, got {value!r}")


def compat_mc_tokens(states: int = 100, order: int = 1, temperature: float = 1.0, seed: int = DEFAULT_SEED, *,
                     workers: int = 1, rows_per_worker: int = 1, iterations: int = 1,
                     length: int = SEQUENCE_LENGTH,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
    """The reference's token sequences, int64 [iterations · workers · rows_per_worker, length].

    Sequence order: iteration, then worker, then the worker's row. ``progress(n)`` is called with
    the number of sequences finished after each (iteration, worker).
    """
    check_chain_params(states, order, temperature, seed)
    check_layout(workers, rows_per_worker, iterations, length)
    b, L, W = int(rows_per_worker), int(length), int(workers)
    first = first_token_row(states, temperature, seed)
    rows = _Rows(states, order, temperature, seed)
    out = np.empty((iterations, W, b, L), np.int64)
    for i in range(iterations):
        for w in range(W):
            seq = out[i, w]
            for t in range(L):
                rng = np.random.default_rng(compat_seed(seed, i, t, w, W, L))
                if t == 0:
                    seq[:, 0] = rng.choice(states, size=b, p=first)
                else:
                    seq[:, t] = rng.multinomial(1, rows(seq[:, max(0, t - order):t])).argmax(1)
            if progress is not None:
                progress(b)
    return out.reshape(iterations * W * b, L)


def compat_iid_seed(seed: int, iteration: int, worker: int, workers: int) -> int:
    """The reference's IID stream seed for (iteration, worker): σ + i·W + w."""
    return seed + iteration * workers + worker


def compat_iid_tokens(states: int = 100, seed: int = DEFAULT_SEED, *, workers: int = 1, rows_per_worker: int = 1,
                      iterations: int = 1, length: int = SEQUENCE_LENGTH,
                      progress: Callable[[int], None] | None = None) -> np.ndarray:
    """The reference's IID uniform token sequences, int64 [iterations · workers · rows_per_worker, length].

    Sequence order: iteration, then worker, then the worker's row; ``progress(n)`` as for compat_mc_tokens.
    """
    check_chain_params(states, seed=seed)
    check_layout(workers, rows_per_worker, iterations, length)
    b, L, W = int(rows_per_worker), int(length), int(workers)
    uniform = [1.0 / states] * states
    out = np.empty((iterations, W, b, L), np.int64)
    for i in range(iterations):
        for w in range(W):
            rng = np.random.default_rng(compat_iid_seed(seed, i, w, W))
            out[i, w] = rng.multinomial(1, uniform, size=(b, L)).argmax(-1)
            if progress is not None:
                progress(b)
    return out.reshape(iterations * W * b, L)
