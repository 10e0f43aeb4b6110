"""The paper's tables from evaluation records: build, compare with the paper, render.

``build_table`` turns records into cells (mean ± std over seeds, see measures.py), the average
row, the bold marks, and the notes on missing or partial results; ``render`` (render.py) writes it
as Markdown, LaTeX (paper style, booktabs), long CSV or HTML. The paper's numbers and the sweep
files' columns are read in paper.py; all three modules' names are available from here.

With a paper table attached (``attach_paper``), each variant gets the paper's cell beside it, the
difference (reproduction − paper) and whether that difference lies within the seeds' spread:
|difference| ≤ the reproduction's std over seeds (for the average row: ≤ its mean of per-dataset stds).

Partial results are never averaged silently: a cell built from fewer seeds or evaluations than
the run's params.json (or, for a CSV, the most complete dataset of the variant) promises, or from
runs that have not written DONE, is marked † and the table lists what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from analysis import measures as M
from analysis.paper import (  # noqa: F401  (re-exported: analysis.tables is the one import for callers)
    AVERAGE, PAPER_NUMBERS, PRETRAIN_COLUMN, SWEEPS_DIR, TABLE_MEASURE, _norm, match_paper_columns, paper_number_for,
    paper_table, paper_table_for, paper_tables, sweep_paper_columns, sweep_table_number, sweep_variants)
from analysis.records import PAPER_DATASETS, Records
from analysis.render import (  # noqa: F401
    FORMATS, PARTIAL_MARK, RENDERERS, ROW_HEADER, render, render_csv, render_html, render_latex, render_markdown,
    table_frame, tex)
from synthrl.errors import UserError

TITLE = {
    "final": "Final score: mean of the last 4 evaluations, mean ± std over seeds",
    "best": "Best score: each seed's best evaluation, mean ± std over seeds",
    "updates-to-90": "Fine-tuning updates until the score first reaches 90 % of the baseline's final score",
    "compute": "Wall-clock per run: fine-tuning, and pre-training apart",
}


# -- the table ------------------------------------------------------------------------------------

@dataclass
class Table:
    measure: str
    variants: list[str]
    datasets: list[str]
    cells: pd.DataFrame        # variant, dataset, mean, std, n_seeds, n_missing, partial
    average: pd.DataFrame      # variant, mean, std, n_seeds, n_datasets, partial
    notes: list[str] = field(default_factory=list)
    title: str = ""
    baseline: str | None = None
    paper_number: int | None = None
    paper: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # (dataset|average, variant)
    no_bold: set[str] = field(default_factory=set)  # columns outside the bold rule (compute's pre-training)
    per_seed: pd.DataFrame | None = None  # variant, dataset, seed, value: what the cells summarise
    stats: dict[tuple[str, str], dict] = field(default_factory=dict)  # (dataset|average, variant): see compare.py
    stats_baseline: str | None = None
    _index: dict | None = field(default=None, repr=False, compare=False)

    @property
    def higher_is_better(self) -> bool:
        return M.HIGHER_IS_BETTER[self.measure]

    @property
    def partial(self) -> bool:
        """Any cell of the grid (average row included) missing or built from partial results."""
        for key in self.datasets + [AVERAGE]:
            for v in self.variants:
                c = self.cell(key, v)
                if c is None or c["partial"]:
                    return True
        return False

    def cell(self, dataset: str, variant: str) -> dict | None:
        """The cell's mean, std, n_seeds, partial (None where there is none); dataset 'average': the average row."""
        if self._index is None:
            self._index = {(row["dataset"], row["variant"]): row for row in self.cells.to_dict("records")}
            self._index.update({(AVERAGE, row["variant"]): row for row in self.average.to_dict("records")})
        return self._index.get((dataset, variant))

    def row_values(self, dataset: str) -> list[float]:
        """The row's cell means (NaN where missing or outside the bold rule)."""
        values = []
        for v in self.variants:
            c = self.cell(dataset, v)
            values.append(c["mean"] if c and v not in self.no_bold else math.nan)
        return values

    def comparison(self, dataset: str, variant: str) -> dict | None:
        """Reproduction beside the paper: paper mean/std, difference, within the seeds' spread."""
        if (dataset, variant) not in self.paper:
            return None
        p_mean, p_std = self.paper[(dataset, variant)]
        c = self.cell(dataset, variant)
        mean = c["mean"] if c else math.nan
        std = c["std"] if c else math.nan
        diff = mean - p_mean
        within = bool(abs(diff) <= std) if diff == diff and std == std else None
        return {"paper_mean": p_mean, "paper_std": p_std, "diff": diff, "within_spread": within}


def coverage(records: Records, variants: list[str], datasets: list[str]) -> tuple[set[tuple[str, str]], list[str]]:
    """Which (variant, dataset) cells are partial, and a line for each thing missing or short."""
    frame, expected = records.frame, records.expected
    partial: set[tuple[str, str]] = set()
    notes: list[str] = []
    groups = {key: g for key, g in frame.groupby(["variant", "dataset"], sort=False)}
    expectations = {key: g for key, g in expected.groupby(["variant", "dataset"], sort=False)}
    nothing, no_expectation = frame.iloc[0:0], expected.iloc[0:0]
    known = set(frame["variant"].unique()) | set(expected["variant"].unique())
    for variant in variants:
        if variant not in known:
            partial |= {(variant, d) for d in datasets}
            notes.append(f"{variant}: no runs in the records")
            continue
        for dataset in datasets:
            group = groups.get((variant, dataset), nothing)
            exp = expectations.get((variant, dataset), no_expectation)
            where = f"{variant} / {dataset}"
            if group.empty:
                partial.add((variant, dataset))
                launched = len(exp) and len(exp.iloc[0]["seeds"])
                notes.append(f"{where}: no evaluations yet" if launched else f"{where}: missing (no runs)")
                continue
            seeds_have = set(group["seed"].astype(int))
            seeds_want = set(exp.iloc[0]["seeds"]) if len(exp) else seeds_have
            lacking = sorted(seeds_want - seeds_have)
            if lacking:
                partial.add((variant, dataset))
                notes.append(f"{where}: seeds {_ranges(lacking)} missing ({len(seeds_have)} of {len(seeds_want)} seeds)")
            want = exp.iloc[0]["evals"] if len(exp) else math.nan
            counts = group.groupby("seed").size()
            if want == want:
                short = counts[counts < want]
                if len(short):
                    partial.add((variant, dataset))
                    have = f"{short.min()}" if short.min() == short.max() else f"{short.min()}-{short.max()}"
                    notes.append(f"{where}: seeds {_ranges(sorted(short.index))} short of evaluations ({have} of {int(want)})")
            if len(exp) and not bool(exp.iloc[0]["done"]) and not lacking and not (want == want and (counts < want).any()):
                partial.add((variant, dataset))
                notes.append(f"{where}: still running (no DONE)")
    return partial, notes


def _ranges(seeds: list[int]) -> str:
    parts, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            parts.append(f"{start}" if start == s else f"{start}-{s}")
            start = None
    return ",".join(parts)


def _one_ratio(records: Records, notes: list[str]) -> Records:
    """Tables use the full dataset; a fine-tune-ratio ablation's other ratios belong to the curves."""
    frame = records.frame
    keep = frame.groupby("variant")["finetune_ratio"].transform("max")
    dropped = frame[frame["finetune_ratio"] != keep]
    if len(dropped):
        notes.append(f"left out {len(dropped)} evaluations with a smaller finetune_ratio "
                     f"({', '.join(sorted(set(dropped['variant'])))}); see `synthrl curves` for the ratio ablation")
        return Records(frame[frame["finetune_ratio"] == keep], records.expected, records.source)
    return records


def build_table(records: Records, variants: list[str] | None = None, measure: str = "final",
                baseline: str | None = None, datasets: list[str] | None = None, strict_variants: bool = True) -> Table:
    if measure not in M.MEASURES:
        raise UserError(f"--measure: expected one of {', '.join(M.MEASURES)}, got {measure!r}")
    notes: list[str] = []
    found = records.variants
    variants = list(variants) if variants else found
    unknown = [v for v in variants if v not in found]
    if unknown and strict_variants:
        raise UserError(f"--variants: {', '.join(unknown)} not in the records (found: {', '.join(found) or 'none'})")
    if len(unknown) == len(variants):
        raise UserError(f"none of the variants {', '.join(variants)} is in the records (found: {', '.join(found) or 'none'})")
    if unknown:
        notes.append(f"the records hold the variants {', '.join(found)}")  # a column still to come, or a misspelling
    records = _one_ratio(records.select(variants), notes)
    frame = records.frame
    datasets = datasets or records.datasets
    if measure == "updates-to-90":
        baseline = baseline or variants[0]
        if baseline not in found:
            raise UserError(f"--baseline {baseline}: not in the records (found: {', '.join(found)})")
    elif measure == "compute" and frame["wall_clock_s"].isna().all():
        raise UserError("--measure compute: the records have no wall_clock_s column")
    partial, cover_notes = coverage(records, variants, datasets)
    unknown_pretrain: set[tuple[str, str]] = set()
    if measure == "compute":
        lacking = frame[(frame["pretrain_updates"] > 0) & frame["pretrain_wall_clock_s"].isna()]
        lacking = lacking[["variant", "dataset"]].drop_duplicates()
        unknown_pretrain = set(zip(lacking["variant"], lacking["dataset"]))
        for variant in lacking["variant"].unique():
            notes.append(f"{variant}: pre-training time not found (its artifact is not in a store next to the results "
                         "or in $SYNTHRL_STORE)")
    per_seed = M.per_seed(frame, measure, baseline)
    cells = M.summarize(per_seed)
    cells = cells[cells["dataset"].isin(datasets)].copy()
    cells["partial"] = [(v, d) in partial for v, d in zip(cells["variant"], cells["dataset"])]
    no_bold: set[str] = set()
    if measure == "compute":
        # the paper gives pre-training apart (tables 12, 14): a column of its own before the variant's
        pre_seed = M.per_seed_compute(frame[frame["pretrain_updates"] > 0], part="pretrain")
        if len(pre_seed):
            pre_cells = M.summarize(pre_seed.assign(variant=pre_seed["variant"] + PRETRAIN_COLUMN))
            pre_cells = pre_cells[pre_cells["dataset"].isin(datasets)].copy()
            pre_cells["partial"] = [(v[:-len(PRETRAIN_COLUMN)], d) in partial | unknown_pretrain
                                    for v, d in zip(pre_cells["variant"], pre_cells["dataset"])]
            cells = pd.concat([cells, pre_cells], ignore_index=True)
            no_bold = set(pre_cells["variant"])
            variants = [c for v in variants for c in ([v + PRETRAIN_COLUMN] if v + PRETRAIN_COLUMN in no_bold else []) + [v]]
    if measure == "final":
        counts = frame.groupby(["variant", "dataset", "seed"]).size()
        few = counts[counts < M.LAST_EVALUATIONS]
        if len(few):
            have = f"{int(few.min())}" if few.min() == few.max() else f"{int(few.min())}-{int(few.max())}"
            notes.append(f"{len(few)} seed run(s) have fewer than {M.LAST_EVALUATIONS} evaluations "
                         f"(final = the mean of the {have} they have)")
    if measure == "updates-to-90":
        for row in cells.itertuples():
            if row.n_missing:
                notes.append(f"{row.variant} / {row.dataset}: {row.n_missing} of {row.n_seeds + row.n_missing} seeds never "
                             f"reached 90 % of {baseline}'s final score (left out of the mean)")
        cells["partial"] |= cells["n_missing"] > 0
    average = M.average_row(cells)
    average["partial"] = [
        bool(cells[cells["variant"] == v]["partial"].any()) or n < len(datasets)
        for v, n in zip(average["variant"], average["n_datasets"])
    ]
    for v, n in zip(average["variant"], average["n_datasets"]):
        if n < len(datasets):
            notes.append(f"{v}: average over {n} of {len(datasets)} datasets")
    title = TITLE[measure] + (f" (baseline {baseline})" if measure == "updates-to-90" else "")
    return Table(measure, variants, datasets, cells.reset_index(drop=True), average, cover_notes + notes, title, baseline,
                 no_bold=no_bold, per_seed=per_seed)


def attach_paper(table: Table, number: int, explicit: dict[str, str] | None = None) -> Table:
    """Put the paper's table ``number`` beside the reproduction (matched by dataset and column)."""
    ref = paper_table(number)
    if ref["measure"] != table.measure:
        raise UserError(f"--paper: the paper's table {number} reports {ref['measure']}, this table {table.measure}")
    # a pre-training column is compared when the paper names it (table 14), never matched by position
    compared = [v for v in table.variants if v not in table.no_bold or v in ref["columns"]]
    mapping, notes = match_paper_columns(compared, ref["columns"], explicit)
    scale = 60.0 if ref["unit"] == "minutes" else 1.0  # compute: the paper gives minutes, we measure seconds
    for variant, col in mapping.items():
        for dataset, values in ref["cells"].items():
            mean, std = values[col]
            table.paper[(dataset, variant)] = (mean * scale, std * scale if std is not None else math.nan)
    absent = [d for d in PAPER_DATASETS if d in ref["cells"] and d not in table.datasets]
    if absent:
        notes.append(f"the paper's table {number} also has {', '.join(absent)} (no records here)")
    shared = [d for d in table.datasets if d in ref["cells"]]
    if absent or len(shared) < len(table.datasets):
        # compare like with like: the paper's average over the datasets both tables have
        for variant, col in mapping.items():
            table.paper.pop((AVERAGE, variant), None)
            if shared:
                means = [ref["cells"][d][col][0] for d in shared]
                stds = [ref["cells"][d][col][1] for d in shared]
                std = sum(stds) / len(stds) if None not in stds else None
                table.paper[(AVERAGE, variant)] = (scale * sum(means) / len(means), scale * std if std is not None else math.nan)
        notes.append(f"paper's average row recomputed over the {len(shared)} dataset(s) both tables have"
                     if shared else "no dataset in common with the paper's table")
    table.paper_number = number
    table.notes += notes
    return table


