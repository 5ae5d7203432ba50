"""The command line's language model (:mod:`dl.lm`) on PyTorch, and what it shares with the
forecaster (:mod:`dl.torch.forecast`): :class:`CanonicalModule`."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dl import lm
from dl.optim import OptimizerConfig
from dl.torch.engine import PRECISIONS, TorchTrainer, to_numpy, token_batch, token_loss_sum
from dl.validate import check_gpu, parse_device

OPS = lm.array_ops(
    torch,
    torch.sigmoid,
    transpose=lambda X: X.T,
    concat=torch.cat,
    split=lambda x, n: torch.chunk(x, n, dim=-1),
    unstack=torch.unbind,
    softplus=F.softplus,
)
# one token at a time: a product per gate instead of joining the weights for every token
STEP_OPS = SimpleNamespace(**vars(OPS), per_gate=True)


def device_of(name) -> torch.device:
    """A ``torch.device``, or a device name (:func:`dl.validate.parse_device`) as one; no name:
    the first GPU if there is one, else the CPU."""
    if isinstance(name, torch.device):
        return name
    kind, index = parse_device(name)
    count = torch.cuda.device_count()
    if kind == "cpu" or (index is None and not count):
        return torch.device("cpu")
    check_gpu(name, index or 0, count, "PyTorch")
    return torch.device(f"cuda:{index or 0}")


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


class CanonicalModule(nn.Module):
    """A model of :mod:`dl.lm`'s configurations (language model or forecaster) on one device,
    its canonical parameters (``config.param_shapes()`` order) held as ``nn.Parameter``s."""

    backend = "torch"

    def __init__(self, config, params: dict[str, np.ndarray], device=None):
        super().__init__()
        self.config, self.device = config, device_of(device)
        self.names = list(config.param_shapes())
        self._build()
        self.load(params)

    def _build(self):
        """The parameters, to be loaded."""
        self.weights = nn.ParameterList(
            nn.Parameter(torch.zeros(shape, device=self.device))
            for shape in self.config.param_shapes().values()
        )

    @property
    def device_name(self) -> str:
        return str(self.device)

    def drop(self, x, site: int):
        """``x`` with dropout at ``site``'s rate (:func:`dl.lm.dropout_rate`) while training."""
        rate = lm.dropout_rate(self.config, site)
        return F.dropout(x, rate, training=True) if self.training and rate > 0 else x

    def dropout(self):
        """:meth:`drop`, the ``dropout(x, site)`` of :func:`dl.lm.forward` and
        :func:`dl.lm.run_layers`, while training a model that drops anything; else None."""
        return self.drop if self.training and lm.any_dropout(self.config) else None

    def begin_state(self, batch_size: int, device=None) -> tuple:
        """The flat state of :func:`dl.lm.forward`: ``(B, H)`` zeros per layer and slot, on
        the model's device."""
        shape = (batch_size, self.config.num_hiddens)
        count = self.config.num_layers * self.config.state_per_layer
        return tuple(torch.zeros(shape, device=self.device) for _ in range(count))

    def parameter_arrays(self, value) -> dict[str, np.ndarray]:
        """Canonical name -> ``value(tensor)`` (a NumPy array) of each trainable parameter or
        of its optimizer state."""
        return {name: value(w) for name, w in zip(self.names, self.weights)}

    def parameter_pairs(self, arrays: dict[str, np.ndarray]) -> list:
        """``(parameter, array)`` pairs: where each canonical array of ``arrays`` goes."""
        return [(w, arrays[name]) for name, w in zip(self.names, self.weights)]

    def numpy_params(self) -> dict[str, np.ndarray]:
        """Copies (training updates the parameters in place)."""
        return self.parameter_arrays(to_numpy)

    def load(self, params: dict[str, np.ndarray]) -> None:
        """Copy canonical ``params`` into the parameters."""
        lm.check_params(self.config, params)
        with torch.no_grad():
            for w, array in self.parameter_pairs(params):
                w.copy_(torch.from_numpy(np.array(array, np.float32)))

    def reseed(self, seed: int) -> None:
        """Seed dropout: the default generator of the model's device, as ``torch.manual_seed``
        seeds it (2 us, not the 180 us of seeding every device: ``dl train`` reseeds before
        every update with dropout)."""
        if self.device.type == "cuda":
            torch.cuda.default_generators[self.device.index or 0].manual_seed(seed)
        else:
            torch.default_generator.manual_seed(seed)


class LanguageModel(lm.ModelConstructor, CanonicalModule):
    """:func:`dl.lm.forward` with canonical parameters held as ``nn.Parameter``s."""

    FRAMEWORK, PRECISIONS = "PyTorch", tuple(PRECISIONS)

    def forward(self, X, state, ops=OPS):
        """``X: (B, T)`` int -> ``(logits: (T * B, V), state)``."""
        params = dict(zip(self.names, self.weights))
        return lm.forward(ops, params, X.long(), state, self.config, self.dropout())

    def trainer(self, optimizer: OptimizerConfig, clip: float) -> TorchTrainer:
        """A :class:`dl.train.Trainer` updating this model by ``optimizer`` with gradients
        clipped to global norm ``clip``; it also gives and takes the optimizer's state."""
        self.train()
        return TorchTrainer(
            self,
            nn.CrossEntropyLoss(reduction="none"),
            optimizer,
            self.device,
            theta=clip,
            precision=self.precision,
        )

    def eval_loss(self, X: np.ndarray, Y: np.ndarray, state):
        """Summed cross-entropy of a batch ``X, Y: (B, T)`` (no dropout) and the next state."""
        with _evaluating(self):
            X, y = token_batch(X, Y, self.device)
            logits, state = self(X, state)
            loss = token_loss_sum(nn.CrossEntropyLoss(reduction="none"), logits.float(), y)
        return float(loss), state

    def step(self, token: int, state):
        """One token in -> ``(logits: (V,) NumPy float, state)``."""
        with _evaluating(self):
            logits, state = self(torch.tensor([[token]], device=self.device), state, STEP_OPS)
        return logits[0].float().cpu().numpy(), state


class LayersModel(LanguageModel):
    """The concise model: ``nn.RNN`` or ``nn.LSTM`` (stacked, with their own dropout between
    layers) on one-hot inputs or an ``nn.Embedding``, plus ``nn.Linear``, loaded from and
    saved to canonical names. Tied weights: ``nn.Linear``'s weight is the embedding's
    ``nn.Parameter`` (``(V, E)`` both), so one tensor is trained and saved, as ``W_emb``.
    Dropout on the embeddings and the last layer's outputs is ``F.dropout``, as the scratch
    model's.

    PyTorch's layers keep two bias vectors per gate; the book's cells have one. ``bias_ih``
    holds it and ``bias_hh`` stays 0 (not trained), so the layers train as the scratch model
    and a resumed run continues exactly. ``nn.GRU`` applies the
    reset gate after the recurrent product, a different GRU from the book's, so it is refused.
    State: PyTorch's ``(num_layers, B, H)`` tensors (``(H, C)`` for the LSTM).
    """

    GATE_ORDER = {"rnn": ("h",), "lstm": ("i", "f", "c", "o")}
    CONCISE_CELLS = tuple(GATE_ORDER)

    def _build(self):
        config = self.config
        if config.embedding:
            self.embedding = nn.Embedding(config.vocab_size, config.embedding)
        layer = nn.LSTM if config.cell == "lstm" else nn.RNN
        self.rnn = layer(
            config.num_inputs,
            config.num_hiddens,
            num_layers=config.num_layers,
            dropout=config.dropout,
        )
        self.linear = nn.Linear(config.num_hiddens, config.vocab_size)
        if config.tie_weights:
            self.linear.weight = self.embedding.weight
        for layer in range(config.num_layers):
            getattr(self.rnn, f"bias_hh_l{layer}").requires_grad_(False)
        self.to(self.device)

    def _layer(self, layer: int) -> list:
        """``weight_ih, weight_hh, bias_ih, bias_hh`` of ``layer``."""
        return [
            getattr(self.rnn, f"{name}_l{layer}")
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]

    def parameter_arrays(self, value) -> dict[str, np.ndarray]:
        config = self.config
        layers = (
            (value(W_x).T, value(W_h).T, value(b))
            for W_x, W_h, b, _ in map(self._layer, range(config.num_layers))
        )
        return lm.concise_params(
            config,
            layers,
            None if config.tie_weights else value(self.linear.weight).T,
            value(self.linear.bias),
            self.GATE_ORDER[config.cell],
            W_emb=value(self.embedding.weight) if config.embedding else None,
        )

    def parameter_pairs(self, arrays: dict[str, np.ndarray]) -> list:
        pairs = [(self.linear.bias, arrays["b_q"])]
        if not self.config.tie_weights:
            pairs.append((self.linear.weight, np.asarray(arrays["W_hq"]).T))
        if self.config.embedding:
            pairs.append((self.embedding.weight, arrays["W_emb"]))
        for layer in range(self.config.num_layers):
            W_x, W_h, b = lm.layer_matrices(
                arrays, self.config, layer, self.GATE_ORDER[self.config.cell]
            )
            pairs += zip(self._layer(layer), (W_x.T, W_h.T, b, np.zeros_like(b)))
        return pairs

    def _inputs(self, X):
        """``X: (B, T)`` int -> the first layer's time-major inputs ``(T, B, E or V)``: the
        embeddings (dropped out while training; laid out as the scratch model's, batch-major
        in memory, so the same seed draws the same mask) or one-hot rows."""
        if self.config.embedding:
            return self.drop(self.embedding(X).transpose(0, 1), lm.EMBEDDING_SITE)
        return F.one_hot(X.T, self.config.vocab_size).to(self.linear.weight.dtype)

    def forward(self, X, state, ops=None):
        """``X: (B, T)`` int -> ``(logits: (T * B, V), state)`` (``ops``: unused)."""
        Y, state = self.rnn(self._inputs(X.long()), state)
        Y = self.drop(Y, lm.OUTPUT_SITE)
        return self.linear(Y.reshape(-1, Y.shape[-1])), state

    def step(self, token: int, state):
        """One token in -> ``(logits: (V,) NumPy float, state)``, by PyTorch's cell functions
        on the layer's own weights: one call of the fused layer costs up to four times as
        much for a single token (3.4 ms against 0.9 ms for an LSTM with 1,024 units)."""
        lstm = self.config.cell == "lstm"  # lstm_cell, rnn_tanh_cell: what nn.LSTMCell and
        H, C = state if lstm else (state, None)  # nn.RNNCell compute, as torch functions
        with _evaluating(self):
            x = self._inputs(torch.tensor([[token]], device=self.device))[0]
            hidden, cells = [], []
            for layer in range(self.config.num_layers):
                if lstm:
                    x, c = torch.lstm_cell(x, (H[layer], C[layer]), *self._layer(layer))
                    cells.append(c)
                else:
                    x = torch.rnn_tanh_cell(x, H[layer], *self._layer(layer))
                hidden.append(x)
            logits = self.linear(x)
        state = (torch.stack(hidden), torch.stack(cells)) if lstm else torch.stack(hidden)
        return logits[0].float().cpu().numpy(), state

    def begin_state(self, batch_size, device=None):
        H = torch.zeros(
            (self.config.num_layers, batch_size, self.config.num_hiddens),
            device=device or self.device,
        )
        return (H, torch.zeros_like(H)) if self.config.cell == "lstm" else H
