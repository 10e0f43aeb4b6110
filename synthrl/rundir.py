"""The run directory: one contract for ``synthrl run`` and for a Tune trial (see design.md).

::

    RUN/
      params.json    every parameter of the run
      metrics.csv    one row per (seed, evaluation), appended and flushed as evaluations happen
      checkpoint/    the latest complete checkpoint (written aside, then renamed)
      DONE           written last
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable

import torch

from synthrl.errors import UserError
from synthrl.utils.io import atomic_write_json, atomic_write_text, check_writable_dir, make_dirs

PARAMS = "params.json"
METRICS = "metrics.csv"
CHECKPOINT = "checkpoint"
DONE = "DONE"
STATE_FILE = "state.pt"


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser().absolute()

    # -- params ---------------------------------------------------------------------------------
    def check_writable(self, what: str = "--out") -> None:
        """Refuse, in one line, a run directory that cannot be written (before any work)."""
        check_writable_dir(self.path, what)

    def write_params(self, params: dict) -> None:
        make_dirs(self.path, str(self.path))
        atomic_write_json(self.path / PARAMS, params)

    def read_params(self) -> dict:
        try:
            return json.loads((self.path / PARAMS).read_text())
        except FileNotFoundError:
            raise UserError(f"{self.path}: no {PARAMS}: not a run directory") from None
        except ValueError as e:
            raise UserError(f"{self.path / PARAMS}: not valid JSON ({e})") from None

    def check_params_match(self, params: dict, ignore: Iterable[str] = ()) -> None:
        """On --resume, refuse to continue a run whose recorded parameters differ from the new ones."""
        old, new = _flatten(self.read_params()), _flatten(params)
        skip = set(ignore)
        diff = sorted(k for k in set(old) | set(new)
                      if k.split(".", 1)[0] not in skip and k not in skip and old.get(k) != new.get(k))
        if diff:
            shown = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in diff[:5])
            more = f" and {len(diff) - 5} more" if len(diff) > 5 else ""
            raise UserError(f"{self.path}: --resume with different parameters ({shown}{more}); use a new --out")

    # -- metrics --------------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    def append_metrics(self, rows: list[dict[str, Any]], columns: list[str]) -> None:
        """Append rows (one per seed) in one write + flush + fsync, so a reader never sees a torn row."""
        if not rows:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        new_file = not self.metrics_path.exists() or self.metrics_path.stat().st_size == 0
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        if new_file:
            writer.writeheader()
        writer.writerows(rows)
        with open(self.metrics_path, "a", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict[str, str]]:
        if not self.metrics_path.exists():
            return []
        with open(self.metrics_path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_metrics(self, max_update: int) -> None:
        """Drop rows written after the checkpoint we resume from (evaluations that will be redone)."""
        if not self.metrics_path.exists():
            return
        with open(self.metrics_path, newline="") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            rows = [r for r in reader if int(float(r["update"])) <= max_update]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(self.metrics_path, buf.getvalue())

    # -- checkpoint -----------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT

    def has_checkpoint(self) -> bool:
        return (self.checkpoint_dir / STATE_FILE).is_file()

    def save_checkpoint(self, state: dict) -> None:
        """Write ``state`` (tensors, numbers, strings, lists, dicts) aside, then swap it in by rename."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{CHECKPOINT}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        with open(tmp / STATE_FILE, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        old = self.path / f".{CHECKPOINT}.{uuid.uuid4().hex}.old"
        if self.checkpoint_dir.exists():
            os.rename(self.checkpoint_dir, old)
        os.rename(tmp, self.checkpoint_dir)
        shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, map_location: str = "cpu") -> dict:
        return load_state_file(self.checkpoint_dir / STATE_FILE, map_location)

    # -- done -----------------------------------------------------------------------------------
    def is_done(self) -> bool:
        return (self.path / DONE).is_file()

    def mark_done(self, summary: dict | None = None) -> None:
        atomic_write_json(self.path / DONE, summary or {})


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}, so a changed nested field is named, not its whole parent."""
    if not isinstance(obj, dict):
        return {prefix: obj}
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def load_state_file(path: str | os.PathLike, map_location: str = "cpu") -> dict:
    """Load a checkpoint without running code from it (``weights_only=True``)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: checkpoint not found") from None
    except Exception as e:  # a truncated or foreign file: say which and why
        raise UserError(f"{path}: not a readable synthrl checkpoint ({type(e).__name__}: {e})") from None
