"""The command line's language model (:mod:`dl.lm`) on TensorFlow, and what it shares with the
forecaster (:class:`CanonicalModel`)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from dl import lm
from dl.errors import InputError
from dl.optim import OptimizerConfig
from dl.tensorflow._keras import tf  # first: sets up tf-keras
from dl.tensorflow.engine import TFTrainer, mirrored
from dl.validate import check_gpu, parse_device

OPS = lm.array_ops(
    tf,
    tf.sigmoid,
    take=tf.gather,
    concat=lambda xs, axis: tf.concat(xs, axis),
    unstack=tf.unstack,
    mean=tf.reduce_mean,
    log=tf.math.log,
    softplus=tf.math.softplus,
    per_gate=True,
)
# one product for all gates: faster for small layers (the forecasters'; README, Speed), where
# per-gate products are too small to pay for themselves
FUSED_OPS = SimpleNamespace(**{**vars(OPS), "per_gate": False})


def device_of(name: str | None) -> str:
    """A device name (:func:`dl.validate.parse_device`) as ``'/GPU:N'`` or ``'/CPU:0'``; no
    name: the first GPU if TensorFlow sees one, else the CPU."""
    kind, index = parse_device(name)
    count = len(tf.config.list_physical_devices("GPU"))
    if kind == "cpu" or (index is None and not count):
        return "/CPU:0"
    check_gpu(name, index or 0, count, "TensorFlow")
    return f"/GPU:{index or 0}"


class CanonicalModel:
    """Canonical parameters (:meth:`dl.lm.RecurrentShape.param_shapes`) held as
    ``tf.Variable``s on one device, zero states and seeded dropout: what the language models
    and the forecaster share.

    Dropout is stateless: its masks come from the seed set by :meth:`reseed` and a counter of
    training calls, so a run is reproducible and resumable.
    """

    backend = "tensorflow"
    devices = 1  # how many local devices from ``device`` on train it (lm.ModelConstructor)

    def __init__(self, config, params: dict[str, np.ndarray], device=None):
        lm.check_params(config, params)
        self.config, self.device = config, device_of(device)
        self.names = list(config.param_shapes())
        self.strategy = tf.distribute.get_strategy()  # one device: the default strategy
        if self.devices > 1:
            if lm.any_dropout(config):  # one mask counter, assigned from every replica
                raise InputError(
                    f"--devices {self.devices} with dropout: the TensorFlow backend draws "
                    "dropout masks on one device only; use --backend jax, or --devices 1"
                )
            self.strategy = mirrored(self.device, self.devices)
        with tf.device(self.device):
            self._seed = tf.Variable([0, 0], dtype=tf.int64, trainable=False)
            with self.strategy.scope():  # mirrored variables on every device trained on
                self.trainable_variables = self._variables(self.per_variable(params))

    @property
    def device_name(self) -> str:
        if self.devices == 1:
            return self.device
        specs = map(tf.DeviceSpec.from_string, self.strategy.extended.worker_devices)
        return ", ".join(f"/{spec.device_type}:{spec.device_index}" for spec in specs)

    def _variables(self, arrays: list) -> list:
        return [tf.Variable(a, name=name.replace(".", "_")) for name, a in zip(self.names, arrays)]

    def per_variable(self, params: dict) -> list[np.ndarray]:
        """Canonical ``params`` as float32 arrays in the order of ``trainable_variables``."""
        return [np.asarray(params[name], np.float32) for name in self.names]

    def canonical(self, arrays) -> dict:
        """Arrays in the order of ``trainable_variables`` under their canonical names."""
        return dict(zip(self.names, arrays))

    def numpy_params(self) -> dict[str, np.ndarray]:
        return self.canonical([v.numpy() for v in self.trainable_variables])

    def load(self, params: dict[str, np.ndarray]) -> None:
        lm.check_params(self.config, params)
        for variable, value in zip(self.trainable_variables, self.per_variable(params)):
            variable.assign(value)

    def begin_state(self, batch_size, dtype=tf.float32) -> tuple:
        """Zeros: ``num_layers * state_per_layer`` tensors ``(batch_size, num_hiddens)``."""
        count = self.config.num_layers * self.config.state_per_layer
        return tuple(tf.zeros((batch_size, self.config.num_hiddens), dtype) for _ in range(count))

    def reseed(self, seed: int) -> None:
        self._seed.assign([seed, 0])

    def _dropout(self, training: bool):
        """``dropout(x, site)`` for :func:`dl.lm.forward` (sites: :mod:`dl.lm`'s docstring) while
        training a model that drops anything out, else None. Each call draws a new mask."""
        if not training or not lm.any_dropout(self.config):
            return None

        def dropout(x, site):
            self._seed.assign_add([0, 1])
            seed = self._seed + tf.constant([0, 1 << 32], tf.int64) * site
            return tf.nn.experimental.stateless_dropout(x, lm.dropout_rate(self.config, site), seed)

        return dropout


class LanguageModel(lm.ModelConstructor, CanonicalModel):
    """:func:`dl.lm.forward` on the canonical parameters."""

    FRAMEWORK = "TensorFlow"

    def _ready(self):
        self._eval_step = tf.function(self._eval_loss)
        self._token_step = tf.function(lambda X, state: self(X, state))
        self._token_concrete = None  # the traced one-token step, called without dispatch

    def __call__(self, X, state, training=False):
        """``X: (B, T)`` int -> ``(logits: (T * B, V), state)``; dropout only when training."""
        params = dict(zip(self.names, self.trainable_variables))
        return lm.forward(
            OPS, params, tf.cast(X, tf.int32), tuple(state), self.config, self._dropout(training)
        )

    def trainer(self, optimizer: OptimizerConfig, clip: float) -> TFTrainer:
        """The :class:`dl.train.Trainer` of ``optimizer`` with gradients clipped to ``clip``."""
        with tf.device(self.device):
            return TFTrainer(
                _Training(self),
                tf.nn.sparse_softmax_cross_entropy_with_logits,
                optimizer,
                self.strategy,
                theta=clip,
            )

    def _eval_loss(self, X, Y, state):
        logits, state = self(X, state)
        y = tf.reshape(tf.transpose(Y), [-1])
        return tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)), state

    def eval_loss(self, X: np.ndarray, Y: np.ndarray, state):
        """Summed cross-entropy of a batch ``X, Y: (B, T)`` (no dropout) and the next state."""
        with tf.device(self.device):
            loss, state = self._eval_step(tf.constant(X), tf.constant(Y), state)
        return float(loss), state

    def step(self, token: int, state):
        """One token in -> ``(logits: (V,) NumPy float, state)``."""
        X, state = tf.constant([[token]]), tuple(state)
        with tf.device(self.device):
            if self._token_concrete is None:
                self._token_concrete = self._token_step.get_concrete_function(X, state)
            try:  # the traced function itself, without tf.function's dispatch (README, Speed)
                logits, state = self._token_concrete(X, state)
            except (TypeError, ValueError):  # a state of other shapes or dtypes
                logits, state = self._token_step(X, state)
        return logits.numpy()[0], state


class LayersModel(LanguageModel):
    """The concise model: Keras ``SimpleRNN``, ``GRU(reset_after=False)`` (the book's GRU) or
    ``LSTM`` layers on one-hot inputs, or on a Keras ``Embedding`` where the config has one,
    plus a dense output layer (or the embedding table transposed, when tied); dropout at the
    scratch model's sites with its masks. Loaded from and saved to canonical names; state as
    the scratch model's."""

    GATE_ORDER = {"rnn": ("h",), "gru": ("z", "r", "h"), "lstm": ("i", "f", "c", "o")}
    CONCISE_CELLS = tuple(GATE_ORDER)

    def _variables(self, arrays: list) -> list:
        """The embedding table (if any), each layer's ``kernel, recurrent_kernel, bias``, then
        ``W_hq`` (unless tied) and ``b_q``."""
        config, arrays = self.config, list(arrays)
        make = {
            "rnn": tf.keras.layers.SimpleRNN,
            "lstm": tf.keras.layers.LSTM,
            "gru": lambda H, **kw: tf.keras.layers.GRU(H, reset_after=False, **kw),
        }
        variables = []
        self.embedding = None
        if config.embedding:
            self.embedding = tf.keras.layers.Embedding(config.vocab_size, config.embedding)
            self.embedding.build((None, None))
            self.embedding.set_weights([arrays.pop(0)])
            variables.append(self.embedding.embeddings)
        self.layers = []
        for layer in range(config.num_layers):
            rnn = make[config.cell](config.num_hiddens, return_sequences=True, return_state=True)
            rnn.build((None, None, config.num_inputs if layer == 0 else config.num_hiddens))
            rnn.set_weights(arrays[3 * layer : 3 * layer + 3])
            self.layers.append(rnn)
            variables.extend(rnn.trainable_weights)
        self.b_q = tf.Variable(arrays.pop(), name="b_q")
        if config.tie_weights:  # the output layer is the embedding table's transpose
            return variables + [self.b_q]
        self.W_hq = tf.Variable(arrays.pop(), name="W_hq")
        return variables + [self.W_hq, self.b_q]

    def per_variable(self, params: dict) -> list[np.ndarray]:
        config, order = self.config, self.GATE_ORDER[self.config.cell]
        fused = [
            m
            for layer in range(config.num_layers)
            for m in lm.layer_matrices(params, config, layer, order)
        ]
        embedding = [params["W_emb"]] if config.embedding else []
        output = [params["b_q"]] if config.tie_weights else [params["W_hq"], params["b_q"]]
        return [np.asarray(a, np.float32) for a in embedding + fused + output]

    def canonical(self, arrays) -> dict:
        config, arrays = self.config, list(arrays)
        W_emb = arrays.pop(0) if config.embedding else None
        b_q = arrays.pop()
        W_hq = None if config.tie_weights else arrays.pop()
        layers = [arrays[3 * layer : 3 * layer + 3] for layer in range(config.num_layers)]
        order = self.GATE_ORDER[config.cell]
        return lm.concise_params(config, layers, W_hq, b_q, order, W_emb=W_emb)

    def __call__(self, X, state, training=False):
        """``X: (B, T)`` int -> ``(logits: (T * B, V), state)``; dropout only when training."""
        config, per_layer, new_state = self.config, self.config.state_per_layer, []
        drop = _dropper(self._dropout(training), config)
        ids = tf.cast(X, tf.int32)
        if config.embedding:
            inputs = drop(self.embedding(ids), lm.EMBEDDING_SITE)  # (B, T, E)
        else:
            inputs = tf.one_hot(ids, config.vocab_size)  # (B, T, V)
        for layer, rnn in enumerate(self.layers):
            initial = list(state[layer * per_layer : (layer + 1) * per_layer])
            inputs, *layer_state = rnn(inputs, initial_state=initial)
            new_state.extend(layer_state)
            if layer < len(self.layers) - 1:
                inputs = drop(inputs, layer)
        outputs = drop(tf.transpose(inputs, [1, 0, 2]), lm.OUTPUT_SITE, time_major=True)
        outputs = tf.reshape(outputs, [-1, config.num_hiddens])
        if config.tie_weights:
            logits = tf.matmul(outputs, self.embedding.embeddings, transpose_b=True)
        else:
            logits = outputs @ self.W_hq
        return logits + self.b_q, tuple(new_state)


def _dropper(dropout, config):
    """``drop(x: (B, T, D), site)`` for the Keras layers' batch-major tensors: ``dropout``'s
    mask of the time-major ``(T, B, D)`` (the scratch model's, so both models train alike),
    transposed (``time_major=True``: ``x`` is ``(T, B, D)`` already); ``x`` itself where
    ``site`` drops nothing."""

    def drop(x, site, time_major=False):
        if dropout is None or not lm.dropout_rate(config, site) > 0:
            return x
        if time_major:
            return dropout(x, site)
        return tf.transpose(dropout(tf.transpose(x, [1, 0, 2]), site), [1, 0, 2])

    return drop


class _Training:
    """The model as :class:`TFTrainer` sees it: called in training mode (dropout on)."""

    def __init__(self, model: LanguageModel):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    def __call__(self, X, state):
        return self.model(X, state, training=True)
