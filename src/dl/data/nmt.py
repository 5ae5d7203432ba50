"""The book's English-French translation data (d2l 0.17, section 9.5), in NumPy.

``fra-eng.zip`` holds ``fra-eng/fra.txt``, one ``English<TAB>French`` pair a line. The text is
lower-cased and punctuation split off (:func:`preprocess_nmt`), split into word tokens
(:func:`tokenize_nmt`), mapped through a :class:`dl.data.text.Vocab` per language and cut or
padded to ``num_steps`` tokens ending with ``<eos>`` (:func:`build_array_nmt`). Backends turn
the arrays into tensors; :class:`ArrayBatches` serves them in shuffled minibatches.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

from dl.data import hub
from dl.data.text import Vocab
from dl.errors import InputError
from dl.validate import check_positive

RESERVED_TOKENS = ["<pad>", "<bos>", "<eos>"]
_PUNCTUATION = frozenset(",.!?")


def read_data_nmt() -> str:
    """The raw text of ``fra.txt`` (downloaded and unpacked on first use)."""
    data_dir = hub.download_extract("fra-eng")
    return (data_dir / "fra.txt").read_text(encoding="utf-8")


def preprocess_nmt(text: str) -> str:
    """Non-breaking spaces to spaces, lower case, a space before ``, . ! ?`` not after one."""
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    out = [
        " " + char if i > 0 and char in _PUNCTUATION and text[i - 1] != " " else char
        for i, char in enumerate(text)
    ]
    return "".join(out)


def tokenize_nmt(text: str, num_examples: int | None = None):
    """``(source, target)``: word tokens of each tab-separated pair, from the first
    ``num_examples + 1`` lines (the book's count) when given; lines without one tab are skipped."""
    source, target = [], []
    for i, line in enumerate(text.split("\n")):
        if num_examples and i > num_examples:
            break
        parts = line.split("\t")
        if len(parts) == 2:
            source.append(parts[0].split(" "))
            target.append(parts[1].split(" "))
    return source, target


def truncate_pad(line: list, num_steps: int, padding_token) -> list:
    """``line`` cut to ``num_steps`` items, or padded to that length with ``padding_token``."""
    if len(line) > num_steps:
        return line[:num_steps]
    return line + [padding_token] * (num_steps - len(line))


def build_array_nmt(lines, vocab: Vocab, num_steps: int):
    """``(array: (len(lines), num_steps) int64, valid_len: (len(lines),) int64)``: each line's
    ids and ``<eos>``, truncated or padded; ``valid_len`` counts the tokens that are not
    ``<pad>``."""
    check_positive("num_steps", num_steps, integer=True)
    rows = [
        truncate_pad(vocab[line] + [vocab["<eos>"]], num_steps, vocab["<pad>"]) for line in lines
    ]
    array = np.array(rows, dtype=np.int64).reshape(len(rows), num_steps)
    return array, (array != vocab["<pad>"]).sum(axis=1)


def nmt_arrays(num_steps: int, num_examples: int = 600):
    """``((src, src_valid_len, tgt, tgt_valid_len), src_vocab, tgt_vocab)`` of the first
    ``num_examples`` pairs, as the book's ``load_data_nmt`` builds them (tokens seen at
    least twice, plus ``<unk>``, ``<pad>``, ``<bos>``, ``<eos>``)."""
    source, target = tokenize_nmt(preprocess_nmt(read_data_nmt()), num_examples)
    src_vocab = Vocab(source, min_freq=2, reserved_tokens=RESERVED_TOKENS)
    tgt_vocab = Vocab(target, min_freq=2, reserved_tokens=RESERVED_TOKENS)
    src_array, src_valid_len = build_array_nmt(source, src_vocab, num_steps)
    tgt_array, tgt_valid_len = build_array_nmt(target, tgt_vocab, num_steps)
    return (src_array, src_valid_len, tgt_array, tgt_valid_len), src_vocab, tgt_vocab


class ArrayBatches:
    """Minibatches of rows of equal-length arrays, reshuffled every epoch (the last batch may
    be smaller), each array passed through ``convert`` (a backend's tensor constructor).

    Shuffles with Python's :mod:`random` (or ``rng``), so ``random.seed`` fixes the order.
    """

    def __init__(
        self,
        arrays: Sequence[np.ndarray],
        batch_size: int,
        shuffle: bool = True,
        convert: Callable = np.asarray,
        rng=random,
    ):
        check_positive("batch_size", batch_size, integer=True)
        lengths = {len(a) for a in arrays}
        if len(lengths) != 1:
            raise InputError(f"the arrays must have the same number of rows, got {sorted(lengths)}")
        self.arrays, self.batch_size, self.shuffle = list(arrays), batch_size, shuffle
        self.convert, self.rng = convert, rng

    def __len__(self) -> int:
        return -(-len(self.arrays[0]) // self.batch_size)

    def __iter__(self):
        order = list(range(len(self.arrays[0])))
        if self.shuffle:
            self.rng.shuffle(order)
        for start in range(0, len(order), self.batch_size):
            rows = np.array(order[start : start + self.batch_size])
            yield tuple(self.convert(a[rows]) for a in self.arrays)
