"""Bad offline data is refused at load in one line naming the file, key, row and bound; too few rows
for one batch is refused before CQL or DT train (issue 12, item 9)."""

import warnings

import numpy as np
import pytest

from synthrl.cli import main
from synthrl.data import DatasetValueWarning, load_dataset, write_d4rl_hdf5
from synthrl.errors import UserError


def hopper_arrays(n=120, seed=0):
    """A sound hopper-shaped file: episodes of 40 steps cut by time-outs."""
    rng = np.random.default_rng(seed)
    arrays = {
        "observations": rng.normal(size=(n, 11)).astype(np.float32),
        "actions": rng.uniform(-1, 1, size=(n, 3)).astype(np.float32),
        "rewards": rng.uniform(0, 1, size=n).astype(np.float32),
        "terminals": np.zeros(n, bool),
        "timeouts": np.zeros(n, bool),
    }
    arrays["timeouts"][39::40] = True
    return arrays


def write(tmp_path, change=None, n=120, name="hopper_bad.hdf5"):
    arrays = hopper_arrays(n)
    if change is not None:
        change(arrays)
    return str(write_d4rl_hdf5(tmp_path / name, arrays))


def set_value(key, index, value):
    return lambda a: a[key].__setitem__(index, value)


@pytest.mark.parametrize("change,message", [
    (lambda a: a.__setitem__("observations", a["observations"] * np.float32(1e30)), "'observations' holds"),
    (set_value("rewards", 57, 3e7), "'rewards' holds 3e+07 at row 57, outside the bound: expected |value| <= 1e+06"),
    (lambda a: a.__setitem__("next_observations", np.full((120, 11), 2e6, np.float32)),
     "'next_observations' holds 2e+06 at row 0 (column 0), outside the bound"),
    (set_value("actions", (17, 1), 23.5),
     "'actions' holds 23.5 at row 17 (column 1), outside the bound: expected actions in [-1, 1] (tolerance 0.001)"),
    (set_value("actions", (90, 2), -1.01), "'actions' holds -1.01 at row 90 (column 2)"),
])
def test_absurd_values_are_refused_naming_key_row_and_bound(tmp_path, change, message):
    path = write(tmp_path, change)
    with pytest.raises(UserError) as err:
        load_dataset(path)
    assert path in str(err.value) and message in str(err.value)


def test_actions_slightly_outside_the_box_warn_with_their_count(tmp_path):
    def nudge(a):
        a["actions"][5, 0] = 1.0004
        a["actions"][60, 2] = -1.0009
        a["actions"][61, 1] = 1.0
    path = write(tmp_path, nudge)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_dataset(path)
    messages = [str(w.message) for w in caught if issubclass(w.category, DatasetValueWarning)]
    assert len(messages) == 1
    assert path in messages[0] and "2 action value(s) slightly outside [-1, 1] (first at row 5" in messages[0]
    assert float(ds.actions[60, 2]) == pytest.approx(-1.0009)  # kept: nothing is changed behind the user's back
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sound file loads without a word
        load_dataset(write(tmp_path, name="hopper_sound.hdf5"))


def run_cli(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


CQL_TINY = ["--updates", "60", "--eval-every", "20", "--eval-episodes", "1", "--batch-size", "32", "--no-progress",
            "--device", "cpu"]
DT_TINY = ["--pretrained", "none", "--updates", "4", "--eval-every", "2", "--eval-episodes", "1", "--batch-size", "8",
           "--context", "4", "--device", "cpu", "--eval-workers", "0", "--no-progress"]


@pytest.mark.parametrize("n,change,message", [
    (1, None, "0 Q-learning transitions (of 1 rows, 0 with a time-out"),
    (10, lambda a: a["timeouts"].fill(True), "0 Q-learning transitions (of 10 rows, 10 with a time-out"),
    (20, None, "19 Q-learning transitions (of 20 rows, 0 with a time-out; the last row and time-out rows have "
               "no next state), fewer than one batch of 32; use a larger dataset or a batch size of at most 19"),
])
def test_cql_refuses_too_few_transitions_for_one_batch(tmp_path, capsys, n, change, message):
    path = write(tmp_path, change, n=n)
    code, err = run_cli(["run", "cql", "--dataset", path, "--out", str(tmp_path / "run"), *CQL_TINY], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert path in err and message in err


def test_cql_counts_the_transitions_left_by_the_finetune_ratio(tmp_path, capsys):
    path = write(tmp_path, n=120)  # 3 episodes of 40 rows: a ratio of 0.3 keeps one (39 transitions)
    code, err = run_cli(["run", "cql", "--dataset", path, "--out", str(tmp_path / "run"), "--finetune-ratio", "0.3",
                         *CQL_TINY, "--batch-size", "64"], capsys)
    assert code == 2 and "39 Q-learning transitions" in err and "--finetune-ratio 0.3 kept 1 episode(s)" in err


def test_dt_gets_the_same_checks(tmp_path, capsys):
    tiny = write(tmp_path, n=5, name="hopper_tiny.hdf5")
    code, err = run_cli(["run", "dt", "--dataset", tiny, "--out", str(tmp_path / "a"), *DT_TINY], capsys)
    assert code == 2 and tiny in err and "5 rows to start DT windows at, fewer than one batch of 8" in err
    flipped = write(tmp_path, set_value("actions", (3, 0), 23.5), name="hopper_flipped.hdf5")
    code, err = run_cli(["run", "dt", "--dataset", flipped, "--out", str(tmp_path / "b"), *DT_TINY], capsys)
    assert code == 2 and err.count("\n") == 1 and "'actions' holds 23.5 at row 3 (column 0)" in err
