"""Recurrent cells in the book's scratch style: ``get_*_params``, ``init_*_state`` and a
forward function ``f(inputs, state, params) -> (outputs, state)``.

``inputs`` is a sequence over time (a tensor ``(num_steps, batch_size, vocab_size)`` or a
Python list of ``(batch_size, vocab_size)`` tensors); ``outputs`` is
``(num_steps * batch_size, vocab_size)``, time-major, exactly like the seed's ``lstm``.
Parameter names and order are the canonical ones of :mod:`dl.reference`.
"""

import tensorflow as tf

from dl import book
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


def get_rnn_params(vocab_size, num_hiddens):
    return _params("rnn", vocab_size, num_hiddens)


def get_gru_params(vocab_size, num_hiddens):
    return _params("gru", vocab_size, num_hiddens)


def get_lstm_params(vocab_size, num_hiddens):
    return _params("lstm", vocab_size, num_hiddens)


def init_rnn_state(batch_size, num_hiddens):
    """``(H,)`` with ``H: (batch_size, num_hiddens)`` zeros (also the GRU's state)."""
    return (tf.zeros((batch_size, num_hiddens)),)


init_gru_state = init_rnn_state


def init_lstm_state(batch_size, num_hiddens):
    """``(H, C)``, both ``(batch_size, num_hiddens)`` zeros."""
    return (tf.zeros((batch_size, num_hiddens)), tf.zeros((batch_size, num_hiddens)))


def rnn(inputs, state, params):
    """Vanilla RNN: ``H = tanh(X W_xh + H W_hh + b_h)``."""
    W_xh, W_hh, b_h, W_hq, b_q = params
    (H,) = state
    outputs = []
    for X in inputs:
        H = tf.tanh(tf.matmul(X, W_xh) + tf.matmul(H, W_hh) + b_h)
        outputs.append(tf.matmul(H, W_hq) + b_q)
    return tf.concat(outputs, axis=0), (H,)


def gru(inputs, state, params):
    """GRU as in the book: the reset gate scales ``H`` before ``W_hh``."""
    W_xz, W_hz, b_z, W_xr, W_hr, b_r, W_xh, W_hh, b_h, W_hq, b_q = params
    (H,) = state
    outputs = []
    for X in inputs:
        Z = tf.sigmoid(tf.matmul(X, W_xz) + tf.matmul(H, W_hz) + b_z)
        R = tf.sigmoid(tf.matmul(X, W_xr) + tf.matmul(H, W_hr) + b_r)
        H_tilda = tf.tanh(tf.matmul(X, W_xh) + tf.matmul(R * H, W_hh) + b_h)
        H = Z * H + (1 - Z) * H_tilda
        outputs.append(tf.matmul(H, W_hq) + b_q)
    return tf.concat(outputs, axis=0), (H,)


def lstm(inputs, state, params):
    """LSTM as in the seed: input, forget and output gates and a memory cell ``C``."""
    W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c, W_hq, b_q = params
    H, C = state
    outputs = []
    for X in inputs:
        I = tf.sigmoid(tf.matmul(X, W_xi) + tf.matmul(H, W_hi) + b_i)
        F = tf.sigmoid(tf.matmul(X, W_xf) + tf.matmul(H, W_hf) + b_f)
        O = tf.sigmoid(tf.matmul(X, W_xo) + tf.matmul(H, W_ho) + b_o)
        C_tilda = tf.tanh(tf.matmul(X, W_xc) + tf.matmul(H, W_hc) + b_c)
        C = F * C + I * C_tilda
        H = O * tf.tanh(C)
        outputs.append(tf.matmul(H, W_hq) + b_q)
    return tf.concat(outputs, axis=0), (H, C)


CELLS = {
    "rnn": (get_rnn_params, init_rnn_state, rnn),
    "gru": (get_gru_params, init_gru_state, gru),
    "lstm": (get_lstm_params, init_lstm_state, lstm),
}
