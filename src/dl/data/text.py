"""Text: reading, tokenizing and the vocabulary, with the book's (d2l 0.17) semantics.

The Time Machine is read through :func:`dl.data.hub.download`; any other UTF-8 text
file goes through :func:`read_text_file`, which names the file and byte offset of bad input.
"""

from __future__ import annotations

import collections
import errno
import os
import re
from pathlib import Path

from dl.data import hub
from dl.errors import InputError

TOKEN_KINDS = ("word", "char")
_NOT_LETTERS = re.compile("[^A-Za-z]+")


def read_text_file(path: str | os.PathLike, binary: bool = False) -> str | bytes:
    """The content of a UTF-8 text file (its bytes with ``binary``); clear errors for missing,
    empty, binary (NUL bytes) or non-UTF-8 files, saying how to train on the bytes instead."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory; pass a text file", str(path))
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such file; check the path", str(path)) from None
    except PermissionError:
        raise PermissionError(
            errno.EACCES, "not readable; check its permissions", str(path)
        ) from None
    if not raw.strip():
        raise InputError(f"{path}: the file is empty; give a file with some text")
    if binary:
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); "
            "convert it to UTF-8 first, for example with iconv, or train on its raw bytes "
            "with --token byte"
        ) from None
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise InputError(
            f"{path}: a binary file, not text: it holds NUL bytes, the first at offset {nul}; "
            "train on its raw bytes with --token byte"
        )
    return text


def normalize_lines(text: str) -> list[str]:
    """The book's cleaning: each line keeps letters only (runs of others become one space),
    lower-cased."""
    return [_NOT_LETTERS.sub(" ", line).strip().lower() for line in text.splitlines()]


def read_time_machine() -> list[str]:
    """The Time Machine as 3,221 cleaned lines (downloaded on first use)."""
    return normalize_lines(hub.download("time_machine").read_text(encoding="utf-8"))


def tokenize(lines: list[str], token: str = "word") -> list[list[str]]:
    """Split each line into word or character tokens."""
    if token == "word":
        return [line.split() for line in lines]
    if token == "char":
        return [list(line) for line in lines]
    raise InputError(f"unknown token type {token!r}; use one of {', '.join(TOKEN_KINDS)}")


def count_corpus(tokens) -> collections.Counter:
    """Token frequencies of a flat token list or a list of token lines."""
    if len(tokens) == 0 or isinstance(tokens[0], list):
        tokens = [token for line in tokens for token in line]
    return collections.Counter(tokens)


class Vocab:
    """Token <-> index map: ``<unk>`` is 0, reserved tokens next, then by descending
    frequency (ties in order of first appearance); tokens rarer than ``min_freq`` are left out."""

    def __init__(self, tokens=None, min_freq: int = 0, reserved_tokens=None):
        counter = count_corpus(tokens or [])
        self._token_freqs = sorted(counter.items(), key=lambda item: item[1], reverse=True)
        self.idx_to_token = ["<unk>"] + list(reserved_tokens or [])
        self.token_to_idx = {token: idx for idx, token in enumerate(self.idx_to_token)}
        for token, freq in self._token_freqs:
            if freq < min_freq:
                break
            if token not in self.token_to_idx:
                self.idx_to_token.append(token)
                self.token_to_idx[token] = len(self.idx_to_token) - 1

    @classmethod
    def from_tokens(cls, idx_to_token: list[str]) -> Vocab:
        """The vocabulary whose index ``i`` is ``idx_to_token[i]`` (as stored in a checkpoint)."""
        if (
            not idx_to_token
            or idx_to_token[0] != "<unk>"
            or len(set(idx_to_token)) != len(idx_to_token)
        ):
            raise InputError("a vocabulary list must start with '<unk>' and hold each token once")
        return cls(reserved_tokens=idx_to_token[1:])

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, tokens):
        """Index of a token (unknown -> ``unk``), or a list of indices for a list or tuple."""
        if not isinstance(tokens, (list, tuple)):
            return self.token_to_idx.get(tokens, self.unk)
        return [self[token] for token in tokens]

    def to_tokens(self, indices):
        """Token of an index, or a list of tokens for a list, tuple or array of indices."""
        if hasattr(indices, "tolist"):
            indices = indices.tolist()
        if not isinstance(indices, (list, tuple)):
            return self.idx_to_token[indices]
        return [self.idx_to_token[index] for index in indices]

    @property
    def unk(self) -> int:
        return 0

    @property
    def token_freqs(self) -> list[tuple[str, int]]:
        return self._token_freqs


def corpus_from_lines(
    lines: list[str], token: str = "char", max_tokens: int = -1, min_freq: int = 0
) -> tuple[list[int], Vocab]:
    """Token ids of all lines concatenated (no separator, as in the book) and their vocabulary."""
    tokens = tokenize(lines, token)
    vocab = Vocab(tokens, min_freq=min_freq)
    corpus = [vocab[tok] for line in tokens for tok in line]
    if max_tokens > 0:
        corpus = corpus[:max_tokens]
    return corpus, vocab


def load_corpus_time_machine(
    max_tokens: int = -1, *, token: str = "char", min_freq: int = 0
) -> tuple[list[int], Vocab]:
    """The Time Machine's token ids and vocabulary: 170,580 characters over 28 tokens."""
    return corpus_from_lines(read_time_machine(), token, max_tokens, min_freq)
