"""Where a report's numbers come from: the runs' own records, and the environment that built the report.

From the results (what the runs wrote): the synthrl versions, devices and update paths of the runs'
``params.json`` (a sweep trial's or a plain ``synthrl run``'s; any ``versions`` / ``git_commit`` a run
records), the environments, the sweep's ``sweep.json`` (its description, source file, launch and resume
times) and the per-node ``doctor/*.json`` (device name, torch version). From here: the project's version
and git commit, Python and the library versions of the process building the report. No Ray, no torch
import (versions come from the installed packages' metadata).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from synthrl.provenance import git_commit, library_versions

SWEEP_RECORD = "sweep.json"


@dataclass
class Provenance:
    source: str                                   # the --results folder or --csv file
    kind: str                                     # "run directories" or "long CSV"
    runs: int = 0                                 # params.json files read
    sweep: dict = field(default_factory=dict)     # name, description, source, created, resumed (sweep.json)
    # what the runs recorded: each field's distinct values, with how many runs said so
    run_fields: dict[str, dict[str, int]] = field(default_factory=dict)
    nodes: list[dict] = field(default_factory=list)  # doctor reports: node, device, device_name, torch
    builder: dict[str, str] = field(default_factory=dict)  # synthrl, git commit, python, libraries (here)

    @property
    def description(self) -> str:
        return str(self.sweep.get("description") or "")

    @property
    def name(self) -> str:
        return str(self.sweep.get("name") or Path(self.source).name)


def _count(fields: dict[str, dict[str, int]], key: str, value) -> None:
    if value is None or value == "":
        return
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    fields.setdefault(key, {})
    fields[key][text] = fields[key].get(text, 0) + 1


def _read_json(path: Path) -> dict | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # an unreadable record is left out of the provenance, never a failed report
    return doc if isinstance(doc, dict) else None


def _run_fields(params: dict, fields: dict[str, dict[str, int]]) -> None:
    config = params.get("config") if isinstance(params.get("config"), dict) else {}
    _count(fields, "synthrl version", params.get("synthrl_version"))
    _count(fields, "git commit", params.get("git_commit"))
    _count(fields, "device", params.get("device") or config.get("device"))
    fast = params.get("fast_path")
    if isinstance(fast, dict):
        _count(fields, "update path", f"{fast.get('path', '?')} ({fast.get('reason', '')})".replace(" ()", ""))
    _count(fields, "algorithm", params.get("algorithm"))
    _count(fields, "environment", params.get("env_id"))
    versions = params.get("versions")
    if isinstance(versions, dict):
        for library, version in sorted(versions.items()):
            _count(fields, str(library), version)


def _sweep_record(root: Path) -> dict:
    doc = _read_json(root / SWEEP_RECORD)
    if doc is None:
        return {}
    document = doc.get("document") if isinstance(doc.get("document"), dict) else {}
    return {k: v for k, v in {"name": doc.get("name"), "description": document.get("description"),
                              "source": doc.get("source"), "algorithm": doc.get("algorithm"),
                              "created": doc.get("created"), "resumed": doc.get("resumed")}.items() if v}


def builder_environment() -> dict[str, str]:
    """synthrl's version and git commit, Python and the installed libraries of this process."""
    from synthrl import __version__

    env = {"synthrl": __version__}
    commit = git_commit()
    if commit:
        env["git commit"] = commit
    env.update(library_versions())
    return env


def collect_provenance(results: str | Path | None = None, csv: str | Path | None = None) -> Provenance:
    """What the results say about themselves (run directories; a CSV says only its name) and who built the report."""
    if csv is not None:
        return Provenance(str(csv), "long CSV", builder=builder_environment())
    root = Path(results)
    prov = Provenance(str(root), "run directories", builder=builder_environment())
    prov.sweep = _sweep_record(root)
    for params_path in sorted(root.rglob("params.json")):
        if any(part.startswith(".") for part in params_path.relative_to(root).parts[:-1]):
            continue
        params = _read_json(params_path)
        if params is None or "algorithm" not in params or "seeds" not in params:
            continue  # not a synthrl run directory (Tune's own params.json of a trial)
        prov.runs += 1
        _run_fields(params, prov.run_fields)
    for report_path in sorted((root / "doctor").glob("*.json")):
        report = _read_json(report_path)
        if report is not None:
            prov.nodes.append({"node": report_path.stem, "device": report.get("device", "?"),
                               "device_name": report.get("device_name", ""), "torch": report.get("torch", ""),
                               "note": report.get("skipped", "")})
    return prov
