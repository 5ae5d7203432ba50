"""Long runs of `dl train`: a run cut anywhere (a signal between two updates, a crash after a
mid-epoch checkpoint, a time budget) and resumed ends bit for bit as the uninterrupted one,
with schedules, plateau cuts, dropout and mid-epoch evaluation; early stopping; the progress
bar's rare syncs; bad inputs. Most run on the NumPy stand-in of ``fake_backend``, whose update
depends on the carried state, the dropout seed and the rate ``set_lr`` gave; one runs the real
backends."""

import json
import math
import os
import re
import signal
import sys

import numpy as np
import pytest

import fake_backend
from dl import checkpoint, optim
from dl.cli import longrun, main
from dl.cli import train as cli_train
from dl.cli.options import duration

pytestmark = pytest.mark.usefixtures("time_machine_path")
SMALL = ["--backend", "torch", "--batch-size", "4", "--num-steps", "8", "--max-tokens", "2000"]
SMALL += ["--hidden", "8", "--print-every", "1000", "--val-fraction", "0.2"]
LONG = [
    *SMALL,
    *["--layers", "2", "--dropout", "0.3"],
    *["--schedule", "cosine", "--warmup", "10", "--min-lr-fraction", "0.1"],
    *["--plateau-factor", "0.5", "--eval-every", "15", "--epochs", "3"],
]


def dl(*args):
    return main([str(a) for a in args])


@pytest.fixture
def fake(monkeypatch):
    """The NumPy backend, with a validation loss that wobbles with the weights (so the
    plateau cuts and early stopping happen, the same in every run with the same weights)."""
    fake_backend.install(monkeypatch)
    real = cli_train.lm.evaluate

    def evaluate(model, *args):
        loss_sum, num_tokens = real(model, *args)
        wobble = 0.05 * math.sin(1e4 * float(model.params["b_q"].astype(np.float64).sum()))
        return loss_sum * (1 + wobble), num_tokens

    monkeypatch.setattr(cli_train.lm, "evaluate", evaluate)


def after_update(monkeypatch, update, action):
    """Call ``action()`` right after update number ``update`` (from 1) of the command."""
    real, count = cli_train.core.train_batches, [0]

    def train_batches(*args):
        for item in real(*args):
            count[0] += 1
            if count[0] == update:
                action()
            yield item

    monkeypatch.setattr(cli_train.core, "train_batches", train_batches)


def records(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(cut, whole):
    """Weights (latest and best), optimizer state, position, plateau and metrics agree."""
    for stem in ("model", "best"):
        params, state, carried, meta = checkpoint.load_run(cut, stem)
        w_params, w_state, w_carried, w_meta = checkpoint.load_run(whole, stem)
        assert sorted(params) == sorted(w_params) and len(carried) == len(w_carried)
        for a, b in zip(carried, w_carried):  # a best taken mid-epoch carries its state
            np.testing.assert_array_equal(a, b)
        for name, value in {**w_params, **w_state}.items():
            np.testing.assert_array_equal({**params, **state}[name], value, err_msg=name)
        for key in ("epoch", "best_val_loss", "plateau", "evals_since_best", "schedule"):
            assert meta[key] == w_meta[key], key
        assert meta["position"]["step"] == w_meta["position"]["step"]
    strip = lambda rs: [(r["epoch"], r["step"], r.get("batch"), r["val_loss"]) for r in rs]
    assert strip(records(cut)) == strip(records(whole))
    losses = [r["train_loss"] for r in records(cut)]  # summed in parts: equal up to rounding
    assert losses == pytest.approx([r["train_loss"] for r in records(whole)], rel=1e-12)


@pytest.fixture
def whole(tmp_path, fake, capsys):
    run = tmp_path / "whole"
    assert dl("train", *LONG, "--out", run) == 0
    capsys.readouterr()
    return run


def test_the_whole_run_cuts_the_rate_on_plateaus_and_follows_the_cosine(whole):
    rs, meta = records(whole), checkpoint.load(whole)[1]
    schedule = optim.ScheduleConfig(**meta["schedule"])
    assert schedule == optim.ScheduleConfig("cosine", 10, meta["position"]["step"], 0.1)
    assert 0 < meta["plateau"]["scale"] < 1  # at least one cut
    scale, best = 1.0, math.inf
    for r in rs:  # the rate of each record's last update, then the cut its evaluation makes
        assert r["lr"] == pytest.approx(1.0 * schedule.factor(r["step"] - 1) * scale, rel=1e-12)
        if r["val_loss"] is not None:
            if r["val_loss"] >= best:
                scale *= 0.5  # plateau patience 0: a cut after every evaluation not the best
            best = min(best, r["val_loss"])
    assert meta["plateau"]["scale"] == scale
    mid = [r for r in rs if "batch" in r]  # evaluations within epochs, every 15 updates
    assert len(mid) >= 8 and all(r["step"] % 15 == 0 and r["val_loss"] for r in mid)


@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("where", ["first update", "middle of epoch 2", "end of epoch 1"])
def test_a_signal_anywhere_saves_that_update_and_the_resume_ends_as_the_whole(
    tmp_path, whole, monkeypatch, capsys, sig, status, where
):
    epoch_one = next(r["step"] for r in records(whole) if r["epoch"] == 1 and "batch" not in r)
    update = {"first update": 1, "middle of epoch 2": epoch_one + 20, "end of epoch 1": epoch_one}
    cut = tmp_path / "cut"
    with monkeypatch.context() as patch:
        after_update(patch, update[where], lambda: os.kill(os.getpid(), sig))
        assert dl("train", *LONG, "--out", cut) == status
    err = capsys.readouterr().err
    _, _, carried, meta = checkpoint.load_run(cut)
    assert meta["position"]["step"] == update[where]
    expected = {"first update": "epoch 1 step 1", "end of epoch 1": f"epoch 1 step {epoch_one}"}
    expected["middle of epoch 2"] = "epoch 2 step 20"
    assert f"interrupted: {expected[where]} is saved in {cut}" in err
    assert [a.shape for a in carried] == [(4, 1)]  # the state the next batch continues from
    assert dl("train", "--out", cut, "--resume") == 0
    assert_same_run(cut, whole)


def test_a_crash_resumes_exactly_from_the_last_mid_epoch_checkpoint(
    tmp_path, whole, monkeypatch, capsys
):
    cut = tmp_path / "cut"

    def crash():
        raise RuntimeError("the machine went away")

    with monkeypatch.context() as patch:
        after_update(patch, 76, crash)  # after the evaluation at 75, not saved
        assert dl("train", *LONG, "--save-every-steps", 7, "--out", cut) == 1
    meta = checkpoint.load(cut)[1]
    assert meta["position"]["step"] == 70 and meta["position"]["batch"] > 0
    capsys.readouterr()
    assert dl("train", "--out", cut, "--resume") == 0
    err = capsys.readouterr().err
    assert "resuming after epoch 2 step 21 (the checkpoint's): removed the records of " in err
    assert_same_run(cut, whole)


def test_save_minutes_saves_in_the_middle_of_an_epoch(tmp_path, fake, monkeypatch, capsys):
    clock = iter(range(10**6))  # one second passes at every look at the clock
    monkeypatch.setattr(longrun.time, "monotonic", lambda: float(next(clock)))
    saved, real = [], checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda *a: saved.append((a[3], a[2])) or real(*a))
    assert dl("train", *SMALL, "--epochs", 2, "--save-minutes", 0.5, "--out", tmp_path / "r") == 0
    latest = [meta["position"] for stem, meta in saved if stem == "model"]
    # 30 s of updates, one a second (and one look at the clock at the epoch's end)
    assert [p["step"] for p in latest if p["batch"]] == [30, 59, 89]


def test_max_time_zero_trains_one_update_then_saves_evaluates_and_says_why(tmp_path, fake, capsys):
    args = [a for a in LONG if a not in ("--plateau-factor", "0.5")]  # evaluations move nothing
    assert dl("train", *args, "--out", tmp_path / "whole") == 0
    cut = tmp_path / "cut"
    capsys.readouterr()
    assert dl("train", *args, "--max-time", "0", "--out", cut) == 0
    out = capsys.readouterr().out
    assert "--max-time 0s spent: stopped at epoch 1 step 1 of 3 epochs" in out
    assert "validation perplexity" in out and f"saved {cut / 'model.safetensors'}" in out
    (record,) = records(cut)
    assert record["step"] == 1 and record["batch"] == 1 and record["val_loss"] is not None
    meta = checkpoint.load(cut)[1]
    assert meta["ended"] == "max-time" and not meta["finished"]
    assert dl("train", "--out", cut, "--resume", "--max-time", "0") == 0  # one more update
    assert checkpoint.load(cut)[1]["position"]["step"] == 2
    assert dl("train", "--out", cut, "--resume") == 0  # no budget now: to --epochs
    assert checkpoint.load(cut)[1]["finished"]
    for name, value in checkpoint.load(tmp_path / "whole")[0].items():
        np.testing.assert_array_equal(checkpoint.load(cut)[0][name], value, err_msg=name)


def test_a_budget_run_with_default_epochs_and_its_exact_resume(tmp_path, fake, monkeypatch, capsys):
    args = [*SMALL, "--dropout", "0.2", "--layers", "2", "--schedule", "cosine", "--warmup", "5"]
    assert dl("train", *args, "--epochs", 2, "--out", tmp_path / "whole") == 0
    clock = iter(range(10**6))
    monkeypatch.setattr(longrun.time, "monotonic", lambda: float(next(clock)))
    cut = tmp_path / "cut"
    assert dl("train", *args, "--epochs", 2, "--max-time", "1m", "--out", cut) == 0
    assert "--max-time 60s spent: stopped at epoch 2 step" in capsys.readouterr().out
    assert checkpoint.load(cut)[1]["position"]["batch"] > 0
    assert dl("train", "--out", cut, "--resume") == 0
    for name, value in checkpoint.load(tmp_path / "whole")[0].items():
        np.testing.assert_array_equal(checkpoint.load(cut)[0][name], value, err_msg=name)
    assert dl("train", *SMALL, "--max-time", "3s", "--out", tmp_path / "budget") == 0
    assert "of 500 epochs" in capsys.readouterr().out  # --epochs left at its default


def test_patience_stops_training_cleanly_and_keeps_the_best(tmp_path, fake, capsys):
    run = tmp_path / "run"
    assert (
        dl("train", *SMALL, "--epochs", 50, "--eval-every", 5, "--patience", 2, "--out", run) == 0
    )
    out = capsys.readouterr().out
    rs, meta = records(run), checkpoint.load(run)[1]
    assert meta["ended"] == "patience" and not meta["finished"]
    vals = [r["val_loss"] for r in rs if r["val_loss"] is not None]
    best = min(vals)
    assert vals.index(best) == len(vals) - 3 and min(vals[-2:]) >= best  # two not better: stop
    where = longrun.Position.of(meta).describe()
    assert f"early stop at {where}: no better validation loss in 2 evaluations" in out
    assert checkpoint.load(run, "best")[1]["best_val_loss"] == best


def test_a_constant_schedule_never_sets_the_rate(tmp_path, fake, monkeypatch):
    def set_lr(self, lr):
        raise AssertionError("set_lr called")

    monkeypatch.setattr(fake_backend.FakeTrainer, "set_lr", set_lr)
    assert dl("train", *SMALL, "--epochs", 2, "--eval-every", 10, "--out", tmp_path / "r") == 0
    assert all("lr" not in r for r in records(tmp_path / "r"))


def test_the_bar_syncs_the_loss_at_most_once_a_second_never_per_update(
    tmp_path, fake, monkeypatch, capsys
):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    clock = iter(np.arange(0, 10**6, 0.25))  # four updates a second
    monkeypatch.setattr(longrun.time, "monotonic", lambda: float(next(clock)))
    syncs, real = [], fake_backend.FakeTrainer.take_loss_sum
    monkeypatch.setattr(
        fake_backend.FakeTrainer, "take_loss_sum", lambda self: syncs.append(1) or real(self)
    )
    args = [*SMALL, "--schedule", "cosine", "--epochs", 2]
    assert dl("train", *args, "--out", tmp_path / "r") == 0
    steps = checkpoint.load(tmp_path / "r")[1]["position"]["step"]
    assert steps / 4 - 2 <= len(syncs) <= steps / 4 + 4  # a refresh a second, the epochs' ends
    err = capsys.readouterr().err
    assert "loss=" in err and "lr=" in err and "val=" in err and "step/s" in err


def test_the_bar_shows_the_time_max_time_leaves(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    clock = iter(np.arange(0, 10**6, 0.25))  # four updates a second
    monkeypatch.setattr(longrun.time, "monotonic", lambda: float(next(clock)))
    assert dl("train", *SMALL, "--epochs", 1000, "--max-time", 30, "--out", tmp_path / "r") == 0
    err = capsys.readouterr().err
    left = [int(m) * 60 + int(s) for m, s in re.findall(r"max-time left=(\d+):(\d+)", err)]
    assert len(left) > 5 and left == sorted(left, reverse=True)  # counting down
    assert left[0] <= 30 and left[-1] <= 1  # from the budget to none left
    assert dl("train", *SMALL, "--epochs", 1, "--out", tmp_path / "r2") == 0
    assert "max-time left" not in capsys.readouterr().err  # no budget, no count-down


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--warmup", "500", "--schedule", "cosine", "--epochs", "2"],
            "--warmup 500 is not "
            "shorter than the run's 98 updates (2 epochs of 49 batches); give a shorter --warmup",
        ),
        (["--warmup", "99", "--epochs", "2"], "--warmup 99 is not shorter than the run's 98"),
        (["--save-minutes", "0"], "argument --save-minutes: 0.0 must be greater than 0"),
        (["--max-time", "soon"], "argument --max-time: 'soon' is not a duration; give seconds"),
        (["--max-time", "inf"], "argument --max-time: 'inf' must be a finite duration"),
        (
            ["--val-fraction", "0", "--patience", "3"],
            "--patience 3 works on the validation "
            "loss, and the run holds out none; give --val-fraction",
        ),
        (["--val-fraction", "0", "--plateau-factor", "0.25"], "--plateau-factor 0.25 works on"),
        (["--val-fraction", "0", "--eval-every", "10"], "--eval-every 10 works on the valid"),
        (
            ["--plateau-patience", "2"],
            "--plateau-patience 2 counts evaluations before a plateau cut; give --plateau-factor",
        ),
        (["--min-lr-fraction", "0.1"], "--min-lr-fraction 0.1 is where a cosine ends"),
        (
            ["--schedule", "cosine", "--min-lr-fraction", "1.5"],
            "--min-lr-fraction 1.5: give a fraction of --lr from 0 to 1",
        ),
    ],
)
def test_bad_long_run_options_are_refused_before_anything_trains(
    tmp_path, fake, monkeypatch, capsys, args, message
):
    def train_batches(*args):
        raise AssertionError("an update trained")

    monkeypatch.setattr(cli_train.core, "train_batches", train_batches)
    run = tmp_path / "run"
    try:
        status = dl("train", *SMALL, "--out", run, *args)
    except SystemExit as exit:  # an option's own parser refused it
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1, err
    assert not run.exists()


def test_a_schedule_on_a_backend_without_set_lr_is_refused(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.delattr(fake_backend.FakeTrainer, "set_lr")
    assert dl("train", *SMALL, "--warmup", "5", "--out", tmp_path / "run") == 2
    assert "cannot do (its trainer has no set_lr)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "text,seconds", [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400), ("2d", 172800)]
)
def test_durations(text, seconds):
    assert duration(text) == seconds


def test_positions_describe_themselves_and_the_plateau_counts():
    assert longrun.Position(2).describe() == "epoch 2"
    assert longrun.Position(2, 17, 115).describe() == "epoch 3 step 17"
    assert longrun.Position.of({"epoch": 4}) == longrun.Position(4)  # a checkpoint before these
    plateau = optim.Plateau(0.25, patience=1)
    assert [plateau.update(v) for v in (3.0, 2.0, 2.5, 2.4, 2.1, 1.0, 1.5)] == [
        False,
        False,
        False,
        True,
        False,
        False,
        False,
    ]
    assert plateau.state() == {"scale": 0.25, "best": 1.0, "bad": 1}


# ---------------------------------------------------------------- the real backends


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "tensorflow", "jax"])
def test_a_sigterm_in_the_middle_of_an_epoch_resumes_bit_for_bit(
    tmp_path, monkeypatch, capsys, backend
):
    pytest.importorskip(backend)
    args = [
        *["--backend", backend, "--hidden", "16", "--batch-size", "4", "--num-steps", "8"],
        *["--max-tokens", "1200", "--val-fraction", "0.2", "--layers", "2", "--dropout", "0.3"],
        *["--optimizer", "adam", "--lr", "0.01", "--schedule", "cosine", "--warmup", "8"],
        *["--eval-every", "20", "--epochs", "2", "--print-every", "1000"],
    ]
    assert dl("train", *args, "--out", tmp_path / "whole") == 0
    cut = tmp_path / "cut"
    with monkeypatch.context() as patch:
        after_update(patch, 41, lambda: os.kill(os.getpid(), signal.SIGTERM))
        assert dl("train", *args, "--out", cut) == 143
    assert "interrupted: epoch 2 step" in capsys.readouterr().err
    assert checkpoint.load_run(cut)[2]  # the carried state, two layers of (H, C)
    assert dl("train", "--out", cut, "--resume") == 0
    for stem in ("model", "best"):
        params, state, _, _ = checkpoint.load_run(cut, stem)
        w_params, w_state, _, _ = checkpoint.load_run(tmp_path / "whole", stem)
        for name, value in {**w_params, **w_state}.items():
            np.testing.assert_array_equal({**params, **state}[name], value, err_msg=name)
