"""Tests for dl.data.batches: the book's (d2l 0.17) random and sequential partitioning."""

import random

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dl.data.batches import (
    SeqDataLoader,
    eval_batches,
    load_data_text,
    load_data_time_machine,
    seq_data_iter_random,
    seq_data_iter_sequential,
)
from dl.data.text import corpus_from_lines, load_corpus_time_machine


@pytest.fixture(autouse=True)
def _restore_python_random():
    """These tests seed Python's global `random`; leave it as it was for other tests."""
    saved = random.getstate()
    yield
    random.setstate(saved)


ITERATORS = {"random": seq_data_iter_random, "sequential": seq_data_iter_sequential}


def min_corpus_len(batch_size, num_steps, random_iter):
    """Fewest tokens that give one full batch for every random offset."""
    return batch_size * num_steps + num_steps + (0 if random_iter else 1)


# The book's own algorithms (d2l 0.17, section 8.3), in plain Python, as the reference.
def book_random(corpus, batch_size, num_steps):
    corpus = corpus[random.randint(0, num_steps - 1) :]
    num_subseqs = (len(corpus) - 1) // num_steps
    initial_indices = list(range(0, num_subseqs * num_steps, num_steps))
    random.shuffle(initial_indices)
    num_batches = num_subseqs // batch_size
    for i in range(0, batch_size * num_batches, batch_size):
        starts = initial_indices[i : i + batch_size]
        yield (
            [list(corpus[j : j + num_steps]) for j in starts],
            [list(corpus[j + 1 : j + 1 + num_steps]) for j in starts],
        )


def book_sequential(corpus, batch_size, num_steps):
    offset = random.randint(0, num_steps)
    num_tokens = ((len(corpus) - offset - 1) // batch_size) * batch_size
    Xs = np.array(corpus[offset : offset + num_tokens]).reshape(batch_size, -1)
    Ys = np.array(corpus[offset + 1 : offset + 1 + num_tokens]).reshape(batch_size, -1)
    for i in range(0, num_steps * (Xs.shape[1] // num_steps), num_steps):
        yield Xs[:, i : i + num_steps].tolist(), Ys[:, i : i + num_steps].tolist()


def as_lists(batches):
    return [(X.tolist(), Y.tolist()) for X, Y in batches]


# ---------------------------------------------------------------- The Time Machine


@pytest.fixture(scope="module")
def tm_corpus(time_machine_path):
    return load_corpus_time_machine(10000)


@pytest.mark.parametrize("use_random_iter", [False, True])
def test_load_data_time_machine_epoch_has_8_batches_of_32_by_35(time_machine_path, use_random_iter):
    train_iter, vocab = load_data_time_machine(32, 35, use_random_iter)
    assert len(vocab) == 28
    assert vocab.idx_to_token[:4] == ["<unk>", " ", "e", "t"]
    assert train_iter.vocab is vocab
    for seed in range(3):
        random.seed(seed)
        batches = list(train_iter)
        assert len(batches) == 8
        for X, Y in batches:
            assert isinstance(X, np.ndarray) and isinstance(Y, np.ndarray)
            assert X.shape == Y.shape == (32, 35)
            assert np.issubdtype(X.dtype, np.integer) and np.issubdtype(Y.dtype, np.integer)
            assert X.min() >= 1 and X.max() < 28


@pytest.mark.parametrize("use_random_iter", [False, True])
def test_load_data_time_machine_y_is_x_shifted_against_the_corpus(tm_corpus, use_random_iter):
    corpus, _ = tm_corpus
    text = np.array(corpus)
    train_iter, _ = load_data_time_machine(32, 35, use_random_iter)
    random.seed(7)
    batches = list(train_iter)
    random.seed(7)
    reference = list((book_random if use_random_iter else book_sequential)(corpus, 32, 35))
    assert as_lists(batches) == reference
    windows = np.lib.stride_tricks.sliding_window_view(text, 36)
    for X, Y in batches:
        np.testing.assert_array_equal(X[:, 1:], Y[:, :-1])
        for x, y in zip(X, Y):
            # some position p of the corpus has X at p and Y at p + 1
            window = np.concatenate([x, y[-1:]])
            assert (windows == window).all(axis=1).any()


def test_load_data_time_machine_sequential_rows_continue(tm_corpus):
    corpus, _ = tm_corpus
    train_iter, _ = load_data_time_machine(32, 35)
    random.seed(3)
    batches = list(train_iter)
    for (_, Y0), (X1, _) in zip(batches, batches[1:]):
        np.testing.assert_array_equal(X1[:, 0], Y0[:, -1])  # row i resumes where it ended
    # rebuild row 0's stream and find it in the corpus
    row0 = np.concatenate([X[0] for X, _ in batches])
    offsets = [o for o in range(36) if corpus[o : o + len(row0)] == row0.tolist()]
    assert offsets


def test_load_data_time_machine_word_level(time_machine_path):
    train_iter, vocab = load_data_time_machine(4, 5, max_tokens=200, token="word")
    assert vocab.idx_to_token[:3] == ["<unk>", "the", "i"]
    random.seed(0)
    batches = list(train_iter)
    assert len(batches) == (200 - 1 - random.Random(0).randint(0, 5)) // 4 // 5
    assert all(X.shape == (4, 5) for X, _ in batches)


def test_time_machine_random_iterator_is_deterministic_after_seed(time_machine_path):
    train_iter, _ = load_data_time_machine(32, 35, use_random_iter=True)
    random.seed(42)
    first = as_lists(train_iter)
    random.seed(42)
    second = as_lists(train_iter)
    assert first == second
    third = as_lists(train_iter)  # no reseed: a new random epoch
    assert third != first


# ---------------------------------------------------------------- small, known corpora


def test_sequential_known_batches():
    random.seed(0)
    offset = random.randint(0, 5)
    random.seed(0)
    batches = list(seq_data_iter_sequential(list(range(35)), 2, 5))
    per_row = (35 - offset - 1) // 2
    assert len(batches) == per_row // 5
    X, Y = batches[0]
    np.testing.assert_array_equal(
        X, [list(range(offset, offset + 5)), list(range(offset + per_row, offset + per_row + 5))]
    )
    np.testing.assert_array_equal(Y, X + 1)


def test_random_known_corpus_windows():
    random.seed(1)
    corpus = list(range(35))
    batches = list(seq_data_iter_random(corpus, 2, 5))
    starts = [int(x[0]) for X, _ in batches for x in X]
    assert len(starts) == len(set(starts))
    assert len({s % 5 for s in starts}) == 1  # all windows share the epoch's offset
    for X, Y in batches:
        assert X.shape == (2, 5)
        np.testing.assert_array_equal(X, X[:, :1] + np.arange(5))
        np.testing.assert_array_equal(Y, X + 1)


@pytest.mark.parametrize("name", ["random", "sequential"])
def test_matches_the_book_exactly_after_the_same_seed(name):
    corpus = [random.Random(5).randrange(30) for _ in range(500)]
    ours = ITERATORS[name]
    book = {"random": book_random, "sequential": book_sequential}[name]
    for seed in range(20):
        for batch_size, num_steps in [(2, 5), (3, 7), (4, 1), (1, 10)]:
            random.seed(seed)
            mine = as_lists(ours(corpus, batch_size, num_steps))
            random.seed(seed)
            assert mine == list(book(corpus, batch_size, num_steps))


@pytest.mark.parametrize("name", ["random", "sequential"])
def test_deterministic_after_random_seed(name):
    corpus = list(np.random.default_rng(0).integers(0, 20, 300))
    random.seed(123)
    first = as_lists(ITERATORS[name](corpus, 3, 4))
    random.seed(123)
    second = as_lists(ITERATORS[name](corpus, 3, 4))
    assert first == second and first


@pytest.mark.parametrize("name", ["random", "sequential"])
def test_numpy_corpus_same_as_list_corpus(name):
    corpus = list(range(100))
    random.seed(9)
    from_list = as_lists(ITERATORS[name](corpus, 2, 6))
    random.seed(9)
    from_array = as_lists(ITERATORS[name](np.array(corpus), 2, 6))
    assert from_list == from_array


# ---------------------------------------------------------------- properties


def positions_and_values(fn, corpus, batch_size, num_steps, seed):
    """Batches over corpus positions (0..len-1) and over the corpus, after the same seed."""
    random.seed(seed)
    positions = list(fn(list(range(len(corpus))), batch_size, num_steps))
    random.seed(seed)
    values = list(fn(corpus, batch_size, num_steps))
    return positions, values


corpus_sizes = st.tuples(st.integers(1, 6), st.integers(1, 9), st.integers(0, 120))


@st.composite
def problems(draw, random_iter):
    batch_size, num_steps, extra = draw(corpus_sizes)
    length = min_corpus_len(batch_size, num_steps, random_iter) + extra
    corpus = draw(st.lists(st.integers(0, 9), min_size=length, max_size=length))
    return corpus, batch_size, num_steps, draw(st.integers(0, 2**32 - 1))


def assert_batch_windows(batch, corpus, batch_size, num_steps):
    """One batch: shapes, contiguous windows inside the corpus, values taken from there,
    Y shifted by one. ``batch`` is ``((PX, PY) positions, (X, Y) values)``."""
    (PX, PY), (X, Y) = batch
    assert PX.shape == PY.shape == X.shape == Y.shape == (batch_size, num_steps)
    np.testing.assert_array_equal(PX, PX[:, :1] + np.arange(num_steps))  # contiguous
    np.testing.assert_array_equal(PY, PX + 1)  # Y is X shifted by one
    np.testing.assert_array_equal(X, np.asarray(corpus)[PX])  # values come from there
    np.testing.assert_array_equal(Y, np.asarray(corpus)[PY])
    assert PX.min() >= 0 and PY.max() < len(corpus)  # windows inside the corpus


@given(problems(random_iter=False))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_sequential_property_rows_tile_the_corpus(problem):
    corpus, batch_size, num_steps, seed = problem
    positions, values = positions_and_values(
        seq_data_iter_sequential, corpus, batch_size, num_steps, seed
    )
    L = len(corpus)
    assert len(positions) >= 1
    for batch in zip(positions, values):
        assert_batch_windows(batch, corpus, batch_size, num_steps)
    # reconstruct each row's stream over the epoch: contiguous, no gap, no overlap
    streams = np.concatenate([PX for PX, _ in positions], axis=1)
    y_streams = np.concatenate([PY for _, PY in positions], axis=1)
    np.testing.assert_array_equal(streams, streams[:, :1] + np.arange(streams.shape[1]))
    np.testing.assert_array_equal(y_streams, streams + 1)
    offset = int(streams[0, 0])
    assert 0 <= offset <= num_steps
    row_len = (L - offset - 1) // batch_size  # each row's share
    np.testing.assert_array_equal(streams[:, 0], offset + row_len * np.arange(batch_size))
    assert streams.shape[1] == row_len // num_steps * num_steps  # every full batch is used
    assert row_len - streams.shape[1] < num_steps
    assert streams.shape[1] <= row_len  # rows never overlap
    for earlier, later in zip(positions, positions[1:]):  # batches continue rows
        np.testing.assert_array_equal(later[0][:, 0], earlier[0][:, -1] + 1)


@given(problems(random_iter=True))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_random_property_each_start_once_windows_inside(problem):
    corpus, batch_size, num_steps, seed = problem
    positions, values = positions_and_values(
        seq_data_iter_random, corpus, batch_size, num_steps, seed
    )
    L = len(corpus)
    assert len(positions) >= 1
    starts = []
    for batch in zip(positions, values):
        assert_batch_windows(batch, corpus, batch_size, num_steps)
        starts.extend(batch[0][0][:, 0].tolist())
    assert len(starts) == len(set(starts))  # each start at most once
    offset = min(starts) % num_steps
    assert offset < num_steps
    assert all(s % num_steps == offset for s in starts)  # windows never overlap
    num_subseqs = (L - offset - 1) // num_steps
    assert len(positions) == num_subseqs // batch_size  # every full batch is used


@given(st.integers(1, 6), st.integers(1, 9), st.booleans(), st.integers(1, 40))
@settings(max_examples=150, deadline=None, derandomize=True)
def test_corpus_one_token_too_short_raises_at_call_time(
    batch_size, num_steps, random_iter, short_by
):
    fn = seq_data_iter_random if random_iter else seq_data_iter_sequential
    need = min_corpus_len(batch_size, num_steps, random_iter)
    assume(need - short_by >= 0)
    corpus = list(range(need - short_by))
    with pytest.raises(ValueError) as info:
        fn(corpus, batch_size, num_steps)  # no next(): the error comes at the call
    message = str(info.value)
    assert f"{len(corpus)} tokens" in message
    assert f"batch_size {batch_size}" in message
    assert f"num_steps {num_steps}" in message
    assert f"at least {need} tokens" in message
    for seed in range(5):  # the minimum length works for every random offset
        random.seed(seed)
        assert len(list(fn(list(range(need)), batch_size, num_steps))) >= 1


# ---------------------------------------------------------------- invalid sizes


@pytest.mark.parametrize("name", ["random", "sequential"])
@pytest.mark.parametrize("batch_size, num_steps", [(0, 5), (2, 0), (-1, 5), (2, -3), (0, 0)])
def test_non_positive_sizes_raise_at_call_time(name, batch_size, num_steps):
    with pytest.raises(ValueError) as info:
        ITERATORS[name](list(range(1000)), batch_size, num_steps)
    message = str(info.value)
    assert str(batch_size) in message and str(num_steps) in message
    assert "positive" in message


@pytest.mark.parametrize("name", ["random", "sequential"])
@pytest.mark.parametrize(
    "batch_size, num_steps", [(2.0, 5), (2, 5.0), ("2", 5), (2, None), (2.5, 5)]
)
def test_non_integer_sizes_raise_at_call_time(name, batch_size, num_steps):
    with pytest.raises(ValueError, match="positive integer") as info:
        ITERATORS[name](list(range(1000)), batch_size, num_steps)
    assert repr(batch_size) in str(info.value) and repr(num_steps) in str(info.value)


@pytest.mark.parametrize("name", ["random", "sequential"])
def test_numpy_integer_sizes_are_accepted(name):
    random.seed(0)
    batches = list(ITERATORS[name](list(range(100)), np.int64(2), np.int32(5)))
    assert batches and batches[0][0].shape == (2, 5)


@pytest.mark.parametrize("name", ["random", "sequential"])
def test_bool_sizes_raise(name):
    with pytest.raises(ValueError):
        ITERATORS[name](list(range(100)), True, 5)


def test_empty_corpus_raises_with_its_length():
    with pytest.raises(ValueError, match="a corpus of 0 tokens"):
        seq_data_iter_sequential([], 1, 1)
    with pytest.raises(ValueError, match="a corpus of 1 tokens"):
        seq_data_iter_random([7], 1, 1)


# ---------------------------------------------------------------- SeqDataLoader, load_data_text


@pytest.mark.parametrize("use_random_iter", [False, True])
def test_seq_data_loader_over_a_given_corpus(use_random_iter):
    corpus = list(range(200))
    loader = SeqDataLoader(3, 4, use_random_iter, corpus=corpus)
    assert loader.corpus is corpus and loader.vocab is None
    assert (loader.batch_size, loader.num_steps, loader.use_random_iter) == (3, 4, use_random_iter)
    random.seed(11)
    epoch1 = as_lists(loader)
    random.seed(11)
    expected = as_lists(
        (seq_data_iter_random if use_random_iter else seq_data_iter_sequential)(corpus, 3, 4)
    )
    assert epoch1 == expected
    random.seed(11)
    assert as_lists(loader) == epoch1  # iterable again, not a one-shot iterator
    for X, Y in epoch1:
        np.testing.assert_array_equal(np.array(Y), np.array(X) + 1)


def test_seq_data_loader_new_offset_each_epoch():
    loader = SeqDataLoader(2, 5, corpus=list(range(100)))
    random.seed(0)
    firsts = {as_lists(loader)[0][0][0][0] for _ in range(30)}
    assert len(firsts) > 1 and firsts <= set(range(6))


@pytest.mark.parametrize("use_random_iter", [False, True])
def test_seq_data_loader_too_short_raises_at_construction(use_random_iter):
    with pytest.raises(
        ValueError,
        match="a corpus of 10 tokens cannot make one batch of batch_size 2 x num_steps 5",
    ):
        SeqDataLoader(2, 5, use_random_iter, corpus=list(range(10)))
    with pytest.raises(ValueError):
        SeqDataLoader(0, 5, use_random_iter, corpus=list(range(100)))


def test_load_data_text_over_given_lines():
    lines = ["the quick brown fox", "jumps over the lazy dog"] * 5
    train_iter, vocab = load_data_text(lines, 2, 6)
    corpus, expected_vocab = corpus_from_lines(lines, "char")
    assert vocab.idx_to_token == expected_vocab.idx_to_token
    assert train_iter.vocab is vocab
    assert train_iter.corpus == corpus
    assert len(corpus) == 5 * (19 + 23)
    random.seed(4)
    batches = list(train_iter)
    assert batches
    text = "".join(lines)
    for X, Y in batches:
        assert X.shape == (2, 6)
        for x, y in zip(X, Y):
            xs, ys = "".join(vocab.to_tokens(x)), "".join(vocab.to_tokens(y))
            assert xs[1:] == ys[:-1]
            assert xs + ys[-1] in text


def test_load_data_text_word_level_random_and_options():
    lines = ["a b c d e f g h"] * 6
    train_iter, vocab = load_data_text(
        lines, 2, 3, use_random_iter=True, token="word", max_tokens=40, min_freq=1
    )
    assert vocab.idx_to_token == ["<unk>"] + list("abcdefgh")
    assert len(train_iter.corpus) == 40
    assert train_iter.use_random_iter
    random.seed(0)
    for X, Y in train_iter:
        assert X.shape == (2, 3)
        np.testing.assert_array_equal(Y, X % 8 + 1)  # ids 1..8 cycle: h is followed by a


def test_load_data_text_too_short_raises():
    with pytest.raises(ValueError, match="a corpus of 3 tokens"):
        load_data_text(["abc"], 2, 5)


@pytest.mark.parametrize("use_random_iter", [False, True])
def test_a_memory_mapped_corpus_gives_the_lists_batches_and_stays_an_array(
    tmp_path, use_random_iter
):
    ids = np.random.default_rng(0).integers(0, 50, 1000).astype(np.int32)
    np.save(tmp_path / "ids.npy", ids)
    mapped = np.load(tmp_path / "ids.npy", mmap_mode="r")
    from_list = SeqDataLoader(4, 7, use_random_iter, corpus=ids.tolist(), rng=random.Random(3))
    from_map = SeqDataLoader(4, 7, use_random_iter, corpus=mapped, rng=random.Random(3))
    assert from_map.corpus is mapped  # read in place, not turned into a list
    batches, list_batches = list(from_map), list(from_list)
    assert len(batches) == len(list_batches) > 10
    for (X, Y), (X_list, Y_list) in zip(batches, list_batches):
        np.testing.assert_array_equal(X, X_list)
        np.testing.assert_array_equal(Y, Y_list)
        assert X.flags.writeable and Y.flags.writeable  # frameworks may take them as their own
    for X, Y in eval_batches(mapped[:50], 1, 60):  # one row: a view of the map, copied
        assert X.flags.writeable and X.tolist() == [ids[:49].tolist()]
        assert Y.flags.writeable and Y.tolist() == [ids[1:50].tolist()]
