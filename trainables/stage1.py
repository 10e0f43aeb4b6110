"""Stage 1 of a sweep: the pre-training artifacts its trials need, built as Ray tasks."""

from __future__ import annotations

import time
from typing import Any

from trainables.prepare import Prepared
from trainables.records import Printer
from trainables.status import duration
from trainables.trainable import build_artifact


def build_artifacts(prepared: Prepared, pretrain_request: dict, max_gpus: float | None, out: Printer) -> dict[str, str]:
    """Build the artifacts the launched trials need, as Ray tasks; returns artifact_id -> error message."""
    import ray

    needed = sorted({t.artifact for t in prepared.trials if t.artifact})
    if not needed:
        return {}
    algorithm = prepared.sweep.algorithm
    remote, request, extra = ray.remote(build_artifact), pretrain_request, {}
    from trainables.distributed import build_artifact_data_parallel, runs_data_parallel

    if runs_data_parallel(algorithm, pretrain_request["num_gpus"]):
        # data-parallel DT pre-training: Ray Train places one worker per GPU; the driving task holds none
        remote, request = ray.remote(build_artifact_data_parallel), {"num_cpus": 0, "num_gpus": 0}
        extra = {"workers": int(pretrain_request["num_gpus"])}
    limit = len(needed)
    if max_gpus is not None and pretrain_request["num_gpus"] > 0:
        limit = max(1, int(max_gpus // pretrain_request["num_gpus"]))
    queue = list(needed)
    running: dict[Any, str] = {}
    errors: dict[str, str] = {}
    built = 0
    started = time.time()
    out(f"[{prepared.name}] stage 1: {len(needed)} pre-training artifact(s) "
        f"({pretrain_request['num_gpus']:g} GPU, {pretrain_request['num_cpus']:g} CPU each)")
    while queue or running:
        while queue and len(running) < limit:
            artifact_id = queue.pop(0)
            job = prepared.plan.artifact(artifact_id)
            dataset = next(t.dataset.name for t in prepared.trials if t.artifact == artifact_id)
            ref = remote.options(name=f"pretrain:{prepared.name}:{artifact_id}", max_retries=2,
                                 **request).remote(algorithm, job.config,
                                                   prepared.dataset_paths[dataset], str(prepared.storage), **extra)
            running[ref] = artifact_id
        ready, _ = ray.wait(list(running), num_returns=1, timeout=30.0)
        for ref in ready:
            artifact_id = running.pop(ref)
            try:
                path = ray.get(ref)
                built += 1
                out(f"[{prepared.name} {duration(time.time() - started)}] artifact {artifact_id} ready "
                    f"({built}/{len(needed)}): {path}")
            except Exception as e:  # a failed build: its trials are left out, the others still run
                message = error_message(e)
                errors[artifact_id] = message
                out(f"[{prepared.name}] artifact {artifact_id} failed: {message}")
        if not ready:
            out(f"[{prepared.name} {duration(time.time() - started)}] stage 1: {built}/{len(needed)} artifacts "
                f"built, {len(running)} building")
    return errors


def error_message(e: BaseException) -> str:
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"

