"""A text encoded once: its token ids as one int32 NumPy array, cached on disk by the text's
SHA-256 and the tokenizer, memory-mapped, and split in time order.

The cache lives in ``<data dir>/corpus`` (:func:`dl.data.hub.cache_dir`); an entry is written
through a temporary file and one rename, so a killed run leaves none half-written, and a
resumed run maps the ids without tokenizing again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np

from dl.data.hub import cache_dir as data_dir
from dl.data.tokenizers import Tokenizer
from dl.errors import InputError
from dl.files import atomic_write


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(text_sha256: str, tokenizer: Tokenizer) -> str:
    """Names the ids of one text under one tokenizer (kind and vocabulary)."""
    spec = json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{text_sha256}\n{spec}".encode()).hexdigest()[:32]


def encoded(
    text: str, text_sha256: str, tokenizer: Tokenizer, directory: str | os.PathLike | None = None
) -> np.ndarray:
    """``(N,)`` int32 ids of ``text``, read-only and memory-mapped from the cache, encoding
    and caching them first when they are not there. ``directory`` defaults to
    ``<data dir>/corpus``."""
    path = Path(directory or data_dir() / "corpus") / f"{cache_key(text_sha256, tokenizer)}.npy"
    if path.is_file():
        try:
            return np.load(path, mmap_mode="r")
        except (ValueError, OSError):
            pass  # damaged: encode again and replace it
    ids = tokenizer.encode(text)
    buffer = io.BytesIO()
    np.save(buffer, ids.astype(np.int32, copy=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, buffer.getvalue())
    return np.load(path, mmap_mode="r")


def split(
    ids: np.ndarray, val_fraction: float = 0.0, test_fraction: float = 0.0, min_tokens: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train, val, test)``: the first part of ``ids`` for training, then the validation
    and the test parts, in time order (views, no copies). A part asked for but shorter than
    ``min_tokens`` is refused, naming the fraction to raise."""
    for name, value in (("--val-fraction", val_fraction), ("--test-fraction", test_fraction)):
        if not 0 <= value < 1:
            raise InputError(f"{name} {value}: give a fraction in [0, 1)")
    if val_fraction + test_fraction >= 1:
        raise InputError(
            f"--val-fraction {val_fraction} and --test-fraction {test_fraction} "
            "leave nothing to train on; keep their sum below 1"
        )
    n = len(ids)
    num_test, num_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    train_end, val_end = n - num_test - num_val, n - num_test
    for name, value, size in (
        ("--val-fraction", val_fraction, num_val),
        ("--test-fraction", test_fraction, num_test),
    ):
        if value and size < min_tokens:
            raise InputError(
                f"{name} {value} holds out {size} of {n:,} tokens, fewer than the "
                f"{min_tokens} one batch needs; raise it or use a longer text"
            )
    return ids[:train_end], ids[train_end:val_end], ids[val_end:]
