"""A compiled fast path for Keras recurrent layers: the layer's own cell math and weights,
unrolled over time with one matrix product per gate.

Inside ``tf.function`` a Keras ``RNN``/``LSTM``/``GRU``/``SimpleRNN`` layer runs a while loop
over time with all gates in one wide product; on CPU that trains the seed's concise model
slower than the same math unrolled with a product per gate (README, Speed).
:func:`unrolled_rnn` computes exactly the layer's function (tested against
the layer) for the plain cells; anything else (dropout, masks, reversed or stateful layers,
custom cells) keeps the layer's own call. Stacked cells (``RNN(StackedRNNCells([...]))``, the
book's deep RNN) run one cell after the other over the whole sequence, the same numbers.
"""

from __future__ import annotations

import tensorflow as tf

from dl.tensorflow._keras import keras

_CELLS = {keras.layers.LSTMCell: 4, keras.layers.GRUCell: 3, keras.layers.SimpleRNNCell: 1}


def _plain(cell) -> bool:
    return (
        type(cell) in _CELLS
        and not getattr(cell, "dropout", 0)
        and not getattr(cell, "recurrent_dropout", 0)
    )


def _cells(layer) -> list:
    """The layer's cells, bottom first: one, or those of its ``StackedRNNCells``."""
    cell = getattr(layer, "cell", None)
    return list(cell.cells) if isinstance(cell, keras.layers.StackedRNNCells) else [cell]


def supports(layer) -> bool:
    """True if :func:`unrolled_rnn` computes exactly what ``layer`` computes."""
    return (
        all(_plain(cell) for cell in _cells(layer))
        and not getattr(layer, "go_backwards", False)
        and not getattr(layer, "stateful", False)
    )


def _gates(weight, count):
    """Split the last axis of a fused weight into ``count`` per-gate parts."""
    return tf.split(weight, count, axis=-1) if count > 1 else [weight]


def unrolled_rnn(layer, inputs: list, state: list):
    """Run ``layer``'s cell (or stacked cells, layer by layer) over ``inputs``, a list of
    ``(batch, features)`` tensors; ``state`` as the layer takes it (for stacked cells, one entry
    per cell: ``[H, C]`` for an LSTM cell, ``H`` otherwise).

    Returns ``(outputs: (num_steps * batch, units) time-major, final state list)``.
    """
    if not isinstance(layer.cell, keras.layers.StackedRNNCells):
        outputs, state = _unrolled_cell(layer.cell, inputs, state)
        return tf.concat(outputs, axis=0), state
    final = []
    for cell, cell_state in zip(layer.cell.cells, state):
        nested = isinstance(cell_state, (list, tuple))
        inputs, cell_state = _unrolled_cell(
            cell, inputs, list(cell_state) if nested else [cell_state]
        )
        final.append(cell_state if nested else cell_state[0])
    return tf.concat(inputs, axis=0), final


def _unrolled_cell(cell, inputs: list, state: list):
    """One cell over ``inputs``: ``(outputs: list of (batch, units), final state list)``."""
    count = _CELLS[type(cell)]
    kernels = _gates(cell.kernel, count)
    recurrent = _gates(cell.recurrent_kernel, count)
    bias = cell.bias if cell.use_bias else None
    reset_after = getattr(cell, "reset_after", False)
    if bias is None:
        input_bias = recurrent_bias = [None] * count
    elif reset_after:  # GRU: bias (2, 3 units), one row for inputs, one for the state
        input_bias, recurrent_bias = _gates(bias[0], count), _gates(bias[1], count)
    else:
        input_bias, recurrent_bias = _gates(bias, count), [None] * count
    step = {4: _lstm_step, 3: _gru_step, 1: _simple_step}[count]
    outputs = []
    for X in inputs:
        x_parts = [_affine(X, k, b) for k, b in zip(kernels, input_bias)]
        state = step(cell, x_parts, recurrent, recurrent_bias, state, reset_after)
        outputs.append(state[0])
    return outputs, list(state)


def _affine(X, W, b):
    Y = tf.matmul(X, W)
    return Y if b is None else Y + b


def _lstm_step(cell, x, R, rb, state, _):
    H, C = state
    i, f, c, o = (x[k] + tf.matmul(H, R[k]) for k in range(4))
    C = cell.recurrent_activation(f) * C + cell.recurrent_activation(i) * cell.activation(c)
    return cell.recurrent_activation(o) * cell.activation(C), C


def _gru_step(cell, x, R, rb, state, reset_after):
    (H,) = state
    z = cell.recurrent_activation(x[0] + _affine(H, R[0], rb[0]))
    r = cell.recurrent_activation(x[1] + _affine(H, R[1], rb[1]))
    recurrent_h = r * _affine(H, R[2], rb[2]) if reset_after else tf.matmul(r * H, R[2])
    H = z * H + (1 - z) * cell.activation(x[2] + recurrent_h)
    return (H,)


def _simple_step(cell, x, R, rb, state, _):
    (H,) = state
    return (cell.activation(x[0] + tf.matmul(H, R[0])),)
