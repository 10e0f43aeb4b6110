"""The paper's published numbers (``paper_numbers.json``), the sweep files' columns, and matching a
reproduction's variants to the paper's columns by name up to spelling."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from synthrl.errors import UserError

PAPER_NUMBERS = Path(__file__).with_name("paper_numbers.json")
SWEEPS_DIR = Path(__file__).resolve().parents[1] / "sweeps"
AVERAGE = "average"
PRETRAIN_COLUMN = ": pre-training"  # compute tables: "CQL+MDP: pre-training" beside "CQL+MDP" (fine-tuning)

# which measure each of the paper's tables reports; 18-25 are the best-score twins of 1-8
TABLE_MEASURE = {**{n: "final" for n in (1, 2, 3, 4, 5, 6, 7, 8, 26, 27, 28, 29)},
                 **{n: "best" for n in range(18, 26)},
                 11: "updates-to-90", 13: "updates-to-90", 12: "compute", 14: "compute"}


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
        if str(number) in paper_tables() and number in (11, 12, 13, 14):
            # no sweep of their own: the paper's columns (a compute table makes its pre-training columns itself)
            columns = [c.removesuffix(PRETRAIN_COLUMN) for c in paper_table(number)["columns"]]
            return list(dict.fromkeys(columns)), {}
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

