"""Typed configurations for Decision Transformer pre-training and fine-tuning (spec: dt.md).

Each field declares its type, default, bounds and help once (``synthrl.config_fields.setting``):
the ``synthrl run dt`` / ``dt-pretrain`` options, the sweep-file checks, params.json and the
pre-training artifact's key come from here. ``validate()`` raises UserError naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from synthrl.config_fields import config_from_mapping, setting, to_jsonable, validate_config
from synthrl.cql.config import DEVICE_HELP, check_device, check_seeds
from synthrl.errors import UserError
from synthrl.utils.io import parse_seeds

PRETRAIN_DATA = ("mc", "iid", "identity", "mapping", "text")
DEFAULT_CHECKPOINTS = (1, 1000, 8000, 10000, 20000, 40000, 60000, 80000)
PRECISIONS = ("auto", "fp32", "bf16")
SWITCH = ("auto", "on", "off")

# Evaluation targets per environment (spec section 5); the first of each is the reported one.
TARGET_RETURNS: dict[str, tuple[float, ...]] = {
    "hopper": (3600.0, 1800.0),
    "halfcheetah": (6000.0, 12000.0),
    "walker2d": (5000.0, 2500.0),
    "ant": (5000.0, 2000.0),
}


@dataclass(frozen=True)
class BackboneConfig:
    """GPT-2-style decoder (spec section 1)."""

    n_layer: int = field(default=3, metadata=setting("transformer blocks", min=1))
    n_head: int = field(default=1, metadata=setting("attention heads", min=1))
    n_embd: int = field(default=128, metadata=setting("embedding width", min=1))
    n_inner: int = field(default=512, metadata=setting("MLP width", min=1))
    n_positions: int = field(default=1024, metadata=setting("position table size", min=1))
    layer_norm_eps: float = field(default=1e-5, metadata=setting("layer-norm epsilon", above=0))
    activation: str = field(default="relu", metadata=setting(
        "relu (spec) or gelu_new (HF GPT-2's default, for imported checkpoints)",
        choices=("relu", "gelu_new", "gelu")))

    def validate(self) -> "BackboneConfig":
        validate_config(self, "backbone")
        if self.n_embd % self.n_head:
            raise UserError(f"backbone: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


@dataclass
class DTPretrainConfig:
    """Synthetic (or text) next-token pre-training of the backbone (spec section 2).

    One run of ``steps`` updates saves the backbone at every step in ``checkpoints``; fine-tuning picks
    one of them (default 20k). The lr schedule is linear warmup from 0 over ``warmup_steps`` then linear
    decay to 0 at ``steps``.
    """

    data: str = field(default="mc", metadata=setting("pre-training tokens", choices=PRETRAIN_DATA,
                                                     sweep="pretrain.data", role="pretrain_kind"))
    states: int = field(default=100, metadata=setting(
        "M: MC/IID vocabulary (at least 2)", min=1, sweep="pretrain.states", when={"data": ("mc", "iid")}))
    order: int = field(default=1, metadata=setting(
        "n: Markov-chain order (MC steps)", min=1, sweep="pretrain.order", when={"data": ("mc",)}))
    temperature: float = field(default=1.0, metadata=setting(
        "tau: Markov-chain temperature (inf: uniform)", above=0, allow_inf=True, metavar="T",
        sweep="pretrain.temperature", when={"data": ("mc",)}))
    data_seed: int = field(default=666, metadata=setting(
        "sigma: seeds the MC transition rows and the token stream", min=0, sweep="pretrain.data_seed"))
    steps: int = field(default=80000, metadata=setting("pre-training steps", min=1, sweep="pretrain.steps",
                                       role="pretrain_updates"))
    checkpoints: tuple[int, ...] = field(default=DEFAULT_CHECKPOINTS, metadata=setting(
        "steps to save (the default set is cut to --steps, plus --steps)", min=1, metavar="STEPS",
        sweep="pretrain.checkpoints", role="checkpoints"))
    corpus: str | None = field(default=None, metadata=setting(
        "--data text: a UTF-8 text file you supply (byte-level tokens)", metavar="FILE",
        sweep="pretrain.corpus", when={"data": ("text",)}, role="corpus"))
    device: str = field(default="auto", metadata=setting(DEVICE_HELP, execution_only=True))
    # training hyper-parameters (spec section 2)
    seq_len: int = field(default=1024, metadata=setting("tokens per sequence", min=1, role="cost_scale"))
    batch_size: int = field(default=64, metadata=setting("sequences per step", min=1, role="cost_scale"))
    lr: float = field(default=3e-4, metadata=setting("AdamW peak learning rate", above=0))
    weight_decay: float = field(default=0.01, metadata=setting("AdamW weight decay", min=0))
    betas: tuple[float, float] = field(default=(0.9, 0.999), metadata=setting("AdamW betas", min=0, below=1))
    eps: float = field(default=1e-6, metadata=setting("AdamW epsilon", above=0))
    warmup_steps: int = field(default=10000, metadata=setting("linear warm-up steps", min=0))
    dropout: float = field(default=0.1, metadata=setting("dropout (residual, attention, embedding)",
                                                         min=0, below=1))
    init_seed: int = field(default=0, metadata=setting(
        "model init and dropout stream (the token stream uses data_seed)", min=0))
    loss_chunk: int = field(default=4096, metadata=setting(
        "logit rows materialised at a time (bounded memory for large M)", min=1, execution_only=True))
    progress_every: int = field(default=1000, metadata=setting(
        "steps between resumable progress saves", min=1, execution_only=True))
    log_every: int = field(default=100, metadata=setting("steps between loss-curve rows", min=1,
                                                         execution_only=True))
    precision: str = field(default="auto", metadata=setting(
        "auto (bf16 autocast on cuda, fp32 on cpu) | fp32 | bf16", choices=PRECISIONS))
    compile: str = field(default="auto", metadata=setting(
        "torch.compile (auto: on cuda)", choices=SWITCH, execution_only=True))
    backbone: BackboneConfig = field(default_factory=BackboneConfig, metadata=setting(
        "the decoder's shape", cli=False))

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):  # from JSON (a sweep trial, params.json)
            self.backbone = config_from_mapping(BackboneConfig, self.backbone, "dt-pretrain.backbone")
        if isinstance(self.checkpoints, list):
            self.checkpoints = tuple(self.checkpoints)
        if isinstance(self.betas, list):
            self.betas = tuple(self.betas)
        if tuple(self.checkpoints) == DEFAULT_CHECKPOINTS and self.steps != DEFAULT_CHECKPOINTS[-1]:
            # the spec's set, cut to a shorter (or extended to a longer) run, which always saves its last step
            steps = self.steps if isinstance(self.steps, int) and self.steps > 0 else DEFAULT_CHECKPOINTS[-1]
            self.checkpoints = tuple(sorted({c for c in DEFAULT_CHECKPOINTS if c <= steps} | {steps}))

    def validate(self) -> "DTPretrainConfig":
        o = "dt-pretrain"
        validate_config(self, o)
        if self.data in ("mc", "iid") and self.states < 2:
            raise UserError(f"{o}.states: expected at least 2 states, got {self.states}")
        check_device(o, self.device)
        if self.data == "text":
            if not self.corpus:
                raise UserError(f"{o}: --data text needs --corpus FILE (a UTF-8 text file you supply)")
            if not Path(self.corpus).expanduser().is_file():
                raise UserError(f"--corpus {self.corpus}: no such file")
        elif self.corpus:
            raise UserError(f"{o}.corpus: only used with --data text (got --data {self.data})")
        for c in self.checkpoints:
            if c > self.steps:
                raise UserError(f"{o}.checkpoints: step {c} is beyond --steps {self.steps}")
        if self.seq_len > self.backbone.n_positions:
            raise UserError(f"{o}.seq_len {self.seq_len} exceeds the position table ({self.backbone.n_positions})")
        self.checkpoints = tuple(sorted(set(self.checkpoints)))
        self.backbone.validate()
        return self

    @classmethod
    def with_defaults_for(cls, steps: int, **kw) -> "DTPretrainConfig":
        """A config whose default checkpoints are the spec's set cut to ``steps`` (plus ``steps`` itself)."""
        cps = tuple(sorted({c for c in DEFAULT_CHECKPOINTS if c <= steps} | {steps}))
        return cls(steps=steps, checkpoints=kw.pop("checkpoints", cps), **kw)

    def to_dict(self) -> dict:
        return to_jsonable(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DTPretrainConfig":
        return config_from_mapping(cls, d, "dt-pretrain")


def _pretrained_path(text: str):
    return None if text.strip().lower() == "none" else text


@dataclass
class DTConfig:
    """Fine-tuning a (pre-trained or fresh) Decision Transformer on one offline dataset (spec 3-5).

    ``seeds`` are trained together as one batched ensemble. The backbone comes from ``pretrain`` (an
    artifact, built if missing, at ``pretrain_step``), or from ``pretrained_path`` (a dt-pretrain run
    directory, an artifact directory or a GPT-2-format checkpoint file), or neither (plain DT).
    """

    dataset: str = field(default="", metadata=setting(
        "D4RL name (hopper-medium-v2) or a D4RL-format HDF5 file", metavar="NAME|FILE", required=True))
    seeds: list[int] = field(default_factory=lambda: [0], metadata=setting(
        "seed ensemble trained together: 0-19, 0,3,7 or 5", min=0, parse=parse_seeds))
    pretrain: DTPretrainConfig | None = field(default=None, metadata=setting(
        "pre-training of the backbone (an artifact, built if missing)", cli=False, role="pretrain"))
    pretrain_step: int = field(default=20000, metadata=setting(
        "which pre-training checkpoint to fine-tune from", min=1, sweep="finetune.pretrain_step",
        role="pretrain_step"))
    pretrained_path: str | None = field(default=None, metadata=setting(
        "a dt-pretrain run directory, a pre-training artifact directory, a GPT-2-format checkpoint file, "
        "or none (plain DT)", flag="--pretrained", metavar="PATH", parse=_pretrained_path))
    updates: int = field(default=100000, metadata=setting("fine-tuning updates", min=1, metavar="N",
                                                          sweep="finetune.updates", role="updates"))
    extra_updates: int = field(default=0, metadata=setting(
        "more fine-tuning updates (table 26: 20000 / 80000)", min=0, metavar="N", sweep="finetune.extra_updates",
        role="extra_updates"))
    eval_every: int = field(default=5000, metadata=setting("updates between evaluations", min=1, metavar="N",
                                                           sweep="finetune.eval_every", role="eval_every"))
    eval_episodes: int = field(default=10, metadata=setting("evaluation episodes per seed and target", min=1,
                                                            metavar="N", sweep="finetune.eval_episodes"))
    finetune_ratio: float = field(default=1.0, metadata=setting(
        "fraction of the dataset's trajectories used (figure 11)", above=0, max=1, metavar="F",
        sweep="finetune.finetune_ratio"))
    finetune_ratio_seed: int = field(default=0, metadata=setting(
        "which trajectories are kept (shared by the ensemble)", min=0))
    device: str = field(default="auto", metadata=setting(DEVICE_HELP, execution_only=True))
    env_version: str = field(default="v4", metadata=setting("MuJoCo environment version", choices=("v4", "v5")))
    targets: tuple[float, ...] | None = field(default=None, metadata=setting(
        "target returns, the first one reported (none: the spec's for the environment)", metavar="R,R"))
    eval_workers: int | None = field(default=None, metadata=setting(
        "evaluation worker processes (none: the free-core rule)", min=0, execution_only=True))
    # fine-tuning hyper-parameters (spec section 4)
    context: int = field(default=20, metadata=setting("K: context length in timesteps", min=1))
    batch_size: int = field(default=64, metadata=setting("fine-tuning batch size", min=1, metavar="B",
                                                         role="cost_scale"))
    lr: float = field(default=1e-4, metadata=setting("AdamW learning rate", above=0))
    weight_decay: float = field(default=1e-4, metadata=setting("AdamW weight decay", min=0))
    eps: float | None = field(default=None, metadata=setting(
        "AdamW epsilon (none: 1e-6 with a pre-trained backbone, 1e-8 without)", above=0))
    warmup_steps: int = field(default=5000, metadata=setting("linear warm-up updates", min=0))
    grad_clip: float = field(default=0.25, metadata=setting("gradient-norm clip", above=0))
    resid_dropout: float = field(default=0.2, metadata=setting("residual dropout", min=0, below=1))
    attn_dropout: float = field(default=0.1, metadata=setting("attention dropout", min=0, below=1))
    embd_dropout: float = field(default=0.1, metadata=setting(
        "embedding dropout (HF GPT-2 default, the reference kept it)", min=0, below=1))
    max_ep_len: int = field(default=1000, metadata=setting(
        "timestep table of the plain DT; timesteps clipped to max_ep_len - 1", min=1))
    rtg_scale: float = field(default=1000.0, metadata=setting("return-to-go scale", above=0))
    action_pad: float = field(default=-10.0, metadata=setting("padding value of actions"))
    precision: str = field(default="auto", metadata=setting("auto (bf16 autocast on cuda) | fp32 | bf16",
                                                            choices=PRECISIONS))
    compile: str = field(default="auto", metadata=setting("torch.compile (auto: on cuda)", choices=SWITCH,
                                                          execution_only=True))
    backbone: BackboneConfig = field(default_factory=BackboneConfig, metadata=setting(
        "the decoder's shape (a pre-trained backbone brings its own)", cli=False))

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = config_from_mapping(BackboneConfig, self.backbone, "dt.backbone")
        if isinstance(self.pretrain, dict):
            self.pretrain = DTPretrainConfig.from_dict(self.pretrain)
        self.seeds = [int(s) for s in self.seeds] if isinstance(self.seeds, (list, tuple)) else self.seeds
        if isinstance(self.targets, list):
            self.targets = tuple(self.targets)

    @property
    def total_updates(self) -> int:
        return self.updates + self.extra_updates

    @property
    def is_pretrained(self) -> bool:
        return self.pretrain is not None or self.pretrained_path is not None

    @property
    def adam_eps(self) -> float:
        if self.eps is not None:
            return float(self.eps)
        return 1e-6 if self.is_pretrained else 1e-8

    def validate(self) -> "DTConfig":
        o = "dt"
        if not self.dataset:
            raise UserError(f"{o}.dataset: a dataset name or HDF5 file is required (--dataset)")
        validate_config(self, o)
        check_seeds(o, self.seeds)
        check_device(o, self.device)
        if self.pretrain is not None and self.pretrained_path is not None:
            raise UserError(f"{o}: give either a pre-training config or --pretrained PATH, not both")
        if self.pretrain is not None and self.pretrain_step not in self.pretrain.checkpoints:
            raise UserError(f"{o}.pretrain_step: {self.pretrain_step} is not one of the pre-training checkpoints "
                            f"{list(self.pretrain.checkpoints)}")
        if self.pretrained_path is not None and not Path(self.pretrained_path).expanduser().exists():
            raise UserError(f"--pretrained {self.pretrained_path}: no such file or directory")
        if 3 * self.context > self.backbone.n_positions:
            raise UserError(f"{o}.context: 3 x {self.context} tokens exceed the position table")
        self.backbone.validate()
        return self

    def targets_for(self, env: str) -> tuple[float, ...]:
        if self.targets is not None:
            return tuple(self.targets)
        if env not in TARGET_RETURNS:
            raise UserError(f"dt: no default target returns for environment {env!r}; give targets")
        return TARGET_RETURNS[env]

    def to_dict(self) -> dict:
        return to_jsonable(self)

    def replace(self, **kw) -> "DTConfig":
        return replace(self, **kw)
