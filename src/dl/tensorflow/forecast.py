"""Forecasting (:mod:`dl.forecast`) on TensorFlow: the :class:`dl.forecast.Backend` adapter.

The training step (forward, MSE, gradients, global-norm clipping, Adam or SGD) is one
``tf.function``; Adam is :func:`dl.forecast.adam_update` (PyTorch's formula; Keras' differs).
Dropout is stateless: its masks come from the seed set by :meth:`reseed` and a counter of
training calls.
"""

from __future__ import annotations

import numpy as np

from dl.tensorflow._keras import tf
from dl import forecast, lm
from dl.tensorflow.lm import FUSED_OPS, device_of
from dl.tensorflow.training import grad_clipping


class Forecaster:
    """:func:`dl.forecast.forecast_forward` with canonical parameters as ``tf.Variable``s."""

    backend = "tensorflow"

    def __init__(self, config: forecast.ForecastConfig, params: dict[str, np.ndarray],
                 device=None):
        lm.check_params(config, params)
        self.config, self.device_name = config, device_of(device)
        self.names = list(config.param_shapes())
        with tf.device(self.device_name):
            self.variables = [tf.Variable(np.asarray(params[name], np.float32),
                                          name=name.replace(".", "_")) for name in self.names]
            self._seed = tf.Variable([0, 0], dtype=tf.int64, trainable=False)
        self._predict = tf.function(self.__call__)

    def __call__(self, X, training=False):
        """``X: (B, W, D)`` -> ``(B, Q)``; dropout only when training."""
        dropout = self._dropout if training and self.config.dropout > 0 else None
        state = [tf.zeros((X.shape[0], self.config.num_hiddens))
                 for _ in range(self.config.num_layers * self.config.state_per_layer)]
        return forecast.forecast_forward(FUSED_OPS, dict(zip(self.names, self.variables)), X,
                                         self.config, dropout, state)

    def _dropout(self, outputs, layer):
        self._seed.assign_add([0, 1])
        seed = self._seed + tf.constant([0, 1 << 32], tf.int64) * layer
        return tf.nn.experimental.stateless_dropout(outputs, self.config.dropout, seed)

    def make_step(self, optimizer: str, lr: float, clip: float):
        with tf.device(self.device_name):
            t = tf.Variable(0.0, trainable=False)
            moments = [(tf.Variable(tf.zeros_like(w), trainable=False),
                        tf.Variable(tf.zeros_like(w), trainable=False)) for w in self.variables]

        @tf.function
        def step(X, Y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(self(X, training=True) - Y))
            grads = grad_clipping(tape.gradient(loss, self.variables), clip)
            t.assign_add(1.0)
            for w, g, (m, v) in zip(self.variables, grads, moments):
                if optimizer == "sgd":
                    w.assign_sub(lr * g)
                    continue
                new_w, new_m, new_v = forecast.adam_update(w, g, m, v, t, lr)
                w.assign(new_w), m.assign(new_m), v.assign(new_v)
            return loss

        def run(X: np.ndarray, Y: np.ndarray):
            with tf.device(self.device_name):
                return step(tf.constant(X, tf.float32), tf.constant(Y, tf.float32))
        return run

    def predict(self, X: np.ndarray) -> np.ndarray:
        with tf.device(self.device_name):
            return self._predict(tf.constant(X, tf.float32)).numpy()

    def numpy_params(self) -> dict[str, np.ndarray]:
        return {name: v.numpy() for name, v in zip(self.names, self.variables)}

    def load(self, params: dict[str, np.ndarray]) -> None:
        lm.check_params(self.config, params)
        for name, v in zip(self.names, self.variables):
            v.assign(np.asarray(params[name], np.float32))

    def reseed(self, seed: int) -> None:
        self._seed.assign([seed, 0])
