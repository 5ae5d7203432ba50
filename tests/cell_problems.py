"""Small problems shared by the per-framework cell tests (NumPy only): canonical float32
parameters with non-zero biases, a random state, dense inputs and labels."""

import numpy as np

from dl import reference as ref

V, H, B, T = 7, 8, 3, 5  # vocab, hiddens, batch, steps: B != T so a layout mix-up shows
CELLS = ("rnn", "gru", "lstm")
TOL = dict(rtol=1e-5, atol=1e-5)


def random_params(cell, seed=0, scale=0.5):
    """float32 canonical params with non-zero biases, so every term matters."""
    rng = np.random.default_rng(seed)
    params = ref.init_params(cell, V, H, rng, scale=scale, dtype=np.float32)
    return {
        name: (p + 0.3 * rng.standard_normal(p.shape)).astype(np.float32)
        if name.startswith("b")
        else p
        for name, p in params.items()
    }


def random_state(cell, seed=1, batch_size=B):
    rng = np.random.default_rng(seed)
    return tuple(
        (0.5 * rng.standard_normal(s.shape)).astype(np.float32)
        for s in ref.init_state(cell, batch_size, H)
    )


def as_float64(arrays):
    if isinstance(arrays, dict):
        return {name: np.asarray(a, np.float64) for name, a in arrays.items()}
    return tuple(np.asarray(a, np.float64) for a in arrays)


def problem(cell, seed=0):
    rng = np.random.default_rng(seed + 10)
    params = random_params(cell, seed)
    state = random_state(cell, seed + 1)
    X = rng.standard_normal((T, B, V)).astype(np.float32)  # dense: every weight row matters
    labels = rng.integers(0, V, T * B)
    return params, state, X, labels
