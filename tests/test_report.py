"""The report page (`synthrl report`, issue 15): self-contained, escaped, provenance, partial and running
results, the tables and verdicts that apply, bad --out refused up front, and the sweep's report.html."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from analysis.provenance import collect_provenance
from analysis.records import load_records
from analysis.report import build_report
from synthrl.cli import main
from synthrl.rundir import RunDir

UPDATES = [10, 20, 30, 40, 50]


def long_frame(variants=("CQL", "CQL+MDP"), datasets=("hopper-medium", "walker2d-medium"), seeds=3, effect=5.0,
               algorithm="cql"):
    rng = np.random.default_rng(1)
    rows = []
    for v, variant in enumerate(variants):
        for dataset in datasets:
            for seed in range(seeds):
                for update in UPDATES:
                    rows.append({"algorithm": algorithm, "variant": variant, "dataset": dataset, "seed": seed,
                                 "update": update, "normalized_score": 40 + update / 5 + v * effect + rng.normal(0, 1),
                                 "train_loss": 10 / update})
    return pd.DataFrame(rows)


def write_csv(tmp_path, frame=None):
    path = tmp_path / "long.csv"
    (long_frame() if frame is None else frame).to_csv(path, index=False)
    return path


def page_of(records, provenance, **kw) -> str:
    options = {"title": "report", "description": "", "paper": False, "seed": 0, "running": None, **kw}
    return build_report(records, provenance=provenance, **options)


def csv_page(tmp_path, frame=None, **kw) -> str:
    path = write_csv(tmp_path, frame)
    return page_of(load_records(csv=path), collect_provenance(csv=path), **kw)


def write_runs(root, frame, params_extra=None, done=True, drop_seed=None):
    """One run directory per (variant, dataset), seeds as one ensemble (as a sweep writes them)."""
    for (variant, dataset), group in frame.groupby(["variant", "dataset"], sort=False):
        rd = RunDir(root / variant.replace("+", "_") / dataset)
        seeds = sorted(group["seed"].unique().tolist())
        rd.write_params({"algorithm": "cql", "variant": variant, "dataset": dataset, "seeds": seeds, "updates": 50,
                         "eval_every": 10, "sweep": {"name": "t"}, **(params_extra or {})})
        rows = group[group["seed"] != drop_seed] if drop_seed is not None else group
        rd.append_metrics(rows.to_dict("records"), ["seed", "update", "normalized_score", "train_loss"])
        if done:
            rd.mark_done()
    return root


# -- self-contained ---------------------------------------------------------------------------------------

def test_the_page_is_self_contained_every_image_an_embedded_png(tmp_path):
    page = csv_page(tmp_path)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # nothing the page would fetch: no external src/href, no script, no stylesheet link, no @import
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//|file:)""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', page))  # in-page anchors only
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) >= 4  # aggregate CIs, performance profile, average curves, per-dataset curves
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_names_from_the_records_are_escaped(tmp_path):
    frame = long_frame(variants=("CQL", "<b>bold</b> & co"))
    page = csv_page(tmp_path, frame, title="<script>alert(1)</script>", description="a < b & c")
    assert "<b>bold</b> & co" not in page and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a &lt; b &amp; c" in page


# -- what it holds ---------------------------------------------------------------------------------------

def test_provenance_from_params_json_and_the_sweep_record_is_shown(tmp_path):
    root = write_runs(tmp_path / "sweep", long_frame(),
                      {"synthrl_version": "9.8.7", "device": "cuda:0", "fast_path": {"path": "graph", "reason": "ok"},
                       "env_id": "Hopper-v4", "versions": {"torch": "2.99.1"}, "git_commit": "abc123def456"})
    (root / "sweep.json").write_text(json.dumps({"name": "my-sweep", "source": "sweeps/mine.yaml",
                                                 "created": "2026-01-02T03:04:05+00:00",
                                                 "document": {"description": "CQL against CQL+MDP, tiny"}}))
    (root / "doctor").mkdir()
    (root / "doctor" / "10.0.0.1-abcd.json").write_text(json.dumps(
        {"device": "cuda:0", "device_name": "NVIDIA H200", "torch": "2.99.1"}))
    prov = collect_provenance(results=root)
    assert prov.runs == 4 and prov.name == "my-sweep" and prov.description == "CQL against CQL+MDP, tiny"
    page = page_of(load_records(results=root), prov, title=prov.name, description=prov.description)
    for text in ("my-sweep", "CQL against CQL+MDP, tiny", "sweeps/mine.yaml", "2026-01-02T03:04:05+00:00",
                 "9.8.7", "cuda:0", "graph (ok)", "Hopper-v4", "2.99.1", "abc123def456", "NVIDIA H200",
                 "report built with"):
        assert text in page, text
    from synthrl import __version__

    assert f"synthrl {__version__}" in page  # the version that built the page, beside the runs' own


def test_partial_results_and_what_is_still_running_are_listed(tmp_path):
    root = write_runs(tmp_path / "sweep", long_frame(), done=False, drop_seed=2)
    running = ["partial CQL/hopper-medium/s0-2: update 40/50", "pending CQL+MDP/walker2d-medium/s0-2: update 0/50"]
    page = page_of(load_records(results=root), collect_provenance(results=root), running=running)
    assert 'class="status partial"' in page and "Partial results" in page
    status = page[page.index('id="status"'):page.index('id="provenance"')]
    for line in running:
        assert line in status
    assert "seeds 2 missing (2 of 3 seeds)" in status  # the tables' own partial note

    complete = csv_page(tmp_path)
    assert 'class="status"' in complete and "Complete" in complete and "Still running" not in complete


def test_a_paper_table_and_its_best_twin_are_chosen_beside_the_papers_numbers_with_stats_and_verdicts(tmp_path):
    frame = long_frame(variants=("DT", "DT+Wiki", "DT+Synthetic"), datasets=("hopper-medium", "walker2d-medium"),
                       algorithm="dt")
    page = csv_page(tmp_path, frame, paper=True)
    assert "Table 1 (final)" in page and "Table 18 (best)" in page and "All variants" not in page
    assert "DT+Synthetic (paper)" in page and "DT+Synthetic − DT [95 % CI]" in page
    assert '<table class="verdicts">' in page and "DT+Synthetic &gt; DT" in page
    assert "IQM" in page and "optimality gap" in page

    # table 28 has no best-score twin in the paper: its final table only
    table28 = csv_page(tmp_path, long_frame(variants=("CQL", "CQL+100k more", "CQL+MDP", "CQL+IID")), paper=True)
    assert "Table 28 (final)" in table28 and "(best)" not in table28 and "CQL+IID (paper)" in table28

    # variants of no paper table: one table of all of them, no paper columns without --paper
    other = csv_page(tmp_path, long_frame(variants=("Mine", "Yours")))
    assert "All variants (final)" in other and "(paper)" not in other and "Mine − Yours" not in other
    assert "Yours − Mine [95 % CI]" in other


def test_results_without_any_evaluation_yet_still_give_a_page(tmp_path):
    rd = RunDir(tmp_path / "sweep" / "CQL")
    rd.write_params({"algorithm": "cql", "variant": "CQL", "dataset": "hopper-medium", "seeds": [0, 1],
                     "updates": 50, "eval_every": 10})
    root = tmp_path / "sweep"
    page = page_of(load_records(results=root), collect_provenance(results=root), running=["pending CQL: update 0/50"])
    assert "no evaluations yet" in page and "pending CQL: update 0/50" in page and "<img" not in page


# -- the command -------------------------------------------------------------------------------------------

def test_report_command_writes_the_page(tmp_path, capsys):
    csv = write_csv(tmp_path)
    out = tmp_path / "deep" / "report.html"
    assert main(["report", "--csv", str(csv), "--out", str(out), "--title", "Quick", "--seed", "3"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    page = out.read_text()
    assert "<title>Quick</title>" in page and "seed 3" in page


@pytest.mark.parametrize("bad, message", [("dir", "is a directory, expected a file name"),
                                          ("report.txt", "expected an .html file name")])
def test_a_bad_out_is_refused_in_one_line_before_the_results_are_read(tmp_path, capsys, bad, message):
    (tmp_path / "dir").mkdir()
    # the results do not exist: the error must be about --out, so --out was checked first
    code = main(["report", "--results", str(tmp_path / "absent"), "--out", str(tmp_path / bad)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err and "--out" in err


# -- the sweep's report.html -------------------------------------------------------------------------------

def _sweep(tmp_path):
    from synthrl.sweep.schema import sweep_from_dict
    from trainables.launcher import prepare

    data = tmp_path / "hopper.hdf5"
    data.write_bytes(b"")
    doc = {"name": "rep", "algorithm": "cql", "description": "two variants, one unfinished",
           "datasets": [{"name": "h", "path": str(data), "env": "hopper"}], "seeds": "0-1", "seeds_per_trial": 2,
           "finetune": {"updates": 40, "eval_every": 20, "eval_episodes": 1}, "variants": [{"name": "A"}, {"name": "B"}]}
    storage = tmp_path / "store"
    prepared = prepare(sweep_from_dict(doc, "rep.yaml"), storage, doc, {}, out=lambda _: None)
    return storage, prepared.trials


def test_the_sweep_report_lists_unfinished_trials_and_status_report_rewrites_it(tmp_path, capsys):
    from trainables.sweep_report import REPORT_FILE, write_sweep_report
    from trainables.trainable import run_directory

    storage, trials = _sweep(tmp_path)
    for trial, updates in zip(trials, ([20, 40], [20])):   # A done, B stopped half-way
        rd = run_directory(storage, "rep", trial.trial_id)
        rd.write_params({"algorithm": "cql", "variant": trial.variant, "dataset": "h", "seeds": [0, 1],
                         "total_updates": 40, "config": {"eval_every": 20}, "sweep": {"config": trial.config}})
        rd.append_metrics([{"seed": s, "update": u, "normalized_score": 10.0 + u + s} for u in updates for s in (0, 1)],
                          ["seed", "update", "normalized_score"])
        if len(updates) == 2:
            rd.mark_done()
    lines = []
    path = write_sweep_report(storage, "rep", lines.append)
    assert path == storage / "rep" / REPORT_FILE and lines == [f"[rep] report: {path}"]
    page = path.read_text()
    assert f"partial {trials[1].trial_id}: update 20/40" in page and "two variants, one unfinished" in page
    assert "rep.yaml" in page

    path.unlink()
    assert main(["sweep", "status", "rep", "--storage", str(storage), "--report"]) == 0
    assert f"[rep] report: {path}" in capsys.readouterr().out and path.is_file()


def test_a_report_that_fails_warns_in_one_line_and_leaves_the_results(tmp_path):
    from trainables.sweep_report import write_sweep_report
    from trainables.trainable import run_directory

    storage, trials = _sweep(tmp_path)
    rd = run_directory(storage, "rep", trials[0].trial_id)
    rd.write_params({"algorithm": "cql", "variant": "A", "dataset": "h", "seeds": [0, 1]})
    rd.metrics_path.write_text("seed,update,normalized_score\n0,20,not-a-number\n")
    lines = []
    assert write_sweep_report(storage, "rep", lines.append) is None
    assert len(lines) == 1 and lines[0].startswith("[rep] warning: report not written (")
    assert "not-a-number" in lines[0] and "\n" not in lines[0]
    assert rd.metrics_path.read_text().endswith("not-a-number\n") and not (storage / "rep" / "report.html").exists()


def test_a_real_run_records_its_library_versions_commit_and_device_and_the_page_shows_them(tmp_path, monkeypatch):
    from importlib import metadata

    from synthrl.data import make_dataset
    from synthrl.envs.policies import RandomPolicy
    from synthrl.provenance import git_commit

    monkeypatch.setenv("SYNTHRL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("SYNTHRL_EVAL_WORKERS", "0")
    data = make_dataset("hopper", RandomPolicy(3, seed=0), 200, tmp_path / "hopper-random-prov.hdf5", seed=0)
    out = tmp_path / "results" / "cql"
    assert main(["run", "cql", "--dataset", str(data), "--out", str(out), "--seeds", "0", "--updates", "10",
                 "--eval-every", "10", "--eval-episodes", "1", "--batch-size", "16", "--hidden", "32",
                 "--device", "cpu", "--no-progress"]) == 0
    params = RunDir(out).read_params()
    assert params["device"] == "cpu"
    assert params["versions"]["torch"] == metadata.version("torch")
    assert params["versions"]["numpy"] == metadata.version("numpy")
    assert params.get("git_commit") == git_commit()  # None (absent) outside a git checkout
    # a resume in a session with other library versions is the same run
    recorded = dict(params, versions={**params["versions"], "torch": "0.0.1"}, git_commit="0123456789ab")
    RunDir(out).write_params(recorded)
    assert main(["run", "cql", "--dataset", str(data), "--out", str(out), "--seeds", "0", "--updates", "10",
                 "--eval-every", "10", "--eval-episodes", "1", "--batch-size", "16", "--hidden", "32",
                 "--device", "cpu", "--no-progress", "--resume"]) == 0
    RunDir(out).write_params(recorded)
    prov = collect_provenance(results=tmp_path / "results")
    page = page_of(load_records(results=tmp_path / "results"), prov, title="t", description="")
    assert "0.0.1" in page and "0123456789ab" in page  # the runs' own record, not the builder's
