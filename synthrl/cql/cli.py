"""``synthrl run cql``: CQL (optionally after forward-dynamics pre-training) into a run directory."""

from __future__ import annotations

import argparse

from synthrl.cli import fraction, nonneg_int, positive_int, temperature
from synthrl.cql.config import PRETRAIN_KINDS, CQLConfig

HELP = "CQL fine-tuning of a seed ensemble, optionally after synthetic forward-dynamics pre-training"


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = CQLConfig(dataset="-")
    p.add_argument("--dataset", required=True, metavar="NAME|FILE",
                   help="D4RL dataset name (hopper-medium-v2, found in $D4RL_DATASET_DIR) or a D4RL-format HDF5 file")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory (params.json, metrics.csv, checkpoint/)")
    p.add_argument("--seeds", default="0", help="seeds, one ensemble member each: 0-19 or 0,3,7 (default 0)")
    p.add_argument("--pretrain", choices=PRETRAIN_KINDS, default="none", help="synthetic pre-training data (default none)")
    p.add_argument("--pretrain-updates", type=positive_int, default=d.pretrain_updates, metavar="N")
    p.add_argument("--states", type=positive_int, default=d.states, metavar="S", help="synthetic MDP states (100)")
    p.add_argument("--actions", type=positive_int, default=d.actions, metavar="A", help="synthetic MDP actions (100)")
    p.add_argument("--policy-temperature", type=temperature, default=d.policy_temperature, metavar="T",
                   help="synthetic MDP policy temperature, or inf (1)")
    p.add_argument("--transition-temperature", type=temperature, default=d.transition_temperature, metavar="T",
                   help="synthetic MDP transition temperature, or inf (1)")
    p.add_argument("--random-start", action="store_true", help="synthetic MDP: random start state per trajectory")
    p.add_argument("--trajectories", type=positive_int, default=d.trajectories, metavar="J")
    p.add_argument("--length", type=positive_int, default=d.length, metavar="T")
    p.add_argument("--data-seed", type=nonneg_int, default=d.data_seed, help="seed of iid/identity/mapping data (0)")
    p.add_argument("--updates", type=positive_int, default=d.updates, metavar="N", help="fine-tuning updates (1e6)")
    p.add_argument("--extra-updates", type=nonneg_int, default=0, metavar="N", help="more updates (table 28: 100000)")
    p.add_argument("--eval-every", type=positive_int, default=d.eval_every, metavar="N")
    p.add_argument("--eval-episodes", type=positive_int, default=d.eval_episodes, metavar="N")
    p.add_argument("--finetune-ratio", type=fraction, default=1.0, metavar="F",
                   help="fraction of the dataset's trajectories used (seeded per member seed)")
    p.add_argument("--cql-n-actions", type=positive_int, default=d.cql_n_actions, metavar="N",
                   help="sampled actions in the CQL term (3, table 16)")
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size, metavar="B")
    p.add_argument("--env-version", choices=("v4", "v5"), default=d.env_version)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--accel", choices=("auto", "eager", "graph"), default="auto",
                   help="auto: CUDA graph on cuda, eager on cpu")
    p.add_argument("--matmul-precision", choices=("highest", "high", "medium"), default="highest",
                   help="CUDA fp32 matmul precision (high: TF32; faster, check the learning curves)")
    p.add_argument("--eval-overlap", choices=("auto", "on", "off"), default="auto",
                   help="evaluate a snapshot of the policies while training goes on (auto: on cuda)")
    p.add_argument("--fast-path-check", choices=("on", "off"), default="on",
                   help="before the first update, check the CUDA graph against eager (on a mismatch: train eagerly)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> CQLConfig:
    from synthrl.utils.io import parse_seeds

    return CQLConfig(
        dataset=args.dataset, seeds=parse_seeds(args.seeds), pretrain=args.pretrain,
        pretrain_updates=args.pretrain_updates, states=args.states, actions=args.actions,
        policy_temperature=args.policy_temperature, transition_temperature=args.transition_temperature,
        random_start=args.random_start, trajectories=args.trajectories, length=args.length,
        data_seed=args.data_seed, updates=args.updates, extra_updates=args.extra_updates,
        eval_every=args.eval_every, eval_episodes=args.eval_episodes, finetune_ratio=args.finetune_ratio,
        cql_n_actions=args.cql_n_actions, batch_size=args.batch_size, env_version=args.env_version,
        device=args.device, accel=args.accel, matmul_precision=args.matmul_precision,
        eval_overlap=args.eval_overlap,
    ).validate()


def main(args: argparse.Namespace) -> int:
    from synthrl.cql.runner import make_runner, run_params
    from synthrl.errors import UserError
    from synthrl.rundir import RunDir
    from synthrl.runner import drive
    from synthrl.store import ArtifactStore
    from synthrl.utils.io import resolve_device

    config = config_from_args(args)
    resolve_device(config.device)  # a clear error before any work
    run_dir = RunDir(args.out)
    run_dir.check_writable("--out")
    store = ArtifactStore()
    if config.pretrain != "none":
        store.check_writable()  # the pre-training artifact is built there
    params = run_params(config)
    if args.resume:
        if (run_dir.path / "params.json").is_file():
            run_dir.check_params_match(params, ignore=("synthrl_version", "fast_path"))
        if run_dir.is_done():
            print(f"{run_dir.path}: already done")
            return 0
    elif (run_dir.path / "params.json").exists():
        raise UserError(f"--out {run_dir.path}: already holds a run; pass --resume to continue it or choose a new --out")
    runner = make_runner(config, store, progress=not args.no_progress,
                         fast_path_check=args.fast_path_check == "on")
    params["fast_path"] = runner.fast_path  # which update path this session uses, and why
    run_dir.write_params(params)  # after the dataset and pre-training are ready: a failure there leaves no run behind
    drive(runner, run_dir, resume=args.resume, progress=not args.no_progress, desc=f"{config.variant} {params['dataset']}")
    print(f"{run_dir.path}: done ({runner.updates_done} updates, {len(config.seeds)} seeds)")
    return 0


COMMANDS = {"cql": (HELP, add_arguments, main)}
