"""``STORAGE/NAME/report.html``: a sweep's report page (analysis/report.py), written when the sweep ends
(finished, partly finished, or stopped by Ctrl-C: then its unfinished trials are listed) and on demand by
``sweep status NAME --report``. Reads the files only (no Ray).

A report that cannot be built never costs the sweep anything: its results are on disk already; one
warning line says why, and the sweep goes on (a second Ctrl-C while it is built skips it).
"""

from __future__ import annotations

from pathlib import Path

from analysis.records import PAPER_DATASETS, dataset_key
from synthrl.errors import UserError
from trainables.records import SWEEP_FILE, Printer, group_path, print_line, read_group, read_sweep_record, sweep_dir
from trainables.status import trial_states

REPORT_FILE = "report.html"
UNFINISHED = ("partial", "pending", "error")


def unfinished_trials(storage: Path, name: str, record: dict) -> list[str]:
    """One line per trial not done: 'partial CQL/hopper/s0-1: update 50/200', 'pending …', 'error …: why'."""
    lines = []
    for s in trial_states(storage, name, record):
        if s["state"] in UNFINISHED:
            line = f"{s['state']} {s['trial_id']}: update {s['update']}/{s['total_updates']}"
            lines.append(line + (f" ({s['error']})" if s["state"] == "error" and s["error"] else ""))
    return lines


def write_sweep_report(storage: Path, name: str, out: Printer = print_line, seed: int = 0) -> Path | None:
    """Write (or rewrite) the sweep's report page; its path, or None after a one-line warning."""
    from analysis.report import write_report

    path = sweep_dir(storage, name) / REPORT_FILE
    try:
        record = read_sweep_record(storage, name)
        # beside the paper's numbers when the sweep runs any of the paper's datasets (not the quick start's)
        paper = any(dataset_key(d) in PAPER_DATASETS for d in record.get("dataset_paths") or {})
        write_report(path, results=sweep_dir(storage, name), paper=paper, seed=seed,
                     running=unfinished_trials(storage, name, record))
    except KeyboardInterrupt:
        out(f"[{name}] report skipped (interrupted); `synthrl sweep status {name} --report` writes it")
        return None
    except Exception as e:  # noqa: BLE001 - any failure of the page must leave the sweep and its results alone
        first = (str(e).splitlines() or [""])[0]
        out(f"[{name}] warning: report not written ({type(e).__name__}: {first}); the results are untouched")
        return None
    out(f"[{name}] report: {path}")
    return path


def sweep_names(storage: Path, name: str) -> list[str]:
    """The sweep ``name``, or the launched sweeps of a multi-sweep file launched under ``name``."""
    if (sweep_dir(storage, name) / SWEEP_FILE).is_file() or not group_path(storage, name).is_file():
        read_sweep_record(storage, name)  # a name that is neither: its one-line error
        return [name]
    members = [m["name"] for m in read_group(storage, name)["sweeps"]]
    launched = [m for m in members if (sweep_dir(storage, m) / SWEEP_FILE).is_file()]
    if not launched:
        raise UserError(f"{name}: none of its sweeps ({', '.join(members)}) has started yet")
    return launched
