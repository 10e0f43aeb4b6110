"""The sweep service on a real local Ray (2 CPUs, no dashboard): end to end, fault tolerance, resume.

One Ray session is shared by the module (started and shut down by the fixture). Sweeps are tiny
CQL runs (32-unit networks, batches of 32) on a Hopper dataset made by ``synthrl data make``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
TINY_NET = {"hidden": 32, "batch_size": 32}


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    context = ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="ERROR",
                       _temp_dir=str(tmp_path_factory.mktemp("ray")))
    try:
        yield context.address_info["address"]
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def storage(tmp_path_factory):
    """One storage root for the module: the made dataset and artifacts are built once and shared."""
    return tmp_path_factory.mktemp("sweeps")


def tiny_doc(name: str, variants: list[dict], datasets=None, **over) -> dict:
    doc = {
        "name": name,
        "algorithm": "cql",
        "datasets": datasets or [{"name": "hopper-tiny", "make": {"env": "hopper", "policy": "random",
                                                                  "steps": 600, "seed": 0}}],
        "seeds": "0-1",
        "seeds_per_trial": 2,
        "finetune": {"updates": 40, "eval_every": 20, "eval_episodes": 1, "config": TINY_NET},
        "resources": {"gpu_per_trial": 0.5, "cpus_per_trial": 1, "pretrain_gpus": 1, "max_failures": 2},
        "variants": variants,
    }
    doc.update(over)
    return doc


MDP = {"kind": "mdp", "updates": 20, "states": 10, "actions": 10, "config": {"trajectories": 20, "length": 20}}


def run(doc: dict, storage: Path, lines: list[str] | None = None) -> int:
    from synthrl.sweep.schema import sweep_from_dict
    from trainables.launcher import run_sweep

    sweep = sweep_from_dict(doc, f"<{doc['name']}>")
    out = lines.append if lines is not None else (lambda _: None)
    return run_sweep(sweep, doc, {}, storage, out=out, dashboard=False)


def metrics_without_clock(run_dir: Path) -> list[dict]:
    from synthrl.rundir import RunDir

    return [{k: v for k, v in row.items() if k != "wall_clock_s"} for row in RunDir(run_dir).read_metrics()]


@pytest.mark.timeout(240)
def test_tiny_sweep_end_to_end_shares_artifacts_falls_back_to_cpu_and_reports(ray_session, storage):
    from trainables.launcher import status_text

    datasets = [{"name": f"hopper-tiny-{i}", "make": {"env": "hopper", "policy": "random", "steps": 600, "seed": i}}
                for i in range(2)]
    doc = tiny_doc("e2e", [{"name": "CQL"}, {"name": "CQL+MDP", "pretrain": MDP}], datasets=datasets)
    lines: list[str] = []
    assert run(doc, storage, lines) == 0, "\n".join(lines)
    text = "\n".join(lines)
    # no GPU in this Ray: the 0.5-GPU request falls back to CPU with a notice instead of waiting forever
    assert "has none: running on CPU" in text
    # one CQL pre-training for both hopper datasets: built once in stage 1 and shared
    assert "stage 1: 1 pre-training artifact(s)" in text
    assert len(list((storage / "artifacts" / "cql-pretrain").iterdir())) == 1
    runs = sorted(p.parent for p in (storage / "e2e" / "runs").rglob("DONE"))
    assert sorted(str(p.relative_to(storage / "e2e" / "runs")) for p in runs) == [
        "CQL+MDP/hopper-tiny-0/s0-1", "CQL+MDP/hopper-tiny-1/s0-1", "CQL/hopper-tiny-0/s0-1", "CQL/hopper-tiny-1/s0-1"]
    for run_dir in runs:
        params = json.loads((run_dir / "params.json").read_text())
        assert params["algorithm"] == "cql" and params["seeds"] == [0, 1]
        assert params["variant"] in ("CQL", "CQL+MDP") and params["dataset"] == run_dir.parent.name
        assert params["pretrain_updates"] == (20 if params["variant"] == "CQL+MDP" else 0)
        assert params["finetune_ratio"] == 1.0
        rows = metrics_without_clock(run_dir)
        assert [(int(r["seed"]), int(r["update"])) for r in rows] == [(0, 20), (1, 20), (0, 40), (1, 40)]
    status = status_text(storage, "e2e")
    assert "trials: 4 done of 4" in status and "progress: 100.0%" in status

    # a second run recomputes nothing
    lines.clear()
    assert run(doc, storage, lines) == 0
    assert any("skipping 4 finished trial(s)" in line for line in lines)
    assert any("nothing to run" in line for line in lines)

    # the results feed `synthrl tables` as they are
    if (REPO / "synthrl" / "commands" / "tables.py").exists():
        result = subprocess.run([sys.executable, "-m", "synthrl", "tables", "--results", str(storage / "e2e"),
                                 "--variants", "CQL,CQL+MDP", "--format", "csv"], capture_output=True, text=True,
                                timeout=120, cwd=REPO)
        assert result.returncode == 0, result.stderr
        assert "hopper-tiny-0" in result.stdout and "CQL+MDP" in result.stdout


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(300)
def test_sigkilled_trial_is_retried_from_its_checkpoint_bit_identically(ray_session, storage, capsys):
    from trainables.launcher import worker_pids

    finetune = {"updates": 120, "eval_every": 20, "eval_episodes": 1, "config": TINY_NET}
    reference = tiny_doc("uninterrupted", [{"name": "CQL"}], finetune=finetune)
    assert run(reference, storage) == 0

    doc = tiny_doc("killed", [{"name": "CQL"}], finetune=finetune)
    run_dir = storage / "killed" / "runs" / "CQL" / "hopper-tiny" / "s0-1"
    killed: dict = {}

    def kill_after_first_checkpoint():
        try:
            _wait_for(lambda: (run_dir / "checkpoint" / "state.pt").is_file(), 200, "the first checkpoint")
            _, pid = worker_pids(storage, "killed")["CQL/hopper-tiny/s0-1"]
            killed["done_before"] = (run_dir / "DONE").exists()
            killed["rows_before"] = len(metrics_without_clock(run_dir))
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid
        except Exception as e:  # surfaces in the assertions below
            killed["error"] = repr(e)

    watcher = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    watcher.start()
    lines: list[str] = []
    code = run(doc, storage, lines)
    watcher.join(timeout=10)
    captured = capsys.readouterr()
    assert "error" not in killed, killed
    assert killed.get("pid") and not killed["done_before"], "the trial finished before it could be killed"
    assert killed["rows_before"] < 12
    assert code == 0, "\n".join(lines)
    assert any("failed; Tune retries it from its last checkpoint" in line for line in captured.out.splitlines())
    assert (run_dir / "DONE").exists()
    final = metrics_without_clock(run_dir)
    expected = metrics_without_clock(storage / "uninterrupted" / "runs" / "CQL" / "hopper-tiny" / "s0-1")
    assert len(final) == 12 and final == expected


@pytest.mark.timeout(300)
def test_killed_driver_then_sweep_resume_completes_without_rerunning_finished_trials(ray_session, storage, tmp_path):
    doc = tiny_doc("resumed", [
        {"name": "short", "finetune": {"updates": 20, "eval_every": 20}},
        # long enough that it is still running when the driver is killed, on an idle machine too
        {"name": "long", "finetune": {"updates": 2000, "eval_every": 200}},
    ])
    sweep_file = tmp_path / "resumed.yaml"
    sweep_file.write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, "-m", "synthrl", "sweep"]
    common = ["--storage", str(storage), "--address", ray_session]
    short_dir = storage / "resumed" / "runs" / "short" / "hopper-tiny" / "s0-1"
    long_dir = storage / "resumed" / "runs" / "long" / "hopper-tiny" / "s0-1"
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(base + ["run", str(sweep_file), "--no-dashboard", *common], stdout=log,
                              stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        _wait_for(lambda: (short_dir / "DONE").exists() and (long_dir / "checkpoint").is_dir(), 200,
                  "one finished trial and one checkpointed")
        assert not (long_dir / "DONE").exists()
        finished_before = ((short_dir / "DONE").stat().st_mtime_ns, (short_dir / "metrics.csv").read_text())
        time.sleep(1.5)   # let Tune persist its experiment state once more
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()

    from trainables.launcher import status_text

    assert "1 done" in status_text(storage, "resumed")
    result = subprocess.run(base + ["resume", "resumed", "--no-dashboard", *common], capture_output=True,
                            text=True, timeout=240, env=env, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "resuming Tune experiment" in result.stdout, result.stdout[-3000:]   # Tuner.restore, not a relaunch
    assert (long_dir / "DONE").exists()
    assert ((short_dir / "DONE").stat().st_mtime_ns, (short_dir / "metrics.csv").read_text()) == finished_before
    updates = [int(r["update"]) for r in metrics_without_clock(long_dir)]
    assert updates == sorted(updates) and updates[-1] == 2000 and len(updates) == 2 * 10   # no duplicated rows
    status = subprocess.run(base + ["status", "resumed", "--storage", str(storage)], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert status.returncode == 0 and "trials: 2 done of 2" in status.stdout


@pytest.mark.timeout(420)
def test_quickstart_runs_end_to_end_and_feeds_tables(ray_session, tmp_path):
    """The README's first command, with its budgets cut further so the test stays short."""
    storage = tmp_path / "qs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "synthrl", "sweep", "run", "sweeps/quickstart.yaml", "--storage", str(storage),
         "--address", ray_session, "--set", "finetune.updates=20", "--set", "finetune.eval_every=10"],
        capture_output=True, text=True, timeout=400, env=env, cwd=REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name, variants, count in (("quickstart-cql", "CQL,CQL+MDP,CQL+IID", 3), ("quickstart-dt", "DT,DT+MC", 2)):
        assert len(list((storage / name / "runs").rglob("DONE"))) == count
        tables = subprocess.run([sys.executable, "-m", "synthrl", "tables", "--results", str(storage / name),
                                 "--variants", variants, "--format", "csv"], capture_output=True, text=True,
                                timeout=120, cwd=REPO)
        assert tables.returncode == 0, tables.stderr
        for variant in variants.split(","):
            assert f"hopper-random-qs,{variant}," in tables.stdout, tables.stdout
        report = storage / name / "report.html"   # the sweep's one-page report, written as it ended
        assert f"[{name}] report: {report}" in result.stdout and report.is_file()
        assert all(variant in report.read_text() for variant in variants.split(","))


@pytest.mark.timeout(180)
def test_failing_trial_is_reported_with_its_message(ray_session, storage, tmp_path):
    from trainables.launcher import status_text

    broken = tmp_path / "hopper-broken.hdf5"
    broken.write_bytes(b"this is not an HDF5 file")
    doc = tiny_doc("broken", [{"name": "CQL"}], datasets=[{"name": "hopper-broken", "path": str(broken)}],
                   resources={"cpus_per_trial": 1, "max_failures": 0})
    lines: list[str] = []
    assert run(doc, storage, lines) == 1
    assert any("trial CQL/hopper-broken/s0-1 ended with an error" in line for line in lines), lines
    status = status_text(storage, "broken")
    print(status)
    assert "1 error of 1" in status
    assert "error    CQL/hopper-broken/s0-1" in status
    assert "hopper-broken.hdf5" in status.split("error: ", 1)[1]
