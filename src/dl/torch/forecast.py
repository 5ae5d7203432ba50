"""Forecasting (:mod:`dl.forecast`) on PyTorch: the :class:`dl.forecast.Backend` adapter."""

from __future__ import annotations

import numpy as np
import torch

from dl import forecast, intervals
from dl.optim import OptimizerConfig
from dl.torch.engine import TorchTrainer
from dl.torch.lm import OPS, CanonicalModule


class Forecaster(CanonicalModule):
    """:func:`dl.forecast.forecast_forward` with canonical parameters as ``nn.Parameter``s:
    ``Forecaster(config: ForecastConfig, params, device=None)``."""

    def forward(self, X):
        """``X: (B, W, D)`` float tensor -> ``(B, K * Q)``; dropout in training mode."""
        return forecast.forecast_forward(
            OPS,
            dict(zip(self.names, self.weights)),
            X,
            self.config,
            self.dropout(),
            self.begin_state(X.shape[0]),
        )

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, np.float32)).to(self.device)

    def make_step(self, optimizer: OptimizerConfig, clip: float):
        """``step(X: (B, W, D), Y: (B, Q))`` NumPy -> the batch's
        :func:`dl.intervals.objective` (a device scalar): one update of the engine's
        ``optimizer``, gradients clipped to ``clip``."""
        engine = TorchTrainer(
            self,
            lambda outputs, Y: intervals.objective(OPS, outputs, Y, self.config),
            optimizer,
            self.device,
            theta=clip,
            forward=lambda X, state: (self(X), state),
        )

        def step(X: np.ndarray, Y: np.ndarray) -> torch.Tensor:
            self.train()
            _, loss_sum = engine.step(self._tensor(X), self._tensor(Y), ())
            return loss_sum / Y.size

        return step

    def predict(self, X: np.ndarray) -> np.ndarray:
        self.eval()
        with torch.no_grad():
            return self(self._tensor(X)).cpu().numpy()
