"""CQL run groups: what ``synthrl run cql`` and the Tune trainables call (docs/CONTRACTS.md).

    pretrain_params(config) -> dict | None
    build_pretrain_artifact(config, store, progress=True) -> Path | None
    make_runner(config, store) -> CQLRunner            (synthrl.runner.Runner protocol)
    make_group_runner([config, ...], store) -> CQLRunner   (one ensemble across configs of one env)
    run_params(config) -> dict                          (params.json)

A runner is one ``CQLEnsemble`` (one member per (config, seed)) plus evaluation: every
``eval_every`` updates, ``eval_episodes`` seeded episodes per member, all members' episodes stepped
together with one batched policy call per step.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

import synthrl
from synthrl.cql.algorithm import STAT_NAMES, CQLEnsemble, LossSettings, MemberInit, deterministic_actions
from synthrl.config_fields import result_params
from synthrl.cql.config import CQLConfig
from synthrl.cql.pretrain import artifact_key, build_pretrain_artifact_for, pretrain_params_for, transferred_q
from synthrl.errors import UserError
from synthrl.utils.fastpath import decision
from synthrl.utils.io import resolve_device


def metric_columns(stat_names) -> list[str]:
    """metrics.csv's columns for an ensemble whose loss statistics are ``stat_names`` (its stat_names)."""
    return ["seed", "update", "normalized_score", "return", *stat_names, "return_std", "dataset", "variant", "env_id",
            "wall_clock_s"]


METRIC_COLUMNS = metric_columns(STAT_NAMES)

_DATASETS: dict[str, Any] = {}


def load_dataset_cached(name: str):
    """load_dataset, cached per process (a group of configs usually shares one dataset); keeps the last 4."""
    if name in _DATASETS:
        _DATASETS[name] = _DATASETS.pop(name)  # most recently used last
    else:
        from synthrl.data import load_dataset

        _DATASETS[name] = load_dataset(name)
        while len(_DATASETS) > 4:
            _DATASETS.pop(next(iter(_DATASETS)))
    return _DATASETS[name]


def _env_dims(config: CQLConfig) -> tuple[str, int, int]:
    ds = load_dataset_cached(config.dataset)
    return ds.env, ds.obs_dim, ds.act_dim


# ---------------------------------------------------------------------------------------------
# the contract

def pretrain_params(config: CQLConfig) -> dict | None:
    if config.pretrain == "none":
        return None
    _, obs_dim, act_dim = _env_dims(config)
    return pretrain_params_for(config, obs_dim, act_dim)


def build_pretrain_artifact(config: CQLConfig, store, progress: bool = True) -> Path | None:
    if config.pretrain == "none":
        return None
    _, obs_dim, act_dim = _env_dims(config)
    device = resolve_device(config.device)
    return build_pretrain_artifact_for(config, obs_dim, act_dim, store, device=device, progress=progress)


def run_params(config: CQLConfig) -> dict:
    """Everything that identifies the run (params.json); --resume refuses a run whose params differ."""
    ds = load_dataset_cached(config.dataset)
    from synthrl.envs import get_spec

    pp = pretrain_params(config)
    cfg = result_params(config)   # execution-only fields (device, accel, eval_overlap) left out
    return {
        "algorithm": "cql",
        "variant": config.variant,
        "dataset": ds.name,
        "dataset_path": str(ds.path),
        "dataset_sha256": ds.sha256,
        "env": ds.env,
        "env_id": get_spec(ds.env).gym_id(config.env_version),
        "env_version": config.env_version,
        "seeds": list(config.seeds),
        "pretrain": config.pretrain,
        "pretrain_params": pp,
        "pretrain_key": artifact_key(pp),   # the store's key, the one the sweep planner shows
        "config": cfg,
        "total_updates": config.total_updates,
        "synthrl_version": synthrl.__version__,
    }


def make_runner(config: CQLConfig, store, evaluate_fn: Callable | None = None, progress: bool = True,
                fast_path_check: bool = True) -> "CQLRunner":
    return make_group_runner([config], store, evaluate_fn=evaluate_fn, progress=progress,
                             fast_path_check=fast_path_check)


def make_group_runner(configs: list[CQLConfig], store, evaluate_fn: Callable | None = None,
                      progress: bool = True, fast_path_check: bool = True) -> "CQLRunner":
    """One ensemble for several configs of one environment (each contributes one member per seed).

    Configs may differ in dataset, pre-training and fine-tuning ratio; the schedule, the loss and
    the optimiser settings must agree (they are shared by the ensemble). Before the first update
    the fast path (CUDA graph) is checked against eager (``fast_path_check``); ``runner.fast_path``
    says which path the run uses and why (params.json's ``fast_path``).
    """
    configs = [c.validate() for c in configs]
    first = configs[0]
    shared = ("updates", "extra_updates", "eval_every", "eval_episodes", "batch_size", "discount", "policy_lr",
              "q_lr", "alpha_lr", "soft_target_tau", "cql_n_actions", "cql_temperature", "cql_min_q_weight",
              "importance_sampling", "safe_q_factor", "action_clip", "hidden", "env_version", "device", "accel",
              "rng_chunk", "matmul_precision", "eval_overlap")
    for c in configs[1:]:
        diff = [k for k in shared if getattr(c, k) != getattr(first, k)]
        if diff:
            raise UserError(f"cql group: configs differ in {', '.join(diff)}; an ensemble shares these")
    device = resolve_device(first.device)
    if device.startswith("cuda"):
        # process-wide setting; TF32 ("high") only after a side-by-side run shows unchanged learning curves
        torch.set_float32_matmul_precision(first.matmul_precision)
    envs = {_env_dims(c) for c in configs}
    if len(envs) != 1:
        raise UserError(f"cql group: members must share one environment and dims, got {sorted(envs)}")
    env, obs_dim, act_dim = envs.pop()

    datasets: list[dict[str, np.ndarray]] = []
    dataset_index: dict[tuple, int] = {}
    members: list[MemberInit] = []
    info: list[dict] = []
    for c in configs:
        artifact = build_pretrain_artifact_for(c, obs_dim, act_dim, store, device=device, progress=progress)
        q_init = transferred_q(artifact) if artifact is not None else None
        base = load_dataset_cached(c.dataset)
        for seed in c.seeds:
            key = (str(base.path), float(c.finetune_ratio), seed if c.finetune_ratio < 1 else None, c.action_clip)
            if key not in dataset_index:
                ds = base.subsample(c.finetune_ratio, seed) if c.finetune_ratio < 1 else base
                ds.require_batch(c.batch_size)
                arrays = ds.qlearning()
                # dataset actions clipped to +-0.999 (tanh policy log-densities are finite there)
                arrays["actions"] = np.clip(arrays["actions"], -c.action_clip, c.action_clip)
                dataset_index[key] = len(datasets)
                datasets.append(arrays)
            members.append(MemberInit(seed=seed, dataset=dataset_index[key], q_init=q_init))
            info.append({"seed": seed, "dataset": base.name, "variant": c.variant})

    ensemble = CQLEnsemble(
        datasets, members, hidden=first.hidden, batch_size=first.batch_size, lr_policy=first.policy_lr,
        lr_q=first.q_lr, lr_alpha=first.alpha_lr, tau=first.soft_target_tau, safe_q_factor=first.safe_q_factor,
        loss=LossSettings(discount=first.discount, n_actions=first.cql_n_actions,
                          cql_temperature=first.cql_temperature, min_q_weight=first.cql_min_q_weight,
                          importance_sampling=first.importance_sampling),
        rng_chunk=first.rng_chunk, device=device, accel=first.accel)
    overlap = first.eval_overlap == "on" or (first.eval_overlap == "auto" and device.startswith("cuda"))
    return CQLRunner(ensemble, info, env=env, total_updates=first.total_updates, eval_every=first.eval_every,
                     eval_episodes=first.eval_episodes, env_version=first.env_version, evaluate_fn=evaluate_fn,
                     eval_overlap=overlap, fast_path=settle_fast_path(ensemble, fast_path_check))


def settle_fast_path(ensemble: CQLEnsemble, check: bool = True) -> dict:
    """Which update path the run uses: the CUDA graph once a few updates on it equal eager ones from a
    copy of the state (the state is restored), else eager, warned once. params.json's ``fast_path``."""
    if ensemble.prepare_fast_step() is None:
        return decision("eager", ensemble.eager_reason)
    if not check:
        return decision("graph", "not checked (--fast-path-check off)")
    parity = ensemble.check_fast_path()
    if parity.ok:
        return decision("graph", f"checked: {parity.detail()}")
    warnings.warn(f"{type(ensemble).__name__} fast path (CUDA graph) differs from eager: {parity.detail()}; "
                  "this run trains eagerly")
    ensemble.use_eager(f"fast-path check failed: {parity.detail()}")
    return decision("eager", ensemble.eager_reason)


# ---------------------------------------------------------------------------------------------
# the runner

class PolicySnapshot:
    """The ensemble's policy weights copied at one moment, for an evaluation that overlaps training.

    On CUDA the copy is made in the training stream's order and evaluated on a stream of its own
    (``stream``; EnsemblePolicy runs each step's copies and forward pass there), so the evaluation's
    per-step host reads never wait behind queued training updates.
    """

    def __init__(self, ensemble: CQLEnsemble):
        self.device, self.num_members = ensemble.device, ensemble.num_members
        self.policy = {k: v.detach().clone() for k, v in ensemble.policy.items()}
        self.stream = None
        if self.device.type == "cuda":
            self.stream = torch.cuda.Stream(self.device)
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
            for v in self.policy.values():
                v.record_stream(self.stream)

    def deterministic_actions(self, obs: torch.Tensor) -> torch.Tensor:
        return deterministic_actions(self.policy, obs)


class PendingEvaluation:
    """Rows of an evaluation running in the background (synthrl.runner.PendingRows)."""

    def __init__(self, future, to_rows: Callable):
        self.future, self.to_rows = future, to_rows

    def done(self) -> bool:
        return self.future.done()

    def rows(self) -> list[dict[str, Any]]:
        return self.to_rows(self.future.result())


class EnsemblePolicy:
    """BatchPolicy for evaluation: env b belongs to member b // episodes; deterministic tanh(mean).

    ``ensemble`` is the live CQLEnsemble or a PolicySnapshot of it.
    """

    def __init__(self, ensemble: "CQLEnsemble | PolicySnapshot", episodes: int):
        self.ensemble, self.episodes = ensemble, int(episodes)

    def reset(self, num_envs: int) -> None:
        expected = self.ensemble.num_members * self.episodes
        if num_envs != expected:
            raise ValueError(f"evaluation batch of {num_envs} envs, expected {expected} (members x episodes)")

    def act(self, obs: np.ndarray, last_rewards: np.ndarray) -> np.ndarray:
        stream = getattr(self.ensemble, "stream", None)  # a snapshot's own CUDA stream
        with torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext():
            E = self.ensemble.num_members
            x = torch.as_tensor(np.asarray(obs, np.float32), device=self.ensemble.device).view(E, self.episodes, -1)
            return self.ensemble.deterministic_actions(x).reshape(E * self.episodes, -1).cpu().numpy()


@dataclass
class CQLRunner:
    ensemble: CQLEnsemble
    member_info: list[dict]
    env: str
    total_updates: int
    eval_every: int
    eval_episodes: int
    env_version: str = "v4"
    evaluate_fn: Callable | None = None
    eval_overlap: bool = False  # drive evaluates a snapshot in the background while training goes on
    fast_path: dict | None = None  # params.json's fast_path: {"path": graph | eager, "reason": ...}

    def __post_init__(self):
        self.metric_columns = metric_columns(self.ensemble.stat_names)
        self.evals_done = 0

    @property
    def updates_done(self) -> int:
        return self.ensemble.updates_done

    @property
    def split_granularity(self) -> int:
        # random numbers are drawn rng_chunk updates at a time, restarting at every train() call
        return self.ensemble.rng_chunk

    @property
    def seeds(self) -> list[int]:
        return [m["seed"] for m in self.member_info]

    def train(self, n_updates: int) -> None:
        self.ensemble.train(int(n_updates))

    def evaluate(self) -> list[dict[str, Any]]:
        stats, update, index = self._begin_evaluation()
        result = self._evaluate_fn()(self.env, EnsemblePolicy(self.ensemble, self.eval_episodes), self.seeds,
                                     self.eval_episodes, index, version=self.env_version)
        return self._rows(result, stats, update)

    def start_evaluation(self) -> PendingEvaluation:
        """Evaluate a snapshot of the policies in the background thread; training may go on meanwhile."""
        from synthrl.envs import in_background

        stats, update, index = self._begin_evaluation()
        policy = EnsemblePolicy(self.policy_snapshot(), self.eval_episodes)
        future = in_background(self._evaluate_fn(), self.env, policy, self.seeds, self.eval_episodes, index,
                               version=self.env_version)
        return PendingEvaluation(future, lambda result: self._rows(result, stats, update))

    def policy_snapshot(self) -> PolicySnapshot:
        """The policies copied now, for an evaluation beside training (an ensemble whose policy acts
        differently, e.g. IQL's on normalised observations, gives its runner its own snapshot)."""
        return PolicySnapshot(self.ensemble)

    def _evaluate_fn(self) -> Callable:
        if self.evaluate_fn is not None:
            return self.evaluate_fn
        from synthrl.envs import evaluate

        return evaluate

    def _begin_evaluation(self) -> tuple[dict[str, np.ndarray], int, int]:
        """Loss statistics since the last evaluation, the update count and this evaluation's index."""
        stats, update, index = self.ensemble.pop_stats(), self.updates_done, self.evals_done
        self.evals_done += 1
        return stats, update, index

    def _rows(self, result, stats: dict[str, np.ndarray], update: int) -> list[dict[str, Any]]:
        rows = []
        for i, m in enumerate(self.member_info):
            row = {**m, "update": update,
                   "normalized_score": float(np.mean(result.normalized[i])),
                   "return": float(np.mean(result.returns[i])),
                   "return_std": float(np.std(result.returns[i])),
                   "env_id": result.env_id}
            row.update({name: float(stats[name][i]) for name in self.ensemble.stat_names})
            rows.append(row)
        return rows

    def state_dict(self) -> dict:
        # training draws only from the members' own generators (in the ensemble state); the global
        # torch / numpy / CUDA states are saved too so anything else seeded globally resumes as well
        np_state = np.random.get_state()
        state = {"ensemble": self.ensemble.state_dict(), "evals_done": self.evals_done,
                 "torch_rng": torch.get_rng_state(),
                 "numpy_rng": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                               "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}
        if torch.cuda.is_available() and self.ensemble.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.ensemble.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.ensemble.load_state_dict(state["ensemble"])
        self.evals_done = int(state["evals_done"])
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if "numpy_rng" in state:
            s = state["numpy_rng"]
            np.random.set_state(("MT19937", s["keys"].numpy().astype(np.uint32), s["pos"], s["has_gauss"], s["gauss"]))
        if "cuda_rng" in state and self.ensemble.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.ensemble.device)
