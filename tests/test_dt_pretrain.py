"""DT pre-training: learning on Markov-chain tokens, resume, artifact, text corpus, CLI (spec dt.md section 2)."""

import csv
import json
import math

import pytest
import torch

from synthrl.dt.config import BackboneConfig, DTPretrainConfig
from synthrl.dt.pretrain import (Pretrainer, build_pretrain_artifact, load_backbone_checkpoint, lr_lambda,
                                 pretrain_params, resolve_pretrained, run_pretraining, step_filename)
from synthrl.errors import UserError
from synthrl.store import ArtifactStore

TINY = BackboneConfig(n_layer=1, n_head=1, n_embd=32, n_inner=64, n_positions=64)


class SmallMarkovChain:
    """An in-memory first-order chain with the TokenSource interface (rows softmax(U[0,1)/tau))."""

    def __init__(self, states: int, temperature: float, length: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.P = torch.softmax(torch.rand(states, states, generator=g, dtype=torch.float64) / temperature, -1)
        self.p0 = torch.softmax(torch.rand(states, generator=g, dtype=torch.float64) / temperature, -1)
        self.vocab_size = self.target_vocab_size = states
        self.length = length

    def sample(self, n: int, generator: torch.Generator):
        x = torch.multinomial(self.p0.float().expand(n, -1), 1, generator=generator)
        seq = [x]
        for _ in range(self.length - 1):
            x = torch.multinomial(self.P.float()[x[:, 0]], 1, generator=generator)
            seq.append(x)
        return torch.cat(seq, 1), None

    def expected_loss(self) -> float:
        """The best achievable mean next-token loss: position-averaged entropy of the next-token rows."""
        row_entropy = -(self.P * self.P.log()).sum(1)
        p, total = self.p0.clone(), 0.0
        for _ in range(self.length - 1):
            total += float(p @ row_entropy)
            p = p @ self.P
        return total / (self.length - 1)

    def metadata(self):
        return {"kind": "test-mc", "states": self.vocab_size}


def _cfg(**kw) -> DTPretrainConfig:
    base = dict(data="mc", states=6, steps=6, checkpoints=(1, 3, 6), seq_len=16, batch_size=4, warmup_steps=2,
                dropout=0.1, device="cpu", backbone=TINY, progress_every=2, log_every=1, lr=1e-3)
    base.update(kw)
    return DTPretrainConfig(**base).validate()


def test_loss_falls_to_the_chains_entropy_rate():
    chain = SmallMarkovChain(states=6, temperature=0.25, length=32, seed=3)
    cfg = _cfg(steps=200, checkpoints=(200,), seq_len=32, batch_size=32, warmup_steps=10, lr=3e-3, dropout=0.0)
    trainer = Pretrainer(cfg, source=chain)
    losses = [float(trainer.train_step()) for _ in range(cfg.steps)]
    floor = chain.expected_loss()
    assert floor < math.log(6) - 0.4  # a chain with real structure to learn
    assert abs(losses[0] - math.log(6)) < 0.15
    final = sum(losses[-20:]) / 20
    assert final < losses[0] - 0.3
    assert abs(final - floor) < 0.08, (final, floor)


def test_lr_schedule_warms_up_then_decays_to_zero():
    f = lr_lambda(10, 100)
    assert f(0) == 0.0 and f(5) == 0.5 and f(10) == 1.0 and f(55) == 0.5 and f(100) == 0.0 and f(120) == 0.0


def test_resume_is_bit_identical(tmp_path):
    chain = SmallMarkovChain(states=6, temperature=1.0, length=16)
    cfg = _cfg()
    assert run_pretraining(cfg, tmp_path / "straight", source=chain, progress=False)
    assert not run_pretraining(cfg, tmp_path / "split", source=chain, progress=False, stop_after=3)
    assert not (tmp_path / "split" / "steps" / step_filename(6)).exists()
    assert run_pretraining(cfg, tmp_path / "split", source=chain, progress=False)
    for step in (1, 3, 6):
        a = torch.load(tmp_path / "straight" / "steps" / step_filename(step), weights_only=True)["state_dict"]
        b = torch.load(tmp_path / "split" / "steps" / step_filename(step), weights_only=True)["state_dict"]
        assert set(a) == set(b)
        assert all(torch.equal(a[k], b[k]) for k in a), step
    rows = lambda d: [r for r in csv.DictReader(open(d / "metrics.csv"))]  # noqa: E731
    straight, split = rows(tmp_path / "straight"), rows(tmp_path / "split")
    assert [r["train_loss"] for r in straight] == [r["train_loss"] for r in split]
    assert [int(r["update"]) for r in split] == list(range(1, 7))


def test_artifact_holds_every_checkpoint_and_is_keyed_by_parameters(tmp_path):
    chain = SmallMarkovChain(states=6, temperature=1.0, length=16)
    store = ArtifactStore(tmp_path / "store")
    cfg = _cfg()
    path = build_pretrain_artifact(cfg, store, progress=False, source=chain)
    assert store.is_complete(path)
    assert sorted(p.name for p in path.glob("step_*.pt")) == [step_filename(s) for s in (1, 3, 6)]
    assert not (store.root / "work" / "dt-pretrain" / path.name).exists()  # progress cleaned up
    ckpt = load_backbone_checkpoint(resolve_pretrained(path, 3))
    assert ckpt["step"] == 3 and "h.0.attn.c_attn.weight" in ckpt["state_dict"]
    assert ckpt["state_dict"]["h.0.attn.c_attn.weight"].shape == (32, 96)  # HF Conv1D layout [in, out]
    # built once: a second call finds it without training (no source needed)
    assert build_pretrain_artifact(cfg, store, progress=False) == path
    # every parameter enters the key; unused ones do not
    assert pretrain_params(_cfg(temperature=0.5)) != pretrain_params(cfg)
    assert pretrain_params(_cfg(states=7)) != pretrain_params(cfg)
    assert pretrain_params(_cfg(steps=8, checkpoints=(1, 3, 6))) != pretrain_params(cfg)
    assert pretrain_params(_cfg(data="identity", states=6)) == pretrain_params(_cfg(data="identity", states=99))
    assert pretrain_params(_cfg(device="cpu", loss_chunk=7)) == pretrain_params(cfg)
    with pytest.raises(UserError, match="step 2"):
        resolve_pretrained(path, 2)


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(UserError, match="checkpoints"):
        _cfg(checkpoints=(1, 100))
    with pytest.raises(UserError, match="--corpus"):
        _cfg(data="text")
    with pytest.raises(UserError, match="data"):
        _cfg(data="wiki")
    with pytest.raises(UserError, match="no such file"):
        _cfg(data="text", corpus=str(tmp_path / "missing.txt"))


def test_text_pretraining_through_the_cli(tmp_path, capsys):
    from synthrl.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("The quick brown fox jumps over the lazy dog. " * 40)
    out = tmp_path / "pre"
    argv = ["run", "dt-pretrain", "--out", str(out), "--data", "text", "--corpus", str(corpus), "--steps", "3",
            "--checkpoints", "2,3", "--seq-len", "32", "--batch-size", "2", "--warmup-steps", "1",
            "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    pointer = json.loads((out / "artifact.json").read_text())
    assert set(pointer["checkpoints"]) == {"2", "3"}
    ckpt = load_backbone_checkpoint(resolve_pretrained(out, 2))
    assert ckpt["state_dict"]["wte.weight"].shape == (256, 128)  # byte-level vocabulary
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["update"]) for r in rows] == [2, 3]  # logged at checkpoints and every 100 steps
    params = json.loads((out / "params.json").read_text())
    assert params["artifact_params"]["data"] == "text" and len(params["artifact_params"]["corpus_sha256"]) == 64
    # the same --out without --resume is refused with a one-line error
    assert main(argv) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0


def test_bf16_autocast_loss_tracks_fp32():
    chain = SmallMarkovChain(states=6, temperature=0.5, length=16, seed=1)
    losses = {}
    for precision in ("fp32", "bf16"):
        trainer = Pretrainer(_cfg(steps=30, checkpoints=(30,), precision=precision, dropout=0.0, lr=3e-3),
                             source=chain)
        assert trainer.bf16 == (precision == "bf16")
        losses[precision] = [float(trainer.train_step()) for _ in range(30)]
    assert all(math.isfinite(x) for x in losses["bf16"])
    assert abs(losses["bf16"][0] - losses["fp32"][0]) < 0.02
    assert abs(sum(losses["bf16"][-5:]) - sum(losses["fp32"][-5:])) / 5 < 0.05


def test_text_source_yields_contiguous_byte_windows(tmp_path):
    from synthrl.dt.text import TextTokenSource, decode, encode

    text = "Grüße — offline RL. " * 10
    corpus = tmp_path / "c.txt"
    corpus.write_text(text, encoding="utf-8")
    assert decode(encode(text)) == text
    src = TextTokenSource(corpus, length=12)
    tokens, targets = src.sample(20, torch.Generator().manual_seed(0))
    assert targets is None and tokens.shape == (20, 12) and tokens.dtype == torch.int64
    raw = corpus.read_bytes()
    for row in tokens.tolist():
        assert bytes(row) in raw  # a contiguous slice of the corpus
    assert len({tuple(r) for r in tokens.tolist()}) > 1
    with pytest.raises(UserError, match="at least"):
        TextTokenSource(corpus, length=10_000)
