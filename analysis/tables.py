"""The paper's tables from evaluation records: build, compare with the paper, render.

``build_table`` turns records into cells (mean ± std over seeds, see measures.py), the average
row, the bold marks, and the notes on missing or partial results; ``render`` writes it as
Markdown, LaTeX (paper style, booktabs), long CSV or HTML. With a paper table attached
(``attach_paper``), each variant gets the paper's cell beside it, the difference (reproduction −
paper) and whether that difference lies within the seeds' spread: |difference| ≤ the
reproduction's std over seeds (for the average row: ≤ its mean of per-dataset stds).

Partial results are never averaged silently: a cell built from fewer seeds or evaluations than
the run's params.json (or, for a CSV, the most complete dataset of the variant) promises, or from
runs that have not written DONE, is marked † and the table lists what is missing.
"""

from __future__ import annotations

import html
import io
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd

from analysis import measures as M
from analysis.records import PAPER_DATASETS, Records
from synthrl.errors import UserError

FORMATS = ("md", "latex", "csv", "html")
PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.json")
SWEEPS_DIR = Path(__file__).resolve().parents[1] / "sweeps"
PARTIAL_MARK = "†"
PRETRAIN_COLUMN = ": pre-training"  # compute tables: "CQL+MDP: pre-training" beside "CQL+MDP" (fine-tuning)
AVERAGE = "average"

# which measure each of the paper's tables reports; 18-25 are the best-score twins of 1-8
TABLE_MEASURE = {**{n: "final" for n in (1, 2, 3, 4, 5, 6, 7, 8, 26, 27, 28, 29)},
                 **{n: "best" for n in range(18, 26)},
                 11: "updates-to-90", 13: "updates-to-90", 12: "compute", 14: "compute"}
ROW_HEADER = {"final": "Average Last Four", "best": "Best Score", "updates-to-90": "Number of Updates",
              "compute": "Computation Time"}
TITLE = {
    "final": "Final score: mean of the last 4 evaluations, mean ± std over seeds",
    "best": "Best score: each seed's best evaluation, mean ± std over seeds",
    "updates-to-90": "Fine-tuning updates until the score first reaches 90 % of the baseline's final score",
    "compute": "Wall-clock per run: fine-tuning, and pre-training apart",
}


# -- the paper's numbers and the sweep files -----------------------------------------------------

@lru_cache(maxsize=1)
def paper_tables() -> dict[str, dict]:
    return json.loads(PAPER_NUMBERS.read_text())["tables"]


def paper_table(number: int) -> dict:
    tables = paper_tables()
    if str(number) not in tables:
        raise UserError(f"the paper's table {number} is not in the reference data (have {', '.join(tables)})")
    return tables[str(number)]


def sweep_table_number(number: int) -> int:
    """Tables 18-25 report the best score of the sweeps of tables 1-8."""
    return number - 17 if 18 <= number <= 25 else number


def sweep_variants(number: int, sweeps_dir: str | Path | None = None) -> tuple[list[str], dict[str, str]]:
    """Column names (in order) from ``sweeps/table<N>.yaml`` and any ``paper:`` column each names."""
    import yaml

    sweeps_dir = Path(sweeps_dir) if sweeps_dir is not None else SWEEPS_DIR
    candidates = [sweeps_dir / f"table{number}.yaml", sweeps_dir / f"table{sweep_table_number(number)}.yaml"]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        if str(number) in paper_tables() and number in (11, 12, 13):
            return list(paper_table(number)["columns"]), {}  # no sweep of their own: the paper's columns
        raise UserError(f"--table {number}: no sweep file {candidates[-1]} (use --variants A,B,... or --sweeps-dir)")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({e})") from None
    items = doc.get("variants") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise UserError(f"{path}: expected a top-level 'variants:' list")
    names, paper_columns = [], {}
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else item if isinstance(item, str) else None
        if not isinstance(name, str) or not name:
            raise UserError(f"{path}: variants[{i}] has no 'name:'")
        names.append(name)
        if isinstance(item, dict) and isinstance(item.get("paper"), str):
            paper_columns[name] = item["paper"]
    return names, paper_columns


def sweep_paper_columns(number: int, sweeps_dir: str | Path | None = None) -> dict[str, str]:
    """The ``paper:`` columns the sweep file of table ``number`` names; {} when there is no sweep file."""
    sweeps_dir = Path(sweeps_dir) if sweeps_dir is not None else SWEEPS_DIR
    if not any((sweeps_dir / f"table{n}.yaml").is_file() for n in (number, sweep_table_number(number))):
        return {}
    return sweep_variants(number, sweeps_dir)[1]


def paper_table_for(variants: list[str], measure: str) -> tuple[int, str]:
    """The paper's table of ``measure`` whose columns hold every variant (by name, up to spelling), and a
    note saying so: the tightest fit (fewest columns, then the lowest number) when several do."""
    fits = sorted((len(ref["columns"]), int(number)) for number, ref in paper_tables().items()
                  if ref["measure"] == measure and {_norm(v) for v in variants} <= {_norm(c) for c in ref["columns"]})
    if not fits:
        raise UserError(f"--paper: none of the paper's {measure} tables has the columns {', '.join(variants)}; "
                        f"name the table to compare with (--table N)")
    number = fits[0][1]
    others = sorted(n for _, n in fits[1:])
    also = f" (so do tables {', '.join(map(str, others))}: --table N picks one)" if others else ""
    return number, f"compared with the paper's table {number}, whose columns hold {', '.join(variants)}{also}"


def paper_number_for(number: int | None, measure: str) -> int | None:
    """The paper's table that reports ``measure`` for the sweep of table ``number``."""
    if number is None:
        return None
    if TABLE_MEASURE.get(number) == measure:
        return number
    base = sweep_table_number(number)
    if measure == "best" and 1 <= base <= 8:
        return base + 17
    if measure == "final" and 1 <= base <= 8:
        return base
    return None


def _norm(name: str) -> str:
    """'S=1,000' ~ 'S=A=1000' ~ 's1e3', 'τ=0.1' ~ 'tau=0.1', '1K updates' ~ 'PT 1k'."""
    s = name.lower().replace("τ", "tau").replace("temperature", "tau").replace("updates", "")
    s = re.sub(r"^pt\s+", "", s).replace("s=a=", "s=").replace("iid uniform", "iid")
    s = re.sub(r"^(\d+)-mc$", r"n=\1", s)
    s = re.sub(r"\+mc$", "+synthetic", s)  # the Markov-chain tokens are the paper's DT+Synthetic
    s = re.sub(r"(\d),(\d{3})", r"\1\2", s)
    s = re.sub(r"(\d+(?:\.\d+)?)e(\d+)", lambda m: f"{float(m.group(0)):g}" if float(m.group(0)) < 1e6 else m.group(0), s)
    s = re.sub(r"(\d+(?:\.\d+)?)k\b", lambda m: f"{float(m.group(1)) * 1e3:g}", s)
    s = re.sub(r"(\d+(?:\.\d+)?)m\b", lambda m: f"{float(m.group(1)) * 1e6:g}", s)
    return re.sub(r"[\s=_,+\-]", "", s)


def match_paper_columns(variants: list[str], columns: list[str], explicit: dict[str, str] | None = None
                        ) -> tuple[dict[str, int], list[str]]:
    """variant -> index of the paper column it reproduces: named in the sweep file (``paper:``),
    the same name up to spelling, or else, when the counts agree, the same position."""
    explicit = explicit or {}
    normed = {_norm(c): i for i, c in enumerate(columns)}
    mapping, notes = {}, []
    for i, variant in enumerate(variants):
        if variant in explicit and explicit[variant] in columns:
            mapping[variant] = columns.index(explicit[variant])
        elif _norm(variant) in normed:
            mapping[variant] = normed[_norm(variant)]
        elif len(variants) == len(columns):
            mapping[variant] = i
            notes.append(f"{variant} compared with the paper's column {columns[i]!r} by position")
        else:
            notes.append(f"{variant}: no matching column in the paper's table")
    return mapping, notes


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
                 no_bold=no_bold)


def attach_paper(table: Table, number: int, explicit: dict[str, str] | None = None) -> Table:
    """Put the paper's table ``number`` beside the reproduction (matched by dataset and column)."""
    ref = paper_table(number)
    if ref["measure"] != table.measure:
        raise UserError(f"--paper: the paper's table {number} reports {ref['measure']}, this table {table.measure}")
    mapping, notes = match_paper_columns([v for v in table.variants if v not in table.no_bold], ref["columns"], explicit)
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


# -- rendering ------------------------------------------------------------------------------------

def _fmt_value(measure: str, x: float) -> str:
    if x != x:
        return "—"
    if measure == "updates-to-90":
        return f"{x / 1000:.1f}k"
    if measure == "compute":
        if x < 60:
            return f"{x:.1f} s"
        if x < 3600:
            return f"{x / 60:.1f} min"
        hours, minutes = divmod(int(round(x / 60)), 60)
        return f"{hours}h {minutes:02d}m"
    return f"{x:.1f}"


def _fmt_cell(measure: str, mean: float, std: float, pm: str = " ± ") -> str:
    if mean != mean:
        return "—"
    if std != std:
        return _fmt_value(measure, mean)
    return f"{_fmt_value(measure, mean)}{pm}{_fmt_value(measure, std)}"


def _fmt_diff(measure: str, diff: float) -> str:
    if diff != diff:
        return "—"
    sign = "+" if diff >= 0 else "−"
    return sign + _fmt_value(measure, abs(diff))


def _rows(table: Table) -> list[tuple[str, str]]:
    """(key, label) of the body rows: datasets, then the average row."""
    label = "Average over datasets"
    return [(d, d) for d in table.datasets] + [(AVERAGE, label)]


def _header(table: Table) -> list[str]:
    cols = [ROW_HEADER[table.measure]]
    for v in table.variants:
        cols.append(v)
        if table.paper_number is not None:
            cols += [f"{v} (paper)", "Δ"]
    return cols


def _body(table: Table, pm: str, bold, mark: str, check: tuple[str, str]) -> list[list[str]]:
    out = []
    for key, label in _rows(table):
        bolds = M.bold_mask(table.row_values(key), table.higher_is_better)
        row = [label]
        for v, b in zip(table.variants, bolds):
            c = table.cell(key, v)
            text = _fmt_cell(table.measure, c["mean"], c["std"], pm) if c else "—"
            if b:
                text = bold(text)
            if c is None or c["partial"]:
                text += mark
            row.append(text)
            if table.paper_number is not None:
                cmp = table.comparison(key, v)
                if cmp is None:
                    row += ["—", "—"]
                else:
                    row.append(_fmt_cell(table.measure, cmp["paper_mean"], cmp["paper_std"], pm))
                    flag = "" if cmp["within_spread"] is None else " " + (check[0] if cmp["within_spread"] else check[1])
                    row.append(_fmt_diff(table.measure, cmp["diff"]) + flag)
        out.append(row)
    return out


def _note_lines(table: Table) -> list[str]:
    lines = []
    if table.partial:
        lines.append(f"{PARTIAL_MARK} partial or missing: fewer seeds or evaluations than planned, runs still going, "
                     "or an input not found (see below)")
    if table.paper_number is not None:
        lines.append(f"paper: its table {table.paper_number}; Δ = reproduction − paper; ✓ when |Δ| ≤ the reproduction's std over seeds")
    return lines + table.notes


def render_markdown(table: Table) -> str:
    header = _header(table)
    body = _body(table, " ± ", lambda s: f"**{s}**", " " + PARTIAL_MARK, ("✓", "✗"))
    lines = [f"**{table.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in body[:-1]:
        lines.append("| " + " | ".join(row) + " |")
    lines.append("| " + " | ".join([f"**{body[-1][0]}**"] + body[-1][1:]) + " |")
    notes = _note_lines(table)
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}",
                "τ": r"$\tau$", "±": r"$\pm$", "†": r"$^\dagger$", "Δ": r"$\Delta$", "✓": r"\checkmark",
                "✗": r"$\times$", "−": "$-$", "—": "--", "≤": r"$\le$"}


def tex(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)


def render_latex(table: Table) -> str:
    header = [tex(h) for h in _header(table)]
    body = _body(table, " ± ", lambda s: "\x00B" + s + "\x00E", PARTIAL_MARK, ("✓", "✗"))
    bold = lambda s: tex(s).replace("\x00B", r"\textbf{").replace("\x00E", "}")  # noqa: E731
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{tex(table.title)}}}",
             r"\begin{tabular}{l" + "c" * (len(header) - 1) + "}", r"\toprule",
             " & ".join(header) + r" \\", r"\midrule"]
    for row in body[:-1]:
        lines.append(" & ".join(bold(c) for c in row) + r" \\")
    lines.append(r"\midrule")
    lines.append(" & ".join(bold(c) for c in body[-1]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = _note_lines(table)
    if notes:
        lines.append(r"\par\smallskip{\footnotesize " + r" \\ ".join(tex(n) for n in notes) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def render_html(table: Table) -> str:
    header = _header(table)
    body = _body(table, " ± ", lambda s: f"\x00B{s}\x00E", " " + PARTIAL_MARK, ("✓", "✗"))
    esc = lambda s: html.escape(s).replace("\x00B", "<b>").replace("\x00E", "</b>")  # noqa: E731
    lines = ['<table class="synthrl-table">', f"<caption>{html.escape(table.title)}</caption>",
             "<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead>", "<tbody>"]
    for i, row in enumerate(body):
        tag = ' class="average"' if i == len(body) - 1 else ""
        lines.append(f"<tr{tag}><th>{esc(row[0])}</th>" + "".join(f"<td>{esc(c)}</td>" for c in row[1:]) + "</tr>")
    lines += ["</tbody>", "</table>"]
    notes = _note_lines(table)
    if notes:
        lines.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    return "\n".join(lines) + "\n"


def table_frame(table: Table) -> pd.DataFrame:
    """Long form: one row per (dataset, variant) with dataset, variant, mean, std, n_seeds (+ partial,
    and the paper's columns when attached); the average row under dataset 'average'."""
    rows = []
    for key, _ in _rows(table):
        for v in table.variants:
            c = table.cell(key, v)
            row = {"dataset": key, "variant": v,
                   "mean": c["mean"] if c else math.nan, "std": c["std"] if c else math.nan,
                   "n_seeds": int(c["n_seeds"]) if c else 0, "partial": bool(c["partial"]) if c else True}
            if table.paper_number is not None:
                cmp = table.comparison(key, v) or {"paper_mean": math.nan, "paper_std": math.nan, "diff": math.nan,
                                                   "within_spread": None}
                row.update(cmp)
            rows.append(row)
    return pd.DataFrame(rows)


def render_csv(table: Table) -> str:
    buf = io.StringIO()
    table_frame(table).to_csv(buf, index=False, float_format="%.6g", lineterminator="\n")
    return buf.getvalue()


RENDERERS = {"md": render_markdown, "latex": render_latex, "csv": render_csv, "html": render_html}


def render(table: Table, fmt: str = "md") -> str:
    if fmt not in RENDERERS:
        raise UserError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    return RENDERERS[fmt](table)
