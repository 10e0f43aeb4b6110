"""Sweep files: every shipped file validates and plans; each bad-file case gives its clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synthrl.errors import UserError
from synthrl.sweep.plan import make_plan, plan_summary, seed_group_name
from synthrl.sweep.schema import D4RL_DATASETS, load_sweep, load_sweeps, parse_set_options, sweep_from_dict

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))
PAPER_TABLES = ["table1", "table2", "table3", "table4", "table5", "table26", "table27",
                "table6", "table7", "table8", "table28", "table29"]


def minimal(**over) -> dict:
    doc = {
        "name": "tiny",
        "algorithm": "cql",
        "datasets": ["hopper-medium-v2"],
        "seeds": "0-3",
        "seeds_per_trial": 2,
        "finetune": {"updates": 100, "eval_every": 50, "eval_episodes": 1},
        "variants": [{"name": "CQL"}, {"name": "CQL+MDP", "pretrain": {"kind": "mdp", "updates": 10}}],
    }
    doc.update(over)
    return doc


def test_every_paper_table_has_a_sweep_file_at_paper_scale():
    names = {p.stem for p in SWEEP_FILES}
    for table in PAPER_TABLES:
        assert table in names, f"sweeps/{table}.yaml missing"
        sweep = load_sweep(REPO / "sweeps" / f"{table}.yaml")
        assert sorted(d.name for d in sweep.datasets) == sorted(D4RL_DATASETS)
        assert len(sweep.seeds) == 20
        assert sweep.algorithm == ("dt" if table in ("table1", "table2", "table3", "table4", "table5", "table26",
                                                     "table27") else "cql")
    assert {"fig_finetune_updates_dt", "fig_finetune_updates_cql", "fig_data_ratio_dt", "fig_data_ratio_cql",
            "quickstart"} <= names


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_every_sweep_file_validates_and_plans(path):
    for sweep in load_sweeps(path):
        plan = make_plan(sweep)
        expected = len(sweep.variants) * len(sweep.datasets) * len(sweep.seed_groups())
        assert len(plan.trials) == expected
        assert len({t.trial_id for t in plan.trials}) == expected
        text = plan_summary(plan)
        assert f"= {expected} trials" in text and "estimated GPU-hours" in text
        for t in plan.trials:
            assert (t.artifact is None) == (sweep.variants[[v.name for v in sweep.variants].index(t.variant)]
                                            .pretrain is None)


def test_generated_sweep_files_are_up_to_date(tmp_path):
    """sweeps/generate.py is the record of how the tables' variants were read; the files must match it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep_generate", REPO / "sweeps" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.HERE = tmp_path
    module.main()
    for produced in tmp_path.glob("*.yaml"):
        assert produced.read_text() == (REPO / "sweeps" / produced.name).read_text(), produced.name


def test_table1_wiki_variant_plans_with_notice_and_override_supplies_corpus():
    sweep = load_sweep(REPO / "sweeps" / "table1.yaml")
    plan = make_plan(sweep)
    assert any("DT+Wiki" in n and "corpus" in n for n in plan.notices)
    wiki = [t for t in plan.trials if t.variant == "DT+Wiki"]
    assert wiki and all(t.needs for t in wiki)
    assert all(t.needs is None for t in plan.trials if t.variant != "DT+Wiki")
    assert len(plan.runnable_trials()) == len(plan.trials) - len(wiki)

    fixed = load_sweep(REPO / "sweeps" / "table1.yaml", parse_set_options(["corpus=/data/wiki.txt"]))
    plan = make_plan(fixed)
    assert not plan.notices and len(plan.runnable_trials()) == len(plan.trials)
    wiki = next(t for t in plan.trials if t.variant == "DT+Wiki")
    assert wiki.config["pretrain"]["corpus"] == "/data/wiki.txt"


def test_seed_groups_and_trial_configs():
    sweep = sweep_from_dict(minimal(seeds="0-4", seeds_per_trial=2))
    assert sweep.seed_groups() == [(0, 1), (2, 3), (4,)]
    assert [seed_group_name(g) for g in sweep.seed_groups()] == ["s0-1", "s2-3", "s4"]
    plan = make_plan(sweep)
    assert [t.trial_id for t in plan.trials][:3] == ["CQL/hopper-medium-v2/s0-1", "CQL/hopper-medium-v2/s2-3",
                                                     "CQL/hopper-medium-v2/s4"]
    mdp = next(t for t in plan.trials if t.variant == "CQL+MDP")
    # the field names of synthrl.cql.config.CQLConfig (docs/CONTRACTS.md)
    assert mdp.config == {"dataset": "hopper-medium-v2", "seeds": [0, 1], "updates": 100, "eval_every": 50,
                          "eval_episodes": 1, "finetune_ratio": 1.0, "pretrain": "mdp", "pretrain_updates": 10,
                          "states": 100, "actions": 100, "policy_temperature": 1.0, "transition_temperature": 1.0,
                          "random_start": False}


def test_cql_artifacts_are_per_environment_and_dt_artifacts_are_shared_across_datasets():
    cql = sweep_from_dict(minimal(datasets=["hopper-medium-v2", "hopper-medium-replay-v2", "walker2d-medium-v2"]))
    assert len(make_plan(cql).artifacts) == 2            # hopper dims, walker2d dims
    dt = sweep_from_dict(minimal(
        algorithm="dt", datasets=["hopper-medium-v2", "walker2d-medium-v2"],
        variants=[{"name": "DT"},
                  {"name": "PT 1", "pretrain": {"data": "mc", "steps": 20}, "finetune": {"pretrain_step": 1}},
                  {"name": "PT 20", "pretrain": {"data": "mc", "steps": 20}}]))
    plan = make_plan(dt)
    assert len(plan.artifacts) == 1                     # one pre-training run serves both checkpoints
    assert plan.artifacts[0].variants == ("PT 1", "PT 20")
    steps = {t.variant: t.config["pretrain_step"] for t in plan.trials if t.artifact}
    assert steps == {"PT 1": 1, "PT 20": 20}             # a run shorter than 20k fine-tunes from its last step
    assert plan.trials[-1].config["pretrain"]["checkpoints"] == [1, 20]


def test_table5_uses_one_pretraining_run_for_all_checkpoints():
    plan = make_plan(load_sweep(REPO / "sweeps" / "table5.yaml"))
    assert len(plan.artifacts) == 1
    assert sorted({t.config.get("pretrain_step") for t in plan.trials if t.artifact}) == [
        1000, 10_000, 20_000, 40_000, 60_000, 80_000]


def test_extra_updates_and_ratio_reach_the_trial():
    plan = make_plan(load_sweep(REPO / "sweeps" / "table28.yaml"))
    more = next(t for t in plan.trials if t.variant == "CQL+100k more")
    assert more.config["extra_updates"] == 100_000 and more.total_updates == 1_100_000
    plan = make_plan(load_sweep(REPO / "sweeps" / "fig_data_ratio_dt.yaml"))
    assert {t.config["finetune_ratio"] for t in plan.trials} == {0.1, 0.25, 0.5, 0.75}


BAD_CASES = [
    # (change to the minimal document, key path in the message, words of the expectation)
    ({"colour": "red"}, "colour: unknown key", "expected one of"),
    ({"algorithm": "ppo"}, "algorithm:", "expected one of cql, dt"),
    ({"datasets": ["hopper-mediun-v2"]}, "datasets[0]:", "one of the 12 D4RL datasets"),
    ({"datasets": []}, "datasets:", "a non-empty list"),
    ({"datasets": [{"path": "/data/mystery.hdf5"}]}, "datasets[0].env: missing", "expected one of"),
    ({"datasets": [{"make": {"env": "pong"}}]}, "datasets[0].make.env:", "expected one of halfcheetah"),
    ({"datasets": [{"make": {"env": "hopper", "steps": 0}}]}, "datasets[0].make.steps:", "an integer >= 1"),
    ({"seeds": "0-x"}, "seeds:", "a range like 0-19"),
    ({"seeds": [1, 1]}, "seeds:", "distinct seeds"),
    ({"seeds_per_trial": 9}, "seeds_per_trial:", "at most the number of seeds (4)"),
    ({"finetune": {"updates": "many"}}, "finetune.updates:", "an integer >= 1"),
    ({"finetune": {"updates": 100, "eval_every": 500}}, "variants[0].finetune.eval_every:", "at most the fine-tuning"),
    ({"finetune": {"finetune_ratio": 1.5}}, "finetune.finetune_ratio:", "a number in (0, 1]"),
    ({"finetune": {"pretrain_step": 10}}, "finetune.pretrain_step: unknown key", "expected one of"),
    ({"variants": [{"name": "A"}, {"name": "A"}]}, "variants[1].name:", "distinct"),
    ({"variants": [{"pretrain": "none"}]}, "variants[0].name: missing", "required"),
    ({"variants": [{"name": "X", "pretrain": {"kind": "mdp", "states": "ten"}}]}, "variants[0].pretrain.states:",
     "an integer >= 2"),
    ({"variants": [{"name": "X", "pretrain": {"kind": "mdp", "policy_temperature": 0}}]},
     "variants[0].pretrain.policy_temperature:", "a number > 0"),
    ({"variants": [{"name": "X", "pretrain": {"kind": "markov"}}]}, "variants[0].pretrain.kind:",
     "one of mdp, iid, identity, mapping"),
    ({"variants": [{"name": "X", "finetune": {"pretrain_step": 5}}]}, "variants[0].finetune.pretrain_step: unknown key",
     "expected one of"),
    ({"variants": [{"name": "X", "pretrain": {"kind": "mdp", "checkpoints": [5]}}]},
     "variants[0].pretrain.checkpoints: unknown key", "expected one of"),
    ({"resources": {"gpu_per_trial": 1.5}}, "resources.gpu_per_trial:", "a fraction in [0, 1]"),
    ({"resources": {"cpus_per_trial": 0}}, "resources.cpus_per_trial:", "a number > 0"),
    ({"resources": {"gpus": 1}}, "resources.gpus: unknown key", "expected one of"),
    ({"name": "my sweep"}, "name:", "a name of letters"),
    ({"name": "artifacts"}, "name:", "not one of"),
    ({"search": {"space": {"cql_min_q_weight": {"type": "uniform", "low": 5, "high": 1}}}},
     "search.space.cql_min_q_weight.high:", "a value > low"),
    ({"search": {"space": {"x": {"type": "gauss"}}}}, "search.space.x.type:", "one of uniform"),
    ({"search": {"space": {"x": {"type": "choice", "values": [1]}}, "mode": "up"}}, "search.mode:", "max, min"),
]


@pytest.mark.parametrize("change,where,expected", BAD_CASES, ids=[c[1] for c in BAD_CASES])
def test_bad_sweep_files_are_rejected_with_file_key_and_expectation(tmp_path, change, where, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(minimal(**change)))
    with pytest.raises(UserError) as info:
        make_plan(load_sweep(path))
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert where in message, message
    assert expected in message, message
    assert "\n" not in message


def test_dt_pretrain_step_must_be_a_saved_checkpoint(tmp_path):
    doc = minimal(algorithm="dt", variants=[{"name": "X", "pretrain": {"data": "mc", "steps": 100,
                                                                        "checkpoints": [50, 100]},
                                             "finetune": {"pretrain_step": 70}}])
    with pytest.raises(UserError, match=r"variants\[0\]\.finetune\.pretrain_step: expected one of the pre-training "
                                        r"checkpoints \[50, 100\], got 70"):
        sweep_from_dict(doc, "x.yaml")


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\nalgorithm: cql\n")
    with pytest.raises(UserError, match=r"broken.yaml: not valid YAML at line \d+"):
        load_sweep(bad)
    with pytest.raises(UserError, match="no such sweep file"):
        load_sweep(tmp_path / "absent.yaml")


def test_set_options_are_typed_and_checked():
    assert parse_set_options(["finetune.updates=2000", "corpus=/x/y.txt"]) == {"finetune.updates": 2000,
                                                                             "corpus": "/x/y.txt"}
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_set_options(["corpus"])
    sweep = sweep_from_dict(minimal(), "m.yaml", parse_set_options(["finetune.updates=300"]))
    assert sweep.finetune.values["updates"] == 300 and sweep.variants[0].finetune.values["updates"] == 300
    assert sweep.variants[0].finetune.total_updates == 300


def run_cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "synthrl", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_plan_prints_and_rejects_in_one_line(tmp_path):
    result = run_cli("sweep", "plan", "sweeps/quickstart.yaml", "--trials")
    assert result.returncode == 0, result.stderr
    assert "quickstart-cql" in result.stdout and "quickstart-dt" in result.stdout
    assert "CQL+MDP/hopper-random-qs/s0-1" in result.stdout
    assert "estimated GPU-hours" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(minimal(seeds_per_trial=0)))
    result = run_cli("sweep", "plan", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "seeds_per_trial: expected an integer >= 1, got 0" in result.stderr
    assert "Traceback" not in result.stderr
