"""Tokenizers for a user's own text: characters as they are, raw bytes, words, and the book's
cleaning, each turning a whole text into one NumPy id array without per-token Python objects.

- ``char``: every character kept (any Unicode, case, punctuation, tabs, line breaks); the
  vocabulary is the text's distinct characters, most frequent first, after ``<unk>`` (id 0).
  ``decode(encode(text)) == text`` for any text whose characters are in the vocabulary.
- ``byte``: the text's UTF-8 bytes, 256 ids, nothing unknown; ``decode(encode(text)) == text``
  for every text.
- ``word``: runs of letters and digits (with inner apostrophes) and single punctuation marks,
  each line break as ``<eos>``; ``--min-freq`` and ``--max-vocab`` cut rare words to ``<unk>``.
- ``whitespace``: the runs between whitespace, each line break as ``<eos>`` (the tokens of
  pytorch/examples' word_language_model), with the same limits.
- ``book-char``, ``book-word``: the book's cleaning (letters only, lower case, lines
  concatenated) with characters or words, as :mod:`dl.data.text` does for the seed.

A tokenizer is saved in a checkpoint as :meth:`Tokenizer.to_dict` and comes back with
:func:`from_dict`, so generation and evaluation use the run's own tokenizer. Texts are fitted and
encoded a chunk at a time (:data:`CHUNK` characters), so a large text never becomes one Python
object per token; a vocabulary holds at most :data:`MAX_VOCAB` tokens.
"""

from __future__ import annotations

import collections
import re

import numpy as np

from dl.data import text as book
from dl.errors import InputError

UNK, EOS = "<unk>", "<eos>"
KINDS = ("char", "byte", "word", "whitespace", "book-char", "book-word")
MAX_VOCAB = 1 << 20  # tokens a vocabulary may hold: 2**20; past it the output layer alone
# is over a billion weights at 1,024 hidden units
CHUNK = 1 << 22  # characters fitted or encoded at a time
_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # the line breaks of str.splitlines
_LINE_BREAK = f"\\r\\n|[{_BREAKS}]"


def _chunks(text: str):
    """``text`` in pieces of about :data:`CHUNK` characters, each cut after a line break (else
    a space) so that no token spans two pieces."""
    start, size = 0, CHUNK
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            cut = text.rfind("\n", start, end)
            if cut < 0:
                cut = text.rfind(" ", start, end)
            end = cut + 1 if cut >= 0 else end
        yield text[start:end]
        start = end


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
    unit = "word"  # what a token is, in messages
    reserved = 1  # ids before the text's own tokens (<unk>, <eos>)
    bits_per = None  # "char" or "byte": the unit of bits per token reported, where meaningful

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

    kind, unit, bits_per = "char", "char", "char"

    def __init__(self, idx_to_token: list[str]):
        if not idx_to_token or idx_to_token[0] != UNK or any(len(t) != 1 for t in idx_to_token[1:]):
            raise InputError(
                "a character vocabulary starts with '<unk>' and holds single "
                "characters; the checkpoint's tokenizer is damaged"
            )
        self.idx_to_token = list(idx_to_token)
        points = _codepoints("".join(idx_to_token[1:]))
        self._ids = np.zeros(0x110000, np.int32)  # code point -> id (0: <unk>)
        self._ids[points] = np.arange(1, len(points) + 1, dtype=np.int32)
        self._chars = np.concatenate([[0xFFFD], points]).astype(np.uint32)  # <unk>: U+FFFD

    @classmethod
    def fit(cls, text: str, min_freq: int = 0, max_vocab: int | None = None) -> CharTokenizer:
        """``max_vocab`` counts every id, ``<unk>`` included."""
        counts = np.zeros(0x110000, np.int64)
        for piece in _chunks(text):
            counts += np.bincount(_codepoints(piece), minlength=0x110000)
        points = np.flatnonzero(counts).astype(np.uint32)
        kept = _ranked(
            points, counts[points], min_freq, None if max_vocab is None else max_vocab - 1
        )
        return cls([UNK] + list(kept.astype(np.uint32).tobytes().decode("utf-32-le")))

    def encode(self, text: str) -> np.ndarray:
        ids, start = np.empty(len(text), np.int32), 0
        for piece in _chunks(text):
            ids[start : start + len(piece)] = self._ids[_codepoints(piece)]
            start += len(piece)
        return ids

    def decode(self, ids) -> str:
        """``<unk>`` decodes as U+FFFD, the replacement character."""
        return self._chars[np.asarray(ids, dtype=np.int64)].tobytes().decode("utf-32-le")


class ByteTokenizer(Tokenizer):
    """The 256 values of a byte; text is its UTF-8 encoding."""

    kind, unit, bits_per, reserved = "byte", "byte", "byte", 0
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
    """Words and punctuation marks; each line break is ``<eos>`` (a last line without one has
    none, so a prefix continues its line)."""

    kind, reserved = "word", 2
    pattern = re.compile(rf"{_LINE_BREAK}|\w+(?:'\w+)*|[^\w\s]")

    def __init__(self, idx_to_token: list[str]):
        if idx_to_token[:2] != [UNK, EOS]:
            raise InputError(
                f"a {self.kind} vocabulary starts with '<unk>', '<eos>'; the checkpoint's "
                "tokenizer is damaged"
            )
        self.idx_to_token = list(idx_to_token)
        self.token_to_idx = {token: i for i, token in enumerate(idx_to_token)}
        self.token_to_idx.update({brk: 1 for brk in [*_BREAKS, "\r\n"]})  # line breaks: <eos>

    @classmethod
    def split(cls, text: str) -> list[str]:
        """The tokens of ``text``, each line break as ``<eos>`` (for a short text: a list)."""
        return [EOS if t[0] in _BREAKS else t for t in cls.pattern.findall(text)]

    @classmethod
    def fit(cls, text: str, min_freq: int = 0, max_vocab: int | None = None) -> WordTokenizer:
        """``max_vocab`` counts every id, ``<unk>`` and ``<eos>`` included."""
        if max_vocab is not None and max_vocab < 3:
            raise InputError(
                f"--max-vocab {max_vocab}: the {cls.kind} vocabulary reserves <unk> and "
                "<eos>, so give at least 3"
            )
        counter = collections.Counter()
        for piece in _chunks(text):
            counter.update(cls.pattern.findall(piece))
        for brk in [*_BREAKS, "\r\n"]:
            counter.pop(brk, None)
        kept = sorted(
            (word for word, count in counter.items() if count >= max(min_freq, 1)),
            key=lambda word: (-counter[word], word),  # as _ranked: most frequent, ties by token
        )
        return cls([UNK, EOS] + kept[: None if max_vocab is None else max_vocab - 2])

    def encode(self, text: str) -> np.ndarray:
        get = self.token_to_idx.get
        pieces = [
            np.fromiter((get(t, 0) for t in found), dtype=np.int32, count=len(found))
            for found in map(self.pattern.findall, _chunks(text))
        ]
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int32)

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


class WhitespaceTokenizer(WordTokenizer):
    """The runs of characters between whitespace; each line break is ``<eos>``
    (pytorch/examples' word_language_model: ``line.split() + ['<eos>']``)."""

    kind = "whitespace"
    pattern = re.compile(rf"{_LINE_BREAK}|[^\s]+")


class BookTokenizer(Tokenizer):
    """The book's cleaning (letters only, lower case; lines concatenated as the book does)
    with character or word tokens, over a :class:`dl.data.text.Vocab`."""

    def __init__(self, kind: str, idx_to_token: list[str]):
        self.kind, self.token = kind, kind.removeprefix("book-")
        self.unit, self.bits_per = ("char", "char") if self.token == "char" else ("word", None)
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


WORD_KINDS = {"word": WordTokenizer, "whitespace": WhitespaceTokenizer}


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
    if kind in WORD_KINDS:
        tokenizer = WORD_KINDS[kind].fit(text, min_freq, max_vocab)
    elif max_vocab is not None:
        raise InputError(
            f"--max-vocab with --token {kind}: the book's vocabulary keeps every "
            "token; use --min-freq, or --token char or word"
        )
    else:
        tokenizer = BookTokenizer.fit(kind, text, min_freq)
    if len(tokenizer) > MAX_VOCAB:
        raise InputError(
            f"--token {kind}: the text has {len(tokenizer):,} distinct tokens, more than the "
            f"{MAX_VOCAB:,} a vocabulary may hold; give --max-vocab N (e.g. 50000) "
            "or --min-freq N"
        )
    return tokenizer


def from_dict(values: dict) -> Tokenizer:
    """The tokenizer that :meth:`Tokenizer.to_dict` wrote."""
    kind = values.get("kind")
    if kind == "byte":
        return ByteTokenizer()
    if kind == "char":
        return CharTokenizer(values["tokens"])
    if kind in WORD_KINDS:
        return WORD_KINDS[kind](values["tokens"])
    if kind in ("book-char", "book-word"):
        return BookTokenizer(kind, values["tokens"])
    raise InputError(
        f"tokenizer kind {kind!r} is not one this dl knows ({', '.join(KINDS)}); upgrade dl"
    )
