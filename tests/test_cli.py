"""The `dl` command: training runs, checkpoints, exact resume, portability and bad input."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from dl import checkpoint
from dl.cli import main
from dl.cli import train as cli_train

novel = pytest.mark.usefixtures("time_machine_path")  # trains on The Time Machine: skip without it
SMALL = [
    "--hidden",
    "16",
    "--batch-size",
    "4",
    "--num-steps",
    "8",
    "--max-tokens",
    "1500",
    "--print-every",
    "1",
    "--save-every",
    "2",
]


def dl(*args):
    return main([str(a) for a in args])


def weights(run, stem="model"):
    return checkpoint.load(run, stem)[0]


def test_defaults_are_the_seed():
    settings = cli_train.resolve({})
    assert {
        k: settings[k]
        for k in (
            "cell",
            "hidden",
            "layers",
            "batch_size",
            "num_steps",
            "lr",
            "clip",
            "epochs",
            "token",
            "max_tokens",
            "val_fraction",
            "test_fraction",
            "embedding",
            "optimizer",
        )
    } == {
        "cell": "lstm",
        "hidden": 256,
        "layers": 1,
        "batch_size": 32,
        "num_steps": 35,
        "lr": 1.0,
        "clip": 1.0,
        "epochs": 500,
        "token": "book-char",  # the book's cleaning: letters only, lower case
        "max_tokens": 10000,
        "val_fraction": 0.0,
        "test_fraction": 0.0,
        "embedding": 0,  # one-hot inputs
        "optimizer": "sgd",
    }


@novel
def test_dry_run_reports_the_book_data_and_writes_nothing(tmp_path, capsys):
    assert (
        dl("train", "--dry-run", "--backend", "torch", "--device", "cpu", "--out", tmp_path / "run")
        == 0
    )
    out = capsys.readouterr().out
    assert (
        "lstm (concise, torch on cpu) with 299,036 parameters; 10,000 training and 0 "
        "validation tokens of The Time Machine, vocabulary 28" in out
    )
    assert not (tmp_path / "run").exists()


@novel
def test_train_writes_a_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        dl(
            "train",
            *SMALL,
            "--epochs",
            3,
            "--backend",
            "torch",
            "--device",
            "cpu",
            "--val-fraction",
            0.2,
            "--out",
            run,
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 + 5  # a sample per epoch; perplexity, validation, 2 samples, saved
    assert out[3].startswith("perplexity ") and "tokens/sec on cpu" in out[3]
    assert out[4].startswith("validation perplexity ")
    assert out[5].startswith("time traveller") and out[6].startswith("traveller")
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(r["val_perplexity"] > 1 and r["train_perplexity"] > 1 for r in records)
    _, meta = checkpoint.load(run)
    assert meta["epoch"] == 3 and meta["finished"] and meta["backend"] == "torch"
    assert meta["data"]["train_tokens"] == 1200 and meta["data"]["val_tokens"] == 300
    best = min(records, key=lambda r: r["val_loss"])
    assert checkpoint.load(run, "best")[1]["epoch"] == best["epoch"]
    assert meta["best_val_loss"] == best["val_loss"]
    assert (run / "perplexity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def interrupt_in_epoch(monkeypatch, epoch, sig=signal.SIGINT):
    """Send this process ``sig`` during the first update of ``epoch`` (a user's Ctrl-C)."""
    real, calls = cli_train.core.train_batches, []

    def train_batches(*args):
        calls.append(1)
        for item in real(*args):
            if len(calls) == epoch:
                os.kill(os.getpid(), sig)
            yield item

    monkeypatch.setattr(cli_train.core, "train_batches", train_batches)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend,extra",
    [
        ("torch", ["--layers", 2, "--dropout", 0.3]),
        ("torch", ["--cell", "gru", "--random-iter"]),
        ("tensorflow", ["--layers", 2, "--dropout", 0.3]),
        ("jax", ["--layers", 2, "--dropout", 0.3]),
        ("torch", ["--impl", "concise", "--layers", 2, "--dropout", 0.3]),
        ("tensorflow", ["--impl", "concise", "--cell", "gru"]),
    ],
)
@novel
def test_interrupted_and_resumed_run_ends_with_the_same_weights(
    tmp_path, monkeypatch, capsys, backend, extra
):
    pytest.importorskip(backend)
    # no checkpoint at epoch 2: the interrupt itself must save epoch 3's first update
    args = [
        *SMALL,
        *extra,
        "--backend",
        backend,
        "--val-fraction",
        0.1,
        "--epochs",
        4,
        "--save-every",
        3,
    ]
    assert dl("train", *args, "--out", tmp_path / "whole") == 0
    with monkeypatch.context() as patch:
        interrupt_in_epoch(patch, 3)
        assert dl("train", *args, "--out", tmp_path / "cut") == 130
    assert "interrupted: epoch 3 step 1 is saved" in capsys.readouterr().err
    assert checkpoint.load(tmp_path / "cut")[1]["epoch"] == 2
    assert (
        dl("train", "--out", tmp_path / "cut", "--resume", "--epochs", 4, "--backend", backend) == 0
    )
    for stem in ("model", "best"):
        whole, cut = weights(tmp_path / "whole", stem), weights(tmp_path / "cut", stem)
        for name in whole:
            np.testing.assert_array_equal(cut[name], whole[name], err_msg=f"{stem} {name}")
    lines = lambda run: [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    strip = lambda rs: [{k: r[k] for k in ("epoch", "val_loss")} for r in rs]
    assert strip(lines(tmp_path / "cut")) == strip(lines(tmp_path / "whole"))
    # the resumed epoch's loss is summed in two parts: equal up to rounding
    cut_losses = [r["train_loss"] for r in lines(tmp_path / "cut")]
    assert cut_losses == pytest.approx([r["train_loss"] for r in lines(tmp_path / "whole")])


@novel
def test_resume_refuses_changed_model_settings(tmp_path, capsys):
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 1, "--backend", "torch", "--out", run) == 0
    assert dl("train", "--out", run, "--resume", "--hidden", 32, "--epochs", 2) == 2
    assert "--hidden 32 (the run has 16)" in capsys.readouterr().err
    assert checkpoint.load(run)[1]["epoch"] == 1


@novel
def test_out_holding_a_run_is_refused_unless_forced(tmp_path, capsys):
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 1, "--backend", "torch", "--out", run) == 0
    before = (run / "model.safetensors").read_bytes()
    assert dl("train", *SMALL, "--epochs", 1, "--backend", "torch", "--out", run) == 2
    assert (
        "already holds a run; continue it with --resume, overwrite it with --force"
        in capsys.readouterr().err
    )
    assert (run / "model.safetensors").read_bytes() == before
    assert (
        dl(
            "train",
            *SMALL,
            "--epochs",
            1,
            "--seed",
            5,
            "--backend",
            "torch",
            "--out",
            run,
            "--force",
        )
        == 0
    )
    assert (run / "model.safetensors").read_bytes() != before


@pytest.mark.slow
def test_checkpoint_is_portable_across_backends(tmp_path, capsys, time_machine_path):
    installed = [
        b for b in ("torch", "tensorflow", "jax") if __import__("importlib").util.find_spec(b)
    ]
    if len(installed) < 2:
        pytest.skip(f"needs two backends to compare, installed: {installed}")
    run, text = tmp_path / "run", tmp_path / "part.txt"
    assert (
        dl(
            "train",
            *SMALL,
            "--epochs",
            2,
            "--layers",
            2,
            "--backend",
            installed[0],
            "--val-fraction",
            0.1,
            "--out",
            run,
        )
        == 0
    )
    text.write_text(time_machine_path.read_text()[5000:9000])
    capsys.readouterr()
    results, texts = {}, {}
    for backend in installed:
        assert dl("eval", run, "--backend", backend, "--json", "--text", text) == 0
        results[backend] = json.loads(capsys.readouterr().out)
        assert dl("generate", run, "--backend", backend, "--num", 40) == 0
        texts[backend] = capsys.readouterr().out
    assert len(set(texts.values())) == 1, texts
    ppl = [r["perplexity"] for r in results.values()]
    assert max(ppl) - min(ppl) <= 1e-4 * min(ppl), results
    assert len({r["tokens"] for r in results.values()}) == 1


@novel
def test_generate_greedy_is_the_default_and_sampling_repeats_for_a_seed(tmp_path, capsys):
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 1, "--backend", "torch", "--out", run) == 0
    capsys.readouterr()
    outputs = []
    for args in ([], ["--top-k", 1, "--seed", 3], ["--seed", 1], ["--seed", 1], ["--seed", 2]):
        assert dl("generate", run, "--prefix", "The Time", "--num", 30, *args) == 0
        outputs.append(capsys.readouterr().out.rstrip("\n"))
    greedy, top1, seed1, seed1_again, seed2 = outputs
    assert greedy.startswith("the time") and len(greedy) == len("the time") + 30
    assert top1 == greedy and seed1 == seed1_again and seed1 != seed2


@novel
def test_eval_counts_tokens_outside_the_vocabulary(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        dl(
            "train",
            *SMALL,
            "--epochs",
            1,
            "--token",
            "book-word",
            "--num-steps",
            4,
            "--max-tokens",
            800,
            "--backend",
            "torch",
            "--out",
            run,
        )
        == 0
    )
    text = tmp_path / "other.txt"
    text.write_text("The time traveller zebra quokka\nzebra the\n")
    capsys.readouterr()
    assert dl("eval", run, "--text", text) == 0
    out = capsys.readouterr().out
    assert "on 6 tokens of" in out  # every token after the first
    assert "(3 outside the vocabulary of" in out  # zebra, quokka, zebra


@pytest.mark.parametrize(
    "content,token,message",
    [
        (None, "char", "no such file"),
        ("dir", "char", "is a directory"),
        ("", "byte", "the file is empty"),
        (
            b"caf\xe9 au lait",
            "char",
            "not UTF-8 text (byte 0xe9 at offset 3); convert it to UTF-8 first, for example "
            "with iconv, or train on its raw bytes with --token byte",
        ),
        (
            b"ELF\x00\x01\x02 binary",
            "word",
            "a binary file, not text: it holds NUL bytes, the first at offset 3; train on its "
            "raw bytes with --token byte",
        ),
        ("1234 5678 !!!", "book-char", "no letters left after cleaning"),
        (
            "a tiny text, a tiny text, a tiny text!",
            "char",
            "--val-fraction 0.1 and --test-fraction 0.05 leave 32 of 38 tokens for training: a "
            "corpus of 32 tokens cannot make one batch of batch_size 4 x num_steps 8",
        ),
        (
            "tiny text",
            "char",
            "--val-fraction 0.1 holds out 1 of 9 tokens, fewer than the 2 one batch needs",
        ),
    ],
)
def test_bad_text_exits_2_with_a_message(tmp_path, capsys, content, token, message):
    path = tmp_path / "text.txt"
    if content == "dir":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    args = [*SMALL, "--text", path, "--token", token, "--backend", "torch"]
    assert dl("train", *args, "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert err.startswith("dl: error: ") and message in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--lr", "abc"], "argument --lr: 'abc' is not a number"),
        (["--lr", "-1"], "argument --lr: -1.0 must be greater than 0"),
        (["--hidden", "0"], "argument --hidden: 0 must be at least 1"),
        (["--dropout", "1.5"], "argument --dropout: 1.5 must be at least 0 and below 1"),
        (["--cell", "cnn"], "argument --cell: 'cnn' is not one of rnn, gru, lstm"),
        (["--epochs", "nan"], "argument --epochs: 'nan' is not a whole number"),
    ],
)
def test_bad_options_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        dl("train", *args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_other_user_errors_exit_2(tmp_path, capsys):
    cases = [
        (
            ["train", "--max-tokens", "0", "--backend", "torch", "--out", tmp_path / "a"],
            "--max-tokens 0: give a positive count, or -1",
        ),
        (
            ["train", "--cell", "gru", "--no-output-tanh", "--out", tmp_path / "b"],
            "--no-output-tanh applies to the LSTM only",
        ),
        (["train", "--resume", "--out", tmp_path / "c"], "holds no checkpoint"),
        (["generate", tmp_path / "nothing"], "no such run directory"),
        (["eval", tmp_path], "model.safetensors: no checkpoint there"),
    ]
    for args, message in cases:
        assert dl(*args) == 2, args
        assert message in capsys.readouterr().err


@novel
def test_damaged_checkpoints_exit_2_naming_the_file(tmp_path, capsys):
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 1, "--backend", "torch", "--out", run) == 0
    data = (run / "model.safetensors").read_bytes()
    (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    capsys.readouterr()
    assert dl("generate", run) == 2
    assert (
        f"{run / 'model.safetensors'}: not a readable safetensors file" in capsys.readouterr().err
    )
    assert dl("train", "--out", run, "--resume") == 2


@novel
def test_diverging_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    args = [*SMALL, "--save-every", 10, "--backend", "torch"]
    assert dl("train", *args, "--epochs", 2, "--out", tmp_path / "two") == 0
    real, calls = cli_train.core.train_batches, []

    def train_batches(trainer, *args):  # the third epoch's loss turns NaN
        calls.append(1)
        if len(calls) == 3:
            trainer.take_loss_sum = lambda: float("nan")
        yield from real(trainer, *args)

    monkeypatch.setattr(cli_train.core, "train_batches", train_batches)
    run = tmp_path / "run"
    assert dl("train", *args, "--epochs", 5, "--out", run) == 2
    err = capsys.readouterr().err
    assert "training diverged in epoch 3" in err and "smaller learning rate" in err
    assert f"The checkpoint of epoch 2 in {run} is kept" in err
    assert checkpoint.load(run)[1]["epoch"] == 2
    good = weights(tmp_path / "two")
    for name, value in weights(run).items():
        np.testing.assert_array_equal(value, good[name])


@novel
def test_real_divergence_in_the_first_epoch_writes_no_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        dl(
            "train",
            *SMALL,
            "--epochs",
            3,
            "--lr",
            "1e30",
            "--clip",
            "1e30",
            "--backend",
            "torch",
            "--out",
            run,
        )
        == 2
    )
    assert "training diverged in epoch 1" in capsys.readouterr().err
    assert not checkpoint.exists(run)


@novel
def test_newer_or_foreign_checkpoints_exit_2(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 1, "--backend", "torch", "--out", run) == 0
    params, meta = checkpoint.load(run)
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 7)
    checkpoint.save(run, params, {k: v for k, v in meta.items() if not k.startswith("format")})
    monkeypatch.undo()
    capsys.readouterr()
    assert dl("eval", run) == 2
    assert "format 7, newer than this dl reads" in capsys.readouterr().err
    from safetensors.numpy import save_file

    save_file(params, str(run / "model.safetensors"))
    assert dl("generate", run, "--checkpoint", "model") == 2
    assert "not written by dl" in capsys.readouterr().err


@pytest.mark.slow
@novel
def test_ctrl_c_saves_and_exits_130(tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # `dl` as a user's shell starts it: a test run started with SIGINT ignored (`pytest &` in a
    # script) passes the ignore on, and Python then never raises KeyboardInterrupt
    with_sigint = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, "
        "signal.default_int_handler); sys.argv[0] = 'dl'; "
        "runpy.run_module('dl', run_name='__main__')"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            with_sigint,
            "train",
            *map(str, SMALL),
            "--epochs",
            "1000",
            "--backend",
            "torch",
            "--out",
            str(run),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    for _ in range(3):  # three epochs done
        assert process.stdout.readline()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "continue with `dl train --out" in err and "Traceback" not in err
    epoch = checkpoint.load(run)[1]["epoch"]
    assert epoch >= 3
    records = (run / "metrics.jsonl").read_text().splitlines()
    assert json.loads(records[-1])["epoch"] >= epoch


def test_sweep_grid_and_names():
    from dl.cli.sweep import grid, run_name

    runs = grid({"hidden": [64, 128], "lr": [0.5, 1.0], "epochs": 3})
    assert runs == [
        {"hidden": 64, "lr": 0.5, "epochs": 3},
        {"hidden": 64, "lr": 1.0, "epochs": 3},
        {"hidden": 128, "lr": 0.5, "epochs": 3},
        {"hidden": 128, "lr": 1.0, "epochs": 3},
    ]
    assert run_name(runs[1], ["hidden", "lr"]) == "hidden=64,lr=1"
    assert run_name(runs[1], []) == "run"


@pytest.mark.slow
@novel
def test_sweep_records_each_run_and_skips_finished_ones(tmp_path, monkeypatch, capsys):
    import csv

    out = tmp_path / "sweep"
    args = [
        "sweep",
        "--hidden",
        "8,16",
        "--num-steps",
        "8",
        "--lr",
        "1,2",
        "--epochs",
        2,
        "--batch-size",
        4,
        "--max-tokens",
        1500,
        "--backend",
        "torch",
        "--out",
        out,
    ]
    with monkeypatch.context() as patch:
        interrupt_in_epoch(patch, 4)  # in the second run's second epoch
        assert dl(*args) == 130
    assert "sweep interrupted in hidden=8,lr=2" in capsys.readouterr().out
    first = (out / "hidden=8,lr=1" / "model.safetensors").read_bytes()
    assert dl(*args) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed[:4]] == [
        "[1/4] hidden=8,lr=1",
        "[2/4] hidden=8,lr=2",
        "[3/4] hidden=16,lr=1",
        "[4/4] hidden=16,lr=2",
    ]
    assert (out / "hidden=8,lr=1" / "model.safetensors").read_bytes() == first  # not retrained
    with open(out / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == [
        "hidden=8,lr=1",
        "hidden=8,lr=2",
        "hidden=16,lr=1",
        "hidden=16,lr=2",
    ]
    for row in rows:
        meta = checkpoint.load(out / row["run"])[1]
        assert meta["finished"] and meta["settings"]["val_fraction"] == 0.1
        assert float(row["val_perplexity"]) == pytest.approx(meta["val_perplexity"])
        assert float(row["tokens_per_sec"]) > 0 and row["sample"].startswith("time traveller")
    assert (out / "sweep.md").read_text().count("\n") == 6
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"


@novel
def test_concise_runs_save_the_same_model_every_backend_reads(tmp_path, capsys):
    run = tmp_path / "run"
    assert (
        dl(
            "train",
            *SMALL,
            "--epochs",
            2,
            "--impl",
            "concise",
            "--layers",
            2,
            "--backend",
            "torch",
            "--out",
            run,
        )
        == 0
    )
    assert checkpoint.load(run)[1]["settings"]["impl"] == "concise"
    capsys.readouterr()
    texts = []
    for backend in ("torch", "jax"):
        pytest.importorskip(backend)
        assert dl("generate", run, "--backend", backend, "--num", 30, "--prefix", "the") == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1]
    assert (
        dl(
            "train",
            *SMALL,
            "--impl",
            "concise",
            "--cell",
            "gru",
            "--backend",
            "torch",
            "--out",
            tmp_path / "gru",
        )
        == 2
    )
    assert "use --impl scratch" in capsys.readouterr().err


@pytest.mark.parametrize(
    "asked,cell,tanh,chosen",
    [
        ((None, None), "lstm", True, ("torch", "concise")),
        ((None, None), "gru", True, ("tensorflow", "scratch")),  # torch's GRU is not the book's
        ((None, None), "lstm", False, ("tensorflow", "scratch")),  # no layer drops the tanh
        (("torch", None), "gru", True, ("torch", "scratch")),
        ((None, "scratch"), "rnn", True, ("tensorflow", "scratch")),
        ((None, "concise"), "gru", True, ("jax", "concise")),
        (("tensorflow", "concise"), "gru", True, ("tensorflow", "concise")),
    ],
)
def test_backend_and_implementation_default_to_the_fastest_that_computes_the_model(
    asked, cell, tanh, chosen, monkeypatch
):
    from dl.cli import backends

    monkeypatch.setattr(backends, "installed", lambda: ["torch", "tensorflow", "jax"])
    assert backends.choose_model(*asked, cell, tanh) == chosen


@novel
def test_a_terminal_gets_a_progress_bar(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert (
        dl(
            "train",
            *SMALL,
            "--epochs",
            2,
            "--backend",
            "torch",
            "--val-fraction",
            0.2,
            "--out",
            tmp_path / "run",
        )
        == 0
    )
    captured = capsys.readouterr()
    steps = checkpoint.load(tmp_path / "run")[1]["position"]["step"]
    assert f"{steps}/" in captured.err and "step" in captured.err  # updates within the run
    assert "loss=" in captured.err and "val=" in captured.err and "tok/s=" in captured.err
    assert "lr=" not in captured.err  # not scheduled
    assert (
        captured.out.count("time traveller") == 3
    )  # a sample per epoch above the bar, 1 at the end


def test_with_one_framework_the_faster_implementation_is_chosen(monkeypatch):
    from dl.cli import backends

    monkeypatch.setattr(backends, "installed", lambda: ["tensorflow"])
    assert backends.choose_model(None, None, "lstm") == ("tensorflow", "scratch")
    monkeypatch.setattr(backends, "installed", lambda: ["torch"])
    assert backends.choose_model(None, None, "gru") == ("torch", "scratch")
    assert backends.choose_model(None, "concise", "gru") == ("torch", "concise")  # refused later


@novel
def test_force_removes_nothing_when_the_new_run_cannot_start(tmp_path, capsys):
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 1, "--backend", "torch", "--out", run) == 0
    before = (run / "model.safetensors").read_bytes()
    assert dl("train", *SMALL, "--text", tmp_path / "missing.txt", "--out", run, "--force") == 2
    assert "no such file" in capsys.readouterr().err
    assert (run / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    "device,message",
    [
        ("foo", "device 'foo': give cpu, gpu, gpu:N or cuda:N"),
        ("cuda:x", "device 'cuda:x': give cpu"),
        ("cuda:7", "device 'cuda:7': PyTorch sees"),
    ],
)
def test_bad_devices_exit_2(tmp_path, capsys, request, device, message):
    if device == "cuda:7":  # a well-formed name, checked once the model is built on the novel
        request.getfixturevalue("time_machine_path")
        if __import__("torch").cuda.device_count() > 7:
            pytest.skip("this machine has 8 GPUs")
    assert dl("train", *SMALL, "--backend", "torch", "--device", device, "--out", tmp_path) == 2
    assert message in capsys.readouterr().err


@novel
def test_more_user_errors_exit_2(tmp_path, capsys):
    assert dl("train", "--resume") == 2
    assert "--resume needs --out RUN" in capsys.readouterr().err
    assert dl("train", "--dropout", 0.3, "--out", tmp_path / "x") == 2
    assert "--dropout 0.3 acts between stacked layers" in capsys.readouterr().err
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 1, "--backend", "torch", "--out", run) == 0
    capsys.readouterr()
    assert dl("generate", run, "--checkpoint", "best") == 2
    assert "kept no best checkpoint" in capsys.readouterr().err


@novel
def test_ctrl_c_in_the_first_epoch_saves_its_first_update(tmp_path, monkeypatch, capsys):
    interrupt_in_epoch(monkeypatch, 1)
    assert dl("train", *SMALL, "--backend", "torch", "--out", tmp_path / "run") == 130
    assert "interrupted: epoch 1 step 1 is saved in" in capsys.readouterr().err
    assert checkpoint.load(tmp_path / "run")[1]["position"]["step"] == 1


@novel
def test_an_interrupt_inside_the_first_update_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    real = cli_train.core.train_batches

    def train_batches(*args):  # raised inside the update: its weights may be half-written
        for _ in real(*args):
            raise KeyboardInterrupt
        yield

    monkeypatch.setattr(cli_train.core, "train_batches", train_batches)
    assert dl("train", *SMALL, "--backend", "torch", "--out", tmp_path / "run") == 130
    assert "nothing was saved; start the run again" in capsys.readouterr().err
    assert not checkpoint.exists(tmp_path / "run")


@novel
def test_dry_run_of_a_resume_writes_nothing(tmp_path):
    run = tmp_path / "run"
    assert (
        dl("train", *SMALL, "--epochs", 3, "--save-every", 1, "--backend", "torch", "--out", run)
        == 0
    )
    params, meta = checkpoint.load(run)
    checkpoint.save(
        run,
        params,
        {
            **{k: v for k, v in meta.items() if not k.startswith("format")},
            "epoch": 1,
            "finished": False,
        },
    )
    before = (run / "metrics.jsonl").read_text()
    assert dl("train", "--out", run, "--resume", "--dry-run") == 0
    assert (run / "metrics.jsonl").read_text() == before


@novel
def test_resume_on_another_backend_takes_an_implementation_it_has(tmp_path, capsys):
    pytest.importorskip("tensorflow")
    run = tmp_path / "run"
    assert (
        dl(
            "train",
            *SMALL,
            "--epochs",
            1,
            "--cell",
            "gru",
            "--backend",
            "tensorflow",
            "--impl",
            "concise",
            "--out",
            run,
        )
        == 0
    )
    assert dl("train", "--out", run, "--resume", "--epochs", 2, "--backend", "torch") == 0
    meta = checkpoint.load(run)[1]
    assert meta["epoch"] == 2 and meta["settings"]["backend"] == "torch"
    assert meta["settings"]["impl"] == "scratch"  # torch's own GRU is not the book's


@pytest.mark.slow
@novel
def test_sweep_records_a_diverged_run_and_refuses_other_settings(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = [
        "sweep",
        "--lr",
        "0.5,1e30",
        "--clip",
        "1e30",
        "--epochs",
        2,
        "--hidden",
        8,
        "--batch-size",
        4,
        "--num-steps",
        8,
        "--max-tokens",
        1500,
        "--backend",
        "torch",
        "--out",
        out,
    ]
    assert dl(*args) == 0
    printed = capsys.readouterr().out
    assert "[2/2] lr=1e+30: (diverged: see diverged.txt)" in printed
    assert "training diverged" in (out / "lr=1e+30" / "diverged.txt").read_text()
    assert "inf" in (out / "sweep.csv").read_text()
    assert dl(*args) == 0  # not trained again
    other = list(args)
    other[other.index("--hidden") + 1] = 16
    assert dl(*other) == 2  # --hidden 16 over runs of 8
    assert "was trained with other --hidden than this sweep asks for" in capsys.readouterr().err
