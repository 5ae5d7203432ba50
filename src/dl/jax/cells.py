"""Recurrent cells in the book's scratch style (JAX): ``get_*_params(vocab, hidden, key)``,
``init_*_state(batch, hidden)`` and ``f(inputs, state, params)``.

Parameters are a list in the canonical order and shapes of :mod:`dl.reference`. The library
cells run over time with ``jax.lax.scan`` (one compiled step, whatever ``num_steps``); a
user's Python ``for X in inputs`` loop is unrolled by ``jax.jit`` instead. ``inputs`` is
``(num_steps, batch, vocab)``; outputs are ``(num_steps * batch, vocab)``, time-major.
"""

import jax
import jax.numpy as jnp

from dl import book
from dl.reference import param_shapes

__all__ = book.CELL_NAMES


def _params(cell, vocab_size, num_hiddens, key):
    """Weights ~ N(0, 0.01) from ``key``, biases 0, in canonical order."""
    shapes = param_shapes(cell, vocab_size, num_hiddens)
    keys = jax.random.split(key, len(shapes))
    return [
        jax.random.normal(k, shape) * 0.01 if name.startswith("W") else jnp.zeros(shape)
        for k, (name, shape) in zip(keys, shapes.items())
    ]


def get_rnn_params(vocab_size, num_hiddens, key):
    return _params("rnn", vocab_size, num_hiddens, key)


def get_gru_params(vocab_size, num_hiddens, key):
    return _params("gru", vocab_size, num_hiddens, key)


def get_lstm_params(vocab_size, num_hiddens, key):
    return _params("lstm", vocab_size, num_hiddens, key)


def zero_state(batch_size, num_hiddens, count=1):
    """``count`` zero arrays ``(batch_size, num_hiddens)``: any cell's, layer's or stack's state."""
    return tuple(jnp.zeros((batch_size, num_hiddens)) for _ in range(count))


def init_rnn_state(batch_size, num_hiddens):
    """``(H,)`` with ``H: (batch_size, num_hiddens)`` zeros (also the GRU's state)."""
    return zero_state(batch_size, num_hiddens)


init_gru_state = init_rnn_state


def init_lstm_state(batch_size, num_hiddens):
    """``(H, C)``, both ``(batch_size, num_hiddens)`` zeros."""
    return zero_state(batch_size, num_hiddens, 2)


def _scan(step, inputs, state, W_hq, b_q):
    """Run ``step(state, X) -> state`` over time; outputs ``H W_hq + b_q`` time-major."""

    def body(state, X):
        state = step(state, X)
        return state, state[0]

    state, Hs = jax.lax.scan(body, state, inputs)
    return Hs.reshape(-1, Hs.shape[-1]) @ W_hq + b_q, state


def rnn(inputs, state, params):
    """Vanilla RNN: ``H = tanh(X W_xh + H W_hh + b_h)``."""
    W_xh, W_hh, b_h, W_hq, b_q = params
    return _scan(
        lambda s, X: (jnp.tanh(X @ W_xh + s[0] @ W_hh + b_h),), inputs, tuple(state), W_hq, b_q
    )


def gru(inputs, state, params):
    """GRU as in the book: the reset gate scales ``H`` before ``W_hh``."""
    W_xz, W_hz, b_z, W_xr, W_hr, b_r, W_xh, W_hh, b_h, W_hq, b_q = params

    def step(state, X):
        (H,) = state
        Z = jax.nn.sigmoid(X @ W_xz + H @ W_hz + b_z)
        R = jax.nn.sigmoid(X @ W_xr + H @ W_hr + b_r)
        H_tilda = jnp.tanh(X @ W_xh + (R * H) @ W_hh + b_h)
        return (Z * H + (1 - Z) * H_tilda,)

    return _scan(step, inputs, tuple(state), W_hq, b_q)


def lstm(inputs, state, params):
    """LSTM as in the seed: input, forget and output gates and a memory cell ``C``."""
    W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c, W_hq, b_q = params

    def step(state, X):
        H, C = state
        I = jax.nn.sigmoid(X @ W_xi + H @ W_hi + b_i)
        F = jax.nn.sigmoid(X @ W_xf + H @ W_hf + b_f)
        O = jax.nn.sigmoid(X @ W_xo + H @ W_ho + b_o)
        C_tilda = jnp.tanh(X @ W_xc + H @ W_hc + b_c)
        C = F * C + I * C_tilda
        return (O * jnp.tanh(C), C)

    return _scan(step, inputs, tuple(state), W_hq, b_q)


CELLS = {
    "rnn": (get_rnn_params, init_rnn_state, rnn),
    "gru": (get_gru_params, init_gru_state, gru),
    "lstm": (get_lstm_params, init_lstm_state, lstm),
}
