"""The two-stage sweep run on Ray: pre-training artifacts as Ray tasks, then Tune trials.

Storage layout (one root, shared by every sweep; it outlives the cluster)::

    STORAGE/
      artifacts/<kind>/<key>/          content-addressed pre-training outputs and made datasets
      NAME/sweep.json                  what was launched: the sweep document, its trials, dataset files
      NAME/runs/<variant>/<dataset>/<seed group>/   one run directory per trial (design.md)
      _tune/NAME/<experiment>/         Tune's experiment state, trial logs and checkpoints

``synthrl tables --results STORAGE/NAME`` reads the runs; ``sweep resume NAME`` restores the latest
Tune experiment; ``sweep status NAME`` reads the files (no Ray needed).
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timezone
from pathlib import Path

from synthrl.errors import UserError
from synthrl.sweep.schema import Sweep, sweep_from_dict
from synthrl.utils.io import atomic_write_json
from trainables import resources as res
from trainables.interrupt import INTERRUPTED, ResumeHint, fit, report_interrupted
from trainables.prepare import Prepared, prepare
from trainables.ray_session import connect_ray
from trainables.records import (SWEEP_FILE, TUNE_DIR, Printer, group_path, load_recorded_sweep, print_line,
                                read_group, record_group, resolve_storage, set_tune_experiment, sweep_dir)
from trainables.stage1 import build_artifacts, error_message
from trainables.sweep_report import write_sweep_report
from trainables.status import latest_scores, ls_text, progress_line, status_text, trial_dirname, trial_label, worker_pids
from trainables.trainable import run_trial

# the names `synthrl sweep`, the tests and the benchmarks import from here
__all__ = ["INTERRUPTED", "ResumeHint", "latest_scores", "ls_text", "prepare", "progress_line", "record_group",
           "resolve_storage", "resume", "resume_sweep", "run_sweep", "status_text", "trial_label", "worker_pids"]

REUSE_ACTORS = True   # see benchmarks/RESULTS.md (sweep service): a reused worker saves its start-up per trial
# every evaluation is a checkpoint by design, so short trials save Tune's state often: Tune's
# "snapshotting triggered multiple times" warning would repeat through the live view
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


# -- stage 2 ---------------------------------------------------------------------------------------
def _logger_callbacks(log: list[str] | None, project: str) -> list:
    if not log:
        return []
    from trainables import cluster

    return list(cluster.logger_callbacks(log, project))


def _tune_objects(prepared: Prepared, trial_request: dict, max_gpus: float | None, callbacks: list):
    from ray import tune

    sweep = prepared.sweep
    static = {"algorithm": sweep.algorithm, "storage": str(prepared.storage), "sweep": prepared.name,
              "dataset_paths": prepared.dataset_paths, "cpus": trial_request["cpu"]}
    search_alg = scheduler = None
    metric = mode = None
    num_samples = 1
    if sweep.search is not None:
        if len(prepared.trials) != 1:
            raise UserError(f"{sweep.source}: search: a search tunes one (variant, dataset, seed group); this sweep "
                            f"plans {len(prepared.trials)} trials to run")
        from trainables.search import build_search

        trial = prepared.trials[0]
        evaluations = max(1, trial.total_updates // (sweep.finetune.eval_every or trial.total_updates))
        space, search_alg, scheduler = build_search(sweep.search, max_evaluations=evaluations)
        param_space = {**static, "trial": trial.to_dict(), "search_keys": sorted(space), **space}
        num_samples = sweep.search.num_samples
        metric, mode = sweep.search.metric, sweep.search.mode
    else:
        param_space = {**static, "trial": tune.grid_search([t.to_dict() for t in prepared.trials])}
    tune_config = tune.TuneConfig(
        metric=metric, mode=mode, search_alg=search_alg, scheduler=scheduler, num_samples=num_samples,
        max_concurrent_trials=res.max_concurrent_trials(sweep, trial_request, max_gpus),
        trial_name_creator=trial_dirname if sweep.search is None else None,
        trial_dirname_creator=trial_dirname if sweep.search is None else None,
        # a finished trial's worker process takes the next trial: no new process, imports or evaluation workers
        reuse_actors=REUSE_ACTORS,
    )
    experiment = f"run-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    run_config = tune.RunConfig(
        name=experiment,
        storage_path=str(prepared.storage / TUNE_DIR / prepared.name),
        failure_config=tune.FailureConfig(max_failures=sweep.resources.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=callbacks,
        verbose=0,
    )
    trainable = tune.with_resources(run_trial, trial_request)
    return trainable, param_space, tune_config, run_config, experiment


def _check_nodesfit(prepared: Prepared, trial_request: dict, pretrain_request: dict) -> None:
    """Refuse (naming the resource) a request no node holds and the autoscaler cannot add a node for."""
    from trainables.cluster import autoscale_node_types, check_requests, cluster_nodes, plan_requests

    trials = len(prepared.trials) * (prepared.sweep.search.num_samples if prepared.sweep.search else 1)
    try:
        check_requests(plan_requests(prepared.plan, trial_request, pretrain_request, trials=trials),
                       cluster_nodes(), autoscale_node_types())
    except UserError as e:
        raise UserError(f"{prepared.sweep.source}: {e}") from None


def _record_best_config(storage: Path, sweep: Sweep, result_grid, out: Printer) -> None:
    """A search sweep: print the best sampled configuration and keep it in the sweep record (status shows it)."""
    from trainables.search import best_config

    try:
        best = best_config(result_grid, sweep.search)
        score = result_grid.get_best_result(sweep.search.metric, sweep.search.mode, scope="all") \
            .metrics_dataframe[sweep.search.metric].agg(sweep.search.mode)
    except (RuntimeError, KeyError, ValueError) as e:   # no trial reported the metric
        out(f"[{sweep.name}] search: no best configuration ({error_message(e)})")
        return
    path = sweep_dir(storage, sweep.name) / SWEEP_FILE
    record = json.loads(path.read_text())
    record["best_config"] = {"config": best, sweep.search.metric: float(score)}
    atomic_write_json(path, record)
    out(f"[{sweep.name}] search: best {sweep.search.metric} {float(score):.1f} with "
        + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.items()))



def _report_results(name: str, result_grid, out: Printer) -> int:
    errors = 0
    for result in result_grid:
        if result.error is not None:
            errors += 1
            label = (result.config or {}).get("trial", {}).get("trial_id", "?")
            out(f"[{name}] trial {label} ended with an error: {error_message(result.error)}")
    return errors



def run_sweep(sweep: Sweep, document: dict, overrides: dict, storage: Path, *, max_gpus: float | None = None,
              address: str | None = None, log: list[str] | None = None, dashboard: bool = True,
              out: Printer = print_line, shutdown: bool = True, resume: ResumeHint | None = None,
              not_started: tuple[str, ...] = ()) -> int:
    """``synthrl sweep run``: prepare (refusals first), stage 1 artifacts, stage 2 Tune trials.

    Joins the Ray session already running in this process if there is one (and leaves it running);
    otherwise starts or joins one and, with ``shutdown``, disconnects at the end. After Ctrl-C it reports
    what is done and how to resume (``resume``: the name and options; by default this sweep's) and returns
    INTERRUPTED; ``not_started`` names the sweeps of the same file that come after this one."""
    import ray

    resume = resume or ResumeHint(sweep.name, storage, address, max_gpus, dashboard)
    started_here = False
    try:
        prepared = prepare(sweep, storage, document, overrides, out)
        callbacks = _logger_callbacks(log, sweep.name)
        if not prepared.trials:
            out(f"[{sweep.name}] nothing to run: {len(prepared.skipped_done)} trial(s) already finished"
                + (f", {len(prepared.refused)} refused" if prepared.refused else ""))
            write_sweep_report(storage, sweep.name, out)
            return 0
        started_here = connect_ray(address, dashboard, out)
        return _run_prepared(prepared, max_gpus, callbacks, resume, not_started, out)
    except KeyboardInterrupt:   # outside Tune (preparing, stage 1), or a second Ctrl-C inside it
        return report_interrupted(storage, [sweep.name], resume, out, not_started)
    finally:
        if started_here and shutdown:
            ray.shutdown()


def _run_prepared(prepared: Prepared, max_gpus: float | None, callbacks: list, resume: ResumeHint,
                  not_started: tuple[str, ...], out: Printer) -> int:
    import ray
    from ray import tune

    from trainables.doctor_hook import run_node_doctors
    from trainables.progress import SweepProgress

    sweep, storage = prepared.sweep, prepared.storage
    cluster = ray.cluster_resources()
    trial_request = res.trial_resources(sweep, cluster, max_gpus)
    pretrain_request = res.pretrain_resources(sweep, cluster, max_gpus)
    for note in res.resource_notices(sweep, cluster, max_gpus):
        out(note)
    _check_nodesfit(prepared, trial_request, pretrain_request)
    run_node_doctors(sweep_dir(storage, sweep.name), lambda line: out(f"[{sweep.name}] {line}"))  # fast paths, per node
    artifact_errors = build_artifacts(prepared, pretrain_request, max_gpus, out)
    if artifact_errors:
        dropped = [t for t in prepared.trials if t.artifact in artifact_errors]
        out(f"[{sweep.name}] leaving out {len(dropped)} trial(s) whose pre-training failed")
        prepared.trials = [t for t in prepared.trials if t.artifact not in artifact_errors]
    if not prepared.trials:
        return 1
    n_art = len({t.artifact for t in prepared.trials if t.artifact})
    progress = SweepProgress(sweep.name, f"{n_art}/{n_art}", len(prepared.skipped_done), storage)
    trainable, param_space, tune_config, run_config, experiment = _tune_objects(
        prepared, trial_request, max_gpus, [progress, *callbacks])
    experiment_path = str(storage / TUNE_DIR / sweep.name / experiment)
    set_tune_experiment(storage, sweep.name, experiment_path)
    gpu = f"{trial_request['gpu']:g} GPU + " if trial_request["gpu"] else ""
    out(f"[{sweep.name}] stage 2: {len(prepared.trials)} trial(s), each {gpu}{trial_request['cpu']:g} CPU; "
        f"Tune experiment {experiment_path}")
    tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)
    result_grid, interrupted = fit(tuner, sweep.name)
    if interrupted:
        return report_interrupted(storage, [sweep.name], resume, out, not_started)
    errors = _report_results(sweep.name, result_grid, out)
    if sweep.search is not None:
        _record_best_config(storage, sweep, result_grid, out)
    out(f"[{sweep.name}] finished: results in {sweep_dir(storage, sweep.name)} "
        f"(synthrl tables --results {sweep_dir(storage, sweep.name)} ...)")
    write_sweep_report(storage, sweep.name, out)
    return 1 if errors or artifact_errors else 0



def resume(name: str, storage: Path, *, address: str | None = None, dashboard: bool = True,
           max_gpus: float | None = None, out: Printer = print_line) -> int:
    """``synthrl sweep resume NAME``: a sweep, or every sweep of a multi-sweep file launched under NAME
    (in the file's order: launched ones resumed, the others run), in one Ray session."""
    import ray

    hint = ResumeHint(name, storage, address, max_gpus, dashboard)
    if (sweep_dir(storage, name) / SWEEP_FILE).is_file() or not group_path(storage, name).is_file():
        return resume_sweep(name, storage, address=address, dashboard=dashboard, max_gpus=max_gpus, out=out,
                            hint=hint)
    members = read_group(storage, name)["sweeps"]
    started_here = False
    code = 0
    try:
        started_here = connect_ray(address, dashboard, out)
        for i, member in enumerate(members):
            later = tuple(m["name"] for m in members[i + 1:])
            if (sweep_dir(storage, member["name"]) / SWEEP_FILE).is_file():
                result = resume_sweep(member["name"], storage, address=address, dashboard=dashboard,
                                      max_gpus=max_gpus, out=out, hint=hint, not_started=later)
            else:
                sweep = sweep_from_dict(member["document"], member["source"], member.get("overrides") or {})
                result = run_sweep(sweep, member["document"], member.get("overrides") or {}, storage,
                                   max_gpus=max_gpus, address=address, dashboard=dashboard, out=out,
                                   resume=hint, not_started=later)
            code = max(code, result)
            if result == INTERRUPTED:
                break
    except KeyboardInterrupt:
        code = report_interrupted(storage, [m["name"] for m in members], hint, out)
    finally:
        if started_here:
            ray.shutdown()
    return code


def resume_sweep(name: str, storage: Path, *, address: str | None = None, dashboard: bool = True,
                 max_gpus: float | None = None, out: Printer = print_line, hint: ResumeHint | None = None,
                 not_started: tuple[str, ...] = ()) -> int:
    """One sweep: restore its latest Tune experiment, errored and stopped trials from their checkpoints."""
    import ray
    from ray import tune

    hint = hint or ResumeHint(name, storage, address, max_gpus, dashboard)
    sweep, record = load_recorded_sweep(storage, name)
    experiment = record.get("tune_experiment")
    if not experiment or not tune.Tuner.can_restore(experiment):
        out(f"[{name}] no Tune experiment state to restore: relaunching the sweep (finished trials are skipped)")
        return run_sweep(sweep, record["document"], record.get("overrides") or {}, storage, max_gpus=max_gpus,
                         address=address, dashboard=dashboard, out=out, resume=hint, not_started=not_started)
    started_here = False
    try:
        # artifacts are in the store already unless stage 1 was interrupted; rebuild any that are missing
        prepared = prepare(sweep, storage, record["document"], record.get("overrides") or {}, out, resumed=True)
        if not prepared.trials:
            out(f"[{name}] nothing to resume: {len(prepared.skipped_done)} trial(s) finished"
                + (f", {len(prepared.refused)} refused" if prepared.refused else ""))
            return 0
        started_here = connect_ray(address, dashboard, out)
        cluster = ray.cluster_resources()
        trial_request = res.trial_resources(sweep, cluster, max_gpus)
        for note in res.resource_notices(sweep, cluster, max_gpus):
            out(note)
        set_tune_experiment(storage, name, experiment)
        build_artifacts(prepared, res.pretrain_resources(sweep, cluster, max_gpus), max_gpus, out)
        out(f"[{name}] resuming Tune experiment {experiment}")
        tuner = tune.Tuner.restore(experiment, trainable=tune.with_resources(run_trial, trial_request),
                                   resume_unfinished=True, resume_errored=True)
        result_grid, interrupted = fit(tuner, name)
        if interrupted:
            return report_interrupted(storage, [name], hint, out, not_started)
        errors = _report_results(name, result_grid, out)
        out(f"[{name}] finished: results in {sweep_dir(storage, name)}")
        write_sweep_report(storage, name, out)
        return 1 if errors else 0
    except KeyboardInterrupt:
        return report_interrupted(storage, [name], hint, out, not_started)
    finally:
        if started_here:
            ray.shutdown()

