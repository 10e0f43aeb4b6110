"""The batched ensemble against a straight transcription of SimpleSAC's ConservativeSAC.train.

The reference below is written the way the paper's code base is (nn.Linear modules, torch.distributions,
observations repeated for the sampled actions, three optimisers stepped alpha -> policy -> Q with three
backward passes, soft target update). Fed the same weights, batches and noise, the ensemble's fused
single-backward update must give the same gradients and the same parameters.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal
from torch.distributions.transforms import TanhTransform

from synthrl.cql.algorithm import CQLEnsemble, MemberInit

DS, DA, H, B, N_ACT = 4, 2, 16, 8, 3
GAMMA, TAU, MIN_Q_WEIGHT = 0.99, 5e-3, 5.0


def mlp(i, o):
    return nn.Sequential(nn.Linear(i, H), nn.ReLU(), nn.Linear(H, H), nn.ReLU(), nn.Linear(H, o))


class RefPolicy(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = mlp(DS, 2 * DA)
        self.log_std_multiplier = nn.Parameter(torch.tensor(1.0))
        self.log_std_offset = nn.Parameter(torch.tensor(-1.0))

    def forward(self, obs, noise):
        mean, log_std = torch.split(self.net(obs), DA, dim=-1)
        log_std = torch.clamp(self.log_std_multiplier * log_std + self.log_std_offset, -20.0, 2.0)
        std = log_std.exp()
        pre = mean + std * noise
        action = torch.tanh(pre)
        log_prob = (Normal(mean, std).log_prob(pre) - TanhTransform().log_abs_det_jacobian(pre, action)).sum(-1)
        return action, log_prob


def q_of(net, obs, actions):
    return net(torch.cat([obs, actions], dim=-1)).squeeze(-1)


def load_linear(layer, w, b):
    with torch.no_grad():
        layer.weight.copy_(w.T)
        layer.bias.copy_(b.reshape(-1))


def reference_from(ens, e):
    policy = RefPolicy()
    p = {k: v[e].detach() for k, v in ens.policy.items()}
    for i, layer in enumerate((0, 2, 4)):
        load_linear(policy.net[layer], p[f"w{i}"], p[f"b{i}"])
    with torch.no_grad():
        policy.log_std_multiplier.copy_(p["log_std_mult"])
        policy.log_std_offset.copy_(p["log_std_offset"])
    qs, targets = [], []
    for j in range(2):
        for store, source in ((qs, ens.q), (targets, ens.q_target)):
            net = mlp(DS + DA, 1)
            for i, layer in enumerate((0, 2, 4)):
                load_linear(net[layer], source[f"w{i}"][e, j].detach(), source[f"b{i}"][e, j].detach())
            store.append(net)
    log_alpha = nn.Parameter(ens.log_alpha[e].detach().clone())
    return policy, qs, targets, log_alpha


def reference_update(policy, qs, targets, log_alpha, opts, batch, normal, uniform, q_max):
    """ConservativeSAC.train (SimpleSAC) with the paper's settings, for one member."""
    obs, actions, next_obs, rewards, dones = batch
    alpha_opt, policy_opt, q_opt = opts
    new_actions, log_pi = policy(obs, normal[0])
    alpha_loss = -(log_alpha * (log_pi + (-DA)).detach()).mean()
    alpha = log_alpha.exp()
    q_new = torch.min(q_of(qs[0], obs, new_actions), q_of(qs[1], obs, new_actions))
    policy_loss = (alpha * log_pi - q_new).mean()

    q1_pred, q2_pred = q_of(qs[0], obs, actions), q_of(qs[1], obs, actions)
    new_next_actions, _ = policy(next_obs, normal[1])
    target_q = torch.min(q_of(targets[0], next_obs, new_next_actions), q_of(targets[1], next_obs, new_next_actions))
    target_q = torch.clamp(target_q, max=q_max)                      # safe Q target
    td_target = rewards + (1.0 - dones) * GAMMA * target_q
    qf1_loss = F.mse_loss(q1_pred, td_target.detach())
    qf2_loss = F.mse_loss(q2_pred, td_target.detach())

    obs_rep = obs.unsqueeze(1).repeat(1, N_ACT, 1)                  # extend_and_repeat
    next_rep = next_obs.unsqueeze(1).repeat(1, N_ACT, 1)
    random_actions = uniform.permute(1, 0, 2) * 2 - 1               # [B, n, dA]
    cur_actions, cur_log_pi = policy(obs_rep, normal[2:2 + N_ACT].permute(1, 0, 2))
    next_actions, next_log_pi = policy(next_rep, normal[2 + N_ACT:].permute(1, 0, 2))
    cur_actions, cur_log_pi = cur_actions.detach(), cur_log_pi.detach()
    next_actions, next_log_pi = next_actions.detach(), next_log_pi.detach()
    random_density = np.log(0.5 ** DA)
    cql = []
    for q, pred in zip(qs, (q1_pred, q2_pred)):
        cat = torch.cat([q_of(q, obs_rep, random_actions) - random_density,
                         q_of(q, obs_rep, next_actions) - next_log_pi,     # SimpleSAC: Q(s, a ~ pi(s'))
                         q_of(q, obs_rep, cur_actions) - cur_log_pi], dim=1)
        ood = torch.logsumexp(cat / 1.0, dim=1) * 1.0
        cql.append((ood - pred).mean() * MIN_Q_WEIGHT)
    qf_loss = qf1_loss + qf2_loss + cql[0] + cql[1]

    alpha_opt.zero_grad()
    alpha_loss.backward()
    alpha_opt.step()
    policy_opt.zero_grad()
    policy_loss.backward()
    policy_grads = {n: p.grad.clone() for n, p in policy.named_parameters()}
    policy_opt.step()
    q_opt.zero_grad()
    qf_loss.backward()
    q_grads = [p.grad.clone() for q in qs for p in q.parameters()]
    q_opt.step()
    with torch.no_grad():
        for q, t in zip(qs, targets):
            for p, tp in zip(q.parameters(), t.parameters()):
                tp.copy_((1 - TAU) * tp + TAU * p)
    return policy_grads, q_grads, float((qf1_loss + qf2_loss).detach()), float((cql[0] + cql[1]).detach())


def tiny_data(seed=0, n=64):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, DS)).astype(np.float32)
    return {"observations": obs, "actions": rng.uniform(-0.999, 0.999, (n, DA)).astype(np.float32),
            "next_observations": np.roll(obs, -1, 0), "rewards": (rng.normal(size=n) + 1).astype(np.float32),
            "terminals": (rng.random(n) < 0.2).astype(np.float32)}


def test_ensemble_update_matches_simplesac_reference():
    steps = 3
    data = tiny_data()
    # a tiny safe-Q factor so the clamp is active in this test
    ens = CQLEnsemble([data], [MemberInit(seed=7, dataset=0), MemberInit(seed=8, dataset=0)], hidden=H,
                      batch_size=B, rng_chunk=steps, safe_q_factor=1e-6)
    refs = [reference_from(ens, e) for e in range(2)]
    opts = [(torch.optim.Adam([la], lr=3e-4), torch.optim.Adam(pol.parameters(), lr=3e-4),
             torch.optim.Adam([p for q in qs for p in q.parameters()], lr=3e-4)) for pol, qs, _, la in refs]
    ens._draw_chunk(steps)
    idx, normal, uniform = ens.idx_buf.clone(), ens.normal_buf.clone(), ens.uniform_buf.clone()
    t = {k: torch.as_tensor(v) for k, v in data.items()}
    q_max = 1e-6 * float(data["rewards"].max())
    for step in range(steps):
        ens._update()
        if step == 0:  # the fused backward's gradients equal the three separate backward passes'
            ens_policy_grads = {k: v.grad.clone() for k, v in ens.policy.items()}
            ens_q_grads = {k: v.grad.clone() for k, v in ens.q.items()}
        for e, (pol, qs, targets, la) in enumerate(refs):
            rows = idx[step, e]
            batch = (t["observations"][rows], t["actions"][rows], t["next_observations"][rows], t["rewards"][rows],
                     t["terminals"][rows])
            pg, qg, td, cql = reference_update(pol, qs, targets, la, opts[e], batch, normal[step, e],
                                               uniform[step, e], q_max)
            if step == 0:
                names = ["w0", "b0", "w1", "b1", "w2", "b2"]
                for i, name in enumerate(names):
                    layer = (0, 2, 4)[i // 2]
                    g = pg[f"net.{layer}.{'weight' if i % 2 == 0 else 'bias'}"]
                    g = g.T if g.dim() == 2 else g
                    torch.testing.assert_close(ens_policy_grads[name][e].reshape(-1), g.reshape(-1),
                                               rtol=1e-4, atol=1e-6)
                torch.testing.assert_close(ens_policy_grads["log_std_mult"][e], pg["log_std_multiplier"],
                                           rtol=1e-4, atol=1e-6)
                torch.testing.assert_close(ens_policy_grads["log_std_offset"][e], pg["log_std_offset"],
                                           rtol=1e-4, atol=1e-6)
                for j in range(2):
                    for i, name in enumerate(names):
                        g = qg[6 * j + i]
                        g = g.T if g.dim() == 2 else g
                        torch.testing.assert_close(ens_q_grads[name][e, j].reshape(-1), g.reshape(-1),
                                                   rtol=1e-4, atol=1e-6)
    stats = ens.pop_stats()
    assert np.isfinite(stats["q_loss"]).all()
    # after three Adam steps and soft updates the parameters still agree
    for e, (pol, qs, targets, la) in enumerate(refs):
        for j in range(2):
            for i, layer in enumerate((0, 2, 4)):
                torch.testing.assert_close(ens.q[f"w{i}"][e, j].detach(), qs[j][layer].weight.detach().T,
                                           rtol=1e-4, atol=1e-5)
                torch.testing.assert_close(ens.q_target[f"w{i}"][e, j], targets[j][layer].weight.detach().T,
                                           rtol=1e-4, atol=1e-5)
        for i, layer in enumerate((0, 2, 4)):
            torch.testing.assert_close(ens.policy[f"w{i}"][e].detach(), pol.net[layer].weight.detach().T,
                                       rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ens.log_alpha[e].detach(), la.detach(), rtol=1e-5, atol=1e-6)
    assert math.isfinite(td) and math.isfinite(cql)
