"""Recurrent cells in the book's scratch style (PyTorch): ``get_*_params(vocab, hidden,
device)``, ``init_*_state(batch, hidden, device)`` and ``f(inputs, state, params)``.

``inputs`` is ``(num_steps, batch_size, vocab_size)`` (iterated over time); outputs are
``(num_steps * batch_size, vocab_size)``, time-major. Parameter names, order and shapes are
the canonical ones of :mod:`dl.reference`.
"""

import functools

import torch

from dl import book, scratch_cells
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


# the book's signatures: (vocab_size, num_hiddens, device)
get_rnn_params, get_gru_params, get_lstm_params = (
    functools.partial(_params, cell) for cell in scratch_cells.STEPS
)


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


rnn, gru, lstm = scratch_cells.bind(torch.sigmoid, torch.tanh, torch.cat)

CELLS = scratch_cells.table(
    (get_rnn_params, get_gru_params, get_lstm_params),
    (init_rnn_state, init_gru_state, init_lstm_state),
    (rnn, gru, lstm),
)
