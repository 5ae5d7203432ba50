"""Tests for dl.train, the core loop, driven by a fake pure-NumPy Trainer."""

import math
import random
import re
from fractions import Fraction

import numpy as np
import pytest

from dl.data.batches import SeqDataLoader
from dl.data.text import Vocab
from dl.progress import Animator
from dl.train import (
    DivergedError,
    EpochTrainer,
    check_positive,
    epoch_perplexity,
    fit,
    predict_tokens,
    train_epoch,
)

LOG5 = math.log(5.0)
FINAL_LINE = re.compile(r"perplexity (\S+), (\d+\.\d) tokens/sec on (.+)")


class FakeTrainer:
    """Records how the loop drives it. The state is a tuple ``(fresh_id, steps_taken)``.

    ``loss_per_token(epoch)`` gives each epoch's mean loss; the running sum stays "on the
    device" (here a float) until ``take_loss_sum``.
    """

    def __init__(self, loss_per_token=lambda epoch: LOG5):
        self.loss_per_token = loss_per_token
        self.calls = []  # ('begin', batch_size) | ('step', state_in) | ('take',)
        self.fresh = 0
        self.epoch = 1
        self._loss_sum = 0.0

    def begin_state(self, batch_size):
        self.calls.append(("begin", batch_size))
        self.fresh += 1
        return (self.fresh, 0)

    def train_step(self, X, Y, state):
        assert X.shape == Y.shape
        self.calls.append(("step", state))
        self._loss_sum += self.loss_per_token(self.epoch) * Y.size
        return (state[0], state[1] + 1)

    def take_loss_sum(self):
        self.calls.append(("take",))
        loss_sum, self._loss_sum = self._loss_sum, 0.0
        self.epoch += 1
        return loss_sum

    def kinds(self):
        return [call[0] for call in self.calls]


def make_batches(num_batches=3, batch_size=2, num_steps=4):
    base = np.arange(num_batches * batch_size * num_steps).reshape(
        num_batches, batch_size, num_steps
    )
    return [(X, X + 1) for X in base]


class FakePredict:
    """predict(prefix) -> a recognisable string; records the epoch it was called in."""

    def __init__(self, trainer):
        self.trainer, self.calls = trainer, []

    def __call__(self, prefix):
        done = self.trainer.epoch - 1
        self.calls.append((prefix, done))
        return f"<{prefix}> after {done} epochs"


# ---------------------------------------------------------------- train_epoch


def test_train_epoch_sequential_begins_state_once_and_carries_it():
    trainer = FakeTrainer()
    loss_sum, num_tokens, speed = train_epoch(trainer, make_batches(3, 2, 4))
    assert trainer.calls == [
        ("begin", 2),
        ("step", (1, 0)),
        ("step", (1, 1)),
        ("step", (1, 2)),
        ("take",),
    ]
    assert num_tokens == 3 * 2 * 4
    assert loss_sum == pytest.approx(24 * LOG5)
    assert speed > 0


def test_train_epoch_random_iter_begins_state_every_batch():
    trainer = FakeTrainer()
    loss_sum, num_tokens, _ = train_epoch(trainer, make_batches(3, 5, 2), use_random_iter=True)
    assert trainer.calls == [
        ("begin", 5),
        ("step", (1, 0)),
        ("begin", 5),
        ("step", (2, 0)),
        ("begin", 5),
        ("step", (3, 0)),
        ("take",),
    ]
    assert num_tokens == 30
    assert loss_sum == pytest.approx(30 * LOG5)


def test_train_epoch_over_a_seq_data_loader():
    trainer = FakeTrainer()
    loader = SeqDataLoader(4, 5, corpus=list(range(4 * 5 * 3 + 6)))
    random.seed(0)
    expected = len(list(loader))
    random.seed(0)
    _, num_tokens, _ = train_epoch(trainer, loader)
    assert num_tokens == expected * 20
    assert trainer.kinds().count("begin") == 1
    assert trainer.kinds().count("step") == expected
    assert trainer.kinds().count("take") == 1


def test_train_epoch_takes_the_loss_once_per_epoch_after_all_steps():
    trainer = FakeTrainer()
    for _ in range(3):
        train_epoch(trainer, make_batches(4))
    kinds = trainer.kinds()
    assert kinds.count("take") == 3
    assert kinds == (["begin"] + ["step"] * 4 + ["take"]) * 3  # fresh state each epoch


def test_train_epoch_without_batches_raises():
    trainer = FakeTrainer()
    with pytest.raises(ValueError, match="no batches"):
        train_epoch(trainer, [])
    assert trainer.calls == []


# ---------------------------------------------------------------- epoch_perplexity


def test_epoch_perplexity_values():
    assert epoch_perplexity(4 * math.log(3), 4, 1, 1.0) == pytest.approx(3.0)
    assert epoch_perplexity(0.0, 10, 1, 1.0) == 1.0
    with pytest.raises(DivergedError, match="epoch 3"):  # finite loss, overflowing perplexity
        epoch_perplexity(710.0 * 2, 2, 3, 1.0)


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf])
def test_epoch_perplexity_non_finite_raises_diverged(loss):
    with pytest.raises(DivergedError) as info:
        epoch_perplexity(loss, 10, 7, 0.25)
    message = str(info.value)
    assert "epoch 7" in message
    assert "smaller learning rate" in message
    assert "lr=0.25" in message
    assert isinstance(info.value, FloatingPointError)


# ---------------------------------------------------------------- fit


def test_fit_prints_every_10_epochs_and_the_final_lines(capsys):
    trainer = FakeTrainer()
    predict = FakePredict(trainer)
    animator = fit(trainer, make_batches(2), 25, 1.0, predict, "cpu:0")
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["<time traveller> after 10 epochs", "<time traveller> after 20 epochs"]
    match = FINAL_LINE.fullmatch(lines[2])
    assert match, lines[2]
    assert match.group(1) == "5.0"
    assert float(match.group(2)) > 0
    assert match.group(3) == "cpu:0"
    assert lines[3:] == ["<time traveller> after 25 epochs", "<traveller> after 25 epochs"]
    assert len(lines) == 5
    assert trainer.kinds().count("take") == 25
    assert trainer.kinds().count("begin") == 25
    assert isinstance(animator, Animator)
    assert animator.X == [[10, 20]]
    assert animator.Y == [pytest.approx([5.0, 5.0])]
    assert animator.axes_config["xlim"] == [10, 25]
    assert animator.axes_config["xlabel"] == "epoch"
    assert animator.axes_config["ylabel"] == "perplexity"


def test_fit_reports_the_last_epochs_perplexity(capsys):
    trainer = FakeTrainer(loss_per_token=lambda epoch: math.log(30.0 / epoch))
    fit(trainer, make_batches(1), 3, 1.0, FakePredict(trainer), "gpu")
    lines = capsys.readouterr().out.splitlines()
    assert FINAL_LINE.fullmatch(lines[0]).group(1) == "10.0"  # epoch 3: 30 / 3
    assert len(lines) == 3


def test_fit_stops_when_the_perplexity_overflows(capsys):
    trainer = FakeTrainer(loss_per_token=lambda epoch: 800.0)
    with pytest.raises(DivergedError, match="smaller learning rate"):
        fit(trainer, make_batches(1), 1, 1.0, lambda prefix: prefix, "cpu")
    assert capsys.readouterr().out == ""


def test_fit_random_iter_and_custom_options(capsys):
    trainer = FakeTrainer()
    animator = Animator()
    returned = fit(
        trainer,
        make_batches(3),
        4,
        0.5,
        lambda p: p.upper(),
        "/GPU:0",
        use_random_iter=True,
        prefixes=("abc", "de", "f"),
        print_every=2,
        animator=animator,
    )
    assert returned is animator
    assert animator.X == [[2, 4]]
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["ABC", "ABC"]
    assert FINAL_LINE.fullmatch(lines[2]).group(3) == "/GPU:0"
    assert lines[3:] == ["ABC", "DE", "F"]
    assert trainer.kinds().count("begin") == 4 * 3  # every batch of every epoch


def test_fit_zero_epochs_prints_only_the_predictions(capsys):
    trainer = FakeTrainer()
    animator = fit(trainer, make_batches(), 0, 1.0, FakePredict(trainer), "cpu")
    assert capsys.readouterr().out == (
        "<time traveller> after 0 epochs\n<traveller> after 0 epochs\n"
    )
    assert trainer.calls == []
    assert animator.X is None


@pytest.mark.parametrize("num_epochs", [-1, -10, 2.5, 3.0, "3", None, True, math.nan])
def test_fit_invalid_num_epochs_raises(num_epochs, capsys):
    trainer = FakeTrainer()
    with pytest.raises(ValueError, match="num_epochs") as info:
        fit(trainer, make_batches(), num_epochs, 1.0, lambda p: p, "cpu")
    assert repr(num_epochs) in str(info.value)
    assert trainer.calls == []
    assert capsys.readouterr().out == ""


def test_fit_accepts_numpy_integer_epochs(capsys):
    trainer = FakeTrainer()
    fit(trainer, make_batches(1), np.int64(2), 1.0, lambda p: p, "cpu")
    assert trainer.kinds().count("take") == 2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_fit_diverged_loss_raises_naming_the_epoch_and_prints_nothing_after(bad, capsys):
    trainer = FakeTrainer(loss_per_token=lambda epoch: bad if epoch == 15 else LOG5)
    predict = FakePredict(trainer)
    with pytest.raises(DivergedError) as info:
        fit(trainer, make_batches(2), 50, 2.0, predict, "cpu")
    message = str(info.value)
    assert "epoch 15" in message
    assert "smaller learning rate" in message
    assert "lr=2.0" in message
    assert capsys.readouterr().out == "<time traveller> after 10 epochs\n"
    assert predict.calls == [("time traveller", 10)]
    assert trainer.kinds().count("take") == 15  # stopped at once


def test_fit_diverged_in_the_first_epoch_prints_nothing(capsys):
    trainer = FakeTrainer(loss_per_token=lambda epoch: math.nan)
    with pytest.raises(DivergedError, match="epoch 1\\b"):
        fit(trainer, make_batches(1), 10, 1.0, lambda p: p, "cpu")
    assert capsys.readouterr().out == ""


def test_fit_diverged_on_a_print_epoch_prints_nothing_for_it(capsys):
    trainer = FakeTrainer(loss_per_token=lambda epoch: math.inf if epoch == 10 else LOG5)
    with pytest.raises(DivergedError, match="epoch 10\\b"):
        fit(trainer, make_batches(1), 20, 1.0, lambda p: "PREDICTION", "cpu")
    assert capsys.readouterr().out == ""


def test_fit_print_every_zero_raises_value_error():
    trainer = FakeTrainer()
    with pytest.raises(ValueError, match="print_every"):
        fit(trainer, make_batches(1), 1, 1.0, lambda p: p, "cpu", print_every=0)


# ---------------------------------------------------------------- predict_tokens


@pytest.fixture
def vocab():
    vocab = Vocab(list("aabbbc"))
    assert vocab.idx_to_token == ["<unk>", "b", "a", "c"]
    return vocab


class SuccessorStep:
    """step(token_id, state): logits whose argmax is (token_id + 1) % V; state records ids."""

    def __init__(self, vocab_size, as_list=False):
        self.vocab_size, self.as_list, self.ids = vocab_size, as_list, []

    def __call__(self, token_id, state):
        assert isinstance(token_id, int)
        self.ids.append(token_id)
        logits = np.full((1, self.vocab_size), -1.0)
        logits[0, (token_id + 1) % self.vocab_size] = 2.0
        return (logits.tolist() if self.as_list else logits), state + [token_id]


def test_predict_tokens_greedy(vocab):
    step = SuccessorStep(len(vocab))
    assert predict_tokens("ab", 3, vocab, step, []) == "abac<unk>"
    # warm-up on 'a' (2), then predictions from 'b' (1) -> a (2) -> c (3) -> <unk> (0)
    assert step.ids == [2, 1, 2, 3]


def test_predict_tokens_logits_as_nested_list(vocab):
    step = SuccessorStep(len(vocab), as_list=True)
    assert predict_tokens("c", 2, vocab, step, []) == "c<unk>b"


def test_predict_tokens_argmax_takes_the_first_of_ties(vocab):
    def step(token_id, state):
        return np.array([[0.1, 0.9, 0.9, 0.2]]), state

    assert predict_tokens("a", 2, vocab, step, None) == "abb"


def test_predict_tokens_carries_the_state(vocab):
    seen = []

    def step(token_id, state):
        seen.append(state)
        return np.eye(4)[[0]], state + 1

    predict_tokens("abc", 2, vocab, step, 100)
    assert seen == [100, 101, 102, 103]


def test_predict_tokens_unknown_prefix_tokens_map_to_unk(vocab):
    step = SuccessorStep(len(vocab))
    assert predict_tokens("xA!", 1, vocab, step, []) == "<unk><unk><unk>b"
    assert step.ids == [0, 0, 0]


def test_predict_tokens_zero_predictions_returns_the_prefix(vocab):
    step = SuccessorStep(len(vocab))
    assert predict_tokens("abc", 0, vocab, step, []) == "abc"
    assert step.ids == [2, 1]  # only the warm-up
    assert predict_tokens("a", 0, vocab, step, []) == "a"


def test_predict_tokens_word_level_joins_with_spaces():
    vocab = Vocab("the time machine the time the".split())
    assert vocab.idx_to_token == ["<unk>", "the", "time", "machine"]
    step = SuccessorStep(len(vocab))
    assert predict_tokens(["the", "time"], 2, vocab, step, []) == "the time machine <unk>"
    assert predict_tokens(("by", "the"), 1, vocab, step, []) == "<unk> the time"


@pytest.mark.parametrize("prefix", ["", [], ()])
def test_predict_tokens_empty_prefix_raises(vocab, prefix):
    with pytest.raises(ValueError, match="empty prefix"):
        predict_tokens(prefix, 5, vocab, SuccessorStep(len(vocab)), [])


@pytest.mark.parametrize("num_preds", [-1, 2.0, "3", None, True])
def test_predict_tokens_invalid_num_preds_raises(vocab, num_preds):
    step = SuccessorStep(len(vocab))
    with pytest.raises(ValueError, match="num_preds") as info:
        predict_tokens("ab", num_preds, vocab, step, [])
    assert repr(num_preds) in str(info.value)
    assert step.ids == []


# ---------------------------------------------------------------- check_positive


@pytest.mark.parametrize(
    "value, kwargs",
    [
        (0.5, {}),
        (1, {}),
        (np.float32(0.1), {}),
        (Fraction(1, 3), {}),
        (0, {"allow_zero": True}),
        (0.0, {"allow_zero": True}),
        (3, {"integer": True}),
        (np.int64(2), {"integer": True}),
        (0, {"integer": True, "allow_zero": True}),
    ],
)
def test_check_positive_accepts(value, kwargs):
    assert check_positive("x", value, **kwargs) is None


@pytest.mark.parametrize(
    "value, kwargs, message",
    [
        (0, {}, "lr must be > 0, got 0"),
        (-0.5, {}, "lr must be > 0, got -0.5"),
        (-1, {"allow_zero": True}, "lr must be >= 0, got -1"),
        (math.nan, {}, "lr must be > 0, got nan"),
        (math.inf, {}, "lr must be > 0, got inf"),
        (math.inf, {"allow_zero": True}, "lr must be >= 0, got inf"),
        ("0.1", {}, "lr must be a number, got '0.1'"),
        (None, {}, "lr must be a number, got None"),
        (True, {}, "lr must be a number, got True"),
        (1 + 2j, {}, "lr must be a number, got (1+2j)"),
        (2.5, {"integer": True}, "lr must be an integer, got 2.5"),
        (2.0, {"integer": True}, "lr must be an integer, got 2.0"),
        (False, {"integer": True, "allow_zero": True}, "lr must be an integer, got False"),
        (0, {"integer": True}, "lr must be > 0, got 0"),
    ],
)
def test_check_positive_messages(value, kwargs, message):
    with pytest.raises(ValueError) as info:
        check_positive("lr", value, **kwargs)
    assert str(info.value) == message


def test_epoch_trainer_reuses_the_trainer_of_a_key_and_counts_its_epochs():
    made = []
    make = lambda: made.append(object()) or made[-1]
    epochs = EpochTrainer()
    first = [epochs.next(("net", 1.0), make) for _ in range(3)]
    assert first == [(made[0], 1), (made[0], 2), (made[0], 3)]
    assert epochs.next(("net", 0.5), make) == (made[1], 1)  # a new key: a new trainer, epoch 1
    assert epochs.next(("net", 1.0), make) == (made[2], 1)  # only the last key is kept
