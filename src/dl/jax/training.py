"""Training and prediction on JAX: the book's API and the adapter for :mod:`dl.train`.

:class:`JaxTrainer` gives the language models' token cross-entropy to the backend's
:mod:`~dl.jax.engine`, whose one ``jax.jit`` step JAX dispatches asynchronously, so the host
waits for the device once per epoch, when the core reads the summed loss.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp

from dl import train as core
from dl.errors import InputError
from dl.jax.engine import Engine, device_name, grad_clipping, try_gpu  # noqa: F401 (book API)
from dl.optim import OptimizerConfig


def token_loss_sum(logits, labels):
    """Summed cross-entropy of ``logits: (n, vocab)`` against int ``labels: (n,)``."""
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(log_probs, labels[:, None], axis=1).sum()


class JaxTrainer(Engine):
    """The :class:`dl.train.Trainer` for JAX models: the :class:`~dl.jax.engine.Engine` on the
    token cross-entropy of ``net.apply(params, X, state)``. ``optimizer``: an
    :class:`~dl.optim.OptimizerConfig`, or the book's SGD learning rate. A model with
    ``stochastic = True`` (dropout) is called as ``net.apply(params, X, state, key=k)``; one
    with ``to_numpy``/``from_numpy`` (``dl train``'s) exports and loads its optimizer state.

    ``device`` is one ``jax.Device`` or a list of them: with several, each batch and state is
    split by rows across the devices (data parallelism through sharding).
    """

    def __init__(self, net, optimizer: OptimizerConfig | float, theta=1.0, device=None):
        if not isinstance(optimizer, OptimizerConfig):
            optimizer = OptimizerConfig("sgd", optimizer)
        stochastic = getattr(net, "stochastic", False)

        def loss(params, key, X, Y, state):
            y = Y.T.reshape(-1)
            logits, state = net.apply(params, X, state, **({"key": key} if stochastic else {}))
            total = token_loss_sum(logits, y)
            return total / y.size, (total, state)

        super().__init__(net, loss, optimizer, theta, device or try_gpu())

    def begin_state(self, batch_size):
        if batch_size % self.num_devices:
            raise InputError(
                f"batch size {batch_size} must be divisible by the "
                f"{self.num_devices} devices it is split across"
            )
        return jax.device_put(self.model.begin_state(batch_size), self.local_rows)

    def train_step(self, X, Y, state):
        compiled = self.compile_seconds is not None
        state = self.step(X, Y, state)
        if not compiled and jax.process_index() == 0:  # with several processes: rank 0's
            print(f"compiled the training step in {self.compile_seconds:.1f} s", file=sys.stderr)
        return state


_epoch_trainer = core.EpochTrainer()


def train_epoch_dl(net, train_iter, lr, use_random_iter=False, *, theta=1.0, device=None):
    """Train one epoch with clipped SGD; returns ``(perplexity, tokens/sec)``.

    Called once per epoch in a loop, it reuses the step compiled by the first call and counts
    the epochs, so a divergence names its epoch.
    """
    make = lambda: JaxTrainer(net, lr, theta, device)
    trainer, epoch = _epoch_trainer.next((net, lr, theta, device), make)
    loss_sum, num_tokens, speed = core.train_epoch(trainer, train_iter, use_random_iter)
    return core.epoch_perplexity(loss_sum, num_tokens, epoch, lr), speed


def train_dl(
    net,
    train_iter,
    vocab,
    lr,
    num_epochs,
    device=None,
    use_random_iter=False,
    *,
    theta=1.0,
    animator=None,
):
    """Train with SGD and gradient clipping, printing as the book's ``train_ch8`` does."""
    device = device or try_gpu()
    trainer = JaxTrainer(net, lr, theta, device)
    first = device[0] if isinstance(device, (list, tuple)) else device
    predictor = Predictor(net, vocab, first)
    core.fit(
        trainer,
        train_iter,
        num_epochs,
        lr,
        lambda prefix: predictor(prefix, 50),
        device_name(first),
        use_random_iter,
        animator=animator,
    )


class Predictor:
    """Greedy continuation of a prefix, the one-token step compiled once."""

    def __init__(self, net, vocab, device=None):
        self.net, self.vocab, self.device = net, vocab, device or try_gpu()
        self._step = jax.jit(net.apply)

    def __call__(self, prefix, num_preds):
        params = jax.device_put(self.net.params, self.device)
        state = jax.device_put(self.net.begin_state(1), self.device)
        step = lambda token, state: self._step(params, jnp.array([[token]]), state)
        return core.predict_tokens(prefix, num_preds, self.vocab, step, state)


def predict_dl(prefix, num_preds, net, vocab, device=None):
    """``prefix`` and ``num_preds`` greedily predicted tokens (the book's ``predict_ch8``)."""
    return Predictor(net, vocab, device)(prefix, num_preds)
