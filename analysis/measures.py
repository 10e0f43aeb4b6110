"""The paper's measures, per seed, then summarised over seeds (spec/tables.md).

Every measure first reduces a seed's evaluations to one number (``per_seed_*``: a frame with
columns variant, dataset, seed, value), then ``summarize`` turns seeds into a cell:
mean ± population std (ddof = 0) over seeds, and ``average_row`` turns cells into the average
row: mean of the cell means ± mean of the cell stds.

* final: the mean of a seed's last 4 evaluations (DT 85k-100k, CQL 985k-1M).
* best: a seed's highest evaluation score (each evaluation is already the mean over its
  episodes), then mean ± std over seeds. The spec's "maximum over evaluations of the
  per-evaluation mean score" reads both ways; the paper's appendix settles it: tables 18-25 carry a
  ± and the text speaks of "the standard deviation of the acquired best scores" — a spread over
  seeds of each seed's best, which a max over the seed-mean curve would not have.
  ``best_of_seed_mean`` is the other reading (max of the seed-mean curve; ± = the seeds' std at
  that evaluation), available for comparison.
* updates-to-90: the first evaluation update at which a seed's score reaches 90 % of the
  baseline's final score on that dataset (the baseline cell's mean). ``update`` counts
  fine-tuning updates only, so pre-training is not counted. A seed that never reaches it has NaN
  and is left out of the cell's mean; the table says how many seeds did not reach it.
* compute: a seed's wall-clock, fine-tuning (the last ``wall_clock_s``) and pre-training
  (``pretrain_wall_clock_s``) apart, as the paper's tables 12 and 14 give them. A batched ensemble
  trains its seeds together, so each seed carries the wall-clock of its whole run group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MEASURES = ("final", "best", "updates-to-90", "compute")
HIGHER_IS_BETTER = {"final": True, "best": True, "updates-to-90": False, "compute": False}
LAST_EVALUATIONS = 4
TARGET_FRACTION = 0.9
KEY = ["variant", "dataset", "seed"]


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEY + ["update"], kind="stable")


def per_seed_final(frame: pd.DataFrame, last: int = LAST_EVALUATIONS) -> pd.DataFrame:
    tail = _sorted(frame).groupby(KEY, sort=False).tail(last)
    out = tail.groupby(KEY, sort=False)["normalized_score"].mean()
    return out.rename("value").reset_index()


def per_seed_best(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.groupby(KEY, sort=False)["normalized_score"].max()
    return out.rename("value").reset_index()


def best_of_seed_mean(frame: pd.DataFrame) -> pd.DataFrame:
    """The other reading of 'best': max over evaluations of the seed-mean curve, ± the seeds' std there."""
    rows = []
    for (variant, dataset), group in frame.groupby(["variant", "dataset"], sort=False):
        at = group.groupby("update")["normalized_score"]
        means = at.mean()
        best_update = means.idxmax()
        scores = group.loc[group["update"] == best_update, "normalized_score"].to_numpy(float)
        rows.append({"variant": variant, "dataset": dataset, "mean": float(scores.mean()),
                     "std": float(scores.std(ddof=0)), "n_seeds": int(len(scores)), "update": int(best_update)})
    return pd.DataFrame(rows, columns=["variant", "dataset", "mean", "std", "n_seeds", "update"])


def per_seed_updates_to(frame: pd.DataFrame, targets: dict[str, float]) -> pd.DataFrame:
    """First update at which a seed's score reaches ``targets[dataset]`` (NaN: never, or no target)."""
    target = frame["dataset"].map(targets).astype(float)
    reached = frame["update"].where(frame["normalized_score"] >= target)  # NaN target compares False
    first = reached.groupby([frame[k] for k in KEY], sort=False).min()
    return first.astype(float).rename("value").reset_index()


def per_seed_compute(frame: pd.DataFrame, part: str = "finetune") -> pd.DataFrame:
    """Wall-clock seconds of a seed's run: ``finetune`` (its last wall_clock_s), ``pretrain`` (the
    pre-training it started from; NaN when unknown) or ``total`` (the two; unknown pre-training as 0)."""
    grouped = frame.groupby(KEY, sort=False)
    finetune = grouped["wall_clock_s"].max()
    pretrain = grouped["pretrain_wall_clock_s"].max()
    value = {"finetune": finetune, "pretrain": pretrain, "total": finetune + pretrain.fillna(0.0)}[part]
    return value.rename("value").reset_index()


def summarize(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Cells: mean ± population std (ddof = 0) over the seeds that have a value; n_seeds counts them,
    n_missing counts the seeds without one (updates-to-90: never reached)."""
    columns = ["variant", "dataset", "mean", "std", "n_seeds", "n_missing"]
    if per_seed.empty:
        return pd.DataFrame(columns=columns)
    grouped = per_seed.groupby(["variant", "dataset"], sort=False)["value"]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=0), "n_seeds": grouped.count(),
                        "n_missing": grouped.size() - grouped.count()}).reset_index()
    out["n_seeds"] = out["n_seeds"].astype(int)
    out["n_missing"] = out["n_missing"].astype(int)
    return out[columns]


def average_row(cells: pd.DataFrame) -> pd.DataFrame:
    """Per variant: mean over datasets of the cell means, ± the mean over datasets of the cell stds."""
    usable = cells.dropna(subset=["mean"])
    grouped = usable.groupby("variant", sort=False)
    return pd.DataFrame({
        "mean": grouped["mean"].mean(),
        "std": grouped["std"].mean(),
        "n_seeds": grouped["n_seeds"].min(),
        "n_datasets": grouped.size(),
    }).reset_index()


def bold_mask(values: list[float], higher_is_better: bool = True, within: float = 0.01) -> list[bool]:
    """The best value of a row and every value within 1 % of it (NaN is never bold)."""
    arr = np.asarray(values, float)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return [False] * len(arr)
    best = finite.max() if higher_is_better else finite.min()
    tolerance = within * abs(best)
    with np.errstate(invalid="ignore"):
        ok = arr >= best - tolerance if higher_is_better else arr <= best + tolerance
    return [bool(b) for b in ok & np.isfinite(arr)]


def final_targets(frame: pd.DataFrame, baseline: str, fraction: float = TARGET_FRACTION) -> dict[str, float]:
    """Per dataset: ``fraction`` of the baseline variant's final score (its cell mean)."""
    cells = summarize(per_seed_final(frame[frame["variant"] == baseline]))
    return {row.dataset: fraction * row.mean for row in cells.itertuples() if row.mean == row.mean}


def per_seed(frame: pd.DataFrame, measure: str, baseline: str | None = None) -> pd.DataFrame:
    if measure == "final":
        return per_seed_final(frame)
    if measure == "best":
        return per_seed_best(frame)
    if measure == "updates-to-90":
        return per_seed_updates_to(frame, final_targets(frame, baseline))
    if measure == "compute":
        return per_seed_compute(frame)
    raise ValueError(f"unknown measure {measure!r}")
