"""Language pre-training data for the DT+Wiki baseline: a byte-level tokenizer over a user's corpus.

``--data text --corpus FILE`` reads a UTF-8 text file the user supplies (WikiText-103 in the paper;
nothing is downloaded). Tokens are the file's bytes (vocabulary 256: every text is representable, no
tokenizer to train or store). Sequences are windows of ``length`` tokens at uniform random offsets;
targets are the next tokens, as for the Markov-chain data.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from synthrl.errors import UserError
from synthrl.utils.io import sha256_file

TOKENIZER = "bytes"
VOCAB_SIZE = 256


@lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def corpus_sha256(path: str | os.PathLike) -> str:
    p = Path(path).expanduser().absolute()
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UserError(f"--corpus {path}: no such file") from None
    return _sha256_cached(str(p), st.st_size, st.st_mtime_ns)


def encode(text: str) -> np.ndarray:
    """Byte-level tokens of ``text`` (uint8)."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def decode(tokens) -> str:
    return bytes(np.asarray(tokens, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")


class TextTokenSource:
    """TokenSource over a text corpus (same interface as synthrl.synthetic's sources)."""

    vocab_size = VOCAB_SIZE
    target_vocab_size = VOCAB_SIZE

    def __init__(self, corpus: str | os.PathLike, length: int = 1024, device: str = "cpu"):
        path = Path(corpus).expanduser()
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except FileNotFoundError:
            raise UserError(f"--corpus {corpus}: no such file") from None
        except OSError as e:
            raise UserError(f"--corpus {corpus}: cannot read ({e})") from None
        if data.size < length + 1:
            raise UserError(f"--corpus {corpus}: {data.size} bytes, need at least {length + 1} for sequences of {length}")
        self.path = path
        self.length = length
        self.sha256 = corpus_sha256(path)
        self.tokens = torch.from_numpy(data).to(device)  # uint8 on the device; widened per batch
        self._offsets = torch.arange(length, device=device)

    def sample(self, num_sequences: int, generator: torch.Generator):
        n_starts = self.tokens.numel() - self.length + 1
        starts = torch.randint(0, n_starts, (num_sequences, 1), generator=generator, device=self.tokens.device)
        return self.tokens[starts + self._offsets].long(), None

    def metadata(self) -> dict:
        return {"kind": "text", "tokenizer": TOKENIZER, "vocab_size": VOCAB_SIZE, "corpus": str(self.path),
                "corpus_sha256": self.sha256, "corpus_tokens": int(self.tokens.numel()), "length": self.length}
