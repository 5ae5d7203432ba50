"""The book's two language models: one around a user's scratch cell, one around a Keras layer."""

from __future__ import annotations

import tensorflow as tf

from dl.errors import InputError
from dl.tensorflow import unrolled
from dl.tensorflow._keras import LEGACY, keras

GRAPH_INPUT_KINDS = ("list", "tensor")


class RNNModelScratch:
    """A recurrent language model from scratch: ``forward_fn(inputs, state, params)``.

    Eagerly ``forward_fn`` gets the one-hot inputs as one tensor ``(num_steps, batch, vocab)``,
    as in the book. While traced by ``tf.function`` it gets them as a Python list of
    ``(batch, vocab)`` tensors (``graph_inputs='list'``), so a ``for X in inputs`` loop unrolls
    in the graph; the trainer switches to ``'tensor'`` for functions that need one tensor.
    """

    def __init__(self, vocab_size, num_hiddens, init_state, forward_fn, get_params):
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.init_state, self.forward_fn = init_state, forward_fn
        self.trainable_variables = get_params(vocab_size, num_hiddens)
        self.graph_inputs = "list"

    def __call__(self, X, state):
        """``X: (batch, num_steps) int`` -> ``(logits: (num_steps * batch, vocab), state)``."""
        inputs = tf.one_hot(tf.transpose(X), self.vocab_size)
        if self.graph_inputs == "list" and not tf.executing_eagerly():
            inputs = tf.unstack(inputs)
        return self.forward_fn(inputs, state, self.trainable_variables)

    def begin_state(self, batch_size, *args, **kwargs):
        return self.init_state(batch_size, self.num_hiddens)


def _directions(layer) -> list:
    """The recurrent layers inside ``layer``: itself, or the two of a ``Bidirectional``."""
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    return [layer]


def _is_time_major(layer) -> bool:
    return bool(getattr(_directions(layer)[0], "time_major", False))


def _output_size(layer) -> int:
    """Width of the layer's outputs: its cell's, or both directions' when concatenated."""
    sizes = [int(direction.cell.output_size) for direction in _directions(layer)]
    return sum(sizes) if getattr(layer, "merge_mode", "concat") == "concat" else sizes[0]


class RNNModel(keras.layers.Layer):
    """A Keras recurrent layer plus a dense output layer (the book's concise model).

    ``rnn_layer`` must return sequences and state (``return_sequences=True,
    return_state=True``); it may be ``RNN(StackedRNNCells([...]))`` or ``Bidirectional(...)``
    (merged by concatenation, sum, product or mean). Time-major (tf-keras) and batch-major
    (Keras 3) layers both work; logits are always ``(num_steps * batch, vocab)``, time-major
    as in the book.
    """

    def __init__(self, rnn_layer, vocab_size, **kwargs):
        super().__init__(**kwargs)
        _check_layer(rnn_layer)
        self.rnn = rnn_layer
        self.vocab_size = vocab_size
        self.dense = keras.layers.Dense(vocab_size)

    def build(self, input_shape=None):
        """Create the recurrent and output layers' weights (input width: the vocabulary)."""
        self.rnn.build((None, None, self.vocab_size))
        self.dense.build((None, _output_size(self.rnn)))
        self.built = True

    def call(self, inputs, state):
        """``inputs: (batch, num_steps) int`` -> ``(logits: (num_steps * batch, vocab), state)``.

        Eagerly the layer runs as it is; while traced, plain Keras cells run unrolled
        (:mod:`dl.tensorflow.unrolled`, same numbers, about twice as fast on CPU).
        """
        if not tf.executing_eagerly() and unrolled.supports(self.rnn):
            X = tf.unstack(tf.one_hot(tf.transpose(inputs), self.vocab_size))
            Y, state = unrolled.unrolled_rnn(self.rnn, X, list(state))
            return self.dense(Y), state
        if _is_time_major(self.rnn):
            Y, *state = self.rnn(
                tf.one_hot(tf.transpose(inputs), self.vocab_size), initial_state=state
            )
        else:
            Y, *state = self.rnn(tf.one_hot(inputs, self.vocab_size), initial_state=state)
            Y = tf.transpose(Y, [1, 0, 2])
        output = self.dense(tf.reshape(Y, (-1, Y.shape[-1])))
        return output, state

    def begin_state(self, batch_size, *args, dtype=tf.float32, **kwargs):
        """Zeros ``(batch_size, size)`` for every state tensor of the layer's cell: a list, one
        entry per state (``[H, C]`` for an LSTM); for stacked cells one entry per layer; for a
        ``Bidirectional`` layer the forward direction's entries, then the backward one's."""
        state = []
        for direction in _directions(self.rnn):
            zeros = _zeros(direction.cell.state_size, batch_size, dtype)
            state += zeros if isinstance(zeros, list) else [zeros]
        return state


def _zeros(state_size, batch_size, dtype):
    """Zeros ``(batch_size, size)`` for an int ``state_size``; nested lists for nested sizes."""
    if isinstance(state_size, (list, tuple)):
        return [_zeros(size, batch_size, dtype) for size in state_size]
    return tf.zeros((batch_size, int(state_size)), dtype=dtype)


def _check_layer(layer) -> None:
    if not (getattr(layer, "return_sequences", False) and getattr(layer, "return_state", False)):
        raise ValueError(
            f"RNNModel needs a recurrent layer built with return_sequences=True and "
            f"return_state=True, got {layer!r}"
        )
    if getattr(layer, "merge_mode", "concat") is None:
        raise InputError(
            "RNNModel needs one output per time step: build the Bidirectional layer with "
            "merge_mode='concat' (the default), 'sum', 'mul' or 'ave', not merge_mode=None"
        )
    if not LEGACY and type(layer).__module__.startswith("tf_keras"):
        raise TypeError(
            "this recurrent layer comes from tf-keras, but tf.keras is Keras 3 in this process "
            "because tf.keras was used before dl.tensorflow was imported. Import dl.tensorflow "
            "before the first use of tf.keras (or set TF_USE_LEGACY_KERAS=1 before importing "
            "TensorFlow), or build the layer batch-major with Keras 3 (no time_major)."
        )
