"""Fast path against eager: compare what k updates leave behind, and the decision a run records.

A fast path (a replayed CUDA graph, ``torch.compile``, bf16 autocast, TF32) must leave the same
parameters, optimiser state and losses as the eager fp32 path run from the same state and batch
stream. A graph that skips a parameter copy or reads a stale buffer leaves one tensor (or every
loss) far off; rounding differences leave everything a little off. So each tensor is compared by
its *relative* difference, and the tolerance depends on what arithmetic the fast path changes:

- parameters: ||fast - eager|| / ||eager - start||, the difference of the updates they received
  (a parameter the fast path forgot to update scores 1.0);
- everything else (Adam moments, loss sums): ||fast - eager|| / ||eager||;
- losses: |fast - eager| / |eager| per update.

Used by the runners' start-up check (synthrl.cql.runner, synthrl.dt.runner, synthrl.dt.pretrain)
and by ``synthrl doctor``. No Ray, no science: tensors in, a verdict out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch


@dataclass(frozen=True)
class Tolerance:
    """What a fast path may differ by: ``state`` for tensors, ``loss`` for each update's losses.

    ``size`` None: every tensor on its own within ``state`` (elementwise-exact arithmetic). Rounding-level
    arithmetic (bf16, TF32) leaves tensors whose gradient is pure noise (a key bias) with unrelated Adam
    steps, so there the parameters (and the Adam moments) are compared all together within ``state``,
    and each tensor only by the size of its update: |1 - ||fast update|| / ||eager update||| <= ``size``
    (a skipped parameter copy scores 1).
    """

    arithmetic: str
    state: float
    loss: float
    size: float | None = None


# Calibrated on CPU (compile and bf16 autocast against eager fp32, k = 4-8 updates, several seeds; see
# benchmarks/RESULTS.md, "synthrl doctor"): the measured worst case times 5-10 or more. A corrupted
# fast path (a skipped parameter copy, a stale batch) scores 0.5-1 or more and is caught by all of them.
SAME_ARITHMETIC = Tolerance("same arithmetic", 1e-5, 1e-6)   # graph replay of the eager kernels: bit-equal expected
COMPILED_FP32 = Tolerance("compiled fp32", 2e-3, 1e-4)       # fused kernels reorder fp32 sums
TF32 = Tolerance("tf32 matmuls", 0.1, 5e-3, size=0.3)
BF16 = Tolerance("bf16 autocast", 0.2, 3e-2, size=0.4)


def tolerance_for(compiled: bool = False, bf16: bool = False, tf32: bool = False) -> Tolerance:
    if bf16:
        return BF16
    if tf32:
        return TF32
    return COMPILED_FP32 if compiled else SAME_ARITHMETIC


def flatten_tensors(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Nested dicts / lists of tensors -> {"a.b.0": tensor} (CPU copies); other leaves are dropped."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj.detach().to("cpu")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_tensors(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten_tensors(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


@dataclass
class Parity:
    """The verdict of one fast-against-eager comparison."""

    ok: bool
    worst: str               # the tensor (or "loss") with the largest relative difference
    worst_rel: float
    loss_rel: float
    bit_equal: bool
    tolerance: Tolerance
    updates: int
    error: str | None = None  # the fast path raised instead of running

    def detail(self) -> str:
        if self.error is not None:
            return f"fast path raised {self.error}"
        if self.bit_equal:
            return f"{self.updates} updates, bit-equal"
        t = self.tolerance
        limits = f"{t.state:g}" + (f" together, update sizes {t.size:g}" if t.size is not None else "")
        verdict = "within" if self.ok else "OUTSIDE"
        return (f"{self.updates} updates, {t.arithmetic}: worst rel diff {self.worst_rel:.2e} ({self.worst}), "
                f"loss {self.loss_rel:.2e}; {verdict} tolerance {limits} / loss {t.loss:g}")


def failed(error: BaseException, tolerance: Tolerance, updates: int) -> Parity:
    return Parity(False, "-", math.inf, math.inf, False, tolerance, updates,
                  error=f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")


def _norm(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t.double()))


def _relative(f: torch.Tensor, e: torch.Tensor, base: torch.Tensor) -> float:
    if not f.is_floating_point():
        return math.inf  # a counter or an index that differs at all
    if not bool(torch.isfinite(f).all()) and bool(torch.isfinite(e).all()):
        return math.inf
    return _norm(f.double() - e.double()) / max(_norm(base), 1e-30)


def compare(fast: dict[str, torch.Tensor], eager: dict[str, torch.Tensor], tolerance: Tolerance, updates: int,
            start: dict[str, torch.Tensor] | None = None, fast_losses: Iterable[float] = (),
            eager_losses: Iterable[float] = ()) -> Parity:
    """Relative differences of every tensor in ``eager`` (parameters, i.e. names in ``start``: of their
    updates since ``start``), and of every loss; see Tolerance for how they are combined. The verdict
    names the tensor furthest beyond (or nearest to) its tolerance."""
    start = start or {}
    scores: list[tuple[float, str, float]] = [(0.0, "-", 0.0)]  # (share of its tolerance, name, value)
    bit_equal = True
    sums = {"all parameters": [0.0, 0.0], "all optimiser state": [0.0, 0.0]}  # [||diff||², ||base||²]
    for name, e in eager.items():
        f = fast[name]
        if f.shape != e.shape:
            return Parity(False, name, math.inf, math.inf, False, tolerance, updates)
        is_param = name in start
        base = e - start[name] if is_param else e
        acc = sums["all parameters" if is_param else "all optimiser state"]
        if torch.equal(f, e):
            if tolerance.size is not None and e.is_floating_point():
                acc[1] += _norm(base) ** 2
            continue
        bit_equal = False
        rel = _relative(f, e, base)
        if tolerance.size is None or not math.isfinite(rel):
            scores.append((rel / tolerance.state, name, rel))
            continue
        acc[0] += _norm(f.double() - e.double()) ** 2
        acc[1] += _norm(base) ** 2
        moved = f - start[name] if is_param else f
        size = abs(1.0 - _norm(moved) / max(_norm(base), 1e-30))  # rounding level: the size of the update only
        scores.append((size / tolerance.size, f"size of {name}", size))
    if tolerance.size is not None:
        for label, (diff2, base2) in sums.items():
            together = math.sqrt(diff2) / max(math.sqrt(base2), 1e-30) if diff2 else 0.0
            scores.append((together / tolerance.state, label, together))
    share, worst, worst_rel = max(scores, key=lambda s: s[0])
    loss_rel = 0.0
    for f, e in zip((float(x) for x in fast_losses), (float(x) for x in eager_losses), strict=True):
        if f != e:
            bit_equal = False
            loss_rel = max(loss_rel, abs(f - e) / max(abs(e), 1e-12) if math.isfinite(f) else math.inf)
    ok = share <= 1.0 and loss_rel <= tolerance.loss
    return Parity(ok, worst, worst_rel, loss_rel, bit_equal, tolerance, updates)


def decision(path: str, reason: str, **extra: Any) -> dict[str, Any]:
    """params.json's ``fast_path`` entry: which update path the run used and why."""
    return {"path": path, "reason": reason, **extra}


def settle(what: str, compiled: bool, bf16: bool, compile_setting: str, check: bool,
           check_fn: Callable[[], "Parity"], fall_back: Callable[[], None]) -> dict[str, Any]:
    """The ``fast_path`` decision of a run whose fast path is torch.compile and/or bf16 autocast: kept once
    ``check_fn`` finds it equal to eager fp32 on a copy of the state, else ``fall_back()`` (eager fp32),
    warned once."""
    precision = "bf16" if bf16 else "fp32"
    path = "compiled" if compiled else "eager"
    if not (compiled or bf16):
        return decision("eager", "--compile off" if compile_setting == "off" else "cpu", precision="fp32")
    if not check:
        return decision(path, "not checked (--fast-path-check off)", precision=precision)
    parity = check_fn()
    if parity.ok:
        return decision(path, f"checked: {parity.detail()}", precision=precision)
    import warnings

    warnings.warn(f"{what} fast path ({path}, {precision}) differs from eager fp32: {parity.detail()}; "
                  "training eagerly in fp32")
    fall_back()
    return decision("eager", f"fast-path check failed: {parity.detail()}", precision="fp32")


def probe_updates(model: torch.nn.Module, make_optimizer: Callable, step: Callable,
                  batches: list) -> tuple[dict[str, torch.Tensor], list[float]]:
    """One optimiser step per batch of ``step(batch) -> losses`` (forward, backward, clipping), from the
    model's current weights and a fresh optimiser; returns the parameters and Adam moments after, and
    every loss. The start-up checks run it once on the fast path and once eagerly from the same weights."""
    optimizer = make_optimizer(model)
    losses = []
    for batch in batches:
        loss = step(batch)
        optimizer.step()
        # a copy now: a CUDA-graph output is overwritten by the next replay
        losses.append(loss.detach().float().reshape(-1).clone())
    state: dict[str, torch.Tensor] = {}
    for name, p in model.named_parameters():
        state[f"param.{name}"] = p.detach().to("cpu").clone()
        for key in ("exp_avg", "exp_avg_sq"):
            if key in optimizer.state[p]:
                state[f"adam.{name}.{key}"] = optimizer.state[p][key].detach().to("cpu").clone()
    return state, [float(x) for x in torch.cat(losses).cpu()]


def compare_probes(fast: tuple[dict, list[float]], eager: tuple[dict, list[float]], start: dict[str, torch.Tensor],
                   tolerance: Tolerance, updates: int) -> Parity:
    """``compare`` for two probe_updates results from the same start weights ({name: tensor})."""
    start_flat = {f"param.{n}": t.detach().to("cpu") for n, t in start.items()}
    return compare(fast[0], eager[0], tolerance, updates, start=start_flat, fast_losses=fast[1], eager_losses=eager[1])
