"""dl.data.nmt: the book's translation data layer, on a small stand-in for fra-eng.zip."""

import hashlib
import json
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fra_eng
from dl import plotting
from dl.data import nmt
from dl.data.text import Vocab
from dl.errors import InputError


@pytest.fixture
def fra_eng_dir(tmp_path, monkeypatch):
    """A data directory holding the stand-in fra-eng.zip, registered by its sha1 through
    DL_DATA_HUB (the URL is never used: the cached archive has the right sha1)."""
    body = fra_eng.zip_bytes()
    (tmp_path / "fra-eng.zip").write_bytes(body)
    mirror = tmp_path / "hub.json"
    mirror.write_text(
        json.dumps({"fra-eng": ["http://127.0.0.1:9/fra-eng.zip", hashlib.sha1(body).hexdigest()]})
    )
    monkeypatch.setenv("DL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DL_DATA_HUB", str(mirror))
    return tmp_path


def test_read_data_nmt_unpacks_the_archive(fra_eng_dir):
    assert nmt.read_data_nmt() == fra_eng.FRA_TXT
    assert (fra_eng_dir / "fra-eng" / "fra.txt").is_file()


def test_preprocess_nmt_spaces_punctuation_and_lowers():
    assert (
        nmt.preprocess_nmt("Go.\tVa\u202f!\nHi!\tSalut\xa0!\nOK , fine.")
        == "go .\tva !\nhi !\tsalut !\nok , fine ."
    )


def test_tokenize_nmt_keeps_the_books_line_count():
    text = "a .\tb .\nc\td\nno tab here\ne\tf\n"
    source, target = nmt.tokenize_nmt(text)
    assert source == [["a", "."], ["c"], ["e"]] and target == [["b", "."], ["d"], ["f"]]
    assert nmt.tokenize_nmt(text, num_examples=1) == ([["a", "."], ["c"]], [["b", "."], ["d"]])


@given(st.lists(st.integers(0, 9), max_size=12), st.integers(1, 10))
def test_truncate_pad_gives_num_steps_items_starting_with_the_line(line, num_steps):
    out = nmt.truncate_pad(line, num_steps, -1)
    assert len(out) == num_steps
    assert out[: len(line)] == line[:num_steps]
    assert out[len(line) :] == [-1] * (num_steps - len(line))


def test_build_array_nmt_appends_eos_and_pads():
    vocab = Vocab([["a", "b", "c"]], reserved_tokens=nmt.RESERVED_TOKENS)
    array, valid_len = nmt.build_array_nmt([["a", "b"], ["c", "a", "b", "c"], []], vocab, 4)
    pad, eos, a, b, c = vocab[["<pad>", "<eos>", "a", "b", "c"]]
    assert array.tolist() == [[a, b, eos, pad], [c, a, b, c], [eos, pad, pad, pad]]
    assert valid_len.tolist() == [3, 4, 1]
    assert array.dtype == valid_len.dtype == np.int64


def test_nmt_arrays_as_the_books_load_data_nmt(fra_eng_dir):
    (src, src_len, tgt, tgt_len), src_vocab, tgt_vocab = nmt.nmt_arrays(8, num_examples=100)
    assert src.shape == tgt.shape == (101, 8)  # the book reads num_examples + 1 lines
    assert src_vocab.idx_to_token[:4] == ["<unk>", "<pad>", "<bos>", "<eos>"]
    assert "calm" in src_vocab.token_to_idx and "calme" in tgt_vocab.token_to_idx
    first = src_vocab.to_tokens(src[0][: src_len[0]].tolist())
    assert first == ["go", ".", "<eos>"] and tgt_vocab.to_tokens(tgt[0][:2].tolist()) == ["va", "!"]


def test_array_batches_cover_every_row_once_per_epoch_in_a_new_order():
    arrays = [np.arange(10), np.arange(10) * 2]
    batches = nmt.ArrayBatches(arrays, 4, convert=list, rng=random.Random(0))
    epochs = [list(batches), list(batches)]
    assert len(batches) == 3
    for epoch in epochs:
        assert [len(x) for x, _ in epoch] == [4, 4, 2]
        assert sorted(i for x, _ in epoch for i in x) == list(range(10))
        assert all(y == [2 * i for i in x] for x, y in epoch)
    assert epochs[0] != epochs[1]
    ordered = nmt.ArrayBatches(arrays, 4, shuffle=False)
    assert next(iter(ordered))[0].tolist() == [0, 1, 2, 3]


def test_array_batches_refuse_arrays_of_other_lengths():
    with pytest.raises(InputError, match=r"same number of rows, got \[3, 4\]"):
        nmt.ArrayBatches([np.zeros(3), np.zeros(4)], 2)


def test_show_list_len_pair_hist_draws_without_printing(capsys):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    plotting.show_list_len_pair_hist(
        ["source", "target"],
        "# tokens per sequence",
        "count",
        [[1, 2], [1]],
        [[1, 2, 3], [1, 2, 3]],
    )
    axes = plt.gcf().axes[0]
    assert axes.get_xlabel() == "# tokens per sequence" and axes.get_ylabel() == "count"
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["source", "target"]
    hatches = {patch.get_hatch() for patch in axes.patches}
    assert hatches == {None, "/"}
    assert capsys.readouterr().out == ""
    plt.close("all")
