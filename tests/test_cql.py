"""CQL: loss pieces, networks, pre-training and transfer, ensemble independence, determinism, resume."""

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import tiny_hopper_file
from synthrl.cql import networks as nets
from synthrl.cql.algorithm import (CQLEnsemble, LossSettings, MemberInit, alpha_loss_fn, conservative_penalty,
                                   safe_td_target)
from synthrl.cql.config import CQLConfig
from synthrl.cql.pretrain import (build_pretrain_artifact_for, pretrain_params_for, pretrain_q_networks,
                                  transferred_q)
from synthrl.cql.runner import CQLRunner
from synthrl.errors import UserError
from synthrl.rundir import RunDir
from synthrl.runner import drive
from synthrl.store import ArtifactStore

DS, DA, H = 5, 2, 32


def tiny_dataset(n=400, seed=0, dS=DS, dA=DA):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, dS)).astype(np.float32)
    act = rng.uniform(-0.999, 0.999, (n, dA)).astype(np.float32)
    # a learnable reward: depends on state and action
    rew = (obs[:, 0] - np.square(act).sum(1)).astype(np.float32)
    return {"observations": obs, "actions": act, "next_observations": np.roll(obs, -1, 0),
            "rewards": rew, "terminals": (rng.random(n) < 0.05).astype(np.float32)}


def make_ensemble(seeds=(0, 1), datasets=None, member_data=None, q_init=None, chunk=4, **kw):
    datasets = datasets or [tiny_dataset()]
    member_data = member_data or [0] * len(seeds)
    members = [MemberInit(seed=s, dataset=d, q_init=q_init) for s, d in zip(seeds, member_data)]
    return CQLEnsemble(datasets, members, hidden=H, batch_size=16, rng_chunk=chunk, **kw)


def member_tensors(ens, e):
    out = {f"policy.{k}": v[e] for k, v in ens.policy.items()}
    out.update({f"q.{k}": v[e] for k, v in ens.q.items()})
    out.update({f"target.{k}": v[e] for k, v in ens.q_target.items()})
    out["log_alpha"] = ens.log_alpha[e]
    for i, p in enumerate(ens.parameters()):
        out[f"adam{i}"] = ens.optimizer.state[p]["exp_avg_sq"][e]
    return {k: v.detach().clone() for k, v in out.items()}


# ---------------------------------------------------------------------------------------------
# loss pieces against hand computations

def test_conservative_penalty_with_importance_sampling_by_hand():
    q_data = torch.tensor([0.5])
    q_rand = torch.tensor([[1.0], [2.0]])       # n = 2 sampled actions, B = 1
    q_next = torch.tensor([[0.3], [-0.2]])
    q_cur = torch.tensor([[0.7], [0.1]])
    logp_next = torch.tensor([[-1.0], [0.5]])
    logp_cur = torch.tensor([[0.2], [-0.4]])
    dA = 3
    xs = [1.0 - dA * math.log(0.5), 2.0 - dA * math.log(0.5), 0.3 + 1.0, -0.2 - 0.5, 0.7 - 0.2, 0.1 + 0.4]
    expected = math.log(sum(math.exp(x) for x in xs)) - 0.5
    got = conservative_penalty(q_data, q_rand, q_next, q_cur, logp_next, logp_cur, dA, 1.0, True)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # temperature T: T * logsumexp(x / T)
    T = 2.0
    expected_t = T * math.log(sum(math.exp(x / T) for x in xs)) - 0.5
    got_t = conservative_penalty(q_data, q_rand, q_next, q_cur, logp_next, logp_cur, dA, T, True)
    assert got_t.item() == pytest.approx(expected_t, rel=1e-6)
    # without importance sampling: raw Q values plus the data action's
    raw = [1.0, 2.0, 0.5, 0.3, -0.2, 0.7, 0.1]
    got_raw = conservative_penalty(q_data, q_rand, q_next, q_cur, logp_next, logp_cur, dA, 1.0, False)
    assert got_raw.item() == pytest.approx(math.log(sum(math.exp(x) for x in raw)) - 0.5, rel=1e-6)


def test_safe_q_target_clamps_only_above_q_max():
    rewards = torch.tensor([[1.0, 2.0, 0.5]])
    dones = torch.tensor([[0.0, 0.0, 1.0]])
    target_q = torch.tensor([[50.0, 500.0, 900.0]])
    q_max = torch.tensor([100.0])
    y = safe_td_target(rewards, dones, target_q, q_max, 0.99)
    assert y.tolist()[0] == pytest.approx([1 + 0.99 * 50, 2 + 0.99 * 100, 0.5])
    y_off = safe_td_target(rewards, dones, target_q, torch.tensor([math.inf]), 0.99)
    assert y_off.tolist()[0] == pytest.approx([1 + 0.99 * 50, 2 + 0.99 * 500, 0.5])


def test_alpha_loss_by_hand_and_gradient():
    log_alpha = torch.tensor([0.3], requires_grad=True)
    log_pi = torch.tensor([[-1.0, 2.0]], requires_grad=True)
    loss = alpha_loss_fn(log_alpha, log_pi, target_entropy=-3.0)
    expected = -0.3 * ((-1.0 - 3.0) + (2.0 - 3.0)) / 2
    assert loss.item() == pytest.approx(expected)
    loss.sum().backward()
    assert log_alpha.grad.item() == pytest.approx(-((-4.0) + (-1.0)) / 2)
    assert log_pi.grad is None or torch.all(log_pi.grad == 0)  # alpha's loss never moves the policy


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    from torch.distributions import Normal, TransformedDistribution
    from torch.distributions.transforms import TanhTransform

    g = torch.Generator().manual_seed(0)
    mean = torch.randn(4, 3, generator=g)
    log_std = torch.randn(4, 3, generator=g) * 0.5 - 1
    noise = torch.randn(4, 3, generator=g)
    action, log_prob = nets.tanh_gaussian_sample(mean, log_std, noise)
    dist = TransformedDistribution(Normal(mean, log_std.exp()), TanhTransform(cache_size=1))
    pre = mean + log_std.exp() * noise
    ref = dist.log_prob(torch.tanh(pre)) if False else (Normal(mean, log_std.exp()).log_prob(pre)
                                                       - TanhTransform().log_abs_det_jacobian(pre, torch.tanh(pre)))
    assert torch.allclose(action, torch.tanh(pre))
    assert torch.allclose(log_prob, ref.sum(-1), atol=1e-5)


def test_network_init_follows_spec():
    gen = torch.Generator().manual_seed(3)
    q = nets.init_q_pair(gen, DS, DA, 256)
    bound = 0.01 * math.sqrt(6 / (256 + 1))
    assert q["w2"].abs().max() <= bound and q["w2"].abs().max() > bound / 2
    assert torch.all(q["b2"] == 0)
    assert q["w0"].abs().max() <= 1 / math.sqrt(DS + DA) and q["b1"].abs().max() <= 1 / 16
    assert not torch.equal(q["w0"][0], q["w0"][1])  # the twins differ
    p = nets.init_policy(gen, DS, DA, 256)
    assert p["log_std_mult"].item() == 1.0 and p["log_std_offset"].item() == -1.0
    mean, log_std = nets.policy_mean_log_std({k: v.unsqueeze(0) for k, v in p.items()}, torch.randn(1, 7, DS) * 1e3)
    assert log_std.min() >= -20 and log_std.max() <= 2


# ---------------------------------------------------------------------------------------------
# pre-training and transfer

def fake_pretrain_data(states=20, actions=10, n=3000, with_action_target=False, seed=0):
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, states, n)
    act = rng.integers(0, actions, n)
    nxt = (obs * 7 + act * 3) % states  # a deterministic "MDP": learnable
    return SimpleNamespace(
        state_table=(2 * rng.random((states, DS)) - 1).astype(np.float32),
        action_table=(2 * rng.random((actions, DA)) - 1).astype(np.float32),
        obs=obs, act=act, target_obs=nxt, target_act=act if with_action_target else None, meta={"fake": True})


def test_pretraining_lowers_dynamics_loss():
    data = fake_pretrain_data(states=8, actions=4)
    q, head, curve = pretrain_q_networks(data, DS, DA, updates=400, lr=3e-3, batch=64, seed=42, hidden=H,
                                         log_every=100)
    assert [r["update"] for r in curve] == [100, 200, 300, 400]
    assert curve[-1]["loss"] < 0.2 * curve[0]["loss"]
    assert head["w"].shape == (2, H, DS)
    # the Q head got no gradient: it is exactly the seed-42 initialisation
    init = nets.init_q_pair(torch.Generator().manual_seed(42), DS, DA, H)
    assert torch.equal(q["w2"], init["w2"]) and torch.equal(q["b2"], init["b2"])
    assert not torch.equal(q["w1"], init["w1"])
    # identity/mapping-style targets: concat(state, action)
    _, head2, _ = pretrain_q_networks(fake_pretrain_data(with_action_target=True), DS, DA, updates=5, batch=8,
                                      hidden=H)
    assert head2["w"].shape == (2, H, DS + DA)


def test_pretrain_artifact_key_and_transfer(tmp_path, monkeypatch):
    import synthrl.cql.pretrain as pre

    builds = []

    def fake_loader(params, store=None):
        builds.append(params)
        return fake_pretrain_data()

    monkeypatch.setattr(pre, "load_pretrain_data", fake_loader)
    store = ArtifactStore(tmp_path / "store")
    cfg = CQLConfig(dataset="x", pretrain="mdp", pretrain_updates=50, hidden=H).validate()
    params = pretrain_params_for(cfg, DS, DA)
    assert params["seed"] == 42 and params["updates"] == 50 and params["data"]["states"] == 100
    assert pretrain_params_for(CQLConfig(dataset="x").validate(), DS, DA) is None
    for changed in (dict(states=10), dict(policy_temperature=0.5), dict(pretrain_updates=51), dict(pretrain_lr=1e-3),
                    dict(pretrain="iid")):
        assert pretrain_params_for(CQLConfig(dataset="x", **{"pretrain": "mdp", "pretrain_updates": 50,
                                                             "hidden": H, **changed}), DS, DA) != params
    assert pretrain_params_for(cfg, DS + 1, DA) != params  # dims are part of the key
    # the key does not depend on the fine-tuning dataset or seeds: shared by the whole environment
    assert pretrain_params_for(CQLConfig(dataset="y", seeds=[5], pretrain="mdp", pretrain_updates=50, hidden=H),
                               DS, DA) == params

    path = build_pretrain_artifact_for(cfg, DS, DA, store, progress=False)
    again = build_pretrain_artifact_for(cfg, DS, DA, store, progress=False)
    assert path == again and len(builds) == 1
    q = transferred_q(path)
    assert set(q) == set(nets.Q_NAMES)  # the dynamics head is dropped
    raw = torch.load(path / "q.pt", weights_only=True)
    assert "dynamics_head" in raw

    ens = make_ensemble(seeds=(0, 1), q_init=q)
    fresh = make_ensemble(seeds=(0, 1))
    for e in range(2):
        for k in nets.Q_NAMES:  # hidden layers pre-trained, Q head as initialised at pre-training (seed 42)
            assert torch.equal(ens.q[k][e].detach(), q[k])
            assert torch.equal(ens.q_target[k][e], q[k])
        assert not torch.equal(ens.q["w1"][e], fresh.q["w1"][e])
        for k in ens.policy:  # the policy is the member's own fresh init
            assert torch.equal(ens.policy[k][e], fresh.policy[k][e])
    for p in ens.parameters():  # fresh optimiser
        st = ens.optimizer.state[p]
        assert st["step"].item() == 0 and not st["exp_avg"].any() and not st["exp_avg_sq"].any()


# ---------------------------------------------------------------------------------------------
# the ensemble: independence, determinism, learning

def test_members_share_nothing():
    """Perturbing member 1's data and parameters leaves member 0's trajectory unchanged bit for bit."""
    base = make_ensemble(seeds=(0, 1, 2), datasets=[tiny_dataset(seed=0), tiny_dataset(seed=1)], member_data=[0, 1, 0])
    other_data = tiny_dataset(seed=1)
    other_data["rewards"] = other_data["rewards"] * 10 + 3
    perturbed = make_ensemble(seeds=(0, 1, 2), datasets=[tiny_dataset(seed=0), other_data], member_data=[0, 1, 0])
    with torch.no_grad():
        perturbed.policy["w1"][1] += 0.5
        perturbed.q["w0"][1] *= 2
    base.train(12)
    perturbed.train(12)
    for e in (0, 2):
        a, b = member_tensors(base, e), member_tensors(perturbed, e)
        for k in a:
            assert torch.equal(a[k], b[k]), f"member {e} {k} changed"
    assert not torch.equal(base.q["w1"][1], perturbed.q["w1"][1])
    # different seeds really are different members
    assert not torch.equal(base.policy["w0"][0], base.policy["w0"][2])


def test_same_seeds_same_run_and_independent_of_device_chunking():
    a, b = make_ensemble(seeds=(3, 4)), make_ensemble(seeds=(3, 4))
    a.train(10)
    b.train(10)
    for k in a.q:
        assert torch.equal(a.q[k], b.q[k])
    assert np.array_equal(a.pop_stats()["q_loss"], b.pop_stats()["q_loss"])
    c = make_ensemble(seeds=(3, 5))
    c.train(10)
    assert torch.equal(a.q["w0"][0], c.q["w0"][0]) and not torch.equal(a.q["w0"][1], c.q["w0"][1])


def test_training_lowers_td_loss():
    ens = make_ensemble(seeds=(0,), chunk=50, safe_q_factor=100.0)
    ens.train(50)
    first = ens.pop_stats()
    ens.train(300)
    last = ens.pop_stats()
    assert np.isfinite(last["q_loss"]).all() and np.isfinite(last["cql_loss"]).all()
    assert last["q_loss"][0] < 0.7 * first["q_loss"][0]
    assert last["alpha"][0] < 1.0  # auto-alpha moved (target entropy -dA)


# ---------------------------------------------------------------------------------------------
# runner: metrics and bit-identical resume through synthrl.runner.drive

def fake_evaluate(env, policy, member_seeds, episodes, eval_index, version="v4"):
    n = len(member_seeds) * episodes
    policy.reset(n)
    obs = np.random.default_rng(eval_index).normal(size=(n, DS)).astype(np.float32)
    returns = policy.act(obs, np.zeros(n, np.float32)).sum(-1).astype(np.float64).reshape(len(member_seeds), episodes)
    return SimpleNamespace(returns=returns, normalized=returns * 10, env_id="Fake-v0")


def make_runner_tiny(total=40, every=10):
    ens = make_ensemble(seeds=(0, 1), chunk=4)
    info = [{"seed": s, "dataset": "tiny", "variant": "cql"} for s in (0, 1)]
    return CQLRunner(ens, info, env="hopper", total_updates=total, eval_every=every, eval_episodes=2,
                     evaluate_fn=fake_evaluate)


def read_rows(run_dir):
    return [{k: v for k, v in r.items() if k != "wall_clock_s"} for r in RunDir(run_dir).read_metrics()]


def test_resume_is_bit_identical(tmp_path):
    full = tmp_path / "full"
    drive(make_runner_tiny(), RunDir(full), progress=False)
    rows = read_rows(full)
    assert len(rows) == 8 and [int(r["update"]) for r in rows[::2]] == [10, 20, 30, 40]
    assert {"seed", "update", "normalized_score", "return", "q_loss", "cql_loss", "policy_loss", "alpha",
            "wall_clock_s"} <= set(RunDir(full).read_metrics()[0])

    # interrupted after the second evaluation, then resumed from its checkpoint by a fresh process-like runner
    part = tmp_path / "part"
    interrupted = make_runner_tiny(total=20)
    drive(interrupted, RunDir(part), progress=False)
    (part / "DONE").unlink()
    resumed = make_runner_tiny()
    drive(resumed, RunDir(part), resume=True, progress=False)
    assert resumed.updates_done == 40
    assert read_rows(part) == rows


def test_overlapped_evaluation_writes_what_synchronous_evaluation_writes(tmp_path):
    sync = tmp_path / "sync"
    drive(make_runner_tiny(), RunDir(sync), progress=False)

    seen_live_weights = []

    def slow_evaluate(env, policy, member_seeds, episodes, eval_index, version="v4"):
        import time

        time.sleep(0.05)  # training runs on meanwhile: the snapshot, not the live weights, is evaluated
        seen_live_weights.append(policy.ensemble is runner.ensemble)
        return fake_evaluate(env, policy, member_seeds, episodes, eval_index, version)

    runner = make_runner_tiny()
    runner.eval_overlap, runner.evaluate_fn = True, slow_evaluate
    over = tmp_path / "overlap"
    drive(runner, RunDir(over), progress=False)
    assert seen_live_weights == [False] * 4
    assert read_rows(over) == read_rows(sync)
    a, b = RunDir(sync).load_checkpoint()["runner"], RunDir(over).load_checkpoint()["runner"]
    assert a["evals_done"] == b["evals_done"] == 4
    for name, value in a["ensemble"]["policy"].items():
        assert torch.equal(value, b["ensemble"]["policy"][name]), name

    # interrupted mid-run: the checkpoint written is the one taken when its evaluation started
    part = tmp_path / "part"
    interrupted = make_runner_tiny(total=20)
    interrupted.eval_overlap = True
    drive(interrupted, RunDir(part), progress=False)
    assert RunDir(part).load_checkpoint()["runner"]["ensemble"]["updates_done"] == 20
    (part / "DONE").unlink()
    resumed = make_runner_tiny()
    resumed.eval_overlap = True
    drive(resumed, RunDir(part), resume=True, progress=False)
    assert read_rows(part) == read_rows(sync)


def test_a_training_failure_still_records_the_running_evaluation(tmp_path):
    runner = make_runner_tiny()
    runner.eval_overlap = True
    train = runner.train

    def failing_train(n):
        if runner.updates_done >= 10:
            raise RuntimeError("device lost")
        train(n)

    runner.train = failing_train
    with pytest.raises(RuntimeError, match="device lost"):
        drive(runner, RunDir(tmp_path / "run"), progress=False)
    rows = read_rows(tmp_path / "run")
    assert [int(r["update"]) for r in rows] == [10, 10]
    assert RunDir(tmp_path / "run").load_checkpoint()["runner"]["evals_done"] == 1


def test_progress_pieces_keep_the_update_stream(monkeypatch):
    import synthrl.runner as runner_module

    monkeypatch.setattr(runner_module, "PROGRESS_UPDATES", 5)
    runner = make_runner_tiny()
    assert runner.split_granularity == 4
    assert runner_module.progress_pieces(runner, 20) == [8, 8, 4]
    assert runner_module.progress_pieces(runner, 3) == [3]
    whole = make_ensemble(seeds=(0, 1), chunk=4)
    whole.train(20)
    for piece in runner_module.progress_pieces(runner, 20):
        runner.train(piece)
    for name, value in whole.state_dict()["policy"].items():
        assert torch.equal(value, runner.ensemble.state_dict()["policy"][name]), name
    # a cut that is not a multiple of the granularity draws different random numbers: the check can fail
    split = make_ensemble(seeds=(0, 1), chunk=4)
    split.train(3)
    split.train(17)
    assert not torch.equal(whole.state_dict()["policy"]["w0"], split.state_dict()["policy"]["w0"])


def test_config_validation_errors_name_the_field():
    with pytest.raises(UserError, match="cql.pretrain"):
        CQLConfig(dataset="x", pretrain="wiki").validate()
    with pytest.raises(UserError, match="cql.finetune_ratio"):
        CQLConfig(dataset="x", finetune_ratio=0).validate()
    with pytest.raises(UserError, match="cql.seeds"):
        CQLConfig(dataset="x", seeds=[1, 1]).validate()
    with pytest.raises(UserError, match="unknown field"):
        CQLConfig.from_dict({"dataset": "x", "lr": 1})
    assert CQLConfig(dataset="x", extra_updates=100_000).total_updates == 1_100_000


# ---------------------------------------------------------------------------------------------
# end to end: `synthrl run cql` on a tiny slice of real hopper data, with MDP pre-training

def test_run_cql_end_to_end_with_pretraining(tmp_path, capsys):
    from synthrl.cli import main

    data = tiny_hopper_file(tmp_path)
    out = tmp_path / "run"
    argv = ["run", "cql", "--dataset", str(data), "--out", str(out), "--updates", "60", "--eval-every", "30",
            "--eval-episodes", "2", "--seeds", "0,1", "--batch-size", "32", "--pretrain", "mdp",
            "--pretrain-updates", "20", "--trajectories", "10", "--length", "50", "--no-progress"]
    assert main(argv) == 0
    run = RunDir(out)
    assert run.is_done() and run.has_checkpoint()
    params = run.read_params()
    assert params["algorithm"] == "cql" and params["variant"] == "cql+mdp" and params["env"] == "hopper"
    assert params["pretrain_params"]["updates"] == 20 and len(params["dataset_sha256"]) == 64
    rows = run.read_metrics()
    assert [(int(r["seed"]), int(r["update"])) for r in rows] == [(0, 30), (1, 30), (0, 60), (1, 60)]
    assert all(r["env_id"] == "Hopper-v4" and math.isfinite(float(r["normalized_score"])) for r in rows)
    for seed in ("0", "1"):  # the TD loss falls as Q fits the rewards
        first, last = [float(r["q_loss"]) for r in rows if r["seed"] == seed]
        assert last < 0.5 * first
    # the pre-training artifact is in the store, keyed by its parameters
    artifacts = list((tmp_path / "store" / "artifacts" / "cql-pretrain").iterdir())
    assert len(artifacts) == 1 and (artifacts[0] / "COMPLETE").is_file()
    # a second run with other parameters refuses the same --out; --resume of a finished run is a no-op
    assert main(argv[:-1] + ["--updates", "90", "--no-progress"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0


def test_run_cql_bad_input_is_one_line_exit_2(tmp_path, capsys):
    from synthrl.cli import main

    assert main(["run", "cql", "--dataset", str(tmp_path / "nope.hdf5"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.hdf5" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        main(["run", "cql", "--dataset", "x", "--out", "o", "--finetune-ratio", "2"])
    assert e.value.code == 2


# ---------------------------------------------------------------------------------------------
# GPU: the CUDA-graphed update equals the eager one

@pytest.mark.gpu
def test_cuda_graph_update_equals_eager():
    eager = make_ensemble(seeds=(0, 1, 2), chunk=8, device="cuda", accel="eager")
    graphed = make_ensemble(seeds=(0, 1, 2), chunk=8, device="cuda", accel="graph")
    eager.train(20)   # chunks 8, 8, 4: the random numbers are drawn identically in both
    graphed.train(20)
    assert graphed._graph is not None and eager._graph is None
    for k in eager.q:
        torch.testing.assert_close(graphed.q[k], eager.q[k], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(graphed.q_target[k], eager.q_target[k], rtol=1e-5, atol=1e-6)
    for k in eager.policy:
        torch.testing.assert_close(graphed.policy[k], eager.policy[k], rtol=1e-5, atol=1e-6)
    a, b = eager.pop_stats(), graphed.pop_stats()
    for name in a:
        np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6)
    # a checkpoint taken from the graphed ensemble continues identically in a fresh one
    state = graphed.state_dict()
    again = make_ensemble(seeds=(0, 1, 2), chunk=8, device="cuda", accel="graph")
    again.load_state_dict(state)
    graphed.train(8)
    again.train(8)
    for k in graphed.q:
        assert torch.equal(graphed.q[k], again.q[k])


@pytest.mark.gpu
def test_cuda_overlapped_evaluation_sees_the_snapshot(tmp_path):
    def runner_on_cuda(overlap):
        ens = make_ensemble(seeds=(0, 1), chunk=4, device="cuda", accel="graph")
        info = [{"seed": s, "dataset": "tiny", "variant": "cql"} for s in (0, 1)]
        return CQLRunner(ens, info, env="hopper", total_updates=40, eval_every=10, eval_episodes=2,
                         evaluate_fn=fake_evaluate, eval_overlap=overlap)

    drive(runner_on_cuda(False), RunDir(tmp_path / "sync"), progress=False)
    drive(runner_on_cuda(True), RunDir(tmp_path / "overlap"), progress=False)
    for a, b in zip(read_rows(tmp_path / "sync"), read_rows(tmp_path / "overlap")):
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], float):
                assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), k
            else:
                assert a[k] == b[k], k


def test_group_runner_mixes_datasets_pretraining_and_ratios(tmp_path):
    from synthrl.cql.pretrain import transferred_q
    from synthrl.cql.runner import make_group_runner

    full = tiny_hopper_file(tmp_path, rows=3000)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = tiny_hopper_file(other_dir, rows=2000)
    common = dict(updates=8, eval_every=4, eval_episodes=2, batch_size=16, hidden=H, rng_chunk=4, device="cpu")
    plain = CQLConfig(dataset=str(full), seeds=[0, 1], **common)
    pre = CQLConfig(dataset=str(other), seeds=[0], pretrain="mdp", pretrain_updates=5, trajectories=5, length=20,
                    **common)
    ratio = CQLConfig(dataset=str(full), seeds=[0, 1], finetune_ratio=0.5, **common)
    store = ArtifactStore(tmp_path / "store")
    runner = make_group_runner([plain, pre, ratio], store, evaluate_fn=fake_evaluate_hopper, progress=False)
    ens = runner.ensemble
    assert runner.seeds == [0, 1, 0, 0, 1] and ens.num_members == 5
    # plain members share one copy of the data; each ratio member has its own seeded half
    assert ens.member_sizes[0] == ens.member_sizes[1]
    assert ens.member_offsets[0] == ens.member_offsets[1]
    assert ens.member_sizes[3] < ens.member_sizes[0] and ens.member_sizes[4] < ens.member_sizes[0]
    assert ens.member_offsets[3] != ens.member_offsets[4]
    # only the pre-trained member starts from the artifact
    q = transferred_q(build_pretrain_artifact_for(pre, 11, 3, store, progress=False))
    assert torch.equal(ens.q["w1"][2].detach(), q["w1"]) and not torch.equal(ens.q["w1"][0].detach(), q["w1"])
    runner.train(4)
    rows = runner.evaluate()
    assert [(r["seed"], r["variant"], r["dataset"]) for r in rows] == [
        (0, "cql", "hopper-tiny"), (1, "cql", "hopper-tiny"), (0, "cql+mdp", "hopper-tiny"),
        (0, "cql", "hopper-tiny"), (1, "cql", "hopper-tiny")]
    assert all(math.isfinite(r["q_loss"]) and r["update"] == 4 for r in rows)
    with pytest.raises(UserError, match="differ in eval_every"):
        make_group_runner([plain, CQLConfig(dataset=str(full), **{**common, "eval_every": 2})], store)


def fake_evaluate_hopper(env, policy, member_seeds, episodes, eval_index, version="v4"):
    n = len(member_seeds) * episodes
    policy.reset(n)
    obs = np.random.default_rng(eval_index).normal(size=(n, 11)).astype(np.float32)
    returns = policy.act(obs, np.zeros(n, np.float32)).sum(-1).astype(np.float64).reshape(len(member_seeds), episodes)
    return SimpleNamespace(returns=returns, normalized=returns, env_id="Hopper-v4")


@pytest.mark.gpu
def test_cuda_graph_pretraining_equals_eager():
    data = fake_pretrain_data(states=8, actions=4)
    runs = [pretrain_q_networks(data, DS, DA, updates=30, batch=16, hidden=H, log_every=10, device="cuda", accel=a)
            for a in ("eager", "graph")]
    (q_e, head_e, curve_e), (q_g, head_g, curve_g) = runs
    for k in q_e:
        torch.testing.assert_close(q_g[k], q_e[k], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(head_g["w"], head_e["w"], rtol=1e-5, atol=1e-6)
    assert [r["loss"] for r in curve_g] == pytest.approx([r["loss"] for r in curve_e], rel=1e-5)


def test_cli_options_map_onto_the_config():
    from synthrl.cli import build_parser
    from synthrl.cql.cli import config_from_args

    args = build_parser().parse_args(
        ["run", "cql", "--dataset", "hopper-medium-v2", "--out", "o", "--seeds", "0-2", "--extra-updates", "100000",
         "--pretrain", "mdp", "--states", "1000", "--actions", "10", "--policy-temperature", "inf",
         "--transition-temperature", "0.5", "--random-start", "--finetune-ratio", "0.25", "--pretrain-updates", "1e4"])
    cfg = config_from_args(args)
    assert cfg.seeds == [0, 1, 2] and cfg.total_updates == 1_100_000 and cfg.pretrain_updates == 10_000
    assert (cfg.states, cfg.actions, cfg.policy_temperature, cfg.transition_temperature, cfg.random_start) == (
        1000, 10, math.inf, 0.5, True)
    assert cfg.finetune_ratio == 0.25 and cfg.variant == "cql+mdp"
    assert (cfg.eval_every, cfg.eval_episodes, cfg.cql_n_actions, cfg.batch_size) == (5000, 10, 3, 256)
