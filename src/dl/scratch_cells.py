"""The book's scratch cells, ``rnn``, ``gru`` and ``lstm`` as ``f(inputs, state, params) ->
(outputs, state)``, written once for every framework.

``inputs`` is a sequence over time (``(num_steps, batch_size, vocab_size)``, or for the eager
frameworks a Python list of ``(batch_size, vocab_size)`` tensors); ``params`` is the list in
the canonical order of :mod:`dl.reference`; ``outputs`` is ``(num_steps * batch_size,
vocab_size)``, time-major, exactly as the seed's ``lstm``. A backend binds them to its own
``sigmoid``, ``tanh`` and ``concat`` (and ``scan`` where time runs as one compiled loop, JAX)
with :func:`bind`. Products are written ``X @ W``, which every framework's tensors support.
"""

from __future__ import annotations

from types import SimpleNamespace


def rnn_step(ops, params, state, X):
    """Vanilla RNN: ``H = tanh(X W_xh + H W_hh + b_h)``."""
    W_xh, W_hh, b_h = params
    (H,) = state
    return (ops.tanh(X @ W_xh + H @ W_hh + b_h),)


def gru_step(ops, params, state, X):
    """GRU as in the book: the reset gate scales ``H`` before ``W_hh``."""
    W_xz, W_hz, b_z, W_xr, W_hr, b_r, W_xh, W_hh, b_h = params
    (H,) = state
    Z = ops.sigmoid(X @ W_xz + H @ W_hz + b_z)
    R = ops.sigmoid(X @ W_xr + H @ W_hr + b_r)
    H_tilda = ops.tanh(X @ W_xh + (R * H) @ W_hh + b_h)
    return (Z * H + (1 - Z) * H_tilda,)


def lstm_step(ops, params, state, X):
    """LSTM as in the seed: input, forget and output gates and a memory cell ``C``."""
    W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c = params
    H, C = state
    I = ops.sigmoid(X @ W_xi + H @ W_hi + b_i)
    F = ops.sigmoid(X @ W_xf + H @ W_hf + b_f)
    O = ops.sigmoid(X @ W_xo + H @ W_ho + b_o)
    C_tilda = ops.tanh(X @ W_xc + H @ W_hc + b_c)
    C = F * C + I * C_tilda
    return (O * ops.tanh(C), C)


STEPS = {"rnn": rnn_step, "gru": gru_step, "lstm": lstm_step}


def run(ops, step, inputs, state, params):
    """``step`` over time from ``state``; outputs ``H W_hq + b_q`` per step, time-major.

    With ``ops.scan`` the loop is one compiled scan and the output product one matrix product
    over ``(num_steps * batch_size, num_hiddens)``; otherwise a Python loop, as the book's.
    """
    *cell_params, W_hq, b_q = params
    state = tuple(state)
    if getattr(ops, "scan", None) is not None:

        def body(state, X):
            state = step(ops, cell_params, state, X)
            return state, state[0]

        state, Hs = ops.scan(body, state, inputs)
        return Hs.reshape(-1, Hs.shape[-1]) @ W_hq + b_q, state
    outputs = []
    for X in inputs:
        state = step(ops, cell_params, state, X)
        outputs.append(state[0] @ W_hq + b_q)
    return ops.concat(outputs, 0), state


def bind(sigmoid, tanh, concat, scan=None) -> tuple:
    """``(rnn, gru, lstm)``, each ``f(inputs, state, params)``, on one framework's ops."""
    ops = SimpleNamespace(sigmoid=sigmoid, tanh=tanh, concat=concat, scan=scan)

    def forward_of(cell):
        step = STEPS[cell]

        def forward(inputs, state, params):
            return run(ops, step, inputs, state, params)

        forward.__name__ = forward.__qualname__ = cell
        forward.__doc__ = f"{step.__doc__} ``(outputs, state)`` from ``(inputs, state, params)``."
        return forward

    return tuple(forward_of(cell) for cell in STEPS)


def table(get_params, init_states, forwards) -> dict:
    """The backend's ``CELLS``: ``{cell: (get_params, init_state, forward)}``, book order."""
    return dict(zip(STEPS, zip(get_params, init_states, forwards)))
