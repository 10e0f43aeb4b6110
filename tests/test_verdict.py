"""analysis.claims and `synthrl verdict`: the paper's claims judged on per-seed scores."""

import io
import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from analysis import claims as C
from analysis import stats as S
from analysis.paper import PAPER_NUMBERS
from analysis.records import PAPER_DATASETS, read_long_csv
from synthrl import cli
from synthrl.errors import UserError

UPDATES = (85000, 90000, 95000, 100000)


def _write_csv(path, scores, evals=(100000,), algorithm=None):
    """scores: {variant: {dataset: [one number per seed]}} -> a long CSV (each seed's evaluations equal);
    algorithm: {variant: label}, default cql for CQL* variants, else dt."""
    algorithm = algorithm or {}
    rows = [{"algorithm": algorithm.get(v, "cql" if v.startswith("CQL") else "dt"), "variant": v, "dataset": d, "seed": seed, "update": u, "normalized_score": value}
            for v, by_dataset in scores.items() for d, values in by_dataset.items()
            for seed, value in enumerate(values) for u in evals]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _records(tmp_path, scores):
    return read_long_csv(_write_csv(tmp_path / "records.csv", scores))


def _claims(tmp_path, text, name="claims.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return C.load_claims(path)


CLAIM = """claims:
- id: {id}
  table: 1
  section: "3.3"
  quote: "a sentence"
  x: {x}
  y: {y}
  direction: {direction}
{extra}"""


def _claim(tmp_path, x="X", y="Y", direction="better", extra="  scope: average\n", id="c"):
    return _claims(tmp_path, CLAIM.format(id=id, x=x, y=y, direction=direction, extra=extra))


def _grid(rng, shift, datasets=12, seeds=20, sd=5.0):
    """12 datasets x 20 seeds around dataset-specific means, plus ``shift``."""
    return {PAPER_DATASETS[i]: list(60.0 + 3 * i + shift + rng.normal(0, sd, seeds)) for i in range(datasets)}


# -- hand-computed -----------------------------------------------------------------------------------

def test_two_datasets_three_seeds_match_the_hand_computed_numbers(tmp_path):
    # dataset a: X 3,4,5 vs Y 1,2,3: pairs won 2 + ½ (3 = 3) + 3 + 3 = 8.5 of 9; dataset b: the same
    # seeds on both sides, P = ½.  P(X > Y) = (8.5/9 + 1/2) / 2 = 13/18; X − Y = (2 + 0) / 2 = 1
    a, b = PAPER_DATASETS[0], PAPER_DATASETS[1]
    records = _records(tmp_path, {"X": {a: [3, 4, 5], b: [1, 2, 3]}, "Y": {a: [1, 2, 3], b: [1, 2, 3]}})
    [verdict] = C.judge(records, _claim(tmp_path))
    assert verdict.p_improvement.value == pytest.approx(13 / 18)
    assert verdict.difference.value == pytest.approx(1.0)
    assert verdict.datasets == (a, b)
    assert verdict.seeds == (3, 3)
    assert verdict.p_improvement.low <= verdict.p_improvement.value <= verdict.p_improvement.high
    # dataset b (no effect at all) holds the P interval at or below ½ in many resamples: not held, not proven
    assert verdict.status in (C.INCONCLUSIVE, C.HELD)
    assert "average over 2 of the paper's 12 datasets" in verdict.note


def test_the_measure_is_the_claims_own(tmp_path):
    # final = the mean of the last 4 evaluations, best = the highest: X's last evaluation is a spike
    d = PAPER_DATASETS[0]
    rows = []
    for seed in range(3):
        for u, (x, y) in zip(UPDATES, [(10, 20), (10, 20), (10, 20), (50, 20)]):
            rows += [{"algorithm": "dt", "variant": "X", "dataset": d, "seed": seed, "update": u, "normalized_score": x},
                     {"algorithm": "dt", "variant": "Y", "dataset": d, "seed": seed, "update": u, "normalized_score": y}]
    pd.DataFrame(rows).to_csv(tmp_path / "r.csv", index=False)
    records = read_long_csv(tmp_path / "r.csv")
    final = C.judge(records, _claim(tmp_path))[0]
    best = C.judge(records, _claim(tmp_path, extra="  measure: best\n"))[0]
    assert final.difference.value == pytest.approx((10 * 3 + 50) / 4 - 20)
    assert best.difference.value == pytest.approx(50 - 20)


# -- planted, null, reversed ---------------------------------------------------------------------------

def test_a_planted_effect_is_held(tmp_path):
    rng = np.random.default_rng(7)
    y = _grid(rng, 0.0)
    x = {d: list(np.asarray(v) + 10 + rng.normal(0, 5, 20)) for d, v in y.items()}
    [verdict] = C.judge(_records(tmp_path, {"X": x, "Y": y}), _claim(tmp_path))
    assert verdict.status == C.HELD
    assert verdict.difference.low > 0 and verdict.p_improvement.low > 0.5
    assert verdict.seeds == (20, 20) and len(verdict.datasets) == 12 and verdict.note == ""


def test_a_null_effect_is_inconclusive(tmp_path):
    rng = np.random.default_rng(11)
    records = _records(tmp_path, {"X": _grid(rng, 0.0), "Y": _grid(rng, 0.0)})
    [verdict] = C.judge(records, _claim(tmp_path))
    assert verdict.status == C.INCONCLUSIVE
    assert verdict.difference.low < 0 < verdict.difference.high


def test_a_reversed_effect_is_not_held(tmp_path):
    rng = np.random.default_rng(3)
    records = _records(tmp_path, {"X": _grid(rng, -10.0), "Y": _grid(rng, 0.0)})
    [verdict] = C.judge(records, _claim(tmp_path))
    assert verdict.status == C.NOT_HELD
    assert verdict.difference.high < 0 and verdict.p_improvement.high < 0.5


@pytest.mark.parametrize("shift, direction, margin, status", [
    (-1.0, "not worse", 3, C.HELD),         # X a little worse, well within the margin
    (-10.0, "not worse", 3, C.NOT_HELD),    # far beyond it
    (-3.0, "not worse", 3, C.INCONCLUSIVE),  # right on it: the CI straddles −margin
    (0.0, "not better", 2, C.HELD),
    (10.0, "not better", 2, C.NOT_HELD),
])
def test_not_worse_and_not_better_with_a_margin(tmp_path, shift, direction, margin, status):
    rng = np.random.default_rng(5)
    y = _grid(rng, 0.0)
    x = {d: list(np.asarray(v) + shift + rng.normal(0, 1, 20)) for d, v in y.items()}
    [verdict] = C.judge(_records(tmp_path, {"X": x, "Y": y}),
                        _claim(tmp_path, direction=direction, extra=f"  margin: {margin}\n"))
    assert verdict.status == status


@pytest.mark.parametrize("p, diff, status", [
    ((0.6, 0.55, 0.7), (2.0, 0.5, 3.0), C.HELD),
    ((0.6, 0.55, 0.7), (1.0, -1.0, 2.0), C.INCONCLUSIVE),   # the difference's CI straddles 0
    ((0.52, 0.45, 0.6), (2.0, 0.5, 3.0), C.INCONCLUSIVE),   # P's CI straddles ½
    ((0.4, 0.3, 0.45), (0.5, -1.0, 2.0), C.NOT_HELD),       # P's CI entirely below ½ is enough
    ((0.5, 0.4, 0.6), (-2.0, -3.0, -0.5), C.NOT_HELD),
    ((0.6, math.nan, math.nan), (2.0, math.nan, math.nan), C.INCONCLUSIVE),  # no interval
])
def test_the_better_rule(tmp_path, p, diff, status):
    [claim] = _claim(tmp_path)
    assert C.decide(claim, S.Estimate(*p), S.Estimate(*diff)) == status


def test_a_missing_variant_or_dataset_is_not_run(tmp_path):
    a, b = PAPER_DATASETS[:2]
    records = _records(tmp_path, {"X": {a: [1, 2, 3]}, "Y": {a: [0, 1, 2], b: [0, 1, 2]}})
    [no_z] = C.judge(records, _claim(tmp_path, x="Z"))
    assert no_z.status == C.NOT_RUN and "no records of Z" in no_z.note
    [no_b] = C.judge(records, _claim(tmp_path, extra=f"  scope: [{a}, {b}]\n"))
    assert no_b.status == C.NOT_RUN and f"X / {b}" in no_b.note
    [average] = C.judge(records, _claim(tmp_path))  # the average: over the dataset both have, and said so
    assert average.datasets == (a,) and f"left out {b}" in average.note


def test_a_variant_name_of_the_other_algorithm_is_not_judged(tmp_path):
    # 'tau=1' and 'tau=0.01' name columns of table 4 (DT) and table 7 (CQL): CQL runs answer table 7 only
    a = PAPER_DATASETS[0]
    scores = {"tau=1": {a: [5, 6, 7]}, "tau=0.01": {a: [1, 2, 3]}}
    claim = CLAIM.format(id="t{n}", x="tau=1", y="tau=0.01", direction="better", extra="").replace("table: 1", "table: {n}")
    path = tmp_path / "c.yaml"
    path.write_text(claim.format(n=4) + claim.format(n=7).replace("claims:\n", ""))
    claims = C.load_claims(path)
    cql = read_long_csv(_write_csv(tmp_path / "cql.csv", scores, algorithm={"tau=1": "cql", "tau=0.01": "cql"}))
    on_table_4, on_table_7 = C.judge(cql, claims)
    assert on_table_4.status == C.NOT_RUN and "table 4 is dt's" in on_table_4.note
    assert on_table_7.status != C.NOT_RUN
    other = read_long_csv(_write_csv(tmp_path / "o.csv", scores, algorithm={"tau=1": "mine", "tau=0.01": "mine"}))
    assert all(v.status != C.NOT_RUN for v in C.judge(other, claims))  # a label the registry does not know


def test_family_and_each_claims_expand(tmp_path):
    claims = _claim(tmp_path, x="[A, B]", y="[Y, Z]", extra="  scope: each\n")
    assert len(claims) == 2 * 2 * len(PAPER_DATASETS)
    assert claims[0].id == f"c[A vs Y]@{PAPER_DATASETS[0]}" and claims[0].family == "c"
    assert {(c.x, c.y) for c in claims} == {("A", "Y"), ("A", "Z"), ("B", "Y"), ("B", "Z")}
    assert all(len(c.scope) == 1 for c in claims)


def test_the_same_seed_gives_the_same_intervals(tmp_path):
    rng = np.random.default_rng(2)
    records = _records(tmp_path, {"X": _grid(rng, 1.0, datasets=3, seeds=5), "Y": _grid(rng, 0.0, datasets=3, seeds=5)})
    claims = _claim(tmp_path)
    assert C.judge(records, claims, seed=4) == C.judge(records, claims, seed=4)
    assert C.judge(records, claims, seed=4)[0].difference != C.judge(records, claims, seed=5)[0].difference


# -- the claims file -------------------------------------------------------------------------------

GOOD = """  - id: c{i}
    table: 1
    section: "3.3"
    quote: q
    x: A
    y: B
    direction: better
"""


@pytest.mark.parametrize("bad, message", [
    ("    direction: x\n", "claims[3].direction: expected better|not worse|not better, got 'x'"),
    ("    direction: not worse\n", "claims[3].margin: expected a number >= 0"),
    ("    direction: better\n    margin: 1\n", "claims[3].margin: a `better` claim has no margin"),
    ("    direction: better\n    table: 9\n", "claims[3].table: expected one of 1, 2"),
    ("    direction: better\n    scope: 3\n", "claims[3].scope: expected average, each or a list"),
    ("    direction: better\n    measure: compute\n", "claims[3].measure: expected final|best, got 'compute'"),
    ("    direction: better\n    directon: better\n", "claims[3]: unknown field 'directon'"),
])
def test_a_bad_claims_file_is_one_line_naming_file_and_field(tmp_path, bad, message):
    body = "".join(GOOD.format(i=i) for i in range(3))
    fourth = GOOD.format(i=3).replace("    direction: better\n", "")
    fourth = fourth.replace("    table: 1\n", "") + ("    table: 1\n" if "table:" not in bad else "") + bad
    path = tmp_path / "bad.yaml"
    path.write_text("claims:\n" + body + fourth)
    with pytest.raises(UserError) as e:
        C.load_claims(path)
    assert str(e.value).startswith(f"{path}: {message}")
    assert "\n" not in str(e.value)


def test_other_bad_claims_files(tmp_path):
    for text, message in [("[1, 2]\n", "expected a top-level 'claims:' list"),
                          ("claims: [\n", "not valid YAML"),
                          ("claims:\n" + GOOD.format(i=0) + GOOD.format(i=0), "claims[1].id: 'c0' is used twice"),
                          ("claims:\n" + GOOD.format(i=0).replace("y: B", "y: A"), "'A' is on both sides")]:
        path = tmp_path / "f.yaml"
        path.write_text(text)
        with pytest.raises(UserError, match=re.escape(message)):
            C.load_claims(path)
    with pytest.raises(UserError, match="no such file"):
        C.load_claims(tmp_path / "absent.yaml")


def test_every_claim_of_the_file_names_variants_of_its_tables_sweep():
    claims = C.load_claims()
    assert C.unknown_variants(claims) == []
    assert {c.table for c in claims} == set(C.CLAIM_TABLES)  # every table the brief covers has a claim
    assert all(c.quote and c.section for c in claims)


def test_a_misspelt_variant_is_found_by_the_consistency_check(tmp_path):
    claims = _claim(tmp_path, x="DT+Synthtic", y="DT")
    [problem] = C.unknown_variants(claims)
    assert "'DT+Synthtic' is not a variant of sweeps/table1.yaml" in problem


# -- the paper's numbers, the renderers, the command ------------------------------------------------

def test_judge_paper_gives_the_papers_average_difference_without_an_interval():
    claims = [c for c in C.load_claims() if c.id == "t1-synthetic-beats-dt"]
    [verdict] = C.judge_paper(claims)
    cells = json.loads(PAPER_NUMBERS.read_text())["tables"]["1"]["cells"]
    expected = np.mean([cells[d][2][0] - cells[d][0][0] for d in PAPER_DATASETS])  # DT+Synthetic − DT
    assert verdict.status == C.PAPER_ONLY
    assert verdict.difference.value == pytest.approx(expected)
    assert math.isnan(verdict.difference.low) and math.isnan(verdict.p_improvement.value)
    assert "agree with the claim" in verdict.note


def test_html_fragment_has_a_class_per_status_and_escapes_text(tmp_path):
    [claim] = _claim(tmp_path, x="'<b>&X'", y="Y")
    verdicts = [C.Verdict(claim, status, S.Estimate(0.7, 0.6, 0.8), S.Estimate(2, 1, 3), ("a",), (20, 20), "n<1>")
                for status in C.STATUSES]
    out = C.render_verdicts(verdicts, "html")
    assert out.startswith('<table class="verdicts">')
    for cls in ("verdict-held", "verdict-not-held", "verdict-inconclusive", "verdict-not-run", "verdict-paper-only"):
        assert f'<tr class="{cls}">' in out
    assert "<b>" not in out and "&lt;b&gt;&amp;X" in out and "n&lt;1&gt;" in out
    table = pd.read_csv(io.StringIO(C.render_verdicts(verdicts, "csv")))
    assert list(table["status"]) == list(C.STATUSES) and table["p_low"].iloc[0] == pytest.approx(0.6)
    assert C.render_verdicts(verdicts, "md").count("\n") == len(verdicts) + 2


def test_verdict_command_on_a_long_csv_judges_every_claim_whose_variants_it_holds(tmp_path, capsys):
    rng = np.random.default_rng(1)
    shift = {"DT": 0.0, "DT+Wiki": 0.0, "DT+Synthetic": 10.0, "CQL": 0.0, "CQL+MDP": 10.0}
    scores = {v: _grid(rng, s) for v, s in shift.items()}
    csv = _write_csv(tmp_path / "long.csv", scores, evals=UPDATES)
    assert cli.main(["verdict", "--csv", str(csv), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    out = pd.read_csv(io.StringIO(captured.out))
    claims = C.load_claims()
    assert list(out["claim"]) == [c.id for c in claims]
    held = set(shift)
    judged = out[out["x"].isin(held) & out["y"].isin(held)]
    assert len(judged) > 0 and set(judged["status"]) <= {C.HELD, C.NOT_HELD, C.INCONCLUSIVE}
    assert set(out.drop(judged.index)["status"]) == {C.NOT_RUN}
    status = dict(zip(out["claim"], out["status"]))
    assert status["t1-synthetic-beats-dt"] == C.HELD and status["t28-synthetic-beats-baselines[CQL+MDP vs CQL]"] == C.HELD
    assert status["t26-80k-more-matches-wiki"] == C.NOT_RUN
    assert "synthrl verdict:" in captured.err and "held" in captured.err


def test_verdict_command_paper_and_bad_input(tmp_path, capsys):
    out_file = tmp_path / "v.md"
    assert cli.main(["verdict", "--paper", "--out", str(out_file)]) == 0
    text = out_file.read_text()
    assert text.count("paper only: no per-seed data") == len(C.load_claims())
    capsys.readouterr()
    bad = tmp_path / "bad.yaml"
    bad.write_text("claims:\n" + GOOD.format(i=0).replace("direction: better", "direction: x"))
    assert cli.main(["verdict", "--paper", "--claims", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"synthrl: error: {bad}: claims[0].direction: expected better|not worse|not better, got 'x'"
    assert cli.main(["verdict", "--csv", str(tmp_path / "absent.csv")]) == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["verdict", "--paper", "--csv", "x.csv"])
    assert e.value.code == 2
