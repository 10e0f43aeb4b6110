"""Decision Transformer (spec: dt.md) with pre-training on synthetic tokens: its registry entry.

The runner lives in synthrl.dt.runner and the pre-training in synthrl.dt.pretrain (imported when a
run starts: `synthrl run --help` and the tables need no torch).
"""

from __future__ import annotations

from synthrl.dt.cli import FAST_PATH_HELP, add_pretrain_arguments, main_pretrain
from synthrl.dt.config import DTConfig
from synthrl.registry import TOKENS, Algorithm


def make_runner(config: DTConfig, store, progress: bool = True, fast_path_check: bool = True):
    from synthrl.dt.runner import make_runner as make

    del progress  # DT builds its pre-training artifact without a bar
    return make(config, store, fast_path_check=fast_path_check)


def run_params(config: DTConfig) -> dict:
    from synthrl.dt.runner import run_params as params

    return params(config)


def build_pretrain(config: DTConfig, store, progress: bool = False):
    from synthrl.dt.pretrain import build_pretrain_artifact

    return None if config.pretrain is None else build_pretrain_artifact(config.pretrain, store, progress=progress)


def pretrain_key(config: DTConfig, env) -> str | None:
    """The pre-training artifact's key (one run serves every dataset: the env does not enter)."""
    from synthrl.dt.pretrain import artifact_key

    del env
    return None if config.pretrain is None else artifact_key(config.pretrain)


def pretrain_updates(trial_config: dict) -> int:
    """DT fine-tunes from one checkpoint of its pre-training: the step of that checkpoint."""
    return int(trial_config.get("pretrain_step", 0)) if trial_config.get("pretrain") else 0


ALGORITHM = Algorithm(
    name="dt", label="DT", config=DTConfig, make_runner=make_runner, run_params=run_params,
    pretrain_kinds=("mc", "iid", "identity", "mapping", "text"),
    help="fine-tune and evaluate a Decision Transformer seed ensemble", pretrain_family=TOKENS,
    build_pretrain=build_pretrain, pretrain_updates=pretrain_updates, pretrain_key=pretrain_key,
    fast_path_help=FAST_PATH_HELP,
    commands={"dt-pretrain": ("pre-train the DT backbone on synthetic (or text) tokens into a store artifact",
                              add_pretrain_arguments, main_pretrain)},
    # plan costs: gpu: the DT issue's H100 goals (not measured yet); cpu: bench_dt.py, fine-tuning 2.0
    # seed-updates/s at batch 16 (E = 1), pre-training 363 ms/step at 4 x 128 tokens; DT's evaluation is not
    # measured on CPU: the CQL round's environment stepping stands in for it
    rates={"gpu": {"seed_updates_per_s": 20 * 100_000 / 300, "eval_s_per_seed_round": 15.0 / 20,
                   "pretrain_updates_per_s": 80_000 / 240},
           "cpu": {"seed_updates_per_s": 2.0, "batch": 16, "eval_s_per_seed_round": 10.9 / 20,
                   "pretrain_updates_per_s": 1 / 0.363, "tokens": 4 * 128}},
)
