"""`dl train`, `dl generate` and `dl eval` on a user's own text: tokens as the text has them,
held-out parts, the figures of every evaluation, the text model's options, runs saved before
tokenizers, and bad input (one line, exit 2, nothing saved lost)."""

import importlib.util
import json
import math

import pytest

from dl import checkpoint, lm
from dl.cli import backends, main
from dl.cli import train as cli_train
from dl.cli.backends import IMPLS
from dl.cli.options import TEXT_DEFAULTS
from dl.cli.saved import open_model
from dl.data import corpus
from dl.data import tokenizers as tk

pytest.importorskip("torch")
TINY = [
    *("--backend", "torch", "--impl", "scratch", "--hidden", 16, "--embedding", 8),
    *("--batch-size", 4, "--num-steps", 8, "--epochs", 2, "--print-every", 1000),
]
VERSE = (
    "Verse:\tOne, two!\n«Ça va?» — she said.\r\nCode: x = 42; # done\n\nÆon 🚀 End.\n"
    "The Time Traveller (as we called him) spoke of a machine, and we listened.\n"
)


def dl(*args):
    return main([str(a) for a in args])


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    """The data directory and token cache of these tests: their own (no run here reads The
    Time Machine); the cache is the data directory's ``corpus`` when DL_CACHE_DIR is unset."""
    monkeypatch.setenv("DL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DL_CACHE_DIR", raising=False)
    return tmp_path / "data"


def text_file(tmp_path, content=VERSE * 12, name="verse.txt"):
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_text_defaults_apply_with_text_only():
    seed, text = cli_train.resolve({}), cli_train.resolve({"text": "my.txt"})
    for dest, value in TEXT_DEFAULTS.items():
        assert text[dest] == value, dest
    assert text["token"] == "char" and text["max_tokens"] == -1
    assert (seed["token"], seed["embedding"], seed["hidden"], seed["optimizer"]) == (
        "book-char",
        0,
        256,
        "sgd",
    )
    assert cli_train.resolve({"text": "a", "hidden": 64})["hidden"] == 64  # given: kept
    held = cli_train.resolve({"text": "a", "val_text": "v", "test_text": "t"})
    assert held["val_fraction"] == held["test_fraction"] == 0.0  # the parts come from files


def test_a_constant_rate_on_a_text_leaves_the_profiles_cosine_floor_out():
    settings = cli_train.resolve({"text": "t.txt", "schedule": "constant", "backend": "torch"})
    assert settings["min_lr_fraction"] == 0.0 and settings["optimizer"] == "adam"


def test_help_says_which_defaults_apply_with_text(capsys):
    with pytest.raises(SystemExit):
        dl("train", "--help")
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 35; 64 with --text)" in out
    assert "book-char; char with --text)" in out.replace("book- char", "book-char")
    assert "the vocabulary is fitted over every text given" in out


def test_a_char_run_keeps_every_character_and_reports_its_figures(tmp_path, capsys, data_dir):
    text, run = text_file(tmp_path), tmp_path / "run"
    assert dl("train", *TINY, "--text", text, "--out", run) == 0
    out = capsys.readouterr().out.splitlines()
    params, meta = checkpoint.load(run)
    tokenizer = tk.from_dict(meta["tokenizer"])
    assert tokenizer.kind == "char" and set(tokenizer.idx_to_token[1:]) == set(VERSE)
    ids = tokenizer.encode(VERSE * 12)
    assert tokenizer.decode(ids) == VERSE * 12  # exact: tabs, \r\n, case, emoji
    assert list(data_dir.joinpath("corpus").glob("*.npy"))  # the ids, cached
    # every evaluation: nats/token, perplexity, bits/char of the validation part
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for r in records:
        assert r["val_bits_per_char"] == pytest.approx(r["val_loss"] / math.log(2))
        assert r["val_perplexity"] == pytest.approx(math.exp(r["val_loss"]))
    # the test figures: once, at the end, on the best checkpoint, stored and printed
    n = len(ids)
    num_test, num_val = round(n * 0.05), round(n * 0.1)
    assert meta["data"]["test_tokens"] == num_test and meta["data"]["val_tokens"] == num_val
    best_model, _, best_meta, _ = open_model(run, "best", "torch")
    loss_sum, num_tokens = lm.evaluate(best_model, ids[n - num_test :], 4, 8)
    test = meta["test"]
    assert test["checkpoint"] == "best" and test["epoch"] == best_meta["epoch"]
    assert test["test_loss"] == pytest.approx(loss_sum / num_tokens, rel=1e-6)
    assert test["test_bits_per_char"] == pytest.approx(test["test_loss"] / math.log(2))
    assert any(line.startswith("test perplexity ") and "bits/char" in line for line in out)
    assert any(line.startswith("validation perplexity ") for line in out)
    # generate continues a prefix file exactly as it is; eval reports the same figures
    prefix = text_file(tmp_path, "«Ça va?»\tCode:", "prefix.txt")
    assert dl("generate", run, "--prefix-file", prefix, "--num", 7) == 0
    generated = capsys.readouterr().out
    assert generated.startswith("«Ça va?»\tCode:") and len(generated) == len("«Ça va?»\tCode:") + 8
    other = text_file(tmp_path, "Ça va? ¿\n" * 8, "other.txt")  # ¿ at 7, 16, ..., 70
    assert dl("eval", run, "--text", other, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["tokens"], result["unknown_tokens"]) == (68, 7)  # 4 rows of 17 predicted
    assert result["bits_per_char"] == pytest.approx(result["loss"] / math.log(2))


def test_eval_without_text_scores_the_runs_held_out_part(tmp_path, capsys, monkeypatch):
    text, run = text_file(tmp_path), tmp_path / "run"
    assert dl("train", *TINY, "--text", text, "--out", run) == 0
    test = checkpoint.load(run)[1]["test"]  # the figures training ended with, best checkpoint
    capsys.readouterr()
    assert dl("eval", run, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["text"] == f"the test part of {text}"
    assert result["loss"] == pytest.approx(test["test_loss"], rel=1e-6)
    assert dl("eval", run) == 0
    assert f"tokens of the test part of {text} (0 outside" in capsys.readouterr().out
    # no test part: the validation part
    val_run = tmp_path / "val-run"
    assert dl("train", *TINY, "--text", text, "--test-fraction", 0, "--out", val_run) == 0
    best = checkpoint.load(val_run, "best")[1]["best_val_loss"]
    capsys.readouterr()
    assert dl("eval", val_run, "--checkpoint", "best", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["text"] == f"the validation part of {text}"
    assert result["loss"] == pytest.approx(best, rel=1e-6)
    # nothing held out, a text changed or moved since: one line saying what to do
    bare = tmp_path / "bare"
    args = ["--val-fraction", 0, "--test-fraction", 0, "--out", bare]
    assert dl("train", *TINY, "--text", text, *args) == 0
    capsys.readouterr()
    assert dl("eval", bare) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "held out no text (--val-fraction and --test-fraction 0); give --text FILE to evaluate on"
    )
    text.write_text(VERSE * 11)
    assert dl("eval", run) == 2
    assert "dl eval: the text" in capsys.readouterr().err
    text.unlink()
    assert dl("eval", run) == 2
    err = capsys.readouterr().err
    assert "dl eval: " in err and "(stored in the run), which is not found" in err


def test_a_byte_run_trains_on_any_file_and_continues_its_bytes(tmp_path, capsys):
    blob = bytes(range(256)) * 4 + "é🚀\n".encode() * 30
    data, run = text_file(tmp_path, blob, "blob.bin"), tmp_path / "run"
    assert dl("train", *TINY, "--text", data, "--out", run) == 2  # char: refused, saying how
    assert "train on its raw bytes with --token byte" in capsys.readouterr().err
    assert dl("train", *TINY, "--text", data, "--token", "byte", "--out", run) == 0
    assert "bits/byte" in capsys.readouterr().out
    meta = checkpoint.load(run)[1]
    assert meta["tokenizer"] == {"kind": "byte"} and meta["model"]["vocab_size"] == 256
    assert meta["test"]["test_bits_per_byte"] == pytest.approx(
        meta["test"]["test_loss"] / math.log(2)
    )
    assert meta["data"]["train_tokens"] + meta["data"]["val_tokens"] + meta["data"][
        "test_tokens"
    ] == len(blob)
    prefix = text_file(tmp_path, "é🚀", "prefix.txt")
    assert dl("generate", run, "--prefix-file", prefix, "--num", 0) == 0
    assert capsys.readouterr().out == "é🚀\n"
    assert dl("eval", run, "--text", prefix) == 0
    assert "bits/byte) on 5 tokens" in capsys.readouterr().out  # 6 bytes, the first not predicted


@pytest.mark.parametrize("kind", ["word", "whitespace"])
def test_held_out_files_share_the_vocabulary_fitted_over_every_text(tmp_path, capsys, kind):
    train = text_file(tmp_path, "the cat sat on the mat, and looked about.\n" * 30)
    val = text_file(tmp_path, "a dog ran far.\n" * 6, "val.txt")
    test = text_file(tmp_path, "the owl flew.\n" * 5, "test.txt")
    run = tmp_path / "run"
    args = [*TINY, "--token", kind, "--val-text", val, "--test-text", test]
    assert dl("train", *args, "--text", train, "--out", run) == 0
    meta = checkpoint.load(run)[1]
    tokenizer = tk.from_dict(meta["tokenizer"])
    whole = "\n".join(path.read_text() for path in (train, val, test))
    assert tokenizer.idx_to_token == tk.fit(kind, whole).idx_to_token
    assert {"dog", "owl"} <= set(tokenizer.idx_to_token)
    assert meta["data"]["val_tokens"] == len(tokenizer.encode(val.read_text()))
    assert meta["data"]["train_tokens"] == len(tokenizer.encode(train.read_text()))  # all of it
    assert meta["data"]["test_text"]["source"] == str(test) and meta["test"]["test_loss"] > 0
    assert "bits/" not in capsys.readouterr().out  # words: no bits per character
    assert dl("generate", run, "--prefix", "the cat", "--num", 3) == 0
    assert capsys.readouterr().out.startswith("the cat ")
    # a resume reads the held-out files again, and refuses another one
    val.write_text("a dog ran far away.\n" * 6)
    before = (run / "model.safetensors").read_bytes()
    assert dl("train", "--out", run, "--resume", "--epochs", 3) == 2
    err = capsys.readouterr().err
    assert f"the text {val} is not the one" in err and "give the same --val-text" in err
    assert (run / "model.safetensors").read_bytes() == before


def test_a_held_out_file_drives_the_plateau_and_early_stopping(tmp_path, capsys):
    train = text_file(tmp_path, "the cat sat on the mat, and looked about.\n" * 30)
    val = text_file(tmp_path, "a dog ran far.\n" * 6, "val.txt")
    run = tmp_path / "run"
    args = [*TINY, "--token", "word", "--val-text", val, "--text", train, "--out", run]
    validation = ["--plateau-factor", 0.5, "--patience", 5, "--epochs", 3]
    assert dl("train", *args, *validation) == 0, capsys.readouterr().err
    assert all(r["val_loss"] is not None for r in map(json.loads, open(run / "metrics.jsonl")))


def test_a_vocabulary_fitted_on_the_training_text_counts_held_out_words_as_unknown(
    tmp_path, capsys
):
    train = text_file(tmp_path, "the cat sat on the mat.\n" * 30)
    val = text_file(tmp_path, "the dog sat.\n" * 6, "val.txt")
    run = tmp_path / "run"
    args = [*TINY, "--token", "whitespace", "--val-text", val, "--fit-vocab", "text"]
    assert dl("train", *args, "--text", train, "--out", run) == 0
    tokenizer = tk.from_dict(checkpoint.load(run)[1]["tokenizer"])
    assert tokenizer.idx_to_token == tk.fit("whitespace", train.read_text()).idx_to_token
    assert (
        "dog" not in tokenizer.idx_to_token and tokenizer.count_unknown(val.read_text()) == 12
    )  # dog, sat.


def old_style(run):
    """Rewrite ``run``'s checkpoints as dl wrote them before tokenizers were saved."""
    for stem in ("model", "best"):
        if not checkpoint.exists(run, stem):
            continue
        params, state, meta = checkpoint.load_with_optimizer(run, stem)
        tokenizer = meta.pop("tokenizer")
        for key in ("prefixes", "test"):
            meta.pop(key)
        meta["vocab"] = tokenizer["tokens"]
        settings = meta["settings"]
        settings["token"] = settings["token"].removeprefix("book-")
        for dest in ("test_fraction", "val_text", "test_text", "max_vocab", "embedding"):
            settings.pop(dest)
        for dest in ("tie_weights", "embed_dropout", "output_dropout"):
            settings.pop(dest)
        meta = {k: v for k, v in meta.items() if not k.startswith("format")}
        checkpoint.save(run, params, meta, stem, state if stem == "model" else None)


@pytest.mark.parametrize("token", ["char", "word"])
def test_runs_saved_before_tokenizers_generate_evaluate_and_resume(
    tmp_path, capsys, data_dir, time_machine_path, token
):
    data_dir.mkdir()
    (data_dir / time_machine_path.name).write_bytes(time_machine_path.read_bytes())
    run = tmp_path / "run"
    args = ["--backend", "torch", "--hidden", 16, "--batch-size", 4, "--num-steps", 8]
    args += ["--max-tokens", 1500, "--val-fraction", 0.2, "--epochs", 2, "--print-every", 1000]
    assert dl("train", *args, "--token", f"book-{token}", "--out", run) == 0
    outputs = []
    for written_before in (False, True):
        if written_before:  # as before: settings token 'char' / 'word', a vocab list
            old_style(run)
            assert "tokenizer" not in checkpoint.load(run)[1]
        capsys.readouterr()
        assert dl("generate", run, "--prefix", "The Time", "--num", 20) == 0
        assert dl("eval", run, "--json") == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and outputs[0].startswith("the time")
    assert dl("train", "--out", run, "--resume", "--epochs", 3, "--token", "char") == 2
    assert f"--token char (the run has book-{token})" in capsys.readouterr().err
    assert dl("train", "--out", run, "--resume", "--epochs", 3) == 0
    meta = checkpoint.load(run)[1]
    assert meta["epoch"] == 3 and meta["tokenizer"]["kind"] == f"book-{token}"
    assert meta["settings"]["token"] == f"book-{token}" and meta["settings"]["embedding"] == 0


def test_a_resume_maps_the_cached_ids_without_tokenizing_again(tmp_path, capsys, monkeypatch):
    text, run = text_file(tmp_path), tmp_path / "run"
    assert dl("train", *TINY, "--text", text, "--out", run) == 0
    encode = tk.CharTokenizer.encode  # the prefixes of the samples only

    def short(self, text):
        assert len(text) < 100, "the text was encoded again"
        return encode(self, text)

    monkeypatch.setattr(tk.CharTokenizer, "encode", short)
    monkeypatch.setattr(tk, "fit", lambda *a: pytest.fail("fitted again"))
    monkeypatch.setattr(corpus.TextFile, "read", lambda self: pytest.fail("read the text"))
    assert dl("train", "--out", run, "--resume", "--epochs", 3) == 0
    assert checkpoint.load(run)[1]["epoch"] == 3
    assert dl("train", "--out", run, "--resume", "--epochs", 4, "--embedding", 16) == 2
    assert "--embedding 16 (the run has 8)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--tie-weights"],
            "--tie-weights shares the embedding table with the output layer, so --embedding "
            "(8) must equal --hidden (16); give --embedding 16, or leave --tie-weights out",
        ),
        (["--embedding", 0, "--embed-dropout", 0.2], "--embed-dropout 0.2 drops out embeddings"),
        (["--dropout", 0.2], "--dropout 0.2 acts between stacked layers, so with --layers 1"),
        (["--token", "word", "--max-vocab", 2], "--max-vocab 2: the word vocabulary reserves"),
        (["--max-vocab", 1], "--max-vocab 1: <unk> takes one id; give at least 2"),
        (["--token", "byte", "--min-freq", 2], "--min-freq with --token byte: the 256 byte"),
        (
            ["--token", "book-char", "--max-vocab", 20],
            "--max-vocab with --token book-char: the book's vocabulary keeps every token",
        ),
        (["--val-text", "VAL", "--val-fraction", 0.2], "--val-text and --val-fraction both"),
        (["--test-text", "TINY"], "--test-text TINY: 1 chars, and test needs at least 2"),
        (
            ["--test-fraction", 0.0005],
            "--test-fraction 0.0005 holds out 1 of 1,650 tokens, fewer than the 2 one batch needs",
        ),
        (["--val-fraction", 0.5, "--test-fraction", 0.5], "leave nothing to train on"),
        (
            ["--min-freq", 10**6],
            "--min-freq 1000000: no token of TEXT occurs that often (the most frequent, 960 times)",
        ),
        (
            ["--token", "whitespace", "VOCAB"],
            "--token whitespace: the text has 8 distinct tokens, more than the 4 a vocabulary "
            "may hold; give --max-vocab N (e.g. 50000) or --min-freq N",
        ),
    ],
)
def test_bad_text_options_exit_2_in_one_line_and_lose_nothing(
    tmp_path, capsys, monkeypatch, args, message
):
    text, run = text_file(tmp_path, "the cat sat on the mat\n" * 30 + "x" * 960), tmp_path / "run"
    files = {
        "VAL": text_file(tmp_path, "a val\n", "v.txt"),
        "TINY": text_file(tmp_path, "a", "t.txt"),
    }
    if "VOCAB" in args:  # a vocabulary past the limit (here 4 tokens: <unk>, <eos> and 2)
        monkeypatch.setattr(tk, "MAX_VOCAB", 4)
        args = [a for a in args if a != "VOCAB"]
    assert dl("train", *TINY, "--epochs", 1, "--text", text, "--out", run) == 0
    before = (run / "model.safetensors").read_bytes()
    capsys.readouterr()
    args = [files.get(a, a) for a in args]
    assert dl("train", *TINY, "--text", text, "--out", run, "--force", *args) == 2
    err = capsys.readouterr().err
    for name, path in {"TEXT": text, **files}.items():
        message = message.replace(name, str(path))
    assert message in err and err.count("\n") == 1, err
    assert (run / "model.safetensors").read_bytes() == before


@pytest.mark.slow
def test_a_tied_embedding_model_is_the_same_model_on_every_backend(tmp_path, capsys):
    installed = [b for b in ("torch", "tensorflow", "jax") if importlib.util.find_spec(b)]
    if len(installed) < 2:
        pytest.skip(f"needs two backends to compare, installed: {installed}")
    text, run = text_file(tmp_path), tmp_path / "run"
    model = ["--embedding", 16, "--tie-weights", "--layers", 2, "--dropout", 0.2]
    model += ["--embed-dropout", 0.1, "--output-dropout", 0.1, "--optimizer", "adam"]
    args = [*TINY[:2], "--hidden", 16, *model, "--batch-size", 4, "--num-steps", 8]
    assert dl("train", *args, "--epochs", 2, "--text", text, "--out", run) == 0
    assert "W_hq" not in checkpoint.load(run)[0]
    capsys.readouterr()
    figures, samples = {}, {}
    for backend in installed:
        assert dl("eval", run, "--backend", backend, "--json", "--text", text) == 0
        figures[backend] = json.loads(capsys.readouterr().out)
        assert dl("generate", run, "--backend", backend, "--prefix", "Verse", "--num", 30) == 0
        samples[backend] = capsys.readouterr().out
    assert len(set(samples.values())) == 1, samples
    losses = [f["loss"] for f in figures.values()]
    assert max(losses) - min(losses) <= 1e-5 * min(losses), figures
    # and both implementations of each backend: the scratch model and the framework's layers
    params, meta = checkpoint.load(run, "best")
    config, ids = lm.LMConfig.from_dict(meta["model"]), tk.from_dict(meta["tokenizer"])
    ids = ids.encode(text.read_text())
    sums = {
        (backend, impl): lm.evaluate(backends.model_class(backend, impl)(config, params), ids, 4, 8)
        for backend in installed
        for impl in IMPLS
    }
    totals = [loss for loss, _ in sums.values()]
    assert max(totals) - min(totals) <= 1e-5 * min(totals), sums
