"""The config dataclasses are the one declaration of each setting (issue 14): CLI options with help
and shown defaults, validation messages, params.json / content hash and defaults all come from them."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from synthrl.cli import build_parser
from synthrl.config_fields import add_config_arguments, config_from_mapping, content_key, result_params, validate_config
from synthrl.cql.config import CQLConfig
from synthrl.dt.config import DTConfig, DTPretrainConfig
from synthrl.errors import UserError


def _run_subparsers() -> dict[str, argparse.ArgumentParser]:
    top = build_parser()
    verbs = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    run = verbs.choices["run"]
    algos = next(a for a in run._actions if isinstance(a, argparse._SubParsersAction))
    return dict(algos.choices)


def test_every_run_option_has_help_and_shows_its_default():
    parsers = _run_subparsers()
    assert {"cql", "dt", "dt-pretrain"} <= set(parsers)
    for name, parser in parsers.items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flag = action.option_strings[0] if action.option_strings else action.dest
            assert action.help, f"run {name} {flag}: no help"
            has_default = action.default not in (None, False, argparse.SUPPRESS) and not action.required
            if has_default:
                assert "(default:" in action.help, f"run {name} {flag}: help does not show its default"


def test_run_option_defaults_are_the_config_defaults():
    parsers = _run_subparsers()
    args = parsers["cql"].parse_args(["--dataset", "x", "--out", "o"])
    assert args.updates == CQLConfig(dataset="x").updates and args.policy_temperature == 1.0
    args = parsers["dt-pretrain"].parse_args(["--out", "o", "--temperature", "inf", "--checkpoints", "1,1e3"])
    assert args.temperature == float("inf") and args.checkpoints == (1, 1000)


def test_cli_type_errors_come_from_the_field_metadata(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["run", "cql", "--dataset", "x", "--out", "o", "--states", "ten"])
    assert e.value.code == 2
    assert "argument --states: expected an integer >= 2, got 'ten'" in capsys.readouterr().err


@pytest.mark.parametrize("cls,mapping,message", [
    (CQLConfig, {"dataset": "x", "states": "ten"}, "cql.states: expected an integer >= 2, got 'ten'"),
    (CQLConfig, {"dataset": "x", "discount": 1}, "cql.discount: expected a number in (0, 1), got 1"),
    (CQLConfig, {"dataset": "x", "policy_temperature": 0}, "cql.policy_temperature: expected a number > 0 or inf"),
    (CQLConfig, {"dataset": "x", "pretrain": "wiki"}, "cql.pretrain: expected one of none, mdp, iid"),
    (CQLConfig, {"dataset": "x", "random_start": "yes"}, "cql.random_start: expected true or false, got 'yes'"),
    (CQLConfig, {"dataset": "x", "bogus": 1}, "cql.bogus: unknown field"),
    (CQLConfig, {}, "cql.dataset: missing"),
    (DTPretrainConfig, {"checkpoints": [1, "x"]}, "dt-pretrain.checkpoints[1]: expected an integer >= 1, got 'x'"),
    (DTPretrainConfig, {"backbone": {"n_layer": 0}}, "dt-pretrain.backbone.n_layer: expected an integer >= 1"),
])
def test_validation_messages_name_the_key_and_the_expectation(cls, mapping, message):
    with pytest.raises(UserError) as e:
        config_from_mapping(cls, mapping, cls.__name__ == "CQLConfig" and "cql" or "dt-pretrain")
    assert message in str(e.value)


def test_yaml_style_values_are_coerced():
    cfg = config_from_mapping(CQLConfig, {"dataset": "x", "updates": "1e6", "policy_temperature": "inf"}, "cql")
    assert cfg.updates == 1_000_000 and isinstance(cfg.updates, int) and cfg.policy_temperature == float("inf")


def test_result_params_and_content_key_ignore_execution_only_fields():
    a, b = CQLConfig(dataset="x").validate(), CQLConfig(dataset="x", device="cpu", accel="eager",
                                                          eval_overlap="off").validate()
    assert result_params(a) == result_params(b) and "device" not in result_params(a)
    assert content_key("k", result_params(a)) == content_key("k", result_params(b))
    c = CQLConfig(dataset="x", q_lr=1e-3).validate()
    assert content_key("k", result_params(a)) != content_key("k", result_params(c))
    # a DT pre-training: compile/device/loss_chunk do not split the artifact, and neither does an unused --states
    from synthrl.dt.pretrain import artifact_key

    base = DTPretrainConfig(data="identity", steps=4)
    assert artifact_key(base) == artifact_key(DTPretrainConfig(data="identity", steps=4, states=7, compile="off",
                                                               device="cpu", loss_chunk=3))
    assert artifact_key(base) != artifact_key(DTPretrainConfig(data="identity", steps=4, lr=1e-3))


@dataclasses.dataclass
class _HotPretrain(DTPretrainConfig):
    temperature: float = dataclasses.field(default=0.25, metadata=next(
        f for f in dataclasses.fields(DTPretrainConfig) if f.name == "temperature").metadata)


def test_the_mc_temperature_default_is_declared_once(monkeypatch, tmp_path):
    """Change the one field's default: the CLI, token_source and `synthrl synth` all follow."""
    import synthrl.dt.config as dt_config
    from synthrl.synthetic import token_source

    monkeypatch.setattr(dt_config, "DTPretrainConfig", _HotPretrain)
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, _HotPretrain)
    assert parser.parse_args([]).temperature == 0.25
    assert token_source("mc", states=4, length=8).metadata()["temperature"] == 0.25
    # the sweep's pretrain block of a DT variant is DTConfig.pretrain's dataclass: the sweep default follows too
    from synthrl.config_fields import nested_config
    from synthrl.sweep.schema import sweep_from_dict

    assert nested_config(DTConfig, "pretrain") is _HotPretrain
    sweep = sweep_from_dict({"name": "t", "algorithm": "dt", "datasets": ["hopper-medium-v2"],
                             "variants": [{"name": "DT+MC", "pretrain": {"data": "mc"}}]}, "t.yaml")
    assert sweep.variants[0].pretrain.values["temperature"] == 0.25


def test_validate_config_checks_a_built_object():
    cfg = CQLConfig(dataset="x")
    cfg.eval_every = 0
    with pytest.raises(UserError, match=r"where\.eval_every: expected an integer >= 1, got 0"):
        validate_config(cfg, "where")
