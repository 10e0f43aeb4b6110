"""The registry: an algorithm registered by one module line is known everywhere, with no other edit.

This file is itself the toy algorithm's module (``ALGORITHM`` below): the fixture adds it to
``synthrl.registry.ALGORITHM_MODULES``, exactly the one line a new algorithm adds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from conftest import registered_algorithm

from analysis.records import derive_variant, load_records
from synthrl import registry
from synthrl.cli import main
from synthrl.config_fields import declared_as, result_params, setting, validate_config
from synthrl.cql.config import CQLConfig
from synthrl.errors import UserError
from synthrl.rundir import RunDir
from synthrl.runner import drive
from synthrl.sweep.plan import build_config, make_plan
from synthrl.sweep.schema import sweep_from_dict
from synthrl.utils.io import parse_seeds

def like_cql(name: str):
    """CQLConfig's declaration of a forward-dynamics pre-training setting (what IQL shares too)."""
    return declared_as(CQLConfig, name)


@dataclass
class ToyConfig:
    """A toy 'algorithm': each seed's score walks towards 100 by step_size per update."""

    dataset: str = field(metadata=setting("any name: the toy reads no file", metavar="NAME"))
    seeds: list[int] = field(default_factory=lambda: [0], metadata=setting("seeds", min=0, parse=parse_seeds))
    pretrain: str = like_cql("pretrain")
    pretrain_updates: int = like_cql("pretrain_updates")
    states: int = like_cql("states")
    actions: int = like_cql("actions")
    policy_temperature: float = like_cql("policy_temperature")
    transition_temperature: float = like_cql("transition_temperature")
    random_start: bool = like_cql("random_start")
    updates: int = like_cql("updates")
    extra_updates: int = like_cql("extra_updates")
    eval_every: int = like_cql("eval_every")
    eval_episodes: int = like_cql("eval_episodes")
    finetune_ratio: float = like_cql("finetune_ratio")
    step_size: float = field(default=0.01, metadata=setting("toy step towards the score 100", above=0, max=1))
    device: str = field(default="cpu", metadata=setting("where the toy runs", execution_only=True))

    @property
    def variant(self) -> str:
        return "toy" if self.pretrain == "none" else f"toy+{self.pretrain}"

    def validate(self) -> "ToyConfig":
        return validate_config(self, "toy")


class ToyPending:
    """A background evaluation that finishes only once training has moved on (as an overlapped one does)."""

    def __init__(self, runner: "ToyRunner", rows):
        self.runner, self._rows, self.update = runner, rows, runner.updates_done

    def done(self) -> bool:
        return self.runner.updates_done > self.update

    def rows(self):
        return self._rows


class ToyRunner:
    metric_columns = ["seed", "update", "normalized_score", "return", "dataset", "variant", "env_id", "wall_clock_s"]

    def __init__(self, config: ToyConfig, eval_overlap: bool = False):
        self.config, self.eval_overlap = config, eval_overlap
        self.total_updates, self.eval_every = config.updates + config.extra_updates, config.eval_every
        self.updates_done, self.score = 0, 0.0

    def train(self, n: int) -> None:
        for _ in range(n):
            self.score += self.config.step_size * (100.0 - self.score)
        self.updates_done += n

    def evaluate(self):
        return [{"seed": s, "update": self.updates_done, "normalized_score": round(self.score, 6),
                 "return": self.score, "dataset": self.config.dataset, "variant": self.config.variant,
                 "env_id": "Toy-v0"} for s in self.config.seeds]

    def start_evaluation(self) -> ToyPending:
        return ToyPending(self, self.evaluate())

    def state_dict(self) -> dict:
        return {"updates_done": self.updates_done, "score": self.score}

    def load_state_dict(self, state: dict) -> None:
        self.updates_done, self.score = int(state["updates_done"]), float(state["score"])


def make_runner(config: ToyConfig, store, progress: bool = True, fast_path_check: bool = True) -> ToyRunner:
    return ToyRunner(config.validate())


def run_params(config: ToyConfig) -> dict:
    return {"algorithm": "toy", "variant": config.variant, "dataset": config.dataset, "seeds": list(config.seeds),
            "pretrain": config.pretrain, "config": result_params(config), "total_updates": config.updates}


ALGORITHM = registry.Algorithm(name="toy", label="Toy", config=ToyConfig, make_runner=make_runner,
                               run_params=run_params, pretrain_kinds=("mdp", "iid", "identity", "mapping"),
                               help="a toy algorithm registered by its test")


@pytest.fixture
def toy(monkeypatch):
    yield from registered_algorithm(monkeypatch, __name__, "toy")


def toy_sweep(**over) -> dict:
    return {"name": "toys", "algorithm": "toy", "datasets": [{"name": "hopper-x", "path": "x.hdf5", "env": "hopper"}],
            "seeds": "0-1", "finetune": {"updates": 40, "eval_every": 20, "eval_episodes": 1},
            "variants": [{"name": "Toy"}, {"name": "Toy+MDP", "pretrain": {"kind": "mdp", "updates": 5}}], **over}


def test_a_registered_toy_algorithm_is_a_run_command_with_its_options(toy, capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "a toy algorithm registered by its test" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["run", "toy", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--step-size X toy step towards the score 100 (default: 0.01)" in out
    with pytest.raises(SystemExit, match="2"):   # its bounds come along
        main(["run", "toy", "--step-size", "2", "--dataset", "d", "--out", "x"])
    assert "argument --step-size: expected a number in (0, 1], got '2'" in capsys.readouterr().err


def test_the_toy_runs_through_drive_and_tables_name_its_variants(toy, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "toy", "--dataset", "toyset", "--pretrain", "mdp", "--updates", "60", "--eval-every", "20",
                 "--seeds", "0-1", "--out", str(out), "--no-progress"]) == 0
    assert RunDir(out).is_done() and len(RunDir(out).read_metrics()) == 6
    assert load_records(results=tmp_path).variants == ["Toy+MDP"]
    assert derive_variant({"algorithm": "toy", "variant": "toy"}) == "Toy"
    assert derive_variant({"algorithm": "toy", "config": {"pretrain": "iid"}}) == "Toy+IID"


def test_sweep_files_validate_and_plan_a_registered_algorithm(toy):
    plan = make_plan(sweep_from_dict(toy_sweep(), "toys.yaml"))
    assert [t.variant for t in plan.trials] == ["Toy", "Toy+MDP"] and len(plan.artifacts) == 1
    config = build_config("toy", plan.trials[1].config, "x.hdf5", "cpu")
    assert isinstance(config, ToyConfig) and config.pretrain == "mdp" and config.pretrain_updates == 5
    with pytest.raises(UserError, match=r"toys.yaml: finetune.config.step_size: expected a number in \(0, 1\], got 3"):
        sweep_from_dict(toy_sweep(finetune={"updates": 40, "eval_every": 20, "config": {"step_size": 3}}), "toys.yaml")
    with pytest.raises(UserError, match=r"toys.yaml: variants\[0\].pretrain.kind: expected one of mdp, iid"):
        sweep_from_dict(toy_sweep(variants=[{"name": "T", "pretrain": {"kind": "mc"}}]), "toys.yaml")
    with pytest.raises(UserError, match=r"algorithm: expected one of cql, dt.*toy, got 'nope'"):
        sweep_from_dict(toy_sweep(algorithm="nope"), "toys.yaml")


def test_the_report_hook_sees_the_checkpoint_of_its_evaluation_moment(tmp_path):
    """What the Tune trainable reports: with an overlapped evaluation, training has moved on when the rows
    arrive, and the run directory's checkpoint is still the one of the evaluation's moment."""
    runner = ToyRunner(ToyConfig(dataset="d", updates=60, eval_every=20), eval_overlap=True)
    run_dir = RunDir(tmp_path / "run")
    seen = []

    def on_eval(rows):
        saved = run_dir.load_checkpoint()["runner"]
        seen.append((rows[0]["update"], int(saved["updates_done"]), runner.updates_done))
        assert float(saved["score"]) == pytest.approx(rows[0]["return"])

    drive(runner, run_dir, progress=False, on_eval=on_eval)
    assert [s[:2] for s in seen] == [(20, 20), (40, 40), (60, 60)]
    assert seen[0][2] > 20   # the first evaluation was recorded after training had gone on


def test_registry_lists_its_algorithms_and_kinds_and_refuses_unknown_names():
    assert {"cql", "dt"} <= set(registry.algorithms())
    assert registry.variant_label("cql", "mdp") == "CQL+MDP" and registry.variant_label("dt", "mc") == "DT+Synthetic"
    assert set(registry.algorithm("cql").pretrain_kinds) <= set(registry.pretrain_kinds(registry.FORWARD_DYNAMICS))
    assert set(registry.algorithm("dt").pretrain_kinds) <= set(registry.pretrain_kinds(registry.TOKENS))
    with pytest.raises(UserError, match=r"--algo: expected one of cql, dt.*got 'nope'"):
        registry.algorithm("nope", "--algo")
