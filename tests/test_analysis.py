"""Analysis: measures against hand-computed values, rendering snapshots, partial results, both inputs."""

import math
import struct

import pandas as pd
import pytest

from analysis import measures as M
from analysis import tables as T
from analysis.curves import DPI, FIGSIZE, plot_curves
from analysis.records import Records, dataset_key, derive_variant, load_records, read_long_csv, read_run_dirs
from synthrl.cli import main
from synthrl.errors import UserError
from synthrl.rundir import RunDir

# scores per (variant, dataset, seed) at updates 5, 10, ..., 30 (eval_every 5)
SCORES = {
    ("A", "hopper-medium", 0): [0, 10, 20, 30, 40, 50],    # final mean(20..50) = 35, best 50
    ("A", "hopper-medium", 1): [0, 0, 10, 10, 30, 30],     # final 20, best 30
    ("A", "walker2d-medium", 0): [60] * 6,                 # final 60
    ("A", "walker2d-medium", 1): [80] * 6,                 # final 80
    ("B", "hopper-medium", 0): [10, 25, 30, 30, 30, 30],   # reaches 24.75 at update 10
    ("B", "hopper-medium", 1): [5, 5, 20, 24, 40, 40],     # reaches 24.75 at update 25
    ("B", "walker2d-medium", 0): [70, 64, 66, 66, 66, 66],  # reaches 63 at 5
    ("B", "walker2d-medium", 1): [50, 60, 62, 70, 70, 70],  # reaches 63 at 20
}
UPDATES = [5, 10, 15, 20, 25, 30]


def long_frame(scores=SCORES) -> pd.DataFrame:
    rows = []
    for (variant, dataset, seed), values in scores.items():
        for i, (u, s) in enumerate(zip(UPDATES, values)):
            rows.append({"algorithm": "cql", "variant": variant, "dataset": dataset, "seed": seed, "update": u,
                         "normalized_score": s, "return": 10 * s, "train_loss": 1.0 / (i + 1),
                         "wall_clock_s": 60.0 * (i + 1) * (seed + 1),
                         "pretrain_updates": 0 if variant == "A" else 100})
    return pd.DataFrame(rows)


def write_csv(tmp_path, frame=None):
    path = tmp_path / "records.csv"
    (frame if frame is not None else long_frame()).to_csv(path, index=False)
    return path


def write_run_dirs(root, frame=None, drop=()):
    """One run directory per (variant, dataset) holding a two-seed ensemble, as a sweep would."""
    frame = frame if frame is not None else long_frame()
    for (variant, dataset), group in frame.groupby(["variant", "dataset"]):
        rd = RunDir(root / f"{variant}_{dataset}")
        rd.write_params({"algorithm": "cql", "variant": variant, "dataset": f"{dataset.replace('-', '_')}-v2",
                         "seeds": [0, 1], "pretrain_updates": int(group["pretrain_updates"].iloc[0]),
                         "updates": 30, "eval_every": 5})
        for u in UPDATES:
            rows = group[group["update"] == u].to_dict("records")
            rows = [r for r in rows if (variant, dataset, r["seed"], u) not in drop]
            rd.append_metrics(rows, ["seed", "update", "normalized_score", "return", "train_loss", "wall_clock_s"])
        rd.mark_done()
    return root


def records_of(frame=None) -> Records:
    frame = long_frame() if frame is None else frame
    frame = frame.assign(source="test", done=True, finetune_ratio=1.0, pretrain_wall_clock_s=float("nan"))
    return Records(frame, pd.DataFrame(columns=["variant", "dataset", "seeds", "evals", "done"]))


# -- measures ---------------------------------------------------------------------------------------

def test_final_is_mean_of_last_four_with_population_std():
    table = T.build_table(records_of(), ["A", "B"], "final")
    cell = table.cell("hopper-medium", "A")
    assert cell["mean"] == pytest.approx(27.5)      # (35 + 20) / 2
    assert cell["std"] == pytest.approx(7.5)        # ddof=0; ddof=1 would be 10.61
    assert cell["n_seeds"] == 2
    avg = table.cell("average", "A")
    assert avg["mean"] == pytest.approx((27.5 + 70) / 2)
    assert avg["std"] == pytest.approx((7.5 + 10) / 2)  # mean of the cell stds, not the std of anything pooled


def test_best_is_each_seeds_max_then_mean_and_std():
    table = T.build_table(records_of(), ["A"], "best")
    cell = table.cell("hopper-medium", "A")
    assert (cell["mean"], cell["std"]) == (pytest.approx(40.0), pytest.approx(10.0))
    # the other reading: the seed-mean curve peaks at update 25/30 (mean 35); std there 5
    alt = M.best_of_seed_mean(long_frame())
    row = alt[(alt["variant"] == "A") & (alt["dataset"] == "hopper-medium")].iloc[0]
    assert row["mean"] == pytest.approx(40.0) and row["std"] == pytest.approx(10.0)
    row = alt[(alt["variant"] == "B") & (alt["dataset"] == "hopper-medium")].iloc[0]
    assert (row["mean"], row["std"], row["update"]) == (pytest.approx(35.0), pytest.approx(5.0), 25)


def test_updates_to_90_counts_fine_tuning_updates_only():
    table = T.build_table(records_of(), ["A", "B"], "updates-to-90")
    assert table.baseline == "A"
    # targets: 0.9 * 27.5 = 24.75 on hopper, 0.9 * 70 = 63 on walker
    b = table.cell("hopper-medium", "B")
    assert (b["mean"], b["std"]) == (pytest.approx(17.5), pytest.approx(7.5))  # seeds at 10 and 25
    b = table.cell("walker2d-medium", "B")
    assert (b["mean"], b["std"]) == (pytest.approx(12.5), pytest.approx(7.5))  # 5 and 20, pretrain_updates not added
    # A on walker: seed 0 (60) never reaches 63, seed 1 reaches it at 5 -> reported, not averaged silently
    a = table.cell("walker2d-medium", "A")
    assert a["mean"] == 5 and a["n_seeds"] == 1 and a["partial"]
    assert any("1 of 2 seeds never reached" in n for n in table.notes)


def test_updates_to_90_with_explicit_baseline():
    table = T.build_table(records_of(), ["A", "B"], "updates-to-90", baseline="B")
    # B's hopper final: seed0 30, seed1 mean(20,24,40,40)=31 -> 30.5; target 27.45
    a = table.cell("hopper-medium", "A")
    assert a["mean"] == pytest.approx((20 + 25) / 2)


def test_compute_is_wall_clock_per_seed():
    table = T.build_table(records_of(), ["A"], "compute")
    cell = table.cell("hopper-medium", "A")
    assert cell["mean"] == pytest.approx((360 + 720) / 2) and cell["std"] == pytest.approx(180)
    frame = long_frame().assign(pretrain_wall_clock_s=30.0)
    assert M.per_seed_compute(frame, "total")["value"].min() == pytest.approx(390)
    assert M.per_seed_compute(frame, "pretrain")["value"].max() == pytest.approx(30)
    # B is pre-trained (pretrain_updates 100) with no recorded time: its own column, empty, and a note
    table = T.build_table(records_of(), ["A", "B"], "compute")
    assert table.variants == ["A", "B: pre-training", "B"]
    assert table.cell("hopper-medium", "B: pre-training")["n_seeds"] == 0 and table.partial
    assert any("B: pre-training time not found" in n for n in table.notes)
    assert "| hopper-medium | **9.0 min ± 3.0 min** | — † | **9.0 min ± 3.0 min** |" in T.render(table, "md")


def test_bold_rule_best_and_within_one_percent():
    assert M.bold_mask([100.0, 99.0, 98.9, math.nan]) == [True, True, False, False]
    assert M.bold_mask([10.0, 10.1, 10.2], higher_is_better=False) == [True, True, False]
    assert M.bold_mask([math.nan, math.nan]) == [False, False]


# -- rendering --------------------------------------------------------------------------------------

MD_SNAPSHOT = """\
**Final score: mean of the last 4 evaluations, mean ± std over seeds**

| Average Last Four | A | B |
|---|---|---|
| hopper-medium | 27.5 ± 7.5 | **30.5 ± 0.5** |
| walker2d-medium | **70.0 ± 10.0** | 67.0 ± 1.0 |
| **Average over datasets** | **48.8 ± 8.8** | **48.8 ± 0.8** |
"""

LATEX_SNAPSHOT = r"""\begin{table}[t]
\centering
\small
\caption{Final score: mean of the last 4 evaluations, mean $\pm$ std over seeds}
\begin{tabular}{lcc}
\toprule
Average Last Four & A & B \\
\midrule
hopper-medium & 27.5 $\pm$ 7.5 & \textbf{30.5 $\pm$ 0.5} \\
walker2d-medium & \textbf{70.0 $\pm$ 10.0} & 67.0 $\pm$ 1.0 \\
\midrule
Average over datasets & \textbf{48.8 $\pm$ 8.8} & \textbf{48.8 $\pm$ 0.8} \\
\bottomrule
\end{tabular}
\end{table}
"""


def test_markdown_and_latex_snapshots():
    table = T.build_table(records_of(), ["A", "B"], "final")
    assert T.render(table, "md") == MD_SNAPSHOT
    assert T.render(table, "latex") == LATEX_SNAPSHOT
    html = T.render(table, "html")
    assert "<b>30.5 ± 0.5</b>" in html and html.count("<tr") == 4


def test_csv_is_long_with_average_row():
    table = T.build_table(records_of(), ["A", "B"], "final")
    frame = pd.read_csv(pd.io.common.StringIO(T.render(table, "csv")))
    assert list(frame.columns[:5]) == ["dataset", "variant", "mean", "std", "n_seeds"]
    assert len(frame) == 6 and list(frame["dataset"].unique()) == ["hopper-medium", "walker2d-medium", "average"]
    avg_b = frame[(frame["dataset"] == "average") & (frame["variant"] == "B")].iloc[0]
    assert avg_b["mean"] == pytest.approx(48.75) and avg_b["std"] == pytest.approx(0.75)


def test_latex_escapes_names():
    assert T.tex("τ=0.1 & 50% S_10") == r"$\tau$=0.1 \& 50\% S\_10"


# -- inputs -----------------------------------------------------------------------------------------

def test_csv_and_run_directories_give_the_same_table(tmp_path):
    from_csv = load_records(csv=write_csv(tmp_path))
    from_dirs = load_records(results=write_run_dirs(tmp_path / "results"))
    for measure in M.MEASURES:
        a = T.render(T.build_table(from_csv, ["A", "B"], measure), "csv")
        b = T.render(T.build_table(from_dirs, ["A", "B"], measure), "csv")
        assert a == b, measure
    assert T.render(T.build_table(from_csv, ["A", "B"]), "md") == MD_SNAPSHOT


def test_csv_errors_name_the_file_and_column(tmp_path):
    bad = tmp_path / "bad.csv"
    long_frame().drop(columns=["seed"]).to_csv(bad, index=False)
    with pytest.raises(UserError, match=r"bad\.csv.*seed"):
        read_long_csv(bad)
    frame = long_frame().astype({"normalized_score": object})
    frame.loc[3, "normalized_score"] = "oops"
    frame.to_csv(bad, index=False)
    with pytest.raises(UserError, match=r"normalized_score.*row 4.*oops"):
        read_long_csv(bad)
    with pytest.raises(UserError, match="no such file"):
        read_long_csv(tmp_path / "nope.csv")


def test_two_sweeps_with_the_same_baseline_are_refused_and_tune_files_skipped(tmp_path):
    write_run_dirs(tmp_path / "table6" / "runs")
    write_run_dirs(tmp_path / "table7" / "runs")
    # Tune's own params.json (the trial's config) sits beside the runs and is not a run directory
    (tmp_path / "_tune").mkdir()
    (tmp_path / "_tune" / "params.json").write_text('{"algorithm": "cql", "trial": {}, "storage": "."}')
    assert read_run_dirs(tmp_path / "table6").variants == ["A", "B"]
    with pytest.raises(UserError, match=r"two records for variant 'A'.*table6.*table7.*one sweep's folder"):
        read_run_dirs(tmp_path)
    with pytest.raises(UserError, match="no run directories found"):
        read_run_dirs(tmp_path / "_tune")


def test_metrics_without_required_column_is_a_clear_error(tmp_path):
    rd = RunDir(tmp_path / "run")
    rd.write_params({"algorithm": "dt", "dataset": "hopper-medium-v2", "seeds": [0]})
    rd.append_metrics([{"seed": 0, "update": 5}], ["seed", "update"])
    with pytest.raises(UserError, match=r"metrics\.csv.*normalized_score"):
        read_run_dirs(tmp_path)


def test_variant_names_and_dataset_keys():
    assert derive_variant({"algorithm": "cql", "pretrain": "none"}) == "CQL"
    assert derive_variant({"algorithm": "cql", "pretrain": "mdp"}) == "CQL+MDP"
    assert derive_variant({"algorithm": "dt", "pretrain": {"data": "mc", "states": 100}}) == "DT+Synthetic"
    assert derive_variant({"algorithm": "dt", "pretrain": None}) == "DT"
    assert derive_variant({"algorithm": "dt", "variant": "S1000"}) == "S1000"
    assert dataset_key("/x/hopper_medium_replay-v2.hdf5") == "hopper-medium-replay"
    assert dataset_key("hopper-medium-sac-200k") == "hopper-medium-sac-200k"


def test_dataset_column_in_metrics_overrides_params(tmp_path):
    rd = RunDir(tmp_path / "group")
    rd.write_params({"algorithm": "cql", "datasets": ["hopper-medium-v2", "hopper-medium-replay-v2"], "seeds": [0]})
    rd.append_metrics([{"seed": 0, "update": 5, "normalized_score": 1.0, "dataset": "hopper-medium-v2"},
                       {"seed": 0, "update": 5, "normalized_score": 2.0, "dataset": "hopper_medium_replay-v2"}],
                      ["seed", "update", "normalized_score", "dataset"])
    records = read_run_dirs(tmp_path)
    assert records.datasets == ["hopper-medium-replay", "hopper-medium"]
    assert records.variants == ["CQL"]


# -- partial results --------------------------------------------------------------------------------

def test_partial_results_are_reported_not_silently_averaged(tmp_path):
    root = tmp_path / "results"
    # seed 1 of B on hopper stops after 3 evaluations; B's walker run has not started evaluating
    drop = {("B", "hopper-medium", 1, u) for u in (20, 25, 30)}
    frame = long_frame()
    write_run_dirs(root, frame[~((frame["variant"] == "B") & (frame["dataset"] == "walker2d-medium"))], drop=drop)
    (root / "B_hopper-medium" / "DONE").unlink()  # still running
    rd = RunDir(root / "B_walker")
    rd.write_params({"algorithm": "cql", "variant": "B", "dataset": "walker2d-medium-v2", "seeds": [0, 1, 2],
                     "updates": 30, "eval_every": 5})
    # A on walker: params promise seeds 0-2, only 0-1 ran
    params = RunDir(root / "A_walker2d-medium").read_params()
    RunDir(root / "A_walker2d-medium").write_params({**params, "seeds": [0, 1, 2]})
    table = T.build_table(read_run_dirs(root), ["A", "B"], "final")
    notes = "\n".join(table.notes)
    assert "B / hopper-medium: seeds 1 short of evaluations (3 of 6)" in notes
    assert "B / walker2d-medium: no evaluations yet" in notes
    assert "A / walker2d-medium: seeds 2 missing (2 of 3 seeds)" in notes
    assert "B: average over 1 of 2 datasets" in notes
    assert table.cell("hopper-medium", "B")["partial"] and not table.cell("hopper-medium", "A")["partial"]
    md = T.render(table, "md")
    assert "†" in md and "partial" in md
    assert "| walker2d-medium | **70.0 ± 10.0** † | — † |" in md
    csv = pd.read_csv(pd.io.common.StringIO(T.render(table, "csv")))
    assert csv.set_index(["dataset", "variant"]).loc[("hopper-medium", "B"), "partial"]


def test_a_row_being_written_is_left_for_later(tmp_path):
    root = write_run_dirs(tmp_path / "r")
    metrics = root / "A_hopper-medium" / "metrics.csv"
    metrics.write_text(metrics.read_text() + "0,35,12.")  # a sweep appending as we read
    records = read_run_dirs(root)
    assert records.frame["update"].max() == 30 and len(records.frame) == len(long_frame())


def test_partial_csv_infers_expected_evaluations(tmp_path):
    frame = long_frame()
    frame = frame[~((frame["variant"] == "A") & (frame["seed"] == 1) & (frame["update"] > 10))]
    table = T.build_table(read_long_csv(write_csv(tmp_path, frame)), ["A", "B"], "final")
    assert any("A / hopper-medium: seeds 1 short of evaluations (2 of 6)" in n for n in table.notes)


def test_unknown_variant_is_an_error_listing_the_found_ones():
    with pytest.raises(UserError, match=r"--variants: C not in the records \(found: A, B\)"):
        T.build_table(records_of(), ["A", "C"], "final")


# -- the paper side by side and sweep files ---------------------------------------------------------

def paper_like_frame():
    frame = long_frame()
    frame["dataset"] = frame["dataset"].map({"hopper-medium": "hopper-medium", "walker2d-medium": "walker2d-medium"})
    frame["variant"] = frame["variant"].map({"A": "DT", "B": "DT+Synthetic"})
    frame["algorithm"] = "dt"
    return frame


def test_sweep_file_columns_and_paper_side_by_side(tmp_path):
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / "table1.yaml").write_text("variants:\n  - name: DT\n  - name: DT+Wiki\n  - name: DT+Synthetic\n")
    assert T.sweep_variants(1, sweeps) == (["DT", "DT+Wiki", "DT+Synthetic"], {})
    assert T.sweep_variants(18, sweeps)[0] == ["DT", "DT+Wiki", "DT+Synthetic"]  # 18 <-> 1
    records = read_long_csv(write_csv(tmp_path, paper_like_frame()))
    table = T.build_table(records, T.sweep_variants(1, sweeps)[0], "final", strict_variants=False)
    T.attach_paper(table, 1)
    assert "DT+Wiki: no runs in the records" in table.notes and table.partial
    # the paper's average over the datasets both have: (58.2 + 70.4) / 2, ± (3.2 + 2.9) / 2
    cmp = table.comparison("average", "DT")
    assert (cmp["paper_mean"], cmp["paper_std"]) == (pytest.approx(64.3), pytest.approx(3.05))
    cmp = table.comparison("hopper-medium", "DT")
    assert cmp["paper_mean"] == 58.2 and cmp["diff"] == pytest.approx(27.5 - 58.2) and cmp["within_spread"] is False
    cmp = table.comparison("walker2d-medium", "DT")  # 70.0 vs the paper's 70.4: within the seeds' std of 10
    assert cmp["diff"] == pytest.approx(-0.4) and cmp["within_spread"] is True
    md = T.render(table, "md")
    assert "| DT (paper) | Δ |" in md and "58.2 ± 3.2" in md and "−0.4 ✓" in md
    csv = pd.read_csv(pd.io.common.StringIO(T.render(table, "csv")))
    assert {"paper_mean", "paper_std", "diff", "within_spread"} <= set(csv.columns)


def test_paper_columns_match_by_spelling_position_or_sweep_key():
    mapping, _ = T.match_paper_columns(["CQL", "S1000", "tau=0.1"], ["CQL", "S=10", "S=1,000", "τ=0.1"])
    assert mapping == {"CQL": 0, "S1000": 2, "tau=0.1": 3}
    mapping, notes = T.match_paper_columns(["base", "x", "y"], ["DT", "1-MC", "2-MC"])
    assert mapping == {"base": 0, "x": 1, "y": 2} and len(notes) == 3
    mapping, _ = T.match_paper_columns(["base", "mine"], ["CQL", "1K updates", "1M updates"], {"mine": "1M updates"})
    assert mapping == {"mine": 2}
    assert T._norm("1K updates") == T._norm("1000") and T._norm("S=10,000") == T._norm("s10000")


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5, 6, 7, 8, 26, 27, 28, 29, 11, 12, 13])
def test_repository_sweeps_match_the_paper_columns_by_name(number):
    if not (T.SWEEPS_DIR / f"table{T.sweep_table_number(number)}.yaml").is_file() and number not in (11, 12, 13):
        pytest.skip("sweep file not in this checkout")
    variants, explicit = T.sweep_variants(number)
    columns = T.paper_table(number)["columns"]
    mapping, notes = T.match_paper_columns(variants, columns, explicit)
    assert notes == [] and mapping == {v: i for i, v in enumerate(variants)}


def test_bad_sweep_file_is_a_clear_error(tmp_path):
    (tmp_path / "table3.yaml").write_text("variants: [{states: 10}]\n")
    with pytest.raises(UserError, match=r"table3\.yaml: variants\[0\] has no 'name:'"):
        T.sweep_variants(3, tmp_path)
    with pytest.raises(UserError, match="no sweep file"):
        T.sweep_variants(6, tmp_path)


# -- the command line -------------------------------------------------------------------------------

def test_tables_command_end_to_end(tmp_path, capsys):
    csv = write_csv(tmp_path)
    out = tmp_path / "t.md"
    assert main(["tables", "--csv", str(csv), "--variants", "A,B", "--out", str(out)]) == 0
    assert out.read_text() == MD_SNAPSHOT
    assert main(["tables", "--csv", str(csv), "--variants", "A,B", "--format", "latex"]) == 0
    assert capsys.readouterr().out == LATEX_SNAPSHOT
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / "table1.yaml").write_text("variants:\n  - name: DT\n  - name: DT+Synthetic\n")
    csv2 = tmp_path / "paper.csv"
    paper_like_frame().to_csv(csv2, index=False)
    assert main(["tables", "--csv", str(csv2), "--table", "18", "--sweeps-dir", str(sweeps), "--paper",
                 "--format", "csv"]) == 0
    result = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    row = result.set_index(["dataset", "variant"]).loc[("hopper-medium", "DT")]
    assert row["mean"] == pytest.approx(40.0) and row["paper_mean"] == pytest.approx(68.3)  # best, table 18


@pytest.mark.parametrize("argv, message", [
    (["--variants", "A,B", "--paper"], "--paper: none of the paper's final tables has the columns A, B"),
    (["--variants", "Y,Z"], "none of the variants Y, Z is in the records (found: A, B)"),
    (["--table", "9"], "--table 9: not one of the paper's result tables"),
    (["--table", "6", "--sweeps-dir", "."], "no sweep file"),
])
def test_tables_command_errors_are_one_line(tmp_path, capsys, argv, message):
    assert main(["tables", "--csv", str(write_csv(tmp_path))] + argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_tables_command_bad_option_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["tables", "--csv", str(write_csv(tmp_path)), "--variants", "A", "--measure", "fastest"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# -- curves -----------------------------------------------------------------------------------------

def png_size(path):
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def ablation_frame():
    """A, plus A fine-tuned on half the data ("A r=0.5") and A with a 15-update budget ("A @15")."""
    frame = long_frame()
    a = frame[frame["variant"] == "A"]
    ratio = a.assign(variant="A r=0.5", finetune_ratio=0.5, normalized_score=a["normalized_score"] / 2)
    budget = a[a["update"] <= 15].assign(variant="A @15")
    return pd.concat([frame.assign(finetune_ratio=1.0), ratio, budget.assign(finetune_ratio=1.0)], ignore_index=True)


def test_curves_render_pngs_of_the_expected_size(tmp_path):
    csv = write_csv(tmp_path, ablation_frame())
    out = tmp_path / "figs"
    assert main(["curves", "--csv", str(csv), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == sorted(["score_average.png", "score_hopper-medium.png", "score_walker2d-medium.png",
                            "loss_average.png", "loss_hopper-medium.png", "loss_walker2d-medium.png",
                            "ablation_updates.png", "ablation_ratio.png"])
    for p in out.glob("*.png"):
        assert png_size(p) == (int(FIGSIZE[0] * DPI), int(FIGSIZE[1] * DPI))


def test_ablation_points_by_budget_and_ratio():
    from analysis.curves import ablation_points, base_variant

    assert base_variant("S=A=10 @200k") == "S=A=10" and base_variant("CQL+IID r=0.25") == "CQL+IID"
    assert base_variant("PT 1k") == "PT 1k"
    points = ablation_points(ablation_frame()).set_index("variant")
    assert points.loc["A @15", ["base", "budget", "ratio"]].tolist() == ["A", 15, 1.0]
    # A @15's final = mean of its 3 evaluations: hopper (10 + 10/3) / 2, walker 70
    assert points.loc["A @15", "mean"] == pytest.approx(((10 + 10 / 3) / 2 + 70) / 2)
    assert points.loc["A r=0.5", "mean"] == pytest.approx(points.loc["A", "mean"] / 2)
    assert points.loc["A r=0.5", "ratio"] == 0.5


def test_curves_offset_pretrained_variants():
    from analysis.curves import average_over_datasets, curve_stats

    stats = curve_stats(records_of().frame, offset=True)
    assert stats[stats["variant"] == "B"]["x"].min() == 105 and stats[stats["variant"] == "A"]["x"].min() == 5
    avg = average_over_datasets(stats)
    first = avg[(avg["variant"] == "A") & (avg["x"] == 5)].iloc[0]
    assert first["mean"] == pytest.approx((0 + 70) / 2) and first["std"] == pytest.approx((0 + 10) / 2)


def test_curves_from_run_directories(tmp_path):
    written = plot_curves(read_run_dirs(write_run_dirs(tmp_path / "r")), tmp_path / "png", ["B"])
    assert all(p.stat().st_size > 1000 for p in written) and len(written) == 7


# -- params.json as the algorithms and the sweep write it -------------------------------------------

def test_plain_run_and_sweep_trial_params(tmp_path, monkeypatch):
    """Shapes of synthrl.cql/dt run_params (plain run) and trainables.trial_params (sweep trial)."""
    store = tmp_path / "store"
    monkeypatch.setenv("SYNTHRL_STORE", str(store))
    artifact = store / "artifacts" / "cql-pretrain" / "k123"
    artifact.mkdir(parents=True)
    (artifact / "pretrain.json").write_text('{"wall_clock_s": 240.5, "curve": []}')
    dt_artifact = store / "artifacts" / "dt-pretrain" / "k456"
    dt_artifact.mkdir(parents=True)
    (dt_artifact / "losses.csv").write_text("update,train_loss,lr,wall_clock_s\n10000,2.0,1e-4,50\n20000,1.5,1e-4,99\n")
    cql = {"algorithm": "cql", "variant": "cql+mdp", "dataset": "hopper-medium-v2", "seeds": [0, 1], "pretrain": "mdp",
           "pretrain_key": "k123", "total_updates": 10,
           "config": {"pretrain_updates": 1000, "updates": 10, "extra_updates": 0, "eval_every": 5, "finetune_ratio": 1.0}}
    dt = {"algorithm": "dt", "variant": "dt+mc", "dataset": "hopper_medium-v2", "seeds": [0],
          "pretrained": {"path": None, "artifact_kind": "dt-pretrain", "artifact_key": "k456", "step": 20000},
          "config": {"pretrain": {"data": "mc", "states": 100}, "pretrain_step": 20000, "updates": 10,
                     "extra_updates": 0, "eval_every": 5, "finetune_ratio": 0.5}}
    trial = {**cql, "variant": "S=A=10", "pretrain_updates": 1000, "finetune_ratio": 1.0,
             "sweep": {"name": "table6", "trial_id": "t0"}, "dataset": "walker2d-medium-v2"}
    for name, params in (("cql", cql), ("dt", dt), ("trial", trial)):
        rd = RunDir(tmp_path / "results" / name)
        rd.write_params(params)
        rows = [{"seed": s, "update": u, "normalized_score": 50.0 + u, "q_loss": 1.0, "cql_loss": 2.0, "wall_clock_s": 6.0 * u}
                for u in (5, 10) for s in params["seeds"]]
        rd.append_metrics(rows, ["seed", "update", "normalized_score", "q_loss", "cql_loss", "wall_clock_s"])
        rd.mark_done()
    records = read_run_dirs(tmp_path / "results")
    info = records.frame.groupby("variant").first()
    assert sorted(records.variants) == ["CQL+MDP", "DT+Synthetic", "S=A=10"]
    assert info.loc["CQL+MDP", "pretrain_updates"] == 1000 and info.loc["DT+Synthetic", "pretrain_updates"] == 20000
    assert info.loc["DT+Synthetic", "finetune_ratio"] == 0.5
    assert info.loc["CQL+MDP", "train_loss"] == 3.0  # Q loss + conservative loss
    assert info.loc["CQL+MDP", "pretrain_wall_clock_s"] == 240.5
    assert info.loc["DT+Synthetic", "pretrain_wall_clock_s"] == 99  # the step fine-tuning starts from
    table = T.build_table(records, ["CQL+MDP", "S=A=10"], "compute")
    assert table.cell("hopper-medium", "CQL+MDP")["mean"] == pytest.approx(60)
    assert table.cell("hopper-medium", "CQL+MDP: pre-training")["mean"] == pytest.approx(240.5)
    # 2 evaluations expected (10 / 5), 2 present, DONE written: only the dataset each lacks is reported
    assert table.notes[:2] == ["CQL+MDP / walker2d-medium: missing (no runs)", "S=A=10 / hopper-medium: missing (no runs)"]
    assert not table.cell("hopper-medium", "CQL+MDP")["partial"]


def test_compute_table_12_beside_the_paper_covers_its_datasets_only(tmp_path, capsys):
    frame = paper_like_frame()
    frame["dataset"] = frame["dataset"].map({"hopper-medium": "hopper-medium-expert", "walker2d-medium": "walker2d-medium"})
    frame.loc[frame["variant"] == "DT+Synthetic", "pretrain_updates"] = 20000
    csv = tmp_path / "dt.csv"
    frame.to_csv(csv, index=False)
    assert main(["tables", "--csv", str(csv), "--table", "12", "--paper", "--format", "csv"]) == 0
    out = pd.read_csv(pd.io.common.StringIO(capsys.readouterr().out))
    assert set(out["dataset"]) == {"hopper-medium-expert", "average"}
    row = out.set_index(["dataset", "variant"]).loc[("hopper-medium-expert", "DT")]
    assert row["mean"] == pytest.approx(540) and row["paper_mean"] == pytest.approx(115 * 60)  # "1 hrs 55 mins"
    assert "DT+Synthetic: pre-training" in set(out["variant"])
