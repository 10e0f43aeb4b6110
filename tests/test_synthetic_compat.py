"""Compat mode: the reference generator's own token streams, bit for bit (spec: synthetic-data.md 1.2, 1.3)."""

import json

import numpy as np
import pytest

import synthrl.synthetic.compat as compat
from synthrl.cli import main
from synthrl.errors import UserError
from synthrl.synthetic.compat import compat_iid_tokens, compat_mc_tokens


def spec_row(context, M, tau, sigma):
    """The spec's row, written out here: softmax(default_rng([c+1+σ, …]).random(M) / τ) in float64."""
    z = np.random.default_rng([c + 1 + sigma for c in context]).random(M) / tau
    e = np.exp(z - z.max())
    return e / e.sum()


def spec_streams(M, n, tau, sigma, W, b, iterations, L):
    """The reference loop as the spec states it: a fresh generator per (iteration, position, worker)."""
    z = np.random.default_rng(sigma).random(M) / tau
    p0 = np.exp(z - z.max())
    p0 /= p0.sum()
    out = []
    for i in range(iterations):
        for w in range(W):
            seqs = np.zeros((b, L), np.int64)
            for t in range(L):
                rng = np.random.default_rng(sigma + i * L * W + W * t + w)
                if t == 0:
                    seqs[:, 0] = rng.choice(M, size=b, p=p0)
                    continue
                for j in range(b):  # row by row from the one stream
                    context = seqs[j, max(0, t - n):t].tolist()
                    seqs[j, t] = rng.multinomial(1, spec_row(context, M, tau, sigma)).argmax()
            out.append(seqs)
    return np.concatenate(out)


@pytest.mark.parametrize("M, n, tau, W, b, iterations, L", [
    (10, 1, 1.0, 2, 3, 2, 12),    # tabulated rows
    (7, 2, 0.5, 1, 4, 1, 10),     # order 2: cached rows, shorter context at position 1
    (5, 3, 0.1, 3, 2, 1, 9),
])
def test_compat_streams_equal_the_reference_loop(M, n, tau, W, b, iterations, L):
    got = compat_mc_tokens(M, n, tau, 666, workers=W, rows_per_worker=b, iterations=iterations, length=L)
    want = spec_streams(M, n, tau, 666, W, b, iterations, L)
    assert got.shape == (iterations * W * b, L)
    assert np.array_equal(got, want)


def test_cached_rows_equal_tabulated_rows(monkeypatch):
    table = compat_mc_tokens(12, 1, 0.3, 5, workers=2, rows_per_worker=3, length=20)
    monkeypatch.setattr(compat, "TABLE_MAX_STATES", 0)
    monkeypatch.setattr(compat, "ROW_CACHE_ROWS", 4)  # evictions happen too
    assert np.array_equal(compat_mc_tokens(12, 1, 0.3, 5, workers=2, rows_per_worker=3, length=20), table)


def test_seed_formula_separates_iterations_and_workers():
    # same (position, worker) seeds in different iterations must differ: i·L·W shifts every stream
    a = compat_mc_tokens(50, 1, 1.0, 666, workers=2, rows_per_worker=4, iterations=2, length=16)
    assert not np.array_equal(a[:8], a[8:])
    assert not np.array_equal(a[:4], a[4:8])


def test_bad_parameters_name_the_parameter():
    with pytest.raises(UserError, match="workers"):
        compat_mc_tokens(10, workers=0)
    with pytest.raises(UserError, match="states"):
        compat_mc_tokens(1)


def test_cli_compat_writes_the_reference_tokens(tmp_path, capsys):
    out = tmp_path / "c.npz"
    assert main(["synth", "mc", "--out", str(out), "--compat", "--states", "10", "--sequences", "12",
                 "--workers", "2", "--rows-per-worker", "3", "--length", "15"]) == 0
    assert "12 sequences x 15 tokens" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as data:
        tokens, meta = data["tokens"], json.loads(str(data["meta"]))
    assert meta["sampler"] == "compat" and meta["workers"] == 2 and meta["rows_per_worker"] == 3
    assert np.array_equal(tokens, spec_streams(10, 1, 1.0, 666, 2, 3, 2, 15))


@pytest.mark.parametrize("argv, message", [
    (["--compat", "--sequences", "9", "--workers", "2"], "--sequences"),
    (["--workers", "2"], "--workers: applies only with --compat"),
    (["--compat", "--device", "cuda"], "--device"),
])
def test_cli_compat_errors_are_one_line(tmp_path, capsys, argv, message):
    assert main(["synth", "mc", "--out", str(tmp_path / "x.npz"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


# -- IID uniform tokens (spec 1.3) ------------------------------------------------------------------

def spec_iid_streams(M, sigma, W, b, iterations, L):
    """The reference loop as the spec states it: one fresh generator per (iteration, worker) draws b x L."""
    out = []
    for i in range(iterations):
        for w in range(W):
            rng = np.random.default_rng(sigma + i * W + w)
            out.append(rng.multinomial(1, [1 / M] * M, size=(b, L)).argmax(-1))
    return np.concatenate(out)


@pytest.mark.parametrize("M, sigma, W, b, iterations, L", [
    (100, 666, 1, 4, 1, 32),
    (10, 666, 3, 2, 2, 17),
    (7, 5, 2, 3, 3, 9),
])
def test_compat_iid_streams_equal_the_reference_loop(M, sigma, W, b, iterations, L):
    got = compat_iid_tokens(M, sigma, workers=W, rows_per_worker=b, iterations=iterations, length=L)
    assert got.shape == (iterations * W * b, L) and got.dtype == np.int64
    assert np.array_equal(got, spec_iid_streams(M, sigma, W, b, iterations, L))


def test_compat_iid_seeds_follow_iteration_then_worker():
    # (i, w) = (1, 0) with W = 2 is stream σ + 2: the same block as iteration 0, worker 2 of W = 3
    two = compat_iid_tokens(20, 666, workers=2, rows_per_worker=3, iterations=2, length=8)
    three = compat_iid_tokens(20, 666, workers=3, rows_per_worker=3, iterations=1, length=8)
    assert np.array_equal(two[6:9], three[6:9]) and not np.array_equal(two[:3], two[3:6])
    with pytest.raises(UserError, match="rows_per_worker"):
        compat_iid_tokens(20, rows_per_worker=0)


def test_cli_iid_compat_writes_the_reference_tokens(tmp_path, capsys):
    out = tmp_path / "iid.npz"
    assert main(["synth", "iid", "--out", str(out), "--compat", "--states", "10", "--sequences", "12",
                 "--workers", "3", "--rows-per-worker", "2", "--length", "15"]) == 0
    assert "12 sequences x 15 tokens, kind iid" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as data:
        tokens, meta = data["tokens"], json.loads(str(data["meta"]))
    assert meta["kind"] == "iid" and meta["sampler"] == "compat" and (meta["workers"], meta["rows_per_worker"]) == (3, 2)
    assert np.array_equal(tokens, spec_iid_streams(10, 666, 3, 2, 2, 15))


@pytest.mark.parametrize("argv, message", [
    (["--compat", "--sequences", "9", "--workers", "2"], "--sequences"),
    (["--rows-per-worker", "2"], "--rows-per-worker: applies only with --compat"),
    (["--compat", "--order", "2"], "--order: does not apply to KIND iid"),
])
def test_cli_iid_compat_errors_are_one_line(tmp_path, capsys, argv, message):
    assert main(["synth", "iid", "--out", str(tmp_path / "x.npz"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
