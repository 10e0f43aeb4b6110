"""``synthrl synth``: files, statistics, reproducibility, one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from synthrl.cli import main
from synthrl.synthetic import mdp_dataset, mc_row


def synth(*argv) -> int:
    try:
        return main(["synth", *map(str, argv)])
    except SystemExit as e:  # argparse errors
        return e.code


def load(path):
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    return arrays, json.loads(str(arrays.pop("meta")))


def test_mc_tokens_file_statistics_and_reproducibility(tmp_path, capsys):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert synth("mc", "--out", a, "--states", 10, "--sequences", 6, "--length", 300, "--temperature", 0.5) == 0
    out = capsys.readouterr().out
    assert str(a) in out and "row entropy" in out and "visit counts" in out and "10/10 tokens" in out
    assert synth("mc", "--out", b, "--states", 10, "--sequences", 6, "--length", 300, "--temperature", 0.5) == 0
    arrays, meta = load(a)
    assert set(arrays) == {"tokens"} and arrays["tokens"].shape == (6, 300)
    assert meta["states"] == 10 and meta["temperature"] == 0.5 and meta["row_source"] == "reference"
    assert meta["seed"] == 666 and meta["sequences"] == 6
    assert np.array_equal(arrays["tokens"], load(b)[0]["tokens"])
    # a different seed changes the data
    synth("mc", "--out", b, "--states", 10, "--sequences", 6, "--length", 300, "--temperature", 0.5, "--seed", 1)
    assert not np.array_equal(arrays["tokens"], load(b)[0]["tokens"])
    # the rows the tokens follow are the reference rows of the seed
    t = arrays["tokens"].astype(np.int64)
    counts = np.zeros((10, 10))
    np.add.at(counts, (t[:, :-1].ravel(), t[:, 1:].ravel()), 1)
    top = counts.argmax(1)
    expected_top = np.array([mc_row(s, 10, 0.5).argmax() for s in range(10)])
    assert np.mean(top == expected_top) >= 0.5


def test_identity_and_mapping_files(tmp_path, capsys):
    for kind in ("identity", "mapping"):
        path = tmp_path / f"{kind}.npz"
        assert synth(kind, "--out", path, "--sequences", 3, "--length", 20) == 0
        arrays, meta = load(path)
        assert arrays["tokens"].shape == arrays["targets"].shape == (3, 20)
        assert meta["kind"] == kind and meta["states"] == 3500
        same = np.array_equal(arrays["tokens"], arrays["targets"])
        assert same == (kind == "identity")


def test_mdp_file_matches_the_api(tmp_path, capsys):
    path = tmp_path / "mdp.npz"
    args = ["--states", 9, "--actions", 4, "--trajectories", 3, "--length", 7]
    assert synth("mdp", "--out", path, *args, "--transition-temperature", "inf", "--random-start") == 0
    out = capsys.readouterr().out
    assert "21 transitions" in out and "row entropy" in out
    arrays, meta = load(path)
    expected = mdp_dataset(9, 4, 3, 7, 1.0, float("inf"), True)
    for name, values in zip(("obs", "act", "next_obs"), expected):
        np.testing.assert_array_equal(arrays[name], values)
    assert meta["transition_temperature"] == "inf" and meta["random_start"] is True
    iid = tmp_path / "iid.npz"
    assert synth("mdp-iid", "--out", iid, *args, "--seed", 5) == 0
    arrays, meta = load(iid)
    assert arrays["obs"].shape == (21,) and meta["seed"] == 5


@pytest.mark.parametrize(
    "argv,option",
    [
        (["mc", "--states", 1], "--states"),
        (["iid", "--states", 1], "--states"),
        (["mc", "--order", 0], "--order"),
        (["mc", "--temperature", 0], "--temperature"),
        (["mc", "--temperature", -1], "--temperature"),
        (["mdp", "--states", 0], "--states"),
        (["mdp", "--actions", 0], "--actions"),
        (["mdp", "--policy-temperature", 0], "--policy-temperature"),
        (["mdp", "--order", 2], "--order"),
        (["markov"], "KIND"),
    ],
)
def test_bad_options_print_one_line_and_exit_2(tmp_path, capsys, argv, option):
    code = synth(argv[0], "--out", tmp_path / "x.npz", *argv[1:])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and option in err and "Traceback" not in err
    assert not (tmp_path / "x.npz").exists()


def test_command_line_error_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "synthrl", "synth", "mc", "--out", str(tmp_path / "x.npz"),
                             "--states", "1"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--states" in result.stderr and "Traceback" not in result.stderr


def test_large_vocabulary_and_high_order_files(tmp_path, capsys):
    path = tmp_path / "big.npz"
    assert synth("mc", "--out", path, "--states", 100_000, "--sequences", 2, "--length", 64) == 0
    arrays, meta = load(path)
    assert meta["row_source"] == "counter-hash-v1" and arrays["tokens"].max() < 100_000
    assert synth("mc", "--out", path, "--states", 20, "--order", 5, "--sequences", 2, "--length", 64,
                 "--temperature", "inf") == 0
    arrays, meta = load(path)
    assert meta["order"] == 5 and meta["temperature"] == "inf" and arrays["tokens"].shape == (2, 64)
