"""Tokenizers (dl.data.tokenizers) and the cached, split corpus (dl.data.corpus)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl.data import corpus
from dl.data import text as book
from dl.data import tokenizers as tk
from dl.errors import InputError

MIXED = "Verse:\tOne, two!\n«Ça va?» — she said.\r\nCode: x = 42; # done\n\nÆon 🚀 end"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_char_and_byte_round_trip_every_text(text):
    for kind in ("char", "byte"):
        tokenizer = tk.fit(kind, text)
        ids = tokenizer.encode(text)
        assert ids.dtype == np.int32 and ids.shape == (
            len(text) if kind == "char" else len(text.encode("utf-8")),
        )
        assert tokenizer.decode(ids) == text


def test_char_keeps_every_character_most_frequent_first():
    tokenizer = tk.fit("char", MIXED)
    assert tokenizer.idx_to_token[0] == "<unk>"
    assert set(tokenizer.idx_to_token[1:]) == set(MIXED)
    assert tokenizer.idx_to_token[1] == " "  # the most frequent character
    assert {"\t", "\n", "\r", "🚀", "Ç", "«"} <= set(tokenizer.idx_to_token)


def test_char_unknown_characters_count_and_decode_as_replacement():
    tokenizer = tk.fit("char", "abc")
    ids = tokenizer.encode("abzc")
    assert ids.tolist()[2] == 0 and tokenizer.count_unknown("abzzc") == 2
    assert tokenizer.decode(ids) == "ab\ufffdc"


def test_char_max_vocab_and_min_freq_cut_rare_characters():
    tokenizer = tk.fit("char", "aaaabbbcc d", max_vocab=3)
    assert tokenizer.idx_to_token == ["<unk>", "a", "b"]
    assert tk.fit("char", "aaaabbbcc d", min_freq=3).idx_to_token == ["<unk>", "a", "b"]


def test_byte_has_256_ids_and_nothing_unknown():
    tokenizer = tk.fit("byte", "")
    assert len(tokenizer) == 256 and tokenizer.count_unknown("\x00ÿ 🚀") == 0
    assert tokenizer.encode("é").tolist() == [0xC3, 0xA9]
    assert tokenizer.decode([0xC3]) == "\ufffd"  # a cut character, not an exception


def test_word_splits_punctuation_and_marks_line_ends():
    text = "Don't stop, Filby.\nIt's  late!\n"
    tokenizer = tk.fit("word", text)
    assert tk.WordTokenizer.split(text) == [
        "Don't",
        "stop",
        ",",
        "Filby",
        ".",
        "<eos>",
        "It's",
        "late",
        "!",
        "<eos>",
    ]
    assert tokenizer.decode(tokenizer.encode(text)) == "Don't stop , Filby .\nIt's late !\n"


def test_word_vocabulary_limits():
    text = "a a a b b c\n"
    assert tk.fit("word", text, max_vocab=3).idx_to_token == ["<unk>", "<eos>", "a"]
    assert tk.fit("word", text, min_freq=2).idx_to_token == ["<unk>", "<eos>", "a", "b"]
    assert tk.fit("word", text, min_freq=2).encode("c b\n").tolist() == [0, 3, 1]
    assert tk.fit("word", text, min_freq=2).encode("c b").tolist() == [0, 3]  # line goes on
    with pytest.raises(
        InputError,
        match=r"--max-vocab 2: the word vocabulary reserves <unk> "
        r"and <eos>, so give at least 3",
    ):
        tk.fit("word", text, max_vocab=2)
    with pytest.raises(InputError, match=r"--max-vocab 1: <unk> takes one id"):
        tk.fit("char", text, max_vocab=1)


def test_book_kinds_are_the_books_cleaning():
    text = "The Time-Machine, 1895!\nBy H. G. Wells\n"
    tokenizer = tk.fit("book-char", text)
    lines = book.normalize_lines(text)
    ids, vocab = book.corpus_from_lines(lines, "char")
    assert tokenizer.encode(text).tolist() == ids
    assert tokenizer.idx_to_token == vocab.idx_to_token
    assert tokenizer.decode(tokenizer.encode(text)) == "the time machineby h g wells"
    words = tk.fit("book-word", text)
    assert words.decode(words.encode(text)) == "the time machine by h g wells"


def test_whitespace_tokens_are_the_word_language_models():
    text = "Don't stop, Filby.\r\nIt's  late!\n\n\tend"
    tokenizer = tk.fit("whitespace", text)
    expected = []
    for line in text.splitlines(keepends=True):  # line.split() + ['<eos>'] per ended line
        expected += line.split() + (["<eos>"] if line != line.rstrip("\r\n") else [])
    assert tk.WhitespaceTokenizer.split(text) == expected
    assert expected[:4] == ["Don't", "stop,", "Filby.", "<eos>"]
    assert tokenizer.idx_to_token[:2] == ["<unk>", "<eos>"]
    assert tokenizer.decode(tokenizer.encode(text)) == "Don't stop, Filby.\nIt's late!\n\nend"
    assert tk.fit("whitespace", "a a b\n", max_vocab=3).idx_to_token == ["<unk>", "<eos>", "a"]


@pytest.mark.parametrize("kind", ["char", "word", "whitespace"])
def test_chunked_fitting_and_encoding_equal_the_whole_texts(kind, monkeypatch):
    text = (MIXED + "\n") * 7 + "no line break at the very end, a long-ish line"
    whole = tk.fit(kind, text)
    monkeypatch.setattr(tk, "CHUNK", 16)  # pieces cut after line breaks, else spaces
    pieces = list(tk._chunks(text))
    assert len(pieces) > 20 and "".join(pieces) == text
    assert all(piece[-1] in "\n " for piece in pieces[:-1])
    chunked = tk.fit(kind, text)
    assert chunked.idx_to_token == whole.idx_to_token
    np.testing.assert_array_equal(chunked.encode(text), whole.encode(text))
    tokens = list(text) if kind == "char" else whole.split(text)
    assert chunked.encode(text).tolist() == [whole.idx_to_token.index(t) for t in tokens]


def test_a_vocabulary_past_the_limit_is_refused(monkeypatch):
    monkeypatch.setattr(tk, "MAX_VOCAB", 4)
    assert len(tk.fit("char", "abc")) == 4
    with pytest.raises(
        InputError,
        match=r"--token word: the text has 5 distinct tokens, more than the 4 a "
        r"vocabulary may hold; give --max-vocab N",
    ):
        tk.fit("word", "a b c")
    assert len(tk.fit("word", "a b c", max_vocab=4)) == 4


@pytest.mark.parametrize("kind", tk.KINDS)
def test_a_saved_tokenizer_encodes_as_the_fitted_one(kind):
    tokenizer = tk.fit(kind, MIXED)
    again = tk.from_dict(tokenizer.to_dict())
    np.testing.assert_array_equal(again.encode(MIXED), tokenizer.encode(MIXED))
    assert again.decode(again.encode(MIXED)) == tokenizer.decode(tokenizer.encode(MIXED))


def test_unknown_or_damaged_tokenizers_are_refused():
    with pytest.raises(InputError, match=r"--token 'bpe': give one of char, byte, word"):
        tk.fit("bpe", "x")
    with pytest.raises(InputError, match=r"tokenizer kind 'bpe' is not one this dl knows"):
        tk.from_dict({"kind": "bpe"})
    with pytest.raises(InputError, match=r"character vocabulary starts with '<unk>'"):
        tk.from_dict({"kind": "char", "tokens": ["a", "b"]})


def test_encoded_ids_are_cached_memory_mapped_and_not_tokenized_again(tmp_path, monkeypatch):
    tokenizer = tk.fit("char", MIXED)
    ids = corpus.encoded(MIXED, "sha", tokenizer, tmp_path)
    assert isinstance(ids, np.memmap) and not ids.flags.writeable
    np.testing.assert_array_equal(ids, tokenizer.encode(MIXED))
    (entry,) = tmp_path.glob("*.npy")
    monkeypatch.setattr(tk.CharTokenizer, "encode", lambda self, text: pytest.fail("encoded"))
    np.testing.assert_array_equal(corpus.encoded(MIXED, "sha", tokenizer, tmp_path), ids)
    other = tk.fit("char", MIXED + "Z")  # another vocabulary: another entry
    assert corpus.cache_key("sha", other) != entry.stem


def test_the_cache_is_dl_cache_dir_else_the_data_directory(tmp_path, monkeypatch):
    tokenizer = tk.fit("byte", "")
    monkeypatch.setenv("DL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DL_CACHE_DIR", str(tmp_path / "cache"))
    corpus.encoded("abc", "sha", tokenizer)
    assert [p.parent.name for p in tmp_path.rglob("*.npy")] == ["cache"]
    monkeypatch.delenv("DL_CACHE_DIR")
    corpus.encoded("abc", "sha", tokenizer)
    assert sorted(p.parent.name for p in tmp_path.rglob("*.npy")) == ["cache", "corpus"]
    assert (tmp_path / "data" / "corpus").is_dir()


def test_a_damaged_cache_entry_is_encoded_again(tmp_path):
    tokenizer = tk.fit("byte", "")
    ids = np.array(corpus.encoded("abc", "sha", tokenizer, tmp_path))  # a copy, not the map
    (entry,) = tmp_path.glob("*.npy")
    entry.write_bytes(entry.read_bytes()[:20])
    np.testing.assert_array_equal(corpus.encoded("abc", "sha", tokenizer, tmp_path), ids)


def test_splits_are_in_time_order_and_refuse_empty_parts():
    ids = np.arange(100, dtype=np.int32)
    train, val, test = corpus.split(ids, 0.1, 0.2)
    assert (len(train), len(val), len(test)) == (70, 10, 20)
    np.testing.assert_array_equal(np.concatenate([train, val, test]), ids)
    assert [len(part) for part in corpus.split(ids)] == [100, 0, 0]
    with pytest.raises(
        InputError,
        match=r"--test-fraction 0.01 holds out 1 of 100 tokens, "
        r"fewer than the 2 one batch needs",
    ):
        corpus.split(ids, 0.1, 0.01)
    with pytest.raises(InputError, match=r"leave nothing to train on"):
        corpus.split(ids, 0.5, 0.5)


def test_sha256_of_reads_the_file(tmp_path):
    import hashlib

    path = tmp_path / "t.txt"
    path.write_bytes(b"x" * 3_000_000)
    assert corpus.sha256_of(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
