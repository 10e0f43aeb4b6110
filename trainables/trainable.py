"""The Tune trainable: a thin adapter that drives one synthrl runner (a seed ensemble) between
``tune.report`` calls, writing the run directory of design.md as it goes.

The trial's run directory is ``STORAGE/NAME/runs/<variant>/<dataset>/<seed group>/`` (outside
Tune's own trial directory, so ``synthrl tables --results STORAGE/NAME`` reads exactly the runs and
nothing of Tune's). Every evaluation appends metrics.csv, swaps in checkpoint/ and reports the
checkpoint to Tune; a retried or resumed trial continues from ``tune.get_checkpoint()`` (else from
the run directory's checkpoint) bit-identically on CPU. A run directory with DONE is never
recomputed.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from synthrl import registry
from synthrl.errors import UserError
from synthrl.provenance import session_record
from synthrl.rundir import STATE_FILE, RunDir, load_state_file
from synthrl.runner import drive
from synthrl.store import ArtifactStore
from synthrl.sweep.plan import Trial, build_config

PID_FILE = ".worker.pid"   # in the run directory: which process runs the trial (for operators and fault tests)


def run_directory(storage: str | os.PathLike, sweep_name: str, trial_id: str) -> RunDir:
    return RunDir(Path(storage) / sweep_name / "runs" / trial_id)


def trial_params(algorithm: str, trial: Trial, config, run_params, sweep_name: str) -> dict:
    """params.json: the algorithm's own record plus what the analysis groups by."""
    params = dict(run_params(config))
    if "dataset" in params and params["dataset"] != trial.dataset.name:
        params.setdefault("dataset_path", params["dataset"])
    params.update(algorithm=algorithm, variant=trial.variant, dataset=trial.dataset.name, seeds=list(trial.seeds))
    cfg = trial.config
    if "pretrain_updates" not in params:
        params["pretrain_updates"] = registry.algorithm(algorithm).trial_pretrain_updates(cfg)
    params.setdefault("finetune_ratio", cfg.get("finetune_ratio", 1.0))
    params["sweep"] = {"name": sweep_name, "trial_id": trial.trial_id, "seed_group": trial.group,
                       "config": trial.config}
    return params


def summarize(rows: list[dict[str, Any]], runner) -> dict[str, Any]:
    """One Tune result from an evaluation's per-seed rows: means over the ensemble, named as metrics.csv.
    The update is the rows' own (an overlapped evaluation finishes after training has gone on)."""
    update = max((int(r["update"]) for r in rows if r.get("update") is not None), default=int(runner.updates_done))
    out: dict[str, Any] = {"update": update, "total_updates": int(runner.total_updates),
                           "progress": update / max(1, runner.total_updates)}
    numeric: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if key in ("seed", "update") or isinstance(value, bool):
                continue
            if isinstance(value, (int, float)) and math.isfinite(float(value)):
                numeric.setdefault(key, []).append(float(value))
    for key, values in numeric.items():
        out[key] = sum(values) / len(values)
    scores = numeric.get("normalized_score")
    if scores:
        mean = out["normalized_score"]
        out["normalized_score_std"] = (sum((s - mean) ** 2 for s in scores) / len(scores)) ** 0.5
    return out


def _final_result(run_dir: RunDir) -> dict[str, Any]:
    """The last evaluation's summary, read back from a finished run's metrics.csv."""
    rows = run_dir.read_metrics()
    if not rows:
        return {"update": 0, "progress": 1.0, "already_done": True}
    last = max(int(float(r["update"])) for r in rows)
    scores = [float(r["normalized_score"]) for r in rows
              if int(float(r["update"])) == last and r.get("normalized_score") not in (None, "")]
    out: dict[str, Any] = {"update": last, "progress": 1.0, "already_done": True}
    if scores:
        out["normalized_score"] = sum(scores) / len(scores)
    return out


def trial_eval_workers(cpus: int) -> int:
    """Evaluation workers within a trial's CPU share, by the rule a plain run applies to its machine's
    cores: workers only when two or more cores are free beside the evaluating thread (a 2-CPU trial
    steps its environments in-process, which measured faster)."""
    from synthrl.envs.evaluate import workers_for

    return workers_for(cpus, cpus)


def run_trial(config: dict) -> None:
    """Tune function trainable. ``config``: trial (a Trial dict), algorithm, storage, sweep, dataset_paths
    (dataset name -> file), cpus; with a search, ``search_keys`` names the top-level keys holding the
    sampled fine-tuning fields."""
    import logging

    import ray
    import torch
    from ray import tune

    for name in ("ray.tune", "ray.train"):   # no "checkpoint created" line per evaluation in the driver's view
        logging.getLogger(name).setLevel(logging.WARNING)
    trial = Trial.from_dict(config["trial"])
    searched = {key: config[key] for key in config.get("search_keys", ())}
    if searched:
        # a search trial: its sampled fine-tuning fields, and a run directory of its own
        from synthrl.utils.io import params_key

        trial = Trial.from_dict({**config["trial"], "config": {**trial.config, **searched},
                                 "trial_id": f"{trial.trial_id}/search-{params_key(searched)[:10]}"})
    algorithm = config["algorithm"]
    storage = config["storage"]
    run_dir = run_directory(storage, config["sweep"], trial.trial_id)
    _write_pid(run_dir)

    if run_dir.is_done():
        tune.report(_final_result(run_dir))
        return

    device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    cpus = max(1, int(config.get("cpus", 1) or 1))
    torch.set_num_threads(cpus)
    os.environ.setdefault("SYNTHRL_EVAL_WORKERS", str(trial_eval_workers(cpus)))
    algo = registry.algorithm(algorithm)
    algo_config = build_config(algorithm, trial.config, config["dataset_paths"][trial.dataset.name], device)
    runner = algo.make_runner(algo_config, ArtifactStore(storage), progress=False)
    params = trial_params(algorithm, trial, algo_config, algo.run_params, config["sweep"])
    params["fast_path"] = getattr(runner, "fast_path", None)  # the update path this trial uses, and why
    params.update(session_record(device))  # versions, git commit, device: the report reads them after the cluster

    # the same resume rule as `synthrl run --resume` (RunDirWriter.restore): metrics.csv keeps exactly the
    # rows up to the checkpoint continued from, none without one. A Tune retry continues Tune's checkpoint;
    # a relaunch the run directory's own, if it is this trial's.
    saved = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state_file = Path(directory) / STATE_FILE
            saved = (load_state_file(state_file), str(state_file))
    else:
        run_dir.recover_checkpoint()
        if run_dir.has_checkpoint():
            old = run_dir.read_params().get("sweep", {}).get("config")
            if old != trial.config:
                raise UserError(f"{run_dir.path}: holds a run of different parameters than trial {trial.trial_id}; "
                                "move it away or run the sweep under another --name")
    run_dir.write_params(params)
    drive(runner, run_dir, resume=True, saved=saved, progress=False,
          on_eval=_tune_reporter(run_dir, runner, _live_metrics(config["sweep"], trial)))


def _tune_reporter(run_dir: RunDir, runner, live):
    """drive's report hook: one ``tune.report`` per evaluation, with the checkpoint drive has just written for
    it (the state of the evaluation's moment, also when the evaluation overlapped training)."""
    from ray import tune

    last = {"update": runner.updates_done, "time": time.perf_counter()}

    def report(rows: list[dict[str, Any]]) -> None:
        result = summarize(rows, runner)
        now = time.perf_counter()
        if live is not None:  # updates per second of the trial's wall clock between evaluations
            result.update(live.record_evaluation(rows, result["update"] - last["update"], now - last["time"]))
        last.update(update=result["update"], time=now)
        tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(run_dir.checkpoint_dir)))

    return report


class _NamedAfterTrial:
    """Mixed into Tune's trial actor (``__mixins__``): its repr, which the dashboard shows as the actor's
    name and Ray uses as its log prefix, becomes the trial name (variant__dataset__seedgroup). Ray
    reads it once, at creation: an actor Tune reuses for later trials keeps its first trial's name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._name = self.trial_name


run_trial.__mixins__ = (_NamedAfterTrial,)


def _live_metrics(sweep_name: str, trial: Trial):
    """Ray metrics for the dashboard (trainables/metrics.py), when available."""
    try:
        from trainables.metrics import TrialMetrics

        return TrialMetrics(sweep_name, trial.variant, trial.dataset.name, trial.seeds)
    except Exception:  # metrics are a view, never a reason to fail a trial
        return None


def _write_pid(run_dir: RunDir) -> None:
    """Record which worker process runs the trial (host:pid), beside the run's files."""
    import socket

    run_dir.path.mkdir(parents=True, exist_ok=True)
    (run_dir.path / PID_FILE).write_text(f"{socket.gethostname()} {os.getpid()}\n")


def build_artifact(algorithm: str, config: dict, dataset_path: str, storage: str) -> str | None:
    """Stage 1: build one pre-training artifact into the shared store (a no-op when it is complete)."""
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    algo = registry.algorithm(algorithm)
    algo_config = build_config(algorithm, config, dataset_path, device)
    store = ArtifactStore(storage)
    if algo.build_pretrain is None:  # the runner builds what it misses: build it that way, train nothing
        algo.make_runner(algo_config, store, progress=False, fast_path_check=False)
        return None
    path = algo.build_pretrain(algo_config, store, progress=False)
    if path is None:
        raise UserError(f"{algorithm}: variant has no pre-training to build")
    return str(path)
