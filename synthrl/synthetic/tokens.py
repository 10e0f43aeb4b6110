"""Token data for Decision-Transformer pre-training (spec: synthetic-data.md section 1).

Markov-chain rows (reference-exact, or counter-hash for large M or n) are synthrl/synthetic/chain_rows.py.
Samplers (each draws the same randomness from the generator, so for one row source they give
identical tokens; the test suite checks it)
- ``"loop"``: one step per position, all sequences at once (any order n; CPU default for M > 16);
- ``"blocked"`` (reference rows, n = 1, M <= ``BLOCKED_MAX_STATES``; CUDA default, CPU default for
  M <= 16): for every position the transition is a function of the current state given that
  position's uniform, so tabulate it for all M states, compose the tables inside blocks of 32
  positions (parallel over blocks), compose the block maps by doubling to get every block's start,
  and read every token off the composed tables: ~60 kernel launches per batch instead of thousands,
  which is what a GPU needs;
- ``"wavefront"`` (counter-hash rows with rejection, n = 1, e^{-1/τ} >= 0.1; default on both
  devices): a position whose first proposal passes whatever the context is known at once; rounds
  then resolve every position whose predecessor is known (~10-30 rounds per batch at τ = 1).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from synthrl.errors import UserError
from synthrl.synthetic.chain_rows import (CDF_BITS, DEFAULT_SEED, FULL_ROW_MAX, HASH_VERSION, REFERENCE_MAX_ENTRIES,
                                          ROW_SHIFT, check_chain_params, codes_fit, context_key, context_rows, entropy,
                                          first_token_row, full_row_step, hash_combine, hash_row, index_hash, mc_row,
                                          mix64, reference_tables, rejection_proposals, hashed_seed)

__all__ = ["KINDS", "IIDTokens", "MarkovTokens", "PairTokens", "TokenSource", "entropy", "first_token_row", "hash_row",
           "mc_row", "token_source"]

SEQUENCE_LENGTH = 1024
IDENTITY_VOCAB = 3500  # appendix F: "a similar vocabulary size as in He et al. (2023)"
REFERENCE_MAX_ROWS = 120_000  # n = 5, M = 10 (111,110 rows) still fits; builds in ~5 s
BLOCKED_MAX_STATES = 1024
BLOCKED_CPU_MAX_STATES = 16  # measured: blocked beats loop on one CPU thread for M = 10, loses for M = 100
WAVEFRONT_MIN_FORCED = 0.1  # e^{-1/τ}: share of positions whose first proposal is accepted whatever the context
KINDS = ("mc", "iid", "identity", "mapping")


# ---------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------
class TokenSource:
    """A seeded stream of token sequences on one device (see ``token_source``)."""

    kind: str
    vocab_size: int
    target_vocab_size: int
    length: int
    device: torch.device

    def sample(self, num_sequences: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``num_sequences`` sequences: tokens int64 [B, L] on the device, and targets int64 [B, L] for
        identity/mapping (None for mc/iid: the model predicts ``tokens[:, 1:]``). Deterministic given the
        generator's state; advances the generator."""
        if isinstance(num_sequences, bool) or not isinstance(num_sequences, (int, np.integer)) or num_sequences < 1:
            raise UserError(f"num_sequences: expected an integer >= 1, got {num_sequences!r}")
        if torch.device(generator.device).type != self.device.type:
            raise UserError(f"generator is on {generator.device}, the token source on {self.device}: use one device")
        return self._sample(int(num_sequences), generator)

    def _sample(self, num_sequences: int, generator: torch.Generator):
        raise NotImplementedError

    def metadata(self) -> dict:
        raise NotImplementedError

    def mean_row_entropy(self) -> float | None:
        """Mean entropy (nats) of the transition rows (None where tokens are independent)."""
        return None


def _uniform_int(shape, generator, device, high: int) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=generator, device=device, dtype=torch.int64)


class MarkovTokens(TokenSource):
    """Markov-chain token sequences of order n over M states (see the module docstring)."""

    def __init__(self, states: int = 100, order: int = 1, temperature: float = 1.0, seed: int = DEFAULT_SEED,
                 length: int = SEQUENCE_LENGTH, device="cpu", row_source: str = "auto", sampler: str = "auto",
                 compile: str = "auto"):
        check_chain_params(states, order, temperature, seed)
        _check_length(length)
        self.kind = "mc"
        self.states, self.order, self.temperature, self.seed = int(states), int(order), float(temperature), int(seed)
        self.vocab_size = self.target_vocab_size = self.states
        self.length = int(length)
        self.device = torch.device(device)
        rows = context_rows(self.states, self.order)
        fits = rows <= REFERENCE_MAX_ROWS and rows * self.states <= REFERENCE_MAX_ENTRIES
        if row_source == "auto":
            row_source = "reference" if fits else HASH_VERSION
        if row_source not in ("reference", HASH_VERSION):
            raise UserError(f"row_source: expected auto, reference or {HASH_VERSION}, got {row_source!r}")
        if row_source == "reference" and not fits:
            raise UserError(f"row_source reference: {rows} rows of {self.states} do not fit as a table")
        self.row_source = row_source
        self._entropies: np.ndarray | None = None
        if row_source == "reference":
            keys, first, self._entropies = reference_tables(self.states, self.order, self.temperature, self.seed)
            self._keys = torch.from_numpy(keys).to(self.device)
            self._first = torch.from_numpy(first).to(self.device)
            offsets = np.cumsum([0] + [self.states**k for k in range(1, self.order + 1)])
            self._offsets = [int(o) for o in offsets]  # rows of contexts of length k start at offsets[k-1]
        else:
            self._proposals = rejection_proposals(self.temperature)
            self._full_row = self.states <= max(FULL_ROW_MAX, self._proposals)
            empty = torch.zeros(1, 0, dtype=torch.int64, device=self.device)
            self._first_key = context_key(empty, self.states, self.order, self.seed)  # [1]
            if self.order == 1:  # per-state row keys, looked up instead of hashed every step
                states = torch.arange(self.states, device=self.device)[:, None]
                self._key_table = context_key(states, self.states, 1, self.seed)
        blocked_ok = row_source == "reference" and self.order == 1 and self.states <= BLOCKED_MAX_STATES
        wavefront_ok = (row_source == HASH_VERSION and self.order == 1 and not self._full_row
                        and math.exp(-1.0 / self.temperature) >= WAVEFRONT_MIN_FORCED)
        if sampler == "auto":
            # blocked does O(M) work per token: on the CPU it only pays for tiny vocabularies
            blocked_here = blocked_ok and (self.device.type == "cuda" or self.states <= BLOCKED_CPU_MAX_STATES)
            sampler = "wavefront" if wavefront_ok else "blocked" if blocked_here else "loop"
        if sampler not in ("loop", "blocked", "wavefront"):
            raise UserError(f"sampler: expected auto, loop, blocked or wavefront, got {sampler!r}")
        if sampler == "blocked" and not blocked_ok:
            raise UserError(f"sampler blocked: needs reference rows, order 1 and at most {BLOCKED_MAX_STATES} states")
        if sampler == "wavefront" and not (row_source == HASH_VERSION and self.order == 1):
            raise UserError("sampler wavefront: needs counter-hash rows and order 1")
        self.sampler = sampler
        # torch.compile of the order-n steady-state step (launch-bound otherwise); auto: on CUDA only
        if compile not in ("auto", "on", "off"):
            raise UserError(f"compile: expected auto, on or off, got {compile!r}")
        compilable = (row_source == HASH_VERSION and self.order >= 2 and self._full_row
                      and codes_fit(self.states, self.order))
        self._compile = compilable and (compile == "on" or (compile == "auto" and self.device.type == "cuda"))
        self._step = full_row_step
        self._step_compiled = False

    def metadata(self) -> dict:
        meta = {"kind": "mc", "states": self.states, "order": self.order, "temperature": self.temperature,
                "seed": self.seed, "length": self.length, "row_source": self.row_source, "sampler": self.sampler,
                "device": str(self.device)}
        if self.row_source == "reference":
            meta["cdf_bits"] = CDF_BITS
        else:
            meta["proposals"] = self._proposals
            meta["row_sampling"] = "full-row" if self._full_row else "rejection"
            meta["compiled_step"] = self._compile
        return meta

    def mean_row_entropy(self) -> float:
        """Mean entropy of the full-context rows: exact for reference rows, 256 sampled contexts otherwise."""
        if self._entropies is not None:
            return float(self._entropies[-self.states**self.order:].mean())
        rng = np.random.default_rng(0)
        rows = [hash_row(rng.integers(self.states, size=self.order), self.states, self.temperature, self.seed,
                         self.order) for _ in range(256 if self.states <= 10**4 else 32)]
        return float(entropy(np.stack(rows)).mean())

    # ------------------------------------------------------------------ reference rows
    def _search(self, row: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        """Next token for (row index, uniform in [0, 2^40)) pairs, broadcast."""
        query = (row << ROW_SHIFT) + uniforms
        return torch.searchsorted(self._keys, query, right=True) - row * self.states

    def _sample(self, num_sequences: int, generator: torch.Generator):
        if self.row_source != "reference":
            if self.sampler == "wavefront":
                return self._sample_wavefront(num_sequences, generator), None
            return self._sample_hashed(num_sequences, generator), None
        uniforms = _uniform_int((num_sequences, self.length), generator, self.device, 1 << CDF_BITS)
        if self.sampler == "blocked":
            return self._sample_blocked(uniforms), None
        return self._sample_loop(uniforms), None

    def _sample_loop(self, uniforms: torch.Tensor) -> torch.Tensor:
        M, n = self.states, self.order
        uniforms = uniforms.t().contiguous()  # position-major: each step reads one contiguous row
        tokens = torch.empty_like(uniforms)
        token = torch.searchsorted(self._first, uniforms[0], right=True)
        tokens[0] = token
        local = token  # the context (last min(t, n) tokens) as a base-M number
        full = M ** (n - 1)
        for t in range(1, self.length):
            k = min(t, n)
            token = self._search(local + self._offsets[k - 1] if k > 1 else local, uniforms[t])
            tokens[t] = token
            if n == 1:
                local = token
            else:
                local = ((local % full) if k == n else local) * M + token
        return tokens.t().contiguous()

    def _sample_blocked(self, uniforms: torch.Tensor, block: int = 32) -> torch.Tensor:
        B, L, M = uniforms.shape[0], self.length, self.states
        first = torch.searchsorted(self._first, uniforms[:, 0].contiguous(), right=True)
        steps = L - 1
        if steps == 0:
            return first[:, None]
        nblocks = -(-steps // block)
        all_states = torch.arange(M, device=self.device)
        # F[b, t, s]: the token at position t+1 if position t holds s (padding positions: identity)
        table = all_states.expand(B, nblocks * block, M).clone()
        chunk = max(1, (1 << 24) // max(1, steps * M))
        for lo in range(0, B, chunk):
            u = uniforms[lo:lo + chunk, 1:, None]
            table[lo:lo + chunk, :steps] = self._search(all_states, u)
        table = table.view(B, nblocks, block, M)
        # prefix compositions inside each block: P_k = F_k ∘ P_{k-1}
        for k in range(1, block):
            table[:, :, k] = torch.gather(table[:, :, k], 2, table[:, :, k - 1])
        # block maps -> prefix maps over blocks by doubling: Q_i = G_i ∘ … ∘ G_0 (log2(nblocks) gathers)
        prefix = table[:, :, block - 1]
        shift = 1
        while shift < nblocks:
            prefix = torch.cat([prefix[:, :shift], torch.gather(prefix[:, shift:], 2, prefix[:, :-shift])], dim=1)
            shift *= 2
        # block i starts in Q_{i-1}(first); block 0 in first
        after = torch.gather(prefix[:, :-1], 2, first[:, None, None].expand(B, nblocks - 1, 1))[:, :, 0]
        starts = torch.cat([first[:, None], after], dim=1)
        index = starts[:, :, None, None].expand(B, nblocks, block, 1)
        rest = torch.gather(table, 3, index).reshape(B, nblocks * block)[:, :steps]
        return torch.cat([first[:, None], rest], dim=1)

    # ------------------------------------------------------------------ counter-hash rows
    def _rejection_chunk(self, batch: int) -> int:
        """Positions whose randomness is drawn at once (the same in every sampler, so they agree)."""
        width = self.states if self._full_row else self._proposals
        return max(1, min(self.length, (1 << 22) // (batch * width)))

    def _draw_proposals(self, positions: int, batch: int, generator: torch.Generator):
        """Rejection randomness for ``positions`` steps: proposals [P, B, K] and thresholds: proposal i
        is accepted when v < exp((x_i − 1)/τ), i.e. when x_i > 1 + τ log v."""
        shape = (positions, batch, self._proposals)
        proposals = _uniform_int(shape, generator, self.device, self.states)
        v = torch.rand(shape, generator=generator, device=self.device)
        if math.isinf(self.temperature):
            threshold = torch.full_like(v, -math.inf)
        else:
            threshold = 1.0 + self.temperature * torch.log(v)
        return proposals, threshold

    def _draw_gumbel(self, positions: int, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Gumbel noise [P, B, M] for whole-row sampling: token = argmax(x / τ + g) (Gumbel-max)."""
        u = torch.rand(positions, batch, self.states, generator=generator, device=self.device)
        return -torch.log(-torch.log(u))

    def _sample_wavefront(self, num_sequences: int, generator: torch.Generator) -> torch.Tensor:
        """Order 1, rejection rows, parallel over positions (identical tokens to the loop; the CPU and CUDA
        default for order 1 with e^{-1/τ} >= 0.1, i.e. τ >= 0.43).

        With probability e^{-1/τ} a position's first proposal passes whatever the context (its
        threshold is < 0 <= x), so that token is known before its predecessor. Each round resolves
        every unknown position whose predecessor is known; rounds ~ the longest run of unforced
        positions (~30 for 65,536 tokens at τ = 1), and the work is one hash per unforced proposal.
        """
        B, L = num_sequences, self.length
        chunk = self._rejection_chunk(B)
        draws = [self._draw_proposals(min(chunk, L - lo), B, generator) for lo in range(0, L, chunk)]
        proposals, threshold = (torch.cat(parts) for parts in zip(*draws))
        tokens = torch.where(threshold[:, :, 0] < 0, proposals[:, :, 0], -1)  # forced positions
        x = hash_combine(self._first_key[:, None], index_hash(proposals[0]))
        tokens[0] = proposals[0].gather(1, (x > threshold[0]).to(torch.uint8).argmax(dim=1)[:, None])[:, 0]
        known = tokens >= 0
        while True:
            ready = ~known[1:] & known[:-1]
            t, b = ready.nonzero(as_tuple=True)
            if t.numel() == 0:
                break
            t = t + 1
            key = self._key_table[tokens[t - 1, b]]
            x = hash_combine(key[:, None], index_hash(proposals[t, b]))
            first = (x > threshold[t, b]).to(torch.uint8).argmax(dim=1)  # 0 when none is accepted
            tokens[t, b] = proposals[t, b].gather(1, first[:, None])[:, 0]
            known[t, b] = True
        return tokens.t().contiguous()

    def _run_step(self, *args):
        if self._compile and not self._step_compiled:
            self._step_compiled = True
            try:
                compiled = torch.compile(full_row_step, fullgraph=True, dynamic=False)
                result = compiled(*args)
                self._step = compiled
                return result
            except Exception as e:  # no working compiler here: stay eager (same distribution)
                import warnings

                warnings.warn(f"token sampler: torch.compile failed ({type(e).__name__}: {e}); running eagerly")
                self._compile = False
        return self._step(*args)

    def _sample_hashed(self, num_sequences: int, generator: torch.Generator) -> torch.Tensor:
        """One step per position, all sequences at once, ~30 tensor ops per step whatever the order: the
        context is carried as its exact code (one multiply-add per step) or, when codes do not fit, as
        the window of the last n tokens. Randomness (Gumbel noise, or rejection proposals) is drawn in
        bulk for a chunk of positions before its steps."""
        B, L, M, n, dev = num_sequences, self.length, self.states, self.order, self.device
        tokens = torch.empty(L, B, dtype=torch.int64, device=dev)
        chunk = self._rejection_chunk(B)
        exact = codes_fit(M, n)
        seed_key = hashed_seed(self.seed)
        drop = (M + 1) ** (n - 1)  # code % drop forgets the oldest token of a full context
        code = torch.zeros(B, dtype=torch.int64, device=dev)
        if self._full_row:
            row_hash = index_hash(torch.arange(M, device=dev))
        for lo in range(0, L, chunk):
            count = min(chunk, L - lo)
            if self._full_row:
                gumbel = self._draw_gumbel(count, B, generator)
            else:
                proposals, threshold = self._draw_proposals(count, B, generator)
                proposal_hash = index_hash(proposals)
            for i in range(count):
                t = lo + i
                if t == 0:
                    key = self._first_key.expand(B)
                elif n == 1:
                    key = self._key_table[tokens[t - 1]]
                elif exact and t > n and self._full_row:
                    tokens[t], code = self._run_step(code, tokens[t - 1], gumbel[i], drop, M + 1, seed_key,
                                                     row_hash, 1.0 / self.temperature)
                    continue
                elif exact:
                    code = (code % drop if t > n else code) * (M + 1) + tokens[t - 1] + 1
                    key = mix64(code ^ seed_key)
                else:
                    key = context_key(tokens[max(0, t - n):t].t(), M, n, self.seed)
                if self._full_row:
                    x = hash_combine(key[:, None], row_hash)
                    tokens[t] = torch.argmax(x * (1.0 / self.temperature) + gumbel[i], dim=1)
                else:
                    x = hash_combine(key[:, None], proposal_hash[i])
                    first = (x > threshold[i]).to(torch.uint8).argmax(dim=1)  # 0 when none is accepted
                    tokens[t] = proposals[i].gather(1, first[:, None])[:, 0]
        return tokens.t().contiguous()


class IIDTokens(TokenSource):
    """Tokens drawn independently and uniformly from [0, M) (the τ -> ∞ limit)."""

    def __init__(self, states: int = 100, seed: int = DEFAULT_SEED, length: int = SEQUENCE_LENGTH, device="cpu"):
        check_chain_params(states, 1, 1.0, seed)
        _check_length(length)
        self.kind = "iid"
        self.vocab_size = self.target_vocab_size = int(states)
        self.seed, self.length, self.device = int(seed), int(length), torch.device(device)

    def _sample(self, num_sequences, generator):
        return _uniform_int((num_sequences, self.length), generator, self.device, self.vocab_size), None

    def metadata(self) -> dict:
        return {"kind": "iid", "states": self.vocab_size, "seed": self.seed, "length": self.length,
                "device": str(self.device)}


class PairTokens(TokenSource):
    """Identity (target = input token) and Token Mapping (target = perm(input)) over 3,500 IID tokens.

    The mapping is ``numpy.random.default_rng(seed).permutation(3500)``.
    """

    def __init__(self, kind: str, seed: int = DEFAULT_SEED, length: int = SEQUENCE_LENGTH, device="cpu"):
        check_chain_params(IDENTITY_VOCAB, 1, 1.0, seed)
        _check_length(length)
        self.kind = kind
        self.vocab_size = self.target_vocab_size = IDENTITY_VOCAB
        self.seed, self.length, self.device = int(seed), int(length), torch.device(device)
        self.mapping = None
        if kind == "mapping":
            perm = np.random.default_rng(self.seed).permutation(IDENTITY_VOCAB)
            self.mapping = torch.from_numpy(perm).to(self.device)

    def _sample(self, num_sequences, generator):
        tokens = _uniform_int((num_sequences, self.length), generator, self.device, IDENTITY_VOCAB)
        return tokens, (tokens.clone() if self.mapping is None else self.mapping[tokens])

    def metadata(self) -> dict:
        return {"kind": self.kind, "states": IDENTITY_VOCAB, "seed": self.seed, "length": self.length,
                "mapping": "default_rng(seed).permutation" if self.mapping is not None else None,
                "device": str(self.device)}


def _check_length(length) -> None:
    if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
        raise UserError(f"length: expected an integer >= 1, got {length!r}")


def token_source(kind: str, *, states: int | None = None, order: int | None = None,
                 temperature: float | None = None, seed: int | None = None, length: int | None = None,
                 device="cpu") -> TokenSource:
    """A token source for DT pre-training: ``kind`` in mc, iid, identity, mapping.

    ``identity`` and ``mapping`` always use the 3,500-token vocabulary of appendix F (``states`` is
    ignored); ``iid`` ignores ``order`` and ``temperature``. A setting left out takes the default that
    ``synthrl.dt.config.DTPretrainConfig`` declares (its one declaration).

    >>> src = token_source("mc", states=100, temperature=1.0)
    >>> tokens, targets = src.sample(64, torch.Generator().manual_seed(0))   # [64, 1024], None
    """
    from synthrl.dt.config import DTPretrainConfig   # here: the DT package imports this module

    d = DTPretrainConfig()
    states, order = d.states if states is None else states, d.order if order is None else order
    temperature = d.temperature if temperature is None else temperature
    seed, length = d.data_seed if seed is None else seed, d.seq_len if length is None else length
    if kind == "mc":
        return MarkovTokens(states, order, temperature, seed, length, device)
    if kind == "iid":
        return IIDTokens(states, seed, length, device)
    if kind in ("identity", "mapping"):
        return PairTokens(kind, seed, length, device)
    raise UserError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
