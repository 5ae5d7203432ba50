"""Forecasting (:mod:`dl.forecast`) on JAX: the :class:`dl.forecast.Backend` adapter.

The training step (forward, MSE, gradients, global-norm clipping, Adam or SGD) is one
``jax.jit`` function of ``(params, optimizer state, key, X, Y)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dl import forecast, lm
from dl.jax.lm import OPS, device_of
from dl.jax.training import device_name, grad_clipping

tree_map = jax.tree_util.tree_map


def adam(lr: float):
    """``(init(params) -> state, update(params, grads, state) -> (params, state))`` of Adam
    (:func:`dl.forecast.adam_update` on every leaf)."""
    def init(params):
        zeros = tree_map(jnp.zeros_like, params)
        return zeros, zeros, jnp.zeros((), jnp.float32)

    def update(params, grads, state):
        m, v, t = state
        new = tree_map(lambda *a: forecast.adam_update(*a, t + 1, lr), params, grads, m, v)
        pick = lambda i: tree_map(lambda _, triple: triple[i], params, new)
        return pick(0), (pick(1), pick(2), t + 1)
    return init, update


def sgd(lr: float):
    """Plain SGD in the ``(init, update)`` form of :func:`adam`."""
    return lambda params: (), lambda params, grads, state: (
        tree_map(lambda p, g: p - lr * g, params, grads), state)


class Forecaster:
    """:func:`dl.forecast.forecast_forward` with canonical parameters as a dict pytree
    (``.params``); ``apply(params, X, key=None)`` is pure, and trains (dropout on) with a key."""

    backend = "jax"

    def __init__(self, config: forecast.ForecastConfig, params: dict[str, np.ndarray],
                 device=None):
        self.config, self.device = config, device_of(device)
        self.load(params)
        self.key = jax.random.PRNGKey(0)
        self._predict = jax.jit(self.apply)

    @property
    def device_name(self) -> str:
        return device_name(self.device)

    def apply(self, params, X, key=None):
        """``X: (B, W, D)`` -> ``(B, Q)``."""
        rate = self.config.dropout

        def dropout(outputs, layer):
            keep = jax.random.bernoulli(jax.random.fold_in(key, layer), 1 - rate, outputs.shape)
            return jnp.where(keep, outputs / (1 - rate), 0.0)
        training = key is not None and rate > 0
        return forecast.forecast_forward(OPS, params, X, self.config, dropout if training else None)

    def make_step(self, optimizer: str, lr: float, clip: float):
        init, update = {"adam": adam, "sgd": sgd}[optimizer](lr)
        opt_state = jax.device_put(init(self.params), self.device)

        @jax.jit
        def pure_step(params, opt_state, key, X, Y):
            key, step_key = jax.random.split(key)
            loss_of = lambda p: jnp.mean((self.apply(p, X, step_key) - Y) ** 2)
            loss, grads = jax.value_and_grad(loss_of)(params)
            params, opt_state = update(params, grad_clipping(grads, clip), opt_state)
            return params, opt_state, key, loss

        def step(X: np.ndarray, Y: np.ndarray):
            nonlocal opt_state
            X, Y = jax.device_put((X, Y), self.device)
            self.params, opt_state, self.key, loss = pure_step(self.params, opt_state, self.key,
                                                               X, Y)
            return loss
        return step

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self._predict(self.params, jax.device_put(X, self.device)))

    def numpy_params(self) -> dict[str, np.ndarray]:
        return {name: np.array(value) for name, value in self.params.items()}

    def load(self, params: dict[str, np.ndarray]) -> None:
        lm.check_params(self.config, params)
        self.params = jax.device_put({name: jnp.asarray(params[name], jnp.float32)
                                      for name in self.config.param_shapes()}, self.device)

    def reseed(self, seed: int) -> None:
        self.key = jax.random.PRNGKey(seed)
