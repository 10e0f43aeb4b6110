"""DT model: causal masking, HF GPT-2 name mapping, chunked loss, transfer (spec dt.md sections 1-3)."""

import math

import pytest
import torch
import torch.nn.functional as F

from synthrl.dt.config import BackboneConfig
from synthrl.dt.model import (DecisionTransformer, GPT2Backbone, GPT2LM, chunked_cross_entropy,
                              infer_backbone_config)
from synthrl.errors import UserError

SMALL = BackboneConfig(n_layer=2, n_head=2, n_embd=16, n_inner=32, n_positions=64)


def _dt(pretrained: bool, members: int = 2, cfg: BackboneConfig = SMALL) -> DecisionTransformer:
    model = DecisionTransformer(cfg, members, state_dim=3, act_dim=2, pretrained=pretrained, max_ep_len=50)
    for e in range(members):
        model.init_member(e, torch.Generator().manual_seed(10 + e))
    return model.eval()


def _inputs(E=2, B=3, K=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(E, B, K, 3, generator=g), torch.randn(E, B, K, 2, generator=g),
            torch.randn(E, B, K, 1, generator=g), torch.randint(0, 50, (E, B, K), generator=g),
            torch.ones(E, B, K, dtype=torch.bool))


@pytest.mark.parametrize("pretrained", [True, False])
def test_future_tokens_never_change_past_predictions(pretrained):
    model = _dt(pretrained)
    s, a, r, t, m = _inputs()
    base = model(s, a, r, t, m)
    j = 2
    s2, a2, r2, t2 = s.clone(), a.clone(), r.clone(), t.clone()
    s2[:, :, j + 1:] += 5.0
    r2[:, :, j + 1:] -= 3.0
    t2[:, :, j + 1:] = 7
    a2[:, :, j:] += 1.0  # the action at step j comes after the state token that predicts it
    out = model(s2, a2, r2, t2, m)
    assert torch.allclose(out[:, :, : j + 1], base[:, :, : j + 1], atol=1e-6)
    assert not torch.allclose(out[:, :, j + 1:], base[:, :, j + 1:], atol=1e-3)


def test_language_model_is_causal():
    lm = GPT2LM(SMALL, vocab_size=11).eval()
    lm.init_weights(torch.Generator().manual_seed(0))
    tokens = torch.randint(0, 11, (2, 12))
    changed = tokens.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 11
    h1, h2 = lm.hidden(tokens), lm.hidden(changed)
    assert torch.allclose(h1[:, :8], h2[:, :8], atol=1e-6)
    assert not torch.allclose(h1[:, 8:], h2[:, 8:], atol=1e-4)


def test_padding_keys_are_invisible_and_never_nan():
    model = _dt(True)
    s, a, r, t, m = _inputs()
    m[:, :, :2] = False  # two left-padded steps
    out = model(s, a, r, t, m)
    s2, a2, r2 = s.clone(), a.clone(), r.clone()
    s2[:, :, :2] = 100.0
    a2[:, :, :2] = -10.0
    r2[:, :, :2] = 9.0
    out2 = model(s2, a2, r2, t, m)
    assert torch.isfinite(out).all() and torch.isfinite(out2).all()
    assert torch.allclose(out[:, :, 2:], out2[:, :, 2:], atol=1e-5)


def _hand_built_hf_state(cfg: BackboneConfig, vocab: int, seed: int = 0) -> dict:
    """A GPT2LMHeadModel-format state dict written out by hand: HF names, Conv1D [in, out] layouts."""
    g = torch.Generator().manual_seed(seed)
    C, I = cfg.n_embd, cfg.n_inner
    rnd = lambda *shape: torch.randn(*shape, generator=g) * 0.1  # noqa: E731
    sd = {"transformer.wte.weight": rnd(vocab, C), "transformer.wpe.weight": rnd(cfg.n_positions, C)}
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        sd.update({
            p + "ln_1.weight": 1 + rnd(C), p + "ln_1.bias": rnd(C),
            p + "attn.c_attn.weight": rnd(C, 3 * C), p + "attn.c_attn.bias": rnd(3 * C),
            p + "attn.c_proj.weight": rnd(C, C), p + "attn.c_proj.bias": rnd(C),
            p + "ln_2.weight": 1 + rnd(C), p + "ln_2.bias": rnd(C),
            p + "mlp.c_fc.weight": rnd(C, I), p + "mlp.c_fc.bias": rnd(I),
            p + "mlp.c_proj.weight": rnd(I, C), p + "mlp.c_proj.bias": rnd(C),
            # HF's causal-mask buffer: not a parameter, must be ignored
            p + "attn.bias": torch.tril(torch.ones(1, 1, cfg.n_positions, cfg.n_positions)),
        })
    sd["transformer.ln_f.weight"] = 1 + rnd(C)
    sd["transformer.ln_f.bias"] = rnd(C)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    return sd


def _reference_gpt2(sd: dict, cfg: BackboneConfig, tokens: torch.Tensor) -> torch.Tensor:
    """GPT-2 forward written from the HF formulas (Conv1D: x @ W + b), ReLU MLP, no dropout."""
    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    T = tokens.shape[1]
    x = sd["wte.weight"][tokens] + sd["wpe.weight"][:T]
    nh, hd = cfg.n_head, cfg.n_embd // cfg.n_head
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for i in range(cfg.n_layer):
        p = f"h.{i}."
        h = F.layer_norm(x, (cfg.n_embd,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"], 1e-5)
        q, k, v = (h @ sd[p + "attn.c_attn.weight"] + sd[p + "attn.c_attn.bias"]).split(cfg.n_embd, -1)
        q, k, v = (z.view(z.shape[0], T, nh, hd).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(x.shape)
        x = x + y @ sd[p + "attn.c_proj.weight"] + sd[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (cfg.n_embd,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"], 1e-5)
        x = x + torch.relu(h @ sd[p + "mlp.c_fc.weight"] + sd[p + "mlp.c_fc.bias"]) @ sd[p + "mlp.c_proj.weight"] \
            + sd[p + "mlp.c_proj.bias"]
    return F.layer_norm(x, (cfg.n_embd,), sd["ln_f.weight"], sd["ln_f.bias"], 1e-5)


def test_hf_gpt2_state_dict_round_trip_and_forward():
    vocab = 13
    sd = _hand_built_hf_state(SMALL, vocab)
    assert infer_backbone_config(sd, n_head=SMALL.n_head) == SMALL
    lm = GPT2LM(SMALL, vocab).eval()
    copied = lm.transformer.load_hf_state_dict(sd)
    assert len(copied) == 2 + 12 * SMALL.n_layer + 2
    exported = lm.transformer.hf_state_dict(0)
    expected = {k.removeprefix("transformer."): v for k, v in sd.items()
                if k != "lm_head.weight" and not k.endswith("attn.bias") or k.endswith("c_attn.bias")}
    assert set(exported) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(exported[name], tensor), name
    # the layouts are really HF's: our forward equals the HF formulas on the hand-built weights
    tokens = torch.randint(0, vocab, (2, 9))
    assert torch.allclose(lm.hidden(tokens), _reference_gpt2(sd, SMALL, tokens), atol=1e-5)
    # an ensemble takes the same state dict into any member
    ens = GPT2Backbone(SMALL, members=3, vocab_size=vocab)
    ens.load_hf_state_dict(sd, members=[1])
    assert torch.equal(ens.hf_state_dict(1)["h.1.mlp.c_fc.weight"], sd["transformer.h.1.mlp.c_fc.weight"])


def test_hf_import_rejects_wrong_shapes():
    sd = _hand_built_hf_state(SMALL, 13)
    sd["transformer.h.0.mlp.c_fc.weight"] = sd["transformer.h.0.mlp.c_fc.weight"].t()
    lm = GPT2LM(SMALL, 13)
    with pytest.raises(UserError, match="h.0.mlp.c_fc.weight"):
        lm.transformer.load_hf_state_dict(sd)


@pytest.mark.parametrize("chunk", [7, 64, 10_000])
def test_chunked_loss_equals_full_loss_and_gradients(chunk):
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(50, 16, generator=g, requires_grad=True)
    weight = torch.randn(301, 16, generator=g, requires_grad=True)
    targets = torch.randint(0, 301, (50,), generator=g)
    full = F.cross_entropy(hidden @ weight.t(), targets)
    gh, gw = torch.autograd.grad(3.0 * full, (hidden, weight))
    chunked = chunked_cross_entropy(hidden, weight, targets, chunk=chunk, logits_budget=0)
    ch, cw = torch.autograd.grad(3.0 * chunked, (hidden, weight))
    assert torch.allclose(chunked, full, atol=1e-5)
    assert torch.allclose(ch, gh, atol=1e-5) and torch.allclose(cw, gw, atol=1e-5)


def test_chunked_loss_never_holds_more_than_one_chunk_of_logits(monkeypatch):
    """Every logits matrix the loss builds has at most `chunk` rows (a 64x1024xM tensor never exists)."""
    shapes = []
    real_logsumexp = torch.logsumexp

    def spy(x, *a, **kw):
        shapes.append(tuple(x.shape))
        return real_logsumexp(x, *a, **kw)

    monkeypatch.setattr(torch, "logsumexp", spy)
    hidden = torch.randn(1000, 8, requires_grad=True)
    weight = torch.randn(5000, 8, requires_grad=True)
    loss = chunked_cross_entropy(hidden, weight, torch.randint(0, 5000, (1000,)), chunk=128, logits_budget=0)
    loss.backward()
    assert len(shapes) == 8 and max(s[0] for s in shapes) == 128 and all(s[1] == 5000 for s in shapes)


def test_transfer_copies_exactly_blocks_final_ln_and_position_table():
    lm = GPT2LM(SMALL, vocab_size=17)
    lm.init_weights(torch.Generator().manual_seed(3))
    ckpt = lm.checkpoint(step=5)
    dt = _dt(pretrained=True, members=2)
    before = {k: v.clone() for k, v in dt.state_dict().items()}
    copied = dt.load_pretrained_backbone(ckpt["state_dict"])
    listed = {n for n in ckpt["state_dict"] if n.startswith(("h.", "ln_f.", "wpe."))}
    assert set(copied) == listed  # token table and LM head dropped
    assert not any(n.startswith("wte") for n in copied)
    after = dt.state_dict()
    for name, value in after.items():
        if name.startswith("transformer."):
            src = ckpt["state_dict"][name.removeprefix("transformer.")]
            assert all(torch.equal(value[e], src) for e in range(2)), name
        else:  # new return/state/action embeddings + embedding LN: untouched fresh init
            assert torch.equal(value, before[name]), name
    # fresh parts differ between members (own seeds), and there is no separate head or timestep table
    assert not torch.equal(after["embed_state.weight"][0], after["embed_state.weight"][1])
    names = set(after)
    assert not any(n.startswith(("predict_action", "embed_timestep", "transformer.wte")) for n in names)
    assert "transformer.wpe.weight" in names


def test_pretrained_head_is_tied_to_action_embedding_and_baseline_has_its_own():
    dt = _dt(pretrained=True, members=2)
    s, a, r, t, m = _inputs(E=2)
    captured = {}
    dt.transformer.register_forward_hook(lambda mod, inp, out: captured.update(h=out))
    out = dt(s, a, r, t, m)
    h_state = captured["h"][:, :, 1::3]  # hidden state at each state token (order R, s, a)
    W = dt.embed_action.weight  # [E, dA, C]: the action embedding computes a @ W + b
    expected = torch.tanh(torch.einsum("ebkc,edc->ebkd", h_state, W))
    assert torch.allclose(out, expected, atol=1e-6)
    assert out.shape == (2, 3, 5, 2)
    base = _dt(pretrained=False, members=1)
    assert base.transformer.wpe is None and base.embed_timestep.weight.shape == (1, 50, SMALL.n_embd)
    assert base.predict_action.weight.shape == (1, SMALL.n_embd, 2)
