"""Evaluation environments: specs, normalised scores, D4RL layouts, seeded batched evaluation."""

import importlib
import json

import numpy as np
import pytest

from synthrl.envs import ENVS, episode_seeds, evaluate, make_env, normalized_score
from synthrl.envs.policies import load_policy
from synthrl.errors import UserError


def test_normalized_score_constants():
    expected = {"halfcheetah": (-280.178953, 12135.0), "hopper": (-20.272305, 3234.3),
                "walker2d": (1.629008, 4592.3), "ant": (-325.6, 3879.7)}
    for env, (lo, hi) in expected.items():
        np.testing.assert_allclose(normalized_score(env, [lo, hi, (lo + hi) / 2]), [0.0, 100.0, 50.0], atol=1e-9)
    assert normalized_score("hopper", 1617.0) == pytest.approx(100 * (1617.0 + 20.272305) / (3234.3 + 20.272305))
    assert normalized_score("Hopper-v4", [[3234.3]]).shape == (1, 1)
    with pytest.raises(UserError, match="expected one of"):
        normalized_score("pendulum", 1.0)


@pytest.mark.parametrize("env", list(ENVS))
def test_make_env_matches_d4rl_dims(env):
    spec = ENVS[env]
    e = make_env(env)
    obs, _ = e.reset(seed=0)
    assert obs.shape == (spec.obs_dim,) and e.action_space.shape == (spec.act_dim,)
    assert e.spec.max_episode_steps == 1000 and e.spec.id == f"{spec.gym_name}-v4"
    obs, *_ = e.step(e.action_space.sample())
    assert obs.shape == (spec.obs_dim,)


def test_ant_is_padded_to_111_with_zeros_in_v4_and_v5():
    for version in ("v4", "v5"):
        e = make_env("ant", version)
        obs, _ = e.reset(seed=1)
        for _ in range(5):
            obs, *_ = e.step(np.ones(8, np.float32))
        assert obs.shape == (111,) and not obs[27:].any() and np.abs(obs[:27]).sum() > 0
        assert e.observation_space.shape == (111,)


def test_make_env_rejects_unknown_names_and_versions():
    with pytest.raises(UserError, match="expected one of"):
        make_env("swimmer")
    with pytest.raises(UserError, match="v4, v5"):
        make_env("hopper", "v3")


def test_episode_seeds_are_a_pure_function_of_run_seed_and_eval_index():
    a = episode_seeds(3, 7, 10)
    np.testing.assert_array_equal(a, episode_seeds(3, 7, 10))
    assert len(set(a.tolist())) == 10
    assert not np.array_equal(a, episode_seeds(3, 8, 10))
    assert not np.array_equal(a, episode_seeds(4, 7, 10))
    np.testing.assert_array_equal(episode_seeds(3, 7, 4), a[:4])  # more episodes extend, never reshuffle


class LinearPolicy:
    """Deterministic tanh(W obs) that records how the evaluator calls it."""

    def __init__(self, obs_dim, act_dim, seed=0):
        self.w = np.random.default_rng(seed).normal(scale=0.3, size=(obs_dim, act_dim)).astype(np.float32)
        self.resets, self.first_rewards, self.calls, self.reward_log = [], None, 0, []

    def reset(self, num_envs):
        self.resets.append(num_envs)
        self.calls = 0

    def act(self, obs, last_rewards):
        assert obs.dtype == np.float32 and last_rewards.shape == (obs.shape[0],)
        if self.calls == 0:
            self.first_rewards = last_rewards.copy()
        self.reward_log.append(last_rewards.copy())
        self.calls += 1
        # elementwise, not a matmul: BLAS may round differently for different batch sizes
        return np.tanh((obs[:, :, None] * self.w[None]).sum(axis=1))


def test_evaluation_is_repeatable_and_batched():
    policy = LinearPolicy(11, 3)
    first = evaluate("hopper", policy, member_seeds=[0, 1], episodes=3, eval_index=0, workers=0)
    assert policy.resets == [6] and not policy.first_rewards.any()
    assert first.returns.shape == first.normalized.shape == first.lengths.shape == (2, 3)
    assert first.env_id == "Hopper-v4" and (first.lengths >= 1).all() and (first.lengths <= 1000).all()
    np.testing.assert_allclose(first.normalized, normalized_score("hopper", first.returns))
    np.testing.assert_array_equal(first.seeds[1], episode_seeds(1, 0, 3))
    # last_rewards are the previous step's rewards: their per-row sum over the episode is the return
    summed = np.sum(policy.reward_log, axis=0).reshape(2, 3)
    np.testing.assert_allclose(summed[first.lengths < policy.calls], first.returns[first.lengths < policy.calls],
                               rtol=1e-5)
    again = evaluate("hopper", LinearPolicy(11, 3), member_seeds=[0, 1], episodes=3, eval_index=0, workers=0)
    np.testing.assert_array_equal(again.returns, first.returns)
    other = evaluate("hopper", LinearPolicy(11, 3), member_seeds=[0, 1], episodes=3, eval_index=1, workers=0)
    assert not np.array_equal(other.returns, first.returns)


def test_worker_processes_give_the_same_returns_as_in_process():
    local = evaluate("halfcheetah", LinearPolicy(17, 6, seed=2), member_seeds=[5], episodes=3, eval_index=2,
                     workers=0)
    pooled = evaluate("halfcheetah", LinearPolicy(17, 6, seed=2), member_seeds=[5], episodes=3, eval_index=2,
                      workers=2)
    assert pooled.workers == 2 and (pooled.lengths == 1000).all()
    np.testing.assert_allclose(pooled.returns, local.returns, rtol=0, atol=1e-9)
    # the pool persists: a second evaluation reuses the same worker processes
    from synthrl.envs.evaluate import _POOLS

    pids = [p.pid for p in _POOLS[("halfcheetah", "v4", 2)].procs]
    evaluate("halfcheetah", LinearPolicy(17, 6), member_seeds=[1], episodes=2, eval_index=0, workers=2)
    assert [p.pid for p in _POOLS[("halfcheetah", "v4", 2)].procs] == pids


def test_evaluate_rejects_bad_policy_output():
    class Wrong:
        def reset(self, n):
            pass

        def act(self, obs, last_rewards):
            return np.zeros((len(obs), 2))

    with pytest.raises(ValueError, match="shape"):
        evaluate("hopper", Wrong(), [0], 1, 0, workers=0)


def test_load_policy_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_policy(tmp_path / "missing")
    with pytest.raises(UserError, match="no params.json"):
        load_policy(tmp_path)
    (tmp_path / "params.json").write_text(json.dumps({"algorithm": "ppo"}))
    with pytest.raises(UserError, match=r"params.json: field 'algorithm' must be one of cql, dt, .*got 'ppo'"):
        load_policy(tmp_path)   # the registered algorithms, named


@pytest.mark.parametrize("env", ["hopper", "ant"])
def test_evaluate_matches_a_plain_gymnasium_loop(env):
    """The evaluator steps unwrapped envs for speed; it must give what make_env's wrapped env gives."""
    spec = ENVS[env]
    result = evaluate(env, LinearPolicy(spec.obs_dim, spec.act_dim, seed=3), [9], 2, eval_index=4, workers=0)
    policy = LinearPolicy(spec.obs_dim, spec.act_dim, seed=3)
    for k, seed in enumerate(episode_seeds(9, 4, 2)):
        e = make_env(env)
        obs, _ = e.reset(seed=int(seed))
        total, steps, done = 0.0, 0, False
        while not done:
            action = np.clip(policy.act(obs[None].astype(np.float32), np.zeros(1, np.float32))[0], -1, 1)
            obs, reward, terminated, truncated, _ = e.step(action)
            total, steps, done = total + reward, steps + 1, terminated or truncated
        assert steps == result.lengths[0, k]
        assert total == pytest.approx(result.returns[0, k], abs=1e-9)


def test_evaluate_async_gives_the_same_result_in_the_background():
    from synthrl.envs import evaluate_async

    future = evaluate_async("hopper", LinearPolicy(11, 3, seed=1), [2], 2, eval_index=0, workers=0)
    direct = evaluate("hopper", LinearPolicy(11, 3, seed=1), [2], 2, eval_index=0, workers=0)
    np.testing.assert_array_equal(future.result(timeout=120).returns, direct.returns)


def test_saved_policy_dispatch_to_the_algorithm_package(tmp_path, monkeypatch, capsys):
    """`data make --policy RUN_DIR` loads the run's policy through synthrl.<algorithm>.policy.load_policy."""
    import sys
    import types

    from synthrl.cli import main
    from synthrl.data import load_dataset
    from synthrl.envs.policies import RandomPolicy

    calls = []

    def fake_load_policy(run_dir, *, member, device):
        calls.append((run_dir, member, device))
        return RandomPolicy(3, seed=0)

    monkeypatch.setitem(sys.modules, "synthrl.cql.policy", types.SimpleNamespace(load_policy=fake_load_policy))
    run_dir = tmp_path / "run"
    (run_dir / "checkpoint").mkdir(parents=True)
    (run_dir / "params.json").write_text(json.dumps({"algorithm": "cql"}))
    out = tmp_path / "medium.hdf5"
    code = main(["data", "make", "hopper", "--policy", str(run_dir / "checkpoint"), "--steps", "30",
                 "--out", str(out), "--member", "1", "--noise", "0.1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert calls == [(run_dir, 1, "cpu")]
    ds = load_dataset(str(out))
    assert len(ds) == 30 and "saved run" in ds.meta["policy"] and "noise 0.1" in ds.meta["policy"]


def test_worker_count_from_the_free_cores():
    from synthrl.envs.evaluate import workers_for

    # one core left after this process's own: stepping in-process beats a worker's round trips
    assert workers_for(200, cpus=2) == 0 and workers_for(200, cpus=1) == 0
    assert workers_for(200, cpus=3) == 2 and workers_for(200, cpus=16) == 15
    assert workers_for(200, cpus=3, busy=2) == 0 and workers_for(200, cpus=16, busy=2) == 14  # beside training
    assert workers_for(3, cpus=16) == 3  # never more than one per environment


def test_default_worker_count(monkeypatch):
    E = importlib.import_module("synthrl.envs.evaluate")  # the module (synthrl.envs.evaluate is also the function)
    from synthrl.envs.evaluate import default_workers

    monkeypatch.delenv("SYNTHRL_EVAL_WORKERS", raising=False)
    monkeypatch.setattr(E, "usable_cpus", lambda: 2)  # the CI machine: 2 cores
    assert default_workers(200) == 0 and default_workers(1) == 0
    monkeypatch.setattr(E, "usable_cpus", lambda: 8)
    assert default_workers(200) == 7 and default_workers(200, busy=2) == 6
    monkeypatch.setenv("SYNTHRL_EVAL_WORKERS", "3")  # explicit counts are honoured, even on 2 cores
    assert default_workers(200) == 3 and default_workers(2) == 2
    monkeypatch.setenv("SYNTHRL_EVAL_WORKERS", "0")
    assert default_workers(200) == 0
    monkeypatch.setenv("SYNTHRL_EVAL_WORKERS", "many")
    with pytest.raises(UserError, match="SYNTHRL_EVAL_WORKERS"):
        default_workers(200)


def test_evaluation_picks_its_workers_from_the_free_cores(monkeypatch):
    from synthrl.envs import evaluate_async

    E = importlib.import_module("synthrl.envs.evaluate")  # the module (synthrl.envs.evaluate is also the function)

    monkeypatch.delenv("SYNTHRL_EVAL_WORKERS", raising=False)
    monkeypatch.setattr(E, "usable_cpus", lambda: 2)
    assert evaluate("hopper", LinearPolicy(11, 3), [0], 2, eval_index=0).workers == 0  # in-process on 2 cores
    monkeypatch.setattr(E, "usable_cpus", lambda: 3)  # 2 free, but training holds one beside a background evaluation
    assert evaluate_async("hopper", LinearPolicy(11, 3), [0], 2, eval_index=0).result().workers == 0


def test_a_failing_worker_is_reported_and_the_pool_replaced():
    from synthrl.envs.evaluate import get_pool

    pool = get_pool("hopper", "v4", 1)
    pool.reset(np.array([1, 2]))
    pool.conns[0].send_bytes(b"S" + b"\x00" * 5)  # not a whole number of float32 action rows
    with pytest.raises(RuntimeError, match="worker 0 for hopper failed"):
        pool._receive(0)
    assert not pool.alive
    result = evaluate("hopper", LinearPolicy(11, 3), [0], 2, 0, workers=1)  # a fresh pool takes over
    assert get_pool("hopper", "v4", 1) is not pool and result.returns.shape == (1, 2)
