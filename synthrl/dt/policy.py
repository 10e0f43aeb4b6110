"""A trained Decision Transformer run as a BatchPolicy (``synthrl data make ENV --policy RUN_DIR``).

    load_policy(run_dir, member=0, device="cpu") -> DTMemberPolicy          (docs/CONTRACTS.md)

The model is rebuilt from params.json as DTRunner builds it (``build_model``), with one member: the
checkpoint's tensors of ensemble member ``member`` (an index into params.json's "seeds"). The state
normalisation is not in the checkpoint: it is recomputed from the run's dataset (which must still be
the file the run trained on; its SHA-256 is checked). The policy acts as the runner's evaluation does
(``DTEnsemblePolicy``), conditioned on the environment's primary target return.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from synthrl.dt.config import DTConfig
from synthrl.dt.pretrain import load_backbone_checkpoint, resolve_pretrained, use_bf16
from synthrl.dt.runner import DTEnsemblePolicy, DTRunner, build_model, state_normalizer
from synthrl.envs.policies import member_checkpoint
from synthrl.errors import UserError
from synthrl.rundir import WRONG_CONTENT, RunDir, error_detail


class _OneMember:
    """What DTEnsemblePolicy reads from a DTRunner, for a one-member model in evaluation mode."""

    predict = DTRunner.predict        # the runner's own inference path (eval mode, bf16 autocast on CUDA)
    _autocast = DTRunner._autocast

    def __init__(self, model, config: DTConfig, max_timestep: int, state_mean, state_std, device: str):
        self.model, self.config, self.max_timestep, self.device = model, config, int(max_timestep), device
        self.members, self.state_dim, self.act_dim = 1, model.state_dim, model.act_dim
        self.data = SimpleNamespace(state_mean=state_mean, state_std=state_std)
        self.bf16 = use_bf16(config.precision, device)


class DTMemberPolicy:
    """BatchPolicy: every row an episode of one DT member, all rows in one model call per step."""

    def __init__(self, member: _OneMember, target: float, env: str, description: str = "dt"):
        self.member, self.target, self.env, self.description = member, float(target), env, description
        self.episodes: DTEnsemblePolicy | None = None

    def reset(self, num_envs: int) -> None:
        self.episodes = DTEnsemblePolicy(self.member, (self.target,), int(num_envs))
        self.episodes.reset(int(num_envs))

    def act(self, obs: np.ndarray, last_rewards: np.ndarray) -> np.ndarray:
        if self.episodes is None:
            raise RuntimeError("DTMemberPolicy.act before reset(num_envs)")
        shape = tuple(np.shape(obs))
        if len(shape) != 2 or shape[1] != self.member.state_dim:
            raise UserError(f"{self.description}: trained on {self.env} ({self.member.state_dim}-dim observations), "
                            f"got observations of shape {shape}")
        return self.episodes.act(obs, last_rewards).float().cpu().numpy()

    def describe(self) -> str:
        return self.description


def _config(run: RunDir, params: dict, device: str) -> DTConfig:
    try:
        return DTConfig(**{**params["config"], "device": device}).validate()
    except (KeyError, TypeError) as e:
        raise UserError(f"{run.path / 'params.json'}: not the params of a dt run ({type(e).__name__}: {e})") from None


def _dataset(run: RunDir, params: dict, config: DTConfig):
    """The run's training data (after its finetune_ratio subsample), as DTRunner saw it."""
    from synthrl.data import load_dataset

    recorded = params.get("dataset_path")
    source = recorded if recorded and Path(recorded).is_file() else config.dataset
    ds = load_dataset(source)
    if params.get("dataset_sha256") and ds.sha256 != params["dataset_sha256"]:
        raise UserError(f"{source}: not the dataset the dt run {run.path} trained on (SHA-256 differs); "
                        "its state normalisation comes from that file")
    return ds.subsample(config.finetune_ratio, config.finetune_ratio_seed) if config.finetune_ratio < 1 else ds


def _backbone(config: DTConfig, member_state: dict) -> dict | None:
    """The pre-trained backbone's description for build_model (None for the plain DT): sizes from the
    run's own (fine-tuned) tensors, head count / activation / LayerNorm eps from where the runner read them."""
    if config.pretrain is not None:  # the pre-training artifact's checkpoints store asdict(pretrain.backbone)
        stored = asdict(config.pretrain.backbone)
    elif config.pretrained_path is not None:
        stored = load_backbone_checkpoint(resolve_pretrained(config.pretrained_path, config.pretrain_step))["backbone"]
    else:
        return None
    tensors = {k: v[0] for k, v in member_state.items() if k.startswith("transformer.")}
    return {"state_dict": tensors, "backbone": stored}


def load_policy(run_dir: str | Path, *, member: int = 0, device: str = "cpu") -> DTMemberPolicy:
    run = RunDir(run_dir)
    params = run.read_params()
    where = str(run.path)
    config = _config(run, params, str(device))
    seeds = list(config.seeds)
    state = member_checkpoint(run, seeds, member, "dt")
    try:
        model_state, saved_seeds = state["runner"]["model"], [int(s) for s in state["runner"]["seeds"]]
        if saved_seeds != seeds:
            raise UserError(f"{run.checkpoint_dir}: holds seeds {saved_seeds}, params.json says {seeds}")
        member_state = {k: v[member:member + 1] for k, v in model_state.items()}
    except WRONG_CONTENT as e:
        raise UserError(f"{run.checkpoint_dir}: not a dt run checkpoint ({error_detail(e)})") from None

    ds = _dataset(run, params, config)
    mean, std = state_normalizer(ds.trajectories())
    model, max_timestep = build_model(config, 1, ds.obs_dim, ds.act_dim, _backbone(config, member_state))
    try:
        model.load_state_dict(member_state)
    except RuntimeError as e:
        raise UserError(f"{run.checkpoint_dir}: does not fit the model params.json describes "
                        f"({str(e).splitlines()[0]})") from None
    model.to(device).eval()
    env = str(params.get("env", ds.env))
    target = config.targets_for(env)[0]
    return DTMemberPolicy(_OneMember(model, config, max_timestep, mean, std, str(device)), target, env,
                          description=f"dt run {where} (member {member}, seed {seeds[member]}): target return {target:g}")
