"""The command line's language model (:mod:`dl.lm`) on PyTorch."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dl import lm
from dl.torch.training import PRECISIONS, TorchTrainer, _token_loss_sum

OPS = SimpleNamespace(
    take=lambda W, ids: W[ids], transpose=lambda X: X.T, concat=torch.cat, stack=torch.stack,
    reshape=torch.reshape, split=lambda x, n: torch.chunk(x, n, dim=-1), sigmoid=torch.sigmoid,
    tanh=torch.tanh)


def device_of(name: str | None) -> torch.device:
    """``None``/``'gpu'`` -> the first GPU if any, else the CPU; otherwise ``torch.device(name)``."""
    if name in (None, "gpu"):
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: PyTorch sees no CUDA GPU here; use --device cpu")
    return device


@contextlib.contextmanager
def _evaluating(module: nn.Module):
    """No dropout and no gradients inside; the module's training mode is restored after."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


class LanguageModel(nn.Module):
    """:func:`dl.lm.forward` with canonical parameters held as ``nn.Parameter``s."""

    backend = "torch"

    def __init__(self, config: lm.LMConfig, params: dict[str, np.ndarray], device=None,
                 precision: str = "fp32"):
        super().__init__()
        lm.check_params(config, params)
        lm.check_precision(precision, "PyTorch", tuple(PRECISIONS))
        self.config, self.precision = config, precision
        self.device = device_of(device) if not isinstance(device, torch.device) else device
        self.names = list(config.param_shapes())
        self.weights = nn.ParameterList(
            nn.Parameter(torch.tensor(np.asarray(params[name], np.float32), device=self.device))
            for name in self.names)

    @property
    def device_name(self) -> str:
        return str(self.device)

    def forward(self, X, state):
        """``X: (B, T)`` int -> ``(logits: (T * B, V), state)``."""
        params = dict(zip(self.names, self.weights))
        dropout = None
        if self.training and self.config.dropout > 0:
            dropout = lambda outputs, layer: F.dropout(outputs, self.config.dropout, training=True)
        return lm.forward(OPS, params, X.long(), state, self.config, dropout)

    def begin_state(self, batch_size, device=None):
        shape = (batch_size, self.config.num_hiddens)
        count = self.config.num_layers * self.config.state_per_layer
        return tuple(torch.zeros(shape, device=device or self.device) for _ in range(count))

    def numpy_params(self) -> dict[str, np.ndarray]:
        return {name: w.detach().float().cpu().numpy() for name, w in zip(self.names, self.weights)}

    def reseed(self, seed: int) -> None:
        """Seed dropout (PyTorch's global generator on CPU and GPU)."""
        torch.manual_seed(seed)

    def trainer(self, lr: float, clip: float) -> TorchTrainer:
        self.train()
        return TorchTrainer(self, nn.CrossEntropyLoss(reduction="none"), float(lr), self.device,
                            theta=clip, precision=self.precision)

    def eval_loss(self, X: np.ndarray, Y: np.ndarray, state):
        """Summed cross-entropy of a batch ``X, Y: (B, T)`` (no dropout) and the next state."""
        with _evaluating(self):
            X = torch.from_numpy(np.ascontiguousarray(X)).to(self.device)
            y = torch.from_numpy(np.ascontiguousarray(Y.T)).reshape(-1).to(self.device).long()
            logits, state = self(X, state)
            loss = _token_loss_sum(nn.CrossEntropyLoss(reduction="none"), logits.float(), y)
        return float(loss), state

    def step(self, token: int, state):
        """One token in -> ``(logits: (V,) NumPy float, state)``."""
        with _evaluating(self):
            logits, state = self(torch.tensor([[token]], device=self.device), state)
        return logits[0].float().cpu().numpy(), state
