"""CQL(H) fine-tuning of a batched ensemble (spec section 3), top to bottom.

One ``CQLEnsemble`` trains E members at once: independent parameters, independent batches and
independent noise (each member has its own random generator), stacked along a leading dimension.
Members may differ in seed, initial Q-weights (pre-trained or not) and dataset (same dims).

Per update and member (SimpleSAC's ``ConservativeSAC.train`` with the paper's settings):
  policy loss  = mean(alpha * log pi(a~|s) - min(Q1, Q2)(s, a~))
  alpha loss   = -mean(log alpha * (log pi(a~|s) + target entropy))       target entropy = -dA
  TD target    y = r + gamma (1 - d) min(Q1', Q2')(s', a'~pi(s')) clamped above at q_max
                 (safe Q target, q_max = 100 * max reward; no entropy term in the target)
  Q loss       = sum_i MSE(Qi(s, a), y) + min_q_weight * sum_i mean(CQL_i)
  CQL_i        = T logsumexp_j(X_j / T) - Qi(s, a) over 3n values X: Qi(s, a_rand) - log 0.5^dA,
                 Qi(s, a~pi(s')) - log pi(a|s'), Qi(s, a~pi(s)) - log pi(a|s)   (importance sampling)
Then alpha, policy and both Q-nets step (Adam 3e-4) and the targets move by tau = 5e-3.

All three losses are computed from the same pre-step parameters (as in SimpleSAC, where the steps
follow the loss computation), each loss reaches only its own parameters (the policy loss sees
detached Q-weights, the Q loss detached policy samples), so one backward of their sum and one Adam
step over all parameters (Adam is elementwise) equals the spec's alpha -> policy -> Q order exactly.
Member losses are summed, never averaged, so each member's gradient is exactly its own.

Speed: data lives on the device; random numbers for a chunk of updates are drawn per member ahead
of the chunk into device buffers; the update reads its slot through a device counter, so it has
no host synchronisation and, on CUDA, is captured once as a CUDA graph and replayed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from synthrl.cql import networks as nets
from synthrl.utils.fastpath import SAME_ARITHMETIC, TF32, Parity, compare, failed, flatten_tensors

STAT_NAMES = ("q_loss", "cql_loss", "policy_loss", "alpha", "alpha_loss", "q_data")
_SAMPLER_SALT = 0xC01_5A3D


@dataclass(frozen=True)
class LossSettings:
    discount: float = 0.99
    n_actions: int = 3
    cql_temperature: float = 1.0
    min_q_weight: float = 5.0
    importance_sampling: bool = True


# ---------------------------------------------------------------------------------------------
# loss pieces (pure functions, tested against hand computations)

def safe_td_target(rewards, dones, target_q, q_max, discount: float):
    """r + gamma (1 - d) min(target_q, q_max); q_max per member [E] (inf disables the clamp)."""
    return rewards + discount * (1.0 - dones) * torch.minimum(target_q, q_max.view(-1, *([1] * (target_q.dim() - 1))))


def conservative_penalty(q_data, q_rand, q_next, q_cur, logp_next, logp_cur, act_dim: int,
                         temperature: float = 1.0, importance_sampling: bool = True):
    """CQL(H) penalty per state: T * logsumexp(X / T) - Q(s, a_data).

    q_data [..., B]; q_rand, q_next, q_cur [..., n, B]; logp_next, logp_cur [..., n, B] (broadcast).
    With importance sampling the random-action values are corrected by the uniform density on
    [-1, 1]^dA (log 0.5^dA) and the policy-action values by their log-density.
    """
    if importance_sampling:
        random_density = act_dim * math.log(0.5)
        cat = torch.cat([q_rand - random_density, q_next - logp_next, q_cur - logp_cur], dim=-2)
    else:
        cat = torch.cat([q_rand, q_data.unsqueeze(-2), q_next, q_cur], dim=-2)
    return torch.logsumexp(cat / temperature, dim=-2) * temperature - q_data


def alpha_loss_fn(log_alpha, log_pi, target_entropy: float):
    """-mean(log alpha * (log pi + target entropy)) per member: log_alpha [E], log_pi [E, B]."""
    return -(log_alpha.unsqueeze(-1) * (log_pi + target_entropy).detach()).mean(-1)


def cql_losses(policy, q, q_target, log_alpha, obs, actions, next_obs, rewards, dones, normal, uniform, q_max,
               hp: LossSettings):
    """Total loss (sum over members) and per-member statistics [E, len(STAT_NAMES)] of one update.

    obs/next_obs [E, B, dS]; actions [E, B, dA]; rewards/dones [E, B]; normal [E, 2 + 2n, B, dA]
    (slots: new action, target action, n current-state actions, n next-state actions); uniform
    [E, n, B, dA] in [0, 1) for the random actions.
    """
    n = hp.n_actions
    act_dim = actions.shape[-1]

    # policy at s (with grad) and at s' (no grad: only used for targets and the CQL term)
    mean_s, log_std_s = nets.policy_mean_log_std(policy, obs)
    mean_s, log_std_s = mean_s.unsqueeze(1), log_std_s.unsqueeze(1)
    new_actions, new_log_pi = nets.tanh_gaussian_sample(mean_s, log_std_s, normal[:, 0:1])  # [E,1,B,dA], [E,1,B]
    new_log_pi = new_log_pi[:, 0]
    with torch.no_grad():
        mean_n, log_std_n = nets.policy_mean_log_std(policy, next_obs)
        mean_n, log_std_n = mean_n.unsqueeze(1), log_std_n.unsqueeze(1)
        target_actions, _ = nets.tanh_gaussian_sample(mean_n, log_std_n, normal[:, 1:2])
        cur_actions, cur_log_pi = nets.tanh_gaussian_sample(mean_s.detach(), log_std_s.detach(), normal[:, 2:2 + n])
        next_actions, next_log_pi = nets.tanh_gaussian_sample(mean_n, log_std_n, normal[:, 2 + n:])
        random_actions = uniform * 2.0 - 1.0
        target_q = nets.q_values(q_target, next_obs, target_actions).amin(dim=1)[:, 0]  # [E, B]
        td_target = safe_td_target(rewards, dones, target_q, q_max, hp.discount)

    # entropy temperature (the policy uses alpha's pre-step value)
    alpha = log_alpha.exp().detach()
    alpha_loss = alpha_loss_fn(log_alpha, new_log_pi, -float(act_dim))

    # policy: gradient reaches the policy only (detached Q-weights)
    q_frozen = {k: v.detach() for k, v in q.items()}
    q_new = nets.q_values(q_frozen, obs, new_actions).amin(dim=1)[:, 0]
    policy_loss = (alpha.unsqueeze(-1) * new_log_pi - q_new).mean(-1)

    # Q: TD + conservative term, all actions detached; one batched pass over 1 + 3n actions per state
    all_actions = torch.cat([actions.unsqueeze(1), random_actions, next_actions, cur_actions], dim=1)
    q_all = nets.q_values(q, obs, all_actions)                        # [E, 2, 1 + 3n, B]
    q_data = q_all[:, :, 0]                                           # [E, 2, B]
    q_rand, q_next, q_cur = q_all[:, :, 1:1 + n], q_all[:, :, 1 + n:1 + 2 * n], q_all[:, :, 1 + 2 * n:]
    td_loss = (q_data - td_target.unsqueeze(1)).square().mean(-1).sum(1)       # [E]: q1 + q2 MSE
    penalty = conservative_penalty(q_data, q_rand, q_next, q_cur, next_log_pi.unsqueeze(1), cur_log_pi.unsqueeze(1),
                                   act_dim, hp.cql_temperature, hp.importance_sampling)
    cql_loss = hp.min_q_weight * penalty.mean(-1).sum(1)                          # [E]

    total = (td_loss + cql_loss + policy_loss + alpha_loss).sum()
    stats = torch.stack([td_loss, cql_loss, policy_loss, alpha, alpha_loss, q_data.mean((1, 2))], dim=1).detach()
    return total, stats


@torch.no_grad()
def deterministic_actions(policy: dict[str, torch.Tensor], obs: torch.Tensor) -> torch.Tensor:
    """The evaluation action tanh(mean): policy tensors [E, ...], obs [E, N, dS] -> [E, N, dA]."""
    mean, _ = nets.policy_mean_log_std({k: v.detach() for k, v in policy.items()}, obs)
    return torch.tanh(mean)


class _highest_matmul_precision:
    """The eager reference is fp32: TF32 off while it runs (the fast path may use it)."""

    def __enter__(self):
        self.saved = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")

    def __exit__(self, *exc):
        torch.set_float32_matmul_precision(self.saved)


# ---------------------------------------------------------------------------------------------
# the ensemble

@dataclass
class MemberInit:
    """One ensemble member: its seed, which dataset it trains on, and (optionally) pre-trained Q-weights."""

    seed: int
    dataset: int                                        # index into the ensemble's datasets
    q_init: dict[str, torch.Tensor] | None = None       # tensors [2, ...] (Q-nets incl. head) or None


def member_generator_seed(seed: int, purpose: int) -> int:
    return int(np.random.SeedSequence([_SAMPLER_SALT, int(seed), int(purpose)]).generate_state(1, np.uint64)[0] >> 1)


class CQLEnsemble:
    stat_names = STAT_NAMES  # the columns of stats_sum, as pop_stats names them

    def __init__(self, datasets: list[dict[str, np.ndarray]], members: list[MemberInit], *, hidden: int = 256,
                 batch_size: int = 256, lr_policy: float = 3e-4, lr_q: float = 3e-4, lr_alpha: float = 3e-4,
                 tau: float = 5e-3, safe_q_factor: float = 100.0, loss: LossSettings = LossSettings(),
                 rng_chunk: int = 64, device: str = "cpu", accel: str = "auto"):
        self.device = torch.device(device)
        self.loss_settings = loss
        self.batch_size, self.tau, self.rng_chunk = int(batch_size), float(tau), int(rng_chunk)
        self.members = list(members)
        E = self.num_members = len(members)
        obs_dim = datasets[0]["observations"].shape[1]
        act_dim = datasets[0]["actions"].shape[1]
        self.obs_dim, self.act_dim = obs_dim, act_dim
        for d in datasets:
            if d["observations"].shape[1] != obs_dim or d["actions"].shape[1] != act_dim:
                raise ValueError("ensemble members must share observation and action dims")

        # data resident on the device: the datasets concatenated; member e samples rows [offset, offset + size)
        def cat(key):
            return torch.as_tensor(np.concatenate([np.asarray(d[key], np.float32) for d in datasets]), device=self.device)

        self.data = {k: cat(k) for k in ("observations", "actions", "next_observations", "rewards", "terminals")}
        sizes = [len(d["rewards"]) for d in datasets]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).tolist()
        self.member_sizes = [int(sizes[m.dataset]) for m in members]
        self.member_offsets = [int(starts[m.dataset]) for m in members]
        max_rewards = [float(np.max(datasets[m.dataset]["rewards"])) for m in members]
        q_max = [safe_q_factor * r if safe_q_factor > 0 else math.inf for r in max_rewards]
        self.q_max = torch.tensor(q_max, dtype=torch.float32, device=self.device)

        # parameters: each member initialised from its own seed
        policies, qs = [], []
        for m in members:
            gen = torch.Generator().manual_seed(member_generator_seed(m.seed, 0))
            q_fresh = nets.init_q_pair(gen, obs_dim, act_dim, hidden)
            pol = nets.init_policy(gen, obs_dim, act_dim, hidden)
            if m.q_init is not None:  # transfer: pre-trained hidden layers, the pre-training's (untouched) Q head
                for k in nets.Q_NAMES:
                    if tuple(m.q_init[k].shape) != tuple(q_fresh[k].shape):
                        raise ValueError(f"pre-trained Q tensor {k} has shape {tuple(m.q_init[k].shape)}, "
                                         f"expected {tuple(q_fresh[k].shape)}")
                q_fresh = {k: m.q_init[k].detach().to(torch.float32).clone() for k in nets.Q_NAMES}
            policies.append(pol)
            qs.append(q_fresh)
        to_dev = lambda t: t.to(self.device).requires_grad_(True)  # noqa: E731
        self.policy = {k: to_dev(v) for k, v in nets.stack_members(policies).items()}
        self.q = {k: to_dev(v) for k, v in nets.stack_members(qs).items()}
        self.q_target = {k: v.detach().clone() for k, v in self.q.items()}
        self.log_alpha = torch.zeros(E, device=self.device, requires_grad=True)

        cuda = self.device.type == "cuda"
        self.use_graph = cuda and accel in ("auto", "graph")
        self.optimizer = torch.optim.Adam(
            [{"params": list(self.policy.values()), "lr": lr_policy},
             {"params": list(self.q.values()), "lr": lr_q},
             {"params": [self.log_alpha], "lr": lr_alpha}],
            foreach=cuda, capturable=cuda)
        self._init_optimizer_state()

        # per-member samplers and the device buffers one chunk of updates reads from
        self.generators = [torch.Generator(device=self.device).manual_seed(member_generator_seed(m.seed, 1))
                           for m in members]
        n, B, K = loss.n_actions, self.batch_size, self.rng_chunk
        self.idx_buf = torch.zeros(K, E, B, dtype=torch.long, device=self.device)
        self.normal_buf = torch.zeros(K, E, 2 + 2 * n, B, act_dim, device=self.device)
        self.uniform_buf = torch.zeros(K, E, n, B, act_dim, device=self.device)
        self.slot = torch.zeros(1, dtype=torch.long, device=self.device)

        self.stats_sum = torch.zeros(E, len(STAT_NAMES), dtype=torch.float64, device=self.device)
        self.stats_count = 0
        self.updates_done = 0
        self._graph = None
        # the fast path: a callable doing one update (a captured CUDA graph's replay), None: eager;
        # built on first use (build_fast_step), checked by check_fast_path, dropped by use_eager
        self.fast_step: Callable[[], None] | None = None
        self.eager_reason = "cpu" if not cuda else "--accel eager" if not self.use_graph else ""
        self._fast_built = False

    # -- parameters --------------------------------------------------------------------------
    def parameters(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _init_optimizer_state(self) -> None:
        """Create Adam's state up front (zeros, step 0): the tensors then never move (CUDA graphs, resume)."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                on_device = group["capturable"] or group["fused"]
                self.optimizer.state[p] = {
                    "step": torch.zeros((), dtype=torch.float32, device=p.device if on_device else "cpu"),
                    "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                    "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format),
                }

    # -- random numbers ----------------------------------------------------------------------
    def _draw_chunk(self, k: int) -> None:
        """Each member's generator draws the batch indices and noise of the next k updates."""
        n, B, dA, dev = self.loss_settings.n_actions, self.batch_size, self.act_dim, self.device
        for e, gen in enumerate(self.generators):
            idx = torch.randint(self.member_sizes[e], (k, B), generator=gen, device=dev)
            self.idx_buf[:k, e] = idx + self.member_offsets[e]
            self.normal_buf[:k, e] = torch.randn((k, 2 + 2 * n, B, dA), generator=gen, device=dev)
            self.uniform_buf[:k, e] = torch.rand((k, n, B, dA), generator=gen, device=dev)
        self.slot.zero_()

    # -- one update --------------------------------------------------------------------------
    def _update(self) -> None:
        idx = self.idx_buf.index_select(0, self.slot)[0]                # [E, B]
        normal = self.normal_buf.index_select(0, self.slot)[0]
        uniform = self.uniform_buf.index_select(0, self.slot)[0]
        d = self.data
        total, stats = cql_losses(self.policy, self.q, self.q_target, self.log_alpha,
                                  d["observations"][idx], d["actions"][idx], d["next_observations"][idx],
                                  d["rewards"][idx], d["terminals"][idx], normal, uniform, self.q_max,
                                  self.loss_settings)
        for p in self.parameters():
            p.grad = None
        total.backward()
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_lerp_(list(self.q_target.values()), list(self.q.values()), self.tau)
            self.stats_sum += stats
            self.slot += 1

    def _snapshot(self) -> list[torch.Tensor]:
        tensors = self.parameters() + list(self.q_target.values()) + [self.stats_sum, self.slot]
        for p in self.parameters():
            tensors += [self.optimizer.state[p][k] for k in ("step", "exp_avg", "exp_avg_sq")]
        return tensors

    def _capture_graph(self) -> None:
        """Warm up on a side stream, restore the state the warm-up changed, then capture one update."""
        tensors = self._snapshot()
        saved = [t.detach().clone() for t in tensors]
        try:
            stream = torch.cuda.Stream(self.device)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for _ in range(min(3, self.rng_chunk)):  # slots read stay inside the buffers
                    self._update()
            torch.cuda.current_stream(self.device).wait_stream(stream)
        finally:
            with torch.no_grad():
                for t, s in zip(tensors, saved):
                    t.copy_(s)
        for p in self.parameters():
            p.grad = None
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._update()
        self._graph = graph

    def build_fast_step(self) -> Callable[[], None] | None:
        """The fast path's one-update callable (a captured CUDA graph's replay), or None where there is none."""
        if not self.use_graph:
            return None
        self._capture_graph()
        return self._graph.replay

    def prepare_fast_step(self) -> Callable[[], None] | None:
        """Build the fast path once; a capture that raises leaves the run eager (never lose a run to it)."""
        if self.fast_step is None and not self._fast_built:  # (a test may set fast_step itself)
            self._fast_built = True
            try:
                self.fast_step = self.build_fast_step()
            except Exception as e:
                import warnings

                warnings.warn(f"CUDA graph capture failed ({type(e).__name__}: {e}); training eagerly")
                self.use_eager(f"CUDA graph capture failed ({type(e).__name__})")
        return self.fast_step

    def use_eager(self, reason: str) -> None:
        self.fast_step, self._graph, self.use_graph, self._fast_built = None, None, False, True
        self.eager_reason = reason

    def train(self, n_updates: int) -> None:
        """n_updates updates; random numbers drawn in chunks of rng_chunk (restarting at every call)."""
        done = 0
        while done < n_updates:
            k = min(self.rng_chunk, n_updates - done)
            self._draw_chunk(k)
            step = self.prepare_fast_step() or self._update
            for _ in range(k):
                step()
            done += k
        self.stats_count += n_updates
        self.updates_done += n_updates

    # -- the fast path against eager -----------------------------------------------------------
    def _steps_from(self, start: dict, step: Callable[[], None], k: int) -> tuple[dict, list[float]]:
        """k updates of ``step`` from ``start`` (one random chunk, as train() draws it): the state and the
        running loss sums after each update."""
        self.load_state_dict(start)
        self._draw_chunk(k)
        sums = []
        for _ in range(k):
            step()
            sums.append(self.stats_sum.sum())
        return self.state_dict(), [float(x) for x in torch.stack(sums).cpu()]

    def check_fast_path(self, updates: int = 8) -> Parity | None:
        """``updates`` updates on the fast path and eagerly from this state and random stream, compared
        (parameters, targets, Adam state, losses); the state is restored after. None: no fast path."""
        fast = self.prepare_fast_step()
        if fast is None:
            return None
        k = max(1, min(int(updates), self.rng_chunk))  # one chunk: a replay reading a stale slot shows
        tf32 = self.device.type == "cuda" and torch.get_float32_matmul_precision() != "highest"
        tolerance = TF32 if tf32 else SAME_ARITHMETIC
        start = self.state_dict()
        try:
            fast_state, fast_losses = self._steps_from(start, fast, k)
            with _highest_matmul_precision():
                eager_state, eager_losses = self._steps_from(start, self._update, k)
        except Exception as e:
            return failed(e, tolerance, k)
        finally:
            self.load_state_dict(start)
        params = self.parity_parameters()
        flat = lambda state, names: flatten_tensors({n: state[n] for n in names})  # noqa: E731
        keep = [*params, "adam", "stats_sum"]
        return compare(flat(fast_state, keep), flat(eager_state, keep), tolerance, k, start=flat(start, params),
                       fast_losses=fast_losses, eager_losses=eager_losses)

    def parity_parameters(self) -> list[str]:
        """The state_dict entries holding trained parameters (the fast-path check compares their updates)."""
        return ["policy", "q", "q_target", "log_alpha"]

    # -- statistics and evaluation -----------------------------------------------------------
    def pop_stats(self) -> dict[str, np.ndarray]:
        """Mean of each statistic per member since the last call (the only host sync of training)."""
        mean = (self.stats_sum / max(self.stats_count, 1)).cpu().numpy()
        self.stats_sum.zero_()
        self.stats_count = 0
        return {name: mean[:, i] for i, name in enumerate(self.stat_names)}

    def deterministic_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """obs [E, N, dS] -> tanh(mean) [E, N, dA]."""
        return deterministic_actions(self.policy, obs)

    # -- checkpoint ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        cpu = lambda t: t.detach().to("cpu").clone()  # noqa: E731
        params = self.parameters()
        return {
            "policy": {k: cpu(v) for k, v in self.policy.items()},
            "q": {k: cpu(v) for k, v in self.q.items()},
            "q_target": {k: cpu(v) for k, v in self.q_target.items()},
            "log_alpha": cpu(self.log_alpha),
            "adam": [{k: cpu(self.optimizer.state[p][k]) for k in ("step", "exp_avg", "exp_avg_sq")} for p in params],
            "generators": [g.get_state() for g in self.generators],
            "stats_sum": cpu(self.stats_sum),
            "stats_count": int(self.stats_count),
            "updates_done": int(self.updates_done),
            "seeds": [int(m.seed) for m in self.members],
        }

    def load_state_dict(self, state: dict) -> None:
        """Copy into the existing tensors (a captured CUDA graph keeps pointing at them)."""
        if [int(s) for s in state["seeds"]] != [int(m.seed) for m in self.members]:
            raise ValueError(f"checkpoint holds seeds {state['seeds']}, this ensemble {[m.seed for m in self.members]}")
        with torch.no_grad():
            for name, group in (("policy", self.policy), ("q", self.q), ("q_target", self.q_target)):
                for k, t in group.items():
                    t.copy_(state[name][k])
            self.log_alpha.copy_(state["log_alpha"])
            for p, saved in zip(self.parameters(), state["adam"], strict=True):
                for k in ("step", "exp_avg", "exp_avg_sq"):
                    self.optimizer.state[p][k].copy_(saved[k])
            self.stats_sum.copy_(state["stats_sum"])
        for g, s in zip(self.generators, state["generators"], strict=True):
            g.set_state(s)
        self.stats_count = int(state["stats_count"])
        self.updates_done = int(state["updates_done"])
