"""The paper's claims as data (``claims.yaml``) and their verdicts on a reproduction's records (no Ray, no torch).

A claim compares two variants of one of the paper's tables: ``better`` (X > Y), ``not worse``
(X ≥ Y − margin) or ``not better`` (X ≤ Y + margin), on the average over the table's datasets or on
named datasets. ``judge`` takes each side's per-seed scores (measures.per_seed, the claim's measure)
and decides with two stratified bootstrap CIs from analysis/stats.py:

* ``better``: *held* when the CI of P(X > Y) lies above 0.5 and the CI of the average difference
  X − Y above 0; *not held* when either lies entirely on the other side (P high < 0.5 or diff high < 0);
  else *inconclusive* (a CI straddles no effect).
* ``not worse``: held when the difference CI lies entirely above −margin, not held when entirely below
  it; ``not better``: held when entirely below +margin, not held when entirely above it; else inconclusive.
* a claim whose variants (or named datasets) the records do not hold is *not run*, with what is missing.
  So is one whose variant is, in the records, a run of another algorithm than the claim's table's
  (DT's 'tau=1' of table 4 is not CQL's 'tau=1' of table 7; an algorithm label the registry does not
  know is taken as it comes).

``judge_paper`` reads the paper's own numbers (paper_numbers.json): only means and stds exist there,
so every claim is "paper only: no per-seed data", with the paper's average difference as the number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from analysis import measures as M
from analysis import stats as S
from analysis.paper import (SWEEPS_DIR, TABLE_MEASURE, match_paper_columns, paper_number_for, paper_tables,
                            sweep_paper_columns, sweep_variants)
from analysis.records import PAPER_DATASETS, Records, dataset_key
from analysis.verdict_render import render_verdicts  # noqa: F401  (re-exported: the report page imports it from here)
from synthrl import registry
from synthrl.errors import UserError

CLAIMS_FILE = Path(__file__).with_name("claims.yaml")
DIRECTIONS = ("better", "not worse", "not better")
CLAIM_MEASURES = ("final", "best")
CLAIM_TABLES = (1, 2, 3, 4, 5, 6, 7, 8, 26, 27, 28, 29)
FIELDS = ("id", "table", "section", "quote", "x", "y", "direction", "margin", "measure", "scope")
REQUIRED_FIELDS = ("id", "table", "section", "quote", "x", "y", "direction")

HELD = "held"
NOT_HELD = "not held"
INCONCLUSIVE = "inconclusive"
NOT_RUN = "not run"
PAPER_ONLY = "paper only: no per-seed data"
STATUSES = (HELD, NOT_HELD, INCONCLUSIVE, NOT_RUN, PAPER_ONLY)

NO_ESTIMATE = S.Estimate(math.nan, math.nan, math.nan)


@dataclass(frozen=True)
class Claim:
    """One comparison X vs Y (a family claim of the file is several of these, one per pair)."""
    id: str                   # the file's id, plus [X vs Y] for a family's member and @dataset for scope each
    family: str               # the file's id
    table: int
    section: str
    quote: str
    x: str
    y: str
    direction: str
    margin: float             # 0 for `better`
    measure: str
    scope: tuple[str, ...]    # () = the average over the table's datasets in the records

    @property
    def statement(self) -> str:
        """'X > Y', 'X ≥ Y − 2', 'X ≤ Y + 1' (on what)."""
        rel = {"better": f"{self.x} > {self.y}", "not worse": f"{self.x} ≥ {self.y} − {self.margin:g}",
               "not better": f"{self.x} ≤ {self.y} + {self.margin:g}"}[self.direction]
        where = "average" if not self.scope else ", ".join(self.scope)
        return f"{rel} ({self.measure}, {where})"


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    status: str
    p_improvement: S.Estimate      # P(X > Y), 0.5 = no effect
    difference: S.Estimate         # average over datasets of mean(X) − mean(Y), 0 = no effect
    datasets: tuple[str, ...]      # the datasets the numbers come from
    seeds: tuple[int, int]         # seeds per dataset of X and of Y (the fewest over the datasets)
    note: str = ""


# -- loading and validating -----------------------------------------------------------------------

def _names(value, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v).strip()
                            for v in items):
        raise UserError(f"{where}: expected a variant name or a list of them, got {value!r}")
    names = [str(v).strip() for v in items]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: a variant name repeats in {value!r}")
    return names


def _scope(value, where: str) -> list[tuple[str, ...]]:
    """The datasets of each claim the entry makes: [()] for the average, one per dataset for 'each'."""
    if value is None or value == "average":
        return [()]
    if value == "each":
        return [(d,) for d in PAPER_DATASETS]
    if isinstance(value, list) and value and all(isinstance(d, str) and d.strip() for d in value):
        return [tuple(dict.fromkeys(dataset_key(d.strip()) for d in value))]
    raise UserError(f"{where}: expected average, each or a list of dataset names, got {value!r}")


def _entry(item, where: str) -> list[Claim]:
    if not isinstance(item, dict):
        raise UserError(f"{where}: expected a mapping with {', '.join(REQUIRED_FIELDS)}, got {item!r}")
    unknown = [k for k in item if k not in FIELDS]
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r} (expected some of {', '.join(FIELDS)})")
    missing = [k for k in REQUIRED_FIELDS if item.get(k) in (None, "")]
    if missing:
        raise UserError(f"{where}.{missing[0]}: missing (every claim needs {', '.join(REQUIRED_FIELDS)})")
    claim_id = item["id"]
    if not isinstance(claim_id, str) or not claim_id.strip():
        raise UserError(f"{where}.id: expected a short slug, got {claim_id!r}")
    table = item["table"]
    if isinstance(table, bool) or not isinstance(table, int) or table not in CLAIM_TABLES:
        raise UserError(f"{where}.table: expected one of {', '.join(map(str, CLAIM_TABLES))}, got {table!r}")
    for key in ("section", "quote"):
        if not isinstance(item[key], (str, int, float)) or isinstance(item[key], bool):
            raise UserError(f"{where}.{key}: expected text, got {item[key]!r}")
    direction = item["direction"]
    if direction not in DIRECTIONS:
        raise UserError(f"{where}.direction: expected {'|'.join(DIRECTIONS)}, got {direction!r}")
    margin = item.get("margin")
    if direction == "better":
        if margin is not None:
            raise UserError(f"{where}.margin: a `better` claim has no margin (give direction `not worse` or "
                            f"`not better` for one), got {margin!r}")
        margin = 0.0
    else:
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not margin >= 0 or math.isinf(margin):
            raise UserError(f"{where}.margin: expected a number >= 0 (normalised-score points) for a "
                            f"`{direction}` claim, got {margin!r}")
        margin = float(margin)
    measure = item.get("measure") or TABLE_MEASURE[table]
    if measure not in CLAIM_MEASURES:
        raise UserError(f"{where}.measure: expected {'|'.join(CLAIM_MEASURES)}, got {measure!r}")
    xs, ys = _names(item["x"], f"{where}.x"), _names(item["y"], f"{where}.y")
    both = set(xs) & set(ys)
    if both:
        raise UserError(f"{where}: {sorted(both)[0]!r} is on both sides (x and y)")
    scopes = _scope(item.get("scope"), f"{where}.scope")
    family = len(xs) * len(ys) > 1
    claims = []
    for x in xs:
        for y in ys:
            for scope in scopes:
                name = claim_id.strip() + (f"[{x} vs {y}]" if family else "")
                name += f"@{scope[0]}" if item.get("scope") == "each" else ""
                claims.append(Claim(name, claim_id.strip(), table, str(item["section"]), str(item["quote"]).strip(),
                                    x, y, direction, margin, measure, scope))
    return claims


def load_claims(path: str | Path | None = None) -> list[Claim]:
    """The claims of ``path`` (default analysis/claims.yaml), family entries expanded, in file order."""
    import yaml

    path = Path(path) if path is not None else CLAIMS_FILE
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    items = doc.get("claims") if isinstance(doc, dict) else None
    if not isinstance(items, list) or not items:
        raise UserError(f"{path}: claims: expected a top-level 'claims:' list")
    claims: list[Claim] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        try:
            entry = _entry(item, f"claims[{i}]")
        except UserError as e:
            raise UserError(f"{path}: {e}") from None
        if entry[0].family in seen:
            raise UserError(f"{path}: claims[{i}].id: {entry[0].family!r} is used twice")
        seen.add(entry[0].family)
        claims += entry
    return claims


def unknown_variants(claims: list[Claim], sweeps_dir: str | Path | None = None) -> list[str]:
    """One line per claim naming a variant that its table's sweep file (sweeps/tableN.yaml) does not have."""
    problems = []
    for claim in claims:
        names = sweep_variants(claim.table, sweeps_dir)[0]
        for side in (claim.x, claim.y):
            if side not in names:
                problems.append(f"{claim.id}: {side!r} is not a variant of sweeps/table{claim.table}.yaml "
                                f"({', '.join(names)})")
    return problems


# -- judging on records ---------------------------------------------------------------------------

def _full_ratio(records: Records) -> Records:
    """The paper's tables use the whole dataset: a fine-tune-ratio ablation's smaller ratios are left out."""
    frame = records.frame
    keep = frame.groupby("variant")["finetune_ratio"].transform("max")
    return Records(frame[frame["finetune_ratio"] == keep], records.expected, records.source)


@lru_cache(maxsize=None)
def table_algorithm(table: int) -> str | None:
    """The algorithm of sweeps/table<N>.yaml ('dt', 'cql'; None when the file does not say)."""
    import yaml

    path = SWEEPS_DIR / f"table{table}.yaml"
    doc = yaml.safe_load(path.read_text()) if path.is_file() else None
    algorithm = doc.get("algorithm") if isinstance(doc, dict) else None
    return str(algorithm).lower() if algorithm else None


def _other_algorithm(claim: Claim, algorithms: dict[str, set[str]]) -> list[str]:
    """The sides whose records are all runs of another known algorithm than the claim's table's: DT's
    'tau=1' (table 4) is not CQL's 'tau=1' (table 7). Labels the registry does not know are not judged."""
    wanted = table_algorithm(claim.table)
    lines = []
    for side in (claim.x, claim.y):
        have = algorithms.get(side, set())
        # the registry (which imports every algorithm, torch too) only when a side holds another algorithm's runs
        if wanted and have and wanted not in have and have <= set(registry.algorithms()):
            lines.append(f"{side} is {'/'.join(sorted(have))} runs here, table {claim.table} is {wanted}'s")
    return lines


def decide(claim: Claim, p: S.Estimate, diff: S.Estimate) -> str:
    """held / not held / inconclusive from the two CIs (the rules of the module docstring)."""
    if not (diff.low == diff.low and diff.high == diff.high):
        return INCONCLUSIVE  # no interval (fewer than 2 seeds a side)
    if claim.direction == "better":
        if p.high < 0.5 or diff.high < 0:
            return NOT_HELD
        if p.low > 0.5 and diff.low > 0:
            return HELD
        return INCONCLUSIVE
    if claim.direction == "not worse":
        if diff.low > -claim.margin:
            return HELD
        return NOT_HELD if diff.high < -claim.margin else INCONCLUSIVE
    if diff.high < claim.margin:
        return HELD
    return NOT_HELD if diff.low > claim.margin else INCONCLUSIVE


def _judge_one(claim: Claim, per_seed, algorithms: dict[str, set[str]], seed: int) -> Verdict:
    other = _other_algorithm(claim, algorithms)
    if other:
        return Verdict(claim, NOT_RUN, NO_ESTIMATE, NO_ESTIMATE, (), (0, 0), "; ".join(other))
    have = {v: set(per_seed.loc[(per_seed["variant"] == v) & per_seed["value"].notna(), "dataset"])
            for v in (claim.x, claim.y)}
    missing = [v for v in (claim.x, claim.y) if not have[v]]
    if missing:
        return Verdict(claim, NOT_RUN, NO_ESTIMATE, NO_ESTIMATE, (), (0, 0),
                       f"no records of {' or '.join(missing)}")
    notes = []
    if claim.scope:
        lacking = [f"{v} / {d}" for d in claim.scope for v in (claim.x, claim.y) if d not in have[v]]
        if lacking:
            return Verdict(claim, NOT_RUN, NO_ESTIMATE, NO_ESTIMATE, (), (0, 0), f"no records of {', '.join(lacking)}")
        datasets = list(claim.scope)
    else:
        datasets = [d for d in PAPER_DATASETS if d in have[claim.x] & have[claim.y]]
        datasets += sorted((have[claim.x] & have[claim.y]) - set(datasets))
        if not datasets:
            return Verdict(claim, NOT_RUN, NO_ESTIMATE, NO_ESTIMATE, (), (0, 0),
                           f"{claim.x} and {claim.y} have no dataset in common")
        alone = sorted(have[claim.x] ^ have[claim.y])
        if alone:
            notes.append(f"left out {', '.join(alone)} (one side only)")
        if len(datasets) < len(PAPER_DATASETS):
            notes.append(f"average over {len(datasets)} of the paper's {len(PAPER_DATASETS)} datasets")
    xs = S.seed_scores(per_seed, claim.x, datasets)
    ys = S.seed_scores(per_seed, claim.y, datasets)
    p = S.probability_of_improvement(xs, ys, seed)
    diff = S.mean_difference(xs, ys, seed)
    seeds = (min(len(a) for a in xs), min(len(b) for b in ys))
    status = decide(claim, p, diff)
    if min(seeds) < 2:
        notes.append("fewer than 2 seeds on a side: no confidence interval")
    return Verdict(claim, status, p, diff, tuple(datasets), seeds, "; ".join(notes))


def judge(records: Records, claims: list[Claim], seed: int = S.DEFAULT_SEED) -> list[Verdict]:
    """A verdict per claim from the records' per-seed scores (each claim's measure)."""
    records = _full_ratio(records)
    algorithms = {str(v): set(g.astype(str)) for v, g in records.frame.groupby("variant")["algorithm"]}
    per_seed_by_measure = {}
    verdicts = []
    for claim in claims:
        if claim.measure not in per_seed_by_measure:
            per_seed_by_measure[claim.measure] = M.per_seed(records.frame, claim.measure)
        verdicts.append(_judge_one(claim, per_seed_by_measure[claim.measure], algorithms, seed))
    return verdicts


# -- the paper's own numbers ------------------------------------------------------------------------

def _paper_one(claim: Claim) -> Verdict:
    number = paper_number_for(claim.table, claim.measure)
    if number is None or str(number) not in paper_tables():
        return Verdict(claim, PAPER_ONLY, NO_ESTIMATE, NO_ESTIMATE, (), (0, 0),
                       f"the paper has no {claim.measure} table for table {claim.table}")
    ref = paper_tables()[str(number)]
    variants = sweep_variants(claim.table)[0]
    mapping, _ = match_paper_columns(variants, ref["columns"], sweep_paper_columns(claim.table))
    absent = [v for v in (claim.x, claim.y) if v not in mapping]
    if absent:
        return Verdict(claim, PAPER_ONLY, NO_ESTIMATE, NO_ESTIMATE, (), (0, 0),
                       f"no column of the paper's table {number} for {', '.join(absent)}")
    cells = {d: v for d, v in ref["cells"].items() if d != "average"}
    datasets = list(claim.scope) if claim.scope else [d for d in PAPER_DATASETS if d in cells]
    datasets = [d for d in datasets if d in cells]
    if not datasets:
        return Verdict(claim, PAPER_ONLY, NO_ESTIMATE, NO_ESTIMATE, (), (0, 0),
                       f"the paper's table {number} has none of {', '.join(claim.scope)}")
    x_means = [cells[d][mapping[claim.x]][0] for d in datasets]
    y_means = [cells[d][mapping[claim.y]][0] for d in datasets]
    diff = float(np.mean(np.subtract(x_means, y_means)))
    agrees = {"better": diff > 0, "not worse": diff >= -claim.margin, "not better": diff <= claim.margin}[claim.direction]
    note = (f"paper's table {number}: {claim.x} {np.mean(x_means):.1f} vs {claim.y} {np.mean(y_means):.1f}; "
            f"its means {'agree with' if agrees else 'contradict'} the claim (means and stds only: no interval)")
    return Verdict(claim, PAPER_ONLY, NO_ESTIMATE, S.Estimate(diff, math.nan, math.nan), tuple(datasets), (0, 0), note)


def judge_paper(claims: list[Claim]) -> list[Verdict]:
    """Each claim on the paper's published means (paper_numbers.json): no per-seed data, so no verdict."""
    return [_paper_one(claim) for claim in claims]


def summary(verdicts: list[Verdict]) -> str:
    """'34 claims: 20 held, 3 not held, 9 inconclusive, 2 not run'."""
    counts = {s: sum(v.status == s for v in verdicts) for s in STATUSES}
    parts = [f"{n} {s}" for s, n in counts.items() if n]
    return f"{len(verdicts)} claim(s): " + ", ".join(parts)
