"""A compact GPT-2 backbone and the Decision Transformer built on it (spec dt.md sections 1 and 3).

Every parameter carries a leading *member* dimension E, so one module holds a whole seed ensemble
with independent weights and runs it with batched matmuls (E = 1 for pre-training). Parameter
names are HuggingFace GPT-2's (``wte.weight``, ``h.0.attn.c_attn.weight``, ``ln_f.bias``, ...) and
each member's tensor has HF's layout (GPT-2's ``Conv1D`` stores weights as [in, out]), so a
GPT-2-format state dict maps one-to-one onto member e: ``hf_state_dict(e)`` / ``load_hf_state_dict``.
"""

from __future__ import annotations

import math
from dataclasses import asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from synthrl.dt.config import BackboneConfig
from synthrl.errors import UserError

CHECKPOINT_FORMAT = "synthrl.dt.gpt2/1"


# ---------------------------------------------------------------------------------------------
# ensemble building blocks: weights [E, ...], inputs [E, ...]
# ---------------------------------------------------------------------------------------------
class EnsLinear(nn.Module):
    """y = x @ W + b per member; W is [E, in, out] (HF Conv1D layout), b is [E, out]."""

    def __init__(self, members: int, n_in: int, n_out: int, bias: bool = True):
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        self.weight = nn.Parameter(torch.empty(members, n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(members, n_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(shape[0], -1, shape[-1])
        if self.bias is None:
            y = torch.bmm(x2, self.weight)
        else:
            y = torch.baddbmm(self.bias.unsqueeze(1), x2, self.weight)
        return y.reshape(*shape[:-1], self.n_out)


class EnsLayerNorm(nn.Module):
    def __init__(self, members: int, dim: int, eps: float):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = nn.Parameter(torch.ones(members, dim))
        self.bias = nn.Parameter(torch.zeros(members, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 1:
            return F.layer_norm(x, (self.dim,), self.weight[0], self.bias[0], self.eps)
        y = F.layer_norm(x, (self.dim,), eps=self.eps)
        view = (x.shape[0],) + (1,) * (x.dim() - 2) + (self.dim,)
        return y * self.weight.view(view) + self.bias.view(view)


class EnsEmbedding(nn.Module):
    def __init__(self, members: int, num: int, dim: int):
        super().__init__()
        self.num = num
        self.weight = nn.Parameter(torch.empty(members, num, dim))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """idx: int64 [E, ...] -> [E, ..., dim]."""
        if idx.shape[0] == 1:
            return F.embedding(idx[0], self.weight[0]).unsqueeze(0)
        offset = (torch.arange(idx.shape[0], device=idx.device) * self.num).view((-1,) + (1,) * (idx.dim() - 1))
        return F.embedding(idx + offset, self.weight.reshape(-1, self.weight.shape[-1]))


def _activation(name: str):
    if name == "relu":
        return F.relu
    if name == "gelu_new":
        return lambda x: F.gelu(x, approximate="tanh")
    return F.gelu


# ---------------------------------------------------------------------------------------------
# GPT-2 backbone
# ---------------------------------------------------------------------------------------------
class Attention(nn.Module):
    def __init__(self, cfg: BackboneConfig, members: int, attn_dropout: float, resid_dropout: float):
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = EnsLinear(members, cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = EnsLinear(members, cfg.n_embd, cfg.n_embd)
        self.attn_dropout = attn_dropout
        self.resid_dropout = nn.Dropout(resid_dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        E, B, T, C = x.shape
        hd = C // self.n_head
        q, k, v = self.c_attn(x).split(C, dim=-1)
        q, k, v = (t.reshape(E * B, T, self.n_head, hd).transpose(1, 2) for t in (q, k, v))
        p = self.attn_dropout if self.training else 0.0
        if attn_mask is None:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        y = y.transpose(1, 2).reshape(E, B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: BackboneConfig, members: int, resid_dropout: float):
        super().__init__()
        self.c_fc = EnsLinear(members, cfg.n_embd, cfg.n_inner)
        self.c_proj = EnsLinear(members, cfg.n_inner, cfg.n_embd)
        self.act = _activation(cfg.activation)
        self.dropout = nn.Dropout(resid_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LN transformer block (GPT-2)."""

    def __init__(self, cfg: BackboneConfig, members: int, attn_dropout: float, resid_dropout: float):
        super().__init__()
        self.ln_1 = EnsLayerNorm(members, cfg.n_embd, cfg.layer_norm_eps)
        self.attn = Attention(cfg, members, attn_dropout, resid_dropout)
        self.ln_2 = EnsLayerNorm(members, cfg.n_embd, cfg.layer_norm_eps)
        self.mlp = MLP(cfg, members, resid_dropout)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class GPT2Backbone(nn.Module):
    """GPT2Model: optional token table ``wte``, optional position table ``wpe``, blocks ``h``, ``ln_f``."""

    def __init__(
        self,
        cfg: BackboneConfig,
        members: int = 1,
        vocab_size: int | None = None,
        position_table: bool = True,
        embd_dropout: float = 0.1,
        attn_dropout: float = 0.1,
        resid_dropout: float = 0.1,
    ):
        super().__init__()
        self.cfg, self.members = cfg, members
        self.wte = EnsEmbedding(members, vocab_size, cfg.n_embd) if vocab_size else None
        self.wpe = EnsEmbedding(members, cfg.n_positions, cfg.n_embd) if position_table else None
        self.drop = nn.Dropout(embd_dropout)
        self.h = nn.ModuleList(Block(cfg, members, attn_dropout, resid_dropout) for _ in range(cfg.n_layer))
        self.ln_f = EnsLayerNorm(members, cfg.n_embd, cfg.layer_norm_eps)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """inputs_embeds [E, B, T, C]; position_ids int64 [E, B, T] (added from ``wpe``); attn_mask bool
        [E*B, 1, T, T] (True = may attend) or None for plain causal attention. Returns [E, B, T, C]."""
        x = inputs_embeds
        if position_ids is not None:
            x = x + self.wpe(position_ids)
        x = self.drop(x)
        for block in self.h:
            x = block(x, attn_mask)
        return self.ln_f(x)

    @torch.no_grad()
    def init_member(self, e: int, generator: torch.Generator) -> None:
        """HF GPT-2 initialisation of member ``e``: N(0, 0.02) weights, c_proj scaled by 1/sqrt(2 n_layer)."""
        proj_std = 0.02 / math.sqrt(2 * self.cfg.n_layer)
        for name, p in self.named_parameters():
            target = p[e]
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name == "ln_f.weight":
                target.fill_(1.0)
            elif name.endswith(".bias"):
                target.zero_()
            else:
                std = proj_std if name.endswith("c_proj.weight") else 0.02
                target.copy_(torch.randn(target.shape, generator=generator) * std)

    # -- HF GPT-2 state dicts -------------------------------------------------------------------
    def hf_state_dict(self, member: int = 0) -> dict[str, torch.Tensor]:
        """Member ``member`` as a GPT2Model state dict (HF names and layouts), on the CPU."""
        return {name: p[member].detach().cpu().clone() for name, p in self.named_parameters()}

    @torch.no_grad()
    def load_hf_state_dict(self, state: dict[str, torch.Tensor], members: list[int] | None = None,
                           skip: tuple[str, ...] = ()) -> list[str]:
        """Copy a GPT2Model state dict into ``members`` (default all). Names under ``skip`` prefixes are
        left alone; every other parameter must be present with the right shape. Returns the names copied."""
        state = normalize_hf_state_dict(state)
        members = list(range(self.members)) if members is None else members
        copied = []
        for name, p in self.named_parameters():
            if name.startswith(skip):
                continue
            if name not in state:
                raise UserError(f"GPT-2 checkpoint: missing tensor {name!r}")
            src = state[name]
            if tuple(src.shape) != tuple(p.shape[1:]):
                raise UserError(
                    f"GPT-2 checkpoint: {name!r} has shape {tuple(src.shape)}, expected {tuple(p.shape[1:])}"
                )
            for e in members:
                p[e].copy_(src.to(p.dtype))
            copied.append(name)
        return copied


def normalize_hf_state_dict(state: dict) -> dict[str, torch.Tensor]:
    """Accept GPT2Model or GPT2LMHeadModel names ("transformer." prefix); drop HF's mask buffers."""
    out = {}
    for name, t in state.items():
        if name.startswith("transformer."):
            name = name[len("transformer."):]
        if name.endswith(".attn.bias") and t.dim() == 4 or name.endswith(".attn.masked_bias"):
            continue  # HF's causal-mask buffers, not parameters
        out[name] = t
    return out


def infer_backbone_config(state: dict, n_head: int = 1, activation: str = "relu") -> BackboneConfig:
    """Read the backbone's sizes off a GPT-2 state dict (heads and activation are not in the tensors)."""
    state = normalize_hf_state_dict(state)
    try:
        n_layer = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("h."))
        n_embd = state["ln_f.weight"].shape[0]
        n_inner = state["h.0.mlp.c_fc.weight"].shape[1]
        n_positions = state["wpe.weight"].shape[0]
    except (KeyError, ValueError, IndexError) as e:
        raise UserError(f"GPT-2 checkpoint: not a GPT-2 state dict ({e})") from None
    return BackboneConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_inner=n_inner,
                          n_positions=n_positions, activation=activation)


# ---------------------------------------------------------------------------------------------
# language model for pre-training (E = 1)
# ---------------------------------------------------------------------------------------------
class GPT2LM(nn.Module):
    """Backbone + LM head tied to the token table (or its own head when the output vocabulary differs)."""

    def __init__(self, cfg: BackboneConfig, vocab_size: int, target_vocab_size: int | None = None,
                 dropout: float = 0.1):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        self.target_vocab_size = target_vocab_size or vocab_size
        self.transformer = GPT2Backbone(cfg, 1, vocab_size, True, dropout, dropout, dropout)
        self.lm_head = (None if self.target_vocab_size == vocab_size
                        else nn.Parameter(torch.empty(self.target_vocab_size, cfg.n_embd)))

    def init_weights(self, generator: torch.Generator) -> None:
        self.transformer.init_member(0, generator)
        if self.lm_head is not None:
            with torch.no_grad():
                self.lm_head.copy_(torch.randn(self.lm_head.shape, generator=generator) * 0.02)

    @property
    def head_weight(self) -> torch.Tensor:
        return self.transformer.wte.weight[0] if self.lm_head is None else self.lm_head

    def hidden(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens int64 [B, T] -> final hidden states [B, T, C]."""
        B, T = tokens.shape
        x = self.transformer.wte(tokens.unsqueeze(0))
        pos = torch.arange(T, device=tokens.device).expand(1, B, T)
        return self.transformer(x, pos)[0]

    def checkpoint(self, step: int, extra: dict | None = None) -> dict:
        sd = self.transformer.hf_state_dict(0)
        if self.lm_head is not None:
            sd["lm_head.weight"] = self.lm_head.detach().cpu().clone()
        return {"format": CHECKPOINT_FORMAT, "backbone": asdict(self.cfg), "vocab_size": self.vocab_size,
                "target_vocab_size": self.target_vocab_size, "step": int(step), "state_dict": sd, **(extra or {})}


# ---------------------------------------------------------------------------------------------
# bounded-memory cross-entropy over a large vocabulary
# ---------------------------------------------------------------------------------------------
def ce_chunk(hc: torch.Tensor, w: torch.Tensor, tc: torch.Tensor):
    """One chunk: (summed CE, d/d hc, d/d w) of logits ``hc @ w.T`` against ``tc`` (gradients of the sum)."""
    logits = (hc @ w.t()).float()
    lse = torch.logsumexp(logits, dim=-1)
    loss = (lse - logits.gather(1, tc.unsqueeze(1)).squeeze(1)).sum()
    # d loss_sum / d logits = softmax - onehot (in the logits buffer: one chunk x V array at a time)
    probs = logits.sub_(lse.unsqueeze(1)).exp_()
    probs.scatter_add_(1, tc.unsqueeze(1), torch.full_like(lse, -1.0).unsqueeze(1))
    pc = probs.to(hc.dtype)
    return loss, (pc @ w).float(), (pc.t() @ hc).float()


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Mean next-token cross-entropy of ``hidden @ weight.T`` computed ``chunk`` rows at a time.

    The forward pass also computes both gradients chunk by chunk (softmax - onehot), so at most
    ``chunk x V`` logits ever exist and are built once; backward only scales them by the incoming
    gradient. ``chunk_fn`` is ``ce_chunk`` or a compiled copy of it (fused softmax passes on CUDA).
    """

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int, compute_dtype, chunk_fn):
        n = hidden.shape[0]
        h = hidden.to(compute_dtype)
        w = weight.to(compute_dtype)
        grad_h = torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, n, chunk):
            loss, gh, gw = chunk_fn(h[start:start + chunk], w, targets[start:start + chunk])
            total += loss
            grad_h[start:start + chunk] = gh
            grad_w += gw
        ctx.save_for_backward(grad_h, grad_w)
        ctx.n = n
        ctx.dtypes = (hidden.dtype, weight.dtype)
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        grad_h, grad_w = ctx.saved_tensors
        scale = grad_out / ctx.n
        return (grad_h * scale).to(ctx.dtypes[0]), (grad_w * scale).to(ctx.dtypes[1]), None, None, None, None


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                          chunk: int = 4096, compute_dtype: torch.dtype | None = None,
                          logits_budget: int = 1 << 27, chunk_fn=None) -> torch.Tensor:
    """Mean CE of logits ``hidden @ weight.T`` ([N, C] x [V, C]) against ``targets`` [N], in bounded memory:
    at most max(chunk, logits_budget / V) rows of logits exist at once (4096 x V for a large vocabulary)."""
    if compute_dtype is None:
        compute_dtype = torch.float32
    # small vocabularies: one chunk of up to logits_budget logits is cheap, so take as many rows as fit in it
    chunk = max(int(chunk), int(logits_budget) // max(1, weight.shape[0]))
    return _ChunkedCrossEntropy.apply(hidden.reshape(-1, hidden.shape[-1]), weight, targets.reshape(-1),
                                      int(chunk), compute_dtype, chunk_fn or ce_chunk)


# ---------------------------------------------------------------------------------------------
# Decision Transformer (ensemble)
# ---------------------------------------------------------------------------------------------
class DecisionTransformer(nn.Module):
    """DT over E members. Tokens per timestep: (return-to-go, state, action).

    ``pretrained=True`` (spec section 3): the backbone's position table is the timestep embedding,
    added after the embedding LayerNorm (inside the backbone), and the action head is
    ``tanh(h_state @ W_embed_action^T)`` with ``W_embed_action`` the [dA -> C] input projection (tied).
    ``pretrained=False`` (plain DT, Chen et al.): a separate ``max_ep_len x C`` timestep table added to
    each token embedding before the LayerNorm, and an own Linear + tanh action head.
    """

    def __init__(self, cfg: BackboneConfig, members: int, state_dim: int, act_dim: int, pretrained: bool,
                 max_ep_len: int = 1000, embd_dropout: float = 0.1, attn_dropout: float = 0.1,
                 resid_dropout: float = 0.2):
        super().__init__()
        C = cfg.n_embd
        self.cfg, self.members, self.pretrained = cfg, members, pretrained
        self.state_dim, self.act_dim = state_dim, act_dim
        self.transformer = GPT2Backbone(cfg, members, None, pretrained, embd_dropout, attn_dropout, resid_dropout)
        self.embed_return = EnsLinear(members, 1, C)
        self.embed_state = EnsLinear(members, state_dim, C)
        self.embed_action = EnsLinear(members, act_dim, C)
        self.embed_ln = EnsLayerNorm(members, C, cfg.layer_norm_eps)
        if pretrained:
            self.embed_timestep = None
            self.predict_action = None
        else:
            self.embed_timestep = EnsEmbedding(members, max_ep_len, C)
            self.predict_action = EnsLinear(members, C, act_dim)

    @torch.no_grad()
    def init_member(self, e: int, generator: torch.Generator) -> None:
        """Backbone: HF init; DT embeddings and head: PyTorch's defaults (Linear: U(+-1/sqrt(in)), Embedding: N(0,1))."""
        self.transformer.init_member(e, generator)
        for mod in (self.embed_return, self.embed_state, self.embed_action, self.predict_action):
            if mod is None:
                continue
            bound = 1.0 / math.sqrt(mod.n_in)
            mod.weight[e].copy_((torch.rand(mod.weight[e].shape, generator=generator) * 2 - 1) * bound)
            mod.bias[e].copy_((torch.rand(mod.bias[e].shape, generator=generator) * 2 - 1) * bound)
        self.embed_ln.weight[e].fill_(1.0)
        self.embed_ln.bias[e].zero_()
        if self.embed_timestep is not None:
            self.embed_timestep.weight[e].copy_(torch.randn(self.embed_timestep.weight[e].shape, generator=generator))

    def forward(self, states, actions, returns_to_go, timesteps, mask):
        """states [E,B,K,dS], actions [E,B,K,dA], returns_to_go [E,B,K,1], timesteps int64 [E,B,K],
        mask bool [E,B,K] (False = padding). Returns predicted actions [E,B,K,dA] (at each state token)."""
        E, B, K, _ = states.shape
        r = self.embed_return(returns_to_go)
        s = self.embed_state(states)
        a = self.embed_action(actions)
        if not self.pretrained:
            t = self.embed_timestep(timesteps)
            r, s, a = r + t, s + t, a + t
        x = torch.stack((r, s, a), dim=3).reshape(E, B, 3 * K, -1)
        x = self.embed_ln(x)
        pos = timesteps.repeat_interleave(3, dim=2) if self.pretrained else None
        attn_mask = trajectory_attention_mask(mask)
        h = self.transformer(x, pos, attn_mask)
        h_state = h.reshape(E, B, K, 3, -1)[:, :, :, 1]
        if self.pretrained:
            # shared input/output projection: embed_action maps dA -> C as a @ W (W [E, dA, C]); the head is h @ W^T
            return torch.tanh(torch.matmul(h_state.reshape(E, B * K, -1),
                                           self.embed_action.weight.transpose(1, 2).to(h_state.dtype))
                              ).reshape(E, B, K, -1)
        return torch.tanh(self.predict_action(h_state))

    @torch.no_grad()
    def load_pretrained_backbone(self, state: dict) -> list[str]:
        """Transfer (spec section 3): blocks, final LN and the position table (-> timestep embedding).
        The token embedding and LM head are dropped. Returns the copied parameter names."""
        if not self.pretrained:
            raise ValueError("the plain DT has no pre-trained backbone")
        return self.transformer.load_hf_state_dict(state, skip=("wte.",))


def trajectory_attention_mask(mask: torch.Tensor) -> torch.Tensor:
    """mask bool [E, B, K] per timestep -> bool [E*B, 1, 3K, 3K]: causal, padded keys hidden.

    A padded query still sees itself so no softmax row is empty (no NaN); its output is never used.
    """
    E, B, K = mask.shape
    T = 3 * K
    keys = mask.repeat_interleave(3, dim=2).reshape(E * B, 1, 1, T)
    causal = torch.ones(T, T, dtype=torch.bool, device=mask.device).tril()
    eye = torch.eye(T, dtype=torch.bool, device=mask.device)
    return causal & (keys | eye)
