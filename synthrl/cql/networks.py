"""Batched-ensemble networks for CQL (spec section 1), written as plain tensors and ``bmm``.

Every weight has a leading member dimension ``E`` (and, for the Q-networks, a second dimension of
2 for the twin Q-nets), so one ``baddbmm`` computes all members at once and no Python loop runs
over members. Weights are stored ``[.., in, out]`` so a layer is ``baddbmm(bias, x, weight)``.

Initialisation follows the spec: hidden layers use PyTorch's default ``nn.Linear`` init
(uniform +-1/sqrt(fan_in) for weight and bias); the Q head and the policy's output layer use
xavier-uniform with gain 0.01 and zero bias (as SimpleSAC's ``FullyConnectedNetwork``).
Each member draws its initial weights from its own CPU generator, so a member's init depends on
its seed only, never on the device or on the other members.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
Q_NAMES = ("w0", "b0", "w1", "b1", "w2", "b2")
POLICY_NAMES = ("w0", "b0", "w1", "b1", "w2", "b2", "log_std_mult", "log_std_offset")


# ---------------------------------------------------------------------------------------------
# initialisation (one member at a time, on the CPU, float32)

def default_linear(gen: torch.Generator, fan_in: int, fan_out: int, groups: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.Linear's default init: kaiming_uniform(a=sqrt 5) = U(+-1/sqrt(fan_in)) for weight and bias."""
    bound = 1.0 / math.sqrt(fan_in)
    w = (torch.rand(groups, fan_out, fan_in, generator=gen) * 2 - 1) * bound
    b = (torch.rand(groups, 1, fan_out, generator=gen) * 2 - 1) * bound
    return w.transpose(1, 2).contiguous(), b


def xavier_linear(gen: torch.Generator, fan_in: int, fan_out: int, groups: int = 1, gain: float = 0.01):
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    w = (torch.rand(groups, fan_out, fan_in, generator=gen) * 2 - 1) * bound
    return w.transpose(1, 2).contiguous(), torch.zeros(groups, 1, fan_out)


def init_q_pair(gen: torch.Generator, obs_dim: int, act_dim: int, hidden: int) -> dict[str, torch.Tensor]:
    """Twin Q-networks of one member: tensors with a leading dimension of 2."""
    w0, b0 = default_linear(gen, obs_dim + act_dim, hidden, 2)
    w1, b1 = default_linear(gen, hidden, hidden, 2)
    w2, b2 = xavier_linear(gen, hidden, 1, 2)
    return {"w0": w0, "b0": b0, "w1": w1, "b1": b1, "w2": w2, "b2": b2}


def init_policy(gen: torch.Generator, obs_dim: int, act_dim: int, hidden: int) -> dict[str, torch.Tensor]:
    """Tanh-Gaussian policy of one member (mean and raw log-std from one output layer, as SimpleSAC)."""
    w0, b0 = default_linear(gen, obs_dim, hidden)
    w1, b1 = default_linear(gen, hidden, hidden)
    w2, b2 = xavier_linear(gen, hidden, 2 * act_dim)
    return {"w0": w0[0], "b0": b0[0], "w1": w1[0], "b1": b1[0], "w2": w2[0], "b2": b2[0],
            "log_std_mult": torch.tensor(1.0), "log_std_offset": torch.tensor(-1.0)}


def init_dynamics_head(gen: torch.Generator, hidden: int, target_dim: int) -> dict[str, torch.Tensor]:
    w, b = xavier_linear(gen, hidden, target_dim, 2)
    return {"w": w, "b": b}


def stack_members(per_member: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([m[k] for m in per_member]).contiguous() for k in per_member[0]}


# ---------------------------------------------------------------------------------------------
# forward passes

def q_hidden(q: dict[str, torch.Tensor], obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Hidden features of the twin Q-nets for every state paired with K actions.

    q: tensors [E, 2, ...]; obs [E, B, dS]; actions [E, K, B, dA] -> [E*2, K*B, H].
    The first layer is split as s @ W_s + a @ W_a so each state's part is computed once, not K times.
    """
    E, B, dS = obs.shape
    K, dA = actions.shape[1], actions.shape[3]
    w0 = q["w0"].flatten(0, 1)                                       # [2E, dS+dA, H]
    H = w0.shape[-1]
    obs2 = obs.unsqueeze(1).expand(E, 2, B, dS).reshape(2 * E, B, dS)
    h_state = torch.baddbmm(q["b0"].flatten(0, 1), obs2, w0[:, :dS])  # [2E, B, H]
    act2 = actions.unsqueeze(1).expand(E, 2, K, B, dA).reshape(2 * E, K * B, dA)
    h_action = torch.bmm(act2, w0[:, dS:]).view(2 * E, K, B, H)
    h = torch.relu(h_action + h_state.unsqueeze(1)).view(2 * E, K * B, H)
    return torch.relu(torch.baddbmm(q["b1"].flatten(0, 1), h, q["w1"].flatten(0, 1)))


def q_values(q: dict[str, torch.Tensor], obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q1 and Q2 of every (state, action) pair: obs [E, B, dS], actions [E, K, B, dA] -> [E, 2, K, B]."""
    E, K, B = actions.shape[0], actions.shape[1], actions.shape[2]
    h = q_hidden(q, obs, actions)
    out = torch.baddbmm(q["b2"].flatten(0, 1), h, q["w2"].flatten(0, 1))  # [2E, K*B, 1]
    return out.view(E, 2, K, B)


def dynamics_prediction(q: dict[str, torch.Tensor], head: dict[str, torch.Tensor], obs, actions) -> torch.Tensor:
    """Forward-dynamics head on the Q-nets' hidden layers: obs [E,B,dS], actions [E,1,B,dA] -> [E, 2, B, D]."""
    E, B = obs.shape[0], obs.shape[1]
    h = q_hidden(q, obs, actions)
    out = torch.baddbmm(head["b"].flatten(0, 1), h, head["w"].flatten(0, 1))
    return out.view(E, 2, B, -1)


def policy_mean_log_std(p: dict[str, torch.Tensor], obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """obs [E, N, dS] -> mean, log_std [E, N, dA]; log_std = m * raw + o, clamped to [-20, 2]."""
    h = torch.relu(torch.baddbmm(p["b0"], obs, p["w0"]))
    h = torch.relu(torch.baddbmm(p["b1"], h, p["w1"]))
    out = torch.baddbmm(p["b2"], h, p["w2"])
    mean, raw = out.chunk(2, dim=-1)
    log_std = p["log_std_mult"].view(-1, 1, 1) * raw + p["log_std_offset"].view(-1, 1, 1)
    return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_LOG2 = math.log(2.0)


def tanh_gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor):
    """Reparameterised tanh-Gaussian sample and its log-density.

    mean, log_std [E, 1, N, dA] (or any shape broadcasting with noise); noise standard normal.
    log pi(a) = sum_i [ log N(x_i; mean, std) - log(1 - tanh(x_i)^2) ], with the stable form
    log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x)) (torch's TanhTransform), x the pre-tanh value.
    """
    pre_tanh = mean + log_std.exp() * noise
    log_prob = (-0.5 * noise.square() - log_std - _HALF_LOG_2PI).sum(-1)
    log_prob = log_prob - (2.0 * (_LOG2 - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)
    return torch.tanh(pre_tanh), log_prob
