"""Live per-trial metrics through Ray's metrics API (``ray.util.metrics``).

Each trial publishes, after every evaluation, tagged by sweep, variant, dataset and seed group:

- ``synthrl_updates_per_second``  (gauge)   fine-tuning updates per second of training time
- ``synthrl_normalized_score``    (gauge)   latest normalised score, mean over the trial's seeds
- ``synthrl_evaluations``         (counter) evaluations done
- ``synthrl_updates``             (counter) fine-tuning updates done

Ray exports them from every node's metrics agent in Prometheus format (as ``ray_synthrl_...``), so
the dashboard's Metrics view and any Prometheus/Grafana pointed at the cluster chart them live.
Ray's agent forgets a gauge about two export intervals after its last ``set``, and an evaluation
can be many minutes away, so a daemon thread re-sets the latest gauge values every ``refresh_s``
while the trial lives.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Iterable

TAG_KEYS = ("sweep", "variant", "dataset", "seed_group")


def seed_group_tag(seeds: Iterable[int]) -> str:
    """'0-4' for consecutive seeds, '0,3,7' otherwise: short, and the same text in every view."""
    seeds = [int(s) for s in seeds]
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(str(s) for s in seeds)


def mean_score(rows: list[dict[str, Any]]) -> float | None:
    """Mean normalised score over an evaluation's rows (one per seed); None when no row has one."""
    scores = [float(r["normalized_score"]) for r in rows
              if r.get("normalized_score") not in (None, "") and math.isfinite(float(r["normalized_score"]))]
    return sum(scores) / len(scores) if scores else None


class TrialMetrics:
    """The live metrics of one trial. Create it inside the trial (a Ray worker), then call
    ``record_evaluation`` after each evaluation with the training updates and seconds since the last one."""

    def __init__(self, sweep: str, variant: str, dataset: str, seeds: Iterable[int], refresh_s: float = 1.0):
        from ray.util.metrics import Counter, Gauge

        self.tags = {"sweep": str(sweep), "variant": str(variant), "dataset": str(dataset),
                     "seed_group": seed_group_tag(seeds)}
        self.updates_per_second = Gauge("synthrl_updates_per_second", tag_keys=TAG_KEYS,
                                        description="Fine-tuning updates per second of training time.")
        self.normalized_score = Gauge("synthrl_normalized_score", tag_keys=TAG_KEYS,
                                      description="Latest normalised score, mean over the trial's seeds.")
        self.evaluations = Counter("synthrl_evaluations", tag_keys=TAG_KEYS,
                                   description="Evaluations done.")
        self.updates = Counter("synthrl_updates", tag_keys=TAG_KEYS, description="Fine-tuning updates done.")
        for metric in (self.updates_per_second, self.normalized_score, self.evaluations, self.updates):
            metric.set_default_tags(self.tags)
        self.latest: dict[str, float] = {}   # gauge name -> last value, re-set by the refresher
        self._gauges = {"updates_per_second": self.updates_per_second, "normalized_score": self.normalized_score}
        self._stop = threading.Event()
        self._refresher = threading.Thread(target=self._refresh, args=(refresh_s,), daemon=True,
                                           name="synthrl-metrics")
        self._refresher.start()

    def _refresh(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            for name, value in list(self.latest.items()):
                self._gauges[name].set(value)

    def close(self) -> None:
        """Stop re-publishing (the gauges then age out of the agent within seconds)."""
        self._stop.set()

    def record_evaluation(self, rows: list[dict[str, Any]], updates: int, train_seconds: float) -> dict[str, float]:
        """Publish one evaluation; returns what was published (also handy for ``tune.report``)."""
        published: dict[str, float] = {}
        if updates > 0:
            self.updates.inc(updates)
            if train_seconds > 0:
                published["updates_per_second"] = updates / train_seconds
        score = mean_score(rows)
        if score is not None:
            published["normalized_score"] = score
        for name, value in published.items():
            self._gauges[name].set(value)
        self.latest.update(published)
        self.evaluations.inc()
        return published
