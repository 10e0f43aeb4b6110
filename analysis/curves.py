"""Learning curves as PNG (matplotlib, Agg): the paper's figures 1-6, 8-11 and 13-17.

* ``score_average.png`` / ``score_<dataset>.png``: mean normalised score against updates, shaded ±
  std over seeds; pre-trained variants are shifted right by their pre-training updates (figures
  1-6, 8-9, 13-15). The average over datasets uses the same rule as the tables: mean of the
  per-dataset means, shaded by the mean of the per-dataset stds.
* ``loss_average.png`` / ``loss_<dataset>.png``: the training loss the same way (DT: action MSE;
  CQL: Q loss + conservative loss), when the records carry one.
* ``ablation_updates.png`` (figures 10, 16): final score averaged over datasets against the
  fine-tuning budget, one line per base variant, when the records hold runs of several budgets
  (an ablation sweep names them "<base> @200k"); otherwise the averaged score curves without the
  pre-training shift.
* ``ablation_ratio.png`` (figures 11, 17): final score averaged over datasets against the
  fine-tuning data ratio (``finetune_ratio``; variants named "<base> r=0.1"), when the records hold
  more than one ratio for some base variant.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")  # files only: no display on a cluster node
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from analysis import measures as M  # noqa: E402
from analysis.records import Records  # noqa: E402
from synthrl.errors import UserError  # noqa: E402
from synthrl.utils.io import atomic_write_bytes  # noqa: E402

FIGSIZE = (6.4, 4.0)  # inches
DPI = 100             # -> 640 x 400 pixels


def _full_data(frame: pd.DataFrame) -> pd.DataFrame:
    keep = frame.groupby("variant")["finetune_ratio"].transform("max")
    return frame[frame["finetune_ratio"] == keep]


def curve_stats(frame: pd.DataFrame, value: str = "normalized_score", offset: bool = True) -> pd.DataFrame:
    """Per (variant, dataset, x): mean and population std over seeds; x = update (+ pre-training updates)."""
    data = frame.dropna(subset=[value]).copy()
    data["x"] = data["update"] + (data["pretrain_updates"] if offset else 0)
    grouped = data.groupby(["variant", "dataset", "x"], sort=False)[value]
    stats = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=0), "n": grouped.size()}).reset_index()
    return stats.sort_values(["variant", "dataset", "x"], kind="stable")


def average_over_datasets(stats: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, x) present on every dataset of that variant: mean of means, mean of stds."""
    rows = []
    for variant, group in stats.groupby("variant", sort=False):
        n_datasets = group["dataset"].nunique()
        per_x = group.groupby("x")
        agg = per_x.agg(mean=("mean", "mean"), std=("std", "mean"), k=("dataset", "nunique")).reset_index()
        agg = agg[agg["k"] == n_datasets]
        agg.insert(0, "variant", variant)
        rows.append(agg[["variant", "x", "mean", "std"]])
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["variant", "x", "mean", "std"])


@dataclass(frozen=True)
class Figure:
    """One figure as PNG bytes and the file name `synthrl curves` writes it under."""
    name: str
    png: bytes


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (closed afterwards, also on failure: a long-lived process keeps none open)."""
    buffer = io.BytesIO()
    try:
        # no bbox_inches="tight": every PNG has the same pixel size
        fig.savefig(buffer, dpi=DPI, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()


def _plot(curves: pd.DataFrame, variants: list[str], name: str, title: str, xlabel: str, ylabel: str,
          markers: bool = False) -> Figure:
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    for variant in variants:
        c = curves[curves["variant"] == variant]
        if c.empty:
            continue
        line, = ax.plot(c["x"], c["mean"], label=variant, linewidth=1.5, marker="o" if markers else None)
        ax.fill_between(c["x"], c["mean"] - c["std"], c["mean"] + c["std"], color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if len(variants) > 0:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return Figure(name, figure_png(fig))


# an ablation sweep names its variants "<base> @200k" (fine-tuning budget) or "<base> r=0.1" (data ratio)
_AXIS_SUFFIX = re.compile(r"\s*(?:@\s*[\d.]+\s*[kKmM]?|\br\s*=\s*[\d.]+)\s*$")


def base_variant(name: str) -> str:
    """'S=A=10 @200k' -> 'S=A=10'; 'CQL r=0.1' -> 'CQL'; the budget and the ratio come from the records."""
    while True:
        stripped = _AXIS_SUFFIX.sub("", name)
        if stripped == name or not stripped:
            return name
        name = stripped


def ablation_points(frame: pd.DataFrame) -> pd.DataFrame:
    """Per variant: base name, fine-tuning budget (its last update), data ratio, and the final score
    averaged over datasets (mean of cell means ± mean of cell stds, as in the tables)."""
    cells = M.summarize(M.per_seed_final(frame))
    score = cells.groupby("variant", sort=False).agg(mean=("mean", "mean"), std=("std", "mean"))
    info = frame.groupby("variant", sort=False).agg(budget=("update", "max"), ratio=("finetune_ratio", "max"))
    points = info.join(score).reset_index()
    points["base"] = points["variant"].map(base_variant)
    return points


def _ablations(frame: pd.DataFrame, variants: list[str], partial: str) -> list[Figure]:
    """Figures 10/16 (score against the fine-tuning budget) and 11/17 (against the data ratio)."""
    points = ablation_points(frame)
    bases = list(dict.fromkeys(points["base"]))
    written = []
    full_ratio = points[points["ratio"] == points.groupby("base")["ratio"].transform("max")]
    if (full_ratio.groupby("base")["budget"].nunique() > 1).any():
        by_budget = full_ratio.drop(columns="variant").rename(columns={"base": "variant", "budget": "x"})
        written.append(_plot(by_budget.sort_values(["variant", "x"]), bases, "ablation_updates.png",
                             f"final score against fine-tuning updates{partial}", "fine-tuning updates",
                             "normalised score (final)", markers=True))
    else:  # one budget per variant: the learning curves without the pre-training shift
        unshifted = average_over_datasets(curve_stats(_full_data(frame), "normalized_score", offset=False))
        written.append(_plot(unshifted, variants, "ablation_updates.png",
                             f"score against fine-tuning updates{partial}", "fine-tuning updates", "normalised score"))
    full_budget = points[points["budget"] == points.groupby("base")["budget"].transform("max")]
    if (full_budget.groupby("base")["ratio"].nunique() > 1).any():
        by_ratio = full_budget.drop(columns="variant").rename(columns={"base": "variant", "ratio": "x"})
        written.append(_plot(by_ratio.sort_values(["variant", "x"]), bases, "ablation_ratio.png",
                             f"final score against the fine-tuning data ratio{partial}", "fine-tuning data ratio",
                             "normalised score (final)", markers=True))
    return written


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def curve_figures(records: Records, variants: list[str] | None = None, per_dataset: bool = True) -> list[Figure]:
    """Every figure the records allow, in memory (``per_dataset``: also one score and loss figure per dataset)."""
    found = records.variants
    variants = list(variants) if variants else found
    unknown = [v for v in variants if v not in found]
    if unknown:
        raise UserError(f"--variants: {', '.join(unknown)} not in the records (found: {', '.join(found) or 'none'})")
    frame = records.frame[records.frame["variant"].isin(variants)]
    full = _full_data(frame)
    datasets = records.select(variants).datasets
    partial = " (partial)" if not frame["done"].all() else ""
    figures: list[Figure] = []
    xlabel = "updates (pre-training + fine-tuning)"
    for value, stem, ylabel in (("normalized_score", "score", "normalised score"), ("train_loss", "loss", "training loss")):
        if full[value].isna().all():
            continue
        stats = curve_stats(full, value, offset=True)
        figures.append(_plot(average_over_datasets(stats), variants, f"{stem}_average.png",
                             f"{ylabel}, average over {len(datasets)} datasets{partial}", xlabel, ylabel))
        for dataset in datasets if per_dataset else []:
            figures.append(_plot(stats[stats["dataset"] == dataset], variants, f"{stem}_{_slug(dataset)}.png",
                                 f"{dataset}{partial}", xlabel, ylabel))
    figures += _ablations(frame, variants, partial)
    return figures


def _updates_text(x: float, _position=None) -> str:
    """Tick labels in updates: 250k, 1.5M (no '1e6' offset text to collide with the next row's titles)."""
    if abs(x) >= 1e6:
        return f"{x / 1e6:g}M"
    return f"{x / 1e3:g}k" if abs(x) >= 1e3 else f"{x:g}"


_updates_axis = matplotlib.ticker.FuncFormatter(_updates_text)


def dataset_grid(records: Records, value: str = "normalized_score", columns: int = 4) -> Figure | None:
    """Every dataset's curves as small multiples in one figure (the report page's per-dataset view: one
    figure instead of one per dataset); None when the records carry no ``value``."""
    frame = _full_data(records.frame)
    if frame[value].isna().all():
        return None
    stats = curve_stats(frame, value, offset=True)
    datasets, variants = records.datasets, records.variants
    rows = -(-len(datasets) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(12.8, 2.6 * rows + 0.7), dpi=DPI, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, dataset in zip(axes.flat, datasets):
        here = stats[stats["dataset"] == dataset]
        for i, variant in enumerate(variants):
            c = here[here["variant"] == variant]
            if c.empty:
                continue
            color = colors[i % len(colors)]
            ax.plot(c["x"], c["mean"], color=color, linewidth=1.2, label=variant)
            ax.fill_between(c["x"], c["mean"] - c["std"], c["mean"] + c["std"], color=color, alpha=0.18, linewidth=0)
        ax.set_title(dataset, fontsize="small")
        ax.tick_params(labelsize="x-small")
        ax.xaxis.set_major_formatter(_updates_axis)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=colors[i % len(colors)], linewidth=2) for i in range(len(variants))]
    fig.legend(handles, variants, loc="upper center", ncol=min(len(variants), 8), fontsize="small", frameon=False)
    what = "normalised score" if value == "normalized_score" else "training loss"
    fig.supxlabel("updates (pre-training + fine-tuning)", fontsize="small")
    fig.supylabel(what, fontsize="small")
    # fixed margins, not tight_layout: a dozen axes would cost it a second
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.07 + 0.1 / rows, top=1 - 0.45 / (2.6 * rows + 0.7),
                        hspace=0.45, wspace=0.22)
    return Figure(f"{'score' if value == 'normalized_score' else 'loss'}_datasets.png", figure_png(fig))


def plot_curves(records: Records, out_dir: str | Path, variants: list[str] | None = None) -> list[Path]:
    """Write every figure the records allow into ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a directory")
    figures = curve_figures(records, variants)
    out.mkdir(parents=True, exist_ok=True)
    # temp file + rename: never half-written
    return [atomic_write_bytes(out / figure.name, figure.png) for figure in figures]
