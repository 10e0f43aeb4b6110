"""Synthetic (or text) next-token pre-training of the GPT-2 backbone (spec dt.md section 2).

One run of ``steps`` updates writes the backbone at every step in ``checkpoints`` into one artifact
``STORE/artifacts/dt-pretrain/<key>/`` (``step_0020000.pt``, ..., ``losses.csv``, ``source.json``),
keyed by every parameter that changes it. While it runs, progress lives in
``STORE/work/dt-pretrain/<key>/`` (the finished step files and a resumable ``checkpoint/``, saved
every ``progress_every`` steps); a killed run started again with the same parameters continues
from there bit-identically (on CPU). The artifact is finalised (COMPLETE) once every step is done.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from synthrl.config_fields import content_key, result_params
from synthrl.dt.config import DTPretrainConfig
from synthrl.dt.model import GPT2LM, ce_chunk, chunked_cross_entropy
from synthrl.errors import UserError
from synthrl.rundir import RunDir, load_saved_state, load_state_file, storage_errors
from synthrl.store import ArtifactStore
from synthrl.utils.fastpath import Parity, compare_probes, failed, probe_updates, settle, tolerance_for
from synthrl.utils.io import atomic_write_json, resolve_device

ARTIFACT_KIND = "dt-pretrain"
FORMAT_VERSION = 1
LOSS_COLUMNS = ["update", "train_loss", "lr", "wall_clock_s"]


def step_filename(step: int) -> str:
    return f"step_{int(step):07d}.pt"


def pretrain_params(cfg: DTPretrainConfig) -> dict:
    """Every parameter that changes the pre-trained weights: the artifact key's content (content_key).

    ``result_params``: the fields that are not execution-only (device, compile, chunk sizes) and apply to
    the data kind (two Identity runs that differ only in an unused ``--states`` share one artifact);
    a text corpus enters by its content, not its path.
    """
    cfg.validate()
    params = {"algorithm": ARTIFACT_KIND, **result_params(cfg)}
    if cfg.data == "text":
        from synthrl.dt.text import TOKENIZER, corpus_sha256

        params.pop("corpus")
        params.update(corpus_sha256=corpus_sha256(cfg.corpus), tokenizer=TOKENIZER)
    return params


def artifact_key(cfg: DTPretrainConfig) -> str:
    return content_key(ARTIFACT_KIND, pretrain_params(cfg), FORMAT_VERSION)


def make_token_source(cfg: DTPretrainConfig, device: str):
    if cfg.data == "text":
        from synthrl.dt.text import TextTokenSource

        return TextTokenSource(cfg.corpus, length=cfg.seq_len, device=device)
    from synthrl.synthetic import token_source

    return token_source(cfg.data, states=cfg.states, order=cfg.order, temperature=cfg.temperature,
                        seed=cfg.data_seed, length=cfg.seq_len, device=device)


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """HF ``get_linear_schedule_with_warmup``: 0 -> 1 over ``warmup`` steps, then linearly to 0 at ``total``."""

    def f(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return f


def use_bf16(precision: str, device: str) -> bool:
    return precision == "bf16" or (precision == "auto" and device.startswith("cuda"))


def use_compile(mode: str, device: str) -> bool:
    return mode == "on" or (mode == "auto" and device.startswith("cuda"))


class Pretrainer:
    """The pre-training loop, one step at a time, with a complete resumable state."""

    def __init__(self, cfg: DTPretrainConfig, source=None, device: str | None = None):
        self.cfg = cfg.validate()
        self.device = resolve_device(device or cfg.device)
        self.source = source if source is not None else make_token_source(cfg, self.device)
        self.model = GPT2LM(cfg.backbone, self.source.vocab_size, self.source.target_vocab_size,
                            cfg.dropout).to(self.device)
        init = torch.Generator().manual_seed(cfg.init_seed)
        self.model.init_weights(init)
        self.model.to(self.device)
        # HF Trainer's convention: no weight decay on biases and LayerNorm weights
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            (no_decay if name.endswith("bias") or ".ln_" in name or name.startswith("transformer.ln_f")
             else decay).append(p)
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
            fused=self.device.startswith("cuda"),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg.warmup_steps, cfg.steps))
        self.data_generator = torch.Generator(device=self.device).manual_seed(cfg.data_seed)
        # dropout draws from the global RNG: seed it here and carry its state in the checkpoint
        torch.manual_seed(cfg.init_seed + 1)
        self.step = 0
        # the logged loss is the mean over a log interval; its running sum is part of the resumable state
        self.loss_sum = torch.zeros((), device=self.device)
        self.loss_n = 0
        self.bf16 = use_bf16(cfg.precision, self.device)
        self.hidden_fn = self.model.hidden
        self.chunk_fn = ce_chunk
        self.compiled = use_compile(cfg.compile, self.device)
        if self.compiled:
            from synthrl.dt.fast import compiled_or_eager

            self.hidden_fn = compiled_or_eager(self.model.hidden, "default")
            self.chunk_fn = compiled_or_eager(ce_chunk, "default")  # fuses the softmax passes over chunk x M
        self.fast_path: dict | None = None  # settle_fast_path

    def loss(self, tokens: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        if targets is None:  # next-token prediction: 1023 predictions per 1024-token sequence
            inputs, targets = tokens[:, :-1], tokens[:, 1:]
        else:
            inputs = tokens
        with torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.bf16):
            hidden = self.hidden_fn(inputs)
        return chunked_cross_entropy(hidden, self.model.head_weight, targets, self.cfg.loss_chunk,
                                     torch.bfloat16 if self.bf16 else torch.float32, chunk_fn=self.chunk_fn)

    # -- the fast path against eager --------------------------------------------------------------
    def _probe(self, compiled: bool, bf16: bool) -> "Pretrainer":
        """A dropout-free copy of this trainer's model on the given path, its optimiser fresh at a fixed lr."""
        cfg = dataclasses.replace(self.cfg, dropout=0.0, compile="on" if compiled else "off",
                                  precision="bf16" if bf16 else "fp32")
        probe = Pretrainer(cfg, source=self.source, device=self.device)
        probe.model.load_state_dict(self.model.state_dict())
        probe.model.train()
        for group in probe.optimizer.param_groups:
            group["lr"] = cfg.lr
        return probe

    def check_fast_path(self, updates: int = 4) -> Parity | None:
        """``updates`` steps of the fast path (compiled and/or bf16) and of eager fp32 from this model's
        weights and the same token batches, compared. None: no fast path. This trainer is untouched."""
        if not (self.compiled or self.bf16):
            return None
        tolerance = tolerance_for(compiled=self.compiled, bf16=self.bf16)
        start = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        with torch.random.fork_rng(devices=[self.device] if self.device.startswith("cuda") else []):
            generator = torch.Generator(device=self.device)
            generator.set_state(self.data_generator.get_state())
            batches = [self.source.sample(self.cfg.batch_size, generator) for _ in range(updates)]

            def run(probe: "Pretrainer"):
                def step(batch):
                    loss = probe.loss(*batch)
                    probe.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    return loss
                return probe_updates(probe.model, lambda model: probe.optimizer, step, batches)

            try:
                fast = run(self._probe(self.compiled, self.bf16))
                eager = run(self._probe(False, False))
            except Exception as e:
                return failed(e, tolerance, updates)
        return compare_probes(fast, eager, start, tolerance, updates)

    def settle_fast_path(self, check: bool = True) -> dict:
        """Which path pre-training uses (the run directory's params.json ``fast_path``)."""
        def fall_back() -> None:
            self.compiled, self.bf16 = False, False
            self.hidden_fn, self.chunk_fn = self.model.hidden, ce_chunk

        self.fast_path = settle("DT pre-training", self.compiled, self.bf16, self.cfg.compile, check,
                                self.check_fast_path, fall_back)
        return self.fast_path

    def train_step(self) -> torch.Tensor:
        self.model.train()
        tokens, targets = self.source.sample(self.cfg.batch_size, self.data_generator)
        loss = self.loss(tokens, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss.detach()

    def record_loss(self, loss: torch.Tensor) -> None:
        self.loss_sum += loss
        self.loss_n += 1

    def pop_mean_loss(self) -> float:
        """The mean loss since the last call (one host sync per log interval)."""
        mean = (self.loss_sum / max(1, self.loss_n)).item()
        self.loss_sum.zero_()
        self.loss_n = 0
        return mean

    def state_dict(self) -> dict:
        state = {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "data_generator": self.data_generator.get_state(),
            "cpu_rng": torch.get_rng_state(),
            "loss_sum": self.loss_sum.detach().cpu().clone(),
            "loss_n": self.loss_n,
        }
        if self.device.startswith("cuda"):
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.data_generator.set_state(state["data_generator"].cpu() if hasattr(state["data_generator"], "cpu")
                                      else state["data_generator"])
        torch.set_rng_state(state["cpu_rng"].cpu())
        if "cuda_rng" in state and self.device.startswith("cuda"):
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        # progress saved before the running loss was part of it: the next interval's mean starts there
        self.loss_sum = state.get("loss_sum", torch.zeros(())).to(self.device).clone()
        self.loss_n = int(state.get("loss_n", 0))


def run_pretraining(
    cfg: DTPretrainConfig,
    work_dir: Path,
    source=None,
    progress: bool = True,
    log: RunDir | None = None,
    stop_after: int | None = None,
    fast_path_check: bool = True,
    sync=None,
) -> bool:
    """Train (or continue) into ``work_dir``: step files in ``work_dir/steps``, progress in ``work_dir/checkpoint``.

    ``log``: a run directory whose metrics.csv receives the loss curve. On resume both loss curves
    keep exactly the rows up to the saved progress (none without any).
    ``stop_after``: stop (after saving progress) once this step is reached, for tests of resume.
    ``fast_path_check``: check the fast path against eager first; ``log``'s params.json records the path.
    ``sync``: data-parallel training (trainables/distributed.py): ``sync.update(trainer) -> loss`` is the
    step (gradients averaged over workers), ``sync.begin(trainer)`` runs after loading, ``sync.barrier()``
    after each progress save, and only the worker with ``sync.writes`` writes files.
    Returns True when all ``cfg.steps`` are done.
    """
    from tqdm import tqdm

    work = RunDir(work_dir)
    writes = sync is None or sync.writes
    steps_dir = work.path / "steps"
    trainer = Pretrainer(cfg, source)
    fast_path = trainer.settle_fast_path(fast_path_check and sync is None)
    if log is not None and (log.path / "params.json").is_file():
        log.write_params({**log.read_params(), "fast_path": fast_path})
    elapsed = 0.0
    if writes:
        steps_dir.mkdir(parents=True, exist_ok=True)
        work.recover_checkpoint()  # progress a kill left aside is put back; orphaned copies go
    if sync is not None:
        sync.barrier()
    if work.has_checkpoint():
        saved = work.load_checkpoint()
        load_saved_state(trainer, saved, "trainer", str(work.checkpoint_file()),
                         "saved dt-pretrain progress of these parameters", f"remove {work.path} to start over")
        elapsed = float(saved.get("wall_clock_s", 0.0))
    for curve in (work, log) if writes else ():
        if curve is not None:
            curve.truncate_metrics(trainer.step)
    if sync is not None:
        sync.begin(trainer)
    step_fn = trainer.train_step if sync is None else lambda: sync.update(trainer)
    started = time.perf_counter()
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    checkpoints = set(cfg.checkpoints)
    bar = tqdm(total=cfg.steps, initial=trainer.step, desc=f"dt-pretrain {cfg.data}", unit="step",
               disable=not progress, dynamic_ncols=True, mininterval=1.0)

    def save_progress() -> None:
        work.save_checkpoint({"trainer": trainer.state_dict(),
                              "wall_clock_s": elapsed + time.perf_counter() - started})

    try:
        while trainer.step < end:
            trainer.record_loss(step_fn())
            step = trainer.step
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps or step in checkpoints:
                mean_loss = trainer.pop_mean_loss()
                row = {"update": step, "train_loss": round(mean_loss, 6),
                       "lr": trainer.scheduler.get_last_lr()[0],
                       "wall_clock_s": round(elapsed + time.perf_counter() - started, 3)}
                for curve in (work, log) if writes else ():
                    if curve is not None:
                        curve.append_metrics([row], LOSS_COLUMNS)
                if sync is not None:
                    sync.logged(step, mean_loss)
                bar.set_postfix(loss=f"{mean_loss:.4f}")
            if step in checkpoints and writes:
                path = steps_dir / step_filename(step)
                ckpt = trainer.model.checkpoint(step, {"source": _source_meta(trainer.source)})
                _atomic_torch_save(path, ckpt)
            if step % cfg.progress_every == 0 or step == end:
                if writes:
                    save_progress()
                if sync is not None:
                    sync.barrier()  # a retried job never finds one worker's progress ahead of the others'

    finally:
        bar.close()
    return trainer.step >= cfg.steps


def _source_meta(source) -> dict:
    try:
        return dict(source.metadata())
    except Exception:  # a test's in-memory source may not describe itself
        return {}


def _atomic_torch_save(path: Path, obj: Any) -> None:
    from synthrl.utils.io import atomic_write

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(obj, f)

    with storage_errors(path, "a pre-training checkpoint"):
        atomic_write(path, write)


def work_dir_for(cfg: DTPretrainConfig, store: ArtifactStore) -> Path:
    return store.root / "work" / ARTIFACT_KIND / store.path(ARTIFACT_KIND, pretrain_params(cfg), FORMAT_VERSION).name


def artifact_path(cfg: DTPretrainConfig, store: ArtifactStore | None = None) -> Path:
    store = store or ArtifactStore()
    return store.path(ARTIFACT_KIND, pretrain_params(cfg), FORMAT_VERSION)


def build_pretrain_artifact(
    cfg: DTPretrainConfig,
    store: ArtifactStore | None = None,
    progress: bool = True,
    log: RunDir | None = None,
    source=None,
    fast_path_check: bool = True,
) -> Path:
    """The artifact directory for ``cfg`` (built, or continued from saved progress, when missing)."""
    store = store or ArtifactStore()
    params = pretrain_params(cfg)
    found = store.lookup(ARTIFACT_KIND, params, FORMAT_VERSION)
    if found is not None:
        return found
    work = work_dir_for(cfg, store)
    with store.lock(ARTIFACT_KIND, params, FORMAT_VERSION):  # one builder trains; the others wait, then reuse
        found = store.lookup(ARTIFACT_KIND, params, FORMAT_VERSION)
        if found is not None:
            return found

        def build(tmp: Path) -> None:
            done = run_pretraining(cfg, work, source=source, progress=progress, log=log,
                                   fast_path_check=fast_path_check)
            if not done:
                raise RuntimeError("pre-training stopped before its last step")
            for step in cfg.checkpoints:
                src = work / "steps" / step_filename(step)
                if not src.is_file():
                    raise RuntimeError(f"pre-training finished without checkpoint {src}")
                os.link(src, tmp / step_filename(step)) if _same_fs(src, tmp) else shutil.copy2(src, tmp)
            shutil.copy2(work / "metrics.csv", tmp / "losses.csv")
            first = torch.load(tmp / step_filename(cfg.checkpoints[0]), map_location="cpu", weights_only=True)
            atomic_write_json(tmp / "source.json", {"source": first.get("source", {}),
                                                    "vocab_size": first["vocab_size"],
                                                    "target_vocab_size": first["target_vocab_size"]})

        path = store.get_or_build(ARTIFACT_KIND, params, build, FORMAT_VERSION)
        shutil.rmtree(work, ignore_errors=True)
    return path


def _same_fs(a: Path, b: Path) -> bool:
    try:
        return os.stat(a).st_dev == os.stat(b).st_dev
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------
# reading checkpoints back (fine-tuning side)
# ---------------------------------------------------------------------------------------------
def checkpoint_in_artifact(artifact_dir: Path, step: int) -> Path:
    path = Path(artifact_dir) / step_filename(step)
    if not path.is_file():
        have = sorted(int(p.stem.split("_")[1]) for p in Path(artifact_dir).glob("step_*.pt"))
        raise UserError(f"{artifact_dir}: no pre-training checkpoint at step {step} (have {have})")
    return path


def resolve_pretrained(path: str | os.PathLike, step: int) -> Path:
    """``--pretrained``: a dt-pretrain run directory, an artifact directory, or a checkpoint file -> file."""
    p = Path(path).expanduser().absolute()
    if p.is_file():
        return p
    if not p.is_dir():
        raise UserError(f"--pretrained {path}: no such file or directory")
    pointer = p / "artifact.json"
    if pointer.is_file():
        import json

        try:
            target = Path(json.loads(pointer.read_text())["path"])
        except (ValueError, KeyError) as e:
            raise UserError(f"{pointer}: not a dt-pretrain pointer ({e})") from None
        if not (target / "COMPLETE").is_file():
            raise UserError(f"{pointer}: the artifact {target} is missing or unfinished (rerun dt-pretrain --resume)")
        return checkpoint_in_artifact(target, step)
    if any(p.glob("step_*.pt")):
        return checkpoint_in_artifact(p, step)
    if (p / "params.json").is_file() and '"dt-pretrain"' in (p / "params.json").read_text():
        raise UserError(f"--pretrained {path}: this dt-pretrain run has not finished (continue it with "
                        f"synthrl run dt-pretrain ... --out {path} --resume)")
    raise UserError(f"--pretrained {path}: neither a dt-pretrain run directory, an artifact, nor a checkpoint file")


def load_backbone_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint file -> {"state_dict": GPT-2 names -> tensors, "backbone": dict | None, "step": int | None}.

    Accepts this project's format and a bare GPT-2-format state dict (GPT2Model or GPT2LMHeadModel).
    """
    obj = load_state_file(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        found = {"state_dict": obj["state_dict"], "backbone": obj.get("backbone"), "step": obj.get("step")}
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = {"state_dict": obj, "backbone": _hf_config_beside(Path(path)), "step": None}
    else:
        raise UserError(f"{path}: not a GPT-2 state dict or synthrl pre-training checkpoint")
    _check_gpt2_tensors(found["state_dict"], path)
    return found


def _check_gpt2_tensors(state: dict, path: str | os.PathLike) -> None:
    """The tensors a backbone's sizes are read from must be there (a torch file of something else is not)."""
    from synthrl.dt.model import normalize_hf_state_dict

    names = sorted(name for name, t in normalize_hf_state_dict(state).items() if isinstance(t, torch.Tensor))
    missing = [k for k in ("wpe.weight", "ln_f.weight", "h.0.mlp.c_fc.weight") if k not in names]
    if missing:
        held = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "") if names else "none"
        raise UserError(f"{path}: not a GPT-2 backbone (no {', '.join(missing)}; its tensors: {held})")


def _hf_config_beside(path: Path) -> dict | None:
    """A bare state dict carries no head count or activation: read them from HF's config.json beside it
    (as ``save_pretrained`` writes it); without one, the spec's backbone (1 head, ReLU) is assumed."""
    import json

    config = path.parent / "config.json"
    if not config.is_file():
        return None
    try:
        hf = json.loads(config.read_text())
        return {"n_head": int(hf.get("n_head", 1)), "activation": str(hf.get("activation_function", "relu")),
                "layer_norm_eps": float(hf.get("layer_norm_epsilon", 1e-5))}
    except (ValueError, TypeError, AttributeError) as e:
        raise UserError(f"{config}: not a readable HF GPT-2 config ({e})") from None


def read_losses(artifact_dir: Path) -> list[dict[str, str]]:
    with open(Path(artifact_dir) / "losses.csv", newline="") as f:
        return list(csv.DictReader(f))


__all__ = [
    "ARTIFACT_KIND", "pretrain_params", "build_pretrain_artifact", "run_pretraining", "Pretrainer",
    "resolve_pretrained", "load_backbone_checkpoint", "checkpoint_in_artifact", "artifact_path", "lr_lambda",
]
