"""Resume after a kill or a full disk at any point: the run ends exactly as an uninterrupted one.

The rule (synthrl.runner.RunDirWriter.restore): on resume, metrics.csv keeps exactly the rows up to
the checkpoint's update, none when there is no checkpoint. ``KillSwitch`` stops a real run at
every file-system step its run directory writes take (inside the checkpoint write too), as a
SIGKILL would: nothing after that step runs, not even cleanup code.
"""

import errno
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from synthrl import rundir
from synthrl.cli import main
from synthrl.cql.config import CQLConfig
from synthrl.dt.config import BackboneConfig, DTConfig, DTPretrainConfig
from synthrl.rundir import RunDir
from synthrl.runner import drive
from synthrl.store import ArtifactStore

HOPPER_SAC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hopper-medium-sac-200k.hdf5"
TINY = BackboneConfig(n_layer=1, n_head=1, n_embd=16, n_inner=32, n_positions=64)


@pytest.fixture(scope="module")
def hopper(tmp_path_factory) -> str:
    """The first 3000 rows of the shared hopper data (a few real trajectories)."""
    import h5py

    if not HOPPER_SAC.is_file():
        pytest.skip(f"{HOPPER_SAC} not present")
    path = tmp_path_factory.mktemp("data") / "hopper-tiny.hdf5"
    with h5py.File(HOPPER_SAC) as src, h5py.File(path, "w") as f:
        for k in ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations"):
            f[k] = src[k][:3000]
    return str(path)


@pytest.fixture(autouse=True)
def _episodes_in_process(monkeypatch):
    monkeypatch.setenv("SYNTHRL_EVAL_WORKERS", "0")


# ---------------------------------------------------------------------------------------------
# killing a run at one of its file-system steps

class Killed(BaseException):
    """The process died here (a BaseException: no ``except Exception`` cleanup catches it)."""


class KillSwitch:
    """Counts the file-system steps that write inside ``root`` and kills the run at step ``at``.

    That step does not happen (torch.save and the metrics write stop halfway through their bytes),
    and afterwards every file operation raises Killed, so no cleanup code runs: what is on disk is
    what a SIGKILL at that moment leaves. ``at=None`` only counts (``steps``).
    """

    PATH_OPS = [(os, "rename"), (os, "replace"), (os, "unlink"), (os, "mkdir"), (os, "rmdir"), (shutil, "rmtree")]
    FD_OPS = [(os, "fsync"), (os, "ftruncate")]

    def __init__(self, monkeypatch, root, at: int | None = None):
        self.root, self.at, self.steps, self.dead = str(root), at, [], False
        for module, name in self.PATH_OPS:
            monkeypatch.setattr(module, name, self._step(name, getattr(module, name), by_path=True))
        for module, name in self.FD_OPS:
            monkeypatch.setattr(module, name, self._step(name, getattr(module, name), by_path=False))
        monkeypatch.setattr(torch, "save", self._halfway("torch.save", torch.save, self._save_half))
        monkeypatch.setattr(rundir, "write_all", self._halfway("metrics write", rundir.write_all, self._write_half))

    def _inside(self, target) -> bool:
        if not isinstance(target, (str, os.PathLike)):
            target = getattr(target, "name", None)  # an open file
        return isinstance(target, (str, os.PathLike)) and os.fspath(target).startswith(self.root)

    def _reached(self, name: str) -> bool:
        """Count a step; True when it is the one to die at."""
        if self.dead:
            raise Killed(f"after death: {name}")
        self.steps.append(name)
        if self.at is not None and len(self.steps) - 1 == self.at:
            self.dead = True
            return True
        return False

    def _step(self, name, real, by_path):
        def op(*args, **kwargs):
            if (not by_path or self._inside(args[0])) and self._reached(name):
                raise Killed(name)
            return real(*args, **kwargs)

        return op

    def _halfway(self, name, real, half):
        def op(first, second, *args, **kwargs):
            target = second if name == "torch.save" else first
            if (name != "torch.save" or self._inside(target)) and self._reached(name):
                half(real, first, second)
                raise Killed(name)
            return real(first, second, *args, **kwargs)

        return op

    @staticmethod
    def _save_half(real, obj, f):
        buf = io.BytesIO()
        real(obj, buf)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()

    @staticmethod
    def _write_half(real, fd, data):
        real(fd, data[: len(data) // 2])


def hidden_leftovers(run: RunDir) -> list[str]:
    return sorted(p.name for p in run.path.iterdir() if p.name.startswith("."))


def rows_without_clock(run: RunDir) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "wall_clock_s"} for r in run.read_metrics()]


def assert_same_state(a, b, where="state"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_run(straight: RunDir, other: RunDir) -> None:
    """Bit-identical except the wall clock; finished; no orphaned copies or temporary files."""
    assert other.is_done()
    assert rows_without_clock(other) == rows_without_clock(straight)
    assert_same_state(straight.load_checkpoint()["runner"], other.load_checkpoint()["runner"])
    assert hidden_leftovers(other) == []


def every_kill_point(make_runner, tmp_path, monkeypatch, only=None) -> int:
    """Run straight (counting its steps), then once killed at each step and resumed: all equal.
    ``only`` limits the kill points (a range of step indices). Returns the number of steps."""
    straight = RunDir(tmp_path / "straight")
    with monkeypatch.context() as m:
        counter = KillSwitch(m, straight.path)
        drive(make_runner(), straight, progress=False)
    steps = counter.steps
    assert "torch.save" in steps and "metrics write" in steps and "rename" in steps
    for at in only if only is not None else range(len(steps)):
        run = RunDir(tmp_path / f"killed-{at}")
        with monkeypatch.context() as m:
            switch = KillSwitch(m, run.path, at=at)
            with pytest.raises(Killed):
                drive(make_runner(), run, progress=False)
        assert switch.dead, at
        drive(make_runner(), run, resume=True, progress=False)
        try:
            assert_same_run(straight, run)
        except AssertionError as e:
            raise AssertionError(f"killed at step {at} ({steps[at]}; steps {steps}): {e}") from None
    return len(steps)


def cql_runner_factory(dataset: str, store_root: Path, **kw):
    from synthrl.cql.runner import make_runner

    config = CQLConfig(dataset=dataset, seeds=[0, 1], updates=40, eval_every=20, eval_episodes=1, batch_size=32,
                       hidden=32, device="cpu", **kw)

    def make():
        torch.manual_seed(0)  # the checkpoint carries the global RNG states: start each process alike
        np.random.seed(0)
        return make_runner(config, ArtifactStore(store_root), progress=False)

    return make


def test_cql_killed_at_every_step_then_resumed_ends_as_the_uninterrupted_run(hopper, tmp_path, monkeypatch):
    # includes: inside and after the first evaluation's rows, inside and between the first
    # checkpoint's writes and renames, the same for the second (which replaces one), inside DONE
    steps = every_kill_point(cql_runner_factory(hopper, tmp_path / "store"), tmp_path, monkeypatch)
    assert steps >= 18


def test_cql_with_overlapped_evaluation_killed_around_its_first_checkpoint(hopper, tmp_path, monkeypatch):
    make = cql_runner_factory(hopper, tmp_path / "store", eval_overlap="on")
    every_kill_point(make, tmp_path, monkeypatch, only=range(0, 9))


def test_dt_killed_around_its_first_checkpoint_then_resumed_ends_as_the_uninterrupted_run(hopper, tmp_path,
                                                                                         monkeypatch):
    from synthrl.dt.runner import make_runner

    config = DTConfig(dataset=hopper, seeds=[0, 1], updates=4, eval_every=2, eval_episodes=1, context=4,
                      batch_size=8, warmup_steps=2, targets=(3600.0,), device="cpu", eval_workers=0, backbone=TINY)
    # the first evaluation's rows and checkpoint (the writes are CQL's: the DT state is what differs)
    every_kill_point(lambda: make_runner(config, None), tmp_path, monkeypatch, only=range(0, 9))


def test_a_kill_between_the_checkpoint_renames_is_recovered(tmp_path):
    run = RunDir(tmp_path / "run")
    run.save_checkpoint({"runner": {"n": torch.tensor(1)}})
    # the state a kill between `checkpoint -> .old` and `.tmp -> checkpoint` leaves
    os.rename(run.checkpoint_dir, run.path / ".checkpoint.aaaa.old")
    (run.path / ".checkpoint.bbbb.tmp").mkdir()
    (run.path / ".checkpoint.bbbb.tmp" / "state.pt").write_bytes(b"half a checkpoint")
    (run.path / ".metrics.csv.cccc.tmp").write_text("seed,update\n")
    assert run.has_checkpoint() and run.load_checkpoint()["runner"]["n"] == 1  # readers find it as it is
    run.recover_checkpoint()
    assert (run.checkpoint_dir / "state.pt").is_file() and run.load_checkpoint()["runner"]["n"] == 1
    assert hidden_leftovers(run) == []


def test_orphaned_checkpoint_copies_are_removed_when_a_run_starts(tmp_path):
    from test_core import CountingRunner

    run = RunDir(tmp_path / "run")
    for name in (".checkpoint.1234.tmp", ".checkpoint.5678.old"):
        (run.path / name).mkdir(parents=True)
        (run.path / name / "state.pt").write_bytes(b"x" * 1000)
    run.save_checkpoint({"runner": CountingRunner().state_dict()})
    assert hidden_leftovers(run) == []  # a completed checkpoint write removes orphans too
    (run.path / ".checkpoint.9999.tmp").mkdir()
    drive(CountingRunner(), run, resume=True, progress=False)
    assert hidden_leftovers(run) == []


# ---------------------------------------------------------------------------------------------
# the real CLI: SIGKILL, full disk, foreign checkpoints

def cql_argv(dataset, out, *extra) -> list[str]:
    return ["run", "cql", "--dataset", dataset, "--out", str(out), "--seeds", "0", "--eval-episodes", "1",
            "--batch-size", "32", "--device", "cpu", "--no-progress", *extra]


def test_sigkilled_run_cql_resumes_to_the_uninterrupted_run_and_tables_accept_it(hopper, tmp_path):
    options = ["--updates", "200", "--eval-every", "20"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main(cql_argv(hopper, straight, *options)) == 0

    env = {**os.environ, "SYNTHRL_EVAL_WORKERS": "0", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    stderr = tmp_path / "stderr.txt"
    with open(stderr, "w") as err:  # a file, not a pipe: a chatty child never blocks on it
        proc = subprocess.Popen([sys.executable, "-m", "synthrl", *cql_argv(hopper, killed, *options)], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    metrics, deadline = killed / "metrics.csv", time.monotonic() + 300
    try:  # kill right after the first evaluation's rows appear: its checkpoint is being written
        while not (metrics.exists() and metrics.stat().st_size > 0):
            assert proc.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "the run wrote no evaluation"
            time.sleep(0.002)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (killed / "DONE").exists()
    assert main(cql_argv(hopper, killed, *options, "--resume")) == 0
    assert_same_run(RunDir(straight), RunDir(killed))
    assert main(["tables", "--results", str(killed), "--variants", "CQL", "--format", "csv"]) == 0


def _one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return err[0]


def test_disk_full_inside_a_checkpoint_write_is_one_line_and_the_run_resumes(hopper, tmp_path, monkeypatch, capsys):
    options = ["--updates", "60", "--eval-every", "20"]
    straight, out = tmp_path / "straight", tmp_path / "full"
    assert main(cql_argv(hopper, straight, *options)) == 0
    real_save, saves = torch.save, []

    def save_on_a_filling_disk(obj, f, *args, **kwargs):
        saves.append(f)
        if len(saves) < 2:
            return real_save(obj, f, *args, **kwargs)
        buf = io.BytesIO()  # the second checkpoint: part of it fits, then the disk is full
        real_save(obj, buf)
        f.write(buf.getvalue()[:4096])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(torch, "save", save_on_a_filling_disk)
        assert main(cql_argv(hopper, out, *options)) == 2
    line = _one_error_line(capsys)
    assert "no space left on device" in line and str(out / "checkpoint") in line and "--resume" in line
    run = RunDir(out)
    assert hidden_leftovers(run) == []  # the half-written copy is gone; the first checkpoint is whole
    assert run.load_checkpoint()["runner"]["ensemble"]["updates_done"] == 20
    assert main(cql_argv(hopper, out, *options, "--resume")) == 0
    assert_same_run(RunDir(straight), run)


def test_disk_full_inside_a_metrics_write_leaves_no_torn_row_and_the_run_resumes(hopper, tmp_path, monkeypatch,
                                                                                 capsys):
    options = ["--updates", "60", "--eval-every", "20"]
    straight, out = tmp_path / "straight", tmp_path / "full"
    assert main(cql_argv(hopper, straight, *options)) == 0
    metrics, real_write, appends = out / "metrics.csv", os.write, []

    def write_on_a_filling_disk(fd, data):
        if os.path.realpath(f"/proc/self/fd/{fd}") != str(metrics):
            return real_write(fd, data)
        appends.append(len(data))
        if len(appends) < 2:
            return real_write(fd, data)
        real_write(fd, bytes(data)[: len(data) // 3])  # the second evaluation's rows: a third fits
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(os, "write", write_on_a_filling_disk)
        assert main(cql_argv(hopper, out, *options)) == 2
    line = _one_error_line(capsys)
    assert "no space left on device" in line and str(metrics) in line
    text = metrics.read_text()
    assert text.endswith("\n") and [int(r["update"]) for r in RunDir(out).read_metrics()] == [20]
    assert main(cql_argv(hopper, out, *options, "--resume")) == 0
    assert_same_run(RunDir(straight), RunDir(out))


def test_resume_from_a_foreign_or_garbage_checkpoint_is_one_line(hopper, tmp_path, capsys):
    out = tmp_path / "run"
    options = ["--updates", "20", "--eval-every", "20"]
    assert main(cql_argv(hopper, out, *options)) == 0
    run = RunDir(out)
    (out / "DONE").unlink()
    state_file = run.checkpoint_dir / "state.pt"
    good = state_file.read_bytes()
    foreign = [
        lambda f: torch.save({"model": torch.zeros(2)}, f),                     # no "runner"
        lambda f: torch.save({"runner": {"model": {}, "seeds": [0]}}, f),       # a DT-like state: no "ensemble"
        lambda f: Path(f).write_bytes(b"\x00garbage bytes\n" * 64),             # not a torch file at all
        lambda f: Path(f).write_bytes(good[: len(good) // 2]),                  # truncated
    ]
    for write in foreign:
        write(state_file)
        capsys.readouterr()
        assert main(cql_argv(hopper, out, *options, "--resume")) == 2
        line = _one_error_line(capsys)
        assert str(state_file) in line and "Traceback" not in line, line
    assert [int(r["update"]) for r in run.read_metrics()] == [20]  # nothing was dropped
    # the same file as a behaviour policy (`data make --policy RUN`): a policy without its input layer
    torch.save({"runner": {"ensemble": {"policy": {"w9": torch.zeros(1, 2)}, "seeds": [0]}}}, state_file)
    capsys.readouterr()
    assert main(["data", "make", "hopper", "--policy", str(out), "--steps", "10", "--out",
                 str(tmp_path / "made.hdf5"), "--quiet"]) == 2
    assert str(run.checkpoint_dir) in _one_error_line(capsys)


def test_dt_resume_and_pretrained_with_wrong_keys_or_garbage_are_one_line(hopper, tmp_path, capsys):
    out = tmp_path / "dt"
    argv = ["run", "dt", "--dataset", hopper, "--seeds", "0", "--updates", "2", "--eval-every", "2",
            "--eval-episodes", "1", "--batch-size", "8", "--context", "4", "--warmup-steps", "1", "--targets",
            "3600", "--device", "cpu", "--no-progress"]
    assert main(argv + ["--out", str(out)]) == 0
    (out / "DONE").unlink()
    state_file = RunDir(out).checkpoint_dir / "state.pt"
    torch.save({"runner": {"ensemble": {}}}, state_file)  # a CQL-like state
    capsys.readouterr()
    assert main(argv + ["--out", str(out), "--resume"]) == 2
    assert str(state_file) in _one_error_line(capsys)

    wrong_keys, garbage = tmp_path / "wrong.pt", tmp_path / "garbage.pt"
    torch.save({"ensemble": torch.zeros(3)}, wrong_keys)
    garbage.write_bytes(b"\x80\x02garbage" * 100)
    for i, bad in enumerate((wrong_keys, garbage)):
        capsys.readouterr()
        assert main(argv + ["--out", str(tmp_path / f"p{i}"), "--pretrained", str(bad)]) == 2
        line = _one_error_line(capsys)
        assert str(bad) in line, line


# ---------------------------------------------------------------------------------------------
# dt-pretrain: the logged loss and the loss curve across a resume

def pretrain_cfg(**kw) -> DTPretrainConfig:
    base = dict(data="iid", states=6, steps=8, checkpoints=(2, 8), seq_len=16, batch_size=4, warmup_steps=2,
                device="cpu", backbone=TINY, progress_every=3, log_every=4, lr=1e-3)
    return DTPretrainConfig(**{**base, **kw}).validate()


def test_dt_pretrain_loss_is_unchanged_by_a_resume_inside_a_log_interval(tmp_path):
    from synthrl.dt.pretrain import run_pretraining

    cfg = pretrain_cfg()  # progress saved at step 3, in the middle of the log interval 1..4
    assert run_pretraining(cfg, tmp_path / "straight", progress=False)
    assert not run_pretraining(cfg, tmp_path / "split", progress=False, stop_after=3)
    assert run_pretraining(cfg, tmp_path / "split", progress=False)
    straight, split = RunDir(tmp_path / "straight").read_metrics(), RunDir(tmp_path / "split").read_metrics()
    assert [r["update"] for r in split] == ["2", "4", "8"]
    assert [r["train_loss"] for r in split] == [r["train_loss"] for r in straight]


def test_dt_pretrain_killed_at_every_step_keeps_one_loss_curve(tmp_path, monkeypatch):
    from synthrl.dt.pretrain import run_pretraining, step_filename

    cfg = pretrain_cfg(steps=4, checkpoints=(2, 4), log_every=2)  # progress at 3 and 4

    def run(name, at=None):
        work, log = tmp_path / name / "work", RunDir(tmp_path / name / "log")
        with monkeypatch.context() as m:
            switch = KillSwitch(m, tmp_path / name, at=at)
            if at is None:
                assert run_pretraining(cfg, work, progress=False, log=log)
            else:
                with pytest.raises(Killed):
                    run_pretraining(cfg, work, progress=False, log=log)
        return switch.steps

    def curve(name, sub):
        return [(r["update"], r["train_loss"]) for r in RunDir(tmp_path / name / sub).read_metrics()]

    steps = run("straight")
    for at in range(len(steps)):
        name = f"killed-{at}"
        run(name, at)
        assert run_pretraining(cfg, tmp_path / name / "work", progress=False, log=RunDir(tmp_path / name / "log"))
        for sub in ("work", "log"):
            assert curve(name, sub) == curve("straight", sub), (at, steps[at], sub)
        for step in cfg.checkpoints:
            a = torch.load(tmp_path / "straight" / "work" / "steps" / step_filename(step), weights_only=True)
            b = torch.load(tmp_path / name / "work" / "steps" / step_filename(step), weights_only=True)
            assert_same_state(a["state_dict"], b["state_dict"], f"step {step}")
        assert hidden_leftovers(RunDir(tmp_path / name / "work")) == []
