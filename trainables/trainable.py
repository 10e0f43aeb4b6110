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

import inspect
import math
import os
import time
from pathlib import Path
from typing import Any

from synthrl.errors import UserError
from synthrl.rundir import STATE_FILE, RunDir, load_state_file
from synthrl.runner import RunDirWriter, updates_until_next_eval
from synthrl.store import ArtifactStore
from synthrl.sweep.plan import Trial, build_config

PID_FILE = ".worker.pid"   # in the run directory: which process runs the trial (for operators and fault tests)


def algorithm_api(algorithm: str):
    """(make_runner, run_params, build_pretrain_artifact(config, store)) of an algorithm (docs/CONTRACTS.md)."""
    if algorithm == "cql":
        from synthrl.cql.runner import build_pretrain_artifact, make_runner, run_params

        return make_runner, run_params, build_pretrain_artifact
    from synthrl.dt.pretrain import build_pretrain_artifact as dt_build
    from synthrl.dt.runner import make_runner, run_params

    def build(config, store, progress=False):
        return None if config.pretrain is None else dt_build(config.pretrain, store, progress=progress)

    return make_runner, run_params, build


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
        if algorithm == "dt":
            params["pretrain_updates"] = cfg.get("pretrain_step", 0) if cfg.get("pretrain") else 0
        else:
            params["pretrain_updates"] = cfg.get("pretrain_updates", 0) if cfg.get("pretrain") != "none" else 0
    params.setdefault("finetune_ratio", cfg.get("finetune_ratio", 1.0))
    params["sweep"] = {"name": sweep_name, "trial_id": trial.trial_id, "seed_group": trial.group,
                       "config": trial.config}
    return params


def summarize(rows: list[dict[str, Any]], runner) -> dict[str, Any]:
    """One Tune result from an evaluation's per-seed rows: means over the ensemble, named as metrics.csv."""
    out: dict[str, Any] = {"update": int(runner.updates_done), "total_updates": int(runner.total_updates),
                           "progress": runner.updates_done / max(1, runner.total_updates)}
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
    make_runner, run_params, _ = algorithm_api(algorithm)
    algo_config = build_config(algorithm, trial.config, config["dataset_paths"][trial.dataset.name], device)
    store = ArtifactStore(storage)
    quiet = {"progress": False} if "progress" in inspect.signature(make_runner).parameters else {}
    runner = make_runner(algo_config, store, **quiet)
    params = trial_params(algorithm, trial, algo_config, run_params, config["sweep"])
    params["fast_path"] = getattr(runner, "fast_path", None)  # the update path this trial uses, and why
    writer = RunDirWriter(run_dir, runner)

    # the same resume rule as `synthrl run --resume`: metrics.csv keeps exactly the rows up to the
    # checkpoint continued from, none without one (RunDirWriter.restore)
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state_file = Path(directory) / STATE_FILE
            writer.restore(load_state_file(state_file), source=str(state_file))
    else:
        if run_dir.has_checkpoint():
            # a relaunch (not a Tune retry): continue the run directory's own checkpoint if it is this trial's
            old = run_dir.read_params().get("sweep", {}).get("config")
            if old != trial.config:
                raise UserError(f"{run_dir.path}: holds a run of different parameters than trial {trial.trial_id}; "
                                "move it away or run the sweep under another --name")
        writer.restore()
    run_dir.write_params(params)

    live = _live_metrics(config["sweep"], trial)
    while runner.updates_done < runner.total_updates:
        n, started = updates_until_next_eval(runner), time.perf_counter()
        runner.train(n)
        train_s = time.perf_counter() - started
        if runner.updates_done % runner.eval_every == 0 or runner.updates_done >= runner.total_updates:
            rows = writer.evaluate_and_record()
            result = summarize(rows, runner)
            if live is not None:
                result.update(live.record_evaluation(rows, n, train_s))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(str(run_dir.checkpoint_dir)))
    run_dir.mark_done({"updates": runner.updates_done, "wall_clock_s": round(writer.wall_clock_s(), 3)})


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
    _, _, build = algorithm_api(algorithm)
    algo_config = build_config(algorithm, config, dataset_path, device)
    path = build(algo_config, ArtifactStore(storage), progress=False)
    if path is None:
        raise UserError(f"{algorithm}: variant has no pre-training to build")
    return str(path)
