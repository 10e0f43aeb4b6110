"""``synthrl run dt-pretrain ...`` (DT's extra command, registered in synthrl/dt/__init__.py).

``synthrl run dt`` itself is the registry's generic command (synthrl/commands/run.py).

``dt-pretrain --out DIR``: DIR is a run directory (params.json, metrics.csv with the loss curve,
DONE) plus ``artifact.json``, which points at the content-addressed artifact in the store that
holds the step checkpoints. ``synthrl run dt --pretrained DIR`` follows that pointer.
"""

from __future__ import annotations

import argparse

from synthrl.config_fields import add_config_arguments, add_run_options, config_from_args
from synthrl.dt.config import DTPretrainConfig
from synthrl.errors import UserError


FAST_PATH_HELP = ("before the first update, check the fast path (compiled, bf16) against eager fp32 on a copy "
                  "of the model (on a mismatch: train eagerly in fp32)")


# ---------------------------------------------------------------------------------------------
# dt-pretrain
# ---------------------------------------------------------------------------------------------
def add_pretrain_arguments(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p, DTPretrainConfig)
    add_run_options(p, FAST_PATH_HELP, out_help="run directory (params.json, metrics.csv, artifact.json, DONE)")


def pretrain_config_from_args(args) -> DTPretrainConfig:
    return config_from_args(DTPretrainConfig, args)


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
    from synthrl.dt.pretrain import ARTIFACT_KIND, artifact_key, build_pretrain_artifact, pretrain_params, step_filename
    from synthrl.store import ArtifactStore
    from synthrl.utils.io import atomic_write_json, resolve_device

    cfg = pretrain_config_from_args(args)
    resolve_device(cfg.device)
    store = ArtifactStore()
    key_params = pretrain_params(cfg)
    params = {"algorithm": "dt-pretrain", "artifact_kind": ARTIFACT_KIND, "artifact_key": artifact_key(cfg),
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
