"""One runner shape for CQL and DT, and the plain loop that drives it.

A runner holds a batched ensemble (several seeds, possibly several datasets of one environment)
and exposes::

    runner.total_updates, runner.eval_every, runner.updates_done
    runner.train(n_updates) -> None           # no host sync needed inside
    runner.split_granularity (optional, 1)    # train(a); train(b) == train(a + b) when a is a multiple of it
    runner.evaluate() -> list[dict]           # one row per ensemble member (seed, update, scores, losses)
    runner.state_dict() / load_state_dict(s)  # everything needed for a bit-identical continuation on CPU
    runner.metric_columns -> list[str]        # metrics.csv columns, in order
    runner.start_evaluation() -> PendingRows  # optional: evaluate a snapshot while training goes on
    runner.eval_overlap -> bool               # optional: drive uses start_evaluation when true

``drive`` is the one training loop: ``synthrl run`` calls it, and so does the Tune trainable, with a
report hook (``on_eval``: ``tune.report`` per evaluation, with the checkpoint of its moment).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Protocol

from synthrl.rundir import RunDir, load_saved_state


class Runner(Protocol):
    total_updates: int
    eval_every: int
    updates_done: int
    metric_columns: list[str]

    def train(self, n_updates: int) -> None: ...

    def evaluate(self) -> list[dict[str, Any]]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class PendingRows(Protocol):
    """An evaluation running in the background on a snapshot of the policies."""

    def done(self) -> bool: ...

    def rows(self) -> list[dict[str, Any]]: ...  # blocks until the evaluation has finished


# updates between progress-bar refreshes (a CPU CQL update takes ~0.1 s: 5,000 between evaluations is minutes)
PROGRESS_UPDATES = 256


def progress_pieces(runner: Runner, n: int) -> list[int]:
    """n updates cut into pieces for the progress bar, at multiples of the runner's split granularity."""
    granularity = max(1, int(getattr(runner, "split_granularity", 1)))
    piece = -(-PROGRESS_UPDATES // granularity) * granularity
    return [piece] * (n // piece) + ([n % piece] if n % piece else [])


def updates_until_next_eval(runner: Runner) -> int:
    remaining = runner.total_updates - runner.updates_done
    to_eval = runner.eval_every - runner.updates_done % runner.eval_every
    return min(remaining, to_eval)


class RunDirWriter:
    """Evaluation bookkeeping shared by ``synthrl run`` and the trainables: metrics rows, wall clock, checkpoints."""

    def __init__(self, run_dir: RunDir, runner: Runner):
        self.run_dir = run_dir
        self.runner = runner
        self.elapsed_before = 0.0  # wall clock of earlier sessions (restored from the checkpoint)
        self.started = time.perf_counter()
        run_dir.recover_checkpoint()  # a checkpoint a kill left aside is put back; orphaned copies go

    def wall_clock_s(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def restore(self, state: dict | None = None, source: str = "checkpoint") -> bool:
        """Load the run directory's checkpoint (or ``state``, read from ``source``) into the runner.

        metrics.csv then holds exactly the rows up to the checkpoint's update, and none when there
        is no checkpoint: rows written after it (killed before or inside the next checkpoint write)
        belong to evaluations that will be redone. Returns whether a checkpoint was loaded.
        """
        if state is None:
            if not self.run_dir.has_checkpoint():
                self.run_dir.truncate_metrics(0)
                return False
            source = str(self.run_dir.checkpoint_file())
            state = self.run_dir.load_checkpoint()
        load_saved_state(self.runner, state, "runner", source, "a checkpoint of this run",
                         "resume only the run that wrote it, or start a new --out")
        self.elapsed_before = float(state.get("wall_clock_s", 0.0))
        self.started = time.perf_counter()
        self.run_dir.truncate_metrics(self.runner.updates_done)
        return True

    def checkpoint_state(self) -> dict:
        return {"runner": self.runner.state_dict(), "wall_clock_s": self.wall_clock_s()}

    def evaluate_and_record(self) -> list[dict[str, Any]]:
        """Evaluate, append the rows to metrics.csv, then checkpoint (metrics first: resume truncates)."""
        rows = self.runner.evaluate()
        self._record(rows, self.checkpoint_state())
        return rows

    def start_evaluation(self) -> "OverlappedEvaluation":
        """Start evaluating in the background; the checkpoint of this moment waits beside it, in memory."""
        pending = self.runner.start_evaluation()
        return OverlappedEvaluation(pending, self.checkpoint_state())

    def finish_evaluation(self, evaluation: "OverlappedEvaluation") -> list[dict[str, Any]]:
        """Wait for the rows, append them, then write the checkpoint taken when the evaluation started."""
        rows = evaluation.pending.rows()
        self._record(rows, evaluation.checkpoint)
        return rows

    def _record(self, rows: list[dict[str, Any]], checkpoint: dict) -> None:
        wall = self.wall_clock_s()
        for row in rows:
            row.setdefault("wall_clock_s", round(wall, 3))
        self.run_dir.append_metrics(rows, self.runner.metric_columns)
        self.run_dir.save_checkpoint(checkpoint)


class OverlappedEvaluation:
    def __init__(self, pending: PendingRows, checkpoint: dict):
        self.pending, self.checkpoint = pending, checkpoint


def overlaps_evaluation(runner: Runner) -> bool:
    return bool(getattr(runner, "eval_overlap", False)) and hasattr(runner, "start_evaluation")


def drive(
    runner: Runner,
    run_dir: RunDir,
    resume: bool = False,
    progress: bool = True,
    on_eval: Callable[[list[dict[str, Any]]], None] | None = None,
    desc: str = "train",
    saved: tuple[dict, str] | None = None,
) -> list[dict[str, Any]]:
    """Train to ``total_updates`` with an evaluation every ``eval_every`` updates; write DONE last.

    ``resume``: continue from the run directory's checkpoint, or from ``saved`` = (state, where it was
    read from) when given (a Tune retry's checkpoint). ``on_eval(rows)`` runs after each evaluation's
    rows and checkpoint are written (the run directory's checkpoint/ then holds that evaluation's state).

    With a runner that overlaps evaluation, each evaluation runs on a snapshot while training goes
    on; its rows and the checkpoint of its moment are written as soon as it finishes (at the latest
    before the next one starts), so metrics.csv and resume are exactly as without overlap.
    Returns the last evaluation's rows.
    """
    from tqdm import tqdm

    writer = RunDirWriter(run_dir, runner)
    if resume and saved is not None:
        writer.restore(*saved)
    elif resume:
        writer.restore()
    last_rows: list[dict[str, Any]] = []
    overlap = overlaps_evaluation(runner)
    pending: OverlappedEvaluation | None = None
    bar = tqdm(total=runner.total_updates, initial=runner.updates_done, desc=desc, unit="upd",
               disable=not progress, dynamic_ncols=True, mininterval=1.0)

    def recorded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        scores = [r["normalized_score"] for r in rows if r.get("normalized_score") is not None]
        if scores:
            bar.set_postfix(score=f"{sum(scores) / len(scores):.1f}")
        if on_eval is not None:
            on_eval(rows)
        return rows

    def finish_pending() -> None:  # evaluations are recorded in order, one at a time
        nonlocal pending, last_rows
        if pending is not None:
            last_rows, pending = recorded(writer.finish_evaluation(pending)), None

    try:
        while runner.updates_done < runner.total_updates:
            for piece in progress_pieces(runner, updates_until_next_eval(runner)):
                runner.train(piece)
                bar.update(piece)
                if pending is not None and pending.pending.done():
                    finish_pending()
            if runner.updates_done % runner.eval_every == 0 or runner.updates_done >= runner.total_updates:
                if overlap:
                    finish_pending()
                    pending = writer.start_evaluation()
                else:
                    last_rows = recorded(writer.evaluate_and_record())
        finish_pending()
    except Exception:
        if pending is not None:  # training failed after a snapshot: its evaluation and checkpoint still count
            try:
                writer.finish_evaluation(pending)
            except Exception:
                pass
        raise
    finally:
        bar.close()
    run_dir.mark_done({"updates": runner.updates_done, "wall_clock_s": round(writer.wall_clock_s(), 3)})
    return last_rows
