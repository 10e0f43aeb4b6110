"""The run directory: one contract for ``synthrl run`` and for a Tune trial (see design.md).

::

    RUN/
      params.json    every parameter of the run
      metrics.csv    one row per (seed, evaluation), appended and flushed as evaluations happen
      checkpoint/    the latest complete checkpoint (written aside, then renamed)
      DONE           written last
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from synthrl.errors import UserError
from synthrl.utils.io import atomic_write_json, atomic_write_text, check_writable_dir, make_dirs, storage_problem

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
        """Append rows (one per seed) in one write + fsync; a failed write is cut back, so no torn row stays."""
        if not rows:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        new_file = not self.metrics_path.exists() or self.metrics_path.stat().st_size == 0
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        if new_file:
            writer.writeheader()
        writer.writerows(rows)
        with storage_errors(self.metrics_path, "evaluation rows"):
            fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                size = os.fstat(fd).st_size
                try:
                    write_all(fd, buf.getvalue().encode())
                    os.fsync(fd)
                except BaseException:
                    os.ftruncate(fd, size)  # a full disk may have taken half a row
                    raise
            finally:
                os.close(fd)

    def read_metrics(self) -> list[dict[str, str]]:
        if not self.metrics_path.exists():
            return []
        with open(self.metrics_path, newline="") as f:
            return list(csv.DictReader(f))

    def truncate_metrics(self, max_update: int) -> None:
        """Keep exactly the rows up to ``max_update`` (the checkpoint we resume from; 0: none).

        Rows after it are evaluations that will be redone; a torn row (a write cut short) goes too.
        """
        if not self.metrics_path.exists():
            return
        text = self.metrics_path.read_text()
        whole = text[: text.rfind("\n") + 1]  # a write cut short leaves a last line (even the header) torn
        reader = csv.DictReader(io.StringIO(whole, newline=""))
        columns = reader.fieldnames or []
        rows = list(reader)
        keep = [r for r in rows if (update := _row_update(r)) is not None and update <= max_update]
        if whole == text and len(keep) == len(rows):
            return
        if not keep:  # the run starts over: metrics.csv is written afresh, header first
            self.metrics_path.unlink()
            return
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(keep)
        atomic_write_text(self.metrics_path, buf.getvalue())

    # -- checkpoint -----------------------------------------------------------------------------
    # save_checkpoint writes .checkpoint.X.tmp/, renames checkpoint/ -> .checkpoint.Y.old/, renames
    # the tmp -> checkpoint/, then removes the .old. Killed anywhere, a complete checkpoint remains:
    # checkpoint/ itself, or (killed between the two renames) the .old, which readers fall back to
    # and recover_checkpoint() puts back. Every other .tmp/.old left behind is an orphan.
    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT

    def checkpoint_file(self) -> Path | None:
        """The latest complete checkpoint's state file, or None when the run has none yet."""
        current = self.checkpoint_dir / STATE_FILE
        if current.is_file():
            return current
        olds = [p / STATE_FILE for p in self.path.glob(f".{CHECKPOINT}.*.old") if (p / STATE_FILE).is_file()]
        return max(olds, key=lambda p: p.stat().st_mtime) if olds else None

    def has_checkpoint(self) -> bool:
        return self.checkpoint_file() is not None

    def recover_checkpoint(self) -> None:
        """Before a run (re)starts: put back a checkpoint a kill left as .old, remove orphaned copies."""
        found = self.checkpoint_file()
        if found is not None and found.parent != self.checkpoint_dir:
            if self.checkpoint_dir.exists():  # without a state file: nothing of it is usable
                shutil.rmtree(self.checkpoint_dir)
            os.rename(found.parent, self.checkpoint_dir)
            _fsync_dir(self.path)
        self._remove_orphans()

    def save_checkpoint(self, state: dict) -> None:
        """Write ``state`` (tensors, numbers, strings, lists, dicts) aside, then swap it in by rename."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / f".{CHECKPOINT}.{uuid.uuid4().hex}.tmp"
        with storage_errors(self.checkpoint_dir, "the checkpoint"):
            try:
                tmp.mkdir()
                with open(tmp / STATE_FILE, "wb") as f:
                    torch.save(state, f)
                    f.flush()
                    os.fsync(f.fileno())
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        old = self.path / f".{CHECKPOINT}.{uuid.uuid4().hex}.old"
        if self.checkpoint_dir.exists():
            os.rename(self.checkpoint_dir, old)
        os.rename(tmp, self.checkpoint_dir)
        _fsync_dir(self.path)
        shutil.rmtree(old, ignore_errors=True)
        self._remove_orphans()

    def load_checkpoint(self, map_location: str = "cpu") -> dict:
        found = self.checkpoint_file()
        if found is None:
            raise UserError(f"{self.checkpoint_dir}: no checkpoint (the run saves one at its first evaluation)")
        return load_state_file(found, map_location)

    def _remove_orphans(self) -> None:
        """Checkpoint copies of interrupted writes (up to megabytes each) and temporary files of atomic writes."""
        current = self.checkpoint_file()
        for pattern in (f".{CHECKPOINT}.*.tmp", f".{CHECKPOINT}.*.old", f".{PARAMS}.*.tmp", f".{METRICS}.*.tmp",
                        f".{DONE}.*.tmp"):
            for orphan in self.path.glob(pattern):
                if current is not None and orphan == current.parent:
                    continue
                if orphan.is_dir():
                    shutil.rmtree(orphan, ignore_errors=True)
                else:
                    orphan.unlink(missing_ok=True)

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
    """Load a checkpoint without running code from it (``weights_only=True``); any failure is one line."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of foreign files
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: checkpoint not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a checkpoint file") from None
    except Exception as e:  # a truncated or foreign file: say which and why
        raise UserError(f"{path}: not a readable synthrl checkpoint ({unreadable_reason(e)})") from None


def load_saved_state(target: Any, saved: Any, key: str, source: str, expected: str, advice: str) -> None:
    """``target.load_state_dict(saved[key])``; a file of the wrong kind or run (missing keys, other
    shapes or seeds) is one line naming ``source``, what it should have been, and what to do."""
    try:
        target.load_state_dict(saved[key])
    except UserError as e:
        raise UserError(f"{source}: {e}") from None
    except torch.OutOfMemoryError:
        raise
    except WRONG_CONTENT as e:
        raise UserError(f"{source}: not {expected} ({error_detail(e)}); {advice}") from None


# what reading a saved state of the wrong kind raises (a missing key, a non-tensor, another shape)
WRONG_CONTENT = (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError)


def error_detail(e: BaseException) -> str:
    """A missing key as "no 'key'", any other error as its first line (torch's messages run to many)."""
    if isinstance(e, KeyError):
        return f"no {e}"
    return first_line(e)


def first_line(e: BaseException, limit: int = 200) -> str:
    lines = str(e).strip().splitlines()
    return (lines[0] if lines else type(e).__name__)[:limit]


def unreadable_reason(e: Exception) -> str:
    """torch.load's error (often many lines of advice) as a short phrase."""
    text = str(e)
    if "central directory" in text or "zip archive" in text:
        return "truncated or corrupted zip archive"
    if "Weights only load failed" in text:
        _, _, detail = text.partition("WeightsUnpickler error:")
        detail = (detail.strip().splitlines() or ["unpickling failed"])[0]
        return f"not a torch tensor file, or one holding code, which is never loaded: {detail}"
    if isinstance(e, EOFError) or not text:
        return "empty or truncated file"
    return f"{type(e).__name__}: {first_line(e)}"


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may take only part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


@contextlib.contextmanager
def storage_errors(path: Path, what: str) -> Iterator[None]:
    """A full disk (or quota, read-only storage) while writing ``path`` is one line, not a traceback;
    the caller has removed what it half-wrote, so the run directory stays resumable."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        problem = storage_problem(e, path.parent)
        if problem is None:
            raise
        raise UserError(f"{path}: {problem} (writing {what}); everything written before is intact: "
                        "continue the run with --resume once there is room") from None


def _row_update(row: dict) -> int | None:
    """A metrics row's update, or None for a torn row (fields missing or extra)."""
    if None in row or any(v is None for v in row.values()):
        return None
    try:
        return int(float(row["update"]))
    except (KeyError, ValueError):
        return None


def _fsync_dir(path: Path) -> None:
    """Make renames inside ``path`` durable (a power cut after a rename cannot undo it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
