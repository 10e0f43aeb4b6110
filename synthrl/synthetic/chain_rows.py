"""Markov-chain rows for DT pre-training tokens (spec: synthetic-data.md section 1); the samplers that
draw from them are synthrl/synthetic/tokens.py.

Markov-chain rows are defined reference-exactly by ``mc_row`` / ``first_token_row``. The sampler
(``token_source("mc", ...)``) draws from them on the source's device with a ``torch.Generator``:

Row sources (recorded as ``row_source`` in the metadata)
- ``"reference"``: the exact rows, when all of them fit as a device table (every context of length
  1..n, at most ``REFERENCE_MAX_ENTRIES`` probabilities; n = 1 and M <= 10^4 always fit). Each row's
  float64 cdf is stored as integers ``round(cdf · 2^40)`` with the row index in the high bits, so a
  single ``searchsorted`` over one flat sorted table samples every sequence's next token at once
  (probabilities exact to 2^-40).
- ``"counter-hash-v1"``: for larger M or n, rows are never stored. The logit of token ``i`` after
  context ``c`` is a counter-based hash -> U[0,1) (24 bits) of a 64-bit row key and ``i``; the key
  codes the context exactly while (M + 1)^n < 2^62 (so distinct contexts never share a row) and is a
  64-bit hash chain beyond: i.i.d. U[0,1) logits per context, the same distribution as the reference,
  not the same numbers. A token is drawn either from the whole row (M <= ``FULL_ROW_MAX``: Gumbel-max,
  ``argmax(x/τ + g)``) or by rejection: propose ``i`` uniformly, accept with probability
  ``exp((x_i − 1)/τ)`` (<= 1 because x_i < 1); ``K`` proposals per token are drawn at once, K chosen
  so that no acceptance happens with probability <= 1e-12 (then the first proposal is taken).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from synthrl.errors import UserError

DEFAULT_SEED = 666
REFERENCE_MAX_ENTRIES = 10**8
FULL_ROW_MAX = 4096
CDF_BITS = 40
ROW_SHIFT = CDF_BITS + 1  # row index lives above the cdf bits
HASH_VERSION = "counter-hash-v1"


# ---------------------------------------------------------------------------------------------
# reference rows
# ---------------------------------------------------------------------------------------------
def check_chain_params(states, order=1, temperature=1.0, seed=DEFAULT_SEED) -> None:
    """Raise UserError naming the parameter when a Markov-chain parameter is out of range."""
    if isinstance(states, bool) or not isinstance(states, (int, np.integer)) or not 2 <= states < 2**31:
        raise UserError(f"states: expected an integer >= 2 (the chain needs at least 2 states), got {states!r}")
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise UserError(f"order: expected an integer >= 1, got {order!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise UserError(f"temperature: expected a positive number or inf, got {temperature!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise UserError(f"seed: expected an integer in [0, 2**32), got {seed!r}")


def softmax64(logits: np.ndarray, temperature: float) -> np.ndarray:
    """float64 softmax of ``logits / τ`` along the last axis (row max subtracted); τ = inf gives uniform rows."""
    z = np.asarray(logits, np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def mc_row(context: int | Sequence[int], states: int, temperature: float, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Reference transition row after ``context`` (one state, or states oldest first): float64 [M].

    Logits ``numpy.random.default_rng([c1+1+σ, …, ck+1+σ]).random(M)``, probabilities
    ``softmax(logits / τ)`` in float64.
    """
    check_chain_params(states, 1, temperature, seed)
    ctx = [int(context)] if isinstance(context, (int, np.integer)) else [int(c) for c in context]
    if not ctx:
        raise UserError("context: expected at least one state (use first_token_row for the first token)")
    if any(not 0 <= c < states for c in ctx):
        raise UserError(f"context: states must lie in [0, {states}), got {ctx}")
    logits = np.random.default_rng([c + 1 + seed for c in ctx]).random(states)
    return softmax64(logits, temperature)


def first_token_row(states: int, temperature: float, seed: int = DEFAULT_SEED) -> np.ndarray:
    """Reference distribution of every sequence's first token: ``softmax(default_rng(σ).random(M) / τ)``."""
    check_chain_params(states, 1, temperature, seed)
    return softmax64(np.random.default_rng(seed).random(states), temperature)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) along the last axis."""
    p = np.asarray(probs, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)


def context_rows(states: int, order: int) -> int:
    return sum(states**k for k in range(1, order + 1))


def cdf_int(probs: np.ndarray) -> np.ndarray:
    """float64 probabilities -> cumulative integers in [0, 2^40], last entry exactly 2^40."""
    cdf = np.cumsum(probs, axis=-1)
    cdf /= cdf[..., -1:]
    out = np.rint(cdf * float(1 << CDF_BITS)).astype(np.int64)
    out[..., -1] = 1 << CDF_BITS
    return out


def reference_tables(states: int, order: int, temperature: float, seed: int):
    """Build the flat sorted key table of every context row (lengths 1..n, base-M order), the first-token
    cdf and each row's entropy. Returns ``(keys int64 [R·M], first int64 [M], entropies float64 [R])``."""
    rows = context_rows(states, order)
    keys = np.empty(rows * states, np.int64)
    entropies = np.empty(rows, np.float64)
    chunk = max(1, (1 << 22) // states)
    row = 0
    for length in range(1, order + 1):
        count = states**length
        for lo in range(0, count, chunk):
            hi = min(count, lo + chunk)
            local = np.arange(lo, hi)
            logits = np.empty((hi - lo, states), np.float64)
            for i, value in enumerate(local.tolist()):
                digits = [(value // states ** (length - 1 - d)) % states for d in range(length)]
                logits[i] = np.random.default_rng([c + 1 + seed for c in digits]).random(states)
            # softmax64, keeping z and Z for the entropy H = log Z − Σ p z (no log of every entry)
            z = logits / temperature
            z -= z.max(axis=-1, keepdims=True)
            probs = np.exp(z)
            total = probs.sum(axis=-1, keepdims=True)
            probs /= total
            entropies[row + lo:row + hi] = np.log(total[:, 0]) - np.einsum("ij,ij->i", probs, z)
            index = np.arange(row + lo, row + hi, dtype=np.int64)[:, None]
            keys[(row + lo) * states:(row + hi) * states] = ((index << ROW_SHIFT) + cdf_int(probs)).ravel()
        row += count
    first = cdf_int(first_token_row(states, temperature, seed))
    return keys, first, entropies


# ---------------------------------------------------------------------------------------------
# counter-based rows
# ---------------------------------------------------------------------------------------------
def signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


_MIX_C1 = signed64(0xBF58476D1CE4E5B9)
_MIX_C2 = signed64(0x94D049BB133111EB)
_GOLDEN = signed64(0x9E3779B97F4A7C15)
CODE_LIMIT = 1 << 62  # contexts are coded exactly while (M + 1)^n stays below this


def mix64(x: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 tensors (a bijection of 64-bit words). Multiplication wraps mod
    2^64 on CPU and CUDA alike; right shifts are masked to act as logical shifts."""
    x = x ^ ((x >> 30) & ((1 << 34) - 1))
    x = x * _MIX_C1
    x = x ^ ((x >> 27) & ((1 << 37) - 1))
    x = x * _MIX_C2
    return x ^ ((x >> 31) & ((1 << 33) - 1))


def mix64_int(value: int) -> int:
    """``mix64`` of one Python integer (same bits)."""
    return int(mix64(torch.tensor([signed64(value % (1 << 64))], dtype=torch.int64))[0])


def hashed_seed(seed: int) -> int:
    return mix64_int(seed * 0x2545F4914F6CDD1D + 0x6A09E667F3BCC909)


def codes_fit(states: int, order: int) -> bool:
    return (states + 1) ** order < CODE_LIMIT


def context_key(context: torch.Tensor, states: int, order: int, seed: int) -> torch.Tensor:
    """Row key of each context (int64 [..., k] oldest first -> int64 [...]); k = 0 is the first token.

    While ``(M + 1)^n < 2^62`` a context is coded exactly, ``code = Σ (c_i + 1)(M + 1)^(k−i)``, and
    ``key = mix64(code ^ seed_key)``: distinct contexts never share a row. Otherwise the key is a hash
    chain ``key_j = mix64(key_{j−1} ^ (c_j + 1))`` from ``mix64(seed_key)`` (64-bit collisions only).
    """
    seed_key = hashed_seed(seed)
    if codes_fit(states, order):
        code = torch.zeros(context.shape[:-1], dtype=torch.int64, device=context.device)
        for j in range(context.shape[-1]):
            code = code * (states + 1) + context[..., j] + 1
        return mix64(code ^ seed_key)
    key = torch.full(context.shape[:-1], mix64_int(seed_key), dtype=torch.int64, device=context.device)
    for j in range(context.shape[-1]):
        key = mix64(key ^ (context[..., j] + 1))
    return key


def index_hash(index: torch.Tensor) -> torch.Tensor:
    """The context-free half of a logit's hash (precomputed for proposals or a whole row)."""
    return mix64((index + 1) * _GOLDEN)


def hash_combine(key: torch.Tensor, index_hash: torch.Tensor) -> torch.Tensor:
    """U[0,1) logits (float32, 24 bits) of the tokens with ``index_hash`` in the rows ``key`` (broadcast)."""
    z = mix64(key ^ index_hash)
    return ((z >> 40) & 0xFFFFFF).to(torch.float32) * (1.0 / (1 << 24))


def hash_row(context: Sequence[int], states: int, temperature: float, seed: int = DEFAULT_SEED,
             order: int | None = None) -> np.ndarray:
    """The counter-hash row (float64 probabilities) after ``context`` ([] = the first token) in a chain of
    order ``order`` (default: the context's length; it decides between exact codes and hash chains)."""
    ctx = torch.tensor([[int(c) for c in context]], dtype=torch.int64).reshape(1, len(context))
    key = context_key(ctx, states, order or max(1, len(context)), seed)
    logits = hash_combine(key[:, None], index_hash(torch.arange(states)))[0].double().numpy()
    return softmax64(logits, temperature)


def full_row_step(code: torch.Tensor, prev: torch.Tensor, gumbel: torch.Tensor, drop: int, base: int,
                   seed_key: int, row_hash: torch.Tensor, inv_temperature: float):
    """One steady-state step of an order-n chain (n >= 2) with exactly coded contexts and whole-row
    Gumbel-max sampling: forget the oldest token, append ``prev``, hash the row, draw. ~30 eager ops;
    on CUDA it is compiled into a few fused kernels."""
    code = (code % drop) * base + prev + 1
    x = hash_combine(mix64(code ^ seed_key)[:, None], row_hash)
    return torch.argmax(x * inv_temperature + gumbel, dim=1), code


def rejection_proposals(temperature: float) -> int:
    """Proposals per token so that none is accepted with probability <= 1e-12."""
    if math.isinf(temperature):
        return 1
    acceptance = temperature * -math.expm1(-1.0 / temperature)  # E[exp((x − 1)/τ)], x ~ U[0, 1)
    if acceptance >= 1.0:
        return 1
    return max(1, math.ceil(math.log(1e-12) / math.log1p(-acceptance)))

