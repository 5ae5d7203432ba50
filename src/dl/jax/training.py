"""Training and prediction on JAX: the backend adapter for :mod:`dl.train`.

The training step (forward, loss, gradients, global-norm clipping, SGD) is one ``jax.jit``
function of ``(params, loss_sum, X, Y, state)``; JAX dispatches it asynchronously, so the
host waits for the device once per epoch, when the core reads the summed loss.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp

from dl import train as core
from dl.validate import check_positive


def try_gpu(i=0):
    """The ``i``-th GPU as a ``jax.Device`` if there is one, else the first CPU device."""
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:  # no GPU backend installed
        gpus = []
    return gpus[i] if len(gpus) > i else jax.devices("cpu")[0]


def device_name(device) -> str:
    return f"{device.platform}:{device.id}"


def grad_clipping(grads, theta):
    """``grads`` (any pytree) scaled so that their global L2 norm is at most ``theta``."""
    leaves = jax.tree_util.tree_leaves(grads)
    norm = jnp.sqrt(sum(jnp.sum(g ** 2) for g in leaves))
    scale = jnp.minimum(1.0, theta / norm)
    return jax.tree_util.tree_map(lambda g: g * scale, grads)


def token_loss_sum(logits, labels):
    """Summed cross-entropy of ``logits: (n, vocab)`` against int ``labels: (n,)``."""
    log_probs = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(log_probs, labels[:, None], axis=1).sum()


class JaxTrainer:
    """The :class:`dl.train.Trainer` for JAX models: ``net.apply(params, X, state)`` and
    ``net.params`` (updated in place after every step). A model with ``stochastic = True``
    (dropout) is called as ``net.apply(params, X, state, key=k)``, ``k`` split off ``net.key``
    at every step.

    ``device`` is one ``jax.Device`` or a list of them: with several, each batch and state is
    split by rows across the devices (data parallelism through sharding), the parameters are
    replicated, and XLA sums the gradients across devices.
    """

    def __init__(self, net, lr, theta=1.0, device=None):
        check_positive("lr", lr)
        self.net, self.lr, self.theta = net, float(lr), theta
        devices = list(device) if isinstance(device, (list, tuple)) else [device or try_gpu()]
        mesh = jax.sharding.Mesh(devices, ("batch",))
        self.rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
        self.replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
        self.num_devices = len(devices)
        self.net.params = jax.device_put(net.params, self.replicated)
        self.loss_sum = jax.device_put(jnp.zeros(()), self.replicated)
        self._step = jax.jit(self._pure_step)
        self.unused_key = jax.random.PRNGKey(0)  # for models without dropout
        self.compile_seconds = None

    def _pure_step(self, params, loss_sum, key, X, Y, state):
        y = Y.T.reshape(-1)
        key, step_key = jax.random.split(key)
        kwargs = {"key": step_key} if getattr(self.net, "stochastic", False) else {}

        def loss(params):
            logits, new_state = self.net.apply(params, X, state, **kwargs)
            total = token_loss_sum(logits, y)
            return total / y.size, (total, new_state)
        (_, (total, state)), grads = jax.value_and_grad(loss, has_aux=True)(params)
        grads = grad_clipping(grads, self.theta)
        params = jax.tree_util.tree_map(lambda p, g: p - self.lr * g, params, grads)
        return params, loss_sum + total, key, state

    def begin_state(self, batch_size):
        if batch_size % self.num_devices:
            raise ValueError(f"batch size {batch_size} must be divisible by the "
                             f"{self.num_devices} devices it is split across")
        return jax.device_put(self.net.begin_state(batch_size), self.rows)

    def train_step(self, X, Y, state):
        X, Y = jax.device_put((X, Y), self.rows)
        key = getattr(self.net, "key", self.unused_key)
        args = (self.net.params, self.loss_sum, key, X, Y, state)
        if self.compile_seconds is None:  # the first call compiles: time it, once
            start = time.perf_counter()
            self.net.params, self.loss_sum, key, state = jax.block_until_ready(self._step(*args))
            self._keep_key(key)
            self.compile_seconds = time.perf_counter() - start
            print(f"compiled the training step in {self.compile_seconds:.1f} s", file=sys.stderr)
            return state
        self.net.params, self.loss_sum, key, state = self._step(*args)
        self._keep_key(key)
        return state

    def _keep_key(self, key):
        if hasattr(self.net, "key"):
            self.net.key = key

    def take_loss_sum(self) -> float:
        total, self.loss_sum = float(self.loss_sum), jnp.zeros_like(self.loss_sum)
        return total


_last_epoch_trainer: list = []  # [(net, lr, theta, device), JaxTrainer]


def train_epoch_dl(net, train_iter, lr, use_random_iter=False, *, theta=1.0, device=None):
    """Train one epoch with clipped SGD; returns ``(perplexity, tokens/sec)``.

    Called once per epoch in a loop, it reuses the step compiled by the first call.
    """
    key = (net, lr, theta, device)
    if not _last_epoch_trainer or _last_epoch_trainer[0] != key:
        _last_epoch_trainer[:] = [key, JaxTrainer(net, lr, theta, device)]
    trainer = _last_epoch_trainer[1]
    loss_sum, num_tokens, speed = core.train_epoch(trainer, train_iter, use_random_iter)
    return core.epoch_perplexity(loss_sum, num_tokens, 1, lr), speed


def train_dl(net, train_iter, vocab, lr, num_epochs, device=None, use_random_iter=False, *,
             theta=1.0, animator=None):
    """Train with SGD and gradient clipping, printing as the book's ``train_ch8`` does."""
    check_positive("lr", lr)
    check_positive("num_epochs", num_epochs, allow_zero=True, integer=True)
    device = device or try_gpu()
    trainer = JaxTrainer(net, lr, theta, device)
    first = device[0] if isinstance(device, (list, tuple)) else device
    predictor = Predictor(net, vocab, first)
    core.fit(trainer, train_iter, num_epochs, lr, lambda prefix: predictor(prefix, 50),
             device_name(first), use_random_iter, animator=animator)


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
    """``prefix`` followed by ``num_preds`` greedily predicted tokens (the book's ``predict_ch8``)."""
    return Predictor(net, vocab, device)(prefix, num_preds)
