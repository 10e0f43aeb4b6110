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

import contextlib
import json
import logging
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from synthrl.errors import UserError
from synthrl.rundir import RunDir
from synthrl.store import ArtifactStore, default_store_name, default_store_root
from synthrl.sweep.plan import (Plan, Trial, build_config, build_made_dataset, dataset_file, make_plan,
                                missing_datasets_message)
from synthrl.sweep.schema import Sweep, sweep_from_dict
from synthrl.utils.io import atomic_write_json, check_writable_dir, make_dirs
from trainables import resources as res
from trainables.trainable import PID_FILE, build_artifact, run_directory, run_trial

SWEEP_FILE = "sweep.json"
REUSE_ACTORS = True   # see benchmarks/RESULTS.md (sweep service): a reused worker saves its start-up per trial
TUNE_DIR = "_tune"
# every evaluation is a checkpoint by design, so short trials save Tune's state often: Tune's
# "snapshotting triggered multiple times" warning would repeat through the live view
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

Printer = Callable[[str], None]


def _print(text: str) -> None:
    print(text, flush=True)


# -- storage ---------------------------------------------------------------------------------------
def resolve_storage(storage: str | None, writable: bool = True) -> Path:
    """The storage root as an absolute, writable directory (refused up front otherwise).

    ``writable=False`` (status, ls) only reads it: a read-only copy of a sweep's results works.
    """
    if storage is None:
        path = default_store_root()
    else:
        if "://" in storage:
            scheme = storage.split("://", 1)[0]
            raise UserError(f"--storage {storage}: {scheme}:// storage is not supported yet: run directories and the "
                            "artifact store are written as files, so give a shared file-system path (NFS, or the "
                            "bucket mounted with s3fs/gcsfuse) instead")
        path = Path(os.path.abspath(Path(storage).expanduser()))
    what = "--storage" if storage is not None else default_store_name()
    if not writable:
        if path.exists() and not path.is_dir():
            raise UserError(f"{what} {path}: a file is in the way, expected the storage directory")
        return path  # a missing one holds no sweeps
    return make_dirs(check_writable_dir(path, what), f"{what} {path}")


def sweep_dir(storage: Path, name: str) -> Path:
    return storage / name


def read_sweep_record(storage: Path, name: str) -> dict:
    path = sweep_dir(storage, name) / SWEEP_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        known = ", ".join(list_sweep_names(storage)) or "none"
        groups = sorted(p.stem for p in (storage / GROUPS_DIR).glob("*.json"))
        files = f"; multi-sweep files: {', '.join(groups)}" if groups else ""
        raise UserError(f"sweep {name!r}: no {path} (sweeps in {storage}: {known}{files})") from None
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def list_sweep_names(storage: Path) -> list[str]:
    if not storage.is_dir():
        return []
    return sorted(p.parent.name for p in storage.glob(f"*/{SWEEP_FILE}"))


# -- Ray -------------------------------------------------------------------------------------------
def connect_ray(address: str | None, dashboard: bool, out: Printer) -> bool:
    """Join ``address`` (or start a local Ray); returns True when this call started the connection."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        try:
            from trainables.cluster import connect   # checks the address and token auth with clear errors
        except ImportError:
            ray.init(address=address, logging_level="WARNING")
        else:
            connect(address, logging_level="WARNING")
    else:
        # a local cluster: everything on loopback; Ray's token authentication is left as configured
        with _loopback_node():
            context = ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1", logging_level="WARNING")
        url = getattr(context, "dashboard_url", None)
        if dashboard and url:
            out(f"Ray dashboard (this machine only): http://{url}")
        out(f"Ray's own tools: {ray_tools_command(context.address_info['address'], url if dashboard else None)}")
    return True


LOCAL_CLUSTER_VAR = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_node():
    """Start the local Ray node on 127.0.0.1. Ray's GCS, raylet, object manager, agents and workers bind
    to the node's IP address, which Ray picks as the machine's outward address, turning even an explicit
    ``_node_ip_address="127.0.0.1"`` back into it; only its single-machine mode (the default on macOS and
    Windows, switched by RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) keeps loopback. Joining a cluster through
    $RAY_ADDRESS is left alone: that node's address is the cluster's."""
    if os.environ.get("RAY_ADDRESS"):
        yield
        return
    from ray._private import ray_constants   # read when ray is imported, so set for this call too

    saved_env, saved = os.environ.get(LOCAL_CLUSTER_VAR), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOCAL_CLUSTER_VAR] = "0"      # inherited by the processes Ray starts now
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(LOCAL_CLUSTER_VAR, None)
        else:
            os.environ[LOCAL_CLUSTER_VAR] = saved_env


def ray_tools_command(gcs_address: str, dashboard_url: str | None) -> str:
    """How to point Ray's CLI at this cluster. Token authentication is on, and Ray's CLI sends the token
    (from ~/.ray/auth_token or $RAY_AUTH_TOKEN) only when RAY_AUTH_MODE=token is in its environment."""
    if dashboard_url:   # the state API (ray list ...) is served by the dashboard
        url = dashboard_url if "://" in dashboard_url else f"http://{dashboard_url}"
        return (f"RAY_AUTH_MODE=token ray list actors --address {url} (trial actors: add --detail, "
                f"the trial is the repr_name), RAY_AUTH_MODE=token ray status --address {gcs_address}")
    return f"RAY_AUTH_MODE=token ray status --address {gcs_address} (ray list ... needs the dashboard)"


# -- preparation (no Ray) --------------------------------------------------------------------------
@dataclass
class Prepared:
    sweep: Sweep
    plan: Plan
    storage: Path
    name: str
    dataset_paths: dict[str, str]
    trials: list[Trial]                      # to launch (runnable, not DONE)
    skipped_done: list[Trial] = field(default_factory=list)
    refused: list[Trial] = field(default_factory=list)


def prepare(sweep: Sweep, storage: Path, document: dict, overrides: dict, out: Printer = _print,
            resumed: bool = False) -> Prepared:
    """Everything that can be refused is refused here, before any compute starts. The sweep record keeps
    its first launch time (``created``); ``resumed`` adds when `sweep resume` continued it."""
    plan = make_plan(sweep)
    missing = missing_datasets_message(sweep)
    if missing:
        raise UserError(missing)
    for note in plan.notices:
        out(f"notice: {note}")
    refused = [t for t in plan.trials if t.needs]
    for variant in sorted({t.variant for t in refused}):
        need = next(t.needs for t in refused if t.variant == variant)
        out(f"refused: variant {variant!r} ({sum(t.variant == variant for t in refused)} trials) needs {need}")
    for t in plan.trials:   # every trial's algorithm config, checked before any data is made or compute starts
        if not t.needs:
            try:
                build_config(sweep.algorithm, t.config, dataset_file(t.dataset) and str(dataset_file(t.dataset))
                             or t.dataset.name, "cpu")
            except UserError as e:
                raise UserError(f"{sweep.source}: variant {t.variant!r}: {e}") from None
            except TypeError as e:   # a field of the wrong kind passed through `config:`
                raise UserError(f"{sweep.source}: variant {t.variant!r}: {e}") from None
    store = ArtifactStore(storage)
    dataset_paths: dict[str, str] = {}
    for d in sweep.datasets:
        if d.make is not None:
            path = build_made_dataset(d, store)
            out(f"dataset {d.name}: {path}")
        else:
            path = dataset_file(d)
        dataset_paths[d.name] = str(path)
    runnable = [t for t in plan.trials if not t.needs]
    done = [t for t in runnable if run_directory(storage, sweep.name, t.trial_id).is_done()]
    for t in runnable:
        rd = run_directory(storage, sweep.name, t.trial_id)
        if (rd.path / "params.json").is_file():
            old = rd.read_params().get("sweep", {}).get("config")
            if old is not None and old != t.config:
                raise UserError(f"{rd.path}: holds a run with different parameters than trial {t.trial_id} of "
                                f"{sweep.source}; run under another --name or move it away")
    if done:
        out(f"skipping {len(done)} finished trial(s) (DONE in their run directories): "
            + ", ".join(t.trial_id for t in done[:5]) + (" ..." if len(done) > 5 else ""))
    todo = [t for t in runnable if t not in done]
    prepared = Prepared(sweep=sweep, plan=plan, storage=storage, name=sweep.name, dataset_paths=dataset_paths,
                        trials=todo, skipped_done=done, refused=refused)
    record = {
        "name": sweep.name,
        "algorithm": sweep.algorithm,
        "source": sweep.source,
        "document": document,
        "overrides": overrides,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "dataset_paths": dataset_paths,
        "trials": [t.to_dict() for t in plan.trials],
        "tune_experiment": None,
    }
    old_path = sweep_dir(storage, sweep.name) / SWEEP_FILE
    if old_path.is_file():
        try:
            old = json.loads(old_path.read_text())
        except ValueError:
            old = {}
        record["tune_experiment"] = old.get("tune_experiment")
        record["created"] = old.get("created", record["created"])
        if old.get("resumed"):
            record["resumed"] = old["resumed"]
    if resumed:
        record["resumed"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(old_path, record)
    return prepared


# -- live view (the Tune callback itself is trainables/progress.py) ----------------------------------
def trial_label(trial) -> str:
    try:
        return trial.config["trial"]["trial_id"]
    except (AttributeError, KeyError, TypeError):
        return str(trial)


def progress_line(name, trials, artifacts: str, skipped: int, best, elapsed: float) -> str:
    counts: dict[str, int] = {}
    done_fraction = 0.0
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
        if t.status == "TERMINATED":
            done_fraction += 1.0
        else:
            last = t.last_result or {}
            done_fraction += float(last.get("progress", 0.0) or 0.0)
    order = ["RUNNING", "PENDING", "PAUSED", "TERMINATED", "ERROR"]
    words = {"RUNNING": "running", "PENDING": "pending", "PAUSED": "paused", "TERMINATED": "done", "ERROR": "error"}
    state = ", ".join(f"{counts[s]} {words[s]}" for s in order if counts.get(s))
    if skipped:
        state += f" (+{skipped} skipped, done before)"
    eta = "?"
    if trials and done_fraction > 0:
        fraction = done_fraction / len(trials)
        eta = _duration(elapsed * (1 - fraction) / fraction) if fraction < 1 else "0s"
    best_text = f"best {best[0]:.1f} ({best[1]})" if best else "best -"
    return f"[{name} {_duration(elapsed)}] trials: {state or 'none'} | artifacts {artifacts} | {best_text} | ETA {eta}"


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def trial_dirname(trial) -> str:
    """Tune trial directory named after the trial: variant__dataset__seedgroup."""
    return trial_label(trial).replace("/", "__")


# -- stage 1 ---------------------------------------------------------------------------------------
def build_artifacts(prepared: Prepared, pretrain_request: dict, max_gpus: float | None, out: Printer) -> dict[str, str]:
    """Build the artifacts the launched trials need, as Ray tasks; returns artifact_id -> error message."""
    import ray

    needed = sorted({t.artifact for t in prepared.trials if t.artifact})
    if not needed:
        return {}
    algorithm = prepared.sweep.algorithm
    remote, request, extra = ray.remote(build_artifact), pretrain_request, {}
    if algorithm == "dt" and pretrain_request["num_gpus"] > 1:
        # data-parallel DT pre-training: Ray Train places one worker per GPU; the driving task holds none
        from trainables.distributed import build_artifact_data_parallel

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
                out(f"[{prepared.name} {_duration(time.time() - started)}] artifact {artifact_id} ready "
                    f"({built}/{len(needed)}): {path}")
            except Exception as e:  # a failed build: its trials are left out, the others still run
                message = _error_message(e)
                errors[artifact_id] = message
                out(f"[{prepared.name}] artifact {artifact_id} failed: {message}")
        if not ready:
            out(f"[{prepared.name} {_duration(time.time() - started)}] stage 1: {built}/{len(needed)} artifacts "
                f"built, {len(running)} building")
    return errors


def _error_message(e: BaseException) -> str:
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[-1] if text else ''}"


# -- stage 2 ---------------------------------------------------------------------------------------
def _logger_callbacks(log: list[str] | None, project: str) -> list:
    if not log:
        return []
    try:
        from trainables import cluster
    except ImportError:
        raise UserError(f"--log {','.join(log)}: experiment-tracker logging needs trainables/cluster.py "
                        "(the scale-out work), which is not installed") from None
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
        try:
            from trainables.search import build_search
        except ImportError:
            raise UserError(f"{sweep.source}: search: needs trainables/search.py (the scale-out work)") from None
        trial = prepared.trials[0]
        evaluations = max(1, trial.total_updates // sweep.finetune.eval_every)
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


def _check_nodes_fit(prepared: Prepared, trial_request: dict, pretrain_request: dict) -> None:
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
        out(f"[{sweep.name}] search: no best configuration ({_error_message(e)})")
        return
    path = sweep_dir(storage, sweep.name) / SWEEP_FILE
    record = json.loads(path.read_text())
    record["best_config"] = {"config": best, sweep.search.metric: float(score)}
    atomic_write_json(path, record)
    out(f"[{sweep.name}] search: best {sweep.search.metric} {float(score):.1f} with "
        + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.items()))


def _set_tune_experiment(storage: Path, name: str, experiment_path: str) -> None:
    path = sweep_dir(storage, name) / SWEEP_FILE
    record = json.loads(path.read_text())
    record["tune_experiment"] = experiment_path
    atomic_write_json(path, record)


def _report_results(name: str, result_grid, out: Printer) -> int:
    errors = 0
    for result in result_grid:
        if result.error is not None:
            errors += 1
            label = (result.config or {}).get("trial", {}).get("trial_id", "?")
            out(f"[{name}] trial {label} ended with an error: {_error_message(result.error)}")
    return errors


# -- Ctrl-C ----------------------------------------------------------------------------------------
INTERRUPTED = 130   # the exit code after Ctrl-C (128 + SIGINT)


@dataclass(frozen=True)
class ResumeHint:
    """What `sweep resume` needs to continue: the name (a sweep's, or a multi-sweep file's) and the options."""

    name: str
    storage: Path
    address: str | None = None
    max_gpus: float | None = None
    dashboard: bool = True

    def command(self) -> str:
        import shlex

        words = ["synthrl", "sweep", "resume", self.name, "--storage", str(self.storage)]
        if self.address:
            words += ["--address", self.address]
        if self.max_gpus is not None:
            words += ["--max-gpus", f"{self.max_gpus:g}"]
        if not self.dashboard:
            words.append("--no-dashboard")
        return " ".join(shlex.quote(w) for w in words)


class _TuneInterruptMessages(logging.Filter):
    """Tune's own advice after Ctrl-C names ``Tuner.restore``; the launcher prints `sweep resume` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not text.startswith(("Experiment has been interrupted", "Trials did not complete"))


@contextlib.contextmanager
def _tune_sigint():
    """Run ``tuner.fit()`` under Tune's SIGINT handling: the first Ctrl-C makes Tune stop its trials, save the
    experiment and return; Tune then puts back the handler found here, so a second Ctrl-C raises
    KeyboardInterrupt at once. Tune leaves its own handler installed after a run that was not interrupted,
    which would swallow the next Ctrl-C (in stage 1 of a file's next sweep): put back ours afterwards."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if in_main else None
    tune_logger = logging.getLogger("ray.tune.tune")
    quiet = _TuneInterruptMessages()
    tune_logger.addFilter(quiet)
    try:
        yield
    finally:
        tune_logger.removeFilter(quiet)
        if in_main and previous is not None:
            signal.signal(signal.SIGINT, previous)


def _fit(tuner, name: str) -> tuple[Any, bool]:
    """``tuner.fit()``; returns (result grid, whether the experiment ended with trials unfinished: Ctrl-C)."""
    from trainables import progress

    progress.ended_unfinished.pop(name, None)
    with _tune_sigint():
        result_grid = tuner.fit()
    return result_grid, bool(progress.ended_unfinished.get(name))


def report_interrupted(storage: Path, names: list[str], hint: ResumeHint, out: Printer,
                       not_started: tuple[str, ...] = ()) -> int:
    """After Ctrl-C: each sweep's trials by state (from the run directories), what was never launched, and
    the exact command that continues; returns the exit code."""
    for name in names:
        try:
            record = read_sweep_record(storage, name)
        except UserError:
            continue
        states = trial_states(storage, name, record)
        out(f"[{name}] interrupted: {_state_counts(states)}")
        for s in states:
            if s["state"] == "partial":
                out(f"  partial  {s['trial_id']}: update {s['update']}/{s['total_updates']} (continues from its "
                    "last checkpoint)")
    if not_started:
        out(f"not started: {', '.join(not_started)}")
    out(f"resume with: {hint.command()}")
    return INTERRUPTED


def run_sweep(sweep: Sweep, document: dict, overrides: dict, storage: Path, *, max_gpus: float | None = None,
              address: str | None = None, log: list[str] | None = None, dashboard: bool = True,
              out: Printer = _print, shutdown: bool = True, resume: ResumeHint | None = None,
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
    _check_nodes_fit(prepared, trial_request, pretrain_request)
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
    _set_tune_experiment(storage, sweep.name, experiment_path)
    gpu = f"{trial_request['gpu']:g} GPU + " if trial_request["gpu"] else ""
    out(f"[{sweep.name}] stage 2: {len(prepared.trials)} trial(s), each {gpu}{trial_request['cpu']:g} CPU; "
        f"Tune experiment {experiment_path}")
    tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)
    result_grid, interrupted = _fit(tuner, sweep.name)
    if interrupted:
        return report_interrupted(storage, [sweep.name], resume, out, not_started)
    errors = _report_results(sweep.name, result_grid, out)
    if sweep.search is not None:
        _record_best_config(storage, sweep, result_grid, out)
    out(f"[{sweep.name}] finished: results in {sweep_dir(storage, sweep.name)} "
        f"(synthrl tables --results {sweep_dir(storage, sweep.name)} ...)")
    return 1 if errors or artifact_errors else 0


def load_recorded_sweep(storage: Path, name: str) -> tuple[Sweep, dict]:
    record = read_sweep_record(storage, name)
    sweep = sweep_from_dict(record["document"], record.get("source", name), record.get("overrides") or {})
    return sweep, record


def resume(name: str, storage: Path, *, address: str | None = None, dashboard: bool = True,
           max_gpus: float | None = None, out: Printer = _print) -> int:
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
                 max_gpus: float | None = None, out: Printer = _print, hint: ResumeHint | None = None,
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
        _set_tune_experiment(storage, name, experiment)
        build_artifacts(prepared, res.pretrain_resources(sweep, cluster, max_gpus), max_gpus, out)
        out(f"[{name}] resuming Tune experiment {experiment}")
        tuner = tune.Tuner.restore(experiment, trainable=tune.with_resources(run_trial, trial_request),
                                   resume_unfinished=True, resume_errored=True)
        result_grid, interrupted = _fit(tuner, name)
        if interrupted:
            return report_interrupted(storage, [name], hint, out, not_started)
        errors = _report_results(name, result_grid, out)
        out(f"[{name}] finished: results in {sweep_dir(storage, name)}")
        return 1 if errors else 0
    except KeyboardInterrupt:
        return report_interrupted(storage, [name], hint, out, not_started)
    finally:
        if started_here:
            ray.shutdown()


# -- multi-sweep files: `sweep resume FILE_NAME` ---------------------------------------------------
GROUPS_DIR = "_groups"


def group_path(storage: Path, name: str) -> Path:
    return storage / GROUPS_DIR / f"{name}.json"


def record_group(storage: Path, name: str, source: str, sweeps: list[tuple[Sweep, dict, dict]]) -> None:
    """Remember the sweeps of a multi-sweep file under one name (the file's stem, or --name), before any
    runs: `sweep resume NAME` then continues the launched ones and runs those never started."""
    atomic_write_json(group_path(storage, name), {
        "name": name, "source": source,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sweeps": [{"name": s.name, "source": s.source, "document": doc, "overrides": over}
                   for s, doc, over in sweeps],
    })


def read_group(storage: Path, name: str) -> dict:
    path = group_path(storage, name)
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


# -- status / ls (files only, no Ray) --------------------------------------------------------------
def trial_states(storage: Path, name: str, record: dict) -> list[dict]:
    """Per trial: state (done | running/partial | pending | refused | error), progress, last score, error."""
    errors = _tune_errors(record.get("tune_experiment"))
    out = []
    for t in record["trials"]:
        trial = Trial.from_dict(t)
        rd = RunDir(run_directory(storage, name, trial.trial_id).path)
        rows = rd.read_metrics() if rd.metrics_path.exists() else []
        last_update = max((int(float(r["update"])) for r in rows), default=0)
        scores = [float(r["normalized_score"]) for r in rows
                  if int(float(r["update"])) == last_update and r.get("normalized_score") not in (None, "")]
        if trial.needs:
            state = "refused"
        elif rd.is_done():
            state = "done"
        elif trial.trial_id in errors:
            state = "error"
        elif rows or rd.has_checkpoint():
            state = "partial"
        else:
            state = "pending"
        out.append({"trial_id": trial.trial_id, "state": state, "update": last_update,
                    "total_updates": trial.total_updates,
                    "score": sum(scores) / len(scores) if scores else None,
                    "error": errors.get(trial.trial_id), "needs": trial.needs})
    return out


def _tune_errors(experiment: str | None) -> dict[str, str]:
    """trial_id -> last line of its error.txt in the latest Tune experiment (if it has not finished since)."""
    if not experiment or not Path(experiment).is_dir():
        return {}
    errors = {}
    for error_file in Path(experiment).glob("*/error.txt"):
        trial_id = error_file.parent.name.replace("__", "/")
        lines = [ln for ln in error_file.read_text(errors="replace").splitlines() if ln.strip()]
        errors[trial_id] = lines[-1].strip() if lines else "failed"
    return errors


def _state_counts(states: list[dict]) -> str:
    """'1 done, 2 partial, 1 pending of 4' (the order of `sweep status`)."""
    counts: dict[str, int] = {}
    for s in states:
        counts[s["state"]] = counts.get(s["state"], 0) + 1
    return ", ".join(f"{counts[k]} {k}" for k in ("done", "partial", "pending", "error", "refused")
                     if counts.get(k)) + f" of {len(states)}"


def latest_scores(storage: Path, name: str) -> dict[str, float]:
    """trial_id -> its latest evaluation's score (mean over the seeds): what `status` and the live view rank."""
    try:
        record = read_sweep_record(storage, name)
    except UserError:
        return {}
    return {s["trial_id"]: s["score"] for s in trial_states(storage, name, record) if s["score"] is not None}


def status_text(storage: Path, name: str) -> str:
    if not (sweep_dir(storage, name) / SWEEP_FILE).is_file() and group_path(storage, name).is_file():
        return _group_status_text(storage, name)
    record = read_sweep_record(storage, name)
    states = trial_states(storage, name, record)
    done_updates = sum(min(s["update"], s["total_updates"]) if s["state"] != "done" else s["total_updates"]
                       for s in states if s["state"] != "refused")
    total_updates = sum(s["total_updates"] for s in states if s["state"] != "refused")
    resumed = f", resumed {record['resumed']}" if record.get("resumed") else ""
    lines = [f"sweep {name} ({record['algorithm']}, from {record['source']}, launched {record['created']}{resumed})",
             "trials: " + _state_counts(states),
             f"progress: {100 * done_updates / max(1, total_updates):.1f}% of the fine-tuning updates"]
    scored = [s for s in states if s["score"] is not None]
    if scored:
        best = max(scored, key=lambda s: s["score"])
        lines.append(f"best latest score: {best['score']:.1f} ({best['trial_id']} at update {best['update']})")
    if record.get("best_config"):
        found = record["best_config"]
        lines.append("search best: " + ", ".join(f"{k}={v}" for k, v in found.items() if k != "config")
                     + " with " + ", ".join(f"{k}={v}" for k, v in found["config"].items()))
    for s in states:
        if s["state"] in ("partial", "error"):
            score = f", score {s['score']:.1f}" if s["score"] is not None else ""
            lines.append(f"  {s['state']:<8} {s['trial_id']}: update {s['update']}/{s['total_updates']}{score}")
        if s["state"] == "error":
            lines.append(f"           error: {s['error']}")
    refused = sorted({s["trial_id"].split("/")[0] for s in states if s["state"] == "refused"})
    if refused:
        need = next(s["needs"] for s in states if s["state"] == "refused")
        lines.append(f"refused variants: {', '.join(refused)} (need {need})")
    lines.append(f"results: {sweep_dir(storage, name)}")
    return "\n".join(lines)


def _group_status_text(storage: Path, name: str) -> str:
    """`sweep status NAME` for a multi-sweep file launched under NAME: each of its sweeps in turn."""
    group = read_group(storage, name)
    parts = [f"{name}: {len(group['sweeps'])} sweeps from {group['source']}"]
    for member in group["sweeps"]:
        if (sweep_dir(storage, member["name"]) / SWEEP_FILE).is_file():
            parts.append(status_text(storage, member["name"]))
        else:
            parts.append(f"sweep {member['name']}: not started (sweep resume {name} runs it)")
    return "\n\n".join(parts)


def ls_text(storage: Path) -> str:
    names = list_sweep_names(storage)
    if not names:
        return f"no sweeps in {storage}"
    lines = [f"sweeps in {storage}:"]
    for name in names:
        try:
            record = read_sweep_record(storage, name)
            states = trial_states(storage, name, record)
        except (UserError, KeyError, ValueError) as e:
            lines.append(f"  {name}: unreadable ({e})")
            continue
        done = sum(s["state"] == "done" for s in states)
        errors = sum(s["state"] == "error" for s in states)
        err = f", {errors} error" if errors else ""
        lines.append(f"  {name:<24} {record['algorithm']:<4} {done}/{len(states)} trials done{err}  "
                     f"launched {record['created']}"
                     + (f", resumed {record['resumed']}" if record.get("resumed") else "")
                     + f"  ({record['source']})")
    return "\n".join(lines)


def worker_pids(storage: Path, name: str) -> dict[str, tuple[str, int]]:
    """trial_id -> (host, pid) of the worker process that last ran it."""
    runs = sweep_dir(storage, name) / "runs"
    pids = {}
    for f in runs.glob(f"**/{PID_FILE}"):
        try:
            host, pid = f.read_text().split()
            pids[str(f.parent.relative_to(runs))] = (host, int(pid))
        except ValueError:
            pass
    return pids
