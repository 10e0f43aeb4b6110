"""analysis.stats against hand-computed small cases, a planted effect and a null effect."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis import stats as S


def test_iqm_of_a_known_array_is_the_mean_of_its_middle_half():
    # 1..8: the middle 50 % is 3, 4, 5, 6
    est = S.aggregate([np.arange(1.0, 9.0)])
    assert est["IQM"].value == pytest.approx(4.5)
    assert est["mean"].value == pytest.approx(4.5)
    assert est["median"].value == pytest.approx(4.5)
    # pooled over datasets: 1..4 and 5..8 are the same runs as 1..8
    pooled = S.aggregate([np.arange(1.0, 5.0), np.arange(5.0, 9.0)])
    assert pooled["IQM"].value == pytest.approx(4.5)
    # an outlier moves the mean but not the IQM
    skewed = S.aggregate([np.array([1.0, 2, 3, 4, 5, 6, 7, 1000])])
    assert skewed["IQM"].value == pytest.approx(4.5)
    assert skewed["mean"].value == pytest.approx(1028 / 8)


def test_optimality_gap_counts_only_the_shortfall_below_100():
    est = S.aggregate([np.array([50.0, 150.0])])
    assert est["optimality gap"].value == pytest.approx(25.0)  # 100 - mean(50, 100)


def test_probability_of_improvement_of_known_samples():
    # pairs (3,1) > , (3,3) = , (4,1) > , (4,3) >  ->  (3 + 0.5) / 4
    p = S.probability_of_improvement([np.array([3.0, 4.0])], [np.array([1.0, 3.0])])
    assert p.value == pytest.approx(0.875)
    # averaged over datasets, not pooled: second dataset X always worse -> (0.875 + 0) / 2
    p2 = S.probability_of_improvement([np.array([3.0, 4.0]), np.array([0.0, 0.0])],
                                      [np.array([1.0, 3.0]), np.array([5.0, 6.0])])
    assert p2.value == pytest.approx(0.4375)
    assert p2.low <= p2.value <= p2.high


def test_welch_p_value_matches_the_hand_computed_statistic():
    x = np.array([10.0, 12.0, 9.0, 14.0, 11.0])
    y = np.array([8.0, 7.5, 9.0, 6.0])
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    t = (x.mean() - y.mean()) / math.sqrt(vx + vy)
    df = (vx + vy) ** 2 / (vx ** 2 / (len(x) - 1) + vy ** 2 / (len(y) - 1))
    p = 2 * scipy_stats.t.sf(abs(t), df)
    d = S.dataset_difference(x, y)
    assert d.p_value == pytest.approx(p, rel=1e-9)
    assert d.diff.value == pytest.approx(x.mean() - y.mean())
    assert d.diff.low < d.diff.value < d.diff.high


def _grid(rng, shift, datasets=12, seeds=20):
    return [rng.normal(60.0 + 5 * i, 5.0, seeds) + shift for i in range(datasets)]


def test_planted_effect_is_found():
    rng = np.random.default_rng(7)
    base, better = _grid(rng, 0.0), _grid(rng, 4.0)
    p = S.probability_of_improvement(better, base)
    assert p.low > 0.5
    diff = S.mean_difference(better, base)
    assert diff.low > 0 and diff.low < 4.0 < diff.high
    agg_base, agg_better = S.aggregate(base), S.aggregate(better)
    assert agg_better["IQM"].low > agg_base["IQM"].value


def test_null_effect_is_inconclusive():
    rng = np.random.default_rng(11)
    a, b = _grid(rng, 0.0), _grid(rng, 0.0)
    p = S.probability_of_improvement(a, b)
    assert p.low < 0.5 < p.high
    diff = S.mean_difference(a, b)
    assert diff.low < 0 < diff.high
    d = S.dataset_difference(a[0], b[0])
    assert not d.significant and d.p_value > 0.05


def test_bootstrap_is_reproducible_by_seed():
    rng = np.random.default_rng(3)
    a, b = _grid(rng, 1.0, datasets=3, seeds=6), _grid(rng, 0.0, datasets=3, seeds=6)
    assert S.probability_of_improvement(a, b, seed=5) == S.probability_of_improvement(a, b, seed=5)
    assert S.mean_difference(a, b, seed=5) != S.mean_difference(a, b, seed=6)


def test_too_few_seeds_give_a_point_but_no_interval():
    est = S.aggregate([np.array([70.0])])
    assert est["mean"].value == 70.0 and math.isnan(est["mean"].low)
    d = S.dataset_difference(np.array([1.0]), np.array([0.0, 2.0]))
    assert math.isnan(d.p_value) and not d.significant


def test_performance_profile_fractions_and_interval():
    frac, low, high = S.performance_profile([np.array([10.0, 20.0, 30.0, 40.0])], np.array([0.0, 25.0, 50.0]))
    assert list(frac) == [1.0, 0.5, 0.0]
    assert np.all(low <= frac) and np.all(frac <= high)


def test_seed_scores_groups_by_dataset_and_drops_nan():
    per_seed = pd.DataFrame({"variant": ["A"] * 4 + ["B"], "dataset": ["d1", "d1", "d2", "d2", "d1"],
                             "seed": [0, 1, 0, 1, 0], "value": [1.0, 2.0, np.nan, 4.0, 9.0]})
    groups = S.seed_scores(per_seed, "A", ["d2", "d1", "d3"])
    assert [list(g) for g in groups] == [[4.0], [1.0, 2.0], []]


# -- synthrl tables --stats / --aggregate / --table 11-14 -------------------------------------------

MEDIUM_EXPERT = ["halfcheetah-medium-expert", "hopper-medium-expert", "walker2d-medium-expert", "ant-medium-expert"]


def planted_csv(path, variants, shift, seeds=8, datasets=MEDIUM_EXPERT, algorithm="cql", noise=3.0, noise_seed=0):
    """Long CSV: the first variant is the baseline; the others score ``shift`` more (seeded noise)."""
    rng = np.random.default_rng(noise_seed)
    rows = []
    for k, variant in enumerate(variants):
        for i, dataset in enumerate(datasets):
            for seed in range(seeds):
                level = 50.0 + 5 * i + (shift if k else 0.0) + rng.normal(0, noise)
                for j, update in enumerate([10, 20, 30, 40]):
                    rows.append({"algorithm": algorithm, "variant": variant, "dataset": dataset, "seed": seed,
                                 "update": update, "normalized_score": level + rng.normal(0, 0.1),
                                 "wall_clock_s": 60.0 * (j + 1), "pretrain_updates": 100 if k else 0,
                                 "pretrain_wall_clock_s": 240.0 if k else math.nan})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def tables(capsys, *argv):
    from synthrl.cli import main

    assert main(["tables", *map(str, argv)]) == 0
    return capsys.readouterr().out


def test_tables_stats_marks_a_planted_difference_and_not_a_null_one(tmp_path, capsys):
    csv = planted_csv(tmp_path / "r.csv", ["CQL", "CQL+MDP"], shift=8.0)
    frame = pd.read_csv(pd.io.common.StringIO(tables(capsys, "--csv", csv, "--variants", "CQL,CQL+MDP", "--stats",
                                                     "--format", "csv")))
    mdp = frame[frame["variant"] == "CQL+MDP"].set_index("dataset")
    assert mdp["ci_excludes_0"].all() and (mdp["diff_low"] > 0).all()
    assert (mdp.drop("average")["p_value"] < 0.05).all()
    assert mdp.loc["average", "p_improvement_low"] > 0.5
    assert frame[frame["variant"] == "CQL"]["diff_vs_baseline"].isna().all()  # the baseline has no Δ
    null = planted_csv(tmp_path / "n.csv", ["CQL", "CQL+MDP"], shift=0.0, noise_seed=1)
    md = tables(capsys, "--csv", null, "--variants", "CQL,CQL+MDP", "--stats")
    assert "CQL+MDP − CQL [95 % CI]" in md
    average = next(line for line in md.splitlines() if line.startswith("| **Average"))
    assert not average.rstrip(" |").endswith("*")  # the null effect is not marked


def test_tables_stats_is_reproducible_by_seed(tmp_path, capsys):
    csv = planted_csv(tmp_path / "r.csv", ["CQL", "CQL+MDP"], shift=1.0, seeds=4)
    argv = ["--csv", csv, "--variants", "CQL,CQL+MDP", "--stats", "--format", "csv"]
    first, again = tables(capsys, *argv), tables(capsys, *argv)
    other = tables(capsys, *argv, "--seed", "9")
    assert first == again and first != other


def test_tables_aggregate_gives_iqm_and_improvement_with_intervals(tmp_path, capsys):
    csv = planted_csv(tmp_path / "r.csv", ["CQL", "CQL+MDP", "CQL+IID"], shift=8.0)
    frame = pd.read_csv(pd.io.common.StringIO(tables(capsys, "--csv", csv, "--variants", "CQL,CQL+MDP,CQL+IID",
                                                     "--aggregate", "--format", "csv"))).set_index("variant")
    assert list(frame.index) == ["CQL", "CQL+MDP", "CQL+IID"] and (frame["runs"] == 32).all()
    assert (frame["iqm_low"] <= frame["iqm"]).all() and (frame["iqm"] <= frame["iqm_high"]).all()
    assert frame.loc["CQL+MDP", "p_improvement_low"] > 0.5 and math.isnan(frame.loc["CQL", "p_improvement"])
    md = tables(capsys, "--csv", csv, "--variants", "CQL,CQL+MDP", "--aggregate", "--baseline", "CQL+MDP")
    assert "| Variant | IQM | mean | median | optimality gap | P(X > CQL+MDP) | runs |" in md


def test_aggregate_of_updates_is_refused_in_one_line(tmp_path, capsys):
    from synthrl.cli import main

    csv = planted_csv(tmp_path / "r.csv", ["CQL", "CQL+MDP"], shift=1.0, seeds=2)
    assert main(["tables", "--csv", str(csv), "--variants", "CQL,CQL+MDP", "--aggregate", "--measure", "compute"]) == 2
    assert "--aggregate: for normalised scores" in capsys.readouterr().err


@pytest.mark.parametrize("number, variants, algorithm, paper_cell", [
    (11, ["DT", "DT+Wiki", "DT+Synthetic"], "dt", ("hopper-medium-expert", "DT", 23800.0)),
    (12, ["DT", "DT+Wiki", "DT+Synthetic"], "dt", ("hopper-medium-expert", "DT+Synthetic", 131.0 * 60)),
    (13, ["CQL", "CQL+MDP", "CQL+IID"], "cql", ("walker2d-medium-expert", "CQL+MDP", 130200.0)),
    (14, ["CQL+MDP"], "cql", ("ant-medium-expert", "CQL+MDP: pre-training", 4.3 * 60)),
])
def test_tables_11_to_14_beside_the_paper(tmp_path, capsys, number, variants, algorithm, paper_cell):
    # CQL alone as a baseline column for table 14's CQL+MDP (its pre-training column comes from the records)
    names = variants if len(variants) > 1 else ["CQL", *variants]
    csv = planted_csv(tmp_path / "r.csv", names, shift=5.0, seeds=2, datasets=MEDIUM_EXPERT + ["hopper-medium"],
                      algorithm=algorithm)
    frame = pd.read_csv(pd.io.common.StringIO(tables(capsys, "--csv", csv, "--table", number, "--paper",
                                                     "--format", "csv")))
    dataset, variant, paper_mean = paper_cell
    row = frame[(frame["dataset"] == dataset) & (frame["variant"] == variant)]
    assert row["paper_mean"].item() == pytest.approx(paper_mean)
    if number in (12, 14):  # the compute tables cover the medium-expert datasets only
        assert set(frame["dataset"]) == set(MEDIUM_EXPERT) | {"average"}
