"""Training and prediction on TensorFlow: the backend adapter for :mod:`dl.train`.

One training step (forward, loss, gradients, global-norm clipping, update) runs as one
``tf.function`` under the given ``tf.distribute`` strategy; the epoch's loss is summed in a
device variable, so the host waits for the device once per epoch.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import tensorflow as tf

from dl import train as core
from dl.validate import check_positive
from dl.tensorflow._keras import LEGACY, keras
from dl.tensorflow.models import GRAPH_INPUT_KINDS, RNNModelScratch


def try_gpu(i=0):
    """``tf.device('/GPU:i')`` if that GPU exists, else ``tf.device('/CPU:0')``;
    usable as a context manager, with the name in ``._device_name``."""
    if len(tf.config.list_physical_devices("GPU")) >= i + 1:
        return tf.device(f"/GPU:{i}")
    return tf.device("/CPU:0")


def grad_clipping(grads, theta):
    """Scale ``grads`` so that their global L2 norm is at most ``theta`` (a list of tensors).

    Runs on the device (no host sync), eagerly or inside ``tf.function``.
    """
    grads = [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]
    norm = tf.linalg.global_norm(grads)
    theta = tf.cast(theta, norm.dtype)
    scale = tf.where(norm > theta, theta / norm, tf.ones_like(norm))
    return [g * tf.cast(scale, g.dtype) for g in grads]


def _token_loss_sum(loss, y, y_hat):
    """Summed loss over tokens: a per-token loss is summed, a batch mean is scaled back."""
    values = loss(y, y_hat)
    if values.shape.rank == 0:
        return values * tf.cast(tf.size(y), values.dtype)
    return tf.reduce_sum(values)


def _apply_gradients(updater, grads, params):
    """Update with gradients already summed over replicas and clipped."""
    if LEGACY:
        updater.apply_gradients(zip(grads, params), skip_gradients_aggregation=True)
    else:
        updater.apply_gradients(zip(grads, params))


class TFTrainer:
    """The :class:`dl.train.Trainer` for TensorFlow models (scratch or Keras)."""

    def __init__(self, net, loss, updater, strategy=None, theta=1.0, compile=True):
        self.net, self.loss, self.updater, self.theta = net, loss, updater, theta
        self.strategy = strategy or tf.distribute.get_strategy()
        self.replicas = self.strategy.num_replicas_in_sync
        with tf.init_scope():
            self.loss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="loss_sum")
        self.compile = compile
        self._step = None

    def begin_state(self, batch_size):
        if batch_size % self.replicas:
            raise ValueError(
                f"batch size {batch_size} must be divisible by the {self.replicas} replicas of "
                f"{type(self.strategy).__name__}")
        rows = batch_size // self.replicas
        return self.strategy.run(lambda: self.net.begin_state(batch_size=rows, dtype=tf.float32))

    def train_step(self, X, Y, state):
        X, Y = tf.convert_to_tensor(X), tf.convert_to_tensor(Y)
        if self._step is None:
            self._step = self._build_step(X, Y, state)
        return self._step(X, Y, state)

    def take_loss_sum(self) -> float:
        total = float(self.loss_sum.numpy())
        self.loss_sum.assign(0.0)
        return total

    def _distributed_step(self, X, Y, state):
        state, loss_sum = self.strategy.run(self._replica_step, args=(X, Y, state))
        self.loss_sum.assign_add(
            tf.cast(self.strategy.reduce(tf.distribute.ReduceOp.SUM, loss_sum, axis=None), tf.float64))
        return state

    def _replica_step(self, X, Y, state):
        context = tf.distribute.get_replica_context()
        rows = tf.shape(X)[0] // self.replicas
        start = rows * context.replica_id_in_sync_group
        X, Y = X[start:start + rows], Y[start:start + rows]
        num_tokens = tf.cast(tf.size(Y) * self.replicas, tf.float32)
        with tf.GradientTape() as tape:
            y_hat, state = self.net(X, state)
            loss_sum = _token_loss_sum(self.loss, tf.reshape(tf.transpose(Y), [-1]), y_hat)
            objective = loss_sum / num_tokens  # summed over replicas: the batch mean
        params = self.net.trainable_variables
        grads = tape.gradient(objective, params)
        grads = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
        _apply_gradients(self.updater, grad_clipping(grads, self.theta), params)
        return state, loss_sum

    def _build_step(self, X, Y, state):
        """The compiled step, or the eager one if ``compile=False`` or nothing can be traced."""
        _build_variables(self.net, self.updater, self.strategy, X, state)
        if not self.compile:
            return self._distributed_step
        if not isinstance(self.net, RNNModelScratch):
            return tf.function(self._distributed_step)
        errors = []
        for kind in GRAPH_INPUT_KINDS:
            self.net.graph_inputs = kind
            step = tf.function(self._distributed_step)
            try:
                with _variable_scope_kept():
                    _check_compiled_forward(self.net, X)
                    step.get_concrete_function(X, Y, state)
                return step
            except Exception as err:  # a forward_fn that cannot be traced: try the next way
                errors.append(f"with inputs as a {kind}: {_last_line(err)}")
        name = getattr(getattr(self.net, "forward_fn", None), "__name__", type(self.net).__name__)
        warnings.warn(
            f"dl: {name} could not be compiled with tf.function ({'; '.join(errors)}); training "
            "runs eagerly, which is several times slower. Write the forward function with a "
            "Python `for X in inputs` loop and TensorFlow ops to have it compiled.",
            RuntimeWarning, stacklevel=4)
        return self._distributed_step


def _last_line(err: Exception) -> str:
    """The line of an exception that says what went wrong (AutoGraph puts it last)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


@contextlib.contextmanager
def _variable_scope_kept():
    """Undo what a failed trace leaves in TF's global variable scope: ``tf.scan`` sets a
    caching device and does not reset it when the traced function raises."""
    scope = tf.compat.v1.get_variable_scope()
    caching_device = scope.caching_device
    try:
        yield
    finally:
        if scope.caching_device is not caching_device:
            with tf.Graph().as_default():  # the setter refuses to run eagerly
                scope.set_caching_device(caching_device)


def _check_compiled_forward(net, X):
    """Raise unless the traced forward pass gives the eager (book) numbers on one row of ``X``."""
    X = X[:1]
    eager, _ = net(X, net.begin_state(batch_size=1, dtype=tf.float32))
    compiled, _ = tf.function(net.__call__)(X, net.begin_state(batch_size=1, dtype=tf.float32))
    if compiled.shape != eager.shape or not np.allclose(compiled, eager, rtol=1e-4, atol=1e-5, equal_nan=True):
        raise ValueError("the traced forward pass gives other numbers than the eager one")


def _build_variables(net, updater, strategy, X, state):
    """Create lazily built variables (Keras layers, optimizer) eagerly, before any tracing."""
    if not net.trainable_variables:
        strategy.run(lambda x, s: net(x[:1], tf.nest.map_structure(lambda t: t[:1], s)),
                     args=(X, state))
    if LEGACY or hasattr(updater, "build"):
        with strategy.scope():
            updater.build(net.trainable_variables)


def _strategy_of(net, strategy):
    """``strategy``, or the default one for a single-device strategy whose scope did not create
    the model's variables (the book builds models inside ``strategy.scope()``; many users don't)."""
    variables = net.trainable_variables
    if strategy is None or not variables or strategy.extended.variable_created_in_scope(variables[0]):
        return strategy or tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync > 1:
        raise ValueError(
            f"the model's variables were not created in the scope of the {type(strategy).__name__} "
            "given to train_dl; build the model inside `with strategy.scope():`")
    return tf.distribute.get_strategy()


def _check_training_args(lr, num_epochs):
    check_positive("lr", lr)
    check_positive("num_epochs", num_epochs, allow_zero=True, integer=True)


_last_epoch_trainer: list = []  # [(net, loss, updater, strategy, compile), TFTrainer]


def train_epoch_dl(net, train_iter, loss, updater, use_random_iter, *, strategy=None,
                   compile=True):
    """Train one epoch (the book's ``train_epoch_ch8``); returns ``(perplexity, tokens/sec)``.

    Called once per epoch in a loop, it reuses the step compiled by the first call.
    """
    key = (net, loss, updater, strategy, compile)
    if not _last_epoch_trainer or any(a is not b for a, b in zip(_last_epoch_trainer[0], key)):
        _last_epoch_trainer[:] = [key, TFTrainer(net, loss, updater, strategy, compile=compile)]
    trainer = _last_epoch_trainer[1]
    loss_sum, num_tokens, speed = core.train_epoch(trainer, train_iter, use_random_iter)
    lr = getattr(updater, "learning_rate", "?")
    return core.epoch_perplexity(loss_sum, num_tokens, 1, lr), speed


def train_dl(net, train_iter, vocab, lr, num_epochs, strategy, use_random_iter=False, *,
             compile=True, theta=1.0, animator=None):
    """Train a model with SGD and gradient clipping (the book's ``train_ch8``).

    Prints a 50-character continuation of 'time traveller' every 10 epochs, then the
    perplexity, tokens/sec and two continuations. ``compile=False`` runs the book's eager loop.
    Returns the Animator with the perplexity curve (``.savefig(path)`` writes it as PNG).
    """
    _check_training_args(lr, num_epochs)
    strategy = _strategy_of(net, strategy)
    with strategy.scope():
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
        updater = keras.optimizers.SGD(float(lr))
    trainer = TFTrainer(net, loss, updater, strategy, theta=theta, compile=compile)
    predictor = Predictor(net, vocab)
    core.fit(trainer, train_iter, num_epochs, lr, lambda prefix: predictor(prefix, 50),
             try_gpu()._device_name, use_random_iter, animator=animator)


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
    """``prefix`` followed by ``num_preds`` greedily predicted tokens (the book's ``predict_ch8``)."""
    return Predictor(net, vocab)(prefix, num_preds)
