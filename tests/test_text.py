"""Tests for dl.data.text: reading, cleaning, tokenizing and the vocabulary (d2l 0.17 semantics)."""

import hashlib
import re
import string

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl.data import text
from dl.data.text import (
    TOKEN_KINDS,
    Vocab,
    corpus_from_lines,
    count_corpus,
    load_corpus_time_machine,
    normalize_lines,
    read_text_file,
    read_time_machine,
    tokenize,
)

# The book's character vocabulary of The Time Machine, in index order (d2l 0.17, section 8.3).
BOOK_CHAR_VOCAB = [
    "<unk>",
    " ",
    "e",
    "t",
    "a",
    "i",
    "n",
    "o",
    "s",
    "h",
    "r",
    "d",
    "l",
    "m",
    "u",
    "c",
    "f",
    "w",
    "g",
    "y",
    "p",
    "b",
    "v",
    "k",
    "x",
    "z",
    "j",
    "q",
]


# ---------------------------------------------------------------- The Time Machine


@pytest.fixture(scope="module")
def tm_lines(time_machine_path):
    return read_time_machine()


@pytest.fixture(scope="module")
def tm_char(time_machine_path):
    return load_corpus_time_machine()


def test_read_time_machine_has_the_books_3221_lines(tm_lines):
    assert len(tm_lines) == 3221
    assert tm_lines[0] == "the time machine by h g wells"
    # line 11 as the book cleans it, by its sha1 (the project holds none of the novel's text)
    assert hashlib.sha1(tm_lines[10].encode()).hexdigest() == (
        "40cf07421d971897c0143c202ea883fa341d5e96"
    )


def test_read_time_machine_is_lower_case_letters_and_spaces_only(tm_lines):
    assert all(re.fullmatch("[a-z ]*", line) for line in tm_lines)
    assert all(line == line.lower() for line in tm_lines)
    assert all(line == line.strip() for line in tm_lines)
    assert all("  " not in line for line in tm_lines)  # runs of non-letters became one space
    assert set("".join(tm_lines)) == set(string.ascii_lowercase + " ")
    assert sum(not line for line in tm_lines) > 0  # blank lines are kept, as in the book


def test_load_corpus_time_machine_char(tm_char):
    corpus, vocab = tm_char
    assert len(corpus) == 170580
    assert len(vocab) == 28
    assert vocab.idx_to_token == BOOK_CHAR_VOCAB
    assert vocab.token_freqs[:3] == [(" ", 29927), ("e", 17838), ("t", 13515)]
    assert all(isinstance(i, int) for i in corpus[:100])
    assert min(corpus) == 1 and max(corpus) == 27  # no <unk> in the corpus itself


def test_load_corpus_time_machine_matches_the_cleaned_text(tm_lines, tm_char):
    corpus, vocab = tm_char
    text = "".join(tm_lines)  # the book concatenates lines without a separator
    assert len(text) == len(corpus)
    assert "".join(vocab.to_tokens(corpus[:200])) == text[:200]
    assert "".join(vocab.to_tokens(corpus[-200:])) == text[-200:]
    assert "".join(vocab.to_tokens(corpus[:29])) == "the time machine by h g wells"


def test_load_corpus_time_machine_max_tokens_cuts(tm_char, time_machine_path):
    full, _ = tm_char
    corpus, vocab = load_corpus_time_machine(10000)
    assert len(corpus) == 10000
    assert corpus == full[:10000]
    assert len(vocab) == 28  # the vocabulary still comes from the whole book
    corpus, _ = load_corpus_time_machine(max_tokens=1)
    assert corpus == full[:1]
    corpus, _ = load_corpus_time_machine(0)  # 0 or negative: no cut, as in the book
    assert len(corpus) == 170580
    corpus, _ = load_corpus_time_machine(10**9)
    assert len(corpus) == 170580


def test_load_corpus_time_machine_word_level(tm_lines, time_machine_path):
    corpus, vocab = load_corpus_time_machine(token="word")
    words = [w for line in tm_lines for w in line.split()]
    assert len(corpus) == len(words) == 32775
    assert len(vocab) == 4580
    assert vocab.idx_to_token[:10] == [
        "<unk>",
        "the",
        "i",
        "and",
        "of",
        "a",
        "to",
        "was",
        "in",
        "that",
    ]
    assert vocab.token_freqs[:3] == [("the", 2261), ("i", 1267), ("and", 1245)]
    assert vocab.to_tokens(corpus[:6]) == ["the", "time", "machine", "by", "h", "g"]


def test_load_corpus_time_machine_word_level_min_freq(time_machine_path):
    corpus, vocab = load_corpus_time_machine(token="word", min_freq=5)
    assert len(vocab) < 4580
    kept = set(vocab.idx_to_token[1:])
    freqs = dict(vocab.token_freqs)
    assert all(freqs[t] >= 5 for t in kept)
    assert all(t in kept for t, f in vocab.token_freqs if f >= 5)
    assert 0 in corpus  # rare words became <unk>
    assert len(corpus) == 32775


# ---------------------------------------------------------------- cleaning and tokenizing


def test_normalize_lines():
    text = "The Time-Machine, by H. G. Wells [1898]\n\n  Hello,   World!!  x1y\r\nEND"
    assert normalize_lines(text) == ["the time machine by h g wells", "", "hello world x y", "end"]
    assert normalize_lines("") == []


def test_tokenize_word():
    lines = ["the time machine", "", "by  h g wells"]
    assert tokenize(lines, "word") == [["the", "time", "machine"], [], ["by", "h", "g", "wells"]]
    assert tokenize(lines) == tokenize(lines, "word")  # word is the default, as in the book


def test_tokenize_char():
    assert tokenize(["ab c", ""], "char") == [["a", "b", " ", "c"], []]


@pytest.mark.parametrize("kind", ["chars", "WORD", "bpe", ""])
def test_tokenize_unknown_kind_raises_naming_it(kind):
    with pytest.raises(ValueError) as info:
        tokenize(["abc"], kind)
    message = str(info.value)
    assert repr(kind) in message
    assert all(k in message for k in TOKEN_KINDS)


def test_count_corpus_flat_and_nested():
    assert count_corpus(["a", "b", "a"]) == {"a": 2, "b": 1}
    assert count_corpus([["a", "b"], ["a"]]) == {"a": 2, "b": 1}
    assert count_corpus([]) == {}


# ---------------------------------------------------------------- Vocab


def test_vocab_order_unk_reserved_then_frequency_ties_by_first_appearance():
    tokens = [["b", "a", "x"], ["a", "b", "c", "c", "c", "y"]]
    vocab = Vocab(tokens, reserved_tokens=["<pad>", "<bos>"])
    # c: 3; b, a: 2 (b seen first); x, y: 1 (x seen first)
    assert vocab.idx_to_token == ["<unk>", "<pad>", "<bos>", "c", "b", "a", "x", "y"]
    assert len(vocab) == 8
    assert vocab.token_freqs == [("c", 3), ("b", 2), ("a", 2), ("x", 1), ("y", 1)]
    assert vocab.unk == 0
    assert vocab["<unk>"] == 0
    assert vocab["<pad>"] == 1 and vocab["<bos>"] == 2
    assert vocab["c"] == 3 and vocab["y"] == 7


def test_vocab_min_freq_drops_rare_tokens():
    tokens = list("aaabbc")
    vocab = Vocab(tokens, min_freq=2)
    assert vocab.idx_to_token == ["<unk>", "a", "b"]
    assert vocab["c"] == 0
    assert vocab.token_freqs == [("a", 3), ("b", 2), ("c", 1)]  # frequencies of all tokens
    assert Vocab(tokens, min_freq=4).idx_to_token == ["<unk>"]
    assert Vocab(tokens, min_freq=1).idx_to_token == ["<unk>", "a", "b", "c"]


def test_vocab_reserved_token_also_in_corpus_is_not_duplicated():
    vocab = Vocab(["<eos>", "a", "<eos>"], reserved_tokens=["<eos>"])
    assert vocab.idx_to_token == ["<unk>", "<eos>", "a"]


def test_vocab_empty():
    for vocab in (Vocab(), Vocab([]), Vocab([[]])):
        assert len(vocab) == 1
        assert vocab.idx_to_token == ["<unk>"]
        assert vocab["anything"] == 0
        assert vocab.token_freqs == []


def test_vocab_getitem_lists_and_unknown():
    vocab = Vocab(list("hello"))  # l:2, h:1, e:1, o:1
    assert vocab.idx_to_token == ["<unk>", "l", "h", "e", "o"]
    assert vocab["l"] == 1
    assert vocab["z"] == 0
    assert vocab[["h", "e", "l", "l", "o", "!"]] == [2, 3, 1, 1, 4, 0]
    assert vocab[("o", "z")] == [4, 0]
    assert vocab[[]] == []
    assert vocab[[["h"], ["e", "q"]]] == [[2], [3, 0]]  # nested lists map recursively


def test_vocab_to_tokens_int_list_and_numpy():
    vocab = Vocab(list("hello"))
    assert vocab.to_tokens(1) == "l"
    assert vocab.to_tokens(0) == "<unk>"
    assert vocab.to_tokens([2, 3, 1, 1, 4]) == ["h", "e", "l", "l", "o"]
    assert vocab.to_tokens((4, 0)) == ["o", "<unk>"]
    assert vocab.to_tokens(np.array([2, 3, 1])) == ["h", "e", "l"]
    assert vocab.to_tokens(np.array([2, 3], dtype=np.int32)) == ["h", "e"]
    assert vocab.to_tokens(np.int64(4)) == "o"
    assert vocab.to_tokens(np.array(3)) == "e"  # a 0-d array is one index
    assert vocab.to_tokens([]) == []
    with pytest.raises(IndexError):
        vocab.to_tokens(5)


@given(
    st.lists(
        st.lists(st.sampled_from(list("abcdefg") + ["the", "a b", "<pad>"]), max_size=12),
        max_size=8,
    ),
    st.integers(min_value=0, max_value=3),
)
@settings(max_examples=150, deadline=None, derandomize=True)
def test_vocab_round_trip_and_permutation_property(lines, min_freq):
    vocab = Vocab(lines, min_freq=min_freq)
    # indices form a permutation of range(len(vocab))
    assert sorted(vocab.token_to_idx.values()) == list(range(len(vocab)))
    assert len(set(vocab.idx_to_token)) == len(vocab)
    assert all(vocab.idx_to_token[i] == t for t, i in vocab.token_to_idx.items())
    # every kept token round-trips; every dropped one maps to <unk>
    flat = [t for line in lines for t in line]
    kept = [t for t in flat if t in vocab.token_to_idx]
    assert vocab.to_tokens(vocab[kept]) == kept
    assert vocab.to_tokens(np.array(vocab[kept], dtype=np.int64)) == kept
    counts = count_corpus(flat)
    assert all((counts[t] >= min_freq) == (t in vocab.token_to_idx) for t in counts)
    # descending frequency after <unk>
    freqs = [counts[t] for t in vocab.idx_to_token[1:]]
    assert freqs == sorted(freqs, reverse=True)
    # ties in order of first appearance
    first = {t: flat.index(t) for t in counts}
    for a, b in zip(vocab.idx_to_token[1:], vocab.idx_to_token[2:]):
        if counts[a] == counts[b]:
            assert first[a] < first[b]


@given(st.lists(st.text(alphabet="abc xyz", max_size=20), max_size=10))
@settings(max_examples=100, deadline=None, derandomize=True)
def test_corpus_from_lines_property(lines):
    corpus, vocab = corpus_from_lines(lines, "char")
    assert "".join(vocab.to_tokens(corpus)) == "".join(lines)
    words, wvocab = corpus_from_lines(lines, "word")
    assert wvocab.to_tokens(words) == " ".join(lines).split()


def test_corpus_from_lines_max_tokens_and_min_freq():
    corpus, vocab = corpus_from_lines(["aab", "ac"], "char", max_tokens=3, min_freq=2)
    assert vocab.idx_to_token == ["<unk>", "a"]
    assert corpus == [1, 1, 0]


# ---------------------------------------------------------------- read_text_file


def test_read_text_file_reads_utf8(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("Über die Zeitmaschine\nzweite Zeile\n", encoding="utf-8")
    assert read_text_file(path) == "Über die Zeitmaschine\nzweite Zeile\n"
    assert read_text_file(str(path)) == "Über die Zeitmaschine\nzweite Zeile\n"


def test_read_text_file_non_utf8_names_file_and_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"abc Zeitmaschine f" + "ür".encode("latin-1"))
    with pytest.raises(ValueError) as info:
        read_text_file(path)
    message = str(info.value)
    assert str(path) in message
    assert "offset 18" in message
    assert "0xfc" in message
    assert "UTF-8" in message


def test_read_text_file_non_utf8_at_start(tmp_path):
    path = tmp_path / "binary.bin"
    path.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ValueError, match=r"offset 0\b") as info:
        read_text_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"", b"   \n\t\r\n  "])
def test_read_text_file_empty_or_whitespace_raises(tmp_path, content):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="empty") as info:
        read_text_file(path)
    assert str(path) in str(info.value)


def test_read_text_file_directory_raises(tmp_path):
    with pytest.raises(IsADirectoryError) as info:
        read_text_file(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_read_text_file_missing_raises_with_path(tmp_path):
    path = tmp_path / "no" / "such.txt"
    with pytest.raises(FileNotFoundError) as info:
        read_text_file(path)
    assert str(path) in str(info.value)


def test_vocab_from_tokens_round_trips():
    vocab = text.Vocab([list("hello world")], min_freq=1)
    again = text.Vocab.from_tokens(vocab.idx_to_token)
    assert again.idx_to_token == vocab.idx_to_token and again["l"] == vocab["l"]
    with pytest.raises(ValueError, match="must start with '<unk>'"):
        text.Vocab.from_tokens(["a", "<unk>"])
