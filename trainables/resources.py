"""Resource requests in one place: what each trial and each pre-training task asks Ray for.

A request no node can satisfy would leave the trial PENDING forever, so it is decided here
against ``ray.cluster_resources()`` before anything is launched: GPU requests on a cluster without
GPUs fall back to CPU with a notice; requests larger than the cluster are refused naming the
resource. (The scale-out work extends this for per-node packing and autoscaling clusters.)
"""

from __future__ import annotations

import math

from synthrl.errors import UserError
from synthrl.sweep.schema import Sweep


def cluster_gpus(cluster_resources: dict) -> float:
    return float(cluster_resources.get("GPU", 0.0))


def trial_resources(sweep: Sweep, cluster_resources: dict, max_gpus: float | None = None) -> dict:
    """``{"cpu": c, "gpu": g}`` for one fine-tuning trial (a seed ensemble) on this cluster."""
    res = sweep.resources
    gpu = res.gpu_per_trial
    if cluster_gpus(cluster_resources) == 0 or max_gpus == 0:
        gpu = 0.0
    cpu = res.cpus_per_trial
    total_cpu = float(cluster_resources.get("CPU", 0.0))
    if cpu > total_cpu:
        raise UserError(f"{sweep.source}: resources.cpus_per_trial: {cpu:g} CPUs per trial, but the cluster has "
                        f"{total_cpu:g} CPUs in all; no node could ever run a trial (lower it)")
    if gpu > cluster_gpus(cluster_resources):
        raise UserError(f"{sweep.source}: resources.gpu_per_trial: {gpu:g} GPUs per trial, but the cluster has "
                        f"{cluster_gpus(cluster_resources):g} GPUs in all; no node could ever run a trial")
    return {"cpu": cpu, "gpu": gpu}


def pretrain_resources(sweep: Sweep, cluster_resources: dict, max_gpus: float | None = None) -> dict:
    """``{"num_cpus": c, "num_gpus": g}`` for one stage-1 pre-training task (whole GPUs)."""
    res = sweep.resources
    gpus = cluster_gpus(cluster_resources)
    gpu = float(res.pretrain_gpus) if gpus > 0 and max_gpus != 0 else 0.0
    if max_gpus is not None and max_gpus > 0:
        gpu = min(gpu, float(math.floor(max_gpus)))
    if gpu > gpus:
        raise UserError(f"{sweep.source}: resources.pretrain_gpus: {res.pretrain_gpus} GPUs per pre-training job, "
                        f"but the cluster has {gpus:g} GPUs in all")
    cpu = min(res.pretrain_cpus, float(cluster_resources.get("CPU", 1.0)))
    return {"num_cpus": cpu, "num_gpus": gpu}


def max_concurrent_trials(sweep: Sweep, resources: dict, max_gpus: float | None) -> int | None:
    """``--max-gpus N`` caps how many GPU trials run at once (None: as many as fit)."""
    if max_gpus is None or resources["gpu"] == 0:
        return None
    return max(1, int(math.floor(max_gpus / resources["gpu"] + 1e-9)))


def resource_notices(sweep: Sweep, cluster_resources: dict, max_gpus: float | None = None) -> list[str]:
    """What the user should know before launch (e.g. the CPU fallback)."""
    notes = []
    wants_gpu = sweep.resources.gpu_per_trial > 0 or sweep.resources.pretrain_gpus > 0
    if wants_gpu and cluster_gpus(cluster_resources) == 0:
        notes.append(f"notice: the sweep asks for GPUs (gpu_per_trial {sweep.resources.gpu_per_trial:g}, "
                     f"pretrain_gpus {sweep.resources.pretrain_gpus}) but the Ray cluster has none: running on CPU "
                     "instead (slow at paper scale)")
    elif wants_gpu and max_gpus == 0:
        notes.append("notice: --max-gpus 0: running on CPU")
    return notes
