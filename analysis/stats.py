"""Statistics over seeds and datasets: rliable's aggregate metrics, probability of improvement,
performance profiles, and per-dataset differences of means (no Ray).

The definitions are those of rliable (Agarwal et al., NeurIPS 2021,
https://github.com/google-research/rliable): scores form a (runs × tasks) grid, here seeds × datasets
of per-seed normalised scores (one number per seed: the table's measure, e.g. ``final``), and every
confidence interval is a 95 % percentile interval of a *stratified* bootstrap: seeds are resampled
within each dataset, datasets are never resampled.

rliable itself is not a dependency: its last release (1.2.0) needs ``arch<8``, whose 7.x releases fail
to import beside pandas 3 (``deprecate_kwarg()`` TypeError in arch.univariate) and whose 8.x rejects
the ``random_state=None`` rliable passes. So the bootstrap is ``scipy.stats.bootstrap`` with every
dataset a separate sample (which is what stratified means), percentile method, and the metrics
below follow rliable's code line by line:

* IQM: the mean of the middle 50 % of all runs' scores (``scipy.stats.trim_mean(·, 0.25)``).
* mean, median: over all runs' scores.
* optimality gap: ``γ − mean(min(score, γ))``, γ = 100 (a D4RL normalised score of 100 is expert).
* P(X > Y): per dataset, P(x > y) + ½ P(x = y) over all pairs of X's and Y's seeds (the Mann-Whitney
  U statistic over m·n), averaged over datasets.
* performance profile: the fraction of runs whose score exceeds τ, for each τ.

Every function takes ``seed`` (default fixed): the same inputs and seed give the same intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000
DEFAULT_SEED = 0
OPTIMALITY_GAMMA = 100.0
AGGREGATE_METRICS = ("IQM", "mean", "median", "optimality gap")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95 % bootstrap interval (NaN bounds when it cannot be bootstrapped)."""
    value: float
    low: float
    high: float

    def excludes(self, no_effect: float) -> bool:
        return bool(self.low > no_effect or self.high < no_effect)


# -- the metrics (vectorised: the last axis is the runs, leading axes are bootstrap resamples) ------

def iqm(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.trim_mean(scores, 0.25, axis=axis)


def optimality_gap(scores: np.ndarray, axis: int = -1, gamma: float = OPTIMALITY_GAMMA) -> np.ndarray:
    return gamma - np.mean(np.minimum(scores, gamma), axis=axis)


AGGREGATES = {"IQM": iqm, "mean": np.mean, "median": np.median, "optimality gap": optimality_gap}


def _pairwise_improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(x > y) + ½ P(x = y) over all pairs of the last axes (one dataset)."""
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    equal = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return greater + 0.5 * equal


# -- the bootstrap ------------------------------------------------------------------------------------

def _bootstrap(samples: list[np.ndarray], statistic, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Percentile 95 % interval of ``statistic(*samples)`` resampling each sample on its own (stratified)."""
    result = stats.bootstrap(samples, statistic, vectorized=True, paired=False, n_resamples=RESAMPLES,
                             confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(seed))
    return np.asarray(result.confidence_interval.low, float), np.asarray(result.confidence_interval.high, float)


def _usable(groups: list[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(g, float) for g in groups if len(g)]


def _can_bootstrap(groups: list[np.ndarray]) -> bool:
    return bool(groups) and all(len(g) >= 2 for g in groups)


def aggregate(scores_by_dataset: list[np.ndarray], seed: int = DEFAULT_SEED) -> dict[str, Estimate]:
    """IQM, mean, median and optimality gap over all (seed, dataset) scores, each with its stratified CI.

    ``scores_by_dataset``: one array of per-seed scores per dataset (datasets may have different seed counts).
    """
    groups = _usable(scores_by_dataset)
    if not groups:
        return {name: Estimate(np.nan, np.nan, np.nan) for name in AGGREGATE_METRICS}
    pooled = np.concatenate(groups)
    points = [float(AGGREGATES[name](pooled)) for name in AGGREGATE_METRICS]
    if not _can_bootstrap(groups):
        return {name: Estimate(p, np.nan, np.nan) for name, p in zip(AGGREGATE_METRICS, points)}

    def statistic(*resampled, axis=-1):
        runs = np.concatenate(resampled, axis=-1)
        return np.stack([AGGREGATES[name](runs, axis=-1) for name in AGGREGATE_METRICS])

    low, high = _bootstrap(groups, statistic, seed)
    return {name: Estimate(p, float(lo), float(hi)) for name, p, lo, hi in zip(AGGREGATE_METRICS, points, low, high)}


def probability_of_improvement(x_by_dataset: list[np.ndarray], y_by_dataset: list[np.ndarray],
                               seed: int = DEFAULT_SEED) -> Estimate:
    """P(X > Y) averaged over the datasets both have, with its stratified CI (X's and Y's seeds resampled
    within each dataset). 0.5 is no effect."""
    pairs = [(np.asarray(x, float), np.asarray(y, float)) for x, y in zip(x_by_dataset, y_by_dataset)
             if len(x) and len(y)]
    if not pairs:
        return Estimate(np.nan, np.nan, np.nan)
    point = float(np.mean([_pairwise_improvement(x, y) for x, y in pairs]))
    samples = [s for pair in pairs for s in pair]
    if not _can_bootstrap(samples):
        return Estimate(point, np.nan, np.nan)

    def statistic(*resampled, axis=-1):
        per_dataset = [_pairwise_improvement(resampled[2 * i], resampled[2 * i + 1]) for i in range(len(pairs))]
        return np.mean(per_dataset, axis=0)

    low, high = _bootstrap(samples, statistic, seed)
    return Estimate(point, float(low), float(high))


def mean_difference(x_by_dataset: list[np.ndarray], y_by_dataset: list[np.ndarray],
                    seed: int = DEFAULT_SEED) -> Estimate:
    """The average over datasets of (mean of X's seeds − mean of Y's seeds): the difference of the tables'
    average rows, with its stratified CI. 0 is no effect."""
    pairs = [(np.asarray(x, float), np.asarray(y, float)) for x, y in zip(x_by_dataset, y_by_dataset)
             if len(x) and len(y)]
    if not pairs:
        return Estimate(np.nan, np.nan, np.nan)
    point = float(np.mean([x.mean() - y.mean() for x, y in pairs]))
    samples = [s for pair in pairs for s in pair]
    if not _can_bootstrap(samples):
        return Estimate(point, np.nan, np.nan)

    def statistic(*resampled, axis=-1):
        diffs = [resampled[2 * i].mean(axis=-1) - resampled[2 * i + 1].mean(axis=-1) for i in range(len(pairs))]
        return np.mean(diffs, axis=0)

    low, high = _bootstrap(samples, statistic, seed)
    return Estimate(point, float(low), float(high))


@dataclass(frozen=True)
class Difference:
    """One dataset: mean(X) − mean(Y) over seeds, its bootstrap CI, and Welch's t-test p-value."""
    diff: Estimate
    p_value: float

    @property
    def significant(self) -> bool:
        """The CI excludes 0."""
        return self.diff.excludes(0.0)


def dataset_difference(x: np.ndarray, y: np.ndarray, seed: int = DEFAULT_SEED) -> Difference:
    """mean(x) − mean(y) with a bootstrap CI over seeds (each variant's seeds resampled on their own) and
    Welch's unequal-variance t-test p-value (NaN with fewer than 2 seeds either side)."""
    estimate = mean_difference([x], [y], seed)
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or len(y) < 2:
        return Difference(estimate, np.nan)
    if np.ptp(x) == 0 and np.ptp(y) == 0:  # no spread: the t statistic is undefined, the difference exact
        return Difference(estimate, 1.0 if x[0] == y[0] else 0.0)
    return Difference(estimate, float(stats.ttest_ind(x, y, equal_var=False).pvalue))


def performance_profile(scores_by_dataset: list[np.ndarray], taus: np.ndarray, seed: int = DEFAULT_SEED
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fraction of runs with a score above each τ, and its stratified CI: (fraction, low, high)."""
    groups = _usable(scores_by_dataset)
    taus = np.asarray(taus, float)
    if not groups:
        nan = np.full(len(taus), np.nan)
        return nan, nan, nan

    def statistic(*resampled, axis=-1):
        runs = np.concatenate(resampled, axis=-1)
        return np.moveaxis((runs[..., None, :] > taus[:, None]).mean(axis=-1), -1, 0)  # τ first, resamples last

    point = statistic(*groups)
    if not _can_bootstrap(groups):
        nan = np.full(len(taus), np.nan)
        return point, nan, nan
    low, high = _bootstrap(groups, statistic, seed)
    return point, low, high


def seed_scores(per_seed, variant: str, datasets: list[str]) -> list[np.ndarray]:
    """One array of per-seed values per dataset (in ``datasets``' order) from a measures.per_seed frame
    (columns variant, dataset, seed, value); NaN values (e.g. updates-to-90 never reached) are left out."""
    rows = per_seed[per_seed["variant"] == variant]
    by_dataset = {d: g["value"].to_numpy(float) for d, g in rows.groupby("dataset", sort=False)}
    return [v[~np.isnan(v)] for v in (by_dataset.get(d, np.empty(0)) for d in datasets)]
