"""Atomic file writes, canonical JSON and checksums: nothing already written is ever half-replaced.

Output places are checked before any work (``check_writable_dir``, ``check_output_file``), and a
write that fails for a storage reason (disk full, read-only, permission) ends in one line naming
the path (a ``UserError``) with its temporary file removed. Every file written here honours the
umask, like ``open`` does: colleagues on shared storage read what a run wrote.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

from synthrl.errors import UserError


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the same parameters always give the same text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True, default=_json_default)


def _json_default(obj: Any) -> Any:
    # numpy scalars and paths turn up in parameter dicts
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def params_key(params: dict, format_version: int = 1) -> str:
    """SHA-256 of the canonical JSON of every parameter that changes an output (plus a format version)."""
    return hashlib.sha256(canonical_json({"params": params, "format": format_version}).encode()).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, fsync it, then rename over ``path``.

    The temporary file is created with mode 0666 minus the umask (``tempfile.mkstemp`` would make it
    0600 and the rename would keep that). A storage failure (disk full, read-only, permission) is a
    one-line UserError naming ``path``; the temporary file never stays behind.
    """
    path = Path(path)
    make_dirs(path.parent, str(path))
    tmp_path = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        write(tmp_path)
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException as e:
        problem = storage_problem(e, path.parent)
        with contextlib.suppress(OSError):  # on a read-only file system it was never made
            tmp_path.unlink()
        if problem is not None:
            raise StorageError(f"{path}: {problem}; nothing was written", problem) from None
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


# ---------------------------------------------------------------------------------------------
# output places: checked up front, storage failures in one line
# ---------------------------------------------------------------------------------------------
# errno -> what the user is told (any other OSError is not a storage problem of ours to name)
STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "is not writable (read-only file system)",
    errno.EACCES: "is not writable (permission denied)",
    errno.EPERM: "is not writable (operation not permitted)",
    errno.EFBIG: "file too large for the file system",
}


class StorageError(UserError):
    """A write failed because of the storage (``problem``: disk full, read-only, ...); said in one line."""

    def __init__(self, message: str, problem: str):
        super().__init__(message)
        self.problem = problem


def disk_full(directory: str | os.PathLike) -> bool:
    """True when the file system holding ``directory`` (or its nearest existing parent) has no free blocks."""
    try:
        stat = os.statvfs(_nearest_existing(Path(directory)))
    except OSError:
        return False
    return stat.f_bavail == 0


def storage_problem(exc: BaseException, directory: str | os.PathLike) -> str | None:
    """Why writing into ``directory`` failed, when the storage is the reason; None for any other error.

    Some writers (torch.save's zip writer) report a full disk without an errno, so any failure on a
    file system with no free blocks counts as a full disk too.
    """
    if isinstance(exc, StorageError):
        return exc.problem
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        return STORAGE_ERRNOS[exc.errno]
    if isinstance(exc, Exception) and disk_full(directory):
        return STORAGE_ERRNOS[errno.ENOSPC]
    return None


def make_dirs(directory: str | os.PathLike, what: str) -> Path:
    """``mkdir -p`` (honours the umask) with a one-line UserError naming ``what`` when it cannot."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        problem = _dir_problem(directory) or STORAGE_ERRNOS.get(e.errno) or (e.strerror or str(e)).lower()
        raise UserError(f"{what}: {problem}") from None
    return directory


def check_writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Refuse, in one line, a directory that cannot be written (before any work); returns it absolute.

    A missing directory is fine when it can be created (its parents are made with it); nothing is
    created here. ``what`` names it for the user: ``--out``, ``--storage``, ``$SYNTHRL_STORE``.
    """
    directory = Path(os.path.abspath(Path(path).expanduser()))
    problem = _dir_problem(directory)
    if problem is not None:
        raise UserError(f"{what} {path}: {problem}")
    return directory


def check_output_file(path: str | os.PathLike, what: str) -> Path:
    """Refuse, in one line, an output file that cannot be written (before any work); returns it absolute."""
    file = Path(os.path.abspath(Path(path).expanduser()))
    if file.is_dir():
        raise UserError(f"{what} {path}: is a directory, expected a file name")
    problem = _dir_problem(file.parent, parent=True)
    if problem is not None:
        raise UserError(f"{what} {path}: {problem}")
    return file


def _nearest_existing(path: Path) -> Path:
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def _dir_problem(directory: Path, parent: bool = False) -> str | None:
    """Why files cannot be created in ``directory`` (made with its parents if missing), or None.

    ``parent``: the directory is the parent of the user's output file (and named so).
    """
    existing = _nearest_existing(directory)
    if not existing.is_dir():
        if existing == directory and not parent:
            return "a file is in the way (expected a directory)"
        return f"a file is in the way: {existing}"
    if existing != directory:
        where = f"parent directory {directory} does not exist" if parent else "does not exist"
        where = f"{where} and cannot be created: {existing}"
    else:
        where = f"parent directory {directory}" if parent else ""
    # root ignores permission bits, so ask the file system itself: create and remove a probe file
    probe = existing / f".synthrl-write-test-{uuid.uuid4().hex[:12]}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as e:
        problem = STORAGE_ERRNOS.get(e.errno, f"is not writable ({(e.strerror or str(e)).lower()})")
        return f"{where} {problem}".strip()
    if disk_full(existing):
        return f"{where}: no space left on device" if where else "no space left on device"
    return None


# ---------------------------------------------------------------------------------------------
# one builder at a time: an exclusive lock file, across threads, processes and nodes
# ---------------------------------------------------------------------------------------------
_HELD: dict[tuple[int, str], list] = {}   # (pid, lock path) -> [RLock, depth, open file, locked]
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike, waiting: str | None = None) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing); re-entrant in the thread that holds it.

    ``fcntl.flock`` serialises processes on one machine and, on NFS (Linux maps it to NFS byte-range
    locks), across the nodes sharing the storage. A holder that dies releases it: the kernel drops
    the lock with the process (on NFSv4 the server does when the client's lease lapses), so no
    stale-lock rule is needed. ``waiting``: printed (with the holder's host:pid) when we must wait.
    Yields False when the file system refuses locks (then nothing is serialised).
    """
    path = Path(path)
    with _HELD_GUARD:
        entry = _HELD.setdefault((os.getpid(), str(path)), [threading.RLock(), 0, None, False])
    with entry[0]:
        if entry[1] == 0:
            make_dirs(path.parent, str(path))
            try:
                f = open(path, "a+")
            except OSError as e:
                raise UserError(f"{path}: cannot create the lock file ({STORAGE_ERRNOS.get(e.errno, e.strerror)})") \
                    from None
            try:
                entry[3] = _flock(f, path, waiting)
            except BaseException:
                f.close()
                raise
            entry[2] = f
        entry[1] += 1
        try:
            yield entry[3]
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                f, entry[2] = entry[2], None
                with contextlib.suppress(OSError):
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)
                f.close()


def _flock(f, path: Path, waiting: str | None) -> bool:
    """Take the exclusive lock on the open file ``f`` (waiting if held) and write our host:pid into it."""
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                f.seek(0)
                holder = f.read().strip() or "another process"
                print(f"synthrl: {waiting} (held by {holder}; lock {path})", file=sys.stderr, flush=True)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP):
            raise
        # a file system without locks (NFSv3 without lockd): racing builders still leave one result
        print(f"synthrl: warning: {path}: the file system refuses locks ({e.strerror}); going on without",
              file=sys.stderr, flush=True)
        return False
    f.seek(0)
    f.truncate()
    f.write(f"{socket.gethostname()}:{os.getpid()}\n")
    f.flush()
    return True


def parse_seeds(text: str) -> list[int]:
    """'0-19' -> [0..19]; '0,3,7' -> [0, 3, 7]; '5' -> [5]; ranges and lists mix ('0-2,9')."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise UserError(f"--seeds: expected a range like 0-19 or a list like 0,3,7, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds: seeds repeat in {text!r}")
    return seeds


def resolve_device(name: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without a GPU is a clear error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is visible on this machine (use --device cpu or auto)")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"--device: expected auto, cpu or cuda[:N], got {name!r}")
    return name
