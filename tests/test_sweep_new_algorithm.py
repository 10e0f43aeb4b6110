"""A new algorithm is planned from a sweep file with no edit of the sweep schema or planner.

This module is itself the algorithm's module (``ALGORITHM`` below, registered by the fixture the way
the one registry line does): its config has no extra_updates, no finetune_ratio, no eval_every and
pre-training fields of its own; the sweep blocks, the checks and the artifact grouping come from its
fields' metadata (``sweep=`` keys, ``role=``) and its ``pretrain_key`` hook. Also: the planner keys
CQL's and DT's artifacts by the very key their store directories have.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import yaml
from conftest import registered_algorithm

from synthrl import registry
from synthrl.config_fields import content_key, result_params, setting, validate_config
from synthrl.envs.specs import ENVS as ENV_SPECS
from synthrl.errors import UserError
from synthrl.store import ArtifactStore
from synthrl.sweep.plan import build_config, make_plan, plan_summary
from synthrl.sweep.schema import load_sweep, sweep_from_dict
from synthrl.utils.io import parse_seeds


@dataclass
class NoiseConfig:
    """'Noise warm-up, then fitting': a config shaped like neither CQL's nor DT's."""

    dataset: str = field(metadata=setting("any name", metavar="NAME"))
    seeds: list[int] = field(default_factory=lambda: [0], metadata=setting("seeds", min=0, parse=parse_seeds))
    warmup: str = field(default="off", metadata=setting(
        "warm-up data", choices=("off", "gauss", "laplace"), sweep="pretrain.kind", role="pretrain_kind"))
    warmup_steps: int = field(default=300, metadata=setting(
        "warm-up steps", min=1, sweep="pretrain.steps", role="pretrain_updates"))
    warmup_scale: float = field(default=1.0, metadata=setting("noise scale", above=0, sweep="pretrain.scale"))
    fit_steps: int = field(default=50, metadata=setting("fitting steps", min=1, sweep="finetune.steps",
                                                        role="updates"))
    lr: float = field(default=0.1, metadata=setting("step size", above=0, sweep="finetune.lr"))
    device: str = field(default="cpu", metadata=setting("where", execution_only=True))

    def validate(self) -> "NoiseConfig":
        return validate_config(self, "noise")


def pretrain_params(config: NoiseConfig, env) -> dict | None:
    """What the warm-up's artifact depends on: its own settings and the observation width."""
    if config.warmup == "off":
        return None
    return {"warmup": config.warmup, "steps": config.warmup_steps, "scale": config.warmup_scale, "dim": env.obs_dim}


def pretrain_key(config: NoiseConfig, env) -> str | None:
    params = pretrain_params(config, env)
    return None if params is None else content_key("noise-warmup", params)


def run_params(config: NoiseConfig) -> dict:
    return {"algorithm": "noise", "config": result_params(config)}


ALGORITHM = registry.Algorithm(name="noise", label="Noise", config=NoiseConfig, make_runner=lambda *a, **k: None,
                               run_params=run_params, pretrain_kinds=("gauss", "laplace"),
                               help="a test algorithm of its own shape", pretrain_key=pretrain_key)


@pytest.fixture
def noise(monkeypatch):
    yield from registered_algorithm(monkeypatch, __name__, "noise")


def noise_doc(**over) -> dict:
    return {"name": "noisy", "algorithm": "noise", "seeds": "0-3", "seeds_per_trial": 2,
            "datasets": ["hopper-medium-v2", "hopper-medium-replay-v2", "walker2d-medium-v2"],
            "finetune": {"steps": 40},
            "variants": [{"name": "plain"},
                         {"name": "gauss", "pretrain": {"kind": "gauss", "steps": 20}},
                         {"name": "gauss fast", "pretrain": {"kind": "gauss", "steps": 20},
                          "finetune": {"lr": 0.5}},
                         {"name": "laplace", "pretrain": {"kind": "laplace", "scale": 2}}], **over}


def test_a_new_algorithm_plans_from_a_sweep_file(noise, tmp_path):
    path = tmp_path / "noisy.yaml"
    path.write_text(yaml.safe_dump(noise_doc()))
    sweep = load_sweep(path)
    plan = make_plan(sweep)
    assert len(plan.trials) == 4 * 3 * 2
    by_variant = {t.variant: t for t in plan.trials if t.dataset.name == "hopper-medium-v2" and t.seeds == (0, 1)}
    # exactly its own fields: no extra_updates, finetune_ratio or eval_every appear
    assert by_variant["plain"].config == {"dataset": "hopper-medium-v2", "seeds": [0, 1], "fit_steps": 40,
                                          "lr": 0.1, "warmup": "off"}
    assert by_variant["gauss fast"].config == {"dataset": "hopper-medium-v2", "seeds": [0, 1], "fit_steps": 40,
                                               "lr": 0.5, "warmup": "gauss", "warmup_steps": 20, "warmup_scale": 1.0}
    assert by_variant["laplace"].config["warmup_steps"] == 300 and by_variant["laplace"].config["warmup_scale"] == 2
    assert all(t.total_updates == 40 for t in plan.trials)
    config = build_config("noise", by_variant["gauss"].config, "x.hdf5", "cpu")
    assert isinstance(config, NoiseConfig) and (config.warmup, config.warmup_steps) == ("gauss", 20)

    # artifacts by its own key: per observation width (hopper 11, walker2d 17), shared across the fine-tuning lr
    assert len(plan.artifacts) == 2 * 2
    gauss = {t.artifact for t in plan.trials if t.variant in ("gauss", "gauss fast")}
    assert len(gauss) == 2
    for t in plan.trials:
        if t.artifact:
            expected = pretrain_key(build_config("noise", t.config, t.dataset.name, "cpu"), ENV_SPECS[t.dataset.env])
            assert expected.startswith(t.artifact)
        else:
            assert t.variant == "plain"
    assert registry.algorithm("noise").trial_pretrain_updates(by_variant["gauss"].config) == 20
    assert registry.algorithm("noise").trial_pretrain_updates(by_variant["plain"].config) == 0

    text = plan_summary(plan)
    assert "= 24 trials" in text and "gauss steps=20 scale=1" in text and "40 updates, lr 0.5" in text


@pytest.mark.parametrize("change,where,expected", [
    ({"finetune": {"steps": 40, "extra_updates": 5}}, "finetune.extra_updates: unknown key", "expected one of"),
    ({"finetune": {"finetune_ratio": 0.5}}, "finetune.finetune_ratio: unknown key", "config, lr, steps"),
    ({"finetune": {"steps": 0}}, "finetune.steps:", "expected an integer >= 1, got 0"),
    ({"variants": [{"name": "x", "pretrain": {"kind": "off"}}]}, "variants[0].pretrain.kind:",
     "expected one of gauss, laplace, got 'off'"),
    ({"variants": [{"name": "x", "pretrain": {"kind": "gauss", "states": 5}}]}, "variants[0].pretrain.states: "
     "unknown key", "expected one of config, kind, scale, steps"),
    ({"variants": [{"name": "x", "pretrain": {"kind": "gauss", "scale": 0}}]}, "variants[0].pretrain.scale:",
     "expected a number > 0, got 0"),
    ({"variants": [{"name": "x", "finetune": {"config": {"lr": -1}}}]}, "variants[0].finetune.config.lr:",
     "expected a number > 0"),
])
def test_a_new_algorithms_sweep_is_checked_by_its_fields(noise, change, where, expected):
    with pytest.raises(UserError) as info:
        sweep_from_dict(noise_doc(**change), "noisy.yaml")
    message = str(info.value)
    assert message.startswith("noisy.yaml: ") and where in message and expected in message, message


def test_planner_artifact_ids_are_the_store_keys_of_cql_and_dt(tmp_path):
    """One hash: the id `sweep plan` shows begins the directory the runner's store puts the artifact in."""
    from synthrl.cql.pretrain import ARTIFACT_KIND as CQL_KIND, FORMAT_VERSION as CQL_FORMAT, pretrain_params_for
    from synthrl.dt.pretrain import ARTIFACT_KIND as DT_KIND, FORMAT_VERSION as DT_FORMAT, pretrain_params

    store = ArtifactStore(tmp_path)
    cql = make_plan(sweep_from_dict({
        "name": "c", "algorithm": "cql", "seeds": "0-1",
        "datasets": ["hopper-medium-v2", "walker2d-medium-v2", "halfcheetah-medium-v2"],
        "finetune": {"updates": 100, "eval_every": 50},
        "variants": [{"name": "MDP", "pretrain": {"kind": "mdp", "updates": 10, "states": 7}},
                     {"name": "MDP lr", "pretrain": {"kind": "mdp", "updates": 10, "states": 7},
                      "finetune": {"config": {"q_lr": 1e-4}}}]}, "c.yaml"))
    for t in cql.trials:
        spec = ENV_SPECS[t.dataset.env]
        cfg = build_config("cql", t.config, t.dataset.name, "cpu")
        key = store.path(CQL_KIND, pretrain_params_for(cfg, spec.obs_dim, spec.act_dim), CQL_FORMAT).name
        assert key.startswith(t.artifact)
    # the runner's key covers the dims, not the env's name, nor the fine-tuning settings: hopper, and
    # walker2d with halfcheetah (both 17 x 6), for both variants
    assert len(cql.artifacts) == 2 and cql.artifacts[1].env == "walker2d,halfcheetah"

    dt = make_plan(sweep_from_dict({
        "name": "d", "algorithm": "dt", "seeds": "0", "datasets": ["hopper-medium-v2", "walker2d-medium-v2"],
        "finetune": {"updates": 100, "eval_every": 50},
        "variants": [{"name": "MC", "pretrain": {"data": "mc", "steps": 20, "states": 5}},
                     {"name": "MC 1", "pretrain": {"data": "mc", "steps": 20, "states": 5},
                      "finetune": {"pretrain_step": 1}}]}, "d.yaml"))
    assert len(dt.artifacts) == 1
    cfg = build_config("dt", dt.trials[0].config, "hopper-medium-v2", "cpu")
    assert store.path(DT_KIND, pretrain_params(cfg.pretrain), DT_FORMAT).name.startswith(dt.artifacts[0].artifact_id)


def test_a_text_pretraining_is_keyed_by_its_corpus_content_once_the_file_exists(tmp_path):
    from synthrl.dt.pretrain import artifact_key

    corpus = tmp_path / "corpus.txt"
    doc = {"name": "t", "algorithm": "dt", "seeds": "0", "datasets": ["hopper-medium-v2"],
           "finetune": {"updates": 100, "eval_every": 50},
           "variants": [{"name": "Text", "pretrain": {"data": "text", "steps": 20}}]}
    missing = make_plan(sweep_from_dict({**doc, "corpus": str(corpus)}, "t.yaml"))   # planned before it exists
    ids = []
    for text in ("some words", "other words"):
        corpus.write_text(text)
        plan = make_plan(sweep_from_dict({**doc, "corpus": str(corpus)}, "t.yaml"))
        cfg = build_config("dt", plan.trials[0].config, "hopper-medium-v2", "cpu")
        assert artifact_key(cfg.pretrain).startswith(plan.artifacts[0].artifact_id)
        ids.append(plan.artifacts[0].artifact_id)
    assert len({missing.artifacts[0].artifact_id, *ids}) == 3   # the corpus's content, not its path, keys it
