"""The book's sequence to sequence model (d2l 0.17, section 9.7) in JAX style.

Parameters are a flat dict under the canonical names of :func:`dl.seq2seq.param_shapes`
(a checkpoint of any backend loads as is); the model's pure ``apply`` runs the encoder's and
the decoder's GRU layers with ``jax.lax.scan``; training is one ``jax.jit`` step with
``optax`` (global-norm clipping, then Adam, as the book), sums kept on the device.

| book (PyTorch edition) | here |
| --- | --- |
| ``EncoderDecoder(Seq2SeqEncoder(...), Seq2SeqDecoder(...))`` | ``EncoderDecoder(Seq2SeqEncoder(...), Seq2SeqDecoder(...), key)`` |
| ``net(X, dec_X, X_valid_len)`` | ``net.apply(net.params, X, dec_X, key=None)`` (a key turns dropout on) |
| ``train_seq2seq(net, data_iter, lr, num_epochs, tgt_vocab, device)`` | the same, ``device=None`` |
| ``predict_seq2seq(net, src, src_vocab, tgt_vocab, num_steps, device)`` | the same, ``device=None`` |
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl import seq2seq as core
from dl.data import nmt
from dl.jax.training import device_name, try_gpu


def _init(key, name, shape, num_hiddens):
    """The book's init: embeddings N(0, 1); weights Xavier-uniform (a GRU's over its three
    fused gates, as PyTorch's layer holds them); biases uniform(+-1/sqrt(H)) (PyTorch's)."""
    if name.endswith("embedding"):
        return jax.random.normal(key, shape)
    if len(shape) == 1:
        bound = num_hiddens**-0.5
    else:
        fan_out = shape[1] * (len(core.GATES) if ".gru" in name else 1)
        bound = np.sqrt(6.0 / (shape[0] + fan_out))
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


class Seq2SeqEncoder:
    """Embedding and stacked GRUs: ``X: (B, T)`` int -> ``(outputs: (T, B, H),
    state: (num_layers, B, H))``."""

    part = "encoder"

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0):
        self.vocab_size, self.embed_size = vocab_size, embed_size
        self.num_hiddens, self.num_layers, self.dropout = num_hiddens, num_layers, dropout

    def apply(self, params, X, key=None):
        inputs = jnp.transpose(params["encoder.embedding"][X], (1, 0, 2))
        H0 = jnp.zeros((self.num_layers, X.shape[0], self.num_hiddens), inputs.dtype)
        return _gru_layers(params, "encoder", self, inputs, H0, key)


class Seq2SeqDecoder:
    """Embedding, stacked GRUs on the token joined with the context (the encoder's last-layer
    state) and a dense layer: ``X: (B, T)`` -> ``(logits: (B, T, V), state)``."""

    part = "decoder"

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0):
        self.vocab_size, self.embed_size = vocab_size, embed_size
        self.num_hiddens, self.num_layers, self.dropout = num_hiddens, num_layers, dropout

    def init_state(self, enc_outputs, *args):
        return enc_outputs[1]

    def apply(self, params, X, state, key=None):
        inputs = jnp.transpose(params["decoder.embedding"][X], (1, 0, 2))
        context = jnp.broadcast_to(state[-1], (inputs.shape[0],) + state[-1].shape)
        outputs, state = _gru_layers(
            params, "decoder", self, jnp.concatenate([inputs, context], axis=2), state, key
        )
        logits = outputs @ params["decoder.W_hq"] + params["decoder.b_q"]
        return jnp.transpose(logits, (1, 0, 2)), state


def _gru_layers(params, part, layers, inputs, H0, key):
    """``inputs: (T, B, in)`` through ``layers.num_layers`` GRUs from the states ``H0: (L, B,
    H)``; dropout on the outputs of all but the last layer when a ``key`` is given."""
    states = []
    for layer in range(layers.num_layers):
        prefix = f"{part}.gru{layer}"
        joined = {
            kind: jnp.concatenate([params[f"{prefix}.{kind}{g}"] for g in core.GATES], -1)
            for kind in ("W_x", "W_h", "b_x", "b_h")
        }
        inputs, H = _scan_gru(joined, inputs, H0[layer])
        states.append(H)
        if key is not None and layers.dropout > 0 and layer < layers.num_layers - 1:
            key, drop_key = jax.random.split(key)
            keep = jax.random.bernoulli(drop_key, 1 - layers.dropout, inputs.shape)
            inputs = jnp.where(keep, inputs / (1 - layers.dropout), 0)
    return inputs, jnp.stack(states)


def _scan_gru(p, inputs, H):
    """A GRU whose reset gate scales ``H W_hh + b_hh`` (PyTorch's and Keras'), over time."""
    X_proj = inputs @ p["W_x"] + p["b_x"]  # every step's input product at once

    def step(H, x_proj):
        x_z, x_r, x_h = jnp.split(x_proj, 3, axis=-1)
        h_z, h_r, h_h = jnp.split(H @ p["W_h"] + p["b_h"], 3, axis=-1)
        Z, R = jax.nn.sigmoid(x_z + h_z), jax.nn.sigmoid(x_r + h_r)
        H = Z * H + (1 - Z) * jnp.tanh(x_h + R * h_h)
        return H, H

    H, outputs = jax.lax.scan(step, H, X_proj)
    return outputs, H


class EncoderDecoder:
    """An encoder and a decoder with their parameters in ``.params`` (canonical names; the
    book's init: N(0, 1) embeddings, Xavier-uniform weights, uniform(+-1/sqrt(H)) biases)."""

    def __init__(self, encoder, decoder, key):
        self.encoder, self.decoder = encoder, decoder
        shapes = core.param_shapes(
            encoder.vocab_size,
            decoder.vocab_size,
            encoder.embed_size,
            encoder.num_hiddens,
            encoder.num_layers,
        )
        keys = jax.random.split(key, len(shapes))
        self.params = {
            name: _init(k, name, shape, encoder.num_hiddens)
            for k, (name, shape) in zip(keys, shapes.items())
        }

    def apply(self, params, enc_X, dec_X, *args, key=None):
        """``enc_X, dec_X: (B, T)`` int -> ``(logits: (B, T, V_tgt), state)``."""
        enc_key, dec_key = jax.random.split(key) if key is not None else (None, None)
        enc_outputs = self.encoder.apply(params, enc_X, enc_key)
        return self.decoder.apply(params, dec_X, self.decoder.init_state(enc_outputs), dec_key)

    def __call__(self, enc_X, dec_X, *args):
        return self.apply(self.params, enc_X, dec_X)


def sequence_mask(X, valid_len, value=0):
    """``X`` with ``X[i, j:]`` (and what lies below) set to ``value`` for
    ``j >= valid_len[i]``. ``X: (B, T, ...)``, ``valid_len: (B,)``."""
    mask = jnp.arange(X.shape[1])[None, :] < valid_len[:, None]
    return jnp.where(mask.reshape(mask.shape + (1,) * (X.ndim - 2)), X, value)


def masked_softmax_ce(pred, label, valid_len):
    """The book's masked loss: ``pred: (B, T, V)``, ``label: (B, T)``, ``valid_len: (B,)`` ->
    ``(B,)``, each row's cross-entropy over its valid steps divided by ``T``."""
    losses = optax.softmax_cross_entropy_with_integer_labels(pred, label)
    return sequence_mask(losses, valid_len).mean(axis=1)


def load_data_nmt(batch_size, num_steps, num_examples=600):
    """``(data_iter, src_vocab, tgt_vocab)``: shuffled minibatches ``(X, X_valid_len, Y,
    Y_valid_len)`` of int32 NumPy arrays, ``X, Y: (batch_size, num_steps)``."""
    arrays, src_vocab, tgt_vocab = nmt.nmt_arrays(num_steps, num_examples)
    convert = lambda a: a.astype(np.int32)
    return nmt.ArrayBatches(arrays, batch_size, convert=convert), src_vocab, tgt_vocab


class Seq2SeqTrainer:
    """One jitted step: teacher forcing, the masked loss summed over the batch, its gradient,
    ``optax.clip_by_global_norm(theta)`` and ``optax.adam(lr)``. Dropout keys come from
    ``seed``."""

    def __init__(self, net, lr, tgt_vocab, device=None, theta=1.0, seed=0):
        self.net, self.bos, self.device = net, tgt_vocab["<bos>"], device or try_gpu()
        self.optimizer = optax.chain(optax.clip_by_global_norm(theta), optax.adam(lr))
        self.params = jax.device_put(net.params, self.device)
        self.opt_state = self.optimizer.init(self.params)
        self.sums = jax.device_put((jnp.zeros(()), jnp.zeros((), jnp.int32)), self.device)
        self.key = jax.random.PRNGKey(seed)
        self._step = jax.jit(self._pure_step)

    def _pure_step(self, params, opt_state, sums, key, X, X_valid_len, Y, Y_valid_len):
        key, step_key = jax.random.split(key)
        dec_input = jnp.concatenate([jnp.full((Y.shape[0], 1), self.bos, Y.dtype), Y[:, :-1]], 1)

        def loss(params):
            Y_hat, _ = self.net.apply(params, X, dec_input, X_valid_len, key=step_key)
            return masked_softmax_ce(Y_hat, Y, Y_valid_len).sum()

        l, grads = jax.value_and_grad(loss)(params)
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        sums = (sums[0] + l, sums[1] + Y_valid_len.sum())
        return optax.apply_updates(params, updates), opt_state, sums, key

    def train_step(self, X, X_valid_len, Y, Y_valid_len):
        self.params, self.opt_state, self.sums, self.key = self._step(
            self.params, self.opt_state, self.sums, self.key, X, X_valid_len, Y, Y_valid_len
        )
        self.net.params = self.params

    def take_sums(self):
        loss_sum, num_tokens = (float(self.sums[0]), int(self.sums[1]))
        self.sums = jax.tree_util.tree_map(jnp.zeros_like, self.sums)
        return loss_sum, num_tokens


def train_seq2seq(
    net, data_iter, lr, num_epochs, tgt_vocab, device=None, *, theta=1.0, animator=None
):
    """Train with teacher forcing, clipping and Adam from ``net.params`` (kept as they are),
    printing the book's ``loss L, S tokens/sec on DEVICE``. Returns the loss Animator."""
    trainer = Seq2SeqTrainer(net, lr, tgt_vocab, device, theta)
    return core.fit(trainer, data_iter, num_epochs, device_name(trainer.device), animator)


def predict_seq2seq(
    net, src_sentence, src_vocab, tgt_vocab, num_steps, device=None, save_attention_weights=False
):
    """Greedy translation of ``src_sentence`` (space-separated tokens) into at most
    ``num_steps`` tokens; returns ``(translation, [])`` (this model has no attention)."""
    params = jax.device_put(net.params, device or try_gpu())
    encode, decode = jax.jit(net.encoder.apply), jax.jit(net.decoder.apply)
    begin = lambda src_ids, valid_len: net.decoder.init_state(encode(params, jnp.array([src_ids])))

    def step(token, state):
        Y, state = decode(params, jnp.array([[token]]), state)
        return int(Y[0, 0].argmax()), state

    return core.translate(src_sentence, src_vocab, tgt_vocab, num_steps, begin, step)
