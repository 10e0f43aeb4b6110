"""Vectorised first draws of NumPy's legacy generator (``RandomState(seed)``, MT19937).

The CQL MDP reseeds the legacy global generator before every draw, so building 10^6 transitions
the straightforward way constructs 2·10^6 ``RandomState`` objects (~200 µs each). Only the first
one or two outputs of each freshly seeded generator are ever used, and those depend on just a few
words of the seeded state, so here they are computed for a whole array of seeds at once.

Bit-exact with ``numpy.random.RandomState`` (checked in tests/test_synthetic_mdp.py):
- ``mt19937_seed``: ``key[0] = seed; key[i] = 1812433253 * (key[i-1] ^ (key[i-1] >> 30)) + i``;
- the first twist regenerates ``key[i]`` from ``key[i]``, ``key[i+1]`` and ``key[i+397]``;
- outputs are tempered; ``random_sample()`` = ``((a >> 5) * 2**26 + (b >> 6)) / 2**53`` of two outputs;
- ``randint(0, n)`` is masked rejection on 32-bit outputs: ``(x & mask) <= n - 1``.
"""

from __future__ import annotations

import numpy as np

_N_SHIFT = 397  # MT19937's "M"
_MATRIX_A = np.uint32(0x9908B0DF)
_UPPER = np.uint32(0x80000000)
_LOWER = np.uint32(0x7FFFFFFF)


def first_outputs(seeds: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` (≤ 227) 32-bit outputs of ``RandomState(seed)`` for every seed: uint32 [N, count]."""
    seeds = np.asarray(seeds)
    if seeds.size and (seeds.min() < 0 or seeds.max() > 0xFFFFFFFF):
        raise ValueError("legacy seeds must lie in [0, 2**32)")
    if not 1 <= count <= 227:
        raise ValueError("count must be in [1, 227]")
    key = seeds.astype(np.uint32).ravel().copy()
    head = np.empty((count + 1, key.size), np.uint32)  # key[0 .. count]
    tail = np.empty((count, key.size), np.uint32)  # key[397 .. 397 + count - 1]
    head[0] = key
    mult = np.uint32(1812433253)
    shifted = np.empty_like(key)
    with np.errstate(over="ignore"):
        for pos in range(1, _N_SHIFT + count):
            np.right_shift(key, 30, out=shifted)
            np.bitwise_xor(key, shifted, out=key)
            np.multiply(key, mult, out=key)  # uint32 arithmetic wraps mod 2**32, as in C
            np.add(key, np.uint32(pos), out=key)
            if pos <= count:
                head[pos] = key
            if pos >= _N_SHIFT:
                tail[pos - _N_SHIFT] = key
    out = np.empty((key.size, count), np.uint32)
    for i in range(count):
        y = (head[i] & _UPPER) | (head[i + 1] & _LOWER)
        x = tail[i] ^ (y >> np.uint32(1)) ^ np.where(y & np.uint32(1), _MATRIX_A, np.uint32(0))
        # tempering
        x ^= x >> np.uint32(11)
        x ^= (x << np.uint32(7)) & np.uint32(0x9D2C5680)
        x ^= (x << np.uint32(15)) & np.uint32(0xEFC60000)
        x ^= x >> np.uint32(18)
        out[:, i] = x
    return out.reshape(*seeds.shape, count)


def first_random_sample(seeds: np.ndarray) -> np.ndarray:
    """``RandomState(seed).random_sample()`` for every seed: float64, same shape as ``seeds``."""
    words = first_outputs(seeds, 2)
    a = (words[..., 0] >> np.uint32(5)).astype(np.float64)
    b = (words[..., 1] >> np.uint32(6)).astype(np.float64)
    return (a * 67108864.0 + b) / 9007199254740992.0


def first_randint(seeds: np.ndarray, high: int, draws: int | None = None) -> np.ndarray:
    """``RandomState(seed).randint(high)`` (= ``randint(0, high)``) for every seed: int64.

    Legacy ``randint`` masks 32-bit outputs to the smallest ``2**k - 1 >= high - 1`` and rejects values
    above ``high - 1``; a seed that needs more than ``draws`` outputs falls back to a real
    ``RandomState`` (by default ``draws`` makes that happen with probability ≤ 1e-7 per seed).
    """
    seeds = np.asarray(seeds)
    if not 1 <= high <= 2**32:
        raise ValueError("high must be in [1, 2**32]")
    if high == 1:
        return np.zeros(seeds.shape, np.int64)
    limit = high - 1
    mask = (1 << int(limit).bit_length()) - 1
    if limit == 0xFFFFFFFF:  # the full 32-bit range: the first output as it is
        return first_outputs(seeds, 1)[..., 0].astype(np.int64)
    if draws is None:
        reject = 1.0 - high / (mask + 1)
        draws = 1 if reject <= 0 else int(np.clip(np.ceil(np.log(1e-7) / np.log(reject)), 1, 32))
    words = first_outputs(seeds, draws).astype(np.int64) & mask
    accepted = words <= limit
    first = np.argmax(accepted, axis=-1)
    result = np.take_along_axis(words, first[..., None], axis=-1)[..., 0]
    missing = ~accepted.any(axis=-1)
    generator = np.random.RandomState()
    for index in zip(*np.nonzero(missing)):
        generator.seed(int(seeds[index]))
        result[index] = generator.randint(high)
    return result.astype(np.int64)
