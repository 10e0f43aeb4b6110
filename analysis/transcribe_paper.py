"""Regenerate ``analysis/paper_numbers.json`` from the paper's text (a maintainer tool, not used at run time).

    python -m analysis.transcribe_paper /work/shared/paper/2310.00771.txt

The text is pdftotext output: every number has exactly one decimal, bold cells lose the space
before "±", neighbouring cells sometimes run together ("105.0 ±3.5107.4±0.8") and a few numbers
carry a stray space ("41.4±0 .3", "109.0±0.41 09.3±0.5"). Removing all whitespace from a row's
numeric part and matching ``\\d+\\.\\d±\\d+\\.\\d`` recovers every cell; the row must then hold
exactly one (mean, std) pair per column, which the script checks. Column names are written here
by hand (the header lines mix "τ=0.01" and "1k updates" in ways a parser would have to guess).
The average row is transcribed, not recomputed, and tests/test_analysis_paper.py checks it
against the mean of the 12 cells.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

DATASETS = [
    "halfcheetah-medium-expert", "hopper-medium-expert", "walker2d-medium-expert", "ant-medium-expert",
    "halfcheetah-medium-replay", "hopper-medium-replay", "walker2d-medium-replay", "ant-medium-replay",
    "halfcheetah-medium", "hopper-medium", "walker2d-medium", "ant-medium",
]

DT_MC_STEPS = ["DT", "1-MC", "2-MC", "5-MC"]
DT_STATES = ["DT", "S10", "S100", "S1000", "S10000", "S100000"]
DT_TEMPS = ["DT", "τ=0.01", "τ=0.1", "τ=1", "τ=10", "τ=100", "IID uniform"]
DT_PT_UPDATES = ["DT", "1k updates", "10k updates", "20k updates", "40k updates", "60k updates", "80k updates"]
CQL_STATES = ["CQL", "S=10", "S=100", "S=1,000", "S=10,000", "S=100,000"]
CQL_TEMPS = ["CQL", "τ=0.01", "τ=0.1", "τ=1", "τ=10", "τ=100", "CQL+IID"]
CQL_PT_UPDATES = ["CQL", "1K updates", "10K updates", "40K updates", "100K updates", "500K updates", "1M updates"]

# table number -> (algorithm, measure, columns); the "Table N:" caption line locates it in the text
TABLES: dict[int, tuple[str, str, list[str]]] = {
    1: ("dt", "final", ["DT", "DT+Wiki", "DT+Synthetic"]),
    2: ("dt", "final", DT_MC_STEPS),
    3: ("dt", "final", DT_STATES),
    4: ("dt", "final", DT_TEMPS),
    5: ("dt", "final", DT_PT_UPDATES),
    6: ("cql", "final", CQL_STATES),
    7: ("cql", "final", CQL_TEMPS),
    8: ("cql", "final", CQL_PT_UPDATES),
    18: ("dt", "best", ["DT", "DT+Wiki", "DT+Synthetic"]),
    19: ("dt", "best", DT_MC_STEPS),
    20: ("dt", "best", DT_STATES),
    21: ("dt", "best", DT_TEMPS),
    22: ("dt", "best", DT_PT_UPDATES),
    23: ("cql", "best", CQL_STATES),
    24: ("cql", "best", CQL_TEMPS),
    25: ("cql", "best", CQL_PT_UPDATES),
    26: ("dt", "final", ["DT", "DT+20K more", "DT+80K more", "DT+Wiki", "DT+Synthetic"]),
    27: ("dt", "final", ["DT", "DT+Wiki", "DT+Synthetic", "DT+Identity", "DT+Mapping"]),
    28: ("cql", "final", ["CQL", "CQL+100K more", "CQL+MDP", "CQL+IID"]),
    29: ("cql", "final", ["CQL", "CQL+MDP", "CQL+Identity", "CQL+Mapping"]),
}
# tables without a ± (updates to 90 % in thousands, compute in minutes)
PLAIN_TABLES: dict[int, tuple[str, str, list[str]]] = {
    11: ("dt", "updates-to-90", ["DT", "DT+Wiki", "DT+Synthetic"]),
    12: ("dt", "compute", ["DT", "DT+Wiki", "DT+Synthetic"]),
    13: ("cql", "updates-to-90", ["CQL", "CQL+MDP", "CQL+IID"]),
    # CQL+MDP's pre-training and fine-tuning apart, as the compute tables of synthrl tables name them
    14: ("cql", "compute", ["CQL+MDP: pre-training", "CQL+MDP"]),
}

PAIR = re.compile(r"(\d+\.\d)±(\d+\.\d)")
AVERAGE_PREFIXES = ("Average over datasets", "Average (All Settings)")


def _row_label(line: str) -> tuple[str, str] | None:
    for name in sorted(DATASETS, key=len, reverse=True):  # "hopper-medium" is a prefix of "-replay"
        if line.startswith(name + " ") or line.startswith(name + "\t"):
            return name, line[len(name):]
    for prefix in AVERAGE_PREFIXES:
        if line.startswith(prefix):
            return "average", line[len(prefix):]
    return None


def _caption_index(lines: list[str], number: int) -> int:
    for i, line in enumerate(lines):
        if line.startswith(f"Table {number}:"):
            return i
    raise ValueError(f"Table {number}: caption not found")


def _table_rows(lines: list[str], start: int) -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in lines[start + 1:start + 40]:
        found = _row_label(line.strip())
        if found:
            rows[found[0]] = found[1]
            if found[0] == "average":
                break
    return rows


def _minutes(text: str) -> float:
    hours = re.search(r"(\d+)\s*hrs", text)
    mins = re.search(r"(\d+(?:\.\d)?)\s*mins", text)
    return (int(hours.group(1)) * 60 if hours else 0) + (float(mins.group(1)) if mins else 0.0)


def transcribe(text: str) -> dict:
    lines = text.splitlines()
    out: dict[str, dict] = {}
    for number, (algorithm, measure, columns) in TABLES.items():
        start = _caption_index(lines, number)
        rows = _table_rows(lines, start)
        cells: dict[str, list[list[float]]] = {}
        for name, rest in rows.items():
            pairs = PAIR.findall(re.sub(r"\s+", "", rest))
            if len(pairs) != len(columns):
                raise ValueError(f"Table {number}, {name}: {len(pairs)} cells, expected {len(columns)}")
            cells[name] = [[float(m), float(s)] for m, s in pairs]
        missing = [d for d in DATASETS + ["average"] if d not in cells]
        if missing:
            raise ValueError(f"Table {number}: rows not found: {missing}")
        out[str(number)] = {
            "algorithm": algorithm, "measure": measure, "caption": lines[start].strip(),
            "columns": columns, "unit": "normalized score", "cells": cells,
        }
    for number, (algorithm, measure, columns) in PLAIN_TABLES.items():
        start = _caption_index(lines, number)
        rows = _table_rows(lines, start)
        cells = {}
        for name, rest in rows.items():
            if measure == "updates-to-90":
                values = [float(v) * 1000 for v in re.findall(r"(\d+(?:\.\d)?)k", rest)]
            else:  # "2 hrs 27 mins 3 hrs 50 mins 2hrs 11 mins", "4.1 mins 4 hrs 52 mins" -> minutes
                values = [_minutes(chunk) for chunk in re.findall(r"(?:\d+\s*hrs\s*)?\d+(?:\.\d)?\s*mins", rest)]
            if len(values) != len(columns):
                raise ValueError(f"Table {number}, {name}: {len(values)} cells, expected {len(columns)}")
            cells[name] = [[v, None] for v in values]
        out[str(number)] = {
            "algorithm": algorithm, "measure": measure, "caption": lines[start].strip(),
            "columns": columns, "unit": "updates" if measure == "updates-to-90" else "minutes", "cells": cells,
        }
    return out


def main(argv: list[str]) -> int:
    source = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "shared/paper/2310.00771.txt"
    numbers = transcribe(source.read_text())
    target = Path(__file__).with_name("paper_numbers.json")
    payload = {
        "source": "Pre-training with Synthetic Data Helps Offline Reinforcement Learning (ICLR 2024), arXiv 2310.00771",
        "note": "cells[dataset] = [[mean, std], ...] in column order; 'average' is the paper's own average row",
        "tables": {k: numbers[k] for k in sorted(numbers, key=int)},
    }
    text = json.dumps(payload, indent=1, ensure_ascii=False)
    # one [mean, std] pair per line segment, one dataset row per line: readable beside the paper
    text = re.sub(r"\[\s+([-\d.]+|null),\s+([-\d.]+|null)\s+\]", r"[\1, \2]", text)
    text = re.sub(r"\[\s+(\[[^\n]*\])((?:,\s+\[[^\n]*\])*)\s+\]",
                  lambda m: "[" + re.sub(r",\s+", ", ", m.group(1) + m.group(2)) + "]", text)
    target.write_text(text + "\n")
    print(f"wrote {target} ({len(numbers)} tables)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
