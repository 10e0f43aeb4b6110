"""Sweeps on a real two-node Ray cluster on loopback (head + worker, token auth on):
a sweep submitted as a Ray Job, the Optuna example, and a worker raylet killed mid-sweep."""

import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
import yaml

from scaleout_cluster import loopback_cluster

pytestmark = [pytest.mark.ray]

REPO = Path(__file__).resolve().parents[1]
TINY_NET = {"hidden": 32, "batch_size": 32}
TINY_DATA = [{"name": "hopper-tiny", "make": {"env": "hopper", "policy": "random", "steps": 600, "seed": 0}}]


@pytest.fixture(scope="module")
def two_nodes():
    """Head (1 CPU, dashboard + Jobs API on 127.0.0.1) and one worker (1 CPU); this process gets the token."""
    import shutil

    root = tempfile.mkdtemp(prefix="re", dir="/tmp")  # short: Ray's unix socket paths have a length limit
    saved = dict(os.environ)
    try:
        with loopback_cluster(root, head_cpus=1) as cluster:
            cluster.add_worker(num_cpus=1)
            for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "PATH"):
                os.environ[key] = cluster.env[key]
            yield cluster
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)


def tiny_sweep(path: Path, name: str, variants: list[dict], seeds: str = "0-1", updates: int = 40) -> Path:
    path.write_text(yaml.safe_dump({
        "name": name, "algorithm": "cql", "datasets": TINY_DATA, "seeds": seeds, "seeds_per_trial": 2,
        "finetune": {"updates": updates, "eval_every": 20, "eval_episodes": 1, "config": TINY_NET},
        "resources": {"gpu_per_trial": 0, "cpus_per_trial": 1, "pretrain_gpus": 0, "max_failures": 3},
        "variants": variants}))
    return path


@pytest.mark.timeout(360)
def test_sweep_submitted_as_a_ray_job_finishes_and_status_reads_it(two_nodes, tmp_path, capsys):
    from ray.job_submission import JobStatus, JobSubmissionClient

    from synthrl.cli import main

    sweep = tiny_sweep(tmp_path / "jobbed.yaml", "jobbed", [{"name": "CQL"}])
    storage = tmp_path / "storage"
    assert main(["sweep", "submit", str(sweep), "--address", two_nodes.dashboard_url, "--storage", str(storage)]) == 0
    out = capsys.readouterr().out
    job_id = out.split()[1]
    assert job_id.startswith("synthrl-jobbed-")
    assert f"dashboard: {two_nodes.dashboard_url}/#/jobs/{job_id}" in out
    assert f"follow:    ray job logs --address {two_nodes.dashboard_url} --follow {job_id}" in out

    client = JobSubmissionClient(two_nodes.dashboard_url)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not client.get_job_status(job_id).is_terminal():
        time.sleep(2)
    assert client.get_job_status(job_id) == JobStatus.SUCCEEDED, client.get_job_logs(job_id)[-3000:]
    assert client.get_job_info(job_id).metadata["sweep"] == "jobbed"

    assert main(["sweep", "status", "jobbed", "--storage", str(storage)]) == 0
    status = capsys.readouterr().out
    assert "trials: 1 done of 1" in status and "progress: 100.0%" in status
    assert (storage / "jobbed" / "runs" / "CQL" / "hopper-tiny" / "s0-1" / "DONE").is_file()


@pytest.mark.timeout(360)
def test_optuna_example_runs_a_few_trials_and_records_the_best_config(two_nodes, tmp_path, capsys):
    import json

    from synthrl.cli import main

    storage = tmp_path / "storage"
    tiny = {
        "datasets": TINY_DATA, "seeds": "0-1", "seeds_per_trial": 2,
        "finetune": {"updates": 40, "eval_every": 20, "eval_episodes": 1, "config": TINY_NET},
        "variants": [{"name": "CQL+MDP", "pretrain": {"kind": "mdp", "updates": 20, "states": 10, "actions": 10}}],
        "resources.gpu_per_trial": 0, "resources.pretrain_gpus": 0,
        "search.num_samples": 3, "search.max_concurrent": 2, "search.asha.grace_period": 1,
    }
    sets = [arg for key, value in tiny.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    code = main(["sweep", "run", str(REPO / "sweeps" / "optuna_cql_minq.yaml"), "--address", two_nodes.address,
                 "--storage", str(storage), *sets])
    out = capsys.readouterr().out
    assert code == 0, out[-3000:]
    record = json.loads((storage / "optuna-cql-minq" / "sweep.json").read_text())
    best = record["best_config"]
    assert set(best["config"]) == {"cql_min_q_weight", "cql_n_actions"}
    assert 0.5 <= best["config"]["cql_min_q_weight"] <= 20 and best["config"]["cql_n_actions"] in (3, 5, 10, 20)
    assert "search: best normalized_score" in out
    # three sampled configurations, each with its own run directory of the design's layout
    runs = sorted((storage / "optuna-cql-minq" / "runs").rglob("params.json"))
    assert len(runs) == 3
    sampled = {json.loads(p.read_text())["sweep"]["config"]["cql_min_q_weight"] for p in runs}
    assert len(sampled) == 3 and best["config"]["cql_min_q_weight"] in sampled


@pytest.mark.timeout(480)
def test_worker_raylet_killed_mid_sweep_the_sweep_completes_without_recomputing(two_nodes, tmp_path):
    from synthrl.rundir import RunDir
    from synthrl.sweep.schema import load_sweep
    from trainables.launcher import run_sweep, worker_pids

    # 4 trials, two short (2 evaluations) then two long (8); one CPU per node, so two run at a time,
    # one on each node: a short trial is done while a long one is part-way
    sweep_file = tiny_sweep(tmp_path / "twonode.yaml", "twonode",
                            [{"name": "short", "finetune": {"updates": 40}},
                             {"name": "long", "finetune": {"updates": 160}}], seeds="0-3")
    storage = tmp_path / "storage"
    runs = storage / "twonode" / "runs"
    worker_tree = set()
    seen: dict = {}

    def kill_worker_raylet_mid_trial():
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                try:
                    worker_tree.update(two_nodes.workers[0].descendants())
                    done = [p.parent for p in runs.rglob("DONE")] if runs.is_dir() else []
                    for trial_id, (_, pid) in worker_pids(storage, "twonode").items():
                        run = RunDir(runs / trial_id)
                        # kill once a trial has finished and a later one is part-way on the worker
                        if done and pid in worker_tree and run.has_checkpoint() and not run.is_done():
                            seen.update(trial=trial_id, rows=run.read_metrics(),
                                        finished={str(d): (d / "metrics.csv").read_bytes() for d in done})
                            os.kill(two_nodes.workers[0].raylet_pid(), signal.SIGKILL)
                            return
                except (FileNotFoundError, ProcessLookupError):
                    pass  # a file swapped by an atomic rename, or a process gone, as we looked: look again
                time.sleep(0.1)
            seen["error"] = "no trial ran on the worker node"
        except Exception as e:  # surfaces in the assertions below
            seen["error"] = repr(e)

    watcher = threading.Thread(target=kill_worker_raylet_mid_trial, daemon=True)
    watcher.start()
    lines: list[str] = []
    sweep = load_sweep(sweep_file)
    code = run_sweep(sweep, yaml.safe_load(sweep_file.read_text()), {}, storage, address=two_nodes.address,
                     dashboard=False, out=lines.append)
    watcher.join(timeout=10)
    assert "error" not in seen, seen
    assert code == 0, "\n".join(lines[-30:])

    # every trial finished, each evaluation recorded once
    for variant, updates in (("short", 40), ("long", 160)):
        for group in ("s0-1", "s2-3"):
            run = RunDir(runs / variant / "hopper-tiny" / group)
            assert run.is_done(), (variant, group)
            rows = sorted((int(r["seed"]), int(r["update"])) for r in run.read_metrics())
            seeds = (int(group[1]), int(group[3]))
            assert rows == sorted((s, u) for s in seeds for u in range(20, updates + 1, 20)), (variant, group)
    # trials that had finished before the kill were not recomputed (their files are byte-identical)
    assert seen["finished"]
    for directory, metrics in seen["finished"].items():
        assert (Path(directory) / "metrics.csv").read_bytes() == metrics
    # the killed trial resumed from its checkpoint: the rows it had written are still there, unchanged
    # (a restart from scratch would have rewritten them with new wall-clock times)
    # (only the last row may be redone: the kill can fall between its write and the checkpoint)
    killed = RunDir(runs / seen["trial"]).read_metrics()
    kept = [row for row in seen["rows"] if row in killed]
    assert kept and len(kept) >= len(seen["rows"]) - 1 and killed[:len(kept)] == kept
