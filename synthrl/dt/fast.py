"""The fast paths of DT training: ``torch.compile`` with an eager fallback, and one fine-tuning update step.

``UpdateStep`` is what ``DTRunner`` trains with and what its start-up check runs twice, on the fast
path (compiled and/or bf16) and eagerly in fp32, on a dropout-free copy of the model
(``without_dropout``: compiled dropout draws other masks than eager, so only dropout-free steps can
be compared).
"""

from __future__ import annotations

import torch

from synthrl.dt.model import Attention, DecisionTransformer


def masked_action_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-member MSE over unpadded positions and action dims -> [E]."""
    m = mask.unsqueeze(-1).to(pred.dtype)
    sq = ((pred.float() - target) ** 2) * m
    count = m.sum(dim=(1, 2, 3)).clamp_min(1.0) * pred.shape[-1]
    return sq.sum(dim=(1, 2, 3)) / count


def compiled_or_eager(fn, mode: str):
    """torch.compile(fn) that falls back to ``fn`` (with a warning) if compilation fails on first use."""
    compiled = torch.compile(fn, mode=None if mode == "default" else mode, dynamic=False)
    state = {"fn": compiled, "tried": False}

    def call(*args):
        if state["tried"]:
            return state["fn"](*args)
        try:
            out = compiled(*args)
        except Exception as e:  # never lose a run to a compiler problem
            import warnings

            warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); running {fn.__name__} eagerly")
            state["fn"] = fn
            out = fn(*args)
        state["tried"] = True
        return out

    return call


class UpdateStep:
    """Forward, masked action loss, backward and per-member gradient clipping of one fine-tuning update
    of ``model``: eager or compiled (``torch.compile``; on CUDA the forward + loss and its backward
    replay as CUDA graphs), bf16 autocast or fp32. The optimiser step is the caller's."""

    def __init__(self, model: DecisionTransformer, device: str, grad_clip: float, bf16: bool = False,
                 compiled: bool = False):
        self.model, self.device, self.grad_clip = model, device, float(grad_clip)
        self.bf16, self.compiled = bf16, compiled
        self.loss_fn, self.clip_fn = self._loss_impl, self._clip_impl
        if compiled:
            self.loss_fn = compiled_or_eager(self._loss_impl, "reduce-overhead")
            self.clip_fn = compiled_or_eager(self._clip_impl, "default")  # the per-member clip, fused

    def autocast(self):
        return torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.bf16)

    def _loss_impl(self, states, actions, rtg, timesteps, mask) -> torch.Tensor:
        with self.autocast():
            pred = self.model(states, actions, rtg, timesteps, mask)
        return masked_action_loss(pred, actions, mask)

    def _clip_impl(self, grads: list[torch.Tensor], max_norm: float) -> None:
        with torch.no_grad():
            sq = torch.stack([g.float().pow(2).reshape(g.shape[0], -1).sum(1) for g in grads]).sum(0)
            coef = torch.clamp(max_norm / (sq.sqrt() + 1e-6), max=1.0)
            for g in grads:
                g.mul_(coef.view((-1,) + (1,) * (g.dim() - 1)).to(g.dtype))

    def clip(self) -> None:
        self.clip_fn([p.grad for p in self.model.parameters() if p.grad is not None], self.grad_clip)

    def __call__(self, batch) -> torch.Tensor:
        # gradients are dropped before the forward: with CUDA graphs they live in graph-owned memory
        for p in self.model.parameters():
            p.grad = None
        if self.compiled and self.device.startswith("cuda"):
            torch.compiler.cudagraph_mark_step_begin()
        losses = self.loss_fn(*batch)
        losses.sum().backward()  # members are independent: each gets its own loss's gradient
        self.clip()
        return losses


def without_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Every dropout of ``model`` off (in place): compiled dropout draws other masks than eager."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, Attention):
            m.attn_dropout = 0.0
    return model
