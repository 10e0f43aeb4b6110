"""``synthrl sweep plan|run|resume|status|ls``: sweep files on Ray Tune (Ray imported only by run/resume)."""

from __future__ import annotations

import argparse


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _log_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in ("wandb", "mlflow")]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"expected wandb, mlflow or wandb,mlflow, got {text!r}")
    return names


def register(subparsers) -> None:
    parser = subparsers.add_parser("sweep", help="plan, run, resume and inspect sweeps (sweeps/*.yaml) on Ray Tune",
                                   description="Sweeps: a sweep file expands into pre-training artifacts and "
                                               "fine-tuning trials (one per variant, dataset and seed group).")
    verbs = parser.add_subparsers(dest="sweep_verb", metavar="VERB", parser_class=type(parser))
    verbs.required = True

    def storage_option(p):
        p.add_argument("--storage", metavar="PATH", default=None,
                       help="results and artifact root (absolute or made absolute; default $SYNTHRL_STORE or "
                            "~/.cache/synthrl)")

    def set_option(p):
        p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                       help="override a sweep-file key before validation, e.g. corpus=/data/wiki.txt or "
                            "finetune.updates=2000 (repeatable)")

    p = verbs.add_parser("plan", help="print the trials, artifacts, resources and GPU-hours; runs nothing")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--trials", action="store_true", help="list every trial")
    p.add_argument("--cluster", action="store_true",
                   help="also show how the trials pack on a Ray cluster's nodes (joins --address, default auto)")
    p.add_argument("--address", default=None, metavar="ADDR", help="with --cluster: the cluster (HEAD:6379)")
    set_option(p)
    p.set_defaults(func=_plan)

    p = verbs.add_parser("run", help="run a sweep: pre-training artifacts, then Tune trials, with a live view")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--name", default=None, help="sweep name (default: the file's `name`; a prefix for files "
                                                "holding several sweeps)")
    storage_option(p)
    p.add_argument("--max-gpus", type=_nonneg_float, default=None, metavar="N",
                   help="use at most N GPUs at once (0: CPU only)")
    p.add_argument("--address", default=None, metavar="ADDR", help="an existing Ray cluster (default: local Ray)")
    p.add_argument("--log", type=_log_names, default=None, metavar="wandb|mlflow",
                   help="add Ray's experiment-tracker logger callbacks")
    p.add_argument("--no-dashboard", dest="dashboard", action="store_false",
                   help="do not start the Ray dashboard (local Ray only; it listens on 127.0.0.1)")
    set_option(p)
    p.set_defaults(func=_run, interrupt_hint="`synthrl sweep resume NAME` continues from the trials' last checkpoints")

    p = verbs.add_parser("submit", help="submit a sweep as a Ray Job to a cluster; prints the job id, dashboard "
                                        "URL and the command that follows its logs")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--address", required=True, metavar="http://HEAD:8265",
                   help="the cluster's dashboard (Jobs API) address")
    p.add_argument("--name", default=None, help="sweep name (default: the file's `name`)")
    p.add_argument("--storage", metavar="PATH|URI", default=None,
                   help="results root as the cluster sees it (shared NFS path or s3://...; default: the head's "
                        "$SYNTHRL_STORE or ~/.cache/synthrl)")
    p.add_argument("--max-gpus", type=_nonneg_float, default=None, metavar="N")
    p.add_argument("--log", type=_log_names, default=None, metavar="wandb|mlflow")
    set_option(p)
    p.set_defaults(func=_submit)

    p = verbs.add_parser("resume", help="resume an interrupted sweep (stopped and errored trials from their "
                                        "checkpoints)")
    p.add_argument("name", metavar="NAME", help="a sweep's name, or the name a multi-sweep file was launched under "
                                                "(its file name without .yaml, or its --name): all of its sweeps")
    storage_option(p)
    p.add_argument("--max-gpus", type=_nonneg_float, default=None, metavar="N")
    p.add_argument("--address", default=None, metavar="ADDR")
    p.add_argument("--no-dashboard", dest="dashboard", action="store_false")
    p.set_defaults(func=_resume)

    p = verbs.add_parser("status", help="trials by state, progress, errors (reads the storage; no Ray)")
    p.add_argument("name", metavar="NAME", help="a sweep's name, or the name a multi-sweep file was launched under")
    storage_option(p)
    p.add_argument("--report", action="store_true",
                   help="also (re)write STORAGE/NAME/report.html, the one-page report, and print its path")
    p.set_defaults(func=_status)

    p = verbs.add_parser("ls", help="list the sweeps in the storage")
    storage_option(p)
    p.set_defaults(func=_ls)


def _load(args):
    """(sweep, document, overrides) for each sweep in the file, with --name and --set applied."""
    from synthrl.sweep.schema import document_source, parse_set_options, read_documents, sweep_from_dict

    overrides = parse_set_options(args.overrides)
    documents = read_documents(args.file)
    out = []
    for i, doc in enumerate(documents):
        these = dict(overrides)
        name = getattr(args, "name", None)
        if name:
            base = doc.get("name") if isinstance(doc, dict) else None
            these["name"] = name if len(documents) == 1 else f"{name}-{base}"
        sweep = sweep_from_dict(doc, document_source(args.file, i, len(documents)), these)
        out.append((sweep, doc, these))
    names = [s.name for s, _, _ in out]
    if len(set(names)) != len(names):
        from synthrl.errors import UserError

        raise UserError(f"{args.file}: name: expected distinct names for its sweeps, got {names}")
    return out


def _plan(args) -> int:
    from synthrl.sweep.plan import make_plan, plan_summary

    plans = [make_plan(sweep) for sweep, _, _ in _load(args)]
    address = args.address or "auto"
    if args.cluster:
        import ray

        from trainables.cluster import cluster_machine, cluster_packing_text, connect

        joined_here = not ray.is_initialized()
        connect(address, logging_level="ERROR", log_to_driver=False)   # once for every plan of the file
        try:
            machine, packing = cluster_machine(address), [cluster_packing_text(plan, address) for plan in plans]
        finally:
            if joined_here:
                ray.shutdown()
    else:
        machine, packing = local_machine(), []
    for i, plan in enumerate(plans):
        if i:
            print()
        print(plan_summary(plan, show_trials=args.trials, machine=machine))
    for text in packing:
        print()
        print(text)
    return 0


def local_machine():
    """This machine's CPUs and CUDA GPUs (what a local `sweep run` gets)."""
    import os

    from synthrl.sweep.plan import Machine

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        import torch

        gpus = torch.cuda.device_count()
    except ImportError:
        gpus = 0
    return Machine("this machine", cpus, gpus)


def _submit(args) -> int:
    import os

    from trainables.cluster import submit_job

    sweeps = _load(args)   # refuse a bad file here, before anything reaches the cluster
    run_args = []
    if args.name:
        run_args += ["--name", args.name]
    storage = args.storage
    if storage:
        storage = storage if "://" in storage else os.path.abspath(os.path.expanduser(storage))
        run_args += ["--storage", storage]
    if args.max_gpus is not None:
        run_args += ["--max-gpus", f"{args.max_gpus:g}"]
    if args.log:
        run_args += ["--log", ",".join(args.log)]
    for item in args.overrides:
        run_args += ["--set", item]
    name = sweeps[0][0].name if len(sweeps) == 1 else (args.name or sweeps[0][0].name)
    job = submit_job(args.file, args.address, name, run_args)
    print(f"job {job.job_id} submitted")
    print(f"dashboard: {job.dashboard_url}")
    print(f"follow:    {job.follow_command}")
    where = f" --storage {storage}" if storage else ""
    for sweep, _, _ in sweeps:
        print(f"status:    synthrl sweep status {sweep.name}{where}")
    return 0


def _run(args) -> int:
    from pathlib import Path

    from trainables.launcher import INTERRUPTED, ResumeHint, record_group, resolve_storage, run_sweep

    sweeps = _load(args)   # every document validated before anything starts
    storage = resolve_storage(args.storage)
    names = [sweep.name for sweep, _, _ in sweeps]
    resume_name = names[0]
    if len(sweeps) > 1:   # `sweep resume <file stem or --name>` continues all of the file's sweeps
        group = args.name or Path(args.file).stem
        if group not in names:
            record_group(storage, group, args.file, sweeps)
            resume_name = group
    hint = ResumeHint(resume_name, storage, args.address, args.max_gpus, args.dashboard)
    import ray

    ours = not ray.is_initialized()
    code = 0
    try:
        for i, (sweep, doc, overrides) in enumerate(sweeps):   # one Ray session for all of the file's sweeps
            code = max(code, run_sweep(sweep, doc, overrides, storage, max_gpus=args.max_gpus,
                                       address=args.address, log=args.log, dashboard=args.dashboard,
                                       shutdown=False, resume=hint if len(sweeps) > 1 else None,
                                       not_started=tuple(names[i + 1:])))
            if code == INTERRUPTED:   # after Ctrl-C nothing more is launched
                break
    finally:
        if ours and ray.is_initialized():
            ray.shutdown()
    return code


def _resume(args) -> int:
    from trainables.launcher import resolve_storage, resume

    return resume(args.name, resolve_storage(args.storage), address=args.address, dashboard=args.dashboard,
                  max_gpus=args.max_gpus)


def _status(args) -> int:
    from trainables.launcher import resolve_storage, status_text

    storage = resolve_storage(args.storage, writable=False)
    print(status_text(storage, args.name))
    if args.report:
        from trainables.sweep_report import sweep_names, write_sweep_report

        written = [write_sweep_report(storage, name) for name in sweep_names(storage, args.name)]
        return 0 if all(written) else 1
    return 0


def _ls(args) -> int:
    from trainables.launcher import resolve_storage, ls_text

    print(ls_text(resolve_storage(args.storage, writable=False)))
    return 0
