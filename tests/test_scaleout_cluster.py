"""Real Ray on loopback: a node with one logical GPU packs four 0.25-GPU trials at once, an impossible
request is refused naming the resource, and trial metrics reach the node's Prometheus endpoint."""

import os
import re
import time
import urllib.request
from pathlib import Path

import pytest

from scaleout_cluster import loopback_cluster

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def one_gpu_cluster():
    """A head with 4 logical CPUs and num_gpus=1 (a logical GPU) on 127.0.0.1; this process joins it."""
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Ray's unix socket paths have a length limit
    saved = dict(os.environ)
    try:
        with loopback_cluster(root, head_cpus=4, head_gpus=1, dashboard=False) as cluster:
            for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_metrics_report_interval_ms"):
                os.environ[key] = cluster.env[key]
            import ray

            from trainables.cluster import connect

            connect(cluster.address, logging_level="ERROR", log_to_driver=False)
            try:
                yield cluster
            finally:
                ray.shutdown()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)


def test_four_quarter_gpu_trials_share_one_gpu_and_impossible_requests_are_refused(one_gpu_cluster, tmp_path):
    from ray import tune

    from synthrl.errors import UserError
    from trainables.cluster import ResourceRequest, autoscale_node_types, check_requests, cluster_nodes, packing_report

    nodes = cluster_nodes()
    assert [n.resources.get("GPU") for n in nodes] == [1.0]
    trial = ResourceRequest("fine-tuning trial", {"CPU": 1, "GPU": 0.25}, count=4)
    check_requests([trial], nodes, autoscale_node_types())
    assert "1 at once" not in "\n".join(packing_report([trial], nodes))
    assert "4 at once in all, 1 wave(s)" in "\n".join(packing_report([trial], nodes))

    # a whole-GPU-and-more trial can never start on this cluster: refused up front, not PENDING forever
    with pytest.raises(UserError, match=r"resources.gpu_per_trial: .*2 GPU on one node.*largest node has 1 GPU"):
        check_requests([ResourceRequest("fine-tuning trial", {"CPU": 1, "GPU": 2}, where="resources.gpu_per_trial")],
                       nodes, autoscale_node_types())

    # a barrier: each trial checks in, then waits until all four are in, so they can only all
    # succeed if the node ran them at the same time (worker start-up under load is allowed for)
    barrier = tmp_path / "barrier"
    barrier.mkdir()

    def trial_fn(config):
        import ray

        (barrier / str(config["i"])).touch()
        deadline = time.time() + 90
        while len(list(barrier.iterdir())) < 4 and time.time() < deadline:
            time.sleep(0.2)
        tune.report({"all_running": len(list(barrier.iterdir())) == 4,
                     "gpus": ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0)})

    trainable = tune.with_resources(trial_fn, {"cpu": 1, "gpu": 0.25})
    results = tune.Tuner(trainable, param_space={"i": tune.grid_search([0, 1, 2, 3])},
                         run_config=tune.RunConfig(storage_path=str(tmp_path), name="pack", verbose=0)).fit()
    metrics = [r.metrics for r in results]
    assert len(metrics) == 4 and not results.errors
    assert all(m["gpus"] == 0.25 for m in metrics)
    assert all(m["all_running"] for m in metrics)


def test_trial_metrics_reach_the_prometheus_endpoint(one_gpu_cluster):
    import ray

    @ray.remote(num_cpus=0)
    class LiveTrial:  # stands in for a trial between evaluations: alive, not re-publishing by itself
        def evaluate_twice(self):
            from trainables.metrics import TrialMetrics

            self.metrics = TrialMetrics("mysweep", "CQL+MDP", "hopper-medium-v2", [0, 1, 2])
            rows = [{"normalized_score": 40.0}, {"normalized_score": 50.0}, {"normalized_score": 60.0}]
            self.metrics.record_evaluation(rows, updates=500, train_seconds=1.0)
            return self.metrics.record_evaluation(rows, updates=500, train_seconds=2.0)

    trial = LiveTrial.remote()
    assert ray.get(trial.evaluate_twice.remote()) == {"updates_per_second": 250.0, "normalized_score": 50.0}

    def scrape():
        url = f"http://127.0.0.1:{one_gpu_cluster.head.metrics_export_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def value(text, metric):
        found = re.findall(rf"^ray_{metric}{{([^}}]*)}} ([0-9.e+-]+)$", text, flags=re.M)
        if not found:
            return None
        labels, v = found[0]
        for tag in ('sweep="mysweep"', 'variant="CQL+MDP"', 'dataset="hopper-medium-v2"', 'seed_group="0-2"'):
            assert tag in labels
        return float(v)

    names = ["synthrl_normalized_score", "synthrl_updates_per_second", "synthrl_evaluations_total",
             "synthrl_updates_total"]
    deadline, seen = time.monotonic() + 40, {}
    while time.monotonic() < deadline and len(seen) < len(names):
        text = scrape()
        seen = {n: v for n in names if (v := value(text, n)) is not None}
        time.sleep(1.0)
    assert seen == {"synthrl_normalized_score": 50.0, "synthrl_updates_per_second": 250.0,
                    "synthrl_evaluations_total": 2.0, "synthrl_updates_total": 1000.0}
    # the gauges stay visible between evaluations (Ray's agent drops a gauge ~2 s after its last set)
    time.sleep(5.0)
    text = scrape()
    assert value(text, "synthrl_normalized_score") == 50.0
    ray.kill(trial)


def test_sweep_plan_cluster_prints_the_packing_and_what_launch_would_refuse(one_gpu_cluster, capsys):
    from synthrl.cli import main

    sweep = str(REPO / "sweeps" / "optuna_cql_minq.yaml")
    assert main(["sweep", "plan", sweep, "--cluster", "--address", one_gpu_cluster.address]) == 0
    out = capsys.readouterr().out
    assert "stage 1: 1 x pre-training job {CPU: 1, GPU: 1}" in out
    # 24 Optuna samples of 0.25 GPU + 1 CPU on a 4-CPU, 1-GPU node; the search caps them at 4 anyway
    assert "stage 2: 24 x fine-tuning trial {CPU: 1, GPU: 0.25}" in out
    assert "4 at once in all (the sweep's max_concurrent 4), 6 wave(s)" in out
    assert "launch would be refused" not in out

    assert main(["sweep", "plan", sweep, "--cluster", "--address", one_gpu_cluster.address,
                 "--set", "resources.gpu_per_trial=2"]) == 0
    out = capsys.readouterr().out
    assert "launch would be refused: resources.gpu_per_trial: each fine-tuning trial asks for 2 GPU" in out
