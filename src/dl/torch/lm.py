"""The command line's language model (:mod:`dl.lm`) on PyTorch."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dl import lm
from dl.validate import check_gpu, parse_device
from dl.torch.training import PRECISIONS, TorchTrainer, _token_loss_sum

OPS = SimpleNamespace(
    take=lambda W, ids: W[ids], transpose=lambda X: X.T, concat=torch.cat, stack=torch.stack,
    reshape=torch.reshape, split=lambda x, n: torch.chunk(x, n, dim=-1), sigmoid=torch.sigmoid,
    tanh=torch.tanh, unstack=torch.unbind)
# one token at a time: a product per gate instead of joining the weights for every token
STEP_OPS = SimpleNamespace(**vars(OPS), per_gate=True)


def device_of(name: str | None) -> torch.device:
    """A device name (:func:`dl.validate.parse_device`) as a ``torch.device``; no name: the
    first GPU if there is one, else the CPU."""
    kind, index = parse_device(name)
    count = torch.cuda.device_count()
    if kind == "cpu" or (index is None and not count):
        return torch.device("cpu")
    check_gpu(name, index or 0, count, "PyTorch")
    return torch.device(f"cuda:{index or 0}")


def parameter_list(names, params: dict[str, np.ndarray], device) -> nn.ParameterList:
    """``params[name]`` for each of ``names``, as float32 ``nn.Parameter``s on ``device``."""
    return nn.ParameterList(
        nn.Parameter(torch.tensor(np.asarray(params[name], np.float32), device=device))
        for name in names)


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
        self.weights = parameter_list(self.names, params, self.device)

    @property
    def device_name(self) -> str:
        return str(self.device)

    def forward(self, X, state, ops=OPS):
        """``X: (B, T)`` int -> ``(logits: (T * B, V), state)``."""
        params = dict(zip(self.names, self.weights))
        dropout = None
        if self.training and self.config.dropout > 0:
            dropout = lambda outputs, layer: F.dropout(outputs, self.config.dropout, training=True)
        return lm.forward(ops, params, X.long(), state, self.config, dropout)

    def begin_state(self, batch_size, device=None):
        shape = (batch_size, self.config.num_hiddens)
        count = self.config.num_layers * self.config.state_per_layer
        return tuple(torch.zeros(shape, device=device or self.device) for _ in range(count))

    def numpy_params(self) -> dict[str, np.ndarray]:
        """Copies (training updates the parameters in place)."""
        return {name: w.detach().float().cpu().numpy().copy()
                for name, w in zip(self.names, self.weights)}

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
            logits, state = self(torch.tensor([[token]], device=self.device), state, STEP_OPS)
        return logits[0].float().cpu().numpy(), state


class LayersModel(LanguageModel):
    """The concise model: ``nn.RNN`` or ``nn.LSTM`` (stacked, with their own dropout between
    layers) on one-hot inputs plus ``nn.Linear``, loaded from and saved to canonical names.

    PyTorch's layers keep two bias vectors per gate; the book's cells have one. ``bias_ih``
    holds it and ``bias_hh`` stays 0 (not trained), so the layers train as the scratch model
    and a resumed run continues exactly. ``nn.GRU`` applies the
    reset gate after the recurrent product, a different GRU from the book's, so it is refused.
    State: PyTorch's ``(num_layers, B, H)`` tensors (``(H, C)`` for the LSTM).
    """

    GATE_ORDER = {"rnn": ("h",), "lstm": ("i", "f", "c", "o")}

    def __init__(self, config: lm.LMConfig, params: dict[str, np.ndarray], device=None,
                 precision: str = "fp32"):
        lm.check_concise(config, "PyTorch", self.GATE_ORDER)
        nn.Module.__init__(self)
        lm.check_params(config, params)
        lm.check_precision(precision, "PyTorch", tuple(PRECISIONS))
        self.config, self.precision = config, precision
        self.device = device_of(device) if not isinstance(device, torch.device) else device
        layer = nn.LSTM if config.cell == "lstm" else nn.RNN
        self.rnn = layer(config.vocab_size, config.num_hiddens, num_layers=config.num_layers,
                         dropout=config.dropout)
        self.linear = nn.Linear(config.num_hiddens, config.vocab_size)
        self._load(params)
        self.to(self.device)

    def _load(self, params):
        order = self.GATE_ORDER[self.config.cell]
        with torch.no_grad():
            for layer in range(self.config.num_layers):
                W_x, W_h, b = lm.layer_matrices(params, self.config, layer, order)
                for name, value in (("weight_ih", W_x.T), ("weight_hh", W_h.T), ("bias_ih", b),
                                    ("bias_hh", np.zeros_like(b))):
                    getattr(self.rnn, f"{name}_l{layer}").copy_(torch.from_numpy(value.copy()))
                getattr(self.rnn, f"bias_hh_l{layer}").requires_grad_(False)
            self.linear.weight.copy_(torch.from_numpy(np.asarray(params["W_hq"]).T.copy()))
            self.linear.bias.copy_(torch.from_numpy(np.asarray(params["b_q"]).copy()))

    def forward(self, X, state, ops=None):
        """``X: (B, T)`` int -> ``(logits: (T * B, V), state)`` (``ops``: unused)."""
        inputs = F.one_hot(X.T.long(), self.config.vocab_size).to(self.linear.weight.dtype)
        Y, state = self.rnn(inputs, state)
        return self.linear(Y.reshape(-1, Y.shape[-1])), state

    def step(self, token: int, state):
        """One token in -> ``(logits: (V,) NumPy float, state)``, by PyTorch's cell functions
        on the layer's own weights: one call of the fused layer costs up to four times as
        much for a single token (3.4 ms against 0.9 ms for an LSTM with 1,024 units)."""
        lstm = self.config.cell == "lstm"  # lstm_cell, rnn_tanh_cell: what nn.LSTMCell and
        H, C = state if lstm else (state, None)  # nn.RNNCell compute, as torch functions
        with _evaluating(self):
            x = F.one_hot(torch.tensor([token], device=self.device), self.config.vocab_size)
            x = x.to(self.linear.weight.dtype)
            hidden, cells = [], []
            for layer in range(self.config.num_layers):
                weights = [getattr(self.rnn, f"{name}_l{layer}")
                           for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                if lstm:
                    x, c = torch.lstm_cell(x, (H[layer], C[layer]), *weights)
                    cells.append(c)
                else:
                    x = torch.rnn_tanh_cell(x, H[layer], *weights)
                hidden.append(x)
            logits = self.linear(x)
        state = (torch.stack(hidden), torch.stack(cells)) if lstm else torch.stack(hidden)
        return logits[0].float().cpu().numpy(), state

    def begin_state(self, batch_size, device=None):
        H = torch.zeros((self.config.num_layers, batch_size, self.config.num_hiddens),
                        device=device or self.device)
        return (H, torch.zeros_like(H)) if self.config.cell == "lstm" else H

    def numpy_params(self) -> dict[str, np.ndarray]:
        value = lambda tensor: tensor.detach().float().cpu().numpy().copy()
        layers = ((value(getattr(self.rnn, f"weight_ih_l{k}")).T,
                   value(getattr(self.rnn, f"weight_hh_l{k}")).T,
                   value(getattr(self.rnn, f"bias_ih_l{k}"))) for k in range(self.config.num_layers))
        return lm.concise_params(self.config, layers, value(self.linear.weight).T,
                                 value(self.linear.bias), self.GATE_ORDER[self.config.cell])
