"""Forward-dynamics pre-training of the twin Q-networks on synthetic data (spec section 2), and transfer.

Each Q-net gets an extra head Linear(256, target_dim) (xavier gain 0.01, zero bias) on its hidden
layers and learns to predict the next-state vector (or, for identity/mapping, the target (s, a)
vector): loss = MSE(head(h(s, a)), target) summed over the two nets; one Adam (lr 3e-4) over both,
batch 256 drawn uniformly with replacement, seed 42. The Q head is carried along untouched (it gets
no gradient), so the artifact holds the complete Q-nets as they will start fine-tuning.

Transfer (``transferred_q``): hidden layers pre-trained, Q head as initialised at pre-training,
dynamics head dropped; the fine-tuning ensemble copies targets from these and starts fresh optimizers.

The artifact, ``STORE/artifacts/cql-pretrain/<key>/``, holds ``q.pt`` (tensors, loaded with
weights_only=True) and ``pretrain.json`` (the loss curve); its key covers every parameter that
changes it (``pretrain_params``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from synthrl.config_fields import content_key
from synthrl.cql import networks as nets
from synthrl.errors import UserError
from synthrl.rundir import load_state_file
from synthrl.utils.io import atomic_write_json

ARTIFACT_KIND = "cql-pretrain"
FORMAT_VERSION = 1
Q_FILE = "q.pt"
LOG_FILE = "pretrain.json"


def pretrain_params_for(config, obs_dim: int, act_dim: int) -> dict | None:
    """Every parameter that changes the pre-trained weights (None when there is no pre-training)."""
    if config.pretrain == "none":
        return None
    data = {"kind": config.pretrain, "states": config.states, "actions": config.actions,
            "trajectories": config.trajectories, "length": config.length,
            "policy_temperature": float(config.policy_temperature),
            "transition_temperature": float(config.transition_temperature),
            "random_start": bool(config.random_start)}
    if config.pretrain != "mdp":  # the MDP data is a deterministic function of its parameters (no seed)
        data["seed"] = config.data_seed
    return {"data": data, "obs_dim": int(obs_dim), "act_dim": int(act_dim), "hidden": config.hidden,
            "updates": config.pretrain_updates, "lr": float(config.pretrain_lr), "batch": config.pretrain_batch,
            "seed": config.pretrain_seed}


def artifact_key(params: dict | None) -> str | None:
    """THE key of the artifact of ``params`` (pretrain_params_for's): its directory under artifacts/cql-pretrain/,
    params.json's pretrain_key and the sweep planner's artifact id (synthrl.registry.Algorithm.pretrain_key)."""
    return None if params is None else content_key(ARTIFACT_KIND, params, FORMAT_VERSION)


def pretrain_key(config, env) -> str | None:
    """The artifact key of ``config``'s pre-training for a dataset of ``env`` (an EnvSpec: its dims)."""
    return artifact_key(pretrain_params_for(config, env.obs_dim, env.act_dim))


def load_pretrain_data(params: dict, store=None):
    """The synthetic data of ``params`` mapped to the task's dims (synthrl.synthetic.cql_pretrain_data)."""
    from synthrl.synthetic import cql_pretrain_data

    data = dict(params["data"])
    kind = data.pop("kind")
    return cql_pretrain_data(kind, params["obs_dim"], params["act_dim"], store=store, **data)


def pretrain_q_networks(data, obs_dim: int, act_dim: int, *, updates: int, lr: float = 3e-4, batch: int = 256,
                        seed: int = 42, hidden: int = 256, device: str = "cpu", log_every: int = 1000,
                        progress: bool = False, accel: str = "auto") -> tuple[dict, dict, list[dict]]:
    """Train the twin Q-nets' hidden layers (+ a dynamics head) on ``data`` (a CQLPretrainData).

    Returns (q tensors [2, ...] incl. the untouched Q head, dynamics head tensors, loss curve rows).
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(int(seed))
    q_init = nets.init_q_pair(gen, obs_dim, act_dim, hidden)
    target_dim = int(data.state_table.shape[1]) + (int(data.action_table.shape[1]) if data.target_act is not None else 0)
    head_init = nets.init_dynamics_head(gen, hidden, target_dim)
    q = {k: v.unsqueeze(0).to(dev).requires_grad_(True) for k, v in q_init.items()}      # [1, 2, ...]
    head = {k: v.unsqueeze(0).to(dev).requires_grad_(True) for k, v in head_init.items()}
    trained = [q[k] for k in ("w0", "b0", "w1", "b1")] + list(head.values())  # the Q head gets no gradient
    cuda = dev.type == "cuda"
    optimizer = torch.optim.Adam(trained, lr=lr, foreach=cuda, capturable=cuda)

    state_table = torch.as_tensor(np.asarray(data.state_table, np.float32), device=dev)
    action_table = torch.as_tensor(np.asarray(data.action_table, np.float32), device=dev)
    obs_idx = torch.as_tensor(np.asarray(data.obs, np.int64), device=dev)
    act_idx = torch.as_tensor(np.asarray(data.act, np.int64), device=dev)
    tgt_obs_idx = torch.as_tensor(np.asarray(data.target_obs, np.int64), device=dev)
    tgt_act_idx = None if data.target_act is None else torch.as_tensor(np.asarray(data.target_act, np.int64), device=dev)
    n_rows = int(obs_idx.shape[0])
    sampler = torch.Generator(device=dev).manual_seed(int(seed))
    chunk = max(1, min(1000, log_every, updates))  # random rows drawn a chunk at a time
    rows_buf = torch.zeros(chunk, batch, dtype=torch.long, device=dev)
    slot = torch.zeros(1, dtype=torch.long, device=dev)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dev)

    def step():
        rows = rows_buf.index_select(0, slot)[0]
        s = state_table[obs_idx[rows]].unsqueeze(0)
        a = action_table[act_idx[rows]].view(1, 1, batch, -1)
        target = state_table[tgt_obs_idx[rows]]
        if tgt_act_idx is not None:
            target = torch.cat([target, action_table[tgt_act_idx[rows]]], dim=-1)
        pred = nets.dynamics_prediction(q, head, s, a)[0]                  # [2, B, D]
        loss = (pred - target.unsqueeze(0)).square().mean((1, 2)).sum()  # MSE per net, summed over the two
        for p in trained:
            p.grad = None
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            loss_sum.add_(loss.detach())
            slot.add_(1)

    graph = None
    if cuda and accel in ("auto", "graph"):
        # warm-up reads rows 0 (valid) and leaves the sampler untouched: graphed == eager
        graph = _capture(step, trained, optimizer, [loss_sum, slot], warmup=min(3, chunk))
    from tqdm import tqdm

    curve: list[dict] = []
    done, since_log, started = 0, 0, time.perf_counter()
    with tqdm(total=updates, desc="pretrain", unit="upd", disable=not progress, mininterval=1.0) as bar:
        while done < updates:
            k = min(chunk, updates - done)
            rows_buf[:k] = torch.randint(n_rows, (k, batch), generator=sampler, device=dev)
            slot.zero_()
            for _ in range(k):
                graph.replay() if graph is not None else step()
            done += k
            since_log += k
            bar.update(k)
            if since_log >= log_every or done == updates:
                curve.append({"update": done, "loss": float(loss_sum) / since_log,
                              "wall_clock_s": round(time.perf_counter() - started, 3)})
                loss_sum.zero_()
                since_log = 0
                bar.set_postfix(loss=f"{curve[-1]['loss']:.4g}")
    q_out = {k: v.detach()[0].cpu() for k, v in q.items()}
    head_out = {k: v.detach()[0].cpu() for k, v in head.items()}
    return q_out, head_out, curve


def _capture(step, params, optimizer, extra_state, warmup: int = 3):
    """CUDA-graph one step: warm up on a side stream, put the state back, capture."""
    tensors = list(params) + list(extra_state)
    for p in params:
        st = optimizer.state[p]
        st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
        st["exp_avg"] = torch.zeros_like(p)
        st["exp_avg_sq"] = torch.zeros_like(p)
        tensors += [st["step"], st["exp_avg"], st["exp_avg_sq"]]
    saved = [t.detach().clone() for t in tensors]
    try:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(warmup):
                step()
        torch.cuda.current_stream().wait_stream(stream)
    finally:
        with torch.no_grad():
            for t, s in zip(tensors, saved):
                t.copy_(s)
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            step()
        return graph
    except Exception as e:  # fall back to eager rather than lose the run
        import warnings

        warnings.warn(f"CUDA graph capture failed in pre-training ({type(e).__name__}: {e}); training eagerly")
        return None


def build_pretrain_artifact_for(config, obs_dim: int, act_dim: int, store, device: str = "cpu",
                                progress: bool = True) -> Path | None:
    """Build (or find) the artifact of ``config``'s pre-training for these dims; None when pretrain is none."""
    params = pretrain_params_for(config, obs_dim, act_dim)
    if params is None:
        return None

    def build(tmp: Path) -> None:
        data = load_pretrain_data(params, store)
        started = time.perf_counter()
        q, head, curve = pretrain_q_networks(
            data, obs_dim, act_dim, updates=params["updates"], lr=params["lr"], batch=params["batch"],
            seed=params["seed"], hidden=params["hidden"], device=device, progress=progress,
            accel=getattr(config, "accel", "auto"))
        with open(tmp / Q_FILE, "wb") as f:
            torch.save({"q": q, "dynamics_head": head}, f)
        atomic_write_json(tmp / LOG_FILE, {"params": params, "curve": curve, "device": str(device),
                                           "wall_clock_s": round(time.perf_counter() - started, 3),
                                           "data_meta": getattr(data, "meta", {})})

    return store.get_or_build(ARTIFACT_KIND, params, build, format_version=FORMAT_VERSION)


def transferred_q(artifact: str | Path) -> dict[str, torch.Tensor]:
    """The Q-net tensors fine-tuning starts from: hidden layers and Q head of the artifact; no dynamics head."""
    path = Path(artifact) / Q_FILE
    state = load_state_file(path)
    try:
        q = state["q"]
        return {k: q[k].to(torch.float32) for k in nets.Q_NAMES}
    except (KeyError, TypeError, AttributeError):
        raise UserError(f"{path}: not a CQL pre-training artifact (expected Q tensors {', '.join(nets.Q_NAMES)})") from None


def read_pretrain_log(artifact: str | Path) -> dict:
    return json.loads((Path(artifact) / LOG_FILE).read_text())
