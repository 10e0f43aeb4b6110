"""Saved policies: this project's own trained CQL, DT and IQL runs act in `synthrl data make ENV --policy RUN_DIR`."""

import numpy as np
import pytest

from synthrl.cli import main
from synthrl.data import load_dataset
from synthrl.envs.policies import load_policy
from synthrl.errors import UserError
from synthrl.rundir import RunDir


@pytest.fixture(scope="module")
def hopper_file(tmp_path_factory):
    from synthrl.data import make_dataset
    from synthrl.envs.policies import RandomPolicy

    out = tmp_path_factory.mktemp("data") / "hopper-random-saved.hdf5"
    return str(make_dataset("hopper", RandomPolicy(3, seed=0), 300, out, seed=0))


@pytest.fixture(scope="module")
def cql_run(hopper_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("cql") / "run"
    with pytest.MonkeyPatch.context() as mp:  # module scope: keep off the user's store, evaluate in-process
        mp.setenv("SYNTHRL_STORE", str(out.parent / "store"))
        mp.setenv("SYNTHRL_EVAL_WORKERS", "0")
        assert main(["run", "cql", "--dataset", hopper_file, "--out", str(out), "--seeds", "0,1", "--updates", "6",
                     "--eval-every", "6", "--eval-episodes", "1", "--batch-size", "16", "--device", "cpu",
                     "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def dt_run(hopper_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("dt") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHRL_STORE", str(out.parent / "store"))
        assert main(["run", "dt", "--dataset", hopper_file, "--out", str(out), "--seeds", "0-1", "--updates", "2",
                     "--eval-every", "2", "--eval-episodes", "1", "--batch-size", "4", "--context", "4",
                     "--warmup-steps", "1", "--device", "cpu", "--eval-workers", "0", "--no-progress"]) == 0
    return out


def _make(run, out, *extra):
    return main(["data", "make", "hopper", "--policy", str(run), "--steps", "300", "--out", str(out), "--quiet",
                 *extra])


def test_data_make_with_a_trained_cql_run(cql_run, tmp_path):
    out = tmp_path / "cql-medium.hdf5"
    assert _make(cql_run, out, "--member", "1") == 0
    ds = load_dataset(str(out))
    assert ds.env == "hopper" and len(ds.rewards) == 300 and ds.obs_dim == 11 and ds.act_dim == 3
    # the recorded actions are member 1's deterministic actions on the recorded observations
    policy = load_policy(cql_run, member=1)
    assert np.allclose(policy.act(ds.observations, np.zeros(300, np.float32)), ds.actions, atol=1e-5)
    other = load_policy(cql_run / "checkpoint", member=0)  # a folder inside the run works too
    assert not np.allclose(other.act(ds.observations, np.zeros(300, np.float32)), ds.actions, atol=1e-3)


def assert_members_act_as_the_ensemble(run_dir, ensemble, obs_scale: float, distinct_atol: float) -> None:
    """Each member loaded by load_policy acts as the runner's evaluation policy on its slice of episodes
    (and the two members differ)."""
    from synthrl.cql.runner import EnsemblePolicy

    episodes = 4
    obs = np.random.default_rng(1).normal(size=(2 * episodes, 11)).astype(np.float32) * obs_scale
    evaluation = EnsemblePolicy(ensemble, episodes)
    evaluation.reset(2 * episodes)
    expected = evaluation.act(obs, np.zeros(2 * episodes, np.float32))
    for member in (0, 1):
        rows = slice(member * episodes, (member + 1) * episodes)
        got = load_policy(run_dir, member=member).act(obs[rows], np.zeros(episodes, np.float32))
        assert got.shape == (episodes, 3) and np.allclose(got, expected[rows], atol=1e-6)
    assert not np.allclose(expected[:episodes], expected[episodes:], atol=distinct_atol)


def test_cql_policy_acts_as_the_runners_evaluation_policy(cql_run):
    from synthrl.cql.config import CQLConfig
    from synthrl.cql.runner import make_runner
    from synthrl.store import ArtifactStore

    run = RunDir(cql_run)
    runner = make_runner(CQLConfig.from_dict({**run.read_params()["config"], "device": "cpu"}), ArtifactStore(),
                         progress=False)
    runner.load_state_dict(run.load_checkpoint()["runner"])
    assert_members_act_as_the_ensemble(cql_run, runner.ensemble, obs_scale=1.0, distinct_atol=1e-3)


@pytest.fixture(scope="module")
def iql_run(hopper_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("iql") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHRL_STORE", str(out.parent / "store"))
        mp.setenv("SYNTHRL_EVAL_WORKERS", "0")
        assert main(["run", "iql", "--dataset", hopper_file, "--out", str(out), "--seeds", "0,1", "--updates", "6",
                     "--eval-every", "6", "--eval-episodes", "1", "--batch-size", "16", "--device", "cpu",
                     "--no-progress"]) == 0
    return out


def test_iql_run_acts_as_the_runners_evaluation_policy_and_makes_data(iql_run, tmp_path):
    """Member 1 of an IQL run: its mean action on observations normalised by the run's statistics, as the
    runner's evaluation acts; `data make --policy RUN` records those actions."""
    from synthrl.iql import IQLConfig, make_runner
    from synthrl.store import ArtifactStore

    run = RunDir(iql_run)
    config = IQLConfig(**{**run.read_params()["config"], "device": "cpu"})
    runner = make_runner(config, ArtifactStore(tmp_path / "store"), progress=False)
    runner.load_state_dict(run.load_checkpoint()["runner"])
    assert_members_act_as_the_ensemble(iql_run, runner.ensemble, obs_scale=3.0, distinct_atol=1e-4)

    out = tmp_path / "iql-data.hdf5"
    assert _make(iql_run, out, "--member", "1") == 0
    ds = load_dataset(str(out))
    policy = load_policy(iql_run / "checkpoint", member=1)
    assert len(ds.rewards) == 300 and np.allclose(policy.act(ds.observations, np.zeros(300, np.float32)), ds.actions,
                                                  atol=1e-5)
    with pytest.raises(UserError, match="trained on hopper \\(11-dim"):
        policy.act(np.zeros((1, 17), np.float32), np.zeros(1, np.float32))


def test_data_make_with_a_trained_dt_run(dt_run, tmp_path):
    out = tmp_path / "dt-medium.hdf5"
    assert _make(dt_run, out, "--member", "1", "--envs", "3", "--workers", "0") == 0
    ds = load_dataset(str(out))
    assert ds.env == "hopper" and len(ds.rewards) == 300 and ds.obs_dim == 11
    assert np.all(np.abs(ds.actions) <= 1.0) and len(ds.trajectories()) >= 3


def test_dt_policy_acts_as_the_runners_evaluation_policy(hopper_file, tmp_path):
    """A pre-trained DT (the transferred-backbone model): member 1 alone gives the runner's evaluation actions."""
    from synthrl.dt.config import BackboneConfig, DTConfig, DTPretrainConfig
    from synthrl.dt.runner import DTEnsemblePolicy, make_runner, run_params
    from synthrl.runner import drive

    tiny = BackboneConfig(n_layer=1, n_head=2, n_embd=16, n_inner=32, n_positions=64)
    pre = DTPretrainConfig.with_defaults_for(3, states=10, seq_len=16, batch_size=2, warmup_steps=1, device="cpu",
                                             backbone=tiny)
    config = DTConfig(dataset=hopper_file, seeds=[3, 5], pretrain=pre, pretrain_step=3, updates=3, eval_every=3,
                      eval_episodes=1, context=4, batch_size=4, warmup_steps=1, device="cpu", eval_workers=0)
    runner = make_runner(config, None)
    run = RunDir(tmp_path / "run")
    run.write_params(run_params(config))
    drive(runner, run, progress=False)

    policy = load_policy(run.path, member=1)
    assert policy.target == 3600.0  # hopper's primary target return
    episodes = 3
    evaluation = DTEnsemblePolicy(runner, (3600.0,), episodes)
    evaluation.reset(2 * episodes)
    policy.reset(episodes)
    rng = np.random.default_rng(2)
    rewards = np.zeros(2 * episodes, np.float32)
    for _ in range(6):  # past the context of 4: the history window slides
        obs = rng.normal(size=(2 * episodes, 11)).astype(np.float32)
        expected = evaluation.act(obs, rewards).numpy()
        got = policy.act(obs[episodes:], rewards[episodes:])
        assert got.shape == (episodes, 3) and np.allclose(got, expected[episodes:], atol=1e-5)
        rewards = rng.uniform(0, 3, size=2 * episodes).astype(np.float32)
    assert not np.allclose(expected[:episodes], expected[episodes:], atol=1e-4)


def test_bad_member_and_non_run_directories_are_one_line_errors(cql_run, dt_run, tmp_path, capsys):
    for run in (cql_run, dt_run):
        assert _make(run, tmp_path / "x.hdf5", "--member", "2") == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "--member 2" in err and "2 member(s)" in err and "Traceback" not in err
    empty = tmp_path / "not-a-run"
    empty.mkdir()
    assert _make(empty, tmp_path / "y.hdf5") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not a run directory" in err
    assert not (tmp_path / "x.hdf5").exists() and not (tmp_path / "y.hdf5").exists()
    with pytest.raises(UserError, match="trained on hopper \\(11-dim"):  # a hopper agent in another environment
        policy = load_policy(cql_run)
        policy.reset(1)
        policy.act(np.zeros((1, 17), np.float32), np.zeros(1, np.float32))
