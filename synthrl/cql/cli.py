"""``synthrl run cql``: CQL (optionally after forward-dynamics pre-training) into a run directory."""

from __future__ import annotations

import argparse

from synthrl.config_fields import add_config_arguments, add_run_options
from synthrl.config_fields import config_from_args as build_config
from synthrl.cql.config import CQLConfig

FAST_PATH_HELP = "before the first update, check the CUDA graph against eager (on a mismatch: train eagerly)"
HELP = "CQL fine-tuning of a seed ensemble, optionally after synthetic forward-dynamics pre-training"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, CQLConfig)
    add_run_options(p, FAST_PATH_HELP)


def config_from_args(args: argparse.Namespace) -> CQLConfig:
    return build_config(CQLConfig, args)


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
