"""``synthrl run ALGO``: train one run group (a seed ensemble) into a run directory, without Ray.

One sub-command per registered algorithm (synthrl.registry): its options are its config
dataclass's fields (synthrl.config_fields), its run is ``synthrl.runner.drive``. An algorithm may
add sub-commands of its own (``Algorithm.commands``, e.g. ``dt-pretrain``).
"""

from __future__ import annotations

import argparse

from synthrl import registry
from synthrl.config_fields import add_config_arguments, add_run_options, config_from_args, execution_only_fields

# params.json keys a --resume may see change: the session's own facts, not the run's parameters
SESSION_KEYS = ("synthrl_version", "fast_path", "device", "versions", "git_commit")


HELP = "train and evaluate one run (a seed ensemble) into a run directory"


def register(subparsers) -> None:
    parser = subparsers.add_parser("run", help=HELP)
    algos = parser.add_subparsers(dest="algorithm", metavar="ALGO", parser_class=type(parser))
    algos.required = True
    for algo in registry.algorithms().values():
        p = algos.add_parser(algo.name, help=algo.help, description=algo.help)
        add_algorithm_arguments(p, algo)
        p.set_defaults(func=lambda args, algo=algo: run_algorithm(algo, args))
        for command, (help_text, add_arguments, main) in algo.commands.items():
            extra = algos.add_parser(command, help=help_text, description=help_text)
            add_arguments(extra)
            extra.set_defaults(func=main)


def add_algorithm_arguments(p: argparse.ArgumentParser, algo: registry.Algorithm) -> None:
    add_config_arguments(p, algo.config)
    add_run_options(p, algo.fast_path_help)


def run_algorithm(algo: registry.Algorithm, args: argparse.Namespace) -> int:
    """Check --out, build the runner (dataset, pre-training), write params.json, then ``drive`` it."""
    from synthrl.errors import UserError
    from synthrl.provenance import session_record
    from synthrl.rundir import RunDir
    from synthrl.runner import drive
    from synthrl.store import ArtifactStore
    from synthrl.utils.io import resolve_device

    config = config_from_args(algo.config, args)
    resolve_device(config.device)  # a clear error before any work
    run_dir = RunDir(args.out)
    run_dir.check_writable("--out")
    store = ArtifactStore()
    if getattr(config, "pretrain", None) not in (None, "none"):
        store.check_writable()  # the pre-training artifact is built there
    params = algo.run_params(config)
    if args.resume:
        if (run_dir.path / "params.json").is_file():
            run_dir.check_params_match(params, ignore=SESSION_KEYS + execution_only_fields(algo.config))
        elif run_dir.path.exists() and any(run_dir.path.iterdir()):
            raise UserError(f"--out {run_dir.path}: --resume given but there is no params.json in it")
        if run_dir.is_done():
            print(f"{run_dir.path}: already done")
            return 0
    elif (run_dir.path / "params.json").exists():
        raise UserError(f"--out {run_dir.path}: already holds a run; pass --resume to continue it or choose a new --out")
    progress = not args.no_progress
    runner = algo.make_runner(config, store, progress=progress, fast_path_check=args.fast_path_check == "on")
    params["fast_path"] = getattr(runner, "fast_path", None)  # which update path this session uses, and why
    params.update(session_record(resolve_device(config.device)))  # versions, git commit, device: for the report
    run_dir.write_params(params)  # after the dataset and pre-training are ready: a failure there leaves no run behind
    rows = drive(runner, run_dir, resume=args.resume, progress=progress,
                 desc=f"{params.get('variant', algo.name)} {params.get('dataset', '')}".strip())
    scores = [r["normalized_score"] for r in rows if r.get("normalized_score") is not None]
    mean = f", final normalised score {sum(scores) / len(scores):.1f} (mean over the seeds)" if scores else ""
    print(f"{run_dir.path}: done ({runner.updates_done} updates, {len(config.seeds)} seeds{mean})")
    return 0

