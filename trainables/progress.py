"""The sweep's live view: a Tune callback printing one compact status line (imported with Ray).

A module of its own so that Tune pickles the callback by reference: ``sweep resume`` restores the
experiment's callbacks from Tune's state, and they run this code, not a copy saved at launch.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from ray import tune

from trainables.status import latest_scores, progress_line, trial_label

FINISHED_STATES = ("TERMINATED", "ERROR")
# sweep name -> labels of the trials Tune had not finished when its experiment last ended. Ctrl-C makes Tune
# stop the experiment, and tuner.fit() returns as usual with every stopped trial marked TERMINATED, like a
# finished one; a finished trial went through on_trial_complete / on_trial_error, a stopped one did not.
ended_unfinished: dict[str, list[str]] = {}


def _print(text: str) -> None:
    print(text, flush=True)


class SweepProgress(tune.Callback):
    """Trials by state, artifacts built, best score so far, ETA; every ``interval_s`` and per finished trial.

    The best score is each trial's latest evaluation (mean over its seeds), as ``sweep status`` shows it,
    seeded from the run directories when an experiment starts (finished trials and a resume's earlier part
    count too); elapsed time and ETA count from the start of this run or resume."""

    def __init__(self, name: str, artifacts: str, skipped: int, storage: str | Path, interval_s: float = 10.0):
        self.name = name
        self.artifacts = artifacts
        self.skipped = skipped
        self.storage = str(storage)
        self.interval_s = interval_s
        self.started = time.time()
        self.last_print = 0.0
        self.latest: dict[str, float] = {}
        self.finished: set[str] = set()      # Tune trial ids that completed or failed for good
        self.first_step = True

    def setup(self, **info):
        self.started = time.time()
        self.last_print = 0.0
        self.latest = latest_scores(Path(self.storage), self.name)
        self.finished, self.first_step = set(), True
        ended_unfinished.pop(self.name, None)

    def on_step_begin(self, iteration, trials, **info):
        if self.first_step:   # a resumed experiment's trials that had finished before
            self.finished |= {t.trial_id for t in trials if t.status in FINISHED_STATES}
            self.first_step = False

    def on_trial_result(self, iteration, trials, trial, result, **info):
        score = result.get("normalized_score")
        if isinstance(score, (int, float)) and math.isfinite(score):
            self.latest[trial_label(trial)] = float(score)

    def on_trial_recover(self, iteration, trials, trial, **info):
        _print(f"[{self.name}] trial {trial_label(trial)} failed; Tune retries it from its last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.finished.add(trial.trial_id)
        _print(f"[{self.name}] trial {trial_label(trial)} failed and is out of retries")

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.finished.add(trial.trial_id)
        self._line(trials, force=True)

    def on_step_end(self, iteration, trials, **info):
        self._line(trials)

    def on_experiment_end(self, trials, **info):
        unfinished = [trial_label(t) for t in trials if t.trial_id not in self.finished]
        ended_unfinished[self.name] = unfinished
        if not unfinished:   # after Ctrl-C the launcher reports from the run directories instead
            self._line(trials, force=True)

    def best(self) -> tuple[float, str] | None:
        if not self.latest:
            return None
        trial_id = max(self.latest, key=self.latest.get)
        return self.latest[trial_id], trial_id

    def _line(self, trials, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last_print < self.interval_s:
            return
        self.last_print = now
        _print(progress_line(self.name, trials, self.artifacts, self.skipped, self.best(), now - self.started))
