"""CQL (spec: cql.md) with forward-dynamics pre-training on synthetic MDP data: its registry entry.

The runner and its helpers live in synthrl.cql.runner (imported when a run starts: `synthrl run
--help` and the tables need no torch).
"""

from __future__ import annotations

from synthrl.cql.cli import FAST_PATH_HELP, HELP
from synthrl.cql.config import PRETRAIN_KINDS, CQLConfig
from synthrl.registry import FORWARD_DYNAMICS, Algorithm


def make_runner(config: CQLConfig, store, progress: bool = True, fast_path_check: bool = True):
    from synthrl.cql.runner import make_runner as make

    return make(config, store, progress=progress, fast_path_check=fast_path_check)


def run_params(config: CQLConfig) -> dict:
    from synthrl.cql.runner import run_params as params

    return params(config)


def build_pretrain(config: CQLConfig, store, progress: bool = False):
    from synthrl.cql.runner import build_pretrain_artifact

    return build_pretrain_artifact(config, store, progress=progress)


def pretrain_key(config: CQLConfig, env) -> str | None:
    from synthrl.cql.pretrain import pretrain_key as key

    return key(config, env)


ALGORITHM = Algorithm(
    name="cql", label="CQL", config=CQLConfig, make_runner=make_runner, run_params=run_params,
    pretrain_kinds=tuple(k for k in PRETRAIN_KINDS if k != "none"), help=HELP, pretrain_family=FORWARD_DYNAMICS,
    build_pretrain=build_pretrain, pretrain_key=pretrain_key, fast_path_help=FAST_PATH_HELP,
    # plan costs (benchmarks/RESULTS.md keeps the sources). gpu: the CQL issue's H100 speed goals (not measured
    # yet); cpu: bench_cql.py on one core of the 2-core development machine, E = 1, HalfCheetah dims, batch 256:
    # 4.5-7.3 seed-updates/s (the low end here); pre-training 32-35 updates/s; a 200-episode round on 2 workers 10.9 s
    rates={"gpu": {"seed_updates_per_s": 20_000.0, "eval_s_per_seed_round": 3.0 / 20,
                   "pretrain_updates_per_s": 100_000 / 30},
           "cpu": {"seed_updates_per_s": 4.5, "batch": 256, "eval_s_per_seed_round": 10.9 / 20,
                   "pretrain_updates_per_s": 32.0}},
)
