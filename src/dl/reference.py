"""NumPy RNN, GRU and LSTM cells with a hand-written backward pass (BPTT): the ground truth.

Every framework backend is tested against these numbers. The cells follow the book's scratch
formulation with the seed's parameter names and order, and compute in the dtype of the
parameters (float64 from `init_params` by default).

Shape letters: T = num_steps, B = batch_size, V = num_inputs (the vocabulary for one-hot
inputs), H = num_hiddens, Q = num_outputs (V unless given).

    rnn:  H_t = tanh(X W_xh + H W_hh + b_h)
    gru:  Z = sigmoid(X W_xz + H W_hz + b_z);  R = sigmoid(X W_xr + H W_hr + b_r)
          H~ = tanh(X W_xh + (R * H) W_hh + b_h);  H_t = Z * H + (1 - Z) * H~
    lstm: I, F, O = sigmoid(X W_x. + H W_h. + b_.);  C~ = tanh(X W_xc + H W_hc + b_c)
          C_t = F * C + I * C~;  H_t = O * tanh(C_t)  (H_t = O * C_t if output_tanh is False)
    all:  Y_t = H_t W_hq + b_q
"""

import numpy as np

from dl.errors import InputError

PARAM_NAMES = {
    "rnn": ("W_xh", "W_hh", "b_h", "W_hq", "b_q"),
    "gru": ("W_xz", "W_hz", "b_z", "W_xr", "W_hr", "b_r", "W_xh", "W_hh", "b_h", "W_hq", "b_q"),
    "lstm": (
        "W_xi",
        "W_hi",
        "b_i",
        "W_xf",
        "W_hf",
        "b_f",
        "W_xo",
        "W_ho",
        "b_o",
        "W_xc",
        "W_hc",
        "b_c",
        "W_hq",
        "b_q",
    ),
}


def _check_cell(cell):
    if cell not in PARAM_NAMES:
        raise InputError(f"cell={cell!r} is not one of {sorted(PARAM_NAMES)}")


def param_shapes(cell, num_inputs, num_hiddens, num_outputs=None):
    """Canonical parameter shapes in `PARAM_NAMES[cell]` order (every backend uses these):
    W_x*: (V, H), W_h*: (H, H), b_*: (H,), W_hq: (H, Q), b_q: (Q,); Q = num_outputs or V."""
    _check_cell(cell)
    num_outputs = num_inputs if num_outputs is None else num_outputs
    shapes = {}
    for name in PARAM_NAMES[cell]:
        if name == "W_hq":
            shapes[name] = (num_hiddens, num_outputs)
        elif name == "b_q":
            shapes[name] = (num_outputs,)
        elif name.startswith("W_x"):
            shapes[name] = (num_inputs, num_hiddens)
        elif name.startswith("W_h"):
            shapes[name] = (num_hiddens, num_hiddens)
        else:
            shapes[name] = (num_hiddens,)
    return shapes


def init_params(cell, num_inputs, num_hiddens, rng, scale=0.01, num_outputs=None, dtype=np.float64):
    """The book's initialisation: weights ~ normal(0, scale), biases zero.

    rng: np.random.Generator. Returns a dict in `PARAM_NAMES[cell]` order with the shapes of
    :func:`param_shapes`.
    """
    params = {}
    for name, shape in param_shapes(cell, num_inputs, num_hiddens, num_outputs).items():
        if name.startswith("W"):
            params[name] = (rng.standard_normal(shape) * scale).astype(dtype)
        else:
            params[name] = np.zeros(shape, dtype=dtype)
    return params


def init_state(cell, batch_size, num_hiddens, dtype=np.float64):
    """Zero state: (H,) for rnn and gru, (H, C) for lstm, each (B, H)."""
    _check_cell(cell)
    count = 2 if cell == "lstm" else 1
    return tuple(np.zeros((batch_size, num_hiddens), dtype=dtype) for _ in range(count))


def one_hot(ids, n, dtype=np.float64):
    """ids: any shape, int in [0, n). Returns ids.shape + (n,) of 0/1 in `dtype`."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= n):
        raise InputError(f"one_hot: ids must lie in [0, {n}), got [{ids.min()}, {ids.max()}]")
    return np.eye(n, dtype=dtype)[ids]


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free form of 1 / (1 + exp(-x))


def _affine(params, gate, X, H):
    return X @ params[f"W_x{gate}"] + H @ params[f"W_h{gate}"] + params[f"b_{gate}"]


def _affine_backward(params, grads, gate, dA, X, H):
    """Accumulates the gate's weight and bias gradients; returns (dX, dH) of X W_x + H W_h + b."""
    grads[f"W_x{gate}"] += X.T @ dA
    grads[f"W_h{gate}"] += H.T @ dA
    grads[f"b_{gate}"] += dA.sum(axis=0)
    return dA @ params[f"W_x{gate}"].T, dA @ params[f"W_h{gate}"].T


def _rnn_step(params, X, state, output_tanh):
    (H,) = state
    H_new = np.tanh(_affine(params, "h", X, H))
    return (H_new,), (X, H, H_new)


def _rnn_step_backward(params, grads, step_cache, dstate, output_tanh):
    X, H, H_new = step_cache
    (dH_new,) = dstate
    dX, dH = _affine_backward(params, grads, "h", dH_new * (1 - H_new**2), X, H)
    return (dH,), dX


def _gru_step(params, X, state, output_tanh):
    (H,) = state
    Z = _sigmoid(_affine(params, "z", X, H))
    R = _sigmoid(_affine(params, "r", X, H))
    H_tilde = np.tanh(_affine(params, "h", X, R * H))
    return (Z * H + (1 - Z) * H_tilde,), (X, H, Z, R, H_tilde)


def _gru_step_backward(params, grads, step_cache, dstate, output_tanh):
    X, H, Z, R, H_tilde = step_cache
    (dH_new,) = dstate
    dA_h = dH_new * (1 - Z) * (1 - H_tilde**2)
    dX_h, dRH = _affine_backward(params, grads, "h", dA_h, X, R * H)
    dA_z = dH_new * (H - H_tilde) * Z * (1 - Z)
    dX_z, dH_z = _affine_backward(params, grads, "z", dA_z, X, H)
    dA_r = dRH * H * R * (1 - R)
    dX_r, dH_r = _affine_backward(params, grads, "r", dA_r, X, H)
    return (dH_new * Z + dRH * R + dH_z + dH_r,), dX_h + dX_z + dX_r


def _lstm_step(params, X, state, output_tanh):
    H, C = state
    I = _sigmoid(_affine(params, "i", X, H))
    F = _sigmoid(_affine(params, "f", X, H))
    O = _sigmoid(_affine(params, "o", X, H))
    C_tilde = np.tanh(_affine(params, "c", X, H))
    C_new = F * C + I * C_tilde
    C_out = np.tanh(C_new) if output_tanh else C_new
    return (O * C_out, C_new), (X, H, C, I, F, O, C_tilde, C_out)


def _lstm_step_backward(params, grads, step_cache, dstate, output_tanh):
    X, H, C, I, F, O, C_tilde, C_out = step_cache
    dH_new, dC_new = dstate
    dC_new = dC_new + dH_new * O * ((1 - C_out**2) if output_tanh else 1)
    dA = {
        "i": dC_new * C_tilde * I * (1 - I),
        "f": dC_new * C * F * (1 - F),
        "o": dH_new * C_out * O * (1 - O),
        "c": dC_new * I * (1 - C_tilde**2),
    }
    dX, dH = 0, 0
    for gate, dA_gate in dA.items():
        dX_gate, dH_gate = _affine_backward(params, grads, gate, dA_gate, X, H)
        dX, dH = dX + dX_gate, dH + dH_gate
    return (dH, dC_new * F), dX


_STEPS = {
    "rnn": (_rnn_step, _rnn_step_backward),
    "gru": (_gru_step, _gru_step_backward),
    "lstm": (_lstm_step, _lstm_step_backward),
}


def forward(cell, params, X, state, output_tanh=True):
    """Runs the cell over a sequence, as the seed's `lstm(inputs, state, params)`.

    X: (T, B, V) float, time-major (one-hot tokens as the book feeds them); state: from
    `init_state`; output_tanh: lstm only, False gives H = O * C.
    Returns Y: (T * B, Q), the steps' outputs concatenated time-major (rows t*B .. t*B+B-1
    belong to step t, like `tf.concat(outputs, axis=0)`); the final state; and the cache that
    `backward` needs. Works in the dtype of `params['W_hq']`.
    """
    _check_cell(cell)
    dtype = params["W_hq"].dtype
    X = np.asarray(X, dtype=dtype)
    num_inputs = params[PARAM_NAMES[cell][0]].shape[0]
    if X.ndim != 3 or X.shape[0] == 0 or X.shape[2] != num_inputs:
        raise InputError(
            f"X must be (num_steps >= 1, batch_size, {num_inputs}) time-major, got shape {X.shape}"
        )
    state = tuple(np.asarray(s, dtype=dtype) for s in state)
    step, _ = _STEPS[cell]
    outputs, hiddens, steps = [], [], []
    for X_t in X:
        state, step_cache = step(params, X_t, state, output_tanh)
        outputs.append(state[0] @ params["W_hq"] + params["b_q"])
        hiddens.append(state[0])
        steps.append(step_cache)
    cache = {
        "cell": cell,
        "output_tanh": output_tanh,
        "X_shape": X.shape,
        "final_state": state,
        "hiddens": hiddens,
        "steps": steps,
    }
    return np.concatenate(outputs, axis=0), state, cache


def backward(cell, params, cache, dY, dstate=None):
    """Backpropagation through time of `forward`.

    dY: (T * B, Q), the gradient on Y; dstate: optional gradient on the final state (same
    structure as the state; zeros if None). Computes the gradient of
    sum(Y * dY) + sum_i sum(final_state[i] * dstate[i]).
    Returns (grads, dstate0, dX): grads, a dict with the keys and shapes of `params`;
    dstate0, the gradient on the initial state (a tuple like the state); dX: (T, B, V),
    the gradient on the inputs.
    """
    _check_cell(cell)
    if cache["cell"] != cell:
        raise InputError(f"cache comes from a {cache['cell']!r} forward, not {cell!r}")
    num_steps, batch_size, _ = cache["X_shape"]
    dtype = params["W_hq"].dtype
    dY = np.asarray(dY, dtype=dtype).reshape(num_steps, batch_size, -1)
    if dstate is None:
        dstate = tuple(np.zeros_like(s) for s in cache["final_state"])
    else:
        dstate = tuple(np.asarray(d, dtype=dtype) for d in dstate)
    _, step_backward = _STEPS[cell]
    grads = {name: np.zeros_like(value) for name, value in params.items()}
    dX = np.zeros(cache["X_shape"], dtype=dtype)
    for t in reversed(range(num_steps)):
        grads["W_hq"] += cache["hiddens"][t].T @ dY[t]
        grads["b_q"] += dY[t].sum(axis=0)
        dstate = (dstate[0] + dY[t] @ params["W_hq"].T,) + dstate[1:]
        dstate, dX[t] = step_backward(
            params, grads, cache["steps"][t], dstate, cache["output_tanh"]
        )
    return grads, dstate, dX


def softmax_cross_entropy(logits, labels):
    """Mean softmax cross-entropy over rows and its gradient.

    logits: (N, Q) float; labels: (N,) int in [0, Q). Returns (loss: float, dlogits: (N, Q)).
    """
    labels = np.asarray(labels)
    rows = np.arange(len(labels))
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    dlogits = np.exp(log_probs)
    dlogits[rows, labels] -= 1
    return float(-log_probs[rows, labels].mean()), dlogits / len(labels)


def loss_and_grads(cell, params, X, labels, state, output_tanh=True):
    """Forward, mean cross-entropy and backward in one call.

    X: (T, B, V) float time-major; labels: (T * B,) int, time-major like Y.
    Returns (loss: float, grads: dict like params, dstate0: tuple like state).
    """
    Y, _, cache = forward(cell, params, X, state, output_tanh)
    loss, dY = softmax_cross_entropy(Y, labels)
    grads, dstate0, _ = backward(cell, params, cache, dY)
    return loss, grads, dstate0


def clip_grads(grads, theta):
    """The book's global-norm clipping: if the norm over all grads exceeds theta, scale every
    gradient by theta / norm. Returns a new dict."""
    norm = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in grads.values()))
    scale = theta / norm if norm > theta else 1.0
    return {name: g * np.asarray(scale, dtype=g.dtype) for name, g in grads.items()}


def sgd_step(params, grads, lr):
    """Plain SGD, as the book's updater with batch_size=1: returns {name: p - lr * grad}."""
    return {name: p - np.asarray(lr, dtype=p.dtype) * grads[name] for name, p in params.items()}


def optimizer_step(config, params, grads, state=None):
    """One update of :class:`dl.optim.OptimizerConfig` ``config`` by the formulas in
    :mod:`dl.optim`: ``(params, state)`` with ``state`` under the canonical ``opt.`` names
    (zeros when None)."""
    from dl import optim

    state = (
        dict(state)
        if state is not None
        else optim.zero_state(config, {name: p.shape for name, p in params.items()})
    )
    t = float(state[optim.STEP]) + 1
    state[optim.STEP] = np.asarray(t, np.float32)
    new = {}
    for name, p in params.items():
        g, lr = grads[name], config.lr
        m, v = (f"{optim.PREFIX}{slot}.{name}" for slot in ("m", "v"))
        if config.name == "sgd":
            new[name] = p - lr * (g + config.weight_decay * p)
            continue
        if config.name == "rmsprop":
            state[v] = config.rho * state[v] + (1 - config.rho) * g * g
            new[name] = p - lr * g / (np.sqrt(state[v]) + config.eps)
            continue
        if config.name == "adamw":
            p = p * (1 - lr * config.weight_decay)
        state[m] = config.beta1 * state[m] + (1 - config.beta1) * g
        state[v] = config.beta2 * state[v] + (1 - config.beta2) * g * g
        m_hat, v_hat = state[m] / (1 - config.beta1**t), state[v] / (1 - config.beta2**t)
        new[name] = p - lr * m_hat / (np.sqrt(v_hat) + config.eps)
    return new, state


def optimize_steps(
    cell, params, batches, optimizer, theta=1.0, state=None, optimizer_state=None, output_tanh=True
):
    """:func:`train_steps` with any :class:`dl.optim.OptimizerConfig`: one clipped update per
    batch. Returns ``(params, losses, optimizer_state)``."""
    box = [optimizer_state]

    def update(params, grads):
        params, box[0] = optimizer_step(optimizer, params, grads, box[0])
        return params

    params, losses = _clipped_steps(cell, params, batches, update, theta, state, output_tanh)
    return params, losses, box[0]


def train_steps(cell, params, batches, lr, theta=1.0, state=None, output_tanh=True):
    """One clipped SGD step per batch, the book's sequential-partition training in NumPy.

    batches: list of (X_ids, Y_ids), each (B, T) int, batch-major as the data iterators yield.
    X is one-hot encoded time-major, labels are Y_ids.T.reshape(-1); the state starts at zero
    if None and carries across batches without gradient flowing through it.
    Returns (params after the last step, losses: the mean cross-entropy of each batch before
    its update).
    """
    update = lambda params, grads: sgd_step(params, grads, lr)
    return _clipped_steps(cell, params, batches, update, theta, state, output_tanh)


def _clipped_steps(cell, params, batches, update, theta, state, output_tanh):
    """``update(params, clipped grads) -> params`` once per batch; ``(params, losses)``."""
    _check_cell(cell)
    dtype = params["W_hq"].dtype
    num_inputs, num_hiddens = params[PARAM_NAMES[cell][0]].shape
    losses = []
    for X_ids, Y_ids in batches:
        X_ids, Y_ids = np.asarray(X_ids), np.asarray(Y_ids)
        if state is None:
            state = init_state(cell, X_ids.shape[0], num_hiddens, dtype)
        Y, new_state, cache = forward(
            cell, params, one_hot(X_ids.T, num_inputs, dtype), state, output_tanh
        )
        loss, dY = softmax_cross_entropy(Y, Y_ids.T.reshape(-1))
        grads, _, _ = backward(cell, params, cache, dY)
        params = update(params, clip_grads(grads, theta))
        state = new_state
        losses.append(loss)
    return params, losses
