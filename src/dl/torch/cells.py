"""Recurrent cells in the book's scratch style (PyTorch): ``get_*_params(vocab, hidden,
device)``, ``init_*_state(batch, hidden, device)`` and ``f(inputs, state, params)``.

``inputs`` is ``(num_steps, batch_size, vocab_size)`` (iterated over time); outputs are
``(num_steps * batch_size, vocab_size)``, time-major. Parameter names, order and shapes are
the canonical ones of :mod:`dl.reference`.
"""

import torch

from dl import book
from dl.reference import param_shapes

__all__ = book.CELL_NAMES


def _params(cell, vocab_size, num_hiddens, device):
    """Weights ~ N(0, 0.01), biases 0, all with ``requires_grad``, in canonical order."""
    params = []
    for name, shape in param_shapes(cell, vocab_size, num_hiddens).items():
        if name.startswith("W"):
            param = torch.randn(size=shape, device=device) * 0.01
        else:
            param = torch.zeros(shape, device=device)
        params.append(param.requires_grad_(True))
    return params


def get_rnn_params(vocab_size, num_hiddens, device):
    return _params("rnn", vocab_size, num_hiddens, device)


def get_gru_params(vocab_size, num_hiddens, device):
    return _params("gru", vocab_size, num_hiddens, device)


def get_lstm_params(vocab_size, num_hiddens, device):
    return _params("lstm", vocab_size, num_hiddens, device)


def init_rnn_state(batch_size, num_hiddens, device):
    """``(H,)`` with ``H: (batch_size, num_hiddens)`` zeros (also the GRU's state)."""
    return (torch.zeros((batch_size, num_hiddens), device=device),)


init_gru_state = init_rnn_state


def init_lstm_state(batch_size, num_hiddens, device):
    """``(H, C)``, both ``(batch_size, num_hiddens)`` zeros."""
    return (
        torch.zeros((batch_size, num_hiddens), device=device),
        torch.zeros((batch_size, num_hiddens), device=device),
    )


def rnn(inputs, state, params):
    """Vanilla RNN: ``H = tanh(X W_xh + H W_hh + b_h)``."""
    W_xh, W_hh, b_h, W_hq, b_q = params
    (H,) = state
    outputs = []
    for X in inputs:
        H = torch.tanh(X @ W_xh + H @ W_hh + b_h)
        outputs.append(H @ W_hq + b_q)
    return torch.cat(outputs, dim=0), (H,)


def gru(inputs, state, params):
    """GRU as in the book: the reset gate scales ``H`` before ``W_hh``."""
    W_xz, W_hz, b_z, W_xr, W_hr, b_r, W_xh, W_hh, b_h, W_hq, b_q = params
    (H,) = state
    outputs = []
    for X in inputs:
        Z = torch.sigmoid(X @ W_xz + H @ W_hz + b_z)
        R = torch.sigmoid(X @ W_xr + H @ W_hr + b_r)
        H_tilda = torch.tanh(X @ W_xh + (R * H) @ W_hh + b_h)
        H = Z * H + (1 - Z) * H_tilda
        outputs.append(H @ W_hq + b_q)
    return torch.cat(outputs, dim=0), (H,)


def lstm(inputs, state, params):
    """LSTM as in the book: input, forget and output gates and a memory cell ``C``."""
    W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c, W_hq, b_q = params
    H, C = state
    outputs = []
    for X in inputs:
        I = torch.sigmoid(X @ W_xi + H @ W_hi + b_i)
        F = torch.sigmoid(X @ W_xf + H @ W_hf + b_f)
        O = torch.sigmoid(X @ W_xo + H @ W_ho + b_o)
        C_tilda = torch.tanh(X @ W_xc + H @ W_hc + b_c)
        C = F * C + I * C_tilda
        H = O * torch.tanh(C)
        outputs.append(H @ W_hq + b_q)
    return torch.cat(outputs, dim=0), (H, C)


CELLS = {
    "rnn": (get_rnn_params, init_rnn_state, rnn),
    "gru": (get_gru_params, init_gru_state, gru),
    "lstm": (get_lstm_params, init_lstm_state, lstm),
}
