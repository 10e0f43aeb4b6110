"""Content-addressed artifact store: ``STORE/artifacts/<kind>/<key>/``.

``key`` is the SHA-256 of the canonical JSON of every parameter that changes the artifact. An
artifact is built in a temporary directory beside its final place, then renamed; ``COMPLETE``
(holding the payload files' SHA-256) is written last. A directory without ``COMPLETE``, or whose
checksums fail, is rebuilt. Two builders racing for one key leave one result: the loser's
rename fails and it uses the winner's copy.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from synthrl.utils.io import atomic_write_json, params_key, sha256_file

COMPLETE = "COMPLETE"
PARAMS = "params.json"


def default_store_root() -> Path:
    """``$SYNTHRL_STORE`` or ``~/.cache/synthrl``."""
    return Path(os.environ.get("SYNTHRL_STORE", Path.home() / ".cache" / "synthrl")).expanduser().absolute()


class ArtifactStore:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser().absolute() if root is not None else default_store_root()

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
        ``params.json`` and ``COMPLETE``.
        """
        final = self.path(kind, params, format_version)
        if self.is_complete(final, verify):
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        try:
            build(tmp)
            atomic_write_json(tmp / PARAMS, {"kind": kind, "format": format_version, "params": params})
            sums = {
                str(p.relative_to(tmp)): sha256_file(p)
                for p in sorted(tmp.rglob("*"))
                if p.is_file() and p.name != COMPLETE and not p.name.endswith(".tmp")
            }
            atomic_write_json(tmp / COMPLETE, {"sha256": sums})
            if final.exists() and not self.is_complete(final, verify):
                # a broken or partial copy: move it aside so the rename below can land
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.rename(tmp, final)
            except OSError:
                # another builder won the race; its result is equally valid
                if not self.is_complete(final, verify):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final
