"""Scale-out pieces that need no running Ray: cluster.yaml, resource checks, packing, search, metrics helpers."""

import json
from pathlib import Path

import pytest
import yaml

from synthrl.errors import UserError
from trainables.cluster import (
    NodeCapacity,
    ResourceRequest,
    check_reachable,
    check_requests,
    job_runtime_env,
    logger_callbacks,
    packing_report,
    slots_on,
)
from trainables.metrics import mean_score, seed_group_tag

REPO = Path(__file__).resolve().parents[1]


# -- cluster.yaml --------------------------------------------------------------------------------
def _cluster_config() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


def test_cluster_yaml_validates_against_rays_schema():
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = _cluster_config()
    jsonschema.validate(config, schema)
    # the schema is not toothless: a node type without its resources is rejected
    broken = json.loads(json.dumps(config))
    del broken["available_node_types"]["gpu_worker"]["resources"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_cluster_yaml_declares_gpu_workers_installs_project_and_shares_storage():
    config = _cluster_config()
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu_types = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu_types, "a worker node type must declare its GPU resource"
    assert types[config["head_node_type"]]["resources"].get("GPU", 0) == 0
    # the project travels to the nodes and is installed there
    assert "." in config["file_mounts"].values()
    assert any("pip install" in cmd and "synthrl" in cmd for cmd in config["setup_commands"])
    # shared storage for --storage, and token auth + dashboard on loopback in the start commands
    text = (REPO / "cluster.yaml").read_text()
    assert "--storage /mnt/shared" in text and "s3://" in text
    head_start = " ".join(config["head_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head_start and "--dashboard-host=127.0.0.1" in head_start
    assert "ray start --address" in text  # the on-premise recipe


# -- resource checks and packing -------------------------------------------------------------------
ONE_GPU_NODE = [NodeCapacity("node-a", {"CPU": 4.0, "GPU": 1.0})]


def test_slots_count_gpu_fractions_and_cpus():
    assert slots_on({"CPU": 1, "GPU": 0.25}, {"CPU": 4, "GPU": 1}) == 4
    assert slots_on({"CPU": 1, "GPU": 0.25}, {"CPU": 2, "GPU": 1}) == 2     # CPUs bind first
    assert slots_on({"CPU": 0.5, "GPU": 0.1}, {"CPU": 8, "GPU": 1}) == 10   # 0.1 * 10 is not < 1
    assert slots_on({"CPU": 1, "GPU": 1}, {"CPU": 8}) == 0


def test_impossible_request_is_refused_naming_the_resource():
    trial = ResourceRequest("fine-tuning trial", {"CPU": 1, "GPU": 2}, count=3, where="resources.gpu_per_trial")
    with pytest.raises(UserError, match=r"resources.gpu_per_trial: .*2 GPU on one node.*largest node has 1 GPU"):
        check_requests([trial], ONE_GPU_NODE)
    cpu_heavy = ResourceRequest("fine-tuning trial", {"CPU": 16, "GPU": 0.25}, where="resources.cpus_per_trial")
    with pytest.raises(UserError, match=r"16 CPU on one node.*largest node has 4 CPU"):
        check_requests([cpu_heavy], ONE_GPU_NODE)
    # the same requests are fine once the autoscaler may add a node type that holds them
    big = [NodeCapacity("gpu_worker", {"CPU": 16.0, "GPU": 4.0}, max_count=2)]
    check_requests([trial, cpu_heavy], ONE_GPU_NODE, big)


def test_multi_worker_pretraining_must_fit_in_total():
    two_gpu_job = ResourceRequest("pre-training job", {"CPU": 1, "GPU": 1}, bundles=2, where="resources.pretrain_gpus")
    with pytest.raises(UserError, match=r"2 workers .*at most 1 at once .*1 GPU in all"):
        check_requests([two_gpu_job], ONE_GPU_NODE)
    check_requests([two_gpu_job], ONE_GPU_NODE + [NodeCapacity("node-b", {"CPU": 2.0, "GPU": 1.0})])


def test_packing_report_four_quarter_gpu_trials_per_gpu():
    trials = ResourceRequest("fine-tuning trial", {"CPU": 1, "GPU": 0.25}, count=10)
    lines = packing_report([trials], ONE_GPU_NODE + [NodeCapacity("node-b", {"CPU": 2.0, "GPU": 1.0})])
    text = "\n".join(lines)
    assert "node-a: 4 at once" in text and "node-b: 2 at once" in text
    assert "6 at once in all, 2 wave(s)" in text


# -- trackers, jobs, addresses --------------------------------------------------------------------
@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_logger_callbacks_name_the_missing_package(name):
    import importlib.util

    if importlib.util.find_spec(name) is not None:
        callbacks = logger_callbacks([name], project="s")
        assert len(callbacks) == 1 and type(callbacks[0]).__name__.lower().startswith(name)
    else:
        with pytest.raises(UserError, match=rf"--log {name}: the {name} package is not installed; `pip install {name}`"):
            logger_callbacks([name], project="s")
    with pytest.raises(UserError, match="expected one of wandb, mlflow"):
        logger_callbacks(["neptune"], project="s")


def test_job_runtime_env_carries_the_project_and_the_sweep_file(tmp_path):
    sweep = tmp_path / "elsewhere" / "tiny.yaml"
    sweep.parent.mkdir()
    sweep.write_text("name: tiny\n")
    env = job_runtime_env(sweep, tmp_path / "staging")
    assert (Path(env["working_dir"]) / "tiny.yaml").read_text() == "name: tiny\n"
    modules = {Path(m).name for m in env["py_modules"]}
    assert {"synthrl", "trainables"} <= modules
    assert all((Path(m) / "__init__.py").is_file() for m in env["py_modules"])


def test_unreachable_address_fails_fast_with_a_clear_message():
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=rf"--address 127.0.0.1:{port}: nothing answers at 127.0.0.1:{port}"):
        check_reachable(f"127.0.0.1:{port}", 6379, timeout_s=2)
    with pytest.raises(UserError, match="expected HOST:PORT"):
        check_reachable("http://", 8265)


# -- metrics helpers -----------------------------------------------------------------------------
def test_seed_group_tags_and_mean_score():
    assert seed_group_tag([0, 1, 2, 3, 4]) == "0-4"
    assert seed_group_tag([0, 3, 7]) == "0,3,7"
    assert seed_group_tag([5]) == "5"
    assert mean_score([{"normalized_score": 10.0}, {"normalized_score": "30"}]) == 20.0
    assert mean_score([{"normalized_score": None}, {"return": 3}]) is None


def test_plan_requests_follow_the_sweep_file_and_the_fallback():
    from synthrl.sweep.plan import make_plan
    from synthrl.sweep.schema import sweep_from_dict
    from trainables.cluster import plan_requests

    sweep = sweep_from_dict({
        "name": "dt2", "algorithm": "dt", "datasets": ["hopper-medium-v2", "walker2d-medium-v2"], "seeds": "0-3",
        "seeds_per_trial": 2, "resources": {"gpu_per_trial": 0.25, "cpus_per_trial": 2, "pretrain_gpus": 2},
        "variants": [{"name": "DT"}, {"name": "DT+MC", "pretrain": {"data": "mc", "steps": 1000}}]})
    pretrain, trials = plan_requests(make_plan(sweep))
    # one DT artifact shared by both datasets, on 2 Ray Train workers of one GPU each
    assert (pretrain.count, pretrain.bundles, pretrain.bundle["GPU"]) == (1, 2, 1.0)
    assert pretrain.where == "resources.pretrain_gpus"
    # 2 variants x 2 datasets x 2 seed groups
    assert (trials.count, trials.bundle) == (8, {"CPU": 2, "GPU": 0.25})
    # on a GPU-less cluster the launcher asks for CPU only, and so does the check
    _, cpu_trials = plan_requests(make_plan(sweep), {"cpu": 2, "gpu": 0.0}, {"num_cpus": 1, "num_gpus": 0.0})
    assert cpu_trials.bundle["GPU"] == 0.0 and cpu_trials.where == "resources.cpus_per_trial"
