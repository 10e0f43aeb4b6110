"""Issue 12, the sweep launcher's part: Ctrl-C, resuming a multi-sweep file, Ray's tools and sockets on a
local cluster, `sweep plan`'s missing files and costs, a closed stdout pipe.

The Ray tests drive one real `synthrl sweep run` subprocess on a two-sweep file: it starts its own local
Ray (dashboard on, token authentication on, like a user's), is inspected while a trial runs, then gets
SIGINT and is resumed with the command it prints.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from synthrl.sweep.plan import Machine, make_plan, plan_summary
from synthrl.sweep.schema import sweep_from_dict

REPO = Path(__file__).resolve().parents[1]
TINY = {"hidden": 32, "batch_size": 32}
MADE = {"name": "hopper-tiny", "make": {"env": "hopper", "policy": "random", "steps": 600, "seed": 0}}


def cql_doc(name: str, variants: list[dict], datasets=None) -> dict:
    return {"name": name, "algorithm": "cql", "datasets": datasets or [MADE], "seeds": "0-1", "seeds_per_trial": 2,
            "finetune": {"updates": 40, "eval_every": 20, "eval_episodes": 1, "config": TINY},
            "resources": {"cpus_per_trial": 1, "max_failures": 1}, "variants": variants}


# -- sweep plan (no Ray) ---------------------------------------------------------------------------
def test_plan_lists_missing_dataset_files_and_the_cost_on_gpu_goals_and_measured_cpu_rates(tmp_path):
    doc = cql_doc("costs", [{"name": "CQL"}], datasets=[{"name": "mine", "path": str(tmp_path / "absent.hdf5"),
                                                        "env": "hopper"}])
    plan = make_plan(sweep_from_dict(doc, "costs.yaml"))
    text = plan_summary(plan, machine=Machine("this machine", 2, 0))
    assert "absent.hdf5  [MISSING]" in text
    assert f"missing: datasets: 1 file(s) not found in {tmp_path}: absent.hdf5" in text
    assert "estimated GPU-hours" in text and "speed goals of the CQL issue (goals: not measured" in text
    assert "estimated CPU-core-hours" in text and "measured on one core" in text and "4.5 seed-updates/s" in text
    assert re.search(r"on this machine \(2 CPUs, 0 GPUs\): about \d+ min wall-clock on CPU \(no GPU\), 1 trial", text)
    gpu = plan_summary(make_plan(sweep_from_dict({**doc, "resources": {"gpu_per_trial": 0.5}}, "c.yaml")),
                       machine=Machine("the cluster at h:6379", 64, 8))
    assert "the cluster at h:6379 (64 CPUs, 8 GPUs): about" in gpu and "on 8 GPU(s)" in gpu and "goal rates" in gpu

    # the command line says the same, and a file that exists is not called missing
    (tmp_path / "absent.hdf5").write_bytes(b"")
    sweep_file = tmp_path / "costs.yaml"
    sweep_file.write_text(yaml.safe_dump({**doc, "datasets": doc["datasets"] + ["hopper-medium-v2"]}))
    result = subprocess.run([sys.executable, "-m", "synthrl", "sweep", "plan", str(sweep_file)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "hopper_medium-v2.hdf5  [MISSING]" in result.stdout and "absent.hdf5  [MISSING]" not in result.stdout
    assert "missing: datasets: 1 file(s) not found" in result.stdout and "on this machine (" in result.stdout


def test_a_closed_stdout_pipe_ends_quietly():
    # 1440 trials: far more than a pipe buffer, so the writes after the reader has gone fail
    process = subprocess.Popen([sys.executable, "-m", "synthrl", "sweep", "plan", "sweeps/table6.yaml", "--trials",
                                "--set", "seeds_per_trial=1"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("sweep table6")
    process.stdout.close()   # what `| head -1` does
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert stderr == "", stderr


# -- records (no Ray) ------------------------------------------------------------------------------
def test_resume_keeps_the_launch_time_and_progress_ranks_trials_as_status_does(tmp_path):
    from trainables.launcher import ls_text, prepare, status_text
    from trainables.progress import SweepProgress
    from trainables.trainable import run_directory

    data = tmp_path / "hopper.hdf5"
    data.write_bytes(b"")
    doc = cql_doc("kept", [{"name": "A"}, {"name": "B"}], datasets=[{"name": "h", "path": str(data), "env": "hopper"}])
    sweep = sweep_from_dict(doc, "kept.yaml")
    storage = tmp_path / "store"
    first = prepare(sweep, storage, doc, {}, out=lambda _: None)
    record_path = storage / "kept" / "sweep.json"
    launched = json.loads(record_path.read_text())["created"]
    time.sleep(1.1)   # the records' clock has whole seconds
    prepare(sweep, storage, doc, {}, out=lambda _: None, resumed=True)
    record = json.loads(record_path.read_text())
    assert record["created"] == launched and record["resumed"] > launched
    assert f"launched {launched}, resumed {record['resumed']}" in ls_text(storage)

    # A's latest evaluation is worse than its earlier best, B's latest is the best latest one
    for trial, scores in zip(first.trials, ([(20, 90.0), (40, 10.0)], [(20, 30.0), (40, 50.0)])):
        rd = run_directory(storage, "kept", trial.trial_id)
        rd.write_params({"algorithm": "cql", "sweep": {"config": trial.config}})
        rd.append_metrics([{"seed": s, "update": u, "normalized_score": v} for u, v in scores for s in (0, 1)],
                          ["seed", "update", "normalized_score"])
    progress = SweepProgress("kept", "0/0", 0, storage)
    progress.started -= 3600
    progress.setup()
    assert time.time() - progress.started < 60   # elapsed counts from this start (or resume)
    assert progress.best() == (50.0, first.trials[1].trial_id)
    assert f"best latest score: 50.0 ({first.trials[1].trial_id}" in status_text(storage, "kept")


# -- a real local sweep: sockets, Ray's tools, Ctrl-C, resume ---------------------------------------
def _listening_sockets(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every listening TCP socket the processes hold (/proc, Linux)."""
    listening: dict[str, tuple[str, int]] = {}
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":   # LISTEN
                continue
            address, port = fields[1].split(":")
            raw = b"".join(struct.pack("<I", int(address[i:i + 8], 16)) for i in range(0, len(address), 8))
            listening[fields[9]] = (socket.inet_ntop(family, raw), int(port, 16))
    found = []
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:   # gone, or not ours to read
            continue
        for link in links:
            inode = link[len("socket:["):-1] if link.startswith("socket:[") else None
            if inode in listening:
                found.append((*listening[inode], pid))
    return found


def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in found]
        found.update(children)
        frontier += children
    return found


def _wait_for(predicate, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{log.read_text()[-3000:]}" if log else ""))


@pytest.fixture(scope="module")
def running_sweep(tmp_path_factory):
    """`synthrl sweep run` of a two-sweep file on its own local Ray, with one trial finished and one running."""
    pytest.importorskip("ray")
    root = tmp_path_factory.mktemp("hardening")
    storage = root / "store"
    short_tmp = Path(tempfile.mkdtemp(prefix="sh", dir="/tmp"))   # Ray's sockets need a short path
    first = cql_doc("hard-cql", [
        {"name": "short", "finetune": {"updates": 20, "eval_every": 20}},
        # long enough that it is still running when SIGINT comes, on an idle machine too
        {"name": "long", "finetune": {"updates": 2000, "eval_every": 200}},
    ])
    second = cql_doc("hard-more", [{"name": "CQL", "finetune": {"updates": 20, "eval_every": 20}}])
    sweep_file = root / "hard.yaml"
    sweep_file.write_text(yaml.safe_dump_all([first, second]))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(short_tmp)}
    log_path = root / "run.log"
    log = open(log_path, "w")
    driver = subprocess.Popen([sys.executable, "-m", "synthrl", "sweep", "run", str(sweep_file), "--storage",
                               str(storage)], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                              start_new_session=True)   # its own process group, as a terminal's job is
    runs = storage / "hard-cql" / "runs"
    info = {"driver": driver, "storage": storage, "log": log_path, "env": env, "file": sweep_file,
            "short": runs / "short" / "hopper-tiny" / "s0-1", "long": runs / "long" / "hopper-tiny" / "s0-1"}
    try:
        _wait_for(lambda: (info["short"] / "DONE").exists() and (info["long"] / "checkpoint").is_dir()
                  or driver.poll() is not None, 300, "one trial finished and one checkpointed", log_path)
        assert driver.poll() is None, log_path.read_text()[-3000:]
        assert not (info["long"] / "DONE").exists(), "the long trial finished before the tests could look at it"
        yield info
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=30)
        log.close()
        shutil.rmtree(short_tmp, ignore_errors=True)


def _seconds(duration: str) -> int:
    """'1m05s' / '42s' (the live view's clock) in seconds."""
    minutes, _, seconds = duration.rpartition("m")
    return 60 * int(minutes or 0) + int(seconds.rstrip("s"))


def _tools_line(log: Path) -> str:
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("Ray's own tools: ")]
    assert lines, log.read_text()[-3000:]
    return lines[0][len("Ray's own tools: "):]


@pytest.mark.ray
@pytest.mark.timeout(400)
def test_local_cluster_listens_on_loopback_only(running_sweep):
    sockets = _listening_sockets(_descendants(running_sweep["driver"].pid))
    owners = {Path(f"/proc/{pid}/exe").resolve().name for _, _, pid in sockets if Path(f"/proc/{pid}").exists()}
    assert {"gcs_server", "raylet"} <= owners, (owners, sockets)
    exposed = [(a, port) for a, port, _ in sockets if not (a.startswith("127.") or a in ("::1", "::ffff:127.0.0.1")
                                                         or a.startswith("::ffff:127."))]
    assert not exposed, f"listening beyond loopback: {exposed}"


@pytest.mark.ray
@pytest.mark.timeout(400)
def test_the_printed_ray_command_lists_the_trial_actors_by_trial_name(running_sweep):
    tools = _tools_line(running_sweep["log"])
    list_command = tools.split(" (")[0]   # RAY_AUTH_MODE=token ray list actors --address http://127.0.0.1:PORT
    assert list_command.startswith("RAY_AUTH_MODE=token ray list actors --address http://127.0.0.1:")
    words = shlex.split(list_command)
    env = {**running_sweep["env"], "RAY_AUTH_MODE": "token"}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    result = subprocess.run([ray_cli, *words[2:], "--detail", "--format", "json"], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    actors = [a for a in json.loads(result.stdout) if a["class_name"] == "ImplicitFunc" and a["state"] == "ALIVE"]
    names = {"short__hopper-tiny__s0-1", "long__hopper-tiny__s0-1"}
    assert actors and all(a["repr_name"] in names for a in actors), actors


@pytest.mark.ray
@pytest.mark.timeout(600)
def test_ctrl_c_stops_reports_launches_nothing_more_and_resume_finishes_the_file(running_sweep):
    from trainables.launcher import status_text

    driver, storage, log = running_sweep["driver"], running_sweep["storage"], running_sweep["log"]
    launched = json.loads((storage / "hard-cql" / "sweep.json").read_text())["created"]
    os.killpg(driver.pid, signal.SIGINT)   # Ctrl-C in a terminal reaches the whole process group
    assert driver.wait(timeout=120) == 130, log.read_text()[-3000:]
    out = log.read_text()
    assert "finished: results" not in out
    assert "[hard-cql] interrupted: 1 done, 1 partial of 2" in out, out[-3000:]
    assert "partial  long/hopper-tiny/s0-1: update" in out and "not started: hard-more" in out
    command = next(ln for ln in out.splitlines() if ln.startswith("resume with: "))[len("resume with: "):]
    assert command == f"synthrl sweep resume hard --storage {storage}"
    assert not (storage / "hard-more").exists()   # nothing of the second sweep was launched
    assert "partial long/hopper-tiny/s0-1: update" in (storage / "hard-cql" / "report.html").read_text()
    assert "1 done, 1 partial of 2" in status_text(storage, "hard-cql")
    assert "sweep hard-more: not started" in status_text(storage, "hard")

    words = shlex.split(command)
    started = time.time()
    result = subprocess.run([sys.executable, "-m", "synthrl", *words[1:]], capture_output=True, text=True,
                            timeout=480, env=running_sweep["env"], cwd=REPO)
    took = time.time() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[hard-cql] resuming Tune experiment" in result.stdout
    assert (running_sweep["long"] / "DONE").exists() and (storage / "hard-more" / "runs" / "CQL").is_dir()
    assert "trials: 2 done of 2" in status_text(storage, "hard-cql")
    assert "trials: 1 done of 1" in status_text(storage, "hard-more")
    # the live view's clock starts at the resume, and its best is the best latest score `status` shows
    progress = [ln for ln in result.stdout.splitlines() if ln.startswith("[hard-cql ")]
    assert progress, result.stdout[-3000:]
    elapsed = [_seconds(m) for ln in progress for m in re.findall(r"^\[hard-cql (\S+)\]", ln)]
    assert elapsed and max(elapsed) <= took + 1, (elapsed, took)
    best = re.search(r"best (\S+) \((\S+)\)", progress[-1]).groups()
    assert f"best latest score: {best[0]} ({best[1]} at update" in status_text(storage, "hard-cql")
    record = json.loads((storage / "hard-cql" / "sweep.json").read_text())
    assert record["created"] == launched and record.get("resumed")
