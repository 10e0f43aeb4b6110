"""Synthetic MDP data for CQL pre-training (spec: synthetic-data.md section 2).

``mdp_dataset`` is reference-exact: it returns, array for array, what the reference's per-step loop
with NumPy's legacy global generator produces (the test suite runs that literal loop). It is
vectorised the way the spec suggests:

- every draw reseeds the legacy generator with a seed that depends only on ``(j, t)`` (or ``s``,
  ``(s, a)``), so the per-(j, t) uniforms are precomputed for all seeds at once (``mt19937``);
- legacy ``choice(n, p=p)`` casts ``p`` to float64, takes ``cdf = cumsum(p); cdf /= cdf[-1]`` and
  returns ``searchsorted(cdf, random_sample(), side="right")``, i.e. the number of cdf entries
  ``<= u``; the distinct policy and transition cdf rows are built once (float32 ``torch.softmax``
  exactly as the reference) and looked up;
- the loop over ``t`` stays sequential, vectorised over the ``J`` trajectories.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import numpy as np
import torch

from synthrl.errors import UserError
from synthrl.synthetic.mt19937 import first_random_sample, first_randint

# rows wider than this are searched one by one instead of gathered into a [J, width] block
_DENSE_WIDTH = 2048
# budget (float64 entries) for cached cdf rows when the rows cannot all be precomputed
_ROW_CACHE_ENTRIES = 1 << 24  # 128 MiB


def check_mdp_params(states: int, actions: int, trajectories: int, length: int,
                     policy_temperature: float, transition_temperature: float) -> None:
    """Raise UserError naming the parameter when one is out of range."""
    for name, value in (("states", states), ("actions", actions), ("trajectories", trajectories), ("length", length)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UserError(f"{name}: expected an integer >= 1, got {value!r}")
    for name, value in (("policy_temperature", policy_temperature), ("transition_temperature", transition_temperature)):
        if not isinstance(value, (int, float)) or not value > 0:
            raise UserError(f"{name}: expected a positive number or inf, got {value!r}")
    # legacy seeds must stay below 2**32
    if 888 * (states - 1) + 777 * (actions - 1) >= 2**32 or 666 + 1000 * trajectories + 333 * length >= 2**32:
        raise UserError("states/actions/trajectories/length: too large for the reference's legacy seeds (< 2**32)")


def legacy_choice_cdf(logits: np.ndarray, temperature: float) -> np.ndarray:
    """cdf rows that legacy ``choice(n, p=softmax_float32(logits / τ))`` searches (float64, last entry 1).

    ``logits`` is float64 [rows, n] from ``rand``; the reference turns it into a float32 tensor,
    divides by τ and applies ``torch.softmax``; ``choice`` then casts ``p`` to float64, cumsums and
    divides by the last entry.
    """
    x = torch.from_numpy(np.ascontiguousarray(logits)).to(torch.float32)
    probs = torch.softmax(x / temperature, dim=-1).numpy().astype(np.float64)
    cdf = np.cumsum(probs, axis=-1)
    return cdf / cdf[..., -1:]


def _legacy_rand_rows(seeds, width: int) -> np.ndarray:
    """``np.random.seed(seed); np.random.rand(width)`` for each seed: float64 [len(seeds), width]."""
    rows = np.empty((len(seeds), width), np.float64)
    # reseeding one generator is legacy seeding only; RandomState(seed) would also gather OS
    # entropy first (~40x slower per row)
    generator = np.random.RandomState()
    for i, seed in enumerate(seeds):
        generator.seed(int(seed))
        rows[i] = generator.random_sample(width)
    return rows


class _CdfRows:
    """Legacy-choice cdf rows by integer key, built on first use (all at once when they fit)."""

    def __init__(self, keys_upper: int, width: int, seed_of_key: Callable[[np.ndarray], np.ndarray],
                 temperature: float):
        self.width = width
        self.seed_of_key = seed_of_key
        self.temperature = temperature
        self.dense: np.ndarray | None = None
        self.built = np.zeros(0, bool)
        if keys_upper * width <= _ROW_CACHE_ENTRIES:
            self.dense = np.zeros((keys_upper, width), np.float64)
            self.built = np.zeros(keys_upper, bool)
        self.cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.cache_rows = max(1, _ROW_CACHE_ENTRIES // width)

    def _build(self, keys: np.ndarray) -> np.ndarray:
        return legacy_choice_cdf(_legacy_rand_rows(self.seed_of_key(keys), self.width), self.temperature)

    def choose(self, keys: np.ndarray, uniforms: np.ndarray) -> np.ndarray:
        """Legacy ``choice`` for each (row key, uniform): number of cdf entries ``<= u``."""
        if self.dense is not None:
            missing = np.unique(keys[~self.built[keys]])
            if missing.size:
                self.dense[missing] = self._build(missing)
                self.built[missing] = True
            if self.width <= _DENSE_WIDTH:
                return np.count_nonzero(self.dense[keys] <= uniforms[:, None], axis=1)
            return np.array([np.searchsorted(self.dense[k], u, side="right") for k, u in zip(keys, uniforms)])
        # rows too many to keep: cached LRU, built a bounded chunk at a time
        unique, inverse = np.unique(keys, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
        out = np.empty(len(keys), np.int64)

        def search(i: int, row: np.ndarray) -> None:
            members = order[bounds[i]:bounds[i + 1]]
            out[members] = np.searchsorted(row, uniforms[members], side="right")

        missing = []
        for i, k in enumerate(unique.tolist()):
            if k in self.cache:
                self.cache.move_to_end(k)
                search(i, self.cache[k])
            else:
                missing.append(i)
        chunk = max(1, (1 << 22) // self.width)
        for lo in range(0, len(missing), chunk):
            part = missing[lo:lo + chunk]
            rows = self._build(unique[part])
            for i, row in zip(part, rows):
                search(i, row)
                self.cache[int(unique[i])] = row.copy()
                if len(self.cache) > self.cache_rows:
                    self.cache.popitem(last=False)
        return out


def mdp_dataset(states: int = 100, actions: int = 100, trajectories: int = 1000, length: int = 1000,
                policy_temperature: float = 1.0, transition_temperature: float = 1.0,
                random_start: bool = False, progress: Callable[[int, int], None] | None = None):
    """Reference-exact synthetic MDP transitions: ``(obs, act, next_obs)``, int64 [J·T] each, trajectory-major.

    Trajectory ``j`` starts at ``randint(S)`` under seed ``J`` (or ``j`` with ``random_start``);
    step ``t`` draws ``a ~ softmax(rand(A) | seed s)/τπ`` with seed ``42 + 1000 j + 333 t`` and
    ``s' ~ softmax(rand(S) | seed 888 s + 777 a)/τP`` with seed ``666 + 1000 j + 333 t``; an
    ``inf`` temperature draws ``randint`` under the same seed instead. ``progress(t, T)`` is called
    once per step when given.
    """
    check_mdp_params(states, actions, trajectories, length, policy_temperature, transition_temperature)
    J, T, S, A = int(trajectories), int(length), int(states), int(actions)
    start_seeds = np.arange(J) if random_start else np.full(J, J)
    state = first_randint(start_seeds, S)

    jt = 1000 * np.arange(J)[:, None] + 333 * np.arange(T)[None, :]  # [J, T]
    uniform_policy, uniform_transition = math.isinf(policy_temperature), math.isinf(transition_temperature)
    if uniform_policy:
        action_draw = first_randint(42 + jt, A)
    if uniform_transition:
        next_draw = first_randint(666 + jt, S)
    lo, hi = 42 + int(jt.min()), 666 + int(jt.max())
    if not (uniform_policy or uniform_transition) and hi - lo < 2 * jt.size:
        # the two seed grids overlap: one pass over the seed range serves both (~1.3 M seeds, not 2 M)
        table = first_random_sample(np.arange(lo, hi + 1, dtype=np.int64))
        action_draw, next_draw = table[42 + jt - lo], table[666 + jt - lo]
    elif not (uniform_policy or uniform_transition):
        action_draw, next_draw = first_random_sample(42 + jt), first_random_sample(666 + jt)
    elif not uniform_policy:
        action_draw = first_random_sample(42 + jt)
    elif not uniform_transition:
        next_draw = first_random_sample(666 + jt)

    # policy rows are keyed by s (seed s); transition rows by k = 8s + 7a (seed 888s + 777a = 111k)
    policy = None if uniform_policy else _CdfRows(S, A, lambda k: k, policy_temperature)
    transition = None if uniform_transition else _CdfRows(8 * (S - 1) + 7 * (A - 1) + 1, S, lambda k: 111 * k,
                                                          transition_temperature)
    obs = np.empty((J, T), np.int64)
    act = np.empty((J, T), np.int64)
    next_obs = np.empty((J, T), np.int64)
    for t in range(T):
        a = action_draw[:, t] if policy is None else policy.choose(state, action_draw[:, t])
        s_next = next_draw[:, t] if transition is None else transition.choose(8 * state + 7 * a, next_draw[:, t])
        obs[:, t], act[:, t], next_obs[:, t] = state, a, s_next
        state = s_next
        if progress is not None:
            progress(t + 1, T)
    return obs.ravel(), act.ravel(), next_obs.ravel()


def mdp_iid_dataset(states: int = 100, actions: int = 100, transitions: int = 1_000_000, seed: int = 0):
    """The CQL+IID variant: states, actions and next states uniform and independent, seeded.

    ``rng = numpy.random.default_rng(seed)``; ``obs``, ``act``, ``next_obs`` are drawn in that order
    with ``rng.integers``. Returns int64 [N] arrays.
    """
    check_mdp_params(states, actions, 1, 1, 1.0, 1.0)
    if isinstance(transitions, bool) or not isinstance(transitions, (int, np.integer)) or transitions < 1:
        raise UserError(f"transitions: expected an integer >= 1, got {transitions!r}")
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    obs = rng.integers(states, size=transitions, dtype=np.int64)
    act = rng.integers(actions, size=transitions, dtype=np.int64)
    next_obs = rng.integers(states, size=transitions, dtype=np.int64)
    return obs, act, next_obs


def index_to_vectors(states: int, actions: int, obs_dim: int, act_dim: int):
    """Index-to-vector tables of the target task: ``(index2state [S, dS], index2action [A, dA])``, float32.

    Legacy seed 0, then ``2·rand(S, dS) − 1`` and, from the same stream, ``2·rand(A, dA) − 1``.
    """
    for name, value in (("states", states), ("actions", actions), ("obs_dim", obs_dim), ("act_dim", act_dim)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UserError(f"{name}: expected an integer >= 1, got {value!r}")
    rng = np.random.RandomState(0)
    index2state = (2 * rng.random_sample((states, obs_dim)) - 1).astype(np.float32)
    index2action = (2 * rng.random_sample((actions, act_dim)) - 1).astype(np.float32)
    return index2state, index2action


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"seed: expected an integer >= 0, got {seed!r}")
