"""Offline datasets: reading, validation, the two views, making files, the `synthrl data` verb."""

import re
import warnings

import h5py
import numpy as np
import pytest

from conftest import HOPPER_SAC, missing_shared
from synthrl.cli import main
from synthrl.data import OFFICIAL_V2, DatasetChecksumWarning, load_dataset, make_dataset, write_d4rl_hdf5
from synthrl.envs.policies import RandomPolicy, SinePolicy
from synthrl.errors import UserError


def three_episode_arrays():
    """Episode A ends terminal (3 rows), B is cut by a timeout (4 rows), C is a trailing partial (2 rows)."""
    n = 9
    obs = np.arange(n * 11, dtype=np.float32).reshape(n, 11)
    return {
        "observations": obs,
        "actions": np.linspace(-1, 1, n * 3, dtype=np.float32).reshape(n, 3),
        "rewards": np.arange(1, n + 1, dtype=np.float32),
        "terminals": np.array([0, 0, 1, 0, 0, 0, 0, 0, 0], bool),
        "timeouts": np.array([0, 0, 0, 0, 0, 0, 1, 0, 0], bool),
    }


def write(path, arrays, meta=None):
    write_d4rl_hdf5(path, arrays, meta)
    return path


def test_qlearning_view_follows_d4rl_convention(tmp_path):
    arrays = three_episode_arrays()
    ds = load_dataset(str(write(tmp_path / "three.hdf5", arrays)), env="hopper")
    q = ds.qlearning()
    # rows 0..7 are candidates (the last row has no next row); row 6 (timeout) is dropped
    kept = [0, 1, 2, 3, 4, 5, 7]
    assert set(q) == {"observations", "actions", "next_observations", "rewards", "terminals"}
    assert all(v.dtype == np.float32 for v in q.values())
    np.testing.assert_array_equal(q["observations"], arrays["observations"][kept])
    np.testing.assert_array_equal(q["next_observations"], arrays["observations"][np.array(kept) + 1])
    np.testing.assert_array_equal(q["rewards"], arrays["rewards"][kept])
    np.testing.assert_array_equal(q["actions"], arrays["actions"][kept])
    np.testing.assert_array_equal(q["terminals"], [0, 0, 1, 0, 0, 0, 0])
    # without next_observations in the file, the file-based variant falls back to the next row too
    np.testing.assert_array_equal(ds.qlearning(use_next_observations=True)["next_observations"], q["next_observations"])


def test_qlearning_uses_next_row_even_when_file_has_next_observations(tmp_path):
    arrays = three_episode_arrays()
    arrays["next_observations"] = arrays["observations"] + 0.5
    ds = load_dataset(str(write(tmp_path / "three.hdf5", arrays)), env="hopper")
    assert ds.has_next_observations
    kept = np.array([0, 1, 2, 3, 4, 5, 7])
    np.testing.assert_array_equal(ds.qlearning()["next_observations"], arrays["observations"][kept + 1])
    np.testing.assert_array_equal(ds.qlearning(use_next_observations=True)["next_observations"],
                                  arrays["next_observations"][kept])


def test_trajectories_split_on_terminals_and_timeouts(tmp_path):
    arrays = three_episode_arrays()
    ds = load_dataset(str(write(tmp_path / "three.hdf5", arrays)), env="hopper")
    trajs = ds.trajectories()
    assert [len(t["rewards"]) for t in trajs] == [3, 4, 2]
    assert set(trajs[0]) >= {"observations", "actions", "rewards", "terminals"}
    np.testing.assert_array_equal(trajs[1]["observations"], arrays["observations"][3:7])
    assert trajs[0]["terminals"][-1] and not trajs[1]["terminals"].any()
    np.testing.assert_allclose(ds.episode_returns(), [1 + 2 + 3, 4 + 5 + 6 + 7, 8 + 9])
    assert ds.num_episodes == 3 and ds.has_partial_episode
    assert ds.max_reward == 9.0
    with pytest.raises(ValueError):
        trajs[0]["observations"][0, 0] = 1.0  # views are read-only: the dataset cannot be corrupted through them


def test_state_mean_std(tmp_path):
    arrays = three_episode_arrays()
    ds = load_dataset(str(write(tmp_path / "three.hdf5", arrays)), env="hopper")
    mean, std = ds.state_mean_std()
    np.testing.assert_allclose(mean, arrays["observations"].mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, arrays["observations"].std(0), rtol=1e-6)
    _, std_eps = ds.state_mean_std(eps=1e-6)
    np.testing.assert_allclose(std_eps, std + 1e-6, rtol=1e-6)


def test_subsample_keeps_a_seeded_fraction_of_whole_trajectories(tmp_path):
    path = tmp_path / "h.hdf5"
    make_dataset("hopper", RandomPolicy(3, seed=1), 600, path, seed=1)
    ds = load_dataset(str(path))
    sub = ds.subsample(0.3, seed=5)
    assert sub.num_episodes == round(0.3 * ds.num_episodes)
    again = ds.subsample(0.3, seed=5)
    np.testing.assert_array_equal(sub.observations, again.observations)
    other = ds.subsample(0.3, seed=6)
    assert not np.array_equal(sub.observations, other.observations)
    # every kept trajectory is one of the originals, unchanged and in the original order
    originals = [t["observations"].tobytes() for t in ds.trajectories()]
    positions = [originals.index(t["observations"].tobytes()) for t in sub.trajectories()]
    assert positions == sorted(positions)
    assert ds.subsample(1.0, seed=0) is ds
    with pytest.raises(UserError, match="fraction"):
        ds.subsample(0.0, seed=0)


@pytest.mark.parametrize("env,obs_dim,act_dim", [("halfcheetah", 17, 6), ("hopper", 11, 3),
                                                 ("walker2d", 17, 6), ("ant", 111, 8)])
def test_make_write_read_round_trip(tmp_path, env, obs_dim, act_dim):
    path = make_dataset(env, SinePolicy(act_dim, seed=0), 120, tmp_path / f"{env}.hdf5", seed=2)
    ds = load_dataset(str(path))  # environment inferred from the metadata
    assert ds.env == env and (ds.obs_dim, ds.act_dim) == (obs_dim, act_dim) and len(ds) == 120
    assert ds.meta["env_id"].endswith("-v4") and ds.meta["n_transitions"] == 120
    q = ds.qlearning()
    assert len(q["rewards"]) == 119 - int(ds.timeouts[:-1].sum())
    # inside an episode the stored next observation is the next row
    inside = np.flatnonzero(~(ds.terminals | ds.timeouts)[:-1])
    np.testing.assert_array_equal(ds.next_observations[inside], ds.observations[inside + 1])
    returns = ds.episode_returns()
    stored = np.asarray(ds.meta["episode_returns"])
    np.testing.assert_allclose(returns[: len(stored)], stored, atol=1e-3)
    if env == "ant":
        assert not ds.observations[:, 27:].any() and ds.observations[:, :27].any()
    # same seed, same file contents
    again = load_dataset(str(make_dataset(env, SinePolicy(act_dim, seed=0), 120, tmp_path / "again.hdf5", seed=2)))
    np.testing.assert_array_equal(again.observations, ds.observations)


def test_load_by_name_from_d4rl_dir_and_official_checksum_warning(tmp_path, monkeypatch):
    d4rl_dir = tmp_path / "d4rl"
    write(d4rl_dir / "hopper_medium_replay-v2.hdf5", three_episode_arrays())
    with pytest.warns(DatasetChecksumWarning, match="official"):
        ds = load_dataset("hopper-medium-replay-v2")
    assert ds.name == "hopper-medium-replay-v2" and ds.env == "hopper"
    assert ds.checksum_status.startswith("MISMATCH")
    with pytest.raises(UserError, match=re.escape("walker2d_medium-v2.hdf5 not found in")):
        load_dataset("walker2d-medium-v2")
    # an unofficial name: no warning at all
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(str(write(tmp_path / "mine.hdf5", three_episode_arrays())), env="hopper")


def test_official_table_has_the_twelve_v2_files():
    assert len(OFFICIAL_V2) == 12
    for env in ("halfcheetah", "hopper", "walker2d", "ant"):
        for level in ("medium", "medium_replay", "medium_expert"):
            size, sha = OFFICIAL_V2[f"{env}_{level}-v2.hdf5"]
            assert size > 10_000_000 and re.fullmatch(r"[0-9a-f]{64}", sha)
    assert len({sha for _, sha in OFFICIAL_V2.values()}) == 12


def broken(tmp_path, change):
    arrays = three_episode_arrays()
    change(arrays)
    return str(write(tmp_path / "broken.hdf5", arrays))


@pytest.mark.parametrize("change,message", [
    (lambda a: a.pop("timeouts"), "missing key 'timeouts'"),
    (lambda a: a.__setitem__("rewards", a["rewards"][:5]), "'observations' has 9 rows but 'rewards' has 5"),
    (lambda a: a["observations"].__setitem__((4, 2), np.nan), "'observations' holds NaN (first at row 4)"),
    (lambda a: a["actions"].__setitem__((1, 0), np.inf), "'actions' holds an infinite value (first at row 1)"),
    (lambda a: a.__setitem__("observations", a["observations"][:, :5]), "'observations' are 5-dim but hopper needs 11"),
    (lambda a: a.__setitem__("observations", a["observations"][:, 0]), "expected 2 dimensions"),
])
def test_validation_errors_name_file_and_problem(tmp_path, change, message):
    path = broken(tmp_path, change)
    with pytest.raises(UserError) as err:
        load_dataset(path, env="hopper")
    assert path in str(err.value) and message in str(err.value)


def test_env_inference_and_dim_mismatch(tmp_path):
    n = 5
    arrays = {"observations": np.zeros((n, 17), np.float32), "actions": np.zeros((n, 6), np.float32),
              "rewards": np.zeros(n, np.float32), "terminals": np.zeros(n, bool), "timeouts": np.zeros(n, bool)}
    path = str(write(tmp_path / "cheetah_or_walker.hdf5", arrays))
    with pytest.raises(UserError, match="fit halfcheetah and walker2d"):
        load_dataset(path)
    assert load_dataset(path, env="walker2d").env == "walker2d"
    named = str(write(tmp_path / "ant_medium-v2.hdf5", arrays))
    with pytest.raises(UserError, match="'observations' are 17-dim but ant needs 111"):
        load_dataset(named)
    empty = {k: v[:0] for k, v in arrays.items()}
    with pytest.raises(UserError, match="no transitions"):
        load_dataset(str(write(tmp_path / "empty.hdf5", empty)), env="walker2d")


def test_not_hdf5_and_missing_file(tmp_path):
    text = tmp_path / "notes.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(UserError, match="not an HDF5 file"):
        load_dataset(str(text))
    with pytest.raises(UserError, match="not a D4RL dataset name"):
        load_dataset(str(tmp_path / "nothing.hdf5"))


def test_minari_reader(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    path = tmp_path / "minari" / "mujoco" / "hopper" / "medium-v0" / "data" / "main_data.hdf5"
    path.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        for i, (steps, terminated) in enumerate([(4, True), (3, False)]):
            g = f.create_group(f"episode_{i}")
            g["observations"] = rng.normal(size=(steps + 1, 11))
            g["actions"] = rng.uniform(-1, 1, size=(steps, 3))
            g["rewards"] = np.ones(steps)
            g["terminations"] = np.array([False] * (steps - 1) + [terminated])
            g["truncations"] = np.array([False] * (steps - 1) + [not terminated])
    ds = load_dataset("mujoco/hopper/medium-v0")
    assert ds.env == "hopper" and len(ds) == 7 and ds.num_episodes == 2
    assert ds.terminals[3] and ds.timeouts[6]
    np.testing.assert_allclose(ds.episode_returns(), [4, 3])
    assert len(ds.qlearning()["rewards"]) == 6  # rows 0..5; the timed-out row 6 is the last row anyway


def test_cli_make_then_info(tmp_path, capsys):
    out = tmp_path / "w.hdf5"
    assert main(["data", "make", "walker2d", "--policy", "random", "--steps", "50", "--out", str(out),
                 "--seed", "4", "--quiet"]) == 0
    assert main(["data", "info", str(out), "--json"]) == 0
    text = capsys.readouterr().out
    assert '"rows": 50' in text and '"env": "walker2d"' in text and '"obs_dim": 17' in text


@pytest.mark.parametrize("make_bad,message", [
    (lambda p: p.write_text("hello"), "not an HDF5 file"),
    (lambda p: write(p, {k: v for k, v in three_episode_arrays().items() if k != "rewards"}), "missing key 'rewards'"),
    (lambda p: write(p, {**three_episode_arrays(), "rewards": np.full(9, np.nan, np.float32)}), "holds NaN"),
])
def test_cli_info_refuses_bad_files_in_one_line(tmp_path, capsys, make_bad, message):
    path = tmp_path / "hopper_bad.hdf5"
    make_bad(path)
    assert main(["data", "info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and message in err and "Traceback" not in err


def test_cli_make_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["data", "make", "pendulum", "--policy", "random", "--steps", "5", "--out", str(tmp_path / "x.hdf5")])
    assert exit_.value.code == 2
    assert main(["data", "make", "hopper", "--policy", str(tmp_path / "nope"), "--steps", "5",
                 "--out", str(tmp_path / "x.hdf5")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


@pytest.mark.skipif(not HOPPER_SAC.exists(), reason=missing_shared(HOPPER_SAC))
def test_shared_hopper_sac_file():
    ds = load_dataset(str(HOPPER_SAC))
    assert ds.env == "hopper" and len(ds) == 200_000 and (ds.obs_dim, ds.act_dim) == (11, 3)
    stored = np.asarray(ds.meta["episode_returns"])
    assert ds.num_episodes == len(stored) + 1  # plus the trailing partial episode
    np.testing.assert_allclose(ds.episode_returns()[:-1], stored, atol=1e-3)
    assert ds.episode_returns()[-1] == pytest.approx(ds.meta["tail_return"], abs=1e-3)
    q = ds.qlearning()
    assert len(q["rewards"]) == 200_000 - 1 - int(ds.timeouts[:-1].sum())
    assert int(q["terminals"].sum()) == int(ds.terminals[:-1].sum())
    assert sum(len(t["rewards"]) for t in ds.trajectories()) == 200_000


def test_truncated_hdf5_file_is_refused(tmp_path):
    good = write(tmp_path / "good.hdf5", three_episode_arrays())
    data = good.read_bytes()
    cut = tmp_path / "cut.hdf5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as err:
        load_dataset(str(cut), env="hopper")
    assert str(cut) in str(err.value)
    with pytest.raises(UserError, match="is a directory"):
        load_dataset(str(tmp_path))


def check_d4rl_layout(ds, steps):
    """Invariants of a made file: exact length, consistent next rows, one partial episode at most (last)."""
    assert len(ds) == steps
    inside = np.flatnonzero(~(ds.terminals | ds.timeouts)[:-1])
    np.testing.assert_array_equal(ds.next_observations[inside], ds.observations[inside + 1])
    assert not (ds.terminals & ds.timeouts).any()
    stored = np.asarray(ds.meta["episode_returns"])
    complete = ds.num_episodes - int(ds.has_partial_episode)
    assert len(stored) == complete and ds.meta["tail_steps"] == (ds.episode_lengths()[-1] if ds.has_partial_episode else 0)
    np.testing.assert_allclose(ds.episode_returns()[:complete], stored, atol=1e-3)


def test_batched_rollouts_keep_the_d4rl_layout_and_do_not_depend_on_workers(tmp_path):
    a = load_dataset(str(make_dataset("hopper", SinePolicy(3, seed=1), 700, tmp_path / "a.hdf5", seed=3,
                                      envs=4, workers=0)))
    b = load_dataset(str(make_dataset("hopper", SinePolicy(3, seed=1), 700, tmp_path / "b.hdf5", seed=3,
                                      envs=4, workers=2)))
    check_d4rl_layout(a, 700)
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    assert a.meta["rollout_envs"] == 4
    # a time-limited environment: 1000-step episodes end in timeouts, not terminals
    c = load_dataset(str(make_dataset("halfcheetah", RandomPolicy(6, seed=0), 2500, tmp_path / "c.hdf5", seed=0,
                                      envs=2, workers=0)))
    check_d4rl_layout(c, 2500)
    assert c.timeouts.sum() == 2 and not c.terminals.any() and c.has_partial_episode
    assert list(c.episode_lengths()) == [1000, 1000, 500]
