"""Ctrl-C during a sweep: Tune stops at the trials' last checkpoints; the launcher says what is done and
prints the exact `sweep resume` command."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthrl.errors import UserError
from trainables.records import SWEEP_FILE, Printer, read_sweep_record, sweep_dir
from trainables.status import state_counts, trial_states
from trainables.sweep_report import write_sweep_report

INTERRUPTED = 130   # the exit code after Ctrl-C (128 + SIGINT)


@dataclass(frozen=True)
class ResumeHint:
    """What `sweep resume` needs to continue: the name (a sweep's, or a multi-sweep file's) and the options."""

    name: str
    storage: Path
    address: str | None = None
    max_gpus: float | None = None
    dashboard: bool = True

    def command(self) -> str:
        import shlex

        words = ["synthrl", "sweep", "resume", self.name, "--storage", str(self.storage)]
        if self.address:
            words += ["--address", self.address]
        if self.max_gpus is not None:
            words += ["--max-gpus", f"{self.max_gpus:g}"]
        if not self.dashboard:
            words.append("--no-dashboard")
        return " ".join(shlex.quote(w) for w in words)


class _TuneInterruptMessages(logging.Filter):
    """Tune's own advice after Ctrl-C names ``Tuner.restore``; the launcher prints `sweep resume` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not text.startswith(("Experiment has been interrupted", "Trials did not complete"))


@contextlib.contextmanager
def _tune_sigint():
    """Run ``tuner.fit()`` under Tune's SIGINT handling: the first Ctrl-C makes Tune stop its trials, save the
    experiment and return; Tune then puts back the handler found here, so a second Ctrl-C raises
    KeyboardInterrupt at once. Tune leaves its own handler installed after a run that was not interrupted,
    which would swallow the next Ctrl-C (in stage 1 of a file's next sweep): put back ours afterwards."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if in_main else None
    tune_logger = logging.getLogger("ray.tune.tune")
    quiet = _TuneInterruptMessages()
    tune_logger.addFilter(quiet)
    try:
        yield
    finally:
        tune_logger.removeFilter(quiet)
        if in_main and previous is not None:
            signal.signal(signal.SIGINT, previous)


def fit(tuner, name: str) -> tuple[Any, bool]:
    """``tuner.fit()``; returns (result grid, whether the experiment ended with trials unfinished: Ctrl-C)."""
    from trainables import progress

    progress.ended_unfinished.pop(name, None)
    with _tune_sigint():
        result_grid = tuner.fit()
    return result_grid, bool(progress.ended_unfinished.get(name))


def report_interrupted(storage: Path, names: list[str], hint: ResumeHint, out: Printer,
                       not_started: tuple[str, ...] = ()) -> int:
    """After Ctrl-C: each sweep's trials by state (from the run directories), what was never launched, and
    the exact command that continues; returns the exit code."""
    for name in names:
        try:
            record = read_sweep_record(storage, name)
        except UserError:
            continue
        states = trial_states(storage, name, record)
        out(f"[{name}] interrupted: {state_counts(states)}")
        for s in states:
            if s["state"] == "partial":
                out(f"  partial  {s['trial_id']}: update {s['update']}/{s['total_updates']} (continues from its "
                    "last checkpoint)")
    if not_started:
        out(f"not started: {', '.join(not_started)}")
    out(f"resume with: {hint.command()}")
    for name in names:   # after the command that continues: a second Ctrl-C here skips only the page
        if (sweep_dir(storage, name) / SWEEP_FILE).is_file():
            write_sweep_report(storage, name, out)
    return INTERRUPTED

