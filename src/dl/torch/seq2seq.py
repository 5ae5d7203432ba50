"""The book's encoder-decoder and sequence to sequence learning (d2l 0.17, sections 9.5-9.7)
on PyTorch.

``train_seq2seq`` keeps a step on the device: the loss and the token count are summed into
device tensors, the gradient norm is clipped without a host round trip, and the host waits
once per epoch (the book's loop waits every batch). Weights load from and save to the
canonical names of :func:`dl.seq2seq.param_shapes` (:func:`load_params`, :func:`numpy_params`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dl import book
from dl import seq2seq as core
from dl.data import nmt
from dl.torch.engine import grad_clipping

__all__ = book.SEQ2SEQ_NAMES

# PyTorch's GRU keeps its gates in the order reset, update, candidate
TORCH_GATES = ("r", "z", "h")


class Encoder(nn.Module):
    """The base encoder interface for the encoder-decoder architecture."""

    def forward(self, X, *args):
        raise NotImplementedError


class Decoder(nn.Module):
    """The base decoder interface for the encoder-decoder architecture."""

    def init_state(self, enc_outputs, *args):
        raise NotImplementedError

    def forward(self, X, state):
        raise NotImplementedError


class EncoderDecoder(nn.Module):
    """An encoder and a decoder: ``net(enc_X, dec_X, *args) -> decoder(dec_X, state)``."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder, self.decoder = encoder, decoder

    def forward(self, enc_X, dec_X, *args):
        enc_outputs = self.encoder(enc_X, *args)
        dec_state = self.decoder.init_state(enc_outputs, *args)
        return self.decoder(dec_X, dec_state)


class Seq2SeqEncoder(Encoder):
    """Embedding and stacked ``nn.GRU``: ``X: (B, T)`` int -> ``(output: (T, B, H),
    state: (num_layers, B, H))``."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size, num_hiddens, num_layers, dropout=dropout)

    def forward(self, X, *args):
        output, state = self.rnn(self.embedding(X).permute(1, 0, 2))
        return output, state


class Seq2SeqDecoder(Decoder):
    """Embedding, stacked ``nn.GRU`` on the token joined with the context (the encoder's last
    layer state) and a dense layer: ``X: (B, T)`` -> ``(logits: (B, T, V), state)``."""

    def __init__(self, vocab_size, embed_size, num_hiddens, num_layers, dropout=0, **kwargs):
        super().__init__(**kwargs)
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.GRU(embed_size + num_hiddens, num_hiddens, num_layers, dropout=dropout)
        self.dense = nn.Linear(num_hiddens, vocab_size)

    def init_state(self, enc_outputs, *args):
        return enc_outputs[1]

    def forward(self, X, state):
        X = self.embedding(X).permute(1, 0, 2)
        context = state[-1].repeat(X.shape[0], 1, 1)
        output, state = self.rnn(torch.cat((X, context), 2), state)
        return self.dense(output).permute(1, 0, 2), state


def sequence_mask(X, valid_len, value=0):
    """Set ``X[i, j:]`` (and what lies below) to ``value`` for ``j >= valid_len[i]``, in place;
    returns ``X``. ``X: (B, T, ...)``, ``valid_len: (B,)``."""
    mask = torch.arange(X.size(1), device=X.device)[None, :] < valid_len[:, None]
    return X.masked_fill_(~mask.reshape(mask.shape + (1,) * (X.dim() - 2)), value)


class MaskedSoftmaxCELoss(nn.CrossEntropyLoss):
    """Cross-entropy over the valid steps: ``pred: (B, T, V)``, ``label: (B, T)``,
    ``valid_len: (B,)`` -> ``(B,)`` (each row's sum over valid steps divided by ``T``)."""

    def forward(self, pred, label, valid_len):
        weights = sequence_mask(torch.ones_like(label), valid_len)
        self.reduction = "none"
        unweighted_loss = super().forward(pred.permute(0, 2, 1), label)
        return (unweighted_loss * weights).mean(dim=1)


def build_array_nmt(lines, vocab, num_steps):
    """:func:`dl.data.nmt.build_array_nmt` as int64 tensors."""
    array, valid_len = nmt.build_array_nmt(lines, vocab, num_steps)
    return torch.from_numpy(array), torch.from_numpy(valid_len)


def load_data_nmt(batch_size, num_steps, num_examples=600):
    """``(data_iter, src_vocab, tgt_vocab)``: shuffled minibatches ``(X, X_valid_len, Y,
    Y_valid_len)`` of int64 tensors, ``X, Y: (batch_size, num_steps)``."""
    arrays, src_vocab, tgt_vocab = nmt.nmt_arrays(num_steps, num_examples)
    return nmt.ArrayBatches(arrays, batch_size, convert=torch.from_numpy), src_vocab, tgt_vocab


def xavier_init_weights(m):
    """The book's initialisation: Xavier-uniform weights of ``nn.Linear`` and ``nn.GRU``."""
    if type(m) is nn.Linear:
        nn.init.xavier_uniform_(m.weight)
    if type(m) is nn.GRU:
        for name in m._flat_weights_names:
            if "weight" in name:
                nn.init.xavier_uniform_(m._parameters[name])


class Seq2SeqTrainer:
    """Teacher-forced training steps with Adam and global-norm clipping (the
    :class:`dl.seq2seq.Seq2SeqTrainer` of PyTorch)."""

    def __init__(self, net, lr, tgt_vocab, device, theta=1.0):
        self.net, self.theta, self.device = net, theta, torch.device(device)
        self.bos = tgt_vocab["<bos>"]
        self.optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        self.loss = MaskedSoftmaxCELoss()
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.num_tokens = torch.zeros((), dtype=torch.int64, device=self.device)

    def train_step(self, X, X_valid_len, Y, Y_valid_len):
        X, X_valid_len, Y, Y_valid_len = [
            x.to(self.device, non_blocking=True) for x in (X, X_valid_len, Y, Y_valid_len)
        ]
        bos = torch.full((Y.shape[0], 1), self.bos, dtype=Y.dtype, device=self.device)
        Y_hat, _ = self.net(X, torch.cat([bos, Y[:, :-1]], 1), X_valid_len)
        l = self.loss(Y_hat, Y, Y_valid_len)
        self.optimizer.zero_grad(set_to_none=True)
        l.sum().backward()
        grad_clipping(self.net, self.theta)
        self.optimizer.step()
        self.loss_sum += l.detach().sum()
        self.num_tokens += Y_valid_len.sum()

    def take_sums(self):
        sums = float(self.loss_sum), int(self.num_tokens)
        self.loss_sum.zero_()
        self.num_tokens.zero_()
        return sums


def train_seq2seq(
    net,
    data_iter,
    lr,
    num_epochs,
    tgt_vocab,
    device,
    *,
    init_weights=True,
    theta=1.0,
    animator=None,
):
    """Train an encoder-decoder with teacher forcing, Adam and clipping, printing the book's
    ``loss L, S tokens/sec on DEVICE``. ``init_weights=False`` keeps the weights ``net`` has
    (the book always applies :func:`xavier_init_weights`). Returns the loss Animator."""
    if init_weights:
        net.apply(xavier_init_weights)
    net.to(device)
    net.train()
    trainer = Seq2SeqTrainer(net, lr, tgt_vocab, device, theta)
    return core.fit(trainer, data_iter, num_epochs, str(device), animator)


def predict_seq2seq(
    net, src_sentence, src_vocab, tgt_vocab, num_steps, device, save_attention_weights=False
):
    """Greedy translation of ``src_sentence`` (space-separated tokens) into at most
    ``num_steps`` tokens; returns ``(translation, attention_weights)`` (the decoder's
    ``attention_weights`` per step when ``save_attention_weights``, else ``[]``)."""
    net.eval()

    def begin(src_ids, valid_len):
        enc_valid_len = torch.tensor([valid_len], device=device)
        enc_X = torch.tensor([src_ids], dtype=torch.long, device=device)
        return net.decoder.init_state(net.encoder(enc_X, enc_valid_len), enc_valid_len)

    def step(token, state):
        Y, state = net.decoder(torch.tensor([[token]], dtype=torch.long, device=device), state)
        return int(Y[0, 0].argmax()), state

    attention = (lambda: net.decoder.attention_weights) if save_attention_weights else None
    with torch.no_grad():
        return core.translate(src_sentence, src_vocab, tgt_vocab, num_steps, begin, step, attention)


def _gru_layers(rnn):
    """``(k, weight_ih, weight_hh, bias_ih, bias_hh)`` of each layer of an ``nn.GRU``."""
    for k in range(rnn.num_layers):
        yield (
            k,
            *(
                getattr(rnn, f"{name}_l{k}")
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ),
        )


def numpy_params(net) -> dict[str, np.ndarray]:
    """The weights of a book-shaped encoder-decoder (``encoder.embedding``, ``encoder.rnn``,
    ``decoder.embedding``, ``decoder.rnn``, ``decoder.dense``) under canonical names."""
    value = lambda t: t.detach().float().cpu().numpy()
    params = {}
    for part in ("encoder", "decoder"):
        module = getattr(net, part)
        params[f"{part}.embedding"] = value(module.embedding.weight)
        for k, W_x, W_h, b_x, b_h in _gru_layers(module.rnn):
            prefix = f"{part}.gru{k}"
            for kind, tensor in (
                ("W_x", value(W_x).T),
                ("W_h", value(W_h).T),
                ("b_x", value(b_x)),
                ("b_h", value(b_h)),
            ):
                params.update(core.split_gates(tensor, prefix, kind, TORCH_GATES))
    params["decoder.W_hq"] = value(net.decoder.dense.weight).T
    params["decoder.b_q"] = value(net.decoder.dense.bias)
    return {name: array.copy() for name, array in params.items()}


def load_params(net, params: dict) -> None:
    """Copy canonical weights (:func:`dl.seq2seq.param_shapes`) into ``net`` in place."""

    def put(tensor, array):
        tensor.copy_(torch.as_tensor(np.ascontiguousarray(array), dtype=tensor.dtype))

    with torch.no_grad():
        for part in ("encoder", "decoder"):
            module = getattr(net, part)
            put(module.embedding.weight, params[f"{part}.embedding"])
            for k, W_x, W_h, b_x, b_h in _gru_layers(module.rnn):
                prefix = f"{part}.gru{k}"
                for tensor, kind, transpose in (
                    (W_x, "W_x", True),
                    (W_h, "W_h", True),
                    (b_x, "b_x", False),
                    (b_h, "b_h", False),
                ):
                    joined = core.join_gates(params, prefix, kind, TORCH_GATES)
                    put(tensor, joined.T if transpose else joined)
        put(net.decoder.dense.weight, np.asarray(params["decoder.W_hq"]).T)
        put(net.decoder.dense.bias, params["decoder.b_q"])
