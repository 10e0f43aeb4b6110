"""The shared plumbing: artifact store, run directory, seed parsing, CLI error handling."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from synthrl.cli import main
from synthrl.errors import UserError
from synthrl.rundir import RunDir
from synthrl.runner import drive
from synthrl.store import ArtifactStore
from synthrl.utils.io import params_key, parse_seeds


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("0,3,7") == [0, 3, 7]
    assert parse_seeds("0-1,9") == [0, 1, 9]
    for bad in ("a", "3-1", "1,1", ""):
        with pytest.raises(UserError, match="--seeds"):
            parse_seeds(bad)


def test_params_key_depends_on_every_parameter():
    base = {"states": 100, "temperature": 1.0}
    assert params_key(base) == params_key(dict(reversed(list(base.items()))))
    assert params_key(base) != params_key({**base, "temperature": 2.0})
    assert params_key(base) != params_key(base, format_version=2)


def test_store_builds_once_and_rebuilds_corrupt(tmp_path):
    store = ArtifactStore(tmp_path)
    calls = []

    def build(d):
        calls.append(1)
        (d / "payload.bin").write_bytes(b"x" * 100)

    p1 = store.get_or_build("demo", {"a": 1}, build)
    p2 = store.get_or_build("demo", {"a": 1}, build)
    assert p1 == p2 and len(calls) == 1
    assert json.loads((p1 / "params.json").read_text())["params"] == {"a": 1}
    # flip a byte: detected, rebuilt
    data = bytearray((p1 / "payload.bin").read_bytes())
    data[5] ^= 0xFF
    (p1 / "payload.bin").write_bytes(bytes(data))
    assert store.lookup("demo", {"a": 1}) is None
    store.get_or_build("demo", {"a": 1}, build)
    assert len(calls) == 2 and (p1 / "payload.bin").read_bytes() == b"x" * 100
    # a directory without COMPLETE (a builder died) is rebuilt too
    (p1 / "COMPLETE").unlink()
    store.get_or_build("demo", {"a": 1}, build)
    assert len(calls) == 3


def test_store_race_builds_once_and_leaves_one_result(tmp_path):
    store = ArtifactStore(tmp_path)
    barrier = threading.Barrier(4)
    calls = []

    def build(d):
        calls.append(1)
        time.sleep(0.2)  # the other threads ask meanwhile: they wait for this build
        (d / "payload.bin").write_bytes(b"same")

    def ask():
        barrier.wait(timeout=10)
        results.append(store.get_or_build("race", {"k": 1}, build))

    results = []
    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(results) == 4
    assert len(set(results)) == 1 and store.is_complete(results[0])
    leftovers = [p for p in results[0].parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


class CountingRunner:
    """A deterministic toy runner: its 'score' is a function of the RNG stream, so resume must restore it."""

    metric_columns = ["seed", "update", "normalized_score", "return", "wall_clock_s"]

    def __init__(self, total=10, every=3):
        self.total_updates, self.eval_every, self.updates_done = total, every, 0
        self.gen = torch.Generator().manual_seed(0)
        self.acc = torch.zeros(2)

    def train(self, n):
        for _ in range(n):
            self.acc += torch.rand(2, generator=self.gen)
        self.updates_done += n

    def evaluate(self):
        return [{"seed": s, "update": self.updates_done, "normalized_score": float(self.acc[s]), "return": 0.0} for s in range(2)]

    def state_dict(self):
        return {"n": self.updates_done, "gen": self.gen.get_state(), "acc": self.acc.clone()}

    def load_state_dict(self, s):
        self.updates_done = s["n"]
        self.gen.set_state(s["gen"])
        self.acc = s["acc"].clone()


def _scores(run_dir):
    return [(r["seed"], r["update"], r["normalized_score"]) for r in run_dir.read_metrics()]


def test_drive_writes_rundir_and_resumes_identically(tmp_path):
    full = RunDir(tmp_path / "full")
    drive(CountingRunner(), full, progress=False)
    assert full.is_done()
    updates = sorted({int(r["update"]) for r in full.read_metrics()})
    assert updates == [3, 6, 9, 10]

    # interrupted after the second evaluation, plus a stray row written after that checkpoint
    part = RunDir(tmp_path / "part")
    r = CountingRunner(total=6)
    drive(r, part, progress=False)
    (part.path / "DONE").unlink()
    part.append_metrics([{"seed": 0, "update": 99, "normalized_score": 1.0, "return": 0.0}], CountingRunner.metric_columns)
    drive(CountingRunner(), part, resume=True, progress=False)
    assert _scores(part) == _scores(full)


def test_checkpoint_refuses_code(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    run = RunDir(tmp_path)
    run.checkpoint_dir.mkdir(parents=True)
    with open(run.checkpoint_dir / "state.pt", "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(UserError, match="not a readable synthrl checkpoint"):
        run.load_checkpoint()


_IMPORTS_TORCH = """
import sys
from synthrl.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:   # --help
    code = e.code
print("torch" in sys.modules, code)
"""


@pytest.mark.parametrize("argv", [["--help"], ["tables", "--help"], ["verdict", "--paper"], ["run", "--help"]])
def test_only_the_run_verb_imports_torch(argv, tmp_path):
    # `run` lists the registry's algorithms (every algorithm module, IQL's one file imports torch); the
    # other verbs must start without it
    out = subprocess.run([sys.executable, "-c", _IMPORTS_TORCH, *argv], capture_output=True, text=True, cwd=tmp_path)
    imported, code = out.stdout.split()[-2:]
    assert code in ("0", "None") and imported == str(argv[0] == "run"), out.stdout + out.stderr


def test_cli_help_and_bad_option():
    out = subprocess.run([sys.executable, "-m", "synthrl", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "VERB" in out.stdout
    with pytest.raises(SystemExit) as e:
        main(["no-such-verb"])
    assert e.value.code == 2
