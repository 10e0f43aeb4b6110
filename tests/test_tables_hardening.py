"""`synthrl tables` on imperfect inputs (issue 12, items 11 and 12): non-finite scores refused by file and
row, other columns really ignored, columns without runs yet, and --paper with --variants."""

import warnings

import pandas as pd
import pytest

from analysis import tables as T
from analysis.records import load_records
from synthrl.cli import main
from synthrl.errors import UserError
from synthrl.rundir import RunDir


def frame(variants=("A", "B"), datasets=("hopper-medium", "walker2d-medium"), seeds=(0, 1), updates=(10, 20, 30, 40)):
    """Scores that differ by variant, dataset and seed (each seed's last-four mean is its base score)."""
    rows = [{"algorithm": "cql", "variant": v, "dataset": d, "seed": s, "update": u,
             "normalized_score": 10.0 * i + 5.0 * j + s}
            for i, v in enumerate(variants) for j, d in enumerate(datasets) for s in seeds for u in updates]
    return pd.DataFrame(rows)


def write_csv(tmp_path, data, name="records.csv"):
    path = tmp_path / name
    data.to_csv(path, index=False)
    return str(path)


def tables(argv, capsys):
    code = main(["tables", *argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- item 11: bad numbers, other columns -------------------------------------------------------------

@pytest.mark.parametrize("value,message", [
    ("inf", "column 'normalized_score', data row 3: inf is not a finite number"),
    ("-inf", "column 'normalized_score', data row 3: -inf is not a finite number"),
    ("nan", "column 'normalized_score', data row 3: empty or NaN"),
    ("", "column 'normalized_score', data row 3: empty or NaN"),
])
def test_a_non_finite_score_in_a_csv_is_refused_naming_file_and_row(tmp_path, capsys, value, message):
    data = frame().astype({"normalized_score": object})
    data.loc[2, "normalized_score"] = value
    path = write_csv(tmp_path, data)
    code, out, err = tables(["--csv", path, "--variants", "A,B"], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert path in err and message in err


def test_an_infinite_wall_clock_is_refused_but_an_infinite_loss_is_data(tmp_path):
    data = frame().assign(train_loss=1.0, wall_clock_s=1.0)
    data.loc[5, "train_loss"] = float("inf")  # a diverged loss
    assert load_records(csv=write_csv(tmp_path, data, "loss.csv")).frame["train_loss"].max() == float("inf")
    data.loc[7, "wall_clock_s"] = float("inf")
    with pytest.raises(UserError, match=r"column 'wall_clock_s', data row 8: inf is not a finite number"):
        load_records(csv=write_csv(tmp_path, data, "clock.csv"))


def test_an_infinite_score_in_a_run_directory_names_its_metrics_file_and_row(tmp_path):
    for variant in ("A", "B"):
        rows = frame(variants=(variant,), datasets=("hopper-medium",))
        if variant == "B":
            rows.loc[4, "normalized_score"] = float("inf")
        run = RunDir(tmp_path / "runs" / variant)
        run.write_params({"algorithm": "cql", "variant": variant, "dataset": "hopper-medium", "seeds": [0, 1],
                          "updates": 40, "eval_every": 10})
        run.append_metrics(rows.to_dict("records"), ["seed", "update", "normalized_score"])
    with pytest.raises(UserError) as err:
        load_records(results=tmp_path / "runs")
    assert str(tmp_path / "runs" / "B" / "metrics.csv") in str(err.value)
    assert "column 'normalized_score', data row 5: inf is not a finite number" in str(err.value)


def test_other_columns_are_ignored_even_with_mixed_types(tmp_path):
    # pandas reads a long file in chunks and warns (DtypeWarning) when a column's type changes between them;
    # 262,150 rows are past the first chunk
    n = 262_150
    lines = ["algorithm,variant,dataset,seed,update,normalized_score,comment"]
    lines += [f"cql,A,hopper-medium,{i % 2},{i // 2},50.0,{i}" for i in range(n - 1)]
    lines.append(f"cql,A,hopper-medium,{(n - 1) % 2},{(n - 1) // 2},50.0,a note")
    path = tmp_path / "long.csv"
    path.write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        records = load_records(csv=path)
    assert len(records.frame) == n and "comment" not in records.frame.columns


# -- item 12: columns without runs, --paper with --variants ---------------------------------------------

def test_a_variant_without_runs_is_a_marked_column_with_a_note(tmp_path, capsys):
    path = write_csv(tmp_path, frame(variants=("A",)))
    code, out, err = tables(["--csv", path, "--variants", "A,B"], capsys)
    assert code == 0
    assert "| Average Last Four | A | B |" in out and "| hopper-medium | **0.5 ± 0.5** | — † |" in out
    assert "B: no runs in the records" in out and "the records hold the variants A" in out
    assert "B: no runs in the records" in err  # repeated where a user watching a sweep sees it
    code, _, err = tables(["--csv", path, "--variants", "B,C"], capsys)
    assert code == 2 and "none of the variants B, C is in the records (found: A)" in err


def paper_cell(number, dataset, column):
    ref = T.paper_table(number)
    return ref["cells"][dataset][ref["columns"].index(column)]


def test_paper_with_table_and_a_subset_of_its_variants(tmp_path, capsys):
    path = write_csv(tmp_path, frame(variants=("CQL", "S=A=100"), datasets=("hopper-medium",)))
    code, out, _ = tables(["--csv", path, "--table", "6", "--variants", "CQL,S=A=100", "--paper", "--format", "csv"],
                          capsys)
    assert code == 0
    result = pd.read_csv(pd.io.common.StringIO(out)).set_index(["dataset", "variant"])
    for variant, column in (("CQL", "CQL"), ("S=A=100", "S=100")):
        row = result.loc[("hopper-medium", variant)]
        assert row["paper_mean"] == pytest.approx(paper_cell(6, "hopper-medium", column)[0])
        assert row["diff"] == pytest.approx(row["mean"] - row["paper_mean"])
    assert set(result.index.get_level_values("variant")) == {"CQL", "S=A=100"}  # only the chosen columns


@pytest.mark.parametrize("variants,number", [
    ("CQL,CQL+MDP,CQL+IID", 28),   # the quick start's CQL sweep: only table 28 has all three
    ("DT,DT+MC", 1),               # the quick start's DT sweep (DT+MC is the paper's DT+Synthetic): 1 of 1, 26, 27
])
def test_paper_with_variants_alone_finds_the_table_they_come_from(tmp_path, capsys, variants, number):
    names = variants.split(",")
    path = write_csv(tmp_path, frame(variants=names, datasets=("hopper-medium",)))
    code, out, _ = tables(["--csv", path, "--variants", variants, "--paper", "--format", "csv"], capsys)
    assert code == 0
    result = pd.read_csv(pd.io.common.StringIO(out)).set_index(["dataset", "variant"])
    column = {"DT+MC": "DT+Synthetic"}.get(names[-1], names[-1])
    assert result.loc[("hopper-medium", names[-1]), "paper_mean"] == pytest.approx(
        paper_cell(number, "hopper-medium", column)[0])
    code, out, _ = tables(["--csv", path, "--variants", variants, "--paper"], capsys)
    assert f"compared with the paper's table {number}, whose columns hold {', '.join(names)}" in out


def test_paper_with_variants_no_table_holds_is_one_line(tmp_path, capsys):
    path = write_csv(tmp_path, frame(variants=("CQL", "mine")))
    code, _, err = tables(["--csv", path, "--variants", "CQL,mine", "--paper"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "--paper: none of the paper's final tables has the columns CQL, mine; name the table" in err
