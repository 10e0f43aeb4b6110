"""Variants against a baseline, with confidence intervals (``synthrl tables --stats`` / ``--aggregate``).

``attach_stats`` puts beside each variant's cell its difference of means from the baseline's, with a
bootstrap 95 % CI over seeds and Welch's t-test p-value, marked ``*`` when the CI excludes 0; on the
average row, the difference of the average rows with its stratified CI and the probability of
improvement P(variant > baseline). ``aggregate_grid`` is rliable's aggregate table: IQM, mean, median
and optimality gap over every (dataset, seed) score of a variant, and P(variant > baseline), each with
its stratified bootstrap CI. Definitions in stats.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from analysis import stats as S
from analysis.paper import AVERAGE
from analysis.tables import Table
from synthrl.errors import UserError


def stats_baseline(table: Table, baseline: str | None) -> str:
    """The variant the others are compared with: ``baseline`` (--baseline) or the first column."""
    columns = [v for v in table.variants if v not in table.no_bold]
    chosen = baseline or table.baseline or columns[0]
    if chosen not in columns:
        raise UserError(f"--baseline {chosen}: not a column of the table ({', '.join(columns)})")
    return chosen


def attach_stats(table: Table, baseline: str | None = None, seed: int = S.DEFAULT_SEED) -> Table:
    base = stats_baseline(table, baseline)
    per_seed = table.per_seed
    base_scores = S.seed_scores(per_seed, base, table.datasets)
    for variant in table.variants:
        if variant == base or variant in table.no_bold:
            continue
        scores = S.seed_scores(per_seed, variant, table.datasets)
        for dataset, x, y in zip(table.datasets, scores, base_scores):
            if len(x) and len(y):
                d = S.dataset_difference(x, y, seed)
                table.stats[(dataset, variant)] = {"diff": d.diff, "p_value": d.p_value, "significant": d.significant}
        diff = S.mean_difference(scores, base_scores, seed)
        if diff.value == diff.value:
            table.stats[(AVERAGE, variant)] = {
                "diff": diff, "p_value": math.nan, "significant": diff.excludes(0.0),
                "improvement": S.probability_of_improvement(scores, base_scores, seed)}
    table.stats_baseline = base
    n_seeds = per_seed.groupby(["variant", "dataset"]).size()
    if len(n_seeds) and n_seeds.min() < 2:
        table.notes.append("Δ without an interval where a cell has fewer than 2 seeds")
    return table


@dataclass
class Grid:
    """A plain table of strings (header, rows) with a title and notes: what render_grid writes."""
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)
    values: list[dict] = field(default_factory=list)  # the numbers behind the rows, for --format csv


def fmt_estimate(e: S.Estimate, digits: int = 1, sign: bool = False) -> str:
    if e.value != e.value:
        return "—"
    f = (lambda x: f"{x:+.{digits}f}".replace("-", "−")) if sign else (lambda x: f"{x:.{digits}f}")
    if e.low != e.low:
        return f(e.value)
    return f"{f(e.value)} [{f(e.low)}, {f(e.high)}]"


def aggregate_grid(table: Table, baseline: str | None = None, seed: int = S.DEFAULT_SEED) -> Grid:
    """Per variant: IQM, mean, median, optimality gap (95 % CIs), and P(variant > baseline)."""
    if table.measure not in ("final", "best"):
        raise UserError(f"--aggregate: for normalised scores (--measure final or best), not {table.measure}")
    base = stats_baseline(table, baseline)
    base_scores = S.seed_scores(table.per_seed, base, table.datasets)
    header = ["Variant", *S.AGGREGATE_METRICS, f"P(X > {base})", "runs"]
    grid = Grid(f"Aggregate over datasets × seeds ({table.measure} score), 95 % stratified bootstrap CIs",
                header, [])
    for variant in table.variants:
        scores = S.seed_scores(table.per_seed, variant, table.datasets)
        metrics = S.aggregate(scores, seed)
        improvement = (S.probability_of_improvement(scores, base_scores, seed) if variant != base
                       else S.Estimate(math.nan, math.nan, math.nan))
        runs = sum(len(s) for s in scores)
        grid.rows.append([variant, *(fmt_estimate(metrics[m]) for m in S.AGGREGATE_METRICS),
                          fmt_estimate(improvement, 2), str(runs)])
        value = {"variant": variant, "runs": runs}
        for name, e in [*metrics.items(), ("p_improvement", improvement)]:
            key = name.replace(" ", "_").lower()
            value.update({key: e.value, f"{key}_low": e.low, f"{key}_high": e.high})
        grid.values.append(value)
    grid.notes.append("IQM: mean of the middle 50 % of runs; optimality gap: 100 − mean(min(score, 100)); "
                      "P(X > Y): probability that a run of X beats a run of Y on the same dataset, averaged over "
                      "datasets (0.5: no difference); seeds resampled within each dataset "
                      f"({S.RESAMPLES} resamples, seed {seed})")
    missing = [v for v in table.variants if not any(len(s) for s in S.seed_scores(table.per_seed, v, table.datasets))]
    if missing:
        grid.notes.append(f"no runs for {', '.join(missing)}")
    return grid
