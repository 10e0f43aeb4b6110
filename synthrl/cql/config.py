"""Typed configuration of a CQL run (spec: cql.md): every hyper-parameter in one dataclass.

Each field declares its type, default, bounds and help once (``synthrl.config_fields.setting``):
the ``synthrl run cql`` options, the sweep-file checks and params.json come from here. Defaults are
the paper's (tables 15 and 16). ``validate()`` raises UserError naming the field and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from synthrl.config_fields import config_from_mapping, setting, to_jsonable, validate_config
from synthrl.errors import UserError
from synthrl.utils.io import parse_seeds

PRETRAIN_KINDS = ("none", "mdp", "iid", "identity", "mapping")
ACCEL_MODES = ("auto", "eager", "graph")
DEVICE_HELP = "auto, cpu or cuda[:N]"


def check_device(owner: str, device) -> None:
    if not isinstance(device, str) or not (device in ("auto", "cpu") or device.startswith("cuda")):
        raise UserError(f"{owner}.device: expected {DEVICE_HELP}, got {device!r}")


def check_seeds(owner: str, seeds) -> None:
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{owner}.seeds: seeds repeat in {list(seeds)!r}")


@dataclass
class CQLConfig:
    """One CQL run group: a dataset, a list of seeds (one ensemble member each), an optional pre-training."""

    dataset: str = field(metadata=setting(
        "D4RL dataset name (hopper-medium-v2, found in $D4RL_DATASET_DIR) or a D4RL-format HDF5 file",
        metavar="NAME|FILE"))
    seeds: list[int] = field(default_factory=lambda: [0], metadata=setting(
        "seeds, one ensemble member each: 0-19 or 0,3,7", min=0, parse=parse_seeds))
    # -- forward-dynamics pre-training (spec section 2) ------------------------------------------
    pretrain: str = field(default="none", metadata=setting(
        "synthetic pre-training data", choices=PRETRAIN_KINDS, sweep="pretrain.kind", role="pretrain_kind"))
    pretrain_updates: int = field(default=100_000, metadata=setting(
        "forward-dynamics pre-training updates", min=1, metavar="N", sweep="pretrain.updates",
        role="pretrain_updates"))
    states: int = field(default=100, metadata=setting("synthetic MDP states S", min=2, metavar="S",
                                                      sweep="pretrain.states"))
    actions: int = field(default=100, metadata=setting("synthetic MDP actions A", min=2, metavar="A",
                                                       sweep="pretrain.actions"))
    policy_temperature: float = field(default=1.0, metadata=setting(
        "synthetic MDP policy temperature tau_pi (inf: uniform)", above=0, allow_inf=True, metavar="T",
        sweep="pretrain.policy_temperature"))
    transition_temperature: float = field(default=1.0, metadata=setting(
        "synthetic MDP transition temperature tau_P (inf: uniform)", above=0, allow_inf=True, metavar="T",
        sweep="pretrain.transition_temperature"))
    random_start: bool = field(default=False, metadata=setting(
        "synthetic MDP: a random start state per trajectory", sweep="pretrain.random_start"))
    trajectories: int = field(default=1000, metadata=setting("synthetic trajectories J", min=1, metavar="J"))
    length: int = field(default=1000, metadata=setting("synthetic trajectory length T", min=1, metavar="T"))
    data_seed: int = field(default=0, metadata=setting(
        "seed of the iid/identity/mapping data (the MDP data has no seed)", min=0))
    pretrain_lr: float = field(default=3e-4, metadata=setting("pre-training Adam learning rate", above=0))
    pretrain_batch: int = field(default=256, metadata=setting("pre-training batch size", min=1, metavar="B"))
    pretrain_seed: int = field(default=42, metadata=setting("seed of the pre-training batches", min=0))
    # -- fine-tuning (spec section 3) -----------------------------------------------------------
    updates: int = field(default=1_000_000, metadata=setting("fine-tuning updates", min=1, metavar="N",
                                                             sweep="finetune.updates", role="updates"))
    extra_updates: int = field(default=0, metadata=setting(
        "more fine-tuning updates (table 28: 100000)", min=0, metavar="N", sweep="finetune.extra_updates",
        role="extra_updates"))
    eval_every: int = field(default=5000, metadata=setting("updates between evaluations", min=1, metavar="N",
                                                           sweep="finetune.eval_every", role="eval_every"))
    eval_episodes: int = field(default=10, metadata=setting("evaluation episodes per seed", min=1, metavar="N",
                                                            sweep="finetune.eval_episodes"))
    finetune_ratio: float = field(default=1.0, metadata=setting(
        "fraction of the dataset's trajectories used (seeded per member seed)", above=0, max=1, metavar="F",
        sweep="finetune.finetune_ratio"))
    batch_size: int = field(default=256, metadata=setting("fine-tuning batch size", min=1, metavar="B",
                                                          role="cost_scale"))
    discount: float = field(default=0.99, metadata=setting("discount gamma", above=0, below=1))
    policy_lr: float = field(default=3e-4, metadata=setting("policy Adam learning rate", above=0))
    q_lr: float = field(default=3e-4, metadata=setting("Q-network Adam learning rate", above=0))
    alpha_lr: float = field(default=3e-4, metadata=setting("entropy temperature Adam learning rate", above=0))
    soft_target_tau: float = field(default=5e-3, metadata=setting("Polyak rate of the target Q-networks",
                                                                  above=0, max=1))
    cql_n_actions: int = field(default=3, metadata=setting("sampled actions in the CQL term (table 16)", min=1,
                                                           metavar="N"))
    cql_temperature: float = field(default=1.0, metadata=setting("temperature of the CQL logsumexp", above=0))
    cql_min_q_weight: float = field(default=5.0, metadata=setting("weight of the CQL penalty", min=0))
    importance_sampling: bool = field(default=True, metadata=setting("importance-sampled CQL logsumexp"))
    safe_q_factor: float = field(default=100.0, metadata=setting(
        "q_max = factor * max(dataset reward); 0 disables", min=0))
    action_clip: float = field(default=0.999, metadata=setting("clip of dataset actions", above=0, max=1))
    hidden: int = field(default=256, metadata=setting("hidden units of the MLPs", min=1))
    env_version: str = field(default="v4", metadata=setting("MuJoCo environment version", choices=("v4", "v5")))
    # -- execution (not science: results do not depend on these, except rng_chunk) -------------
    device: str = field(default="auto", metadata=setting(DEVICE_HELP, execution_only=True))
    accel: str = field(default="auto", metadata=setting(
        "auto: CUDA graph on cuda, eager on cpu", choices=ACCEL_MODES, execution_only=True))
    rng_chunk: int = field(default=64, metadata=setting("updates whose random numbers are drawn in one go", min=1))
    matmul_precision: str = field(default="highest", metadata=setting(
        "CUDA fp32 matmul precision (high: TF32; faster, check the learning curves)",
        choices=("highest", "high", "medium")))
    eval_overlap: str = field(default="auto", metadata=setting(
        "evaluate a snapshot of the policies while training goes on (auto: on cuda)", choices=("auto", "on", "off"),
        execution_only=True))

    @property
    def total_updates(self) -> int:
        return self.updates + self.extra_updates

    @property
    def variant(self) -> str:
        return "cql" if self.pretrain == "none" else f"cql+{self.pretrain}"

    def validate(self) -> "CQLConfig":
        validate_config(self, "cql")
        check_seeds("cql", self.seeds)
        check_device("cql", self.device)
        return self

    def to_dict(self) -> dict:
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CQLConfig":
        """Build from a mapping (sweep file, params.json); unknown keys are a UserError naming them."""
        return config_from_mapping(cls, data, "cql")
