"""Implicit Q-Learning (Kostrikov et al. 2021) of a batched seed ensemble, top to bottom (CORL's iql.py).

Per update and member, on a dataset batch (s, a, r, s', d) (CORL's ``ImplicitQLearning.train``):
  value loss   = mean(|tau - 1(u < 0)| u^2),  u = min(Q1', Q2')(s, a) - V(s)         expectile tau = 0.7
  Q loss       = mean_i MSE(Qi(s, a), r + gamma (1 - d) V(s'))                      twin Q, gamma = 0.99
  policy loss  = mean(-min(exp(beta u), 100) log pi(a|s))                            beta = 3
then Adam 3e-4 steps (the policy's rate cosine-decayed to 0 over the run) and the target Q-nets move
by Polyak 0.005. As in CQL, the three losses come from the same pre-step parameters and each reaches
only its own network, so one backward of their sum and one Adam step equals CORL's V -> Q -> policy.

Networks (MLPs 2x256): CQL's twin Q-nets (synthrl.cql.networks), V: s -> 1, and a Gaussian policy
with tanh mean and state-independent log-std that acts with its mean. Observations are normalised
by their dataset's mean/std (+1e-3), rewards scaled by 1000 / (max - min episode return).

Pre-training is CQL's forward-dynamics artifact (spec cql.md section 2, the same for the same
settings): Q-nets from its hidden layers and untouched Q head, targets copied, V's hidden layers
from Q-net 1's (first layer without the action columns) under V's own head, optimisers fresh. CQL's
machinery is inherited: chunked random numbers, the CUDA graph and its check, evaluation, the runner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

import synthrl
from synthrl.config_fields import declared_as, result_params, setting, validate_config
from synthrl.cql import networks as nets
from synthrl.cql.algorithm import CQLEnsemble, MemberInit, member_generator_seed
from synthrl.cql.config import PRETRAIN_KINDS, CQLConfig, check_device, check_seeds
from synthrl.cql.pretrain import (artifact_key, build_pretrain_artifact_for, pretrain_key, pretrain_params_for,
                                  transferred_q)
from synthrl.cql.runner import CQLRunner, PolicySnapshot, load_dataset_cached, settle_fast_path
from synthrl.envs.specs import get_spec
from synthrl.errors import UserError
from synthrl.registry import FORWARD_DYNAMICS, Algorithm
from synthrl.utils.io import resolve_device

EXP_ADV_MAX = 100.0
OBS_STD_EPS = 1e-3
ADAM_KEYS = ("step", "exp_avg", "exp_avg_sq")
STAT_NAMES = ("q_loss", "v_loss", "policy_loss", "q_data", "v_data")  # metrics.csv's loss columns


# ---------------------------------------------------------------------------------------------
# configuration: IQL's own settings; the data, schedule, pre-training and execution settings are CQL's

def as_in_cql(name: str):
    """CQLConfig's declaration of ``name`` (default, bounds, help): one declaration for both algorithms."""
    return declared_as(CQLConfig, name)


@dataclass
class IQLConfig:
    """One IQL run group: a dataset, a list of seeds (one ensemble member each), an optional pre-training."""

    dataset: str = as_in_cql("dataset")
    seeds: list[int] = as_in_cql("seeds")
    # -- forward-dynamics pre-training of the Q-nets: CQL's (the same artifact) ------------------
    pretrain: str = as_in_cql("pretrain")
    pretrain_updates: int = as_in_cql("pretrain_updates")
    states: int = as_in_cql("states")
    actions: int = as_in_cql("actions")
    policy_temperature: float = as_in_cql("policy_temperature")
    transition_temperature: float = as_in_cql("transition_temperature")
    random_start: bool = as_in_cql("random_start")
    trajectories: int = as_in_cql("trajectories")
    length: int = as_in_cql("length")
    data_seed: int = as_in_cql("data_seed")
    pretrain_lr: float = as_in_cql("pretrain_lr")
    pretrain_batch: int = as_in_cql("pretrain_batch")
    pretrain_seed: int = as_in_cql("pretrain_seed")
    # -- fine-tuning -------------------------------------------------------------------------------
    updates: int = as_in_cql("updates")
    extra_updates: int = as_in_cql("extra_updates")
    eval_every: int = as_in_cql("eval_every")
    eval_episodes: int = as_in_cql("eval_episodes")
    finetune_ratio: float = as_in_cql("finetune_ratio")
    batch_size: int = as_in_cql("batch_size")
    discount: float = as_in_cql("discount")
    soft_target_tau: float = as_in_cql("soft_target_tau")
    hidden: int = as_in_cql("hidden")
    expectile: float = field(default=0.7, metadata=setting("expectile tau of the value loss", above=0, below=1))
    beta: float = field(default=3.0, metadata=setting("inverse temperature of the advantage weights", min=0))
    max_weight: float = field(default=EXP_ADV_MAX, metadata=setting("clip of the advantage weights", above=0))
    policy_lr: float = field(default=3e-4, metadata=setting(
        "policy Adam learning rate (cosine-decayed to 0 over --updates)", above=0))
    q_lr: float = field(default=3e-4, metadata=setting("Q-network Adam learning rate", above=0))
    v_lr: float = field(default=3e-4, metadata=setting("value-network Adam learning rate", above=0))
    reward_scale: float = field(default=1000.0, metadata=setting(
        "rewards times this / (max - min episode return of the dataset)", above=0))
    env_version: str = as_in_cql("env_version")
    # -- execution ------------------------------------------------------------------------------
    device: str = as_in_cql("device")
    accel: str = as_in_cql("accel")
    rng_chunk: int = as_in_cql("rng_chunk")
    matmul_precision: str = as_in_cql("matmul_precision")
    eval_overlap: str = as_in_cql("eval_overlap")

    @property
    def total_updates(self) -> int:
        return self.updates + self.extra_updates

    @property
    def variant(self) -> str:
        return "iql" if self.pretrain == "none" else f"iql+{self.pretrain}"

    def validate(self) -> "IQLConfig":
        validate_config(self, "iql")
        check_seeds("iql", self.seeds)
        check_device("iql", self.device)
        return self


# ---------------------------------------------------------------------------------------------
# networks: plain tensors with a leading member dimension E, one baddbmm per layer

def init_mlp(gen: torch.Generator, fan_in: int, hidden: int, fan_out: int) -> dict[str, torch.Tensor]:
    """A 2-hidden-layer MLP of one member, nn.Linear's default init throughout (as CORL)."""
    sizes = [(fan_in, hidden), (hidden, hidden), (hidden, fan_out)]
    out = {}
    for i, (n_in, n_out) in enumerate(sizes):
        w, b = nets.default_linear(gen, n_in, n_out)
        out[f"w{i}"], out[f"b{i}"] = w[0], b[0]
    return out


def mlp(p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """x [E, B, in] -> [E, B, out] (ReLU hidden layers, linear output)."""
    h = torch.relu(torch.baddbmm(p["b0"], x, p["w0"]))
    h = torch.relu(torch.baddbmm(p["b1"], h, p["w1"]))
    return torch.baddbmm(p["b2"], h, p["w2"])


def policy_mean_log_std(policy: dict[str, torch.Tensor], obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """obs [E, B, dS] -> tanh mean [E, B, dA], clamped state-independent log-std [E, 1, dA]."""
    mean = torch.tanh(mlp(policy, obs))
    return mean, policy["log_std"].clamp(nets.LOG_STD_MIN, nets.LOG_STD_MAX).unsqueeze(1)


def gaussian_log_prob(actions: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(a; mean, exp(log_std)) summed over action dims (torch.distributions.Normal's formula)."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


def v_values(v: dict[str, torch.Tensor], obs: torch.Tensor) -> torch.Tensor:  # obs [E, B, dS] -> [E, B]
    return mlp(v, obs)[..., 0]


def q_of_data(q: dict[str, torch.Tensor], obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q1, Q2 of the batch's own actions: obs [E, B, dS], actions [E, B, dA] -> [E, 2, B]."""
    return nets.q_values(q, obs, actions.unsqueeze(1))[:, :, 0]


# ---------------------------------------------------------------------------------------------
# the losses (pure functions, tested against a plain-torch reference)

def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """mean(|tau - 1(u < 0)| u^2) over the last dim: the asymmetric L2 of IQL's value loss."""
    weight = torch.abs(expectile - (diff < 0).to(diff.dtype))
    return (weight * diff.square()).mean(-1)


def iql_losses(policy, q, q_target, v, obs, actions, next_obs, rewards, dones, hp: IQLConfig):
    """Total loss (sum over members) and per-member statistics [E, len(STAT_NAMES)] of one update.

    obs/next_obs [E, B, dS] (normalised); actions [E, B, dA]; rewards (scaled)/dones [E, B]; ``hp``
    gives discount, expectile, beta and max_weight.
    """
    with torch.no_grad():
        target_q = q_of_data(q_target, obs, actions).amin(dim=1)          # [E, B]
        next_v = v_values(v, next_obs)

    # value: expectile regression of V(s) onto min Q'(s, a)
    v_data = v_values(v, obs)
    advantage = target_q - v_data
    v_loss = expectile_loss(advantage, hp.expectile)

    # Q: towards r + gamma (1 - d) V(s'), the mean of the twin MSEs (CORL)
    td_target = rewards + hp.discount * (1.0 - dones) * next_v
    q_data = q_of_data(q, obs, actions)                                    # [E, 2, B]
    q_loss = (q_data - td_target.unsqueeze(1)).square().mean(-1).mean(1)

    # policy: advantage-weighted behaviour cloning
    weights = torch.exp(hp.beta * advantage.detach()).clamp(max=hp.max_weight)
    mean, log_std = policy_mean_log_std(policy, obs)
    policy_loss = (weights * -gaussian_log_prob(actions, mean, log_std)).mean(-1)

    total = (v_loss + q_loss + policy_loss).sum()
    stats = torch.stack([q_loss, v_loss, policy_loss, q_data.mean((1, 2)), v_data.mean(-1)], dim=1).detach()
    return total, stats


def cosine_lr(base: float, update: torch.Tensor, total_updates: int) -> torch.Tensor:
    """CosineAnnealingLR(T_max = total_updates, eta_min = 0) at 0-based update ``update``."""
    return base * 0.5 * (1.0 + torch.cos(update * (math.pi / total_updates)))


@torch.no_grad()
def deterministic_actions(policy: dict[str, torch.Tensor], obs_mean, obs_std, obs: torch.Tensor) -> torch.Tensor:
    """The evaluation action, the policy's mean: raw obs [E, N, dS] -> [E, N, dA]."""
    mean, _ = policy_mean_log_std({k: t.detach() for k, t in policy.items()}, (obs - obs_mean) / obs_std)
    return mean


def observation_stats(observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std + 1e-3 of a dataset's states (CORL's compute_mean_std), float32."""
    return (observations.mean(0, dtype=np.float64).astype(np.float32),
            (observations.std(0, dtype=np.float64) + OBS_STD_EPS).astype(np.float32))


def complete_episode_returns(dataset) -> np.ndarray:
    """Returns of an OfflineDataset's whole episodes: a trailing partial one (cut by the end of the data,
    not by a terminal or time-out) is left out, as CORL's return_reward_range leaves it out."""
    returns = dataset.episode_returns()
    return returns[:-1] if dataset.has_partial_episode and len(returns) > 1 else returns


def reward_scale_of(episode_returns: np.ndarray, scale: float = 1000.0) -> float:
    """scale / (max - min episode return) (CORL's modify_reward for locomotion); 1 if all returns are equal."""
    spread = float(np.max(episode_returns) - np.min(episode_returns))
    return scale / spread if spread > 0 else 1.0


# ---------------------------------------------------------------------------------------------
# the ensemble

def v_from_q(q_init: dict[str, torch.Tensor], obs_dim: int, fresh_v: dict[str, torch.Tensor]) -> dict:
    """V's start from pre-trained Q-nets: Q-net 1's hidden layers (the state columns of its first layer),
    V's own fresh head."""
    return {"w0": q_init["w0"][0, :obs_dim].clone(), "b0": q_init["b0"][0].clone(), "w1": q_init["w1"][0].clone(),
            "b1": q_init["b1"][0].clone(), "w2": fresh_v["w2"], "b2": fresh_v["b2"]}


class IQLEnsemble(CQLEnsemble):
    """E IQL members trained as one batched model. CQLEnsemble's machinery (chunked random numbers
    read through a device slot, the CUDA graph, train(), the fast-path switch) runs IQL's update."""

    stat_names = STAT_NAMES

    def __init__(self, datasets: list[dict[str, np.ndarray]], members: list[MemberInit], config: IQLConfig,
                 device: str = "cpu"):
        """datasets: Q-learning arrays (raw observations, scaled rewards); config: the shared settings."""
        self.device, self.config, hidden = torch.device(device), config, config.hidden
        self.batch_size, self.tau, self.rng_chunk = config.batch_size, config.soft_target_tau, config.rng_chunk
        self.members = list(members)
        E = self.num_members = len(members)
        obs_dim, act_dim = datasets[0]["observations"].shape[1], datasets[0]["actions"].shape[1]
        self.obs_dim, self.act_dim = obs_dim, act_dim
        if {(d["observations"].shape[1], d["actions"].shape[1]) for d in datasets} != {(obs_dim, act_dim)}:
            raise ValueError("ensemble members must share observation and action dims")

        # observations normalised by their own dataset's statistics, then all data resident on the device
        stats = [observation_stats(d["observations"]) for d in datasets]
        data = [{**d, "observations": (d["observations"] - m) / sd,
                 "next_observations": (d["next_observations"] - m) / sd} for d, (m, sd) in zip(datasets, stats)]
        self.data = {k: torch.as_tensor(np.concatenate([np.asarray(d[k], np.float32) for d in data]),
                                        device=self.device)
                     for k in ("observations", "actions", "next_observations", "rewards", "terminals")}
        sizes = [len(d["rewards"]) for d in datasets]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
        self.member_sizes = [int(sizes[m.dataset]) for m in members]
        self.member_offsets = [int(starts[m.dataset]) for m in members]
        self.obs_mean, self.obs_std = (torch.as_tensor(np.stack([stats[m.dataset][i] for m in members]),
                                                       device=self.device)[:, None] for i in (0, 1))

        # parameters: each member initialised from its own seed (Q-nets, then V, then the policy)
        qs, vs, policies = [], [], []
        for m in members:
            gen = torch.Generator().manual_seed(member_generator_seed(m.seed, 0))
            q = nets.init_q_pair(gen, obs_dim, act_dim, hidden)
            v = init_mlp(gen, obs_dim, hidden, 1)
            pol = {**init_mlp(gen, obs_dim, hidden, act_dim), "log_std": torch.zeros(act_dim)}
            if m.q_init is not None:  # transfer (spec cql.md section 2), V from Q-net 1's hidden layers
                wrong = [k for k in nets.Q_NAMES if tuple(m.q_init[k].shape) != tuple(q[k].shape)]
                if wrong:
                    raise ValueError(f"pre-trained Q tensors {wrong}: shapes differ from this ensemble's")
                q = {k: m.q_init[k].detach().to(torch.float32).clone() for k in nets.Q_NAMES}
                v = v_from_q(q, obs_dim, v)
            qs.append(q), vs.append(v), policies.append(pol)
        to_dev = lambda t: t.to(self.device).requires_grad_(True)  # noqa: E731
        self.policy = {k: to_dev(t) for k, t in nets.stack_members(policies).items()}
        self.q = {k: to_dev(t) for k, t in nets.stack_members(qs).items()}
        self.v = {k: to_dev(t) for k, t in nets.stack_members(vs).items()}
        self.q_target = {k: t.detach().clone() for k, t in self.q.items()}

        cuda = self.device.type == "cuda"
        self.use_graph = cuda and config.accel in ("auto", "graph")
        # the policy's rate is a device tensor the update sets from the update counter (graph-safe)
        self.update_count = torch.zeros((), dtype=torch.float64, device=self.device)
        self.policy_lr = torch.tensor(float(config.policy_lr), device=self.device)
        self.optimizer = torch.optim.Adam(
            [{"params": list(self.policy.values()), "lr": self.policy_lr},
             {"params": list(self.q.values()), "lr": config.q_lr},
             {"params": list(self.v.values()), "lr": config.v_lr}],
            foreach=cuda, capturable=cuda)
        self._init_optimizer_state()

        self.generators = [torch.Generator(device=self.device).manual_seed(member_generator_seed(m.seed, 1))
                           for m in members]
        self.idx_buf = torch.zeros(self.rng_chunk, E, self.batch_size, dtype=torch.long, device=self.device)
        self.slot = torch.zeros(1, dtype=torch.long, device=self.device)
        self.stats_sum = torch.zeros(E, len(STAT_NAMES), dtype=torch.float64, device=self.device)
        self.stats_count = self.updates_done = 0
        self._graph, self.fast_step, self._fast_built = None, None, False
        self.eager_reason = "cpu" if not cuda else "--accel eager" if not self.use_graph else ""

    # -- random numbers: IQL draws only the batch rows -------------------------------------------
    def _draw_chunk(self, k: int) -> None:
        for e, gen in enumerate(self.generators):
            idx = torch.randint(self.member_sizes[e], (k, self.batch_size), generator=gen, device=self.device)
            self.idx_buf[:k, e] = idx + self.member_offsets[e]
        self.slot.zero_()

    # -- one update --------------------------------------------------------------------------
    def _update(self) -> None:
        idx = self.idx_buf.index_select(0, self.slot)[0]                  # [E, B]
        d = self.data
        total, stats = iql_losses(self.policy, self.q, self.q_target, self.v, d["observations"][idx],
                                  d["actions"][idx], d["next_observations"][idx], d["rewards"][idx],
                                  d["terminals"][idx], self.config)
        for p in self.parameters():
            p.grad = None
        total.backward()
        with torch.no_grad():
            self.policy_lr.copy_(cosine_lr(self.config.policy_lr, self.update_count, self.config.total_updates))
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.q_target.values()), list(self.q.values()), self.tau)
            self.stats_sum += stats
            self.slot += 1
            self.update_count += 1

    def _snapshot(self) -> list[torch.Tensor]:
        return super()._snapshot() + [self.update_count, self.policy_lr]

    def parity_parameters(self) -> list[str]:
        return [name for name, _ in self._groups()]

    def deterministic_actions(self, obs: torch.Tensor) -> torch.Tensor:
        return deterministic_actions(self.policy, self.obs_mean, self.obs_std, obs)

    # -- checkpoint ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        cpu = lambda t: t.detach().to("cpu").clone()  # noqa: E731
        return {**{name: {k: cpu(t) for k, t in group.items()} for name, group in self._groups()},
                "adam": [{k: cpu(self.optimizer.state[p][k]) for k in ADAM_KEYS} for p in self.parameters()],
                "generators": [g.get_state() for g in self.generators], "stats_sum": cpu(self.stats_sum),
                "stats_count": int(self.stats_count), "updates_done": int(self.updates_done),
                "seeds": [int(m.seed) for m in self.members],
                "obs_mean": cpu(self.obs_mean), "obs_std": cpu(self.obs_std)}  # for load_policy; fixed per run

    def load_state_dict(self, state: dict) -> None:
        """Copy into the existing tensors (a captured CUDA graph keeps pointing at them)."""
        if [int(s) for s in state["seeds"]] != [int(m.seed) for m in self.members]:
            raise ValueError(f"checkpoint holds seeds {state['seeds']}, this ensemble {[m.seed for m in self.members]}")
        with torch.no_grad():
            for name, group in self._groups():
                for k, t in group.items():
                    t.copy_(state[name][k])
            for p, saved in zip(self.parameters(), state["adam"], strict=True):
                for k in ADAM_KEYS:
                    self.optimizer.state[p][k].copy_(saved[k])
            self.stats_sum.copy_(state["stats_sum"])
            self.update_count.fill_(int(state["updates_done"]))
        for g, s in zip(self.generators, state["generators"], strict=True):
            g.set_state(s)
        self.stats_count, self.updates_done = int(state["stats_count"]), int(state["updates_done"])

    def _groups(self):
        return (("policy", self.policy), ("q", self.q), ("q_target", self.q_target), ("v", self.v))


# ---------------------------------------------------------------------------------------------
# the runner: CQL's (evaluation, overlapped evaluation, rows, global RNG state), with IQL's policy snapshot

class IQLPolicySnapshot(PolicySnapshot):
    def __init__(self, ensemble: IQLEnsemble):
        super().__init__(ensemble)
        self.obs_mean, self.obs_std = ensemble.obs_mean, ensemble.obs_std  # never change during a run

    def deterministic_actions(self, obs: torch.Tensor) -> torch.Tensor:
        return deterministic_actions(self.policy, self.obs_mean, self.obs_std, obs)


class IQLRunner(CQLRunner):
    """CQLRunner; its metrics.csv columns and rows follow the ensemble's stat_names."""

    def policy_snapshot(self) -> IQLPolicySnapshot:
        return IQLPolicySnapshot(self.ensemble)


# ---------------------------------------------------------------------------------------------
# the contract (synthrl.registry): make_runner, run_params

def run_params(config: IQLConfig) -> dict:
    """Everything that identifies the run (params.json); --resume refuses a run whose params differ."""
    config = config.validate()
    ds = load_dataset_cached(config.dataset)
    pp = pretrain_params_for(config, ds.obs_dim, ds.act_dim)
    return {"algorithm": "iql", "variant": config.variant, "dataset": ds.name, "dataset_path": str(ds.path),
            "dataset_sha256": ds.sha256, "env": ds.env, "env_id": get_spec(ds.env).gym_id(config.env_version),
            "env_version": config.env_version, "seeds": list(config.seeds), "pretrain": config.pretrain,
            "pretrain_params": pp, "pretrain_key": artifact_key(pp),
            "config": result_params(config), "total_updates": config.total_updates,
            "synthrl_version": synthrl.__version__}


def training_arrays(dataset, config: IQLConfig) -> dict[str, np.ndarray]:
    """The Q-learning transitions of an OfflineDataset with IQL's reward scale (observations raw)."""
    dataset.require_batch(config.batch_size)
    arrays = dataset.qlearning()
    arrays["rewards"] = arrays["rewards"] * np.float32(reward_scale_of(complete_episode_returns(dataset),
                                                                       config.reward_scale))
    return arrays


def make_runner(config: IQLConfig, store, evaluate_fn=None, progress: bool = True,
                fast_path_check: bool = True) -> IQLRunner:
    """The run group of ``config``: one member per seed, after building (or finding) its pre-training.
    Before the first update the CUDA graph is checked against eager (``runner.fast_path`` says which runs)."""
    config = config.validate()
    device = resolve_device(config.device)
    if device.startswith("cuda"):
        torch.set_float32_matmul_precision(config.matmul_precision)
    ds = load_dataset_cached(config.dataset)
    artifact = build_pretrain_artifact_for(config, ds.obs_dim, ds.act_dim, store, device=device, progress=progress)
    q_init = transferred_q(artifact) if artifact is not None else None
    # a fraction of the trajectories: each member its own (seeded by its seed), with its own statistics
    ratio = config.finetune_ratio
    data = [ds] if ratio == 1 else [ds.subsample(ratio, seed) for seed in config.seeds]
    members = [MemberInit(seed=s, dataset=0 if ratio == 1 else i, q_init=q_init) for i, s in enumerate(config.seeds)]
    info = [{"seed": seed, "dataset": ds.name, "variant": config.variant} for seed in config.seeds]
    ensemble = IQLEnsemble([training_arrays(d, config) for d in data], members, config, device)
    overlap = config.eval_overlap == "on" or (config.eval_overlap == "auto" and device.startswith("cuda"))
    return IQLRunner(ensemble, info, env=ds.env, total_updates=config.total_updates, eval_every=config.eval_every,
                     eval_episodes=config.eval_episodes, env_version=config.env_version, evaluate_fn=evaluate_fn,
                     eval_overlap=overlap, fast_path=settle_fast_path(ensemble, fast_path_check))


def load_policy(run_dir, *, member: int = 0, device: str = "cpu"):
    """Member ``member`` of a trained IQL run as a BatchPolicy (``synthrl data make ENV --policy RUN``): the
    policy's mean on observations normalised by the run's statistics, as the runner's evaluation acts."""
    from synthrl.envs.policies import MemberPolicy, member_checkpoint
    from synthrl.rundir import WRONG_CONTENT, RunDir, error_detail

    run = RunDir(run_dir)
    params = run.read_params()
    seeds, env = [int(s) for s in params.get("seeds", [])], str(params.get("env"))
    state = member_checkpoint(run, seeds, member, "iql")
    try:
        saved = state["runner"]["ensemble"]
        policy = {k: t[member:member + 1].to(device, torch.float32) for k, t in saved["policy"].items()}
        mean, std = (saved[k][member:member + 1].to(device, torch.float32) for k in ("obs_mean", "obs_std"))
    except WRONG_CONTENT as e:
        raise UserError(f"{run.checkpoint_dir}: not an iql run checkpoint with observation statistics "
                        f"({error_detail(e)})") from None
    return MemberPolicy(lambda obs: deterministic_actions(policy, mean, std, obs), env, mean.shape[-1], device,
                        f"iql run {run.path} (member {member}, seed {seeds[member]}): mean action")


def build_pretrain(config: IQLConfig, store, progress: bool = False):
    """Stage 1 of a sweep: the pre-training artifact of ``config`` (None without pre-training)."""
    ds = load_dataset_cached(config.dataset)
    return build_pretrain_artifact_for(config, ds.obs_dim, ds.act_dim, store, device=resolve_device(config.device),
                                       progress=progress)


ALGORITHM = Algorithm(
    name="iql", label="IQL", config=IQLConfig, make_runner=make_runner, run_params=run_params,
    pretrain_kinds=tuple(k for k in PRETRAIN_KINDS if k != "none"), pretrain_family=FORWARD_DYNAMICS,
    build_pretrain=build_pretrain, pretrain_key=pretrain_key,   # CQL's artifact, keyed as CQL's runner keys it
    help="IQL fine-tuning of a seed ensemble, optionally after synthetic forward-dynamics pre-training of Q and V",
    # plan costs. gpu: not measured, CQL's goals (IQL's update is lighter); cpu: benchmarks/learn_iql.py, one core,
    # E = 1, Hopper, batch 256: 120-130 updates/s; evaluation and pre-training (the same) as CQL's
    rates={"gpu": {"seed_updates_per_s": 20_000.0, "eval_s_per_seed_round": 3.0 / 20,
                   "pretrain_updates_per_s": 100_000 / 30},
           "cpu": {"seed_updates_per_s": 120.0, "batch": 256, "eval_s_per_seed_round": 10.9 / 20,
                   "pretrain_updates_per_s": 32.0}},
)
