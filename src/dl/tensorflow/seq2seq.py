"""The book's encoder-decoder and sequence to sequence learning (d2l 0.17, sections 9.5-9.7)
on TensorFlow.

``train_seq2seq`` runs a training step (teacher forcing, masked loss, gradients, global-norm
clipping, Adam) as one ``tf.function``, the loss and token count summed in device variables:
the host waits once per epoch. Weights load from and save to the canonical names of
:func:`dl.seq2seq.param_shapes` (:func:`load_params`, :func:`numpy_params`).
"""

from __future__ import annotations

import numpy as np

from dl import book
from dl import seq2seq as core
from dl.data import nmt
from dl.tensorflow._keras import keras, tf
from dl.tensorflow.engine import Engine

__all__ = book.SEQ2SEQ_NAMES


class Encoder(keras.layers.Layer):
    """The base encoder interface for the encoder-decoder architecture."""

    def call(self, X, *args, **kwargs):
        raise NotImplementedError


class Decoder(keras.layers.Layer):
    """The base decoder interface for the encoder-decoder architecture."""

    def init_state(self, enc_outputs, *args):
        raise NotImplementedError

    def call(self, X, state, **kwargs):
        raise NotImplementedError


class EncoderDecoder(keras.Model):
    """An encoder and a decoder: ``net(enc_X, dec_X, *args) -> decoder(dec_X, state)``."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder

    def call(self, enc_X, dec_X, *args, **kwargs):
        enc_outputs = self.encoder(enc_X, *args, **kwargs)
        dec_state = self.decoder.init_state(enc_outputs, *args)
        return self.decoder(dec_X, dec_state, **kwargs)


def _stacked_gru(num_hiddens, num_layers, dropout):
    return keras.layers.RNN(
        keras.layers.StackedRNNCells(
            [keras.layers.GRUCell(num_hiddens, dropout=dropout) for _ in range(num_layers)]
        ),
        return_sequences=True,
        return_state=True,
    )


class Seq2SeqEncoder(Encoder):
    """Embedding and stacked ``GRUCell``s: ``X: (B, T)`` int -> ``(output: (B, T, H),
    state: num_layers tensors (B, H))``."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(vocab_size, embed_size)
        self.rnn = _stacked_gru(num_hiddens, num_layers, dropout)

    def call(self, X, *args, **kwargs):
        output = self.rnn(self.embedding(X), **kwargs)
        return output[0], output[1:]


class Seq2SeqDecoder(Decoder):
    """Embedding, stacked ``GRUCell``s on the token joined with the context (the encoder's
    last-layer state) and a dense layer: ``X: (B, T)`` -> ``(logits: (B, T, V), state)``."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = keras.layers.Embedding(vocab_size, embed_size)
        self.rnn = _stacked_gru(num_hiddens, num_layers, dropout)
        self.dense = keras.layers.Dense(vocab_size)

    def init_state(self, enc_outputs, *args):
        return enc_outputs[1]

    def call(self, X, state, **kwargs):
        X = self.embedding(X)
        context = tf.repeat(tf.expand_dims(state[-1], axis=1), repeats=X.shape[1], axis=1)
        rnn_output = self.rnn(tf.concat((X, context), axis=2), state, **kwargs)
        return self.dense(rnn_output[0]), rnn_output[1:]


def sequence_mask(X, valid_len, value=0):
    """``X`` with ``X[i, j:]`` (and what lies below) set to ``value`` for
    ``j >= valid_len[i]``. ``X: (B, T)`` or ``(B, T, D)``, ``valid_len: (B,)``."""
    mask = tf.range(start=0, limit=X.shape[1], dtype=tf.float32)[None, :] < tf.cast(
        valid_len[:, None], dtype=tf.float32
    )
    if len(X.shape) == 3:
        return tf.where(tf.expand_dims(mask, axis=-1), X, value)
    return tf.where(mask, X, value)


class MaskedSoftmaxCELoss(keras.losses.Loss):
    """Cross-entropy over the valid steps of each row: ``loss(label: (B, T), pred: (B, T, V))
    -> (B,)``, each row's sum over its first ``valid_len`` steps divided by ``T``."""

    def __init__(self, valid_len):
        super().__init__(reduction="none")
        self.valid_len = valid_len

    def call(self, label, pred):
        weights = sequence_mask(tf.ones_like(label, dtype=tf.float32), self.valid_len)
        label_one_hot = tf.one_hot(label, depth=pred.shape[-1])
        unweighted_loss = keras.losses.CategoricalCrossentropy(from_logits=True, reduction="none")(
            label_one_hot, pred
        )
        return tf.reduce_mean(unweighted_loss * weights, axis=1)


def _int32(array):
    return tf.constant(array, dtype=tf.int32)


def build_array_nmt(lines, vocab, num_steps):
    """:func:`dl.data.nmt.build_array_nmt` as int32 tensors."""
    return tuple(_int32(a) for a in nmt.build_array_nmt(lines, vocab, num_steps))


def load_data_nmt(batch_size, num_steps, num_examples=600):
    """``(data_iter, src_vocab, tgt_vocab)``: shuffled minibatches ``(X, X_valid_len, Y,
    Y_valid_len)`` of int32 tensors, ``X, Y: (batch_size, num_steps)``."""
    arrays, src_vocab, tgt_vocab = nmt.nmt_arrays(num_steps, num_examples)
    return nmt.ArrayBatches(arrays, batch_size, convert=_int32), src_vocab, tgt_vocab


class Seq2SeqTrainer:
    """Teacher-forced training steps with Adam and global-norm clipping: the backend's
    :class:`~dl.tensorflow.engine.Engine` over the masked loss, one ``tf.function`` (the
    :class:`dl.seq2seq.Seq2SeqTrainer` of TensorFlow)."""

    def __init__(self, net, lr, tgt_vocab, theta=1.0):
        self.net, self.bos = net, tgt_vocab["<bos>"]
        self.engine = Engine(keras.optimizers.Adam(learning_rate=lr), theta)  # the book's Adam
        self.optimizer = self.engine.optimizer
        self.num_tokens = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._step = None

    def _replica_loss(self, X, X_valid_len, Y, Y_valid_len):
        bos = tf.fill([tf.shape(Y)[0], 1], tf.cast(self.bos, Y.dtype))
        dec_input = tf.concat([bos, Y[:, :-1]], 1)
        Y_hat, _ = self.net(X, dec_input, X_valid_len, training=True)
        loss = tf.reduce_sum(MaskedSoftmaxCELoss(Y_valid_len)(Y, Y_hat))
        self.num_tokens.assign_add(tf.cast(tf.reduce_sum(Y_valid_len), tf.int64))
        return loss, loss, ()

    def train_step(self, X, X_valid_len, Y, Y_valid_len):
        if self._step is None:  # create the layers' and Adam's variables before tracing
            self.net(X[:1], Y[:1], X_valid_len[:1], training=False)
            self.engine.build(self.net)
            self._step = self.engine.step(self._replica_loss)
        self._step(X, X_valid_len, Y, Y_valid_len)

    def take_sums(self):
        sums = self.engine.take_loss_sum(), int(self.num_tokens.numpy())
        self.num_tokens.assign(0)
        return sums


def train_seq2seq(net, data_iter, lr, num_epochs, tgt_vocab, device, *, theta=1.0, animator=None):
    """Train an encoder-decoder with teacher forcing, Adam and clipping, printing the book's
    ``loss L, S tokens/sec on DEVICE``; ``device`` is :func:`try_gpu`'s context (or a device
    name). Returns the loss Animator."""
    name = getattr(device, "_device_name", device)
    with tf.device(name):
        trainer = Seq2SeqTrainer(net, lr, tgt_vocab, theta)
        return core.fit(trainer, data_iter, num_epochs, name, animator)


def predict_seq2seq(
    net, src_sentence, src_vocab, tgt_vocab, num_steps, save_attention_weights=False
):
    """Greedy translation of ``src_sentence`` (space-separated tokens) into at most
    ``num_steps`` tokens; returns ``(translation, attention_weights)`` (the decoder's
    ``attention_weights`` per step when ``save_attention_weights``, else ``[]``)."""

    def begin(src_ids, valid_len):
        enc_valid_len = tf.constant([valid_len])
        enc_outputs = net.encoder(tf.constant([src_ids]), enc_valid_len, training=False)
        return net.decoder.init_state(enc_outputs, enc_valid_len)

    def step(token, state):
        Y, state = net.decoder(tf.constant([[token]]), state, training=False)
        return int(tf.argmax(Y[0, 0])), state

    attention = (lambda: net.decoder.attention_weights) if save_attention_weights else None
    return core.translate(src_sentence, src_vocab, tgt_vocab, num_steps, begin, step, attention)


# Keras' GRUCell keeps its gates in the order update, reset, candidate (= GATES) in
# kernel (inputs, 3H), recurrent_kernel (H, 3H) and bias (2, 3H): input and recurrent biases


def numpy_params(net) -> dict[str, np.ndarray]:
    """The weights of a built, book-shaped encoder-decoder under canonical names."""
    params = {}
    for part in ("encoder", "decoder"):
        module = getattr(net, part)
        params[f"{part}.embedding"] = module.embedding.get_weights()[0]
        for k, cell in enumerate(module.rnn.cell.cells):
            kernel, recurrent, bias = cell.get_weights()
            for kind, array in (
                ("W_x", kernel),
                ("W_h", recurrent),
                ("b_x", bias[0]),
                ("b_h", bias[1]),
            ):
                params.update(core.split_gates(array, f"{part}.gru{k}", kind))
    params["decoder.W_hq"], params["decoder.b_q"] = net.decoder.dense.get_weights()
    return params


def load_params(net, params: dict) -> None:
    """Copy canonical weights (:func:`dl.seq2seq.param_shapes`) into a built ``net``."""
    for part in ("encoder", "decoder"):
        module = getattr(net, part)
        module.embedding.set_weights([np.asarray(params[f"{part}.embedding"])])
        for k, cell in enumerate(module.rnn.cell.cells):
            W_x, W_h, b_x, b_h = (
                core.join_gates(params, f"{part}.gru{k}", kind)
                for kind in ("W_x", "W_h", "b_x", "b_h")
            )
            cell.set_weights([W_x, W_h, np.stack([b_x, b_h])])
    net.decoder.dense.set_weights(
        [np.asarray(params["decoder.W_hq"]), np.asarray(params["decoder.b_q"])]
    )
