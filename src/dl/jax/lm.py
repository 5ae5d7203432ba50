"""The command line's language model (:mod:`dl.lm`) on JAX."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from dl import lm
from dl.validate import check_gpu, parse_device
from dl.jax import models
from dl.jax.training import JaxTrainer, device_name, token_loss_sum

OPS = SimpleNamespace(
    take=lambda W, ids: W[ids], transpose=jnp.transpose, concat=jnp.concatenate, stack=jnp.stack,
    reshape=jnp.reshape, split=lambda x, n: jnp.split(x, n, axis=-1), sigmoid=jax.nn.sigmoid,
    tanh=jnp.tanh, unstack=list, scan=jax.lax.scan)
# one token at a time: a product per gate instead of joining the weights for every token
STEP_OPS = SimpleNamespace(**vars(OPS), per_gate=True)


def device_of(name: str | None):
    """A device name (:func:`dl.validate.parse_device`) as a ``jax.Device``; no name: the
    first GPU if JAX sees one, else the CPU."""
    kind, index = parse_device(name)
    try:
        gpus = jax.devices("gpu")
    except RuntimeError:  # no GPU backend installed
        gpus = []
    if kind == "cpu" or (index is None and not gpus):
        return jax.devices("cpu")[0]
    check_gpu(name, index or 0, len(gpus), "JAX")
    return gpus[index or 0]


def dropout_fn(key, rate: float):
    """``dropout(outputs, layer)`` with a mask drawn from ``key`` folded with the layer."""
    def dropout(outputs, layer):
        keep = jax.random.bernoulli(jax.random.fold_in(key, layer), 1 - rate, outputs.shape)
        return jnp.where(keep, outputs / (1 - rate), 0.0)
    return dropout


class LanguageModel:
    """:func:`dl.lm.forward` with canonical parameters as a dict pytree (``.params``).

    ``apply(params, X, state, key=None)`` is pure; with a PRNG ``key`` it trains (dropout on).
    The trainer splits ``.key`` (set by :meth:`reseed`) once per step.
    """

    backend = "jax"

    def __init__(self, config: lm.LMConfig, params: dict[str, np.ndarray], device=None,
                 precision: str = "fp32"):
        lm.check_params(config, params)
        lm.check_precision(precision, "JAX")
        self.config, self.device = config, device_of(device)
        self.params = jax.device_put(self._tree(params), self.device)
        self.stochastic = config.dropout > 0
        self.key = jax.random.PRNGKey(0)
        self._eval_step = jax.jit(self._eval_loss)
        self._token_step = jax.jit(functools.partial(self.apply, ops=STEP_OPS))

    def _tree(self, params: dict) -> dict:
        return {name: jnp.asarray(params[name], jnp.float32) for name in self.config.param_shapes()}

    @property
    def device_name(self) -> str:
        return device_name(self.device)

    def apply(self, params, X, state, key=None, ops=OPS):
        """``X: (B, T)`` int -> ``(logits: (T * B, V), state)``."""
        use_dropout = key is not None and self.config.dropout > 0
        return lm.forward(ops, params, X, tuple(state), self.config,
                          dropout_fn(key, self.config.dropout) if use_dropout else None)

    def begin_state(self, batch_size):
        return tuple(jnp.asarray(s) for s in lm.zero_state(self.config, batch_size))

    def numpy_params(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(value) for name, value in self.params.items()}

    def reseed(self, seed: int) -> None:
        self.key = jax.random.PRNGKey(seed)

    def trainer(self, lr: float, clip: float) -> JaxTrainer:
        return JaxTrainer(self, lr, clip, self.device)

    def _eval_loss(self, params, X, Y, state):
        logits, state = self.apply(params, X, state)
        return token_loss_sum(logits, Y.T.reshape(-1)), state

    def eval_loss(self, X: np.ndarray, Y: np.ndarray, state):
        """Summed cross-entropy of a batch ``X, Y: (B, T)`` (no dropout) and the next state."""
        loss, state = self._eval_step(self.params, jnp.asarray(X), jnp.asarray(Y), state)
        return float(loss), state

    def step(self, token: int, state):
        """One token in -> ``(logits: (V,) NumPy float, state)``."""
        logits, state = self._token_step(self.params, jnp.array([[token]]), state)
        return np.asarray(logits)[0], state


class LayersModel(LanguageModel):
    """The concise model: :class:`dl.jax.RNN`, ``GRU`` or ``LSTM`` layers (fused gates scanned
    with ``lax.scan``), stacked with dropout between them, plus a dense output layer;
    ``params = {'layers': [{'W_x', 'W_h', 'b'}, ...], 'W_hq', 'b_q'}``. State as the scratch
    model's."""

    LAYERS = {"rnn": models.RNN, "gru": models.GRU, "lstm": models.LSTM}

    def __init__(self, config: lm.LMConfig, params: dict[str, np.ndarray], device=None,
                 precision: str = "fp32"):
        lm.check_concise(config, "JAX", self.LAYERS)
        self.layers = [self.LAYERS[config.cell](config.vocab_size if k == 0 else config.num_hiddens,
                                                config.num_hiddens)
                       for k in range(config.num_layers)]
        super().__init__(config, params, device, precision)

    def _tree(self, params: dict) -> dict:
        layers = [dict(zip(("W_x", "W_h", "b"), map(jnp.asarray, lm.layer_matrices(
            params, self.config, k)))) for k in range(self.config.num_layers)]
        return {"layers": layers, "W_hq": jnp.asarray(params["W_hq"]),
                "b_q": jnp.asarray(params["b_q"])}

    def apply(self, params, X, state, key=None, ops=None):
        """``X: (B, T)`` int -> ``(logits: (T * B, V), state)`` (``ops``: unused)."""
        inputs = jax.nn.one_hot(X.T, self.config.vocab_size, dtype=jnp.float32)
        per_layer, new_state = self.config.state_per_layer, []
        dropout = dropout_fn(key, self.config.dropout) if key is not None else None
        for k, (layer, layer_params) in enumerate(zip(self.layers, params["layers"])):
            inputs, layer_state = layer.apply(layer_params, inputs,
                                              state[k * per_layer:(k + 1) * per_layer])
            new_state.extend(layer_state)
            if dropout is not None and self.config.dropout > 0 and k < len(self.layers) - 1:
                inputs = dropout(inputs, k)
        T, B, H = inputs.shape
        return inputs.reshape(T * B, H) @ params["W_hq"] + params["b_q"], tuple(new_state)

    def numpy_params(self) -> dict[str, np.ndarray]:
        layers = ([np.asarray(layer[name]) for name in ("W_x", "W_h", "b")]
                  for layer in self.params["layers"])
        return lm.concise_params(self.config, layers, self.params["W_hq"], self.params["b_q"])
