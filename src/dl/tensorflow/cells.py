"""Recurrent cells in the book's scratch style: ``get_*_params``, ``init_*_state`` and a
forward function ``f(inputs, state, params) -> (outputs, state)``.

``inputs`` is a sequence over time (a tensor ``(num_steps, batch_size, vocab_size)`` or a
Python list of ``(batch_size, vocab_size)`` tensors); ``outputs`` is
``(num_steps * batch_size, vocab_size)``, time-major, exactly like the seed's ``lstm``.
Parameter names and order are the canonical ones of :mod:`dl.reference`.
"""

import functools

import tensorflow as tf

from dl import book, scratch_cells
from dl.reference import param_shapes

__all__ = book.CELL_NAMES


def _normal(shape, name):
    return tf.Variable(tf.random.normal(shape=shape, stddev=0.01, dtype=tf.float32), name=name)


def _params(cell: str, vocab_size: int, num_hiddens: int) -> list:
    """Weights ~ N(0, 0.01), biases 0, with the canonical names and shapes
    (:func:`dl.reference.param_shapes`), in the order of ``PARAM_NAMES[cell]``."""
    return [
        _normal(shape, name) if name.startswith("W") else tf.Variable(tf.zeros(shape), name=name)
        for name, shape in param_shapes(cell, vocab_size, num_hiddens).items()
    ]


# the book's signatures: (vocab_size, num_hiddens)
get_rnn_params, get_gru_params, get_lstm_params = (
    functools.partial(_params, cell) for cell in scratch_cells.STEPS
)


def init_rnn_state(batch_size, num_hiddens):
    """``(H,)`` with ``H: (batch_size, num_hiddens)`` zeros (also the GRU's state)."""
    return (tf.zeros((batch_size, num_hiddens)),)


init_gru_state = init_rnn_state


def init_lstm_state(batch_size, num_hiddens):
    """``(H, C)``, both ``(batch_size, num_hiddens)`` zeros."""
    return (tf.zeros((batch_size, num_hiddens)), tf.zeros((batch_size, num_hiddens)))


rnn, gru, lstm = scratch_cells.bind(tf.sigmoid, tf.tanh, tf.concat)

CELLS = scratch_cells.table(
    (get_rnn_params, get_gru_params, get_lstm_params),
    (init_rnn_state, init_gru_state, init_lstm_state),
    (rnn, gru, lstm),
)
