"""Running sweeps on a Ray cluster: connect, submit as a Ray Job, pack GPUs, refuse impossible requests.

Everything here uses Ray's own machinery (``ray.init(address=...)``, the Jobs SDK, the autoscaler's
published cluster config, Tune's logger callbacks); nothing schedules work by itself.

- ``connect(address)``            join an existing cluster (``--address HOST:6379`` or ``auto``)
- ``submit_job(...)``             ``synthrl sweep submit``: the sweep as a Ray Job, with this project in
                                  the job's runtime environment; prints the job id, dashboard URL and
                                  the command that follows its logs
- ``cluster_nodes()``             live nodes' resources; ``autoscale_node_types()`` what it may add
- ``check_requests(...)``         refuse a request no node can hold and no node type could add
- ``packing_report(...)``         ``synthrl sweep plan --cluster``: how trials pack on those nodes
- ``logger_callbacks(names)``     ``--log wandb|mlflow``: Ray's logger callbacks
"""

from __future__ import annotations

import math
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import urlparse

from synthrl.errors import UserError
from trainables.distributed import runs_data_parallel

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# the importable packages of this project: what a job's runtime environment carries
PROJECT_PACKAGES = ("synthrl", "trainables", "analysis")
RAY_NAMESPACE = "synthrl"
EPS = 1e-6  # Ray accounts resources in units of 1e-4; this absorbs float noise like 0.1 * 10


# -- connecting ----------------------------------------------------------------------------------
def _host_port(address: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    if not parsed.hostname:
        raise UserError(f"--address {address!r}: expected HOST:PORT (GCS, e.g. 10.0.0.5:6379) or "
                        "http://HOST:8265 (dashboard, for sweep submit)")
    try:
        port = parsed.port or default_port
    except ValueError:
        raise UserError(f"--address {address!r}: the port is not a number") from None
    return parsed.hostname, port


def check_reachable(address: str, default_port: int, timeout_s: float = 5.0) -> None:
    """Fail fast with a clear message: ``ray.init`` on a dead address retries for minutes."""
    host, port = _host_port(address, default_port)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return
    except OSError as e:
        raise UserError(f"--address {address}: nothing answers at {host}:{port} ({e.strerror or e}); "
                        "start a cluster with `ray start --head` or `ray up cluster.yaml`, "
                        "or check the host and port") from None


def connect(address: str, **init_kwargs) -> None:
    """``ray.init`` on an existing cluster (``auto`` finds a local one), in the synthrl namespace."""
    import ray
    from ray.exceptions import AuthenticationError

    if ray.is_initialized():
        return
    if address.startswith(("http://", "https://")):
        raise UserError(f"--address {address}: that is a dashboard (Jobs API) address; join the cluster at its "
                        "GCS address HEAD:6379 instead, or use `synthrl sweep submit` with this one")
    if address not in ("auto", "local"):
        check_reachable(address, 6379)
    try:
        ray.init(address=address, namespace=RAY_NAMESPACE, **init_kwargs)
    except AuthenticationError as e:
        raise UserError(f"--address {address}: the cluster uses token authentication and refused this client "
                        f"({str(e).splitlines()[0]}); copy its token to ~/.ray/auth_token or set "
                        "RAY_AUTH_TOKEN") from None
    except ConnectionError as e:
        raise UserError(f"--address {address}: could not join the Ray cluster ({str(e).splitlines()[0]})") from None


# -- Ray Jobs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    dashboard_url: str
    follow_command: str


def job_runtime_env(sweep_file: Path, staging: Path) -> dict:
    """Runtime environment carrying this project: its packages as ``py_modules``, and a working
    directory holding only the sweep file (so a sweep file from anywhere travels with the job)."""
    staging.mkdir(parents=True, exist_ok=True)
    shutil.copy2(sweep_file, staging / sweep_file.name)
    modules = [str(PROJECT_ROOT / name) for name in PROJECT_PACKAGES if (PROJECT_ROOT / name / "__init__.py").is_file()]
    return {
        "working_dir": str(staging),
        "py_modules": modules,
        "excludes": ["__pycache__", "*.pyc"],
        "env_vars": {"PYTHONUNBUFFERED": "1"},
    }


def submit_job(sweep_file: str | Path, address: str, name: str, run_args: Sequence[str] = (),
               entrypoint_num_cpus: float = 0) -> SubmittedJob:
    """Submit ``synthrl sweep run SWEEP_FILE RUN_ARGS...`` as a Ray Job on the cluster whose dashboard
    (Jobs API) is ``address`` (http://HEAD:8265). The job's submission id starts with the sweep name,
    so the dashboard's job list shows the sweep by name."""
    from ray.job_submission import JobSubmissionClient

    sweep_file = Path(sweep_file)
    if not sweep_file.is_file():
        raise UserError(f"{sweep_file}: no such sweep file")
    url = address if "://" in address else f"http://{address}"
    check_reachable(url, 8265)
    try:
        client = JobSubmissionClient(url)
    except Exception as e:  # the SDK raises ConnectionError/RuntimeError with a multi-line text
        raise UserError(f"--address {address}: no Ray Jobs API there ({str(e).splitlines()[0]}); "
                        "expected the dashboard address, e.g. http://HEAD:8265") from None
    submission_id = f"synthrl-{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    entrypoint = " ".join(["python", "-m", "synthrl", "sweep", "run", _quote(sweep_file.name), *map(_quote, run_args)])
    with tempfile.TemporaryDirectory(prefix="synthrl-job-") as staging:
        job_id = client.submit_job(
            entrypoint=entrypoint,
            submission_id=submission_id,
            runtime_env=job_runtime_env(sweep_file, Path(staging)),
            metadata={"sweep": name, "sweep_file": str(sweep_file)},
            entrypoint_num_cpus=entrypoint_num_cpus,
        )
    return SubmittedJob(job_id=job_id, dashboard_url=f"{url.rstrip('/')}/#/jobs/{job_id}",
                        follow_command=f"ray job logs --address {url} --follow {job_id}")


def _quote(text: str) -> str:
    import shlex

    return shlex.quote(str(text))


# -- resources: what nodes hold, what trials ask --------------------------------------------------
@dataclass(frozen=True)
class NodeCapacity:
    """A live node (``max_count`` 1) or an autoscaler node type (``max_count`` it may launch; -1: no limit)."""

    name: str
    resources: dict[str, float]
    max_count: int = 1


@dataclass(frozen=True)
class ResourceRequest:
    """``count`` requests of ``bundles`` bundles each; every bundle must fit on one node."""

    label: str                      # e.g. "fine-tuning trial" or "pre-training job dt-mc"
    bundle: dict[str, float]        # e.g. {"CPU": 1, "GPU": 0.25}
    count: int = 1
    bundles: int = 1                # Ray Train workers of a multi-GPU pre-training job
    where: str = ""                 # the sweep-file key that sets it, e.g. "resources.gpu_per_trial"
    stage: str = "trials"
    max_concurrent: int | None = None   # a cap of the sweep's own (Optuna's concurrency limit)


def cluster_nodes() -> list[NodeCapacity]:
    """Alive nodes of the connected cluster and their total (not free) resources."""
    import ray

    nodes = []
    for node in ray.nodes():
        if node.get("Alive"):
            resources = {k: float(v) for k, v in node.get("Resources", {}).items()
                         if not k.startswith("node:") and k not in ("memory", "object_store_memory")}
            nodes.append(NodeCapacity(name=node.get("NodeManagerAddress", "?") + ":" + node["NodeID"][:8],
                                      resources=resources))
    return nodes


def cluster_machine(address: str):
    """The connected cluster's live CPUs and GPUs in all, for `sweep plan --cluster`'s wall-clock estimate."""
    from synthrl.sweep.plan import Machine

    nodes = cluster_nodes()
    return Machine(f"the cluster at {address}", sum(n.resources.get("CPU", 0.0) for n in nodes),
                   sum(n.resources.get("GPU", 0.0) for n in nodes))


def autoscale_node_types() -> list[NodeCapacity]:
    """Node types the autoscaler may still add (from the cluster config it publishes); [] when it has none."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # a cluster without an autoscaler, or an older GCS: nothing can be added
        return []
    if config is None:
        return []
    return [NodeCapacity(name=group.name or "node type", resources={k: float(v) for k, v in group.resources.items()},
                         max_count=int(group.max_count))
            for group in config.node_group_configs if group.max_count != 0]


def slots_on(bundle: dict[str, float], capacity: dict[str, float]) -> int:
    """How many copies of ``bundle`` one node with ``capacity`` holds at once."""
    needed = {k: v for k, v in bundle.items() if v > 0}
    if not needed:
        return 10**9  # a zero-resource request is not limited by this node
    return min(int(math.floor(capacity.get(k, 0.0) / v + EPS)) for k, v in needed.items())


def plan_requests(plan, trial_request: dict | None = None, pretrain_request: dict | None = None,
                  trials: int | None = None) -> list[ResourceRequest]:
    """The resource requests a sweep plan launches: stage 1 pre-training jobs, stage 2 trials.

    ``trial_request`` ({"cpu", "gpu"}) and ``pretrain_request`` ({"num_cpus", "num_gpus"}) are what
    the launcher will actually ask for (after a CPU fallback); by default the sweep file's values.
    A DT pre-training job on several GPUs is that many Ray Train workers of one GPU each.
    """
    sweep = plan.sweep
    res = sweep.resources
    trial_request = trial_request or {"cpu": res.cpus_per_trial, "gpu": res.gpu_per_trial}
    pretrain_request = pretrain_request or {"num_cpus": res.pretrain_cpus, "num_gpus": float(res.pretrain_gpus)}
    requests = []
    artifacts = [a for a in plan.artifacts if a.needs is None]
    if artifacts:
        gpus = float(pretrain_request["num_gpus"])
        if runs_data_parallel(sweep.algorithm, gpus):
            requests.append(ResourceRequest("pre-training job (Ray Train)", {"CPU": pretrain_request["num_cpus"],
                                            "GPU": 1.0}, count=len(artifacts), bundles=int(gpus),
                                            where="resources.pretrain_gpus", stage="stage 1"))
        else:
            requests.append(ResourceRequest("pre-training job", {"CPU": pretrain_request["num_cpus"], "GPU": gpus},
                                            count=len(artifacts), where="resources.pretrain_gpus", stage="stage 1"))
    cap = None
    if trials is None:
        trials = len(plan.runnable_trials())
        if sweep.search is not None:
            trials *= sweep.search.num_samples
            cap = sweep.search.max_concurrent
    if trials:
        where = "resources.gpu_per_trial" if trial_request["gpu"] > 0 else "resources.cpus_per_trial"
        requests.append(ResourceRequest("fine-tuning trial", {"CPU": trial_request["cpu"], "GPU": trial_request["gpu"]},
                                        count=trials, where=where, stage="stage 2", max_concurrent=cap))
    return requests


def check_requests(requests: Iterable[ResourceRequest], nodes: Sequence[NodeCapacity],
                   node_types: Sequence[NodeCapacity] = ()) -> None:
    """Refuse, naming the resource, any request no live node can hold and no autoscaler node type
    could add, so nothing is left PENDING forever. Multi-bundle requests must also fit in total."""
    everything = [*nodes, *node_types]
    for req in requests:
        if not any(slots_on(req.bundle, n.resources) >= 1 for n in everything):
            resource, amount = _missing_resource(req.bundle, everything)
            largest = max((n.resources.get(resource, 0.0) for n in everything), default=0.0)
            where = f"{req.where}: " if req.where else ""
            scale = " and the cluster cannot autoscale to a bigger node" if not node_types else \
                " and no node type the autoscaler may add has more"
            raise UserError(f"{where}each {req.label} asks for {amount:g} {resource} on one node, but the largest "
                            f"node has {largest:g} {resource}{scale}; lower the request or add such a node")
        if req.bundles > 1:
            capacity = sum(slots_on(req.bundle, n.resources) * (n.max_count if n.max_count > 0 else 10**6)
                           for n in everything)
            if capacity < req.bundles:
                resource, _ = _missing_resource(req.bundle, everything)
                total = sum(n.resources.get(resource, 0.0) * max(n.max_count, 1) for n in everything)
                where = f"{req.where}: " if req.where else ""
                raise UserError(f"{where}{req.label} asks for {req.bundles} workers of "
                                f"{_bundle_text(req.bundle)}, but the cluster holds at most {capacity} at once "
                                f"({total:g} {resource} in all, autoscaling included)")


def _missing_resource(bundle: dict[str, float], nodes: Sequence[NodeCapacity]) -> tuple[str, float]:
    """The resource to name: one no node has enough of (GPU first, then CPU, then custom ones)."""
    needed = {k: v for k, v in bundle.items() if v > 0}
    short = [k for k, v in needed.items() if max((n.resources.get(k, 0.0) for n in nodes), default=0.0) + EPS < v]
    resource = sorted(short or needed, key=lambda k: (k != "GPU", k != "CPU", k))[0]
    return resource, needed[resource]


def _bundle_text(bundle: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(bundle.items()) if v > 0) + "}"


def packing_report(requests: Sequence[ResourceRequest], nodes: Sequence[NodeCapacity],
                   node_types: Sequence[NodeCapacity] = ()) -> list[str]:
    """Lines for ``sweep plan --cluster``: per stage, how many of each request run at once on each
    node, in all, and in how many waves the stage completes."""
    lines = [f"cluster: {len(nodes)} node(s): " + "; ".join(f"{n.name} {_bundle_text(n.resources)}" for n in nodes)]
    for n in node_types:
        limit = "unlimited" if n.max_count < 0 else f"up to {n.max_count}"
        lines.append(f"  autoscaling: node type {n.name} {_bundle_text(n.resources)}, {limit}")
    for req in requests:
        per_node = {n.name: slots_on(req.bundle, n.resources) for n in nodes}
        at_once = sum(min(s, req.count * req.bundles) for s in per_node.values()) // req.bundles
        if req.max_concurrent:
            at_once = min(at_once, req.max_concurrent)
        lines.append(f"{req.stage}: {req.count} x {req.label} {_bundle_text(req.bundle)}"
                     + (f" x {req.bundles} workers" if req.bundles > 1 else ""))
        for name, slots in per_node.items():
            shown = "unbounded" if slots >= 10**9 else str(slots)
            lines.append(f"  {name}: {shown} at once")
        if at_once == 0:
            lines.append("  fits on no live node" + (" (waits for autoscaling)" if node_types else ""))
        else:
            capped = f" (the sweep's max_concurrent {req.max_concurrent})" if at_once == req.max_concurrent else ""
            lines.append(f"  {min(at_once, req.count)} at once in all{capped}, "
                         f"{math.ceil(req.count / at_once)} wave(s)")
    return lines


def cluster_packing_text(plan, address: str = "auto") -> str:
    """``synthrl sweep plan --cluster``: join the cluster, print how the plan packs, and say up front
    what launch would refuse."""
    import ray

    joined_here = not ray.is_initialized()
    connect(address, logging_level="ERROR", log_to_driver=False)
    try:
        nodes, node_types = cluster_nodes(), autoscale_node_types()
    finally:
        if joined_here:
            ray.shutdown()
    requests = plan_requests(plan)
    lines = [f"packing of {plan.sweep.name} on the cluster at {address}:", *packing_report(requests, nodes, node_types)]
    try:
        check_requests(requests, nodes, node_types)
    except UserError as e:
        lines.append(f"launch would be refused: {e}")
    return "\n".join(lines)


# -- experiment trackers -------------------------------------------------------------------------
LOGGERS = ("wandb", "mlflow")


def logger_callbacks(names: Iterable[str], project: str) -> list:
    """Ray Tune's own logger callbacks for ``--log wandb|mlflow`` (TensorBoard files are always on).
    A tracker whose package is not installed is a UserError saying what to install."""
    import importlib.util

    callbacks = []
    for name in names:
        if name not in LOGGERS:
            raise UserError(f"--log {name}: expected one of {', '.join(LOGGERS)}")
        if importlib.util.find_spec(name) is None:
            raise UserError(f"--log {name}: the {name} package is not installed; `pip install {name}` "
                            f"(and log in) to send the sweep's metrics there")
        if name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            callbacks.append(WandbLoggerCallback(project=project, group=project))
        else:
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            callbacks.append(MLflowLoggerCallback(experiment_name=project))
    return callbacks
