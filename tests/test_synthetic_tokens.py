"""DT token data: reference rows, samplers agree with the rows, IID/identity/mapping, bad parameters."""

import math

import numpy as np
import pytest
import torch

from synthrl.errors import UserError
from synthrl.synthetic import (
    MarkovTokens,
    entropy,
    first_token_row,
    hash_row,
    mc_row,
    token_source,
)
from synthrl.synthetic.chain_rows import CDF_BITS, HASH_VERSION, ROW_SHIFT, reference_tables


def spec_row(context, M, tau, sigma):
    """The spec's definition, written out independently."""
    logits = np.random.default_rng([c + 1 + sigma for c in context]).random(M)
    z = logits / tau
    e = np.exp(z - z.max())
    return e / e.sum()


def transition_counts(tokens: torch.Tensor, M: int) -> np.ndarray:
    t = tokens.numpy()
    counts = np.zeros((M, M))
    np.add.at(counts, (t[:, :-1].ravel(), t[:, 1:].ravel()), 1)
    return counts


def assert_chi_square(counts: np.ndarray, probs: np.ndarray) -> None:
    """Pearson chi-square of observed counts (rows of categories) against row distributions, 6 sigma."""
    expected = counts.sum(axis=-1, keepdims=True) * probs
    keep = expected > 0
    stat = ((counts - expected) ** 2 / np.where(keep, expected, 1))[keep].sum()
    df = keep.sum() - counts.reshape(-1, counts.shape[-1]).shape[0]
    assert stat < df + 6 * math.sqrt(2 * df), (stat, df)


# ----------------------------------------------------------------------------- reference rows
@pytest.mark.parametrize("M,tau,sigma", [(10, 1.0, 666), (100, 0.1, 666), (37, 2.5, 3)])
def test_rows_equal_spec_definition(M, tau, sigma):
    for s in (0, 1, M - 1):
        np.testing.assert_array_equal(mc_row(s, M, tau, sigma), spec_row([s], M, tau, sigma))
    first = np.random.default_rng(sigma).random(M) / tau
    first = np.exp(first - first.max())
    np.testing.assert_allclose(first_token_row(M, tau, sigma), first / first.sum(), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(mc_row((4, 2), M, tau, sigma), spec_row([4, 2], M, tau, sigma))


def test_contexts_of_different_lengths_have_different_rows():
    one, two, other = mc_row(3, 50, 1.0), mc_row((5, 3), 50, 1.0), mc_row((3, 5), 50, 1.0)
    assert not np.allclose(one, two) and not np.allclose(two, other)
    assert not np.allclose(first_token_row(50, 1.0), one)


@pytest.mark.parametrize("tau,fraction", [(0.01, 0.25), (0.1, 0.72), (1.0, 0.991)])
def test_row_entropy_matches_the_paper(tau, fraction):
    M = 100
    rows = np.stack([mc_row(s, M, tau) for s in range(M)])
    assert abs(entropy(rows).mean() / math.log(M) - fraction) < 0.01
    assert abs(MarkovTokens(M, temperature=tau).mean_row_entropy() / math.log(M) - fraction) < 0.01


def test_infinite_temperature_gives_uniform_rows():
    np.testing.assert_allclose(mc_row(2, 7, math.inf), np.full(7, 1 / 7))


def test_reference_table_holds_the_rows():
    M, n = 6, 2
    keys, first, _ = reference_tables(M, n, 0.5, 11)
    rows = keys.reshape(-1, M) & ((1 << ROW_SHIFT) - 1)
    probs = np.diff(rows, prepend=0, axis=1) / float(1 << CDF_BITS)
    np.testing.assert_allclose(probs[4], mc_row(4, M, 0.5, 11), atol=2e-12)
    np.testing.assert_allclose(probs[M + 2 * M + 5], mc_row((2, 5), M, 0.5, 11), atol=2e-12)  # base-M order
    assert np.all(np.diff(keys) >= 0)  # one sorted table
    np.testing.assert_allclose(np.diff(first, prepend=0) / float(1 << CDF_BITS), first_token_row(M, 0.5, 11),
                               atol=2e-12)


# ----------------------------------------------------------------------------- samplers
@pytest.mark.parametrize("M", [10, 100])
def test_sampled_transitions_follow_the_rows(M):
    src = token_source("mc", states=M, temperature=1.0)
    assert src.metadata()["row_source"] == "reference"
    tokens, targets = src.sample(128, torch.Generator().manual_seed(0))
    assert targets is None and tokens.shape == (128, 1024) and tokens.dtype == torch.int64
    assert 0 <= tokens.min() and tokens.max() < M
    P = np.stack([mc_row(s, M, 1.0) for s in range(M)])
    assert_chi_square(transition_counts(tokens, M), P)


def test_first_tokens_follow_the_first_row():
    src = MarkovTokens(10, temperature=0.3, length=2)
    tokens, _ = src.sample(20000, torch.Generator().manual_seed(1))
    counts = np.bincount(tokens[:, 0].numpy(), minlength=10)
    assert_chi_square(counts[None], first_token_row(10, 0.3)[None])


def test_low_temperature_samples_are_concentrated():
    M = 100
    tokens, _ = MarkovTokens(M, temperature=0.01).sample(16, torch.Generator().manual_seed(2))
    counts = transition_counts(tokens, M)
    rows = counts[counts.sum(1) > 50]
    empirical = entropy(rows / rows.sum(1, keepdims=True)).mean() / math.log(M)
    assert empirical < 0.35  # reference rows: 0.25 · log M (plug-in estimate is biased low)


def test_order_two_reference_sampler_follows_context_rows():
    M = 5
    src = MarkovTokens(M, order=2, temperature=0.7)
    tokens, _ = src.sample(64, torch.Generator().manual_seed(3))
    t = tokens.numpy()
    counts = np.zeros((M * M, M))
    np.add.at(counts, (t[:, :-2].ravel() * M + t[:, 1:-1].ravel(), t[:, 2:].ravel()), 1)
    P = np.stack([mc_row((a, b), M, 0.7) for a in range(M) for b in range(M)])
    assert_chi_square(counts, P)
    # position 1 uses the length-1 context
    long_run = MarkovTokens(M, order=2, temperature=0.7, length=2).sample(20000, torch.Generator().manual_seed(4))[0]
    second = np.zeros((M, M))
    np.add.at(second, (long_run[:, 0].numpy(), long_run[:, 1].numpy()), 1)
    assert_chi_square(second, np.stack([mc_row(a, M, 0.7) for a in range(M)]))


@pytest.mark.parametrize("M,length", [(10, 100), (33, 77), (7, 1), (9, 65), (5, 1025)])
def test_blocked_sampler_equals_loop(M, length):
    loop = MarkovTokens(M, temperature=0.5, length=length, sampler="loop")
    blocked = MarkovTokens(M, temperature=0.5, length=length, sampler="blocked")
    a, _ = loop.sample(9, torch.Generator().manual_seed(5))
    b, _ = blocked.sample(9, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_sampling_is_seeded_and_advances_the_generator():
    src = token_source("mc", states=20, length=64)
    g = torch.Generator().manual_seed(7)
    first, _ = src.sample(4, g)
    second, _ = src.sample(4, g)
    again, _ = src.sample(4, torch.Generator().manual_seed(7))
    assert torch.equal(first, again) and not torch.equal(first, second)


# ----------------------------------------------------------------------------- counter-hash rows
def test_hash_logits_are_uniform_and_context_specific():
    rows = [hash_row([c], 4000, math.inf) for c in range(3)]  # τ = inf: uniform whatever the logits
    np.testing.assert_allclose(rows[0], 1 / 4000)
    from synthrl.synthetic.chain_rows import context_key, hash_combine, index_hash

    key = context_key(torch.tensor([[5]]), 100, 1, 666)
    x = hash_combine(key[:, None], index_hash(torch.arange(200_000)))[0].numpy()
    assert x.min() >= 0 and x.max() < 1
    counts = np.histogram(x, bins=50, range=(0, 1))[0]
    assert_chi_square(counts[None], np.full((1, 50), 1 / 50))
    assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 0.01
    # logits of one token across many contexts are uniform and uncorrelated with the neighbour's
    keys = context_key(torch.arange(100_000)[:, None], 100_000, 1, 666)
    y = hash_combine(keys[:, None], index_hash(torch.tensor([7, 8])))
    counts = np.histogram(y[:, 0].numpy(), bins=50, range=(0, 1))[0]
    assert_chi_square(counts[None], np.full((1, 50), 1 / 50))
    assert abs(np.corrcoef(y[:, 0].numpy(), y[:, 1].numpy())[0, 1]) < 0.02
    a, b = hash_row([5], 300, 1.0), hash_row([6], 300, 1.0)
    assert not np.allclose(a, b) and not np.allclose(hash_row([1, 5], 300, 1.0), a)
    assert not np.allclose(hash_row([5], 300, 1.0, seed=1), a)


def test_context_keys_exact_codes_and_chains():
    from synthrl.synthetic.chain_rows import context_key

    # exact codes: all 2-token contexts over 50 states (and the 1-token ones) get distinct keys
    pairs = torch.cartesian_prod(torch.arange(50), torch.arange(50))
    keys = set(context_key(pairs, 50, 2, 0).tolist()) | set(context_key(torch.arange(50)[:, None], 50, 2, 0).tolist())
    assert len(keys) == 2550
    # (M + 1)^n beyond 2^62: hash chain, still distinct and order-sensitive
    ctx = torch.tensor([[1, 2, 3, 4], [4, 3, 2, 1], [1, 2, 3, 5]])
    chained = context_key(ctx, 100_000, 4, 0).tolist()
    assert len(set(chained)) == 3
    np.testing.assert_allclose(hash_row([1, 2, 3, 4], 100_000, math.inf, order=4), 1e-5)


@pytest.mark.parametrize("full_row,sampler", [(True, "loop"), (False, "loop"), (False, "wavefront")])
def test_hash_sampler_follows_hash_rows(full_row, sampler):
    M, tau = 12, 0.5
    src = MarkovTokens(M, temperature=tau, row_source=HASH_VERSION, length=256)
    src._full_row, src.sampler = full_row, sampler  # exercise whole-row and rejection sampling, both samplers
    assert src.metadata()["row_source"] == HASH_VERSION
    tokens, _ = src.sample(64, torch.Generator().manual_seed(8))
    P = np.stack([hash_row([s], M, tau) for s in range(M)])
    assert_chi_square(transition_counts(tokens, M), P)


@pytest.mark.parametrize("M,tau,length", [(5000, 1.0, 300), (5000, 0.5, 77), (5000, math.inf, 40), (6000, 1.0, 1)])
def test_wavefront_sampler_equals_loop(M, tau, length):
    wavefront = MarkovTokens(M, temperature=tau, length=length, row_source=HASH_VERSION)
    assert wavefront.sampler == "wavefront"
    loop = MarkovTokens(M, temperature=tau, length=length, row_source=HASH_VERSION, sampler="loop")
    a, _ = wavefront.sample(11, torch.Generator().manual_seed(3))
    b, _ = loop.sample(11, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("M,n", [(6, 1), (6, 3), (4, 27)])  # table keys, exact codes, hash chains (5^27 > 2^62)
def test_hash_sampler_rows_are_hash_row(M, n):
    # at τ = 1e-5 every draw is the row's argmax, so each token pins the row the sampler used
    src = MarkovTokens(M, order=n, temperature=1e-5, row_source=HASH_VERSION, length=60)
    tokens = src.sample(3, torch.Generator().manual_seed(0))[0].tolist()
    for seq in tokens:
        for t, token in enumerate(seq):
            assert token == hash_row(seq[max(0, t - n):t], M, 1.0, order=n).argmax()


def test_order_two_hash_sampler_uses_the_context():
    M = 4
    src = MarkovTokens(M, order=2, temperature=0.3, row_source=HASH_VERSION, length=200)
    t = src.sample(40, torch.Generator().manual_seed(9))[0].numpy()
    counts = np.zeros((M * M, M))
    np.add.at(counts, (t[:, :-2].ravel() * M + t[:, 1:-1].ravel(), t[:, 2:].ravel()), 1)
    P = np.stack([hash_row([a, b], M, 0.3) for a in range(M) for b in range(M)])
    assert_chi_square(counts, P)


def test_large_vocabulary_uses_counter_rows_without_a_matrix():
    src = token_source("mc", states=100_000, length=32)
    meta = src.metadata()
    assert meta["row_source"] == HASH_VERSION and meta["row_sampling"] == "rejection"
    assert meta["sampler"] == "wavefront"
    tokens, _ = src.sample(4, torch.Generator().manual_seed(0))
    assert tokens.shape == (4, 32) and tokens.max() < 100_000 and len(set(tokens.ravel().tolist())) > 100


# ----------------------------------------------------------------------------- other kinds
def test_iid_tokens_are_uniform():
    tokens, targets = token_source("iid", states=10, length=100).sample(100, torch.Generator().manual_seed(0))
    assert targets is None
    assert_chi_square(np.bincount(tokens.ravel().numpy(), minlength=10)[None], np.full((1, 10), 0.1))


def test_identity_and_mapping_targets():
    g = torch.Generator().manual_seed(0)
    src = token_source("identity", length=50)
    assert src.vocab_size == src.target_vocab_size == 3500
    tokens, targets = src.sample(4, g)
    assert torch.equal(tokens, targets) and tokens.max() < 3500
    mapping = token_source("mapping", length=50, seed=5)
    tokens, targets = mapping.sample(200, g)
    pairs = {}
    for x, y in zip(tokens.ravel().tolist(), targets.ravel().tolist()):
        assert pairs.setdefault(x, y) == y  # a function of the input token
    assert len(set(pairs.values())) == len(pairs)  # one-to-one
    assert sum(x != y for x, y in pairs.items()) > 0.99 * len(pairs)
    assert not torch.equal(token_source("mapping", seed=6).mapping, mapping.mapping)


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(kind="mc", states=1), "states"),
        (dict(kind="mc", order=0), "order"),
        (dict(kind="mc", temperature=0.0), "temperature"),
        (dict(kind="mc", temperature=-1.0), "temperature"),
        (dict(kind="mc", temperature=float("nan")), "temperature"),
        (dict(kind="markov"), "kind"),
        (dict(kind="iid", states=1), "states"),
    ],
)
def test_bad_parameters_raise_a_clear_error(kwargs, word):
    kind = kwargs.pop("kind")
    with pytest.raises(UserError, match=word):
        token_source(kind, **kwargs)


def test_bad_contexts_and_generators():
    with pytest.raises(UserError, match="context"):
        mc_row(10, 10, 1.0)
    with pytest.raises(UserError, match="num_sequences"):
        token_source("iid").sample(0, torch.Generator())


# ----------------------------------------------------------------------------- CUDA
@pytest.mark.gpu
def test_cuda_samplers_agree_with_the_loop_and_the_rows():
    g = lambda: torch.Generator("cuda").manual_seed(4)  # noqa: E731
    blocked = token_source("mc", states=100, device="cuda")
    assert blocked.sampler == "blocked"
    tokens, _ = blocked.sample(128, g())
    assert tokens.device.type == "cuda"
    loop = MarkovTokens(100, device="cuda", sampler="loop")
    assert torch.equal(tokens, loop.sample(128, g())[0])
    P = np.stack([mc_row(s, 100, 1.0) for s in range(100)])
    assert_chi_square(transition_counts(tokens.cpu(), 100), P)
    wavefront = token_source("mc", states=100_000, length=256, device="cuda")
    assert wavefront.sampler == "wavefront"
    hashed_loop = MarkovTokens(100_000, length=256, device="cuda", sampler="loop")
    assert torch.equal(wavefront.sample(16, g())[0], hashed_loop.sample(16, g())[0])
    mapping = token_source("mapping", device="cuda")
    tokens, targets = mapping.sample(2, g())
    assert torch.equal(targets, mapping.mapping[tokens])


@pytest.mark.gpu
def test_cuda_compiled_order_five_step_uses_hash_rows():
    M, n = 6, 5
    src = MarkovTokens(M, order=n, temperature=1e-5, row_source=HASH_VERSION, length=40, device="cuda")
    assert src.metadata()["compiled_step"]
    tokens = src.sample(3, torch.Generator("cuda").manual_seed(0))[0].cpu().tolist()
    for seq in tokens:
        for t, token in enumerate(seq):
            assert token == hash_row(seq[max(0, t - n):t], M, 1.0, order=n).argmax()
    big = token_source("mc", states=100, order=5, device="cuda")
    tokens, _ = big.sample(64, torch.Generator("cuda").manual_seed(1))
    assert tokens.shape == (64, 1024) and 0 <= int(tokens.min()) and int(tokens.max()) < 100
