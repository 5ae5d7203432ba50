"""Forecasting (:mod:`dl.forecast`) on TensorFlow: the :class:`dl.forecast.Backend` adapter.

The training step (forward, :func:`dl.intervals.objective`, gradients, global-norm clipping,
the optimizer's update) is :class:`dl.tensorflow.engine.Engine`'s; dropout is stateless, as
the language model's.
"""

from __future__ import annotations

import numpy as np

from dl import forecast, intervals
from dl.optim import OptimizerConfig
from dl.tensorflow._keras import tf
from dl.tensorflow.engine import Engine
from dl.tensorflow.lm import FUSED_OPS, CanonicalModel


class Forecaster(CanonicalModel):
    """:func:`dl.forecast.forecast_forward` on canonical parameters held as ``tf.Variable``s."""

    def __init__(self, config: forecast.ForecastConfig, params: dict[str, np.ndarray], device=None):
        super().__init__(config, params, device)
        self._predict = tf.function(self.__call__)

    def __call__(self, X, training=False):
        """``X: (B, W, D)`` -> ``(B, K * Q)``; dropout only when training."""
        return forecast.forecast_forward(
            FUSED_OPS,
            dict(zip(self.names, self.trainable_variables)),
            X,
            self.config,
            self._dropout(training),
            self.begin_state(X.shape[0]),
        )

    def make_step(self, optimizer: OptimizerConfig, clip: float):
        with tf.device(self.device):
            engine = Engine(optimizer, clip)
            engine.build(self)

        def loss(X, Y):
            value = intervals.objective(FUSED_OPS, self(X, training=True), Y, self.config)
            return value, None, value

        step = engine.step(loss)

        def run(X: np.ndarray, Y: np.ndarray):
            with tf.device(self.device):
                return step(tf.constant(X, tf.float32), tf.constant(Y, tf.float32))

        return run

    def predict(self, X: np.ndarray) -> np.ndarray:
        with tf.device(self.device):
            return self._predict(tf.constant(X, tf.float32)).numpy()
