"""A text encoded once: its token ids as one int32 NumPy array, cached on disk by the text's
SHA-256 and the tokenizer, memory-mapped, and split in time order; :func:`load` does it for the
texts of a run (a training text and held-out ones), with one vocabulary fitted over all.

The cache lives in ``$DL_CACHE_DIR``, else ``<data dir>/corpus`` (:func:`cache_dir`); an entry
is written through a temporary file and one rename, so a killed run leaves none half-written,
and a resumed run maps the ids without tokenizing again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dl.data import hub, tokenizers
from dl.data.hub import cache_dir as data_dir
from dl.data.text import read_text_file
from dl.data.tokenizers import Tokenizer
from dl.errors import InputError

TIME_MACHINE = "The Time Machine"


def sha256_of(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Directory of the token cache: ``$DL_CACHE_DIR``, else ``<data dir>/corpus``."""
    override = os.environ.get("DL_CACHE_DIR")
    return Path(override).expanduser() if override else data_dir() / "corpus"


def cache_key(text_sha256: str, tokenizer: Tokenizer) -> str:
    """Names the ids of one text under one tokenizer (kind and vocabulary)."""
    spec = json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(f"{text_sha256}\n{spec}".encode()).hexdigest()[:32]


def encoded(
    text: str | bytes | Callable[[], str | bytes],
    text_sha256: str,
    tokenizer: Tokenizer,
    directory: str | os.PathLike | None = None,
) -> np.ndarray:
    """``(N,)`` int32 ids of ``text``, read-only and memory-mapped from the cache, encoding
    and caching them first when they are not there. ``text`` may be a function returning it,
    called only then (a resumed run need not read its text). ``directory`` defaults to
    :func:`cache_dir`; where it cannot be written, the ids stay in memory, uncached."""
    path = Path(directory or cache_dir()) / f"{cache_key(text_sha256, tokenizer)}.npy"
    if path.is_file():
        try:
            return np.load(path, mmap_mode="r")
        except (ValueError, OSError):
            pass  # damaged: encode again and replace it
    ids = tokenizer.encode(text() if callable(text) else text).astype(np.int32, copy=False)
    try:
        _save(path, ids)
    except OSError:
        ids.flags.writeable = False
        return ids
    del ids
    return np.load(path, mmap_mode="r")


def _save(path: Path, ids: np.ndarray) -> None:
    """``np.save`` through a temporary file and one rename (no copy of ``ids`` in memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, ids)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


@dataclasses.dataclass(frozen=True)
class TextFile:
    """A text file of a run, not read yet: ``path``, its name for messages (``source``) and the
    SHA-256 of its bytes; ``binary``: read as bytes (for byte tokens)."""

    path: Path
    source: str
    sha256: str
    binary: bool = False

    @classmethod
    def open(cls, path: str | os.PathLike | None, binary: bool = False) -> TextFile:
        """The file at ``path``, or The Time Machine (downloaded on first use) for None."""
        if path is None:
            path, source = hub.download("time_machine"), TIME_MACHINE
        else:
            source = str(path)
            if not Path(path).is_file():
                read_text_file(path)  # raises, saying what is wrong with the path
        try:
            sha256 = sha256_of(path)
        except OSError:
            read_text_file(path)  # says what is wrong, in the words of every text read
            raise
        return cls(Path(path), source, sha256, binary)

    def read(self) -> str | bytes:
        """The text (bytes if :attr:`binary`); refuses empty, binary or non-UTF-8 files."""
        return read_text_file(self.path, self.binary)


def load(
    texts: list[TextFile],
    kind: str,
    min_freq: int = 0,
    max_vocab: int | None = None,
    tokenizer: Tokenizer | None = None,
    directory: str | os.PathLike | None = None,
    fit_on: int | None = None,
) -> tuple[Tokenizer, list[np.ndarray]]:
    """``(tokenizer, ids of each text)``: ``tokenizer``, else one of ``kind`` fitted over every
    text (as nanoGPT and word_language_model do) or over the first ``fit_on`` texts; ids as
    :func:`encoded` gives them, so a known tokenizer reads a text only when its ids are not
    cached."""
    contents = []
    if tokenizer is None:
        contents = [text.read() for text in texts]
        fitted = contents[:fit_on]
        whole = "" if kind == "byte" else fitted[0] if len(fitted) == 1 else "\n".join(fitted)
        tokenizer = tokenizers.fit(kind, whole, min_freq, max_vocab)
    ids = [
        encoded(contents[i] if contents else text.read, text.sha256, tokenizer, directory)
        for i, text in enumerate(texts)
    ]
    return tokenizer, ids
