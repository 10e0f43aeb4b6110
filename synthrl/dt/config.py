"""Typed configurations for Decision Transformer pre-training and fine-tuning (spec: dt.md).

Every hyper-parameter lives in one dataclass; ``validate()`` raises UserError naming the field and
what was expected, so bad input is caught at the edge (CLI, sweep file) before any work starts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from synthrl.errors import UserError

PRETRAIN_DATA = ("mc", "iid", "identity", "mapping", "text")
DEFAULT_CHECKPOINTS = (1, 1000, 8000, 10000, 20000, 40000, 60000, 80000)

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

    n_layer: int = 3
    n_head: int = 1
    n_embd: int = 128
    n_inner: int = 512
    n_positions: int = 1024
    layer_norm_eps: float = 1e-5
    activation: str = "relu"  # "relu" (spec) or "gelu_new" (HF GPT-2's default, for imported checkpoints)

    def validate(self) -> "BackboneConfig":
        for name in ("n_layer", "n_head", "n_embd", "n_inner", "n_positions"):
            if int(getattr(self, name)) < 1:
                raise UserError(f"backbone.{name}: expected a positive integer, got {getattr(self, name)!r}")
        if self.n_embd % self.n_head:
            raise UserError(f"backbone: n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.activation not in ("relu", "gelu_new", "gelu"):
            raise UserError(f"backbone.activation: expected relu, gelu or gelu_new, got {self.activation!r}")
        return self


def _check_positive_int(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{owner}.{name}: expected a positive integer, got {value!r}")


def _check_nonneg_int(owner: str, name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UserError(f"{owner}.{name}: expected an integer >= 0, got {value!r}")


def _check_positive_float(owner: str, name: str, value, allow_inf: bool = False) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{owner}.{name}: expected a positive number, got {value!r}") from None
    if not v > 0 or (math.isinf(v) and not allow_inf):
        raise UserError(f"{owner}.{name}: expected a positive number{' or inf' if allow_inf else ''}, got {value!r}")


@dataclass
class DTPretrainConfig:
    """Synthetic (or text) next-token pre-training of the backbone (spec section 2).

    One run of ``steps`` updates saves the backbone at every step in ``checkpoints``; fine-tuning picks
    one of them (default 20k). The lr schedule is linear warmup from 0 over ``warmup_steps`` then linear
    decay to 0 at ``steps``.
    """

    data: str = "mc"                 # mc | iid | identity | mapping | text
    states: int = 100                # M: MC/IID vocabulary
    order: int = 1                   # n: MC order ("MC steps")
    temperature: float = 1.0         # tau
    data_seed: int = 666             # sigma: seeds the MC transition rows and the token stream
    steps: int = 80000
    checkpoints: tuple[int, ...] = DEFAULT_CHECKPOINTS
    corpus: str | None = None        # --data text: path of a UTF-8 text file
    device: str = "auto"
    # training hyper-parameters (spec section 2)
    seq_len: int = 1024
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6
    warmup_steps: int = 10000
    dropout: float = 0.1
    init_seed: int = 0               # model init and dropout stream (the token stream uses data_seed)
    loss_chunk: int = 4096           # rows of logits materialised at a time (bounded memory for large M)
    progress_every: int = 1000       # save a resumable progress checkpoint every this many steps
    log_every: int = 100             # loss-curve rows
    precision: str = "auto"          # auto (bf16 autocast on cuda, fp32 on cpu) | fp32 | bf16
    compile: str = "auto"            # auto (torch.compile on cuda) | on | off
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):  # from JSON (a sweep trial, params.json)
            self.backbone = BackboneConfig(**self.backbone)
        if tuple(self.checkpoints) == DEFAULT_CHECKPOINTS and self.steps != DEFAULT_CHECKPOINTS[-1]:
            # the spec's set, cut to a shorter (or extended to a longer) run, which always saves its last step
            steps = self.steps if isinstance(self.steps, int) and self.steps > 0 else DEFAULT_CHECKPOINTS[-1]
            self.checkpoints = tuple(sorted({c for c in DEFAULT_CHECKPOINTS if c <= steps} | {steps}))

    def validate(self) -> "DTPretrainConfig":
        o = "dt-pretrain"
        if self.data not in PRETRAIN_DATA:
            raise UserError(f"{o}.data: expected one of {', '.join(PRETRAIN_DATA)}, got {self.data!r}")
        for name in ("states", "order", "steps", "seq_len", "batch_size", "loss_chunk", "progress_every", "log_every"):
            _check_positive_int(o, name, getattr(self, name))
        for name in ("data_seed", "warmup_steps", "init_seed"):
            _check_nonneg_int(o, name, getattr(self, name))
        _check_positive_float(o, "temperature", self.temperature, allow_inf=True)
        _check_positive_float(o, "lr", self.lr)
        if self.data in ("mc", "iid") and self.states < 2:
            raise UserError(f"{o}.states: expected at least 2 states, got {self.states}")
        if self.data == "text":
            if not self.corpus:
                raise UserError(f"{o}: --data text needs --corpus FILE (a UTF-8 text file you supply)")
            if not Path(self.corpus).expanduser().is_file():
                raise UserError(f"--corpus {self.corpus}: no such file")
        elif self.corpus:
            raise UserError(f"{o}.corpus: only used with --data text (got --data {self.data})")
        cps = tuple(self.checkpoints)
        if not cps:
            raise UserError(f"{o}.checkpoints: expected at least one step")
        for c in cps:
            if isinstance(c, bool) or not isinstance(c, int) or c < 1:
                raise UserError(f"{o}.checkpoints: expected positive integers, got {c!r}")
            if c > self.steps:
                raise UserError(f"{o}.checkpoints: step {c} is beyond --steps {self.steps}")
        if self.seq_len > self.backbone.n_positions:
            raise UserError(f"{o}.seq_len {self.seq_len} exceeds the position table ({self.backbone.n_positions})")
        if not 0 <= self.dropout < 1:
            raise UserError(f"{o}.dropout: expected a number in [0, 1), got {self.dropout!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise UserError(f"{o}.precision: expected auto, fp32 or bf16, got {self.precision!r}")
        if self.compile not in ("auto", "on", "off"):
            raise UserError(f"{o}.compile: expected auto, on or off, got {self.compile!r}")
        self.checkpoints = tuple(sorted(set(cps)))
        self.backbone.validate()
        return self

    @classmethod
    def with_defaults_for(cls, steps: int, **kw) -> "DTPretrainConfig":
        """A config whose default checkpoints are the spec's set cut to ``steps`` (plus ``steps`` itself)."""
        cps = tuple(sorted({c for c in DEFAULT_CHECKPOINTS if c <= steps} | {steps}))
        return cls(steps=steps, checkpoints=kw.pop("checkpoints", cps), **kw)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["checkpoints"] = list(self.checkpoints)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DTPretrainConfig":
        d = dict(d)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"dt-pretrain: unknown field(s) {', '.join(unknown)}")
        if "backbone" in d and isinstance(d["backbone"], dict):
            d["backbone"] = BackboneConfig(**d["backbone"])
        if "checkpoints" in d:
            d["checkpoints"] = tuple(int(c) for c in d["checkpoints"])
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
        return cls(**d)


@dataclass
class DTConfig:
    """Fine-tuning a (pre-trained or fresh) Decision Transformer on one offline dataset (spec 3-5).

    ``seeds`` are trained together as one batched ensemble. The backbone comes from ``pretrain`` (an
    artifact, built if missing, at ``pretrain_step``), or from ``pretrained_path`` (a dt-pretrain run
    directory, an artifact directory or a GPT-2-format checkpoint file), or neither (plain DT).
    """

    dataset: str = ""
    seeds: list[int] = field(default_factory=lambda: [0])
    pretrain: DTPretrainConfig | None = None
    pretrain_step: int = 20000
    pretrained_path: str | None = None
    updates: int = 100000
    extra_updates: int = 0           # table 26: +20k / +80k fine-tuning updates
    eval_every: int = 5000
    eval_episodes: int = 10
    finetune_ratio: float = 1.0      # figure 11: fraction of the dataset's trajectories used
    finetune_ratio_seed: int = 0     # which trajectories are kept (shared by the ensemble)
    device: str = "auto"
    env_version: str = "v4"
    targets: tuple[float, ...] | None = None  # None: the spec's targets for the environment
    eval_workers: int | None = None
    # fine-tuning hyper-parameters (spec section 4)
    context: int = 20                # K
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-4
    eps: float | None = None         # None: 1e-6 with a pre-trained backbone, 1e-8 without
    warmup_steps: int = 5000
    grad_clip: float = 0.25
    resid_dropout: float = 0.2
    attn_dropout: float = 0.1
    embd_dropout: float = 0.1        # HF GPT-2 default (the reference kept it)
    max_ep_len: int = 1000           # timestep table of the plain DT; timesteps clipped to max_ep_len - 1
    rtg_scale: float = 1000.0
    action_pad: float = -10.0
    precision: str = "auto"          # auto (bf16 autocast on cuda) | fp32 | bf16
    compile: str = "auto"            # auto (torch.compile on cuda) | on | off
    backbone: BackboneConfig = field(default_factory=BackboneConfig)

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        if isinstance(self.pretrain, dict):
            self.pretrain = DTPretrainConfig.from_dict(self.pretrain)
        self.seeds = [int(s) for s in self.seeds] if isinstance(self.seeds, (list, tuple)) else self.seeds

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
        if not self.seeds:
            raise UserError(f"{o}.seeds: expected at least one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"{o}.seeds: seeds repeat in {self.seeds}")
        for s in self.seeds:
            _check_nonneg_int(o, "seeds", s)
        for name in ("updates", "eval_every", "eval_episodes", "context", "batch_size", "max_ep_len"):
            _check_positive_int(o, name, getattr(self, name))
        for name in ("extra_updates", "warmup_steps", "finetune_ratio_seed"):
            _check_nonneg_int(o, name, getattr(self, name))
        _check_positive_float(o, "lr", self.lr)
        _check_positive_float(o, "grad_clip", self.grad_clip)
        if not 0 < float(self.finetune_ratio) <= 1:
            raise UserError(f"{o}.finetune_ratio: expected a fraction in (0, 1], got {self.finetune_ratio!r}")
        if self.pretrain is not None and self.pretrained_path is not None:
            raise UserError(f"{o}: give either a pre-training config or --pretrained PATH, not both")
        if self.pretrain is not None:
            self.pretrain.validate()
            if self.pretrain_step not in self.pretrain.checkpoints:
                raise UserError(
                    f"{o}.pretrain_step: {self.pretrain_step} is not one of the pre-training checkpoints "
                    f"{list(self.pretrain.checkpoints)}"
                )
        if self.pretrained_path is not None and not Path(self.pretrained_path).expanduser().exists():
            raise UserError(f"--pretrained {self.pretrained_path}: no such file or directory")
        if 3 * self.context > self.backbone.n_positions:
            raise UserError(f"{o}.context: 3 x {self.context} tokens exceed the position table")
        for name in ("resid_dropout", "attn_dropout", "embd_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise UserError(f"{o}.{name}: expected a number in [0, 1), got {getattr(self, name)!r}")
        if self.targets is not None:
            if not self.targets:
                raise UserError(f"{o}.targets: expected at least one target return")
            self.targets = tuple(float(t) for t in self.targets)
        if self.precision not in ("auto", "fp32", "bf16"):
            raise UserError(f"{o}.precision: expected auto, fp32 or bf16, got {self.precision!r}")
        if self.compile not in ("auto", "on", "off"):
            raise UserError(f"{o}.compile: expected auto, on or off, got {self.compile!r}")
        self.backbone.validate()
        return self

    def targets_for(self, env: str) -> tuple[float, ...]:
        if self.targets is not None:
            return tuple(self.targets)
        if env not in TARGET_RETURNS:
            raise UserError(f"dt: no default target returns for environment {env!r}; give targets")
        return TARGET_RETURNS[env]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["pretrain"] = self.pretrain.to_dict() if self.pretrain is not None else None
        d["targets"] = list(self.targets) if self.targets is not None else None
        return d

    def replace(self, **kw) -> "DTConfig":
        return replace(self, **kw)
