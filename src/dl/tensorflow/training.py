"""The book's training and prediction on TensorFlow (``train_dl``, ``train_epoch_dl``,
``predict_dl``): :mod:`dl.train`'s loop around :class:`dl.tensorflow.engine.TFTrainer`."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dl import train as core
from dl.optim import OptimizerConfig
from dl.tensorflow.engine import TFTrainer


def try_gpu(i=0):
    """``tf.device('/GPU:i')`` if that GPU exists, else ``tf.device('/CPU:0')``;
    usable as a context manager, with the name in ``._device_name``."""
    if len(tf.config.list_physical_devices("GPU")) >= i + 1:
        return tf.device(f"/GPU:{i}")
    return tf.device("/CPU:0")


def _strategy_of(net, strategy):
    """``strategy``, or the default one for a single-device strategy whose scope did not create
    the model's variables (the book builds models inside ``strategy.scope()``; many users don't)."""
    variables = net.trainable_variables
    if (
        strategy is None
        or not variables
        or strategy.extended.variable_created_in_scope(variables[0])
    ):
        return strategy or tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync > 1:
        raise ValueError(
            f"the model's variables were not created in the scope of the {type(strategy).__name__} "
            "given to train_dl; build the model inside `with strategy.scope():`"
        )
    return tf.distribute.get_strategy()


_epoch_trainer = core.EpochTrainer()


def train_epoch_dl(net, train_iter, loss, updater, use_random_iter, *, strategy=None, compile=True):
    """Train one epoch (the book's ``train_epoch_ch8``); returns ``(perplexity, tokens/sec)``.

    Called once per epoch in a loop, it reuses the step compiled by the first call, and counts
    the epochs (a diverged loss names the epoch and ``updater``'s learning rate).
    """
    key = (net, loss, updater, strategy, compile)
    make = lambda: TFTrainer(net, loss, updater, strategy, compile=compile)
    trainer, epoch = _epoch_trainer.next(key, make)
    loss_sum, num_tokens, speed = core.train_epoch(trainer, train_iter, use_random_iter)
    lr = float(np.asarray(updater.learning_rate))
    return core.epoch_perplexity(loss_sum, num_tokens, epoch, lr), speed


def train_dl(
    net,
    train_iter,
    vocab,
    lr,
    num_epochs,
    strategy,
    use_random_iter=False,
    *,
    compile=True,
    theta=1.0,
    animator=None,
):
    """Train a model with SGD and gradient clipping (the book's ``train_ch8``); returns None.

    Prints a 50-character continuation of 'time traveller' every 10 epochs, then the
    perplexity, tokens/sec and two continuations. ``compile=False`` runs the book's eager loop.
    The perplexity curve goes to ``animator`` (a new :class:`dl.progress.Animator` if None).
    """
    trainer = train_dl_trainer(net, lr, strategy, theta=theta, compile=compile)
    predictor = Predictor(net, vocab)
    core.fit(
        trainer,
        train_iter,
        num_epochs,
        lr,
        lambda prefix: predictor(prefix, 50),
        try_gpu()._device_name,
        use_random_iter,
        animator=animator,
    )


def train_dl_trainer(net, lr, strategy, *, theta=1.0, compile=True) -> TFTrainer:
    """The trainer whose epochs :func:`train_dl` runs: SGD at ``lr`` and the token
    cross-entropy in one ``tf.function`` (unless ``compile=False``), clipping at ``theta``."""
    return TFTrainer(
        net,
        tf.nn.sparse_softmax_cross_entropy_with_logits,
        OptimizerConfig("sgd", lr),
        _strategy_of(net, strategy),
        theta=theta,
        compile=compile,
    )


class Predictor:
    """Greedy continuation of a prefix, with the one-token step compiled once."""

    def __init__(self, net, vocab):
        self.net, self.vocab = net, vocab
        self._step = tf.function(lambda x, state: self.net(x, state))

    def __call__(self, prefix, num_preds):
        state = self.net.begin_state(batch_size=1, dtype=tf.float32)
        step = lambda token, state: self._step(tf.constant([[token]], dtype=tf.int32), state)
        return core.predict_tokens(prefix, num_preds, self.vocab, step, state)


def predict_dl(prefix, num_preds, net, vocab):
    """``prefix`` followed by ``num_preds`` greedily predicted tokens (the book's predict_ch8)."""
    return Predictor(net, vocab)(prefix, num_preds)
