"""Recurrent cells in the book's scratch style (JAX): ``get_*_params(vocab, hidden, key)``,
``init_*_state(batch, hidden)`` and ``f(inputs, state, params)``.

Parameters are a list in the canonical order and shapes of :mod:`dl.reference`. The library
cells run over time with ``jax.lax.scan`` (one compiled step, whatever ``num_steps``); a
user's Python ``for X in inputs`` loop is unrolled by ``jax.jit`` instead. ``inputs`` is
``(num_steps, batch, vocab)``; outputs are ``(num_steps * batch, vocab)``, time-major.
"""

import functools

import jax
import jax.numpy as jnp

from dl import book, scratch_cells
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


# the book's signatures: (vocab_size, num_hiddens, key)
get_rnn_params, get_gru_params, get_lstm_params = (
    functools.partial(_params, cell) for cell in scratch_cells.STEPS
)


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


rnn, gru, lstm = scratch_cells.bind(jax.nn.sigmoid, jnp.tanh, jnp.concatenate, scan=jax.lax.scan)

CELLS = scratch_cells.table(
    (get_rnn_params, get_gru_params, get_lstm_params),
    (init_rnn_state, init_gru_state, init_lstm_state),
    (rnn, gru, lstm),
)
