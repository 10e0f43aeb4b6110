"""What a run records about the software and machine it ran on (params.json's session facts).

A report built long after the cluster is gone reads these from each run directory: the library
versions (from the installed packages' metadata, so nothing heavy is imported), the git commit of the
checkout synthrl ran from, and the device it trained on.
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

LIBRARIES = ("numpy", "pandas", "scipy", "matplotlib", "torch", "gymnasium", "mujoco", "h5py", "ray")


def git_commit(where: Path | None = None) -> str | None:
    """The commit of the checkout ``where`` (default: synthrl's own) is in, '+ local changes' when dirty;
    None outside git or without a git command."""
    where = where or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(where), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None  # no git here: say nothing rather than guess
    return commit.stdout.strip() + (" + local changes" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def library_versions() -> dict[str, str]:
    """Python's version and each installed library's of LIBRARIES (the absent ones left out)."""
    versions = {"python": platform.python_version()}
    for library in LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            continue
    return versions


def device_name(device: str) -> str:
    """'cpu', or 'cuda:0 (NVIDIA H200)': the resolved device with the GPU's model."""
    if not device.startswith("cuda"):
        return device
    import torch

    index = torch.device(device).index or 0
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def session_record(device: str) -> dict:
    """params.json's session facts: versions, git_commit (when known) and device (resolved, e.g. 'cpu')."""
    record = {"versions": library_versions(), "device": device_name(device)}
    commit = git_commit()
    if commit:
        record["git_commit"] = commit
    return record
