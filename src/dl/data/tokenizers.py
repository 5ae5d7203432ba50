"""Tokenizers for a user's own text: characters as they are, raw bytes, words, and the book's
cleaning, each turning a whole text into one NumPy id array without per-token Python objects.

- ``char``: every character kept (any Unicode, case, punctuation, tabs, line breaks); the
  vocabulary is the text's distinct characters, most frequent first, after ``<unk>`` (id 0).
  ``decode(encode(text)) == text`` for any text whose characters are in the vocabulary.
- ``byte``: the text's UTF-8 bytes, 256 ids, nothing unknown; ``decode(encode(text)) == text``
  for every text.
- ``word``: runs of letters and digits (with inner apostrophes) and single punctuation marks,
  line ends as ``<eos>``; ``--min-freq`` and ``--max-vocab`` cut rare words to ``<unk>``.
- ``book-char``, ``book-word``: the book's cleaning (letters only, lower case, lines
  concatenated) with characters or words, as :mod:`dl.data.text` does for the seed.

A tokenizer is saved in a checkpoint as :meth:`Tokenizer.to_dict` and comes back with
:func:`from_dict`, so generation and evaluation use the run's own tokenizer.
"""

from __future__ import annotations

import re

import numpy as np

from dl.data import text as book
from dl.errors import InputError

UNK, EOS = "<unk>", "<eos>"
KINDS = ("char", "byte", "word", "book-char", "book-word")
_WORDS = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def _codepoints(text: str) -> np.ndarray:
    """``text`` as one uint32 code point per character."""
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def _ranked(tokens: np.ndarray, counts: np.ndarray, min_freq: int, max_vocab: int | None):
    """Distinct ``tokens`` with their ``counts``: most frequent first (ties by token), those
    seen fewer than ``min_freq`` times left out, at most ``max_vocab`` of them."""
    order = np.lexsort((tokens, -counts))
    kept = order[counts[order] >= max(min_freq, 1)]
    return tokens[kept[:max_vocab] if max_vocab is not None else kept]


class Tokenizer:
    """Text <-> ``(N,)`` int32 ids over :attr:`idx_to_token` (``<unk>`` is id 0 where a token
    can be unknown)."""

    kind: str
    idx_to_token: list[str]

    def __len__(self) -> int:
        return len(self.idx_to_token)

    @property
    def unk(self) -> int:
        return 0

    def encode(self, text: str) -> np.ndarray:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def count_unknown(self, text: str) -> int:
        """How many tokens of ``text`` are outside the vocabulary (they encode as ``<unk>``)."""
        return int(np.count_nonzero(self.encode(text) == self.unk))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "tokens": list(self.idx_to_token)}


class CharTokenizer(Tokenizer):
    """Every character is a token."""

    kind = "char"

    def __init__(self, idx_to_token: list[str]):
        if not idx_to_token or idx_to_token[0] != UNK or any(len(t) != 1 for t in idx_to_token[1:]):
            raise InputError(
                "a character vocabulary starts with '<unk>' and holds single "
                "characters; the checkpoint's tokenizer is damaged"
            )
        self.idx_to_token = list(idx_to_token)
        points = _codepoints("".join(idx_to_token[1:]))
        self._sorted = np.sort(points)
        self._ids = np.argsort(points, kind="stable").astype(np.int32) + 1
        self._chars = np.concatenate([[0xFFFD], points]).astype(np.uint32)  # <unk>: U+FFFD

    @classmethod
    def fit(cls, text: str, min_freq: int = 0, max_vocab: int | None = None) -> CharTokenizer:
        """``max_vocab`` counts every id, ``<unk>`` included."""
        points, counts = np.unique(_codepoints(text), return_counts=True)
        kept = _ranked(points, counts, min_freq, None if max_vocab is None else max_vocab - 1)
        return cls([UNK] + list(kept.astype(np.uint32).tobytes().decode("utf-32-le")))

    def encode(self, text: str) -> np.ndarray:
        points = _codepoints(text)
        where = np.searchsorted(self._sorted, points).clip(0, max(len(self._sorted) - 1, 0))
        found = self._sorted[where] == points if len(self._sorted) else np.zeros(len(points), bool)
        return np.where(found, self._ids[where] if len(self._ids) else 0, 0).astype(np.int32)

    def decode(self, ids) -> str:
        """``<unk>`` decodes as U+FFFD, the replacement character."""
        return self._chars[np.asarray(ids, dtype=np.int64)].tobytes().decode("utf-32-le")


class ByteTokenizer(Tokenizer):
    """The 256 values of a byte; text is its UTF-8 encoding."""

    kind = "byte"
    idx_to_token = [f"<0x{b:02X}>" for b in range(256)]

    @property
    def unk(self) -> int:
        return -1  # no byte is unknown

    def encode(self, text: str | bytes) -> np.ndarray:
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        return np.frombuffer(data, dtype=np.uint8).astype(np.int32)

    def decode(self, ids) -> str:
        """Invalid UTF-8 (a cut multi-byte character) decodes as U+FFFD."""
        return np.asarray(ids, dtype=np.uint8).tobytes().decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"kind": self.kind}


class WordTokenizer(Tokenizer):
    """Words and punctuation marks; each line ends with ``<eos>``."""

    kind = "word"

    def __init__(self, idx_to_token: list[str]):
        if idx_to_token[:2] != [UNK, EOS]:
            raise InputError(
                "a word vocabulary starts with '<unk>', '<eos>'; the checkpoint's "
                "tokenizer is damaged"
            )
        self.idx_to_token = list(idx_to_token)
        self.token_to_idx = {token: i for i, token in enumerate(idx_to_token)}

    @staticmethod
    def split(text: str) -> list[str]:
        """The tokens of ``text``: words and marks of each line, then ``<eos>``."""
        tokens = []
        for line in text.splitlines():
            tokens.extend(_WORDS.findall(line))
            tokens.append(EOS)
        return tokens

    @classmethod
    def fit(cls, text: str, min_freq: int = 0, max_vocab: int | None = None) -> WordTokenizer:
        """``max_vocab`` counts every id, ``<unk>`` and ``<eos>`` included."""
        if max_vocab is not None and max_vocab < 3:
            raise InputError(
                f"--max-vocab {max_vocab}: the word vocabulary reserves <unk> and "
                "<eos>, so give at least 3"
            )
        words, counts = np.unique(np.array(cls.split(text), dtype=object), return_counts=True)
        keep = words != EOS
        words, counts = words[keep].astype(str), counts[keep]
        kept = _ranked(words, counts, min_freq, None if max_vocab is None else max_vocab - 2)
        return cls([UNK, EOS] + kept.tolist())

    def encode(self, text: str) -> np.ndarray:
        get = self.token_to_idx.get
        return np.fromiter((get(t, 0) for t in self.split(text)), dtype=np.int32)

    def decode(self, ids) -> str:
        """Tokens joined by spaces; ``<eos>`` ends a line."""
        pieces = []
        for token in (self.idx_to_token[i] for i in np.asarray(ids).tolist()):
            if token == EOS:
                pieces.append("\n")
                continue
            if pieces and pieces[-1] != "\n":
                pieces.append(" ")
            pieces.append(token)
        return "".join(pieces)


class BookTokenizer(Tokenizer):
    """The book's cleaning (letters only, lower case; lines concatenated as the book does)
    with character or word tokens, over a :class:`dl.data.text.Vocab`."""

    def __init__(self, kind: str, idx_to_token: list[str]):
        self.kind, self.token = kind, kind.removeprefix("book-")
        self.vocab = book.Vocab.from_tokens(idx_to_token)
        self.idx_to_token = self.vocab.idx_to_token

    @classmethod
    def fit(cls, kind: str, text: str, min_freq: int = 0) -> BookTokenizer:
        tokens = book.tokenize(book.normalize_lines(text), kind.removeprefix("book-"))
        return cls(kind, book.Vocab(tokens, min_freq=min_freq).idx_to_token)

    def tokens(self, text: str) -> list[str]:
        return [t for line in book.tokenize(book.normalize_lines(text), self.token) for t in line]

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self.vocab[self.tokens(text)], dtype=np.int32)

    def decode(self, ids) -> str:
        return ("" if self.token == "char" else " ").join(self.vocab.to_tokens(list(ids)))


def fit(kind: str, text: str, min_freq: int = 0, max_vocab: int | None = None) -> Tokenizer:
    """A tokenizer of ``kind`` (one of :data:`KINDS`) fitted to ``text``."""
    if kind not in KINDS:
        raise InputError(f"--token {kind!r}: give one of {', '.join(KINDS)}")
    if max_vocab is not None and max_vocab < 2:
        raise InputError(f"--max-vocab {max_vocab}: <unk> takes one id; give at least 2")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer.fit(text, min_freq, max_vocab)
    if kind == "word":
        return WordTokenizer.fit(text, min_freq, max_vocab)
    if max_vocab is not None:
        raise InputError(
            f"--max-vocab with --token {kind}: the book's vocabulary keeps every "
            "token; use --min-freq, or --token char or word"
        )
    return BookTokenizer.fit(kind, text, min_freq)


def from_dict(values: dict) -> Tokenizer:
    """The tokenizer that :meth:`Tokenizer.to_dict` wrote."""
    kind = values.get("kind")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer(values["tokens"])
    if kind == "word":
        return WordTokenizer(values["tokens"])
    if kind in ("book-char", "book-word"):
        return BookTokenizer(kind, values["tokens"])
    raise InputError(
        f"tokenizer kind {kind!r} is not one this dl knows ({', '.join(KINDS)}); upgrade dl"
    )
