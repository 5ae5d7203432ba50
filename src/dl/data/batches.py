"""Minibatches of token ids for language models, with the book's (d2l 0.17) algorithms.

Both iterators draw from Python's :mod:`random` exactly as the book's library does, so after
the same ``random.seed(...)`` they yield the same batches; pass ``rng=random.Random(seed)`` to
draw from a generator of your own instead (the command line does, for exact resumes). Batches
are NumPy int arrays ``X, Y: (batch_size, num_steps)`` with ``Y`` the next token of ``X``;
backends convert them. A corpus is a list of ids or a NumPy array (a memory-mapped one too),
read in place: an array is never turned into a list.
"""

from __future__ import annotations

import numbers
import random
from collections.abc import Iterator, Sequence

import numpy as np

from dl.data.text import Vocab, corpus_from_lines, load_corpus_time_machine
from dl.errors import InputError

Batch = tuple[np.ndarray, np.ndarray]
Corpus = Sequence[int] | np.ndarray  # token ids: a list, or a (N,) int array (memory-mapped)


def _check_sizes(corpus: Corpus, batch_size: int, num_steps: int, random_iter: bool) -> None:
    """Raise InputError unless every random offset still leaves at least one full batch."""
    for name, value in (("batch_size", batch_size), ("num_steps", num_steps)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
            raise InputError(
                f"{name} must be a positive integer (corpus of {len(corpus)} tokens, "
                f"batch_size={batch_size!r}, num_steps={num_steps!r})"
            )
    worst_offset = num_steps - 1 if random_iter else num_steps
    usable = len(corpus) - worst_offset - 1
    enough = usable // num_steps >= batch_size if random_iter else usable // batch_size >= num_steps
    if not enough:
        need = batch_size * num_steps + worst_offset + 1
        raise InputError(
            f"a corpus of {len(corpus)} tokens cannot make one batch of batch_size {batch_size} "
            f"x num_steps {num_steps} (needs at least {need} tokens); use a longer text or "
            "smaller sizes"
        )


def seq_data_iter_random(
    corpus: Corpus, batch_size: int, num_steps: int, *, rng=random
) -> Iterator[Batch]:
    """Batches of subsequences at random positions; each is used at most once per epoch."""
    _check_sizes(corpus, batch_size, num_steps, random_iter=True)
    return _random_batches(corpus, batch_size, num_steps, rng)


def _random_batches(corpus, batch_size, num_steps, rng):
    corpus = corpus[rng.randint(0, num_steps - 1) :]
    num_subseqs = (len(corpus) - 1) // num_steps
    initial_indices = list(range(0, num_subseqs * num_steps, num_steps))
    rng.shuffle(initial_indices)
    num_batches = num_subseqs // batch_size
    for i in range(0, batch_size * num_batches, batch_size):
        starts = initial_indices[i : i + batch_size]
        X = [corpus[j : j + num_steps] for j in starts]
        Y = [corpus[j + 1 : j + 1 + num_steps] for j in starts]
        yield np.array(X, dtype=np.int32), np.array(Y, dtype=np.int32)


def seq_data_iter_sequential(
    corpus: Corpus, batch_size: int, num_steps: int, *, rng=random
) -> Iterator[Batch]:
    """Batches whose rows continue the rows of the previous batch (state can be carried)."""
    _check_sizes(corpus, batch_size, num_steps, random_iter=False)
    return _sequential_batches(corpus, batch_size, num_steps, rng)


def eval_batches(corpus: Corpus, batch_size: int, num_steps: int) -> Iterator[Batch]:
    """Sequential batches from offset 0, for evaluation: the corpus is cut into ``batch_size``
    rows (fewer if rows would be shorter than ``num_steps``) and walked ``num_steps`` at a
    time, the last batch shorter, so every token but a remainder of fewer than ``rows`` is
    predicted once."""
    if len(corpus) < 2:
        raise InputError(
            f"a corpus of {len(corpus)} tokens has nothing to predict; "
            "evaluation needs at least 2 tokens"
        )
    rows = max(1, min(batch_size, (len(corpus) - 1) // num_steps))
    columns = (len(corpus) - 1) // rows
    Xs = np.asarray(corpus[: rows * columns], dtype=np.int32).reshape(rows, columns)
    Ys = np.asarray(corpus[1 : rows * columns + 1], dtype=np.int32).reshape(rows, columns)
    for i in range(0, columns, num_steps):
        yield _own(Xs[:, i : i + num_steps]), _own(Ys[:, i : i + num_steps])


def _own(batch: np.ndarray) -> np.ndarray:
    """``batch``, copied where it is a view of a read-only corpus (a memory-mapped one), so
    that frameworks may take it as their own."""
    return batch if batch.flags.writeable else batch.copy()


def _sequential_batches(corpus, batch_size, num_steps, rng):
    offset = rng.randint(0, num_steps)
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = np.asarray(corpus[offset : offset + num_tokens], dtype=np.int32).reshape(batch_size, -1)
    Ys = np.asarray(corpus[offset + 1 : offset + 1 + num_tokens], dtype=np.int32).reshape(
        batch_size, -1
    )
    num_batches = Xs.shape[1] // num_steps
    for i in range(0, num_steps * num_batches, num_steps):
        yield _own(Xs[:, i : i + num_steps]), _own(Ys[:, i : i + num_steps])


class SeqDataLoader:
    """Iterable over one epoch of minibatches of ``corpus`` (a new random offset each epoch)."""

    def __init__(
        self,
        batch_size: int,
        num_steps: int,
        use_random_iter: bool = False,
        max_tokens: int = 10000,
        *,
        corpus: Corpus | None = None,
        vocab: Vocab | None = None,
        token: str = "char",
        rng=random,
    ):
        if corpus is None:
            corpus, vocab = load_corpus_time_machine(max_tokens, token=token)
        _check_sizes(corpus, batch_size, num_steps, use_random_iter)
        self.data_iter_fn = seq_data_iter_random if use_random_iter else seq_data_iter_sequential
        self.corpus, self.vocab = corpus, vocab
        self.batch_size, self.num_steps = batch_size, num_steps
        self.use_random_iter, self.rng = use_random_iter, rng

    def __iter__(self) -> Iterator[Batch]:
        return self.data_iter_fn(self.corpus, self.batch_size, self.num_steps, rng=self.rng)

    @property
    def num_batches(self) -> int:
        """Batches of an epoch at offset 0, the most: a random offset leaves as many or one
        fewer."""
        B, T, usable = self.batch_size, self.num_steps, len(self.corpus) - 1
        return (usable // T) // B if self.use_random_iter else (usable // B) // T


def load_data_time_machine(
    batch_size: int,
    num_steps: int,
    use_random_iter: bool = False,
    max_tokens: int = 10000,
    *,
    token: str = "char",
):
    """``(train_iter, vocab)`` over The Time Machine; with (32, 35) an epoch has 8 batches."""
    data_iter = SeqDataLoader(batch_size, num_steps, use_random_iter, max_tokens, token=token)
    return data_iter, data_iter.vocab


def load_data_text(
    lines: list[str],
    batch_size: int,
    num_steps: int,
    use_random_iter: bool = False,
    max_tokens: int = -1,
    *,
    token: str = "char",
    min_freq: int = 0,
):
    """``(train_iter, vocab)`` over any cleaned lines of text (see
    :func:`dl.data.text.normalize_lines`)."""
    corpus, vocab = corpus_from_lines(lines, token, max_tokens, min_freq)
    return SeqDataLoader(batch_size, num_steps, use_random_iter, corpus=corpus, vocab=vocab), vocab
