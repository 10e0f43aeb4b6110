"""Content-addressed artifact store: ``STORE/artifacts/<kind>/<key>/``.

``key`` is the SHA-256 of the canonical JSON of every parameter that changes the artifact. An
artifact is built in a temporary directory beside its final place, then renamed; ``COMPLETE``
(holding the payload files' SHA-256) is written last. A directory without ``COMPLETE``, or whose
checksums fail, is rebuilt.

Every artifact is built once: the builder holds ``STORE/locks/<kind>/<key>.lock`` (an flock, so
processes on one machine and nodes sharing the storage over NFS alike); the others wait for it and
reuse its result. A builder that dies releases the lock with its process. Should locks be
unavailable, two racing builders still leave one result: the loser's rename fails and it uses the
winner's copy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator

from synthrl.errors import UserError
from synthrl.utils.io import (atomic_write_json, check_writable_dir, file_lock, params_key, sha256_file,
                              storage_problem)

COMPLETE = "COMPLETE"
PARAMS = "params.json"


def default_store_root() -> Path:
    """``$SYNTHRL_STORE`` or ``~/.cache/synthrl``."""
    return Path(os.environ.get("SYNTHRL_STORE", Path.home() / ".cache" / "synthrl")).expanduser().absolute()


def default_store_name() -> str:
    """How the default store is named to the user in an error."""
    return "$SYNTHRL_STORE" if os.environ.get("SYNTHRL_STORE") else "the artifact store"


class ArtifactStore:
    def __init__(self, root: str | os.PathLike | None = None, what: str | None = None):
        """``what``: how errors name the store (``--storage``); default ``$SYNTHRL_STORE`` / the artifact store."""
        self.root = Path(root).expanduser().absolute() if root is not None else default_store_root()
        self.what = what or ("store" if root is not None else default_store_name())

    def check_writable(self) -> Path:
        """Refuse, in one line, a store that cannot be written (before any work needs it)."""
        return check_writable_dir(self.root, self.what)

    @contextlib.contextmanager
    def lock(self, kind: str, params: dict, format_version: int = 1) -> Iterator[bool]:
        """Hold the build lock of one artifact (re-entrant: get_or_build takes it again inside).

        Yields False on a file system that refuses locks."""
        self.check_writable()
        key = params_key(params, format_version)
        with file_lock(self.root / "locks" / kind / f"{key}.lock",
                       waiting=f"waiting for another process building {kind} artifact {key[:12]}") as locked:
            yield locked

    def path(self, kind: str, params: dict, format_version: int = 1) -> Path:
        return self.root / "artifacts" / kind / params_key(params, format_version)

    def is_complete(self, directory: Path, verify: bool = True) -> bool:
        """True when ``COMPLETE`` exists and (if ``verify``) every payload file matches its checksum."""
        marker = directory / COMPLETE
        if not marker.is_file():
            return False
        if not verify:
            return True
        try:
            sums = json.loads(marker.read_text())["sha256"]
            return all(
                (directory / name).is_file() and sha256_file(directory / name) == digest for name, digest in sums.items()
            )
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def lookup(self, kind: str, params: dict, format_version: int = 1, verify: bool = True) -> Path | None:
        directory = self.path(kind, params, format_version)
        return directory if self.is_complete(directory, verify) else None

    def get_or_build(
        self,
        kind: str,
        params: dict,
        build: Callable[[Path], None],
        format_version: int = 1,
        verify: bool = True,
    ) -> Path:
        """Return the artifact directory for ``params``, calling ``build(tmp_dir)`` only when it is missing or broken.

        ``build`` writes its payload files into ``tmp_dir`` (sub-directories allowed); the store adds
        ``params.json`` and ``COMPLETE``. One process builds; any other asking for the same artifact
        meanwhile waits for it and gets the same directory. A storage failure (disk full, read-only)
        ends in one line, with the temporary directory removed.
        """
        final = self.path(kind, params, format_version)
        if self.is_complete(final, verify):
            return final
        with self.lock(kind, params, format_version) as locked:
            if self.is_complete(final, verify):  # built by the process we waited for
                return final
            if locked:  # any temporary copy now is a dead builder's: its half-built files go
                for orphan in final.parent.glob(f".{final.name}.*.tmp"):
                    shutil.rmtree(orphan, ignore_errors=True)
            tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
            try:
                tmp.mkdir(parents=True)
                self._build_into(tmp, kind, params, build, format_version)
                if final.exists() and not self.is_complete(final, verify):
                    # a broken or partial copy: move it aside so the rename below can land
                    shutil.rmtree(final, ignore_errors=True)
                try:
                    os.rename(tmp, final)
                except OSError:
                    # another builder (without working locks) won the race; its result is equally valid
                    if not self.is_complete(final, verify):
                        raise
                    shutil.rmtree(tmp, ignore_errors=True)
            except BaseException as e:
                problem = storage_problem(e, final.parent)
                shutil.rmtree(tmp, ignore_errors=True)
                if problem is not None:
                    raise UserError(f"{self.what} {self.root}: {problem} while building the {kind} artifact "
                                    f"{final.name[:12]}; nothing of it was kept") from None
                raise
        return final

    @staticmethod
    def _build_into(tmp: Path, kind: str, params: dict, build: Callable[[Path], None], format_version: int) -> None:
        """The payload, then params.json, then COMPLETE with the payload's checksums (written last)."""
        build(tmp)
        atomic_write_json(tmp / PARAMS, {"kind": kind, "format": format_version, "params": params})
        sums = {
            str(p.relative_to(tmp)): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file() and p.name != COMPLETE and not p.name.endswith(".tmp")
        }
        atomic_write_json(tmp / COMPLETE, {"sha256": sums})
