"""The one training loop, shared by every backend.

A backend supplies a small adapter (:class:`Trainer`) that knows tensors; this module knows
epochs, the book's printing, the Animator, perplexity, timing and when to stop. The loop syncs
with the device once per epoch (``Trainer.take_loss_sum``), never per batch. Its step level,
:func:`train_batches`, is what ``dl train`` drives update by update (schedules, checkpoints in
the middle of an epoch); :func:`state_arrays` and :func:`restore_state` carry a recurrent state
through a checkpoint.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np

from dl.errors import InputError
from dl.metrics import perplexity
from dl.progress import Animator, Timer
from dl.validate import check_positive

State = Any


class Trainer(Protocol):
    """What a backend provides to :func:`train_epoch` and :func:`fit`."""

    def begin_state(self, batch_size: int) -> State:
        """A fresh recurrent state for ``batch_size`` rows."""

    def train_step(self, X: np.ndarray, Y: np.ndarray, state: State) -> State:
        """One update on ``X, Y: (batch_size, num_steps) int``; the token-summed loss stays on
        the device, added to a running sum. Returns the state after the batch."""

    def take_loss_sum(self) -> float:
        """The summed loss since the last call (one host sync), and reset the sum to 0."""

    def set_lr(self, lr: float) -> None:
        """The learning rate of the following updates (``dl train``'s schedules only)."""


class DivergedError(FloatingPointError):
    """The training loss became NaN or infinite."""


def train_batches(trainer: Trainer, batches: Iterable, use_random_iter: bool = False, state=None):
    """Train on each ``X, Y: (batch_size, num_steps)`` of ``batches``; after every update yield
    ``(tokens in the batch, state after it)``, nothing synced with the device.

    The state is carried across batches (sequential partitioning), from ``state`` where given
    (a resumed epoch), unless ``use_random_iter``, where every batch begins from a fresh state,
    as in the book. Code run between two ``next`` calls runs between two updates.
    """
    for X, Y in batches:
        if state is None or use_random_iter:
            state = trainer.begin_state(X.shape[0])
        state = trainer.train_step(X, Y, state)
        yield math.prod(Y.shape), state


def train_epoch(trainer: Trainer, train_iter: Iterable, use_random_iter: bool = False):
    """Train one epoch; returns ``(loss_sum, num_tokens, tokens_per_second)``
    (see :func:`train_batches`)."""
    timer, num_tokens = Timer(), 0
    for tokens, _ in train_batches(trainer, train_iter, use_random_iter):
        num_tokens += tokens
    if num_tokens == 0:
        raise InputError("train_iter yielded no batches; check the corpus length and batch sizes")
    loss_sum = trainer.take_loss_sum()
    return loss_sum, num_tokens, num_tokens / timer.stop()


def state_arrays(state: State) -> list[np.ndarray]:
    """The tensors of a recurrent state (a tensor or nested tuples and lists of them, of any
    framework) as float32 NumPy copies, in order: one device sync."""
    if isinstance(state, (tuple, list)):
        return [array for part in state for array in state_arrays(part)]
    detach = getattr(state, "detach", None)  # a torch tensor: off its graph and device
    value = detach().cpu().numpy() if callable(detach) else state
    return [np.array(value, np.float32)]


def restore_state(template: State, arrays: list[np.ndarray]) -> State:
    """``arrays`` (of :func:`state_arrays`) in the structure of ``template``, a fresh state of
    the same model (its ``begin_state``); raises InputError when they do not fit it. A leaf
    becomes a tensor like the template's (torch) or stays NumPy, which TensorFlow's and JAX's
    compiled steps take as they are."""
    leaves = iter(arrays)
    shapes = [a.shape for a in state_arrays(template)]
    if [tuple(a.shape) for a in arrays] != [tuple(s) for s in shapes]:
        raise InputError(
            f"the carried state saved ({[tuple(a.shape) for a in arrays]}) does not fit this "
            f"model's ({[tuple(s) for s in shapes]}); resume with the backend and --impl "
            "the run was saved with"
        )

    def rebuild(part):
        if isinstance(part, (tuple, list)):
            return type(part)(rebuild(p) for p in part)
        array = next(leaves)
        new_tensor = getattr(part, "new_tensor", None)  # torch: same dtype and device
        return new_tensor(array) if callable(new_tensor) else array

    return rebuild(template)


def epoch_perplexity(loss_sum: float, num_tokens: int, epoch: int, lr: float) -> float:
    """Perplexity of an epoch; raises :class:`DivergedError` when the loss is not finite or so
    large that the perplexity overflows (a mean loss past 709 nats: the weights have blown up)."""
    ppl = perplexity(loss_sum, num_tokens) if math.isfinite(loss_sum) else math.nan
    if not math.isfinite(ppl):
        raise DivergedError(
            f"training diverged in epoch {epoch}: the loss became {loss_sum / num_tokens:.4g} per "
            f"token, so the weights are no longer usable. Train again with a smaller learning "
            f"rate (lr={lr} now) or stronger gradient clipping."
        )
    return ppl


class EpochTrainer:
    """The book's ``train_epoch_dl``, called once per epoch in a loop: the trainer that
    ``make()`` gave for the last ``key`` (made again when the key changes, so its step compiles
    once) and the epochs it has trained, so that a divergence names its epoch."""

    def __init__(self):
        self.key, self.trainer, self.epochs = None, None, 0

    def next(self, key: tuple, make: Callable[[], Trainer]) -> tuple[Trainer, int]:
        """``(trainer, epoch)``: ``key``'s trainer and the number of the epoch it trains now."""
        if self.trainer is None or self.key != key:
            self.key, self.trainer, self.epochs = key, make(), 0
        self.epochs += 1
        return self.trainer, self.epochs


def fit(
    trainer: Trainer,
    train_iter: Iterable,
    num_epochs: int,
    lr: float,
    predict: Callable[[str], str],
    device_name: str,
    use_random_iter: bool = False,
    prefixes: tuple[str, ...] = ("time traveller", "traveller"),
    print_every: int = 10,
    animator: Animator | None = None,
) -> Animator:
    """The book's ``train_ch8`` loop: every ``print_every`` epochs a continuation of
    ``prefixes[0]`` and a plot point; at the end perplexity, speed and both continuations.

    Returns the Animator holding the perplexity curve.
    """
    check_positive("num_epochs", num_epochs, allow_zero=True, integer=True)
    check_positive("print_every", print_every, integer=True)
    animator = animator or Animator(
        xlabel="epoch",
        ylabel="perplexity",
        legend=["train"],
        xlim=[print_every, max(num_epochs, print_every)],
    )
    ppl = speed = None
    for epoch in range(1, num_epochs + 1):
        loss_sum, num_tokens, speed = train_epoch(trainer, train_iter, use_random_iter)
        ppl = epoch_perplexity(loss_sum, num_tokens, epoch, lr)
        if epoch % print_every == 0:
            print(predict(prefixes[0]))
            animator.add(epoch, [ppl])
    if ppl is not None:
        print(f"perplexity {ppl:.1f}, {speed:.1f} tokens/sec on {device_name}")
    for prefix in prefixes:
        print(predict(prefix))
    return animator


def greedy(logits: np.ndarray) -> int:
    """The most likely token: the book's choice."""
    return int(logits.argmax())


def predict_ids(
    prefix_ids,
    num_preds: int,
    step: Callable[[int, State], tuple[Any, State]],
    state: State,
    choose: Callable[[np.ndarray], int] = greedy,
) -> list[int]:
    """The ids of ``prefix_ids`` and ``num_preds`` predictions after them: warm up on the
    prefix, then predict (the book's predict_ch8 on token ids).

    ``step(token_id, state) -> (logits, state)`` runs the model on one token; ``logits`` is
    any array-like of ``vocab_size`` numbers (``(1, vocab_size)`` or ``(vocab_size,)``).
    ``choose(logits: (vocab_size,)) -> token_id`` picks the next token (greedy by default).
    """
    check_positive("num_preds", num_preds, allow_zero=True, integer=True)
    if len(prefix_ids) == 0:
        raise InputError("prefix must hold at least one token, got an empty prefix")
    outputs = [int(prefix_ids[0])]
    for token in prefix_ids[1:]:  # warm-up: only the state matters
        _, state = step(outputs[-1], state)
        outputs.append(int(token))
    for _ in range(num_preds):
        logits, state = step(outputs[-1], state)
        outputs.append(choose(np.asarray(logits, dtype=np.float64).reshape(-1)))
    return outputs


def predict_tokens(
    prefix,
    num_preds: int,
    vocab,
    step: Callable[[int, State], tuple[Any, State]],
    state: State,
    choose: Callable[[np.ndarray], int] = greedy,
) -> str:
    """Warm up on ``prefix``, then append ``num_preds`` predictions (the book's predict_ch8),
    as :func:`predict_ids` does on ``vocab``'s ids.

    ``prefix`` is a string (characters, joined without separator) or a list of tokens (joined
    with spaces). Tokens outside the vocabulary map to ``<unk>``.
    """
    check_positive("num_preds", num_preds, allow_zero=True, integer=True)
    outputs = predict_ids([vocab[token] for token in prefix], num_preds, step, state, choose)
    separator = "" if isinstance(prefix, str) else " "
    return separator.join(vocab.to_tokens(outputs))
