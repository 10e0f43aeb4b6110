"""Preparing a sweep (no Ray): every refusal before any compute, made datasets built, the sweep record written."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from synthrl.errors import UserError
from synthrl.store import ArtifactStore
from synthrl.sweep.datasets import build_made_dataset, dataset_file, missing_datasets_message
from synthrl.sweep.plan import Plan, Trial, build_config, make_plan
from synthrl.sweep.schema import Sweep
from synthrl.utils.io import atomic_write_json
from trainables.records import SWEEP_FILE, Printer, print_line, sweep_dir
from trainables.trainable import run_directory


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


def prepare(sweep: Sweep, storage: Path, document: dict, overrides: dict, out: Printer = print_line,
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

