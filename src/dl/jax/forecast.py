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
        return np.asarray(self._predict(self.params, jax.device_put(X, self.device)))
