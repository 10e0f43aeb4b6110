"""CQL forward-dynamics pre-training data: index arrays plus the task's index-to-vector tables.

``cql_pretrain_data`` builds (or loads from the artifact store) the index arrays of one variant:

| kind       | input (s, a)                 | target                                             |
|------------|------------------------------|----------------------------------------------------|
| ``mdp``    | synthetic MDP transitions    | next-state vector (``target_obs`` = next state)    |
| ``iid``    | IID uniform (seeded)         | an independent uniform next state                  |
| ``identity``| IID uniform (seeded)        | concat(state, action) vectors of the input itself  |
| ``mapping``| IID uniform (seeded)         | vectors of a fixed seeded one-to-one map of the (s, a) pair |

Only the index arrays are cached (keyed by every parameter that changes them); the vector tables
depend on the task's dimensions and take milliseconds, so one cached MDP serves every environment.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synthrl.errors import UserError
from synthrl.store import ArtifactStore
from synthrl.synthetic.mdp import check_mdp_params, index_to_vectors, mdp_dataset, mdp_iid_dataset
from synthrl.utils.io import atomic_write

CQL_KINDS = ("mdp", "iid", "identity", "mapping")
ARTIFACT_KIND = "synthetic-cql"
FORMAT_VERSION = 1
MAPPING_MAX_PAIRS = 10**8


@dataclass
class CQLPretrainData:
    state_table: np.ndarray  # float32 [S, dS]
    action_table: np.ndarray  # float32 [A, dA]
    obs: np.ndarray  # int64 [N] state index of the input
    act: np.ndarray  # int64 [N] action index of the input
    target_obs: np.ndarray  # int64 [N] state index of the target state vector
    target_act: np.ndarray | None  # int64 [N]: target is concat(state, action); None: target is the state vector
    meta: dict = field(default_factory=dict)

    @property
    def target_dim(self) -> int:
        dim = self.state_table.shape[1]
        return dim + self.action_table.shape[1] if self.target_act is not None else dim

    def __len__(self) -> int:
        return len(self.obs)


def cql_index_params(kind: str, *, states=100, actions=100, trajectories=1000, length=1000, policy_temperature=1.0,
                     transition_temperature=1.0, random_start=False, seed=0) -> dict:
    """The parameters that change the index arrays of ``kind`` (the cache key), validated."""
    if kind not in CQL_KINDS:
        raise UserError(f"kind: expected one of {', '.join(CQL_KINDS)}, got {kind!r}")
    check_mdp_params(states, actions, trajectories, length, policy_temperature, transition_temperature)
    params = {"kind": kind, "states": int(states), "actions": int(actions)}
    if kind == "mdp":
        params.update(trajectories=int(trajectories), length=int(length),
                      policy_temperature=_temp(policy_temperature),
                      transition_temperature=_temp(transition_temperature), random_start=bool(random_start))
    else:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise UserError(f"seed: expected an integer >= 0, got {seed!r}")
        params.update(transitions=int(trajectories) * int(length), seed=int(seed))
        if kind == "mapping" and states * actions > MAPPING_MAX_PAIRS:
            raise UserError(f"mapping: states*actions = {states * actions} pairs exceed {MAPPING_MAX_PAIRS}")
    return params


def _temp(value: float):
    return "inf" if math.isinf(value) else float(value)


def build_cql_indices(params: dict) -> dict[str, np.ndarray]:
    """Index arrays for ``params`` (from ``cql_index_params``): obs, act, target_obs [, target_act]."""
    kind, S, A = params["kind"], params["states"], params["actions"]
    if kind == "mdp":
        obs, act, next_obs = mdp_dataset(
            S, A, params["trajectories"], params["length"], float(params["policy_temperature"]),
            float(params["transition_temperature"]), params["random_start"])
        return {"obs": obs, "act": act, "target_obs": next_obs}
    obs, act, next_obs = mdp_iid_dataset(S, A, params["transitions"], params["seed"])
    if kind == "iid":
        return {"obs": obs, "act": act, "target_obs": next_obs}
    if kind == "identity":
        return {"obs": obs, "act": act, "target_obs": obs.copy(), "target_act": act.copy()}
    # mapping: pair index s·A + a -> perm[s·A + a], seeded independently of the inputs
    perm = np.random.default_rng([params["seed"], 1]).permutation(S * A)
    target = perm[obs * A + act]
    return {"obs": obs, "act": act, "target_obs": target // A, "target_act": target % A}


def _finite(obj):
    """Strict JSON: non-finite floats (an ``inf`` temperature) become the strings "inf", "-inf", "nan"."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def save_npz(path: str | Path, arrays: dict[str, np.ndarray], meta: dict | None = None) -> Path:
    """Write an uncompressed ``.npz`` atomically; ``meta`` is stored as a JSON string array ``meta``."""
    payload = dict(arrays)
    if meta is not None:
        payload["meta"] = np.array(json.dumps(_finite(meta), sort_keys=True, allow_nan=False))

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **payload)

    return atomic_write(path, write)


def cql_pretrain_data(kind: str, obs_dim: int, act_dim: int, *, states: int = 100, actions: int = 100,
                      trajectories: int = 1000, length: int = 1000, policy_temperature: float = 1.0,
                      transition_temperature: float = 1.0, random_start: bool = False, seed: int = 0,
                      store: ArtifactStore | None = None) -> CQLPretrainData:
    """CQL pre-training data for a task with ``obs_dim``/``act_dim``; index arrays cached in ``store``.

    ``mdp`` ignores ``seed`` (the reference MDP has none); the other kinds draw
    ``trajectories · length`` IID inputs with ``seed``. A corrupt or partial cached copy fails the
    store's checksums and is rebuilt.
    """
    params = cql_index_params(kind, states=states, actions=actions, trajectories=trajectories, length=length,
                              policy_temperature=policy_temperature, transition_temperature=transition_temperature,
                              random_start=random_start, seed=seed)
    state_table, action_table = index_to_vectors(states, actions, obs_dim, act_dim)
    store = store if store is not None else ArtifactStore()

    def build(directory: Path) -> None:
        save_npz(directory / "indices.npz", build_cql_indices(params))

    directory = store.get_or_build(ARTIFACT_KIND, params, build, format_version=FORMAT_VERSION)
    with np.load(directory / "indices.npz", allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = dict(params, obs_dim=int(obs_dim), act_dim=int(act_dim), artifact=str(directory),
                artifact_key=directory.name, vectors="legacy seed 0: 2*rand(S,dS)-1 then 2*rand(A,dA)-1")
    return CQLPretrainData(state_table, action_table, arrays["obs"], arrays["act"], arrays["target_obs"],
                           arrays.get("target_act"), meta)
