"""IQL: the losses against a plain-torch reference, ensemble independence, exact resume, pre-training
transfer, and a tiny run into a run directory through synthrl.runner.drive."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_hopper_file
from synthrl.cql import networks as nets
from synthrl.cql.algorithm import MemberInit
from synthrl.cql.pretrain import build_pretrain_artifact_for, transferred_q
from synthrl.errors import UserError
from synthrl.iql import (IQLConfig, IQLEnsemble, cosine_lr, iql_losses, make_runner,
                         reward_scale_of, run_params)
from synthrl.rundir import RunDir
from synthrl.runner import drive
from synthrl.store import ArtifactStore

DS, DA, H, B = 5, 2, 32, 16


def tiny_dataset(n=400, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, DS)).astype(np.float32)
    act = rng.uniform(-0.999, 0.999, (n, DA)).astype(np.float32)
    rew = (obs[:, 0] - np.square(act).sum(1)).astype(np.float32)
    return {"observations": obs, "actions": act, "next_observations": np.roll(obs, -1, 0),
            "rewards": rew, "terminals": (rng.random(n) < 0.05).astype(np.float32)}


def make_ensemble(seeds=(0, 1), datasets=None, member_data=None, q_init=None, chunk=4, total=100, device="cpu",
                  **settings):
    datasets = datasets or [tiny_dataset()]
    member_data = member_data or [0] * len(seeds)
    members = [MemberInit(seed=s, dataset=d, q_init=q_init) for s, d in zip(seeds, member_data)]
    config = IQLConfig(dataset="-", hidden=H, batch_size=B, rng_chunk=chunk, updates=total, **settings).validate()
    return IQLEnsemble(datasets, members, config, device)


# ---------------------------------------------------------------------------------------------
# the losses against a hand-written reference: one member, plain nn.Linear modules, CORL's formulas

def linear_from(w, b):
    """nn.Linear holding a [in, out] weight and [1, out] bias of one member."""
    layer = torch.nn.Linear(w.shape[0], w.shape[1])
    with torch.no_grad():
        layer.weight.copy_(w.T)
        layer.bias.copy_(b[0])
    return layer


def reference_mlp(p, x, out_tanh=False):
    h = F.relu(linear_from(p["w0"], p["b0"])(x))
    h = F.relu(linear_from(p["w1"], p["b1"])(h))
    y = linear_from(p["w2"], p["b2"])(h)
    return torch.tanh(y) if out_tanh else y


def reference_losses(policy, q, q_target, v, s, a, s2, r, d, gamma=0.99, tau=0.7, beta=3.0):
    """CORL iql.py: _update_v, _update_q, _update_policy on one member's batch (plain torch)."""
    def q_net(params, i, s, a):
        return reference_mlp({k: t[i] for k, t in params.items()}, torch.cat([s, a], 1))[:, 0]

    with torch.no_grad():
        target_q = torch.min(q_net(q_target, 0, s, a), q_net(q_target, 1, s, a))
        next_v = reference_mlp(v, s2)[:, 0]
    adv = target_q - reference_mlp(v, s)[:, 0]
    v_loss = torch.mean(torch.abs(tau - (adv < 0).float()) * adv ** 2)
    targets = r + (1.0 - d) * gamma * next_v
    q_loss = sum(F.mse_loss(q_net(q, i, s, a), targets) for i in range(2)) / 2
    exp_adv = torch.exp(beta * adv.detach()).clamp(max=100.0)
    mean = reference_mlp(policy, s, out_tanh=True)
    dist = torch.distributions.Normal(mean, torch.exp(policy["log_std"].clamp(-20.0, 2.0)))
    policy_loss = torch.mean(exp_adv * -dist.log_prob(a).sum(-1))
    return q_loss.item(), v_loss.item(), policy_loss.item()


def test_losses_match_a_plain_torch_reference():
    ens = make_ensemble(seeds=(3,))
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():  # targets and log-std away from their init, so every term matters
        for t in ens.q_target.values():
            t.add_(0.05 * torch.randn(t.shape, generator=gen))
        ens.policy["log_std"].copy_(torch.tensor([[-0.5, 0.3]]))
    data = tiny_dataset(n=B, seed=5)
    s, a, s2 = (torch.as_tensor(data[k]) for k in ("observations", "actions", "next_observations"))
    r, d = torch.as_tensor(data["rewards"]) * 3, torch.as_tensor(data["terminals"])
    d[:4] = 1.0  # some terminals in the batch
    one = {k: t[0].detach() for k, t in ens.policy.items()}
    want = reference_losses(one, {k: t[0].detach() for k, t in ens.q.items()},
                            {k: t[0] for k, t in ens.q_target.items()}, {k: t[0].detach() for k, t in ens.v.items()},
                            s, a, s2, r, d)
    total, stats = iql_losses(ens.policy, ens.q, ens.q_target, ens.v, s[None], a[None], s2[None], r[None], d[None],
                              ens.config)
    got = stats[0, :3].tolist()  # q_loss, v_loss, policy_loss
    assert got == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert total.item() == pytest.approx(sum(want), rel=1e-5)
    # each loss reaches only its own network: the V loss's gradient is V's alone, etc.
    total.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (ens.v["w0"], ens.q["w0"], ens.policy["w0"]))
    assert all(t.grad is None for t in ens.q_target.values())


def test_expectile_weights_and_clip_are_as_iql_says():
    """tau weighs positive residuals, 1 - tau negative ones; the advantage weight is clipped at 100."""
    from synthrl.iql import expectile_loss

    diff = torch.tensor([2.0, -2.0])
    assert expectile_loss(diff[:1], 0.7).item() == pytest.approx(0.7 * 4)
    assert expectile_loss(diff[1:], 0.7).item() == pytest.approx(0.3 * 4)
    ens = make_ensemble(seeds=(0,))
    with torch.no_grad():  # a huge target Q: every advantage is large, every weight the clip
        ens.q_target["b2"].fill_(1e3)
    data = tiny_dataset(n=B, seed=1)
    args = [torch.as_tensor(data[k])[None] for k in ("observations", "actions", "next_observations", "rewards",
                                                      "terminals")]
    _, clipped = iql_losses(ens.policy, ens.q, ens.q_target, ens.v, *args, IQLConfig(dataset="-", max_weight=100.0))
    _, unclipped = iql_losses(ens.policy, ens.q, ens.q_target, ens.v, *args, IQLConfig(dataset="-", max_weight=200.0))
    assert unclipped[0, 2].item() == pytest.approx(2 * clipped[0, 2].item(), rel=1e-5)


def test_cosine_actor_lr_and_reward_scale():
    t = torch.tensor(0.0, dtype=torch.float64)
    assert cosine_lr(3e-4, t, 100).item() == pytest.approx(3e-4)
    assert cosine_lr(3e-4, t + 50, 100).item() == pytest.approx(1.5e-4)
    # the ensemble's Adam uses the decayed rate: the policy's lr tensor after update u is lr(u)
    ens = make_ensemble(seeds=(0,), total=10)
    ens.train(6)
    assert ens.policy_lr.item() == pytest.approx(3e-4 * 0.5 * (1 + math.cos(math.pi * 5 / 10)), rel=1e-6)
    assert reward_scale_of(np.array([100.0, 600.0, 350.0])) == pytest.approx(1000 / 500)


# ---------------------------------------------------------------------------------------------
# the ensemble

def member_state(ens, e):
    out = {}
    for name, group in ens._groups():
        out.update({f"{name}.{k}": t[e].detach().clone() for k, t in group.items()})
    for i, p in enumerate(ens.parameters()):
        out[f"adam{i}"] = ens.optimizer.state[p]["exp_avg_sq"][e].clone()
    return out


def test_ensemble_members_equal_single_seed_runs():
    """Each member of a 3-seed ensemble trains as that seed alone would (to float rounding: a batched
    matmul may sum in another order), and shares nothing with the others: another member's data and
    weights changed leave it bit for bit the same."""
    datasets = [tiny_dataset(seed=0), tiny_dataset(seed=1)]
    group = make_ensemble(seeds=(4, 5, 6), datasets=datasets, member_data=[0, 1, 0])
    group.train(12)
    for e, (seed, data) in enumerate([(4, 0), (5, 1), (6, 0)]):
        alone = make_ensemble(seeds=(seed,), datasets=[datasets[data]])
        alone.train(12)
        want, got = member_state(alone, 0), member_state(group, e)
        for k in want:
            assert torch.allclose(want[k], got[k], rtol=1e-5, atol=1e-6), f"member {e} {k}"
    assert not torch.allclose(group.policy["w0"][0], group.policy["w0"][2])

    other = tiny_dataset(seed=1)
    other["rewards"] = other["rewards"] * 10 + 3
    perturbed = make_ensemble(seeds=(4, 5, 6), datasets=[datasets[0], other], member_data=[0, 1, 0])
    with torch.no_grad():
        perturbed.q["w0"][1] *= 2
        perturbed.v["w1"][1] += 0.5
    perturbed.train(12)
    for e in (0, 2):
        a, b = member_state(group, e), member_state(perturbed, e)
        assert all(torch.equal(a[k], b[k]) for k in a), f"member {e} changed"
    assert not torch.equal(group.q["w1"][1], perturbed.q["w1"][1])


def test_resume_is_bit_identical(tmp_path):
    full = make_ensemble(seeds=(0, 1))
    full.train(8)
    state = full.state_dict()
    full.train(8)
    resumed = make_ensemble(seeds=(0, 1))
    resumed.load_state_dict(state)
    resumed.train(8)
    for e in range(2):
        a, b = member_state(full, e), member_state(resumed, e)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(full.pop_stats()["q_loss"], resumed.pop_stats()["q_loss"])


def test_fast_path_check_covers_v_and_the_lr_schedule():
    """The start-up check compares IQL's own tensors: a fast step that leaves V unchanged, or that
    skips the cosine schedule, fails it; the state is left as it was."""
    ens = make_ensemble(seeds=(0, 1), chunk=8, total=20)
    assert ens.check_fast_path() is None  # the CPU has no fast path of its own
    ens.fast_step = ens._update
    assert ens.check_fast_path().bit_equal
    before = member_state(ens, 1)

    def skips_v():
        saved = {k: t.detach().clone() for k, t in ens.v.items()}
        ens._update()
        with torch.no_grad():
            for k, t in ens.v.items():
                t.copy_(saved[k])

    def constant_lr():
        ens._update()
        with torch.no_grad():
            ens.update_count.zero_()  # the next update uses the first update's rate again

    for broken in (skips_v, constant_lr):
        ens.fast_step = broken
        parity = ens.check_fast_path()
        assert not parity.ok, broken.__name__
    after = member_state(ens, 1)
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.gpu
def test_cuda_graph_update_equals_eager():
    eager = make_ensemble(seeds=(0, 1, 2), chunk=8, device="cuda", accel="eager")
    graphed = make_ensemble(seeds=(0, 1, 2), chunk=8, device="cuda", accel="graph")
    eager.train(20)   # chunks 8, 8, 4: the random numbers are drawn identically in both
    graphed.train(20)
    assert graphed._graph is not None and eager._graph is None
    for name, group in eager._groups():
        for k, t in group.items():
            torch.testing.assert_close(getattr(graphed, name)[k], t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(graphed.policy_lr, eager.policy_lr)
    a, b = eager.pop_stats(), graphed.pop_stats()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6)
    assert graphed.check_fast_path().ok
    state = graphed.state_dict()  # a checkpoint of the graphed ensemble continues identically in a fresh one
    again = make_ensemble(seeds=(0, 1, 2), chunk=8, device="cuda", accel="graph")
    again.load_state_dict(state)
    graphed.train(8)
    again.train(8)
    assert all(torch.equal(graphed.q[k], again.q[k]) for k in graphed.q)


def fake_pretrain_data(states=20, actions=10, n=3000, seed=0):
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    obs, act = rng.integers(0, states, n), rng.integers(0, actions, n)
    return SimpleNamespace(state_table=(2 * rng.random((states, DS)) - 1).astype(np.float32),
                           action_table=(2 * rng.random((actions, DA)) - 1).astype(np.float32),
                           obs=obs, act=act, target_obs=(obs * 7 + act * 3) % states, target_act=None, meta={})


def test_pretraining_transfer_to_q_and_v(tmp_path, monkeypatch):
    """Q-nets: pre-trained hidden layers and the pre-training's Q head, targets copied; V: Q-net 1's
    hidden layers without the action columns, its own head; the policy and the optimiser fresh."""
    import synthrl.cql.pretrain as pre

    monkeypatch.setattr(pre, "load_pretrain_data", lambda params, store=None: fake_pretrain_data())
    cfg = IQLConfig(dataset="x", pretrain="mdp", pretrain_updates=30, hidden=H).validate()
    q = transferred_q(build_pretrain_artifact_for(cfg, DS, DA, ArtifactStore(tmp_path / "store"), progress=False))
    ens, fresh = make_ensemble(seeds=(0, 1), q_init=q), make_ensemble(seeds=(0, 1))
    for e in range(2):
        for k in nets.Q_NAMES:
            assert torch.equal(ens.q[k][e].detach(), q[k]) and torch.equal(ens.q_target[k][e], q[k])
        assert torch.equal(ens.v["w0"][e].detach(), q["w0"][0, :DS])
        assert torch.equal(ens.v["b0"][e].detach(), q["b0"][0])
        assert torch.equal(ens.v["w1"][e].detach(), q["w1"][0]) and torch.equal(ens.v["b1"][e].detach(), q["b1"][0])
        assert not torch.equal(ens.v["w0"][e], fresh.v["w0"][e]) and not torch.equal(ens.q["w0"][e], fresh.q["w0"][e])
        for k in ("w2", "b2"):  # V's head is the member's own init
            assert torch.equal(ens.v[k][e], fresh.v[k][e])
        for k in ens.policy:
            assert torch.equal(ens.policy[k][e], fresh.policy[k][e])
    for p in ens.parameters():
        st = ens.optimizer.state[p]
        assert st["step"].item() == 0 and not st["exp_avg"].any()


# ---------------------------------------------------------------------------------------------
# the run: a tiny IQL run into a run directory (real HDF5, real MuJoCo evaluation)

def read_rows(run_dir):
    return [{k: v for k, v in r.items() if k != "wall_clock_s"} for r in RunDir(run_dir).read_metrics()]


def test_iql_run_end_to_end_and_resume(tmp_path):
    data = tiny_hopper_file(tmp_path)
    store = ArtifactStore(tmp_path / "store")
    cfg = dict(dataset=str(data), seeds=[0, 1], updates=60, eval_every=20, eval_episodes=1, batch_size=32,
               pretrain="iid", pretrain_updates=20, trajectories=10, length=50)
    params = run_params(IQLConfig(**cfg))
    assert params["algorithm"] == "iql" and params["variant"] == "iql+iid" and params["env"] == "hopper"
    assert params["config"]["expectile"] == 0.7 and "device" not in params["config"]
    full = tmp_path / "full"
    drive(make_runner(IQLConfig(**cfg), store, progress=False), RunDir(full), progress=False)
    run = RunDir(full)
    assert run.is_done() and run.has_checkpoint()
    rows = read_rows(full)
    assert [(int(r["seed"]), int(r["update"])) for r in rows] == [(s, u) for u in (20, 40, 60) for s in (0, 1)]
    assert all(r["env_id"] == "Hopper-v4" and r["variant"] == "iql+iid" for r in rows)
    losses = ("normalized_score", "q_loss", "v_loss", "policy_loss")
    assert all(math.isfinite(float(r[k])) for r in rows for k in losses)

    # stopped after the first evaluation, then resumed by a fresh runner: the same rows
    part = tmp_path / "part"
    drive(_stopped_after(make_runner(IQLConfig(**cfg), store, progress=False), 20), RunDir(part), progress=False)
    (part / "DONE").unlink()
    drive(make_runner(IQLConfig(**cfg), store, progress=False), RunDir(part), resume=True, progress=False)
    assert read_rows(part) == rows


def test_overlapped_evaluation_equals_the_synchronous_one(tmp_path):
    """CQLRunner's evaluation beside training, on IQL's policy snapshot (normalised observations): the
    same rows as evaluating the live ensemble, with IQL's loss columns."""
    data = tiny_hopper_file(tmp_path)
    store = ArtifactStore(tmp_path / "store")
    cfg = dict(dataset=str(data), seeds=[0, 1], updates=40, eval_every=20, eval_episodes=1, batch_size=32)
    runs = {}
    for overlap in ("off", "on"):
        runner = make_runner(IQLConfig(**cfg, eval_overlap=overlap), store, progress=False)
        assert runner.eval_overlap == (overlap == "on")
        assert runner.metric_columns[4:9] == ["q_loss", "v_loss", "policy_loss", "q_data", "v_data"]
        drive(runner, RunDir(tmp_path / overlap), progress=False)
        runs[overlap] = read_rows(tmp_path / overlap)
    assert runs["on"] == runs["off"] and len(runs["on"]) == 4
    assert "cql_loss" not in runs["on"][0] and float(runs["on"][0]["v_loss"]) > 0


def test_finetune_ratio_gives_each_member_its_own_trajectories(tmp_path):
    """finetune_ratio: member e trains on the fraction seeded by its seed, normalised by its own
    statistics and reward scale; extra_updates lengthen the run (and the cosine schedule)."""
    from synthrl.iql import training_arrays
    from synthrl.data import load_dataset

    data = tiny_hopper_file(tmp_path, rows=6000)
    cfg = IQLConfig(dataset=str(data), seeds=[0, 1], finetune_ratio=0.5, updates=30, extra_updates=10,
                    batch_size=32)
    runner = make_runner(cfg, ArtifactStore(tmp_path / "store"), progress=False)
    ens = runner.ensemble
    assert runner.total_updates == ens.config.total_updates == 40
    assert ens.member_offsets == [0, ens.member_sizes[0]] and ens.member_sizes[0] != ens.member_sizes[1]
    assert not torch.equal(ens.obs_mean[0], ens.obs_mean[1])
    own = load_dataset(str(data)).subsample(0.5, 1)  # member 1's rows, scaled by its own episodes' returns
    returns = own.episode_returns()[:-1] if own.has_partial_episode else own.episode_returns()
    scaled = own.qlearning()["rewards"] * np.float32(1000 / (returns.max() - returns.min()))
    assert torch.equal(ens.data["rewards"][ens.member_offsets[1]:], torch.as_tensor(scaled))
    assert torch.equal(torch.as_tensor(training_arrays(own, cfg)["rewards"]), torch.as_tensor(scaled))


def test_reward_scale_leaves_out_a_trailing_partial_episode(tmp_path):
    """rewards x 1000 / (max - min) over whole episodes: an episode cut by the end of the data (here the
    lowest return) would widen the spread (CORL's return_reward_range skips it)."""
    from synthrl.data.dataset import OfflineDataset
    from synthrl.iql import training_arrays

    n = 600
    rewards = np.ones(n, np.float32)
    terminals, timeouts = np.zeros(n, bool), np.zeros(n, bool)
    terminals[[199, 499]] = True         # episodes of 200 and 300 steps (returns 200, 300), then 100 cut off
    rng = np.random.default_rng(0)
    ds = OfflineDataset(name="toy", path=tmp_path / "toy.hdf5", env="hopper",
                        observations=rng.normal(size=(n, 11)).astype(np.float32),
                        actions=rng.uniform(-1, 1, (n, 3)).astype(np.float32), rewards=rewards,
                        terminals=terminals, timeouts=timeouts)
    assert ds.has_partial_episode and list(ds.episode_returns()) == [200, 300, 100]
    arrays = training_arrays(ds, IQLConfig(dataset="-", batch_size=32))
    assert np.allclose(arrays["rewards"], 1000 / (300 - 200))


def _stopped_after(runner, updates):
    runner.total_updates = updates  # drive stops there, as a killed run would after that checkpoint
    return runner


def test_config_errors_name_the_field():
    with pytest.raises(UserError, match=r"iql\.expectile: expected a number in \(0, 1\), got 1.5"):
        IQLConfig(dataset="x", expectile=1.5).validate()
    with pytest.raises(UserError, match=r"iql\.pretrain: expected one of none, mdp"):
        IQLConfig(dataset="x", pretrain="dt").validate()



@pytest.fixture
def iql_registered():
    from synthrl import registry

    registry.reset_cache()   # read the registry afresh (a toy algorithm of another test may have been cached)
    yield registry
    registry.reset_cache()


def test_iql_registers_like_cql(iql_registered):
    """One registry line makes IQL known: its name, config, pre-training kinds and table variants."""
    from synthrl.iql import ALGORITHM

    registry = iql_registered
    assert registry.algorithm("iql") is ALGORITHM and ALGORITHM.config is IQLConfig
    assert set(ALGORITHM.pretrain_kinds) == {"mdp", "iid", "identity", "mapping"}
    assert all(registry.pretrain_kind(ALGORITHM, k) is not None for k in ALGORITHM.pretrain_kinds)
    assert [registry.variant_label("iql", k) for k in ("none", "mdp", "iid")] == ["IQL", "IQL+MDP", "IQL+IID"]


def test_synthrl_run_iql(tmp_path, iql_registered, capsys):
    """The contract's command line: a pre-trained IQL run into a run directory; bad input is one line."""
    from synthrl.cli import main

    data, out = tiny_hopper_file(tmp_path), tmp_path / "run"
    argv = ["run", "iql", "--dataset", str(data), "--out", str(out), "--updates", "40", "--eval-every", "20",
            "--eval-episodes", "1", "--seeds", "0-1", "--batch-size", "32", "--pretrain", "mdp",
            "--pretrain-updates", "20", "--states", "10", "--actions", "10", "--trajectories", "10", "--length", "50",
            "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    params = RunDir(out).read_params()
    assert params["algorithm"] == "iql" and params["variant"] == "iql+mdp"
    assert params["pretrain_params"]["updates"] == 20
    rows = [(int(r["seed"]), int(r["update"])) for r in RunDir(out).read_metrics()]
    assert rows == [(0, 20), (1, 20), (0, 40), (1, 40)]
    assert main(argv + ["--resume"]) == 0 and "already done" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(argv[:-1] + ["--expectile", "1"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--expectile" in err and "expected a number in (0, 1)" in err
