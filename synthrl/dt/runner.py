"""Decision Transformer fine-tuning and evaluation for a batched seed ensemble (spec dt.md 3-5).

``DTRunner`` implements synthrl.runner.Runner: E seeds are E members of one DecisionTransformer whose
parameters carry a leading member dimension, so one forward/backward trains all of them with
independent weights, batches, dropout masks and per-member gradient clipping. The dataset lives on
the device and batches are drawn there (no host synchronisation inside ``train``).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synthrl.config_fields import content_key, result_params
from synthrl.dt.config import DTConfig
from synthrl.dt.fast import UpdateStep, without_dropout
from synthrl.dt.model import DecisionTransformer, infer_backbone_config
from synthrl.dt.pretrain import (ARTIFACT_KIND, FORMAT_VERSION, build_pretrain_artifact, checkpoint_in_artifact,
                                 load_backbone_checkpoint, pretrain_params, resolve_pretrained, use_bf16,
                                 use_compile)
from synthrl.errors import UserError
from synthrl.store import ArtifactStore
from synthrl.utils.fastpath import Parity, compare_probes, failed, probe_updates, settle, tolerance_for
from synthrl.utils.io import resolve_device, sha256_file

STD_EPS = 1e-6


# ---------------------------------------------------------------------------------------------
# data: whole trajectories flattened on the device, windows gathered per batch
# ---------------------------------------------------------------------------------------------
@dataclass
class TrajectoryData:
    observations: torch.Tensor   # float32 [N, dS], normalised
    actions: torch.Tensor        # float32 [N, dA]
    returns_to_go: torch.Tensor  # float32 [N], suffix sums within the trajectory / rtg_scale
    timesteps: torch.Tensor      # int64 [N], step within the trajectory, clipped to max_ep_len - 1
    starts: torch.Tensor         # int64 [J] first row of each trajectory
    lengths: torch.Tensor        # int64 [J]
    probs: torch.Tensor          # float32 [J], proportional to length
    state_mean: np.ndarray
    state_std: np.ndarray

    @property
    def state_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]


def state_normalizer(trajectories: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (+1e-6) of every observation of the trajectories used for training."""
    obs = np.concatenate([t["observations"] for t in trajectories]).astype(np.float64)
    return obs.mean(0).astype(np.float32), (obs.std(0) + STD_EPS).astype(np.float32)


def prepare_trajectories(trajectories: list[dict], rtg_scale: float = 1000.0, max_ep_len: int = 1000,
                         device: str = "cpu") -> TrajectoryData:
    if not trajectories:
        raise UserError("dt: the dataset has no trajectories")
    mean, std = state_normalizer(trajectories)
    obs, act, rtg, ts, lengths = [], [], [], [], []
    for t in trajectories:
        n = len(t["rewards"])
        rewards = np.asarray(t["rewards"], dtype=np.float64)
        obs.append((np.asarray(t["observations"], np.float32) - mean) / std)
        act.append(np.asarray(t["actions"], np.float32))
        rtg.append(np.cumsum(rewards[::-1])[::-1] / rtg_scale)  # undiscounted suffix sums
        ts.append(np.minimum(np.arange(n), max_ep_len - 1))
        lengths.append(n)
    lengths_np = np.asarray(lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths_np)[:-1]])
    to = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)  # noqa: E731
    return TrajectoryData(
        observations=to(np.concatenate(obs), torch.float32),
        actions=to(np.concatenate(act), torch.float32),
        returns_to_go=to(np.concatenate(rtg), torch.float32),
        timesteps=to(np.concatenate(ts), torch.int64),
        starts=to(starts, torch.int64),
        lengths=to(lengths_np, torch.int64),
        probs=to(lengths_np / lengths_np.sum(), torch.float32),
        state_mean=mean, state_std=std,
    )


def sample_windows(data: TrajectoryData, members: int, batch: int, K: int, generator: torch.Generator,
                   action_pad: float = -10.0):
    """[E, B] windows: trajectory ~ length, start ~ U{0..len-1} (as in Chen et al.'s DT)."""
    dev = data.observations.device
    traj = torch.multinomial(data.probs, members * batch, replacement=True, generator=generator)
    length = data.lengths[traj]
    start = torch.minimum((torch.rand(members * batch, generator=generator, device=dev) * length).long(), length - 1)
    out = gather_windows(data, traj, start, K, action_pad)
    return tuple(t.reshape(members, batch, *t.shape[1:]) for t in out)


def gather_windows(data: TrajectoryData, traj: torch.Tensor, start: torch.Tensor, K: int, action_pad: float = -10.0):
    """Windows of up to K steps from ``start`` in trajectories ``traj`` ([N] each). Windows cut by the
    trajectory's end are left-padded: states 0, actions ``action_pad``, returns-to-go 0, timesteps 0,
    mask False. Returns states [N,K,dS], actions [N,K,dA], rtg [N,K,1], timesteps [N,K], mask [N,K]."""
    dev = data.observations.device
    valid_len = torch.clamp(data.lengths[traj] - start, max=K)
    k = torch.arange(K, device=dev)
    pad = (K - valid_len).unsqueeze(1)
    mask = k.unsqueeze(0) >= pad
    rows = data.starts[traj].unsqueeze(1) + start.unsqueeze(1) + k.unsqueeze(0) - pad
    rows = torch.where(mask, rows, torch.zeros_like(rows))
    m3 = mask.unsqueeze(-1)
    states = torch.where(m3, data.observations[rows], 0.0)
    actions = torch.where(m3, data.actions[rows], action_pad)
    rtg = torch.where(mask, data.returns_to_go[rows], 0.0).unsqueeze(-1)
    timesteps = torch.where(mask, data.timesteps[rows], 0)
    return states, actions, rtg, timesteps, mask


# ---------------------------------------------------------------------------------------------
# the pre-trained backbone, wherever it comes from
# ---------------------------------------------------------------------------------------------
def pretrained_source(config: DTConfig, store: ArtifactStore | None, build: bool = True) -> dict | None:
    """None for plain DT; else {"path": checkpoint file, "artifact_key"/"sha256", "step"}."""
    if config.pretrain is not None:
        store = store or ArtifactStore()
        params = pretrain_params(config.pretrain)
        if build:
            artifact = build_pretrain_artifact(config.pretrain, store)
        else:
            artifact = store.path(ARTIFACT_KIND, params, FORMAT_VERSION)
        return {"path": checkpoint_in_artifact(artifact, config.pretrain_step) if build else None,
                "artifact_kind": ARTIFACT_KIND, "artifact_key": content_key(ARTIFACT_KIND, params, FORMAT_VERSION),
                "step": config.pretrain_step}
    if config.pretrained_path is not None:
        path = resolve_pretrained(config.pretrained_path, config.pretrain_step)
        return {"path": path, "sha256": sha256_file(path), "step": config.pretrain_step}
    return None


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------
def build_model(config: DTConfig, members: int, state_dim: int, act_dim: int,
                ckpt: dict | None = None) -> tuple[DecisionTransformer, int]:
    """The (uninitialised) ensemble model and the largest timestep index it embeds.

    ``ckpt`` is the pre-trained backbone (as load_backbone_checkpoint returns it): its tensors give the
    backbone's sizes, its "backbone" entry the head count, activation and LayerNorm eps. None: plain DT.
    """
    backbone_cfg = config.backbone
    if ckpt is not None:
        stored = ckpt.get("backbone") or {}
        backbone_cfg = dataclasses.replace(
            infer_backbone_config(ckpt["state_dict"], n_head=int(stored.get("n_head", 1)),
                                  activation=str(stored.get("activation", "relu"))),
            layer_norm_eps=float(stored.get("layer_norm_eps", 1e-5))).validate()
    # timesteps index the timestep table: the plain DT's own (max_ep_len rows) or the position table
    max_timestep = config.max_ep_len - 1 if ckpt is None else min(config.max_ep_len, backbone_cfg.n_positions) - 1
    model = DecisionTransformer(
        backbone_cfg, members, state_dim, act_dim, pretrained=ckpt is not None, max_ep_len=config.max_ep_len,
        embd_dropout=config.embd_dropout, attn_dropout=config.attn_dropout, resid_dropout=config.resid_dropout)
    return model, max_timestep


# ---------------------------------------------------------------------------------------------
# evaluation policy: every member x target x episode in one batched model call per step
# ---------------------------------------------------------------------------------------------
class DTEnsemblePolicy:
    """BatchPolicy for ``evaluate``: env b belongs to evaluation member m = b // episodes, which is
    (target index m // E, ensemble member m % E). History per env is kept here, cut to the last K
    steps; the return-to-go starts at the target and drops by reward / rtg_scale each step."""

    def __init__(self, runner: "DTRunner", targets: tuple[float, ...], episodes: int):
        self.runner = runner
        self.targets = targets
        self.episodes = episodes

    def reset(self, num_envs: int) -> None:
        r = self.runner
        E, nT, ep = r.members, len(self.targets), self.episodes
        if num_envs != E * nT * ep:
            raise ValueError(f"DTEnsemblePolicy: expected {E * nT * ep} environments, got {num_envs}")
        dev, K = r.device, r.config.context
        # env_of[e, j] = env index of the j-th env (target-major) of member e
        t_idx = torch.arange(nT).view(1, nT, 1)
        e_idx = torch.arange(E).view(E, 1, 1)
        ep_idx = torch.arange(ep).view(1, 1, ep)
        self.env_of = ((t_idx * E + e_idx) * ep + ep_idx).reshape(E, nT * ep).to(dev)
        Bm = nT * ep
        self.states = torch.zeros(E, Bm, K, r.state_dim, device=dev)
        self.actions = torch.zeros(E, Bm, K, r.act_dim, device=dev)
        self.rtg = torch.zeros(E, Bm, K, 1, device=dev)
        self.timesteps = torch.zeros(E, Bm, K, dtype=torch.int64, device=dev)
        self.mask = torch.zeros(E, Bm, K, dtype=torch.bool, device=dev)
        target = torch.tensor(self.targets, dtype=torch.float32, device=dev) / r.config.rtg_scale
        self.current_rtg = target.view(1, nT, 1).expand(E, nT, ep).reshape(E, Bm).clone()
        self.mean = torch.as_tensor(r.data.state_mean, device=dev)
        self.std = torch.as_tensor(r.data.state_std, device=dev)
        self.t = 0

    @torch.no_grad()
    def act(self, obs: np.ndarray, last_rewards: np.ndarray) -> torch.Tensor:
        r = self.runner
        obs_t = torch.as_tensor(obs, dtype=torch.float32, device=r.device)[self.env_of]        # [E, Bm, dS]
        if self.t > 0:
            rew = torch.as_tensor(last_rewards, dtype=torch.float32, device=r.device)[self.env_of]
            self.current_rtg -= rew / r.config.rtg_scale
        for buf in (self.states, self.actions, self.rtg, self.timesteps, self.mask):
            buf[:, :, :-1] = buf[:, :, 1:].clone()
        self.states[:, :, -1] = (obs_t - self.mean) / self.std
        self.actions[:, :, -1] = 0.0
        self.rtg[:, :, -1, 0] = self.current_rtg
        self.timesteps[:, :, -1] = min(self.t, r.max_timestep)
        self.mask[:, :, -1] = True
        pred = r.predict(self.states, self.actions, self.rtg, self.timesteps, self.mask)[:, :, -1]  # [E, Bm, dA]
        self.actions[:, :, -1] = pred
        self.t += 1
        out = torch.empty(self.env_of.numel(), r.act_dim, device=r.device)
        out[self.env_of.reshape(-1)] = pred.reshape(-1, r.act_dim)
        return out


def _target_name(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else str(t).replace(".", "p")


# ---------------------------------------------------------------------------------------------
# the runner
# ---------------------------------------------------------------------------------------------
class DTRunner:
    def __init__(self, config: DTConfig, store: ArtifactStore | None = None, dataset=None):
        from synthrl.data import load_dataset

        self.config = config.validate()
        self.device = resolve_device(config.device)
        ds = dataset if dataset is not None else load_dataset(config.dataset)
        ds = ds.subsample(config.finetune_ratio, config.finetune_ratio_seed) if config.finetune_ratio < 1 else ds
        ds.require_batch(config.batch_size, view="trajectories")
        self.dataset = ds
        self.env = ds.env
        self.targets = config.targets_for(self.env)
        self.members = len(config.seeds)

        # backbone: pre-trained (transfer, spec section 3) or fresh (plain DT)
        self.pretrained = pretrained_source(config, store)
        ckpt = load_backbone_checkpoint(self.pretrained["path"]) if self.pretrained is not None else None
        with _naming(self.pretrained):
            self.model, self.max_timestep = build_model(config, self.members, ds.obs_dim, ds.act_dim, ckpt)
        self.data = prepare_trajectories(ds.trajectories(), config.rtg_scale, self.max_timestep + 1, self.device)
        self.state_dim, self.act_dim = self.data.state_dim, self.data.act_dim
        for e, seed in enumerate(config.seeds):
            self.model.init_member(e, torch.Generator().manual_seed(int(seed)))
        if ckpt is not None:
            with _naming(self.pretrained):
                self.transferred = self.model.load_pretrained_backbone(ckpt["state_dict"])
        self.model.to(self.device)

        self.optimizer = torch.optim.AdamW(self.model.parameters(), **self._adamw_kwargs())
        warmup = config.warmup_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min((step + 1) / warmup, 1.0) if warmup > 0 else 1.0)
        seed_mix = int(np.random.SeedSequence([0xD7, *map(int, config.seeds)]).generate_state(1)[0])
        self.sampler = torch.Generator(device=self.device).manual_seed(seed_mix)
        torch.manual_seed(seed_mix)  # dropout masks come from the global stream, carried in state_dict
        self.bf16 = use_bf16(config.precision, self.device)
        self.compiled = use_compile(config.compile, self.device)
        # the update's arithmetic; compiled on CUDA: the forward + loss (and its backward) as CUDA graphs
        self.step_fn = UpdateStep(self.model, self.device, config.grad_clip, self.bf16, self.compiled)
        self.fast_path: dict | None = None  # params.json's fast_path (settle_fast_path)
        self._compile_checked = False
        self.total_updates = config.total_updates
        self.eval_every = config.eval_every
        self.updates_done = 0
        self.loss_sum = torch.zeros(self.members, device=self.device)
        self.loss_count = 0
        self.metric_columns = (["seed", "update", "normalized_score", "return", "train_loss", "lr", "wall_clock_s"]
                               + [f"normalized_score_{_target_name(t)}" for t in self.targets])

    # -- training -------------------------------------------------------------------------------
    def _autocast(self):  # (synthrl.dt.policy borrows it: reads self.bf16 and self.device only)
        return torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.bf16)

    def predict(self, states, actions, rtg, timesteps, mask) -> torch.Tensor:
        self.model.eval()
        with self._autocast():
            return self.model(states, actions, rtg, timesteps, mask).float()

    def loss_per_member(self, batch) -> torch.Tensor:
        return self.step_fn.loss_fn(*batch)

    def _clip_per_member(self) -> None:
        """torch.nn.utils.clip_grad_norm_ semantics, separately for each member's parameters."""
        self.step_fn.clip()

    def _sample_batch(self, generator: torch.Generator):
        cfg = self.config
        return sample_windows(self.data, self.members, cfg.batch_size, cfg.context, generator, cfg.action_pad)

    def _update(self) -> torch.Tensor:
        return self.step_fn(self._sample_batch(self.sampler))

    def _use_step(self, compiled: bool, bf16: bool) -> None:
        self.compiled, self.bf16 = compiled, bf16
        self.step_fn = UpdateStep(self.model, self.device, self.config.grad_clip, bf16, compiled)

    # -- the fast path against eager --------------------------------------------------------------
    def check_fast_path(self, updates: int = 4) -> Parity | None:
        """``updates`` updates of the fast path (compiled and/or bf16) and of eager fp32 on a dropout-free copy of
        the model, same weights and batches, compared (None: no fast path); the run's own state is untouched."""
        if not (self.compiled or self.bf16):
            return None
        tolerance = tolerance_for(compiled=self.compiled, bf16=self.bf16)
        with torch.random.fork_rng(devices=[self.device] if self.device.startswith("cuda") else []):
            sampler = torch.Generator(device=self.device)
            sampler.set_state(self.sampler.get_state())
            batches = [self._sample_batch(sampler) for _ in range(updates)]
            probe = without_dropout(copy.deepcopy(self.model)).train()
            start = {n: p.detach().clone() for n, p in probe.named_parameters()}
            adamw = lambda model: torch.optim.AdamW(model.parameters(), **self._adamw_kwargs())  # noqa: E731

            def run(step: UpdateStep):
                with torch.no_grad():
                    for n, p in probe.named_parameters():
                        p.copy_(start[n])
                return probe_updates(probe, adamw, step, batches)

            try:
                fast = run(UpdateStep(probe, self.device, self.config.grad_clip, self.bf16, self.compiled))
                eager = run(UpdateStep(probe, self.device, self.config.grad_clip))
            except Exception as e:
                return failed(e, tolerance, updates)
        return compare_probes(fast, eager, start, tolerance, updates)

    def settle_fast_path(self, check: bool = True) -> dict:
        """Which update path the run uses (params.json's ``fast_path``)."""
        self.fast_path = settle("DT", self.compiled, self.bf16, self.config.compile, check, self.check_fast_path,
                                lambda: self._use_step(compiled=False, bf16=False))
        return self.fast_path

    def train(self, n_updates: int) -> None:
        self.model.train()
        for _ in range(int(n_updates)):
            if self.compiled and not self._compile_checked:
                # the first compiled update may fail late (backward compiles lazily): fall back to eager
                try:
                    losses = self._update()
                except Exception as e:
                    import warnings

                    warnings.warn(f"compiled DT update failed ({type(e).__name__}: {e}); training eagerly")
                    self._use_step(compiled=False, bf16=self.bf16)
                    losses = self._update()
                self._compile_checked = True
            else:
                losses = self._update()
            self.optimizer.step()
            self.scheduler.step()
            self.loss_sum += losses.detach()
            self.loss_count += 1
            self.updates_done += 1

    def _adamw_kwargs(self) -> dict:
        cfg = self.config
        kind = {"fused": True} if self.device.startswith("cuda") else {"foreach": True}
        return {"lr": cfg.lr, "weight_decay": cfg.weight_decay, "eps": cfg.adam_eps, **kind}

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate(self) -> list[dict[str, Any]]:
        from synthrl.envs import evaluate

        cfg = self.config
        eval_index = self.updates_done // cfg.eval_every
        policy = DTEnsemblePolicy(self, self.targets, cfg.eval_episodes)
        # one batch: the seeds once per target (same episode seeds for every target)
        result = evaluate(self.env, policy, list(cfg.seeds) * len(self.targets), cfg.eval_episodes, eval_index,
                          version=cfg.env_version, workers=cfg.eval_workers)
        E = self.members
        returns = result.returns.reshape(len(self.targets), E, -1).mean(-1)        # [targets, E]
        scores = result.normalized.reshape(len(self.targets), E, -1).mean(-1)
        train_loss = (self.loss_sum / max(self.loss_count, 1)).cpu().numpy() if self.loss_count else [math.nan] * E
        lr = self.scheduler.get_last_lr()[0]
        rows = []
        for e, seed in enumerate(cfg.seeds):
            row = {"seed": int(seed), "update": self.updates_done, "normalized_score": float(scores[0, e]),
                   "return": float(returns[0, e]), "train_loss": float(train_loss[e]), "lr": lr,
                   "env_id": result.env_id}
            for i, t in enumerate(self.targets):
                row[f"normalized_score_{_target_name(t)}"] = float(scores[i, e])
                row[f"return_{_target_name(t)}"] = float(returns[i, e])
            rows.append(row)
        self.loss_sum.zero_()
        self.loss_count = 0
        return rows

    # -- checkpointing --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {
            "updates_done": self.updates_done,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "sampler": self.sampler.get_state(),
            "cpu_rng": torch.get_rng_state(),
            "loss_sum": self.loss_sum.detach().cpu().clone(),
            "loss_count": self.loss_count,
            "seeds": list(self.config.seeds),
        }
        if self.device.startswith("cuda"):
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        if list(state.get("seeds", self.config.seeds)) != list(self.config.seeds):
            raise UserError(f"checkpoint holds seeds {state['seeds']}, this run has {self.config.seeds}")
        self.updates_done = int(state["updates_done"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.sampler.set_state(state["sampler"].cpu())
        torch.set_rng_state(state["cpu_rng"].cpu())
        if "cuda_rng" in state and self.device.startswith("cuda"):
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self.loss_sum = state["loss_sum"].to(self.device).clone()
        self.loss_count = int(state["loss_count"])


@contextlib.contextmanager
def _naming(pretrained: dict | None):
    """A pre-trained checkpoint that does not fit (a missing tensor, another shape) is named in the error."""
    try:
        yield
    except UserError as e:
        if pretrained is None:
            raise
        raise UserError(f"{pretrained['path']}: {str(e).removeprefix('GPT-2 checkpoint: ')}") from None


def make_runner(config: DTConfig, store: ArtifactStore | None = None, dataset=None,
                fast_path_check: bool = True) -> DTRunner:
    """The runner, its fast path checked against eager before the first update (``runner.fast_path``)."""
    runner = DTRunner(config, store, dataset)
    runner.settle_fast_path(fast_path_check)
    return runner


def variant_name(config: DTConfig) -> str:
    if config.pretrain is not None:
        return f"dt+{config.pretrain.data}"
    if config.pretrained_path is not None:
        # a checkpoint inside one of our artifacts names its data kind (dt+mc, dt+iid, ...)
        import json

        from synthrl.dt.pretrain import resolve_pretrained

        try:
            meta = resolve_pretrained(config.pretrained_path, config.pretrain_step).parent / "params.json"
            data = json.loads(meta.read_text())["params"]["data"]
            return f"dt+{data['kind'] if isinstance(data, dict) else data}"   # a dict in artifacts before issue 14
        except (OSError, ValueError, KeyError, TypeError, UserError):
            return "dt+pretrained"  # an imported GPT-2 checkpoint or a loose file
    return "dt"


def run_params(config: DTConfig, store: ArtifactStore | None = None) -> dict:
    """params.json content: every parameter of the run (device kept apart: it may change on resume)."""
    from synthrl import __version__
    from synthrl.data import load_dataset
    from synthrl.envs import get_spec

    config.validate()
    ds = load_dataset(config.dataset)
    spec = get_spec(ds.env)
    src = pretrained_source(config, store, build=False)
    if src is not None:
        src = {k: (str(v) if k == "path" and v is not None else v) for k, v in src.items()}
    cfg = result_params(config)   # execution-only fields (device, compile, eval_workers) left out
    return {
        "algorithm": "dt",
        "variant": variant_name(config),
        "dataset": ds.name,
        "dataset_path": str(ds.path),
        "dataset_sha256": ds.sha256,
        "env": ds.env,
        "env_id": spec.gym_id(config.env_version),
        "seeds": list(config.seeds),
        "targets": list(config.targets_for(ds.env)),
        "pretrained": src,
        "pretrain_updates": config.pretrain_step if config.is_pretrained else 0,
        "total_updates": config.total_updates,
        "finetune_ratio": config.finetune_ratio,
        "config": cfg,
        "device": config.device,
        "synthrl_version": __version__,
    }
