"""The command line's language model (:mod:`dl.lm`) on JAX."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np

from dl import lm
from dl.jax import models
from dl.jax.cells import zero_state
from dl.jax.engine import device_name, device_of, local_devices
from dl.jax.training import JaxTrainer, token_loss_sum
from dl.optim import OptimizerConfig

OPS = lm.array_ops(jnp, jax.nn.sigmoid, scan=jax.lax.scan, softplus=jax.nn.softplus)
# one token at a time: a product per gate instead of joining the weights for every token
STEP_OPS = SimpleNamespace(**vars(OPS), per_gate=True)


def dropout_fn(key, config):
    """``dropout(x, site)`` (:mod:`dl.lm`'s sites) at ``lm.dropout_rate(config, site)`` with a
    mask drawn from ``key`` folded with the site (``x`` as it is where the rate is 0), or None
    without a key (not training) or where ``config`` drops nothing."""
    if key is None or not lm.any_dropout(config):
        return None

    def dropout(x, site):
        rate = lm.dropout_rate(config, site)
        if not rate > 0:
            return x
        keep = jax.random.bernoulli(jax.random.fold_in(key, site), 1 - rate, x.shape)
        return jnp.where(keep, x / (1 - rate), 0.0)

    return dropout


class CanonicalModel:
    """What the command line's models share: ``config`` (a :class:`dl.lm.RecurrentShape`),
    ``params``, the canonical parameters as a pytree on ``device``, and ``key``, the PRNG key
    (set by :meth:`reseed`) that the engine splits at every training step for dropout."""

    backend = "jax"
    devices = 1  # how many local devices from ``device`` on train it (lm.ModelConstructor)

    def __init__(self, config, params: dict[str, np.ndarray], device=None):
        self.config, self.device, self.key = config, device_of(device), jax.random.PRNGKey(0)
        self.trained_on = local_devices(self.device, self.devices)
        self.load(params)

    def load(self, params: dict[str, np.ndarray]) -> None:
        lm.check_params(self.config, params)
        self.params = jax.device_put(self.from_numpy(params), self.device)

    def from_numpy(self, params: dict):
        """Canonical names -> arrays as this model's pytree."""
        return {name: jnp.asarray(params[name], jnp.float32) for name in self.config.param_shapes()}

    def to_numpy(self, tree) -> dict[str, np.ndarray]:
        """The inverse of :meth:`from_numpy`, in canonical order."""
        return {name: np.asarray(tree[name]) for name in self.config.param_shapes()}

    def numpy_params(self) -> dict[str, np.ndarray]:
        return self.to_numpy(self.params)

    @property
    def device_name(self) -> str:
        return ", ".join(map(device_name, self.trained_on))

    def reseed(self, seed: int) -> None:
        self.key = jax.random.PRNGKey(seed)


class LanguageModel(lm.ModelConstructor, CanonicalModel):
    """:func:`dl.lm.forward` with canonical parameters as a dict pytree (``.params``).
    ``apply(params, X, state, key=None)`` is pure; with a PRNG ``key`` it trains (dropout on).
    """

    FRAMEWORK = "JAX"

    def _ready(self):
        self.stochastic = lm.any_dropout(self.config)
        self._eval_step = jax.jit(self._eval_loss)
        self._token_step = jax.jit(functools.partial(self.apply, ops=STEP_OPS))

    def apply(self, params, X, state, key=None, ops=OPS):
        """``X: (B, T)`` int -> ``(logits: (T * B, V), state)``."""
        return lm.forward(ops, params, X, tuple(state), self.config, dropout_fn(key, self.config))

    def begin_state(self, batch_size):
        config = self.config
        return zero_state(
            batch_size, config.num_hiddens, config.num_layers * config.state_per_layer
        )

    def trainer(self, optimizer: OptimizerConfig, clip: float) -> JaxTrainer:
        return JaxTrainer(self, optimizer, clip, self.trained_on)

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
    """The concise model: an embedding table looked up by token id (or the book's one-hot
    inputs), :class:`dl.jax.RNN`, ``GRU`` or ``LSTM`` layers (fused gates scanned with
    ``lax.scan``), dropout at :mod:`dl.lm`'s sites, and a dense output layer (or the tied
    table transposed); ``params = {'W_emb', 'layers': [{'W_x', 'W_h', 'b'}, ...], 'W_hq',
    'b_q'}`` (``W_emb`` where there is an embedding, ``W_hq`` unless tied). State as the
    scratch model's."""

    LAYERS = {"rnn": models.RNN, "gru": models.GRU, "lstm": models.LSTM}
    CONCISE_CELLS = tuple(LAYERS)

    def _ready(self):
        config = self.config
        self.layers = [
            self.LAYERS[config.cell](
                config.num_inputs if k == 0 else config.num_hiddens, config.num_hiddens
            )
            for k in range(config.num_layers)
        ]
        super()._ready()

    def from_numpy(self, params: dict) -> dict:
        layers = [
            dict(
                zip(
                    ("W_x", "W_h", "b"), map(jnp.asarray, lm.layer_matrices(params, self.config, k))
                )
            )
            for k in range(self.config.num_layers)
        ]
        outer = [name for name in self.config.param_shapes() if name in ("W_emb", "W_hq", "b_q")]
        return {"layers": layers, **{name: jnp.asarray(params[name]) for name in outer}}

    def to_numpy(self, tree) -> dict[str, np.ndarray]:
        layers = (
            [np.asarray(layer[name]) for name in ("W_x", "W_h", "b")] for layer in tree["layers"]
        )
        return lm.concise_params(
            self.config, layers, tree.get("W_hq"), tree["b_q"], W_emb=tree.get("W_emb")
        )

    def apply(self, params, X, state, key=None, ops=None):
        """``X: (B, T)`` int -> ``(logits: (T * B, V), state)`` (``ops``: unused)."""
        config = self.config
        dropout = dropout_fn(key, config) or _keep
        if config.embedding:
            inputs = dropout(OPS.take(params["W_emb"], X.T), lm.EMBEDDING_SITE)  # (T, B, E)
        else:
            inputs = jax.nn.one_hot(X.T, config.vocab_size, dtype=jnp.float32)
        per_layer, new_state = config.state_per_layer, []
        for k, (layer, layer_params) in enumerate(zip(self.layers, params["layers"])):
            inputs, layer_state = layer.apply(
                layer_params, inputs, state[k * per_layer : (k + 1) * per_layer]
            )
            new_state.extend(layer_state)
            if k < len(self.layers) - 1:
                inputs = dropout(inputs, k)
        inputs = dropout(inputs, lm.OUTPUT_SITE)
        T, B, H = inputs.shape
        logits = inputs.reshape(T * B, H) @ lm.output_weights(OPS, params, config)
        return logits + params["b_q"], tuple(new_state)


def _keep(x, site):
    """No dropout at any site."""
    return x
