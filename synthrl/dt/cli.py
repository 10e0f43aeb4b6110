"""``synthrl run dt-pretrain ...`` and ``synthrl run dt ...``.

``dt-pretrain --out DIR``: DIR is a run directory (params.json, metrics.csv with the loss curve,
DONE) plus ``artifact.json``, which points at the content-addressed artifact in the store that
holds the step checkpoints. ``synthrl run dt --pretrained DIR`` follows that pointer.
"""

from __future__ import annotations

import argparse

from synthrl.cli import fraction, nonneg_int, positive_int, temperature
from synthrl.errors import UserError


FAST_PATH_HELP = ("before the first update, check the fast path (compiled, bf16) against eager fp32 on a copy "
                  "of the model (on a mismatch: train eagerly in fp32)")


def _checkpoint_list(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(float(x)) if "e" in x.lower() else int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list of steps like 1,1000,20000, got {text!r}")
    if not steps or any(s < 1 for s in steps):
        raise argparse.ArgumentTypeError(f"expected positive steps like 1,1000,20000, got {text!r}")
    return steps


def _target_list(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected target returns like 3600,1800, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected target returns like 3600,1800, got {text!r}")
    return values


# ---------------------------------------------------------------------------------------------
# dt-pretrain
# ---------------------------------------------------------------------------------------------
def add_pretrain_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory (params.json, metrics.csv, artifact.json, DONE)")
    p.add_argument("--data", default="mc", choices=["mc", "iid", "identity", "mapping", "text"])
    p.add_argument("--states", type=positive_int, default=100, help="M: MC/IID vocabulary (default 100)")
    p.add_argument("--order", type=positive_int, default=1, help="n: Markov-chain order (default 1)")
    p.add_argument("--temperature", type=temperature, default=1.0, help="tau (default 1; 'inf' = uniform)")
    p.add_argument("--data-seed", type=nonneg_int, default=666)
    p.add_argument("--steps", type=positive_int, default=80000)
    p.add_argument("--checkpoints", type=_checkpoint_list, default=None,
                   help="steps to save (default 1,1000,8000,10000,20000,40000,60000,80000 cut to --steps, plus --steps)")
    p.add_argument("--corpus", default=None, help="--data text: a UTF-8 text file (byte-level tokens)")
    p.add_argument("--warmup-steps", type=nonneg_int, default=10000)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--seq-len", type=positive_int, default=1024)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--loss-chunk", type=positive_int, default=4096, help="logit rows materialised at a time")
    p.add_argument("--progress-every", type=positive_int, default=1000, help="steps between resumable saves")
    p.add_argument("--device", default="auto")
    p.add_argument("--fast-path-check", choices=("on", "off"), default="on", help=FAST_PATH_HELP)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def pretrain_config_from_args(args) -> "DTPretrainConfig":  # noqa: F821
    from synthrl.dt.config import DTPretrainConfig

    kw = dict(data=args.data, states=args.states, order=args.order, temperature=args.temperature,
              data_seed=args.data_seed, corpus=args.corpus, device=args.device, warmup_steps=args.warmup_steps,
              batch_size=args.batch_size, seq_len=args.seq_len, precision=args.precision, compile=args.compile,
              loss_chunk=args.loss_chunk, progress_every=args.progress_every)
    if args.checkpoints is not None:
        kw["checkpoints"] = args.checkpoints
    return DTPretrainConfig.with_defaults_for(args.steps, **kw).validate()


def _prepare_run_dir(out: str, params: dict, resume: bool):
    """Check --out (writable; a new run, or the same run with --resume); the caller writes params.json."""
    from synthrl.rundir import RunDir

    run_dir = RunDir(out)
    run_dir.check_writable("--out")
    if (run_dir.path / "params.json").exists():
        if not resume:
            raise UserError(f"--out {out}: already holds a run; pass --resume to continue it or choose a new --out")
        run_dir.check_params_match(params, ignore=("device", "fast_path"))
    elif resume and run_dir.path.exists() and any(run_dir.path.iterdir()):
        raise UserError(f"--out {out}: --resume given but there is no params.json in it")
    return run_dir


def main_pretrain(args) -> int:
    from synthrl import __version__
    from synthrl.dt.pretrain import ARTIFACT_KIND, build_pretrain_artifact, pretrain_params, step_filename
    from synthrl.store import ArtifactStore
    from synthrl.utils.io import atomic_write_json, params_key, resolve_device

    cfg = pretrain_config_from_args(args)
    resolve_device(cfg.device)
    store = ArtifactStore()
    key_params = pretrain_params(cfg)
    params = {"algorithm": "dt-pretrain", "artifact_kind": ARTIFACT_KIND, "artifact_key": params_key(key_params),
              "artifact_params": key_params, "store": str(store.root), "device": cfg.device,
              "synthrl_version": __version__}
    run_dir = _prepare_run_dir(args.out, params, args.resume)
    store.check_writable()
    run_dir.write_params(params)  # the run directory logs the loss curve while the artifact is built
    if run_dir.is_done() and (run_dir.path / "artifact.json").is_file():
        print(f"{run_dir.path}: already done")
        return 0
    path = build_pretrain_artifact(cfg, store, progress=not args.no_progress, log=run_dir,
                                   fast_path_check=args.fast_path_check == "on")
    atomic_write_json(run_dir.path / "artifact.json", {
        "kind": ARTIFACT_KIND, "key": path.name, "path": str(path),
        "checkpoints": {str(s): str(path / step_filename(s)) for s in cfg.checkpoints}})
    run_dir.mark_done({"artifact": str(path), "steps": cfg.steps})
    print(f"pre-training artifact: {path}")
    return 0


# ---------------------------------------------------------------------------------------------
# dt (fine-tuning + evaluation)
# ---------------------------------------------------------------------------------------------
def add_finetune_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="D4RL name (hopper-medium-v2) or a D4RL-format HDF5 file")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--pretrained", default="none",
                   help="a dt-pretrain run directory, a pre-training artifact directory, a GPT-2-format "
                        "checkpoint file, or none (plain DT; default)")
    p.add_argument("--pretrain-step", type=positive_int, default=20000,
                   help="which pre-training checkpoint to fine-tune from (default 20000)")
    p.add_argument("--updates", type=positive_int, default=100000)
    p.add_argument("--extra-updates", type=nonneg_int, default=0, help="more fine-tuning updates (table 26)")
    p.add_argument("--eval-every", type=positive_int, default=5000)
    p.add_argument("--eval-episodes", type=positive_int, default=10)
    p.add_argument("--seeds", default="0", help="seed ensemble trained together: 0-19, 0,3,7 or 5")
    p.add_argument("--finetune-ratio", type=fraction, default=1.0, help="fraction of trajectories used")
    p.add_argument("--targets", type=_target_list, default=None, help="target returns (default: the spec's)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--context", type=positive_int, default=20)
    p.add_argument("--warmup-steps", type=nonneg_int, default=5000)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"])
    p.add_argument("--env-version", default="v4", choices=["v4", "v5"])
    p.add_argument("--eval-workers", type=nonneg_int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--fast-path-check", choices=("on", "off"), default="on", help=FAST_PATH_HELP)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--no-progress", action="store_true")


def finetune_config_from_args(args):
    from synthrl.dt.config import DTConfig
    from synthrl.utils.io import parse_seeds

    pretrained = None if str(args.pretrained).lower() == "none" else args.pretrained
    return DTConfig(
        dataset=args.dataset, seeds=parse_seeds(args.seeds), pretrained_path=pretrained,
        pretrain_step=args.pretrain_step, updates=args.updates, extra_updates=args.extra_updates,
        eval_every=args.eval_every, eval_episodes=args.eval_episodes, finetune_ratio=args.finetune_ratio,
        targets=args.targets, batch_size=args.batch_size, context=args.context, warmup_steps=args.warmup_steps,
        precision=args.precision, compile=args.compile, env_version=args.env_version,
        eval_workers=args.eval_workers, device=args.device,
    ).validate()


def main_finetune(args) -> int:
    from synthrl.dt.runner import make_runner, run_params
    from synthrl.runner import drive

    from synthrl.utils.io import resolve_device

    config = finetune_config_from_args(args)
    resolve_device(config.device)  # a bad --device fails before anything is written
    params = run_params(config)
    run_dir = _prepare_run_dir(args.out, params, args.resume)
    if run_dir.is_done():
        print(f"{run_dir.path}: already done")
        return 0
    runner = make_runner(config, None, fast_path_check=args.fast_path_check == "on")
    params["fast_path"] = runner.fast_path  # which update path this session uses, and why
    run_dir.write_params(params)  # after the dataset and model are ready: a failure there leaves no run behind
    rows = drive(runner, run_dir, resume=args.resume, progress=not args.no_progress, desc="dt")
    if rows:
        mean = sum(r["normalized_score"] for r in rows) / len(rows)
        print(f"final normalised score (mean over {len(rows)} seeds): {mean:.1f}")
    return 0


COMMANDS = {
    "dt-pretrain": ("pre-train the DT backbone on synthetic (or text) tokens into a store artifact",
                    add_pretrain_arguments, main_pretrain),
    "dt": ("fine-tune and evaluate a Decision Transformer seed ensemble", add_finetune_arguments, main_finetune),
}
