"""Forecasting (:mod:`dl.forecast`) on JAX: the :class:`dl.forecast.Backend` adapter, its
loss (:func:`dl.intervals.objective`) trained by the backend's :mod:`~dl.jax.engine`.
"""

from __future__ import annotations

import jax
import numpy as np

from dl import forecast, intervals
from dl.jax.engine import Engine
from dl.jax.lm import OPS, CanonicalModel, dropout_fn
from dl.optim import OptimizerConfig

PREDICT_ROWS = 256  # windows per compiled prediction


class Forecaster(CanonicalModel):
    """:func:`dl.forecast.forecast_forward` with canonical parameters as a dict pytree
    (``.params``); ``apply(params, X, key=None)`` is pure, and trains (dropout on) with a key."""

    def __init__(self, config: forecast.ForecastConfig, params: dict[str, np.ndarray], device=None):
        super().__init__(config, params, device)
        self._predict = jax.jit(self.apply)

    def apply(self, params, X, key=None):
        """``X: (B, W, D)`` -> ``(B, K * Q)``."""
        return forecast.forecast_forward(OPS, params, X, self.config, dropout_fn(key, self.config))

    def make_step(self, optimizer: OptimizerConfig, clip: float):
        def loss(params, key, X, Y):
            value = intervals.objective(OPS, self.apply(params, X, key), Y, self.config)
            return value, (value, value)  # the batch's loss is the step's result

        return Engine(self, loss, optimizer, clip, self.device).step

    def predict(self, X: np.ndarray) -> np.ndarray:
        """In chunks of :data:`PREDICT_ROWS` windows, the last padded with zeros: one compiled
        shape for the validation, test and future windows (XLA compiles each shape, and each
        placement of the parameters, anew: the engine's and :meth:`load`'s differ)."""
        n, params = len(X), jax.device_put(self.params, self.device)  # as load() places them
        padded = np.zeros((-(-n // PREDICT_ROWS) * PREDICT_ROWS, *X.shape[1:]), np.float32)
        padded[:n] = X
        chunks = [
            self._predict(params, jax.device_put(padded[i : i + PREDICT_ROWS], self.device))
            for i in range(0, len(padded), PREDICT_ROWS)
        ]
        return np.concatenate([np.asarray(chunk) for chunk in chunks])[:n]
