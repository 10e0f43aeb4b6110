"""CQL synthetic MDP: legacy-generator emulation, reference-exact transitions, vectors, the cache."""

import math

import numpy as np
import pytest
import torch

from synthrl.errors import UserError
from synthrl.store import ArtifactStore
from synthrl.synthetic import cql_pretrain_data, index_to_vectors, mdp_dataset, mdp_iid_dataset
from synthrl.synthetic.mt19937 import first_randint, first_random_sample


def literal_mdp(S, A, J, T, tau_pi, tau_p, random_start, only=None):
    """The spec's per-step loop with the legacy global generator, written out independently
    (``only``: just these trajectories)."""
    obs, act, nxt = [], [], []
    for j in range(J) if only is None else only:
        np.random.seed(j if random_start else J)
        s = np.random.randint(S)
        for t in range(T):
            np.random.seed(s)
            pi = torch.softmax(torch.tensor(np.random.rand(A), dtype=torch.float32) / tau_pi, dim=0).numpy()
            np.random.seed(42 + 1000 * j + 333 * t)
            a = np.random.randint(0, A) if math.isinf(tau_pi) else np.random.choice(A, p=pi)
            np.random.seed(888 * s + 777 * a)
            P = torch.softmax(torch.tensor(np.random.rand(S), dtype=torch.float32) / tau_p, dim=0).numpy()
            np.random.seed(666 + 1000 * j + 333 * t)
            s_next = np.random.randint(0, S) if math.isinf(tau_p) else np.random.choice(S, p=P)
            obs.append(s), act.append(a), nxt.append(s_next)
            s = s_next
    return np.array(obs), np.array(act), np.array(nxt)


def test_legacy_generator_emulation_is_bit_exact():
    seeds = np.array([0, 1, 2, 42, 666, 1042, 99_999, 1_333_333, 2**31, 2**32 - 1])
    expected = [np.random.RandomState(int(s)).random_sample() for s in seeds]
    np.testing.assert_array_equal(first_random_sample(seeds), expected)
    for high in (1, 2, 3, 10, 100, 129, 1000, 2**31 + 5):
        expected = [np.random.RandomState(int(s)).randint(high) for s in seeds]
        np.testing.assert_array_equal(first_randint(seeds, high), expected)
    # forced fallback path (1 draw, frequent rejections) still matches
    many = np.arange(300)
    np.testing.assert_array_equal(first_randint(many, 5, draws=1), [np.random.RandomState(s).randint(5) for s in many])


@pytest.mark.parametrize(
    "args",
    [
        (7, 5, 4, 30, 1.0, 1.0, False),
        (10, 10, 5, 20, 0.1, 2.0, True),
        (13, 3, 3, 10, math.inf, 1.0, False),
        (5, 9, 3, 10, 1.0, math.inf, True),
        (6, 4, 2, 10, math.inf, math.inf, False),
    ],
)
def test_mdp_equals_the_literal_per_step_implementation(args):
    for ours, theirs in zip(mdp_dataset(*args), literal_mdp(*args)):
        assert ours.dtype == np.int64
        np.testing.assert_array_equal(ours, theirs)


def test_default_dataset_equals_the_literal_implementation():
    # the full 10^6-transition build (it takes the shared-seed-range path); trajectories spot-checked
    obs, act, next_obs = mdp_dataset()
    assert len(obs) == 1_000_000
    theirs = literal_mdp(100, 100, 1000, 1000, 1.0, 1.0, False, only=[0, 999])
    for ours, expected in zip((obs, act, next_obs), theirs):
        np.testing.assert_array_equal(ours.reshape(1000, 1000)[[0, 999]].ravel(), expected)


def test_mdp_with_wide_rows_equals_the_literal_implementation():
    # rows wider than the dense-gather limit take the one-row-at-a-time search
    args = (2500, 2100, 2, 6, 1.0, 0.5, False)
    for ours, theirs in zip(mdp_dataset(*args), literal_mdp(*args)):
        np.testing.assert_array_equal(ours, theirs)


def test_mdp_structure():
    J, T = 6, 25
    obs, act, next_obs = mdp_dataset(12, 8, J, T)
    assert obs.shape == act.shape == next_obs.shape == (J * T,)
    o, n = obs.reshape(J, T), next_obs.reshape(J, T)
    np.testing.assert_array_equal(n[:, :-1], o[:, 1:])  # next_obs[i] = obs[i+1] inside a trajectory
    assert len(set(o[:, 0])) == 1  # fixed start: every trajectory starts in the same state
    assert obs.max() < 12 and act.max() < 8 and next_obs.min() >= 0
    random_start = mdp_dataset(12, 8, 40, 2, random_start=True)[0].reshape(40, 2)
    assert len(set(random_start[:, 0])) > 1


def test_infinite_temperatures_draw_uniformly():
    A, S = 10, 10
    obs, act, next_obs = mdp_dataset(S, A, 200, 50, math.inf, math.inf)
    for values, n in ((act, A), (next_obs, S)):
        counts = np.bincount(values, minlength=n)
        expected = len(values) / n
        assert ((counts - expected) ** 2 / expected).sum() < (n - 1) + 6 * math.sqrt(2 * (n - 1))
    # low temperature concentrates the policy: far from uniform
    obs, act, _ = mdp_dataset(S, A, 50, 50, 0.05, 1.0)
    top_share = [np.bincount(act[obs == s], minlength=A).max() / np.sum(obs == s) for s in range(S)
                 if np.sum(obs == s) >= 20]
    assert np.mean(top_share) > 0.5


def test_index_to_vectors_follow_the_spec():
    states, actions = index_to_vectors(5, 4, 11, 3)
    np.random.seed(0)
    expected_s = (2 * np.random.rand(5, 11) - 1).astype(np.float32)
    expected_a = (2 * np.random.rand(4, 3) - 1).astype(np.float32)
    assert states.dtype == actions.dtype == np.float32
    np.testing.assert_array_equal(states, expected_s)
    np.testing.assert_array_equal(actions, expected_a)


def test_iid_variant_is_seeded():
    a = mdp_iid_dataset(7, 5, 1000, seed=1)
    b = mdp_iid_dataset(7, 5, 1000, seed=1)
    c = mdp_iid_dataset(7, 5, 1000, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert a[0].max() == 6 and a[1].max() == 4 and not np.array_equal(a[0], a[2])


SMALL = dict(states=9, actions=6, trajectories=5, length=20)


def test_cql_pretrain_data_variants(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    mdp = cql_pretrain_data("mdp", 11, 3, store=store, **SMALL)
    np.testing.assert_array_equal(mdp.target_obs, mdp_dataset(9, 6, 5, 20)[2])
    assert mdp.target_act is None and mdp.target_dim == 11 and mdp.state_table.shape == (9, 11)
    identity = cql_pretrain_data("identity", 11, 3, store=store, seed=3, **SMALL)
    assert identity.target_dim == 14
    np.testing.assert_array_equal(identity.target_obs, identity.obs)
    np.testing.assert_array_equal(identity.target_act, identity.act)
    mapping = cql_pretrain_data("mapping", 11, 3, store=store, seed=3, **SMALL)
    np.testing.assert_array_equal(mapping.obs, identity.obs)  # same seeded inputs
    source = mapping.obs * 6 + mapping.act
    target = mapping.target_obs * 6 + mapping.target_act
    seen = {}
    for x, y in zip(source.tolist(), target.tolist()):
        assert seen.setdefault(x, y) == y
    assert len(set(seen.values())) == len(seen) and any(x != y for x, y in seen.items())
    iid = cql_pretrain_data("iid", 17, 6, store=store, seed=3, **SMALL)
    assert iid.target_dim == 17 and len(iid) == 100 and iid.target_act is None


def test_cache_key_separates_parameters(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    a = cql_pretrain_data("mdp", 11, 3, store=store, **SMALL)
    b = cql_pretrain_data("mdp", 11, 3, store=store, **dict(SMALL, length=21))
    c = cql_pretrain_data("mdp", 11, 3, store=store, transition_temperature=0.5, **SMALL)
    d = cql_pretrain_data("mdp", 17, 6, store=store, **SMALL)  # other task: same indices, other tables
    keys = {x.meta["artifact_key"] for x in (a, b, c)}
    assert len(keys) == 3 and d.meta["artifact_key"] == a.meta["artifact_key"]
    assert len(b.obs) == 105 and not np.array_equal(a.target_obs, c.target_obs)
    s1 = cql_pretrain_data("iid", 11, 3, store=store, seed=1, **SMALL)
    s2 = cql_pretrain_data("iid", 11, 3, store=store, seed=2, **SMALL)
    assert s1.meta["artifact_key"] != s2.meta["artifact_key"] and not np.array_equal(s1.obs, s2.obs)


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-complete"])
def test_corrupted_cache_is_detected_and_rebuilt(tmp_path, damage):
    store = ArtifactStore(tmp_path / "store")
    good = cql_pretrain_data("mdp", 11, 3, store=store, **SMALL)
    path = tmp_path / "store" / "artifacts" / "synthetic-cql" / good.meta["artifact_key"] / "indices.npz"
    original = path.read_bytes()
    raw = bytearray(original)
    if damage == "flip":
        raw[-200:-190] = bytes(b ^ 0xFF for b in raw[-200:-190])  # inside the last array's data
        path.write_bytes(bytes(raw))
    elif damage == "truncate":
        path.write_bytes(bytes(raw[: len(raw) // 2]))
    else:
        (path.parent / "COMPLETE").unlink()
        path.write_bytes(bytes(raw[:100]))
    again = cql_pretrain_data("mdp", 11, 3, store=store, **SMALL)
    for name in ("obs", "act", "target_obs"):
        np.testing.assert_array_equal(getattr(again, name), getattr(good, name))
    assert path.read_bytes() == original  # the damaged file was replaced, not used


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(states=0), "states"),
        (dict(actions=0), "actions"),
        (dict(policy_temperature=0.0), "policy_temperature"),
        (dict(transition_temperature=-2.0), "transition_temperature"),
        (dict(trajectories=0), "trajectories"),
    ],
)
def test_bad_mdp_parameters(kwargs, word):
    with pytest.raises(UserError, match=word):
        mdp_dataset(**dict(SMALL, **kwargs))
    with pytest.raises(UserError, match=word):
        cql_pretrain_data("mdp", 11, 3, **dict(SMALL, **kwargs))


def test_unknown_cql_variant():
    with pytest.raises(UserError, match="kind"):
        cql_pretrain_data("mdp-ish", 11, 3)
