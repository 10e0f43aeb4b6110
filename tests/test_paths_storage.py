"""Output places, file permissions and the artifact store's one-builder lock (issue 12, items 5-8, 18).

Unwritable and full places are real where this machine allows: a read-only tmpfs (root ignores
permission bits, not a read-only mount) and a tiny tmpfs that fills up. Without mount permission a
read-only place is a chmod 555 folder for a non-root user, and a full disk is an fsync that fails
with ENOSPC (how NFS reports it).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from synthrl.cli import main
from synthrl.errors import UserError
from synthrl.store import ArtifactStore
from synthrl.utils import io as sio

REPO = Path(__file__).resolve().parents[1]
TINY_CQL = ["--updates", "40", "--eval-every", "20", "--eval-episodes", "1", "--batch-size", "32",
            "--device", "cpu", "--no-progress"]
TINY_MDP = ["--pretrain", "mdp", "--pretrain-updates", "20", "--states", "4", "--actions", "4",
            "--trajectories", "2", "--length", "10"]


# ------------------------------------------------------------------------------------------ places
def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def _umount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)  # still open in a failed test's traceback


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody can write into, root included."""
    ro = tmp_path / "ro"
    if _mount_tmpfs(ro, "ro,size=64k"):
        try:
            yield ro
        finally:
            _umount(ro)
    elif os.geteuid() != 0:
        ro.chmod(0o555)
        try:
            yield ro
        finally:
            ro.chmod(0o755)
    else:
        pytest.skip("root without mount permission: no directory here refuses root's writes")


class Disk:
    def __init__(self, path: Path, real: bool):
        self.path, self.real = path, real

    def fill(self) -> None:
        """Take every free block (a real disk only)."""
        with open(self.path / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A 256 KiB file system; without mount permission, a folder whose atomic writes' fsync says ENOSPC."""
    where = tmp_path / "small"
    if _mount_tmpfs(where, "size=256k"):
        try:
            yield Disk(where, True)
        finally:
            _umount(where)
        return

    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(where)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(sio.os, "fsync", fsync)
    yield Disk(where, False)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("synthrl: error: ")]
    assert len(lines) == 1, err
    return lines[0]


def _tree(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


@pytest.fixture
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    assert main(["data", "make", "hopper", "--policy", "random", "--steps", "400", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture
def long_csv(tmp_path) -> Path:
    path = tmp_path / "long.csv"
    rows = ["algorithm,variant,dataset,seed,update,normalized_score"]
    rows += [f"cql,CQL,hopper-medium,{s},{u},{10 * s + u / 10}" for s in (0, 1) for u in (10, 20)]
    path.write_text("\n".join(rows) + "\n")
    return path


# ------------------------------------------------------------------------------------------ item 5: checked up front
def _commands(out: Path, dataset: Path, long_csv: Path) -> dict[str, list[str]]:
    return {
        "synth": ["synth", "mdp", "--out", str(out / "mdp.npz"), "--trajectories", "2", "--length", "5"],
        "data make": ["data", "make", "hopper", "--policy", "random", "--steps", "20", "--out", str(out / "d.hdf5")],
        "tables": ["tables", "--csv", str(long_csv), "--variants", "CQL", "--out", str(out / "t.md")],
        "curves": ["curves", "--csv", str(long_csv), "--out", str(out / "curves")],
        "run cql": ["run", "cql", "--dataset", str(dataset), "--out", str(out / "run"), *TINY_CQL],
        "run dt-pretrain": ["run", "dt-pretrain", "--out", str(out / "run"), "--steps", "2", "--device", "cpu"],
    }


@pytest.mark.parametrize("command", ["synth", "data make", "tables", "curves", "run cql", "run dt-pretrain"])
def test_unwritable_out_is_one_line_before_any_work(command, read_only_dir, dataset, long_csv, capsys):
    argv = _commands(read_only_dir / "sub", dataset, long_csv)[command]
    capsys.readouterr()
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith(f"synthrl: error: --out {read_only_dir}/sub")
    assert f"cannot be created: {read_only_dir} is not writable" in line


@pytest.mark.parametrize("command", ["synth", "data make", "tables", "curves", "run cql", "run dt-pretrain"])
def test_a_file_in_the_way_of_out_is_one_line(command, tmp_path, dataset, long_csv, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    capsys.readouterr()
    assert main(_commands(blocker, dataset, long_csv)[command]) == 2
    assert _error_line(capsys).endswith(f"a file is in the way: {blocker}")
    assert blocker.read_text() == "not a folder"


def test_unwritable_store_is_refused_before_the_run_directory_is_written(read_only_dir, tmp_path, dataset,
                                                                          monkeypatch, capsys):
    monkeypatch.setenv("SYNTHRL_STORE", str(read_only_dir / "store"))
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["run", "cql", "--dataset", str(dataset), "--out", str(out), *TINY_MDP, *TINY_CQL]) == 2
    assert _error_line(capsys).startswith(f"synthrl: error: $SYNTHRL_STORE {read_only_dir}/store: does not exist "
                                          f"and cannot be created: {read_only_dir} is not writable")
    assert not out.exists()  # no params.json left behind: the same command works once the store is fixed
    assert main(["run", "dt-pretrain", "--out", str(out), "--steps", "2", "--device", "cpu"]) == 2
    assert "$SYNTHRL_STORE" in _error_line(capsys) and not out.exists()


def test_storage_option_unwritable_is_named(read_only_dir):
    from trainables.launcher import resolve_storage

    with pytest.raises(UserError, match=rf"^--storage {read_only_dir}: is not writable"):
        resolve_storage(str(read_only_dir))


def test_a_run_refused_while_preparing_leaves_no_params_behind(tmp_path, capsys):
    small = tmp_path / "small.hdf5"  # fewer rows than one batch of 32: refused when the runner is made
    assert main(["data", "make", "hopper", "--policy", "random", "--steps", "20", "--quiet", "--out", str(small)]) == 0
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["run", "cql", "--dataset", str(small), "--out", str(out), *TINY_CQL]) == 2
    assert "fewer than one batch" in _error_line(capsys)
    assert not (out / "params.json").exists()  # so the corrected command needs no --resume


def test_full_disk_is_refused_up_front(small_disk, long_csv, capsys):
    if not small_disk.real:
        pytest.skip("no tmpfs mount permission: cannot fill a disk here")
    small_disk.fill()
    capsys.readouterr()
    assert main(["synth", "mdp", "--out", str(small_disk.path / "mdp.npz"), "--trajectories", "2"]) == 2
    assert _error_line(capsys) == (f"synthrl: error: --out {small_disk.path}/mdp.npz: parent directory "
                                   f"{small_disk.path}: no space left on device")
    assert main(["curves", "--csv", str(long_csv), "--out", str(small_disk.path / "c")]) == 2
    assert _error_line(capsys).endswith("no space left on device")


# ------------------------------------------------------------------------------------------ item 5: disk full mid-write
@pytest.mark.parametrize("command", ["synth", "data make"])
def test_disk_filling_while_writing_an_output_is_one_line_and_leaves_nothing(command, small_disk, capsys):
    out = small_disk.path / ("mdp.npz" if command == "synth" else "d.hdf5")
    argv = {"synth": ["synth", "mdp-iid", "--out", str(out), "--trajectories", "20", "--length", "1000"],  # 480 KB
            "data make": ["data", "make", "hopper", "--policy", "random", "--steps", "4000", "--quiet",
                          "--out", str(out)]}[command]  # ~420 KB
    capsys.readouterr()
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith(f"synthrl: error: {out}: no space left on device")
    assert [p.name for p in _tree(small_disk.path)] == []  # no half-written file, no .tmp


def test_disk_filling_while_building_an_artifact_is_one_line_and_leaves_nothing(small_disk, monkeypatch):
    import torch

    store = ArtifactStore(small_disk.path / "store")

    def build(tmp: Path) -> None:
        if not small_disk.real:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        torch.save({"w": torch.zeros(200_000)}, tmp / "q.pt")  # 800 KB: torch says it without an errno

    with pytest.raises(UserError, match=rf"^store {store.root}: no space left on device while building the demo "
                                        r"artifact \w{12}; nothing of it was kept$"):
        store.get_or_build("demo", {"a": 1}, build)
    artifacts = store.root / "artifacts" / "demo"
    assert list(artifacts.iterdir()) == []


# ------------------------------------------------------------------------------------------ item 6: the umask
def _write_everything(root: Path, dataset: Path) -> None:
    """Every kind of file synthrl writes: run directory, store artifacts, HDF5, npz, tables, PNGs, torch files."""
    import torch

    from synthrl.dt.pretrain import _atomic_torch_save
    from synthrl.rundir import RunDir

    assert main(["run", "cql", "--dataset", str(dataset), "--out", str(root / "run"), *TINY_MDP, *TINY_CQL]) == 0
    assert main(["data", "make", "hopper", "--policy", "random", "--steps", "20", "--quiet",
                 "--out", str(root / "made" / "d.hdf5")]) == 0
    assert main(["synth", "mc", "--out", str(root / "synth" / "mc.npz"), "--states", "4", "--sequences", "2",
                 "--length", "8"]) == 0
    assert main(["tables", "--results", str(root / "run"), "--variants", "CQL+MDP", "--out",
                 str(root / "tables" / "t.md")]) == 0
    assert main(["curves", "--results", str(root / "run"), "--out", str(root / "curves")]) == 0
    _atomic_torch_save(root / "torch" / "step.pt", {"x": torch.zeros(3)})
    RunDir(root / "rd").save_checkpoint({"x": torch.zeros(3)})
    ArtifactStore().get_or_build("nested", {"k": 1}, lambda d: (d / "sub").mkdir() or
                                      np.save(d / "sub" / "a.npy", np.zeros(3)))


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_file_written_honours_the_umask(umask, tmp_path, dataset, monkeypatch):
    root = tmp_path / "w"
    monkeypatch.setenv("SYNTHRL_STORE", str(root / "store"))
    old = os.umask(umask)
    try:
        _write_everything(root, dataset)
    finally:
        os.umask(old)
    written = _tree(root)
    kinds = {p.suffix for p in written if p.is_file()}
    assert {".json", ".csv", ".pt", ".npz", ".hdf5", ".md", ".png", ".npy", ".lock", ""} <= kinds
    wrong = [f"{oct(p.stat().st_mode & 0o777)} {p.relative_to(root)}" for p in written
             if p.stat().st_mode & 0o777 != (0o777 if p.is_dir() else 0o666) & ~umask]
    assert wrong == []


# ------------------------------------------------------------------------------------------ item 7: built once
BUILDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from synthrl.store import ArtifactStore

    root, me, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    (root / f"started-{me}").touch()

    def build(tmp):
        with open(root / "builds.txt", "a") as f:
            f.write(me + "\\n")
        deadline = time.time() + 60
        while not (root / f"started-{other}").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(float(sys.argv[4]))  # the other process asks meanwhile
        (tmp / "payload.bin").write_bytes(b"built by " + me.encode())

    print(ArtifactStore(root / "store").get_or_build("demo", {"k": 1}, build), flush=True)
""")


def _builder(root: Path, me: str, other: str, hold_s: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUILDER, str(root), me, other, str(hold_s)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_two_processes_asking_for_one_artifact_build_it_once(tmp_path):
    procs = [_builder(tmp_path, "a", "b", 1.0), _builder(tmp_path, "b", "a", 1.0)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert len((tmp_path / "builds.txt").read_text().split()) == 1
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1 and ArtifactStore(tmp_path / "store").is_complete(Path(paths.pop()))


def test_a_builder_killed_mid_build_releases_the_lock_and_its_half_build_goes(tmp_path):
    dead = _builder(tmp_path, "dead", "dead", 600.0)  # waits for itself: builds until killed
    try:
        deadline = time.time() + 60
        while not (tmp_path / "builds.txt").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert (tmp_path / "builds.txt").exists(), dead.stderr.read() if dead.poll() is not None else "not started"
    finally:
        dead.send_signal(signal.SIGKILL)
        dead.wait(timeout=30)
    half = list((tmp_path / "store" / "artifacts" / "demo").glob(".*.tmp"))
    assert len(half) == 1
    fresh = _builder(tmp_path, "fresh", "fresh", 0.0)
    out, err = fresh.communicate(timeout=60)  # a stale lock would hang here
    assert fresh.returncode == 0, err
    assert Path(out.strip(), "payload.bin").read_bytes() == b"built by fresh"
    assert not half[0].exists()


# ------------------------------------------------------------------------------------------ item 8: data make --force
def test_data_make_keeps_an_existing_out_unless_force(tmp_path, capsys):
    out = tmp_path / "d.hdf5"
    argv = ["data", "make", "hopper", "--policy", "random", "--steps", "20", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    first = hashlib.sha256(out.read_bytes()).hexdigest()
    capsys.readouterr()
    assert main(argv + ["--seed", "1"]) == 2
    assert _error_line(capsys) == (f"synthrl: error: --out {out}: already exists; pass --force to replace it "
                                   "or choose another file")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == first
    assert main(argv + ["--seed", "1", "--force"]) == 0
    assert hashlib.sha256(out.read_bytes()).hexdigest() != first


# ------------------------------------------------------------------------------------------ item 18: the final path
def test_a_made_dataset_is_announced_by_its_final_path(tmp_path, capsys):
    from synthrl.sweep.plan import build_made_dataset
    from synthrl.sweep.schema import DatasetSpec, MakeSpec

    spec = DatasetSpec(name="hopper-random-qs", env="hopper", make=MakeSpec(env="hopper", steps=20))
    path = build_made_dataset(spec, ArtifactStore(tmp_path / "store"))
    assert path.is_file() and ".tmp" not in str(path)
    assert ".tmp" not in capsys.readouterr().out  # the builder's temporary folder is never shown
