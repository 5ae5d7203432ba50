"""Forecasting (:mod:`dl.forecast`) on PyTorch: the :class:`dl.forecast.Backend` adapter."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dl import forecast, lm
from dl.torch.lm import OPS, device_of, parameter_list
from dl.torch.training import grad_clipping


class Forecaster(nn.Module):
    """:func:`dl.forecast.forecast_forward` with canonical parameters as ``nn.Parameter``s."""

    backend = "torch"

    def __init__(self, config: forecast.ForecastConfig, params: dict[str, np.ndarray],
                 device=None):
        super().__init__()
        lm.check_params(config, params)
        self.config, self.names = config, list(config.param_shapes())
        self.device = device if isinstance(device, torch.device) else device_of(device)
        self.weights = parameter_list(self.names, params, self.device)

    @property
    def device_name(self) -> str:
        return str(self.device)

    def forward(self, X):
        """``X: (B, W, D)`` float tensor -> ``(B, Q)``; dropout in training mode."""
        dropout = None
        if self.training and self.config.dropout > 0:
            dropout = lambda outputs, layer: F.dropout(outputs, self.config.dropout, training=True)
        state = [torch.zeros(X.shape[0], self.config.num_hiddens, device=self.device)
                 for _ in range(self.config.num_layers * self.config.state_per_layer)]
        return forecast.forecast_forward(OPS, dict(zip(self.names, self.weights)), X,
                                         self.config, dropout, state)

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, np.float32)).to(self.device)

    def make_step(self, optimizer: str, lr: float, clip: float):
        cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]
        updater = cls(self.parameters(), lr)

        def step(X: np.ndarray, Y: np.ndarray) -> torch.Tensor:
            self.train()
            updater.zero_grad(set_to_none=True)
            loss = F.mse_loss(self(self._tensor(X)), self._tensor(Y))
            loss.backward()
            grad_clipping(self, clip)
            updater.step()
            return loss.detach()
        return step

    def predict(self, X: np.ndarray) -> np.ndarray:
        self.eval()
        with torch.no_grad():
            return self(self._tensor(X)).cpu().numpy()

    def numpy_params(self) -> dict[str, np.ndarray]:
        return {name: w.detach().cpu().numpy().copy() for name, w in zip(self.names, self.weights)}

    def load(self, params: dict[str, np.ndarray]) -> None:
        lm.check_params(self.config, params)
        with torch.no_grad():
            for name, w in zip(self.names, self.weights):
                w.copy_(self._tensor(params[name]))

    def reseed(self, seed: int) -> None:
        """Seed dropout (PyTorch's global generator on CPU and GPU)."""
        torch.manual_seed(seed)
