"""Typed configuration of a CQL run (spec: cql.md): every hyper-parameter in one dataclass.

``validate()`` raises UserError naming the field and what was expected, so bad input is caught at
the edge (CLI, sweep file) before any work starts. Defaults are the paper's (tables 15 and 16).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from synthrl.errors import UserError

PRETRAIN_KINDS = ("none", "mdp", "iid", "identity", "mapping")
ACCEL_MODES = ("auto", "eager", "graph")


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"cql.{name}: expected a positive integer, got {value!r}")


def _nonneg_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"cql.{name}: expected an integer >= 0, got {value!r}")


def _positive_float(name: str, value, allow_inf: bool = False) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"cql.{name}: expected a positive number, got {value!r}") from None
    if not v > 0 or (math.isinf(v) and not allow_inf):
        raise UserError(f"cql.{name}: expected a positive number{' or inf' if allow_inf else ''}, got {value!r}")


@dataclass
class CQLConfig:
    """One CQL run group: a dataset, a list of seeds (one ensemble member each), an optional pre-training."""

    dataset: str                                   # D4RL name (hopper-medium-v2) or a D4RL-format HDF5 path
    seeds: list[int] = field(default_factory=lambda: [0])
    # -- forward-dynamics pre-training (spec section 2) ------------------------------------------
    pretrain: str = "none"                         # none | mdp | iid | identity | mapping
    pretrain_updates: int = 100_000
    states: int = 100                              # synthetic MDP state count S
    actions: int = 100                             # synthetic MDP action count A
    policy_temperature: float = 1.0                # tau_pi ('inf': uniform)
    transition_temperature: float = 1.0            # tau_P ('inf': uniform)
    random_start: bool = False
    trajectories: int = 1000                       # J
    length: int = 1000                             # T
    data_seed: int = 0                             # seeds iid/identity/mapping data (the MDP data has no seed)
    pretrain_lr: float = 3e-4
    pretrain_batch: int = 256
    pretrain_seed: int = 42
    # -- fine-tuning (spec section 3) -----------------------------------------------------------
    updates: int = 1_000_000
    extra_updates: int = 0                         # table 28: CQL + 100k more
    eval_every: int = 5000
    eval_episodes: int = 10
    finetune_ratio: float = 1.0                    # fraction of trajectories kept (seeded by the member seed)
    batch_size: int = 256
    discount: float = 0.99
    policy_lr: float = 3e-4
    q_lr: float = 3e-4
    alpha_lr: float = 3e-4
    soft_target_tau: float = 5e-3
    cql_n_actions: int = 3
    cql_temperature: float = 1.0
    cql_min_q_weight: float = 5.0
    importance_sampling: bool = True
    safe_q_factor: float = 100.0                   # q_max = factor * max(dataset reward); 0 disables
    action_clip: float = 0.999
    hidden: int = 256
    env_version: str = "v4"
    # -- execution (not science: results do not depend on these, except rng_chunk) -------------
    device: str = "auto"
    accel: str = "auto"                            # auto (CUDA graph on cuda) | eager | graph
    rng_chunk: int = 64                            # updates whose random numbers are drawn in one go
    matmul_precision: str = "highest"              # CUDA fp32 matmuls: highest (fp32) | high (TF32) | medium
    eval_overlap: str = "auto"                     # evaluate a snapshot while training goes on: auto (on cuda) | on | off

    @property
    def total_updates(self) -> int:
        return self.updates + self.extra_updates

    @property
    def variant(self) -> str:
        return "cql" if self.pretrain == "none" else f"cql+{self.pretrain}"

    def validate(self) -> "CQLConfig":
        if not isinstance(self.dataset, str) or not self.dataset.strip():
            raise UserError(f"cql.dataset: expected a dataset name or HDF5 path, got {self.dataset!r}")
        if not isinstance(self.seeds, (list, tuple)) or not self.seeds:
            raise UserError(f"cql.seeds: expected a non-empty list of seeds, got {self.seeds!r}")
        for s in self.seeds:
            _nonneg_int("seeds", s)
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"cql.seeds: seeds repeat in {list(self.seeds)!r}")
        if self.pretrain not in PRETRAIN_KINDS:
            raise UserError(f"cql.pretrain: expected one of {', '.join(PRETRAIN_KINDS)}, got {self.pretrain!r}")
        for name in ("pretrain_updates", "states", "actions", "trajectories", "length", "pretrain_batch",
                     "updates", "eval_every", "eval_episodes", "batch_size", "cql_n_actions", "hidden", "rng_chunk"):
            _positive_int(name, getattr(self, name))
        for name in ("data_seed", "pretrain_seed", "extra_updates"):
            _nonneg_int(name, getattr(self, name))
        if self.states < 2 or self.actions < 2:
            raise UserError(f"cql.states/actions: expected at least 2 each, got {self.states}/{self.actions}")
        for name in ("policy_temperature", "transition_temperature"):
            _positive_float(name, getattr(self, name), allow_inf=True)
        for name in ("pretrain_lr", "policy_lr", "q_lr", "alpha_lr", "cql_temperature"):
            _positive_float(name, getattr(self, name))
        for name in ("cql_min_q_weight", "safe_q_factor"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not (v >= 0 and math.isfinite(v)):
                raise UserError(f"cql.{name}: expected a finite number >= 0, got {v!r}")
        if not 0 < float(self.finetune_ratio) <= 1:
            raise UserError(f"cql.finetune_ratio: expected a fraction in (0, 1], got {self.finetune_ratio!r}")
        if not 0 < float(self.discount) < 1:
            raise UserError(f"cql.discount: expected a number in (0, 1), got {self.discount!r}")
        if not 0 < float(self.soft_target_tau) <= 1:
            raise UserError(f"cql.soft_target_tau: expected a number in (0, 1], got {self.soft_target_tau!r}")
        if not 0 < float(self.action_clip) <= 1:
            raise UserError(f"cql.action_clip: expected a number in (0, 1], got {self.action_clip!r}")
        if self.env_version not in ("v4", "v5"):
            raise UserError(f"cql.env_version: expected v4 or v5, got {self.env_version!r}")
        if self.matmul_precision not in ("highest", "high", "medium"):
            raise UserError(f"cql.matmul_precision: expected highest, high or medium, got {self.matmul_precision!r}")
        if self.eval_overlap not in ("auto", "on", "off"):
            raise UserError(f"cql.eval_overlap: expected auto, on or off, got {self.eval_overlap!r}")
        if self.accel not in ACCEL_MODES:
            raise UserError(f"cql.accel: expected one of {', '.join(ACCEL_MODES)}, got {self.accel!r}")
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise UserError(f"cql.device: expected auto, cpu or cuda[:N], got {self.device!r}")
        self.seeds = [int(s) for s in self.seeds]
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CQLConfig":
        """Build from a mapping (sweep file, params.json); unknown keys are a UserError naming them."""
        if not isinstance(data, dict):
            raise UserError(f"cql config: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"cql config: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        if "dataset" not in data:
            raise UserError("cql config: missing field 'dataset'")
        return cls(**data).validate()
