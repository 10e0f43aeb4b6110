"""The storage root and the records a sweep keeps in it (files only, no Ray).

    STORAGE/NAME/sweep.json        what was launched: the sweep document, its trials, dataset files
    STORAGE/_groups/NAME.json      the sweeps of a multi-sweep file launched under one name
    STORAGE/_tune/NAME/            Tune's experiments
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from synthrl.errors import UserError
from synthrl.store import default_store_name, default_store_root
from synthrl.sweep.schema import Sweep, sweep_from_dict
from synthrl.utils.io import atomic_write_json, check_writable_dir, make_dirs

SWEEP_FILE = "sweep.json"
TUNE_DIR = "_tune"
GROUPS_DIR = "_groups"

Printer = Callable[[str], None]


def print_line(text: str) -> None:
    print(text, flush=True)


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



def load_recorded_sweep(storage: Path, name: str) -> tuple[Sweep, dict]:
    record = read_sweep_record(storage, name)
    sweep = sweep_from_dict(record["document"], record.get("source", name), record.get("overrides") or {})
    return sweep, record


def set_tune_experiment(storage: Path, name: str, experiment_path: str) -> None:
    path = sweep_dir(storage, name) / SWEEP_FILE
    record = json.loads(path.read_text())
    record["tune_experiment"] = experiment_path
    atomic_write_json(path, record)


# -- multi-sweep files: `sweep resume FILE_NAME` ---------------------------------------------------
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

