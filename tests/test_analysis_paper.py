"""The paper's published numbers carried in analysis/paper_numbers.json."""

import re

import pytest

from analysis.records import PAPER_DATASETS
from analysis.tables import TABLE_MEASURE, paper_table, paper_tables
from conftest import SHARED, missing_shared

PAPER_TEXT = SHARED / "paper" / "2310.00771.txt"
SCORE_TABLES = [1, 2, 3, 4, 5, 6, 7, 8] + list(range(18, 30))


def cell(number, dataset, column):
    table = paper_table(number)
    return tuple(table["cells"][dataset][table["columns"].index(column)])


# read off the paper by hand (page numbers of the arXiv PDF), including cells the PDF text mangles
HAND_CHECKED = [
    (1, "hopper-medium-expert", "DT+Synthetic", (99.6, 6.5)),            # p.4
    (1, "average", "DT", (67.7, 5.4)),                                   # p.4
    (3, "ant-medium-expert", "S100000", (123.2, 6.3)),                   # p.5
    (4, "walker2d-medium-expert", "τ=0.1", (106.6, 2.9)),                # p.6, run together with its neighbours
    (6, "walker2d-medium-expert", "S=1,000", (110.1, 0.4)),              # p.7
    (7, "hopper-medium-expert", "τ=0.01", (52.4, 26.0)),                 # p.8
    (8, "average", "1M updates", (83.9, 3.6)),                           # p.8
    (19, "halfcheetah-medium-replay", "5-MC", (41.3, 0.3)),              # p.19, row printed last
    (21, "walker2d-medium-expert", "IID uniform", (109.3, 0.5)),         # p.20, printed "0.41 09.3"
    (21, "halfcheetah-medium-replay", "IID uniform", (41.4, 0.3)),       # p.20, printed "41.4±0 .3"
    (21, "walker2d-medium", "IID uniform", (79.5, 1.6)),                 # p.20, printed "79.5±1. 6"
    (23, "hopper-medium", "CQL", (87.3, 4.0)),                           # p.23
    (25, "hopper-medium-expert", "1M updates", (111.5, 0.5)),            # p.24
    (26, "ant-medium", "DT+80K more", (89.7, 3.5)),                      # p.28
    (27, "walker2d-medium-expert", "DT+Identity", (107.7, 0.1)),         # p.30
    (28, "hopper-medium-expert", "CQL+100K more", (41.6, 21.0)),         # p.34
    (29, "halfcheetah-medium-expert", "CQL+Mapping", (53.5, 1.7)),       # p.36
    (11, "walker2d-medium-expert", "DT+Wiki", (20000.0, None)),          # p.14
    (13, "average", "CQL+MDP", (107000.0, None)),                        # p.15
    (12, "hopper-medium-expert", "DT+Synthetic", (131.0, None)),         # p.14, "2hrs 11 mins" in minutes
]


@pytest.mark.parametrize("number, dataset, column, expected", HAND_CHECKED)
def test_hand_checked_cells(number, dataset, column, expected):
    assert cell(number, dataset, column) == pytest.approx(expected)


def test_every_score_table_is_complete():
    tables = paper_tables()
    for number in SCORE_TABLES:
        table = tables[str(number)]
        assert table["measure"] == TABLE_MEASURE[number]
        assert set(table["cells"]) == set(PAPER_DATASETS) | {"average"}, number
        for dataset, row in table["cells"].items():
            assert len(row) == len(table["columns"]), (number, dataset)
            assert all(0 <= m <= 140 and 0 <= s <= 30 for m, s in row), (number, dataset)


def test_average_rows_agree_with_the_cells():
    """A transcription slip in any cell would move the mean of its column away from the paper's own average."""
    for number in SCORE_TABLES:
        cells = paper_table(number)["cells"]
        for i, (avg_mean, avg_std) in enumerate(cells["average"]):
            means = [cells[d][i][0] for d in PAPER_DATASETS]
            stds = [cells[d][i][1] for d in PAPER_DATASETS]
            assert abs(sum(means) / 12 - avg_mean) <= 0.07, (number, i)
            assert abs(sum(stds) / 12 - avg_std) <= 0.07, (number, i)


@pytest.mark.skipif(not PAPER_TEXT.is_file(), reason=missing_shared(PAPER_TEXT))
def test_cells_match_the_paper_text():
    """Every dataset row of every score table, re-read from the paper text by a plain regex."""
    lines = PAPER_TEXT.read_text().splitlines()
    for number in SCORE_TABLES:
        table = paper_table(number)
        start = next(i for i, line in enumerate(lines) if line.startswith(f"Table {number}:"))
        checked = 0
        for line in lines[start:start + 30]:
            if line.startswith(("Average over", "Average (All")):
                break
            name = next((d for d in sorted(PAPER_DATASETS, key=len, reverse=True) if line.startswith(d + " ")), None)
            if name is None:
                continue
            numbers = [float(x) for x in re.findall(r"\d+\.\d", re.sub(r"\s", "", line[len(name):]))]
            expected = [x for pair in table["cells"][name] for x in pair]
            assert numbers == expected, (number, name)
            checked += 1
        assert checked == 12, number
