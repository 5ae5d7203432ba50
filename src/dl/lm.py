"""The recurrent language model of the command line, written once for every framework.

:func:`forward` is the book's scratch model (one-hot tokens, RNN/GRU/LSTM cells, a linear
output layer) generalised to stacked layers with dropout between them, and written against a
tiny array namespace (``ops``) so that NumPy, PyTorch, TensorFlow and JAX run the same code. It
fuses the gates of a layer into one matrix product per time step and looks the first layer's
input product up by token id (the product of a one-hot row with ``W_x`` is a row of ``W_x``);
the numbers are those of :mod:`dl.reference`.

A model for real text (``embedding > 0``) looks its inputs up in an embedding table
``W_emb: (V, E)`` instead, may tie the output layer to it (``logits = H W_emb^T + b_q``, no
``W_hq``; needs E = H) and drops out embeddings and the last layer's outputs as well as the
outputs between layers.

Parameters carry canonical names, the seed's (``W_xi, W_hi, b_i, ..., W_hq, b_q``); layers
of a stacked model are prefixed ``layer1.``, ``layer2.``, ... (the output layer's ``W_hq, b_q``
and the embedding table ``W_emb`` are not), so a checkpoint written by one framework loads in
every other.

Dropout sites: a backend's ``dropout(x, site)`` draws a mask for ``site`` (an int: layer ``k``
for the outputs of layer ``k`` below another, :data:`EMBEDDING_SITE`, :data:`OUTPUT_SITE`) at
the rate :func:`dropout_rate` gives.

Shape letters: B = batch_size, T = num_steps, V = vocab_size, E = embedding, H = num_hiddens.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from dl.errors import InputError
from dl.reference import PARAM_NAMES
from dl.validate import check_positive

CELLS = tuple(PARAM_NAMES)
GATES = {"rnn": ("h",), "gru": ("z", "r", "h"), "lstm": ("i", "f", "o", "c")}
EMBEDDING_SITE = 1 << 16  # the dropout site of the embeddings
OUTPUT_SITE = EMBEDDING_SITE + 1  # the dropout site of the last layer's outputs


class RecurrentShape:
    """Parameter names and shapes of stacked recurrent layers plus a linear output layer, for
    configurations with ``cell, num_inputs, num_hiddens, num_layers, num_outputs``."""

    def _check(self):
        if self.cell not in CELLS:
            raise InputError(f"cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        check_positive("num_hiddens", self.num_hiddens, integer=True)
        check_positive("num_layers", self.num_layers, integer=True)
        check_positive("dropout", self.dropout, allow_zero=True)
        if self.dropout >= 1:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout!r}")

    @property
    def output_units(self) -> int:
        """Units of the output layer: ``num_outputs`` unless a subclass gives several values
        per output."""
        return self.num_outputs

    @property
    def state_per_layer(self) -> int:
        """Tensors of state per layer: (H, C) for an LSTM, (H,) otherwise."""
        return 2 if self.cell == "lstm" else 1

    def prefix(self, layer: int) -> str:
        return "" if self.num_layers == 1 else f"layer{layer + 1}."

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Canonical names -> shapes: ``W_emb: (V, E)`` where there is an embedding, layer by
        layer, then ``W_hq: (H, Q)`` (unless tied) and ``b_q: (Q,)``, Q = ``output_units``."""
        H, shapes = self.num_hiddens, {}
        if getattr(self, "embedding", 0):
            shapes["W_emb"] = (self.vocab_size, self.embedding)
        for layer in range(self.num_layers):
            inputs = self.num_inputs if layer == 0 else H
            for name in PARAM_NAMES[self.cell][:-2]:
                shape = (
                    (inputs, H)
                    if name.startswith("W_x")
                    else ((H, H) if name.startswith("W_h") else (H,))
                )
                shapes[self.prefix(layer) + name] = shape
        if not getattr(self, "tie_weights", False):
            shapes["W_hq"] = (H, self.output_units)
        shapes["b_q"] = (self.output_units,)
        return shapes

    def num_params(self) -> int:
        return sum(math.prod(shape) for shape in self.param_shapes().values())

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown model settings {unknown}; this dl knows {sorted(known)}")
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class LMConfig(RecurrentShape):
    """What defines a language model's parameters and computation (stored in checkpoints)."""

    cell: str = "lstm"  # rnn | gru | lstm
    vocab_size: int = 28  # V: input tokens and output classes
    num_hiddens: int = 256  # H: units per layer
    num_layers: int = 1  # stacked recurrent layers
    dropout: float = 0.0  # on each layer's outputs but the last, while training
    output_tanh: bool = True  # lstm only: False gives H = O * C (the chapter's exercise 4)
    embedding: int = 0  # E: 0 for the book's one-hot inputs, else an embedding table (V, E)
    tie_weights: bool = False  # the output layer is the embedding table transposed (E = H)
    embed_dropout: float = 0.0  # on the embeddings, while training
    output_dropout: float = 0.0  # on the last layer's outputs, while training

    def __post_init__(self):
        check_positive("vocab_size", self.vocab_size, integer=True)
        check_positive("embedding", self.embedding, allow_zero=True, integer=True)
        for name in ("embed_dropout", "output_dropout"):
            value = getattr(self, name)
            check_positive(name, value, allow_zero=True)
            if value >= 1:
                raise InputError(f"{name} must be in [0, 1), got {value!r}")
        if self.embed_dropout and not self.embedding:
            raise InputError("embed_dropout needs an embedding (the one-hot inputs have none)")
        if self.tie_weights and self.embedding != self.num_hiddens:
            raise InputError(
                f"tie_weights shares the embedding table with the output layer, so embedding "
                f"({self.embedding}) must equal num_hiddens ({self.num_hiddens})"
            )
        self._check()

    @property
    def num_inputs(self) -> int:
        return self.embedding or self.vocab_size

    @property
    def num_outputs(self) -> int:
        return self.vocab_size


def check_precision(precision: str, backend: str, supported=("fp32",)) -> None:
    """Raise InputError unless ``backend`` trains in ``precision``."""
    if precision not in supported:
        raise InputError(
            f"precision {precision!r}: the {backend} backend trains in "
            f"{' or '.join(supported)}; use --backend torch for bf16"
        )


def check_concise(config, backend: str, supported) -> None:
    """Raise InputError unless ``backend``'s own layers can run ``config`` (``supported``: the
    cells they offer in the book's form); the scratch implementation runs every config."""
    if config.cell not in supported:
        raise InputError(
            f"--impl concise: {backend} has no layer computing the book's "
            f"{config.cell.upper()} (its own differs); use --impl scratch"
        )
    if not config.output_tanh:
        raise InputError(
            f"--impl concise: {backend}'s LSTM layer always applies tanh to its "
            "output; use --impl scratch for H = O * C"
        )


class ModelConstructor:
    """The constructor of every backend's command-line language models, placed before the
    backend's canonical base (which loads ``params`` on ``device``):
    ``Model(config, params, device=None, precision='fp32', devices=1)`` checks ``config`` and
    ``precision`` first (:meth:`check`; a concise model's ``CONCISE_CELLS`` go to
    :func:`check_concise`), and after loading prepares what the backend compiles
    (:meth:`_ready`). ``devices``: how many local devices, from ``device`` on, its trainer
    splits each batch across (``self.devices``, set before the base loads ``params``; the
    JAX and TensorFlow bases read it)."""

    FRAMEWORK = ""  # the framework as error messages name it
    PRECISIONS: tuple[str, ...] = ("fp32",)  # the precisions its engine trains in
    CONCISE_CELLS: tuple[str, ...] | None = None  # a concise model: the cells its layers compute

    def __init__(
        self,
        config: LMConfig,
        params: dict[str, np.ndarray],
        device=None,
        precision="fp32",
        devices: int = 1,
    ):
        self.check(config, precision)
        self.devices = devices
        super().__init__(config, params, device)
        self.precision = precision
        self._ready()

    @classmethod
    def check(cls, config: LMConfig, precision: str) -> None:
        """Raise InputError unless this model runs ``config`` in ``precision``."""
        if cls.CONCISE_CELLS is not None:
            check_concise(config, cls.FRAMEWORK, cls.CONCISE_CELLS)
        check_precision(precision, cls.FRAMEWORK, cls.PRECISIONS)

    def _ready(self) -> None:
        """Called once the parameters are loaded: the backend's compiled steps."""


def dropout_rate(config, site: int) -> float:
    """The dropout rate of ``site`` (see the module's docstring) under ``config``."""
    if site == EMBEDDING_SITE:
        return getattr(config, "embed_dropout", 0.0)
    if site == OUTPUT_SITE:
        return getattr(config, "output_dropout", 0.0)
    return config.dropout


def any_dropout(config) -> bool:
    """Whether ``config`` drops anything out while training."""
    sites = (0, EMBEDDING_SITE, OUTPUT_SITE)
    return any(dropout_rate(config, site) > 0 for site in sites)


INITS = ("book", "uniform")


def init_params(
    config: LMConfig, seed: int, scale: float = 0.01, kind: str = "book"
) -> dict[str, np.ndarray]:
    """Initial parameters, float32, from ``seed``: every framework starts from the same numbers.

    ``book``: weights ~ N(0, scale), biases 0 (the book's). ``uniform``: PyTorch's recurrent
    layers' U(-1/sqrt(H), 1/sqrt(H)) for the layers' weights and pytorch/examples'
    word_language_model's U(-0.1, 0.1) for ``W_emb`` and ``W_hq``, biases 0: weights large
    enough for SGD at a high rate to train an embedding model quickly."""
    if kind not in INITS:
        raise InputError(f"init must be one of {', '.join(INITS)}, got {kind!r}")
    rng, bound = np.random.default_rng(seed), 1 / math.sqrt(config.num_hiddens)

    def draw(name, shape):
        if not name.rpartition(".")[2].startswith("W"):
            return np.zeros(shape, np.float32)
        if kind == "book":
            return (rng.standard_normal(shape) * scale).astype(np.float32)
        limit = 0.1 if name in ("W_emb", "W_hq") else bound
        return rng.uniform(-limit, limit, shape).astype(np.float32)

    return {name: draw(name, shape) for name, shape in config.param_shapes().items()}


def check_params(config: LMConfig, params: dict[str, Any]) -> None:
    """Raise InputError unless ``params`` has exactly the canonical names and shapes."""
    expected = config.param_shapes()
    missing, extra = sorted(set(expected) - set(params)), sorted(set(params) - set(expected))
    if missing or extra:
        raise InputError(f"parameters do not fit the model: missing {missing}, unexpected {extra}")
    for name, shape in expected.items():
        if tuple(params[name].shape) != shape:
            raise InputError(
                f"parameter {name} has shape {tuple(params[name].shape)}, the model needs {shape}"
            )


def forward(
    ops,
    params: dict,
    X,
    state: tuple,
    config: LMConfig,
    dropout: Callable[[Any, int], Any] | None = None,
):
    """Run the language model over a batch.

    ``X: (B, T)`` int token ids; ``state``: a flat tuple, per layer ``(H,)`` or ``(H, C)``, each
    ``(B, H)``. ``dropout(x, site)``, if given, is applied at every site whose rate is above 0
    (:func:`dropout_rate`): the embeddings ``(T, B, E)``, the outputs ``(T, B, H)`` of every
    layer but the last, the last layer's outputs. Returns ``(logits: (T * B, V), state)``,
    logits time-major as the book's (rows ``t*B .. t*B+B-1`` belong to step ``t``).
    """
    ids = ops.transpose(X)
    if config.embedding:
        inputs = ops.take(params["W_emb"], ids)  # (T, B, E)
        inputs = _drop(dropout, inputs, config, EMBEDDING_SITE)
        x_proj = input_projection(ops, params, inputs, config, 0)
    else:  # one-hot rows times W_x: rows of W_x, looked up gate by gate
        x_proj = ops.concat(
            [
                ops.take(W_x, ids)
                for W_x in _gate_weights(params, config.prefix(0), config.cell, "W_x")
            ],
            -1,
        )
        x_proj = x_proj + _bias(ops, params, config, 0)
    outputs, state = run_layers(ops, params, x_proj, state, config, dropout)
    outputs = _drop(dropout, outputs, config, OUTPUT_SITE)
    T, B, H = outputs.shape
    logits = ops.reshape(outputs, (T * B, H)) @ output_weights(ops, params, config)
    return logits + params["b_q"], state


def output_weights(ops, params: dict, config):
    """The output layer's ``(H, V)`` matrix: ``W_hq``, or the tied ``W_emb`` transposed."""
    return ops.transpose(params["W_emb"]) if config.tie_weights else params["W_hq"]


def _drop(dropout, x, config, site):
    """``dropout(x, site)`` where ``site``'s rate is above 0 (and there is a ``dropout``)."""
    if dropout is None or not dropout_rate(config, site) > 0:
        return x
    return dropout(x, site)


def input_projection(ops, params: dict, inputs, config, layer: int = 0):
    """``inputs: (T, B, D)`` float -> the ``(T, B, G*H)`` input product with bias of ``layer``
    (real-valued inputs such as time series, or the layer below's outputs)."""
    T, B, D = inputs.shape
    W_xs = _gate_weights(params, config.prefix(layer), config.cell, "W_x")
    product = _product(ops, ops.reshape(inputs, (T * B, D)), W_xs)
    return ops.reshape(product + _bias(ops, params, config, layer), (T, B, -1))


def run_layers(
    ops,
    params: dict,
    x_proj,
    state: tuple,
    config,
    dropout: Callable[[Any, int], Any] | None = None,
):
    """The stacked layers over ``x_proj: (T, B, G*H)``, the first layer's input product with
    bias. Returns ``(outputs: (T, B, H)`` of the last layer, the new flat state)."""
    per_layer = config.state_per_layer
    new_state, inputs = [], None
    for layer in range(config.num_layers):
        if layer > 0:
            x_proj = input_projection(ops, params, inputs, config, layer)
        layer_state = state[layer * per_layer : (layer + 1) * per_layer]
        inputs, layer_state = _run_layer(ops, config, params, layer, x_proj, layer_state)
        new_state.extend(layer_state)
        if layer < config.num_layers - 1:
            inputs = _drop(dropout, inputs, config, layer)
    return inputs, tuple(new_state)


def _gate_weights(params, prefix, cell, kind):
    """``kind`` (``'W_x'``, ``'W_h'``) of each gate in the book's order; for the GRU's
    ``W_h`` the update and reset gates only (its candidate uses ``(R * H) W_hh``)."""
    gates = GATES[cell][:2] if cell == "gru" and kind == "W_h" else GATES[cell]
    return [params[f"{prefix}{kind}{g}"] for g in gates]


def _bias(ops, params, config, layer):
    return ops.concat([params[f"{config.prefix(layer)}b_{g}"] for g in GATES[config.cell]], 0)


def _product(ops, inputs, weights: list):
    """``inputs @ [W_1 | ... | W_n]``: one product with the joined matrix, or with
    ``ops.per_gate`` one product per matrix (no joined copy of the weights)."""
    if getattr(ops, "per_gate", False):
        return ops.concat([inputs @ W for W in weights], -1)
    return inputs @ ops.concat(weights, 1)


def _run_layer(ops, config, params, layer, x_proj, state):
    """One layer over ``x_proj: (T, B, G*H)``; returns its outputs ``(T, B, H)`` and state.

    Time steps run as a Python loop (unrolled when traced), or through ``ops.scan`` where the
    namespace has one (JAX: ``lax.scan`` compiles one step instead of T). The recurrent
    product is one matrix product for all gates, or one per gate where ``ops.per_gate`` is
    set (TensorFlow on a CPU trains twice as fast that way; generation one token at a time
    saves joining the weights for every token)."""
    prefix = config.prefix(layer)
    W_hh = params[prefix + "W_hh"] if config.cell == "gru" else None
    W_h = _gate_weights(params, prefix, config.cell, "W_h")
    if not getattr(ops, "per_gate", False):
        W_h = ops.concat(W_h, 1)

    def step(state, x_t):
        state = _cell_step(ops, config, W_h, W_hh, x_t, state)
        return state, state[0]

    if getattr(ops, "scan", None) is not None:
        state, outputs = ops.scan(step, tuple(state), x_proj)
        return outputs, state
    outputs = []
    for x_t in ops.unstack(x_proj):  # not x_proj[t]: TensorFlow's slice gradients are full-size
        state, H_t = step(state, x_t)
        outputs.append(H_t)
    return ops.stack(outputs), state


def _recurrent(ops, H_t, W_h, n):
    """The n gates' products ``H_t W_h``: ``W_h`` one ``(H, n*H)`` matrix or n ``(H, H)``."""
    if isinstance(W_h, list):
        return [H_t @ W for W in W_h]
    return ops.split(H_t @ W_h, n)


def _cell_step(ops, config, W_h, W_hh, x_t, state):
    """One time step: ``x_t: (B, G*H)`` the input product with bias, ``state`` as the cell's."""
    if config.cell == "rnn":
        (H_t,) = state
        return (ops.tanh(x_t + _recurrent(ops, H_t, W_h, 1)[0]),)
    if config.cell == "gru":
        (H_t,) = state
        x_z, x_r, x_h = ops.split(x_t, 3)
        h_z, h_r = _recurrent(ops, H_t, W_h, 2)
        Z, R = ops.sigmoid(x_z + h_z), ops.sigmoid(x_r + h_r)
        H_tilda = ops.tanh(x_h + (R * H_t) @ W_hh)
        return (Z * H_t + (1 - Z) * H_tilda,)
    H_t, C_t = state
    if isinstance(W_h, list):
        I, F, O, C_tilda = (x + h for x, h in zip(ops.split(x_t, 4), _recurrent(ops, H_t, W_h, 4)))
    else:
        I, F, O, C_tilda = ops.split(x_t + H_t @ W_h, 4)
    C_t = ops.sigmoid(F) * C_t + ops.sigmoid(I) * ops.tanh(C_tilda)
    return (ops.sigmoid(O) * (ops.tanh(C_t) if config.output_tanh else C_t), C_t)


def layer_matrices(params: dict, config, layer: int, order=None):
    """NumPy ``(W_x: (in, G*H), W_h: (H, G*H), b: (G*H,))`` of ``layer`` with the gates side by
    side in ``order`` (default: the book's, :data:`GATES`), as frameworks' layers hold them."""
    order, prefix = order or GATES[config.cell], config.prefix(layer)
    return tuple(
        np.concatenate([np.asarray(params[f"{prefix}{kind}{g}"]) for g in order], -1)
        for kind in ("W_x", "W_h", "b_")
    )


def layer_params(W_x, W_h, b, config, layer: int, order=None) -> dict:
    """The inverse of :func:`layer_matrices`: canonical names -> NumPy arrays."""
    order, prefix = order or GATES[config.cell], config.prefix(layer)
    params = {}
    for kind, value in (("W_x", W_x), ("W_h", W_h), ("b_", b)):
        for gate, block in zip(order, np.split(np.asarray(value), len(order), axis=-1)):
            params[f"{prefix}{kind}{gate}"] = block
    return params


def concise_params(config, layers, W_hq, b_q, order=None, W_emb=None) -> dict:
    """Canonical parameters (in :meth:`LMConfig.param_shapes` order) from a framework's layers:
    ``layers`` yields each layer's fused ``(W_x, W_h, b)`` with the gates in ``order``,
    ``W_hq: (H, V)`` (ignored when tied) and ``b_q: (V,)`` are the output layer's, ``W_emb:
    (V, E)`` the embedding table where there is one."""
    params = {"W_hq": np.asarray(W_hq), "b_q": np.asarray(b_q)}
    if W_emb is not None:
        params["W_emb"] = np.asarray(W_emb)
    for layer, (W_x, W_h, b) in enumerate(layers):
        params.update(layer_params(W_x, W_h, b, config, layer, order))
    return {name: params[name] for name in config.param_shapes()}


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def array_ops(xp, sigmoid, **overrides) -> SimpleNamespace:
    """The ``ops`` of :func:`forward` for ``xp``, NumPy or a module with much of its API
    (``jax.numpy``, ``tensorflow``, ``torch``), with ``sigmoid``; ``overrides`` replace the ops
    ``xp`` spells otherwise or add ones (``scan``, ``per_gate``)."""
    ops = dict(
        take=lambda W, ids: W[ids],
        transpose=xp.transpose,
        concat=getattr(xp, "concatenate", None),
        stack=xp.stack,
        reshape=xp.reshape,
        split=lambda x, n: xp.split(x, n, axis=-1),
        sigmoid=sigmoid,
        tanh=xp.tanh,
        unstack=list,
        mean=getattr(xp, "mean", None),  # of every element: a scalar
        maximum=xp.maximum,
        log=getattr(xp, "log", None),
        softplus=getattr(xp, "softplus", None),  # log(1 + exp(x))
    )
    return SimpleNamespace(**{**ops, **overrides})


NUMPY_OPS = array_ops(np, _np_sigmoid, softplus=lambda x: np.logaddexp(0, x))


def zero_state(config: LMConfig, batch_size: int, dtype=np.float32) -> tuple:
    """The flat zero state as NumPy arrays, ``(B, H)`` each."""
    shape = (batch_size, config.num_hiddens)
    return tuple(np.zeros(shape, dtype) for _ in range(config.num_layers * config.state_per_layer))


def sampler(temperature: float = 1.0, top_k: int | None = None, seed: int | None = None):
    """``choose(logits: (V,)) -> token id`` drawing from ``softmax(logits / temperature)``
    restricted to the ``top_k`` most likely tokens; reproducible for a ``seed``."""
    check_positive("temperature", temperature)
    if top_k is not None:
        check_positive("top_k", top_k, integer=True)
    rng = np.random.default_rng(seed)

    def choose(logits: np.ndarray) -> int:
        scores = np.asarray(logits, np.float64) / temperature
        if top_k is not None and top_k < len(scores):
            scores = np.where(scores >= np.sort(scores)[-top_k], scores, -np.inf)
        probs = np.exp(scores - scores.max())
        return int(rng.choice(len(probs), p=probs / probs.sum()))

    return choose


def evaluate(model, corpus, batch_size: int, num_steps: int) -> tuple[float, int]:
    """``(summed cross-entropy, number of predicted tokens)`` of ``model`` over ``corpus``
    (token ids), walked sequentially with the state carried (see ``eval_batches``)."""
    from dl.data.batches import eval_batches

    loss_sum, num_tokens, state = 0.0, 0, None
    for X, Y in eval_batches(corpus, batch_size, num_steps):
        if state is None:
            state = model.begin_state(X.shape[0])
        loss, state = model.eval_loss(X, Y, state)
        loss_sum, num_tokens = loss_sum + loss, num_tokens + Y.size
    return loss_sum, num_tokens
