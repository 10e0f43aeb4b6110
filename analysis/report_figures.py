"""The report page's statistical figures as PNG bytes (matplotlib, Agg): the aggregate metrics with their
95 % CIs per variant (rliable's interval-estimate plot), and the performance profile with its CI band.

The numbers are those of ``compare.aggregate_grid`` (its ``values``) and ``stats.performance_profile``:
the figures show what the aggregate table prints, never a second computation of it.
"""

from __future__ import annotations

import numpy as np

from analysis import stats as S
from analysis.curves import DPI, figure_png  # first: it picks the Agg backend

import matplotlib.pyplot as plt  # noqa: E402  (isort: after the backend is chosen)

METRIC_KEYS = {name: name.replace(" ", "_").lower() for name in S.AGGREGATE_METRICS}


def aggregate_png(values: list[dict], title: str) -> bytes:
    """One panel per metric (IQM, mean, median, optimality gap): each variant's point and 95 % CI."""
    variants = [v["variant"] for v in values]
    height = 1.2 + 0.38 * len(variants)
    fig, axes = plt.subplots(1, len(S.AGGREGATE_METRICS), figsize=(12.8, height), dpi=DPI, sharey=True)
    y = np.arange(len(variants))[::-1]  # the first variant on top, as in the table
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, name in zip(np.atleast_1d(axes), S.AGGREGATE_METRICS):
        key = METRIC_KEYS[name]
        for i, row in enumerate(values):
            value, low, high = row[key], row[f"{key}_low"], row[f"{key}_high"]
            color = colors[i % len(colors)]
            if low == low and high == high:
                ax.plot([low, high], [y[i], y[i]], color=color, linewidth=6, alpha=0.35, solid_capstyle="butt")
            if value == value:
                ax.plot([value], [y[i]], "|", color=color, markersize=14, markeredgewidth=2)
        ax.set_title(name + (" (lower is better)" if name == "optimality gap" else ""), fontsize="medium")
        ax.set_xlabel("normalised score")
        ax.grid(axis="x", alpha=0.3)
    first = np.atleast_1d(axes)[0]
    first.set_yticks(y)
    first.set_yticklabels(variants)
    first.set_ylim(-0.6, len(variants) - 0.4)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return figure_png(fig)


def profile_png(scores: dict[str, list[np.ndarray]], seed: int, title: str) -> bytes:
    """Fraction of runs with a score above τ, per variant, shaded by its stratified 95 % CI."""
    pooled = [s for groups in scores.values() for g in groups for s in g]
    # τ over the scores' own range (a profile of scores near 3 squeezed into 0-100 would show nothing)
    low, high = (float(np.nanmin(pooled)), float(np.nanmax(pooled))) if pooled else (0.0, 100.0)
    pad = max(1.0, 0.05 * (high - low))
    taus = np.linspace(min(0.0, low - pad), high + pad, 61)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=DPI)
    for variant, groups in scores.items():
        point, low, high = S.performance_profile(groups, taus, seed)
        if np.isnan(point).all():
            continue
        line, = ax.plot(taus, point, label=variant, linewidth=1.5)
        if not np.isnan(low).all():
            ax.fill_between(taus, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("normalised score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return figure_png(fig)
