"""dl.tensorflow's scratch cells and concise model against the NumPy reference and Keras.

The scratch cells' outputs, final state and gradients against the reference, and their zero
states, are tested for every framework in test_cells.py; here, with the same weights they
must equal Keras' SimpleRNNCell, GRUCell(reset_after=False) and LSTMCell; ``RNNModel`` must
give time-major logits equal to a manual computation with its layer's own weights.
"""

import numpy as np
import pytest
import tensorflow as tf

from cell_problems import CELLS, TOL, B, H, T, V, as_float64, problem, random_params, random_state
from dl import reference as ref
from dl import tensorflow as dl  # first: makes tf.keras tf-keras in this process

# Keras' gate order in the concatenated kernels, as canonical gate letters.
KERAS_GATES = {"rnn": ("h",), "gru": ("z", "r", "h"), "lstm": ("i", "f", "c", "o")}
KERAS_CELLS = {
    "rnn": lambda: tf.keras.layers.SimpleRNNCell(H),
    "gru": lambda: tf.keras.layers.GRUCell(H, reset_after=False),
    "lstm": lambda: tf.keras.layers.LSTMCell(H),
}


def tf_forward(cell):
    return {"rnn": dl.rnn, "gru": dl.gru, "lstm": dl.lstm}[cell]


def variables_from(cell, params):
    return [tf.Variable(params[name], name=name) for name in ref.PARAM_NAMES[cell]]


def to_keras_weights(cell, params):
    """Canonical params -> [kernel, recurrent_kernel, bias] with Keras' gate order."""
    gates = KERAS_GATES[cell]
    return [
        np.concatenate([params[f"W_x{g}"] for g in gates], axis=1),
        np.concatenate([params[f"W_h{g}"] for g in gates], axis=1),
        np.concatenate([params[f"b_{g}"] for g in gates], axis=0),
    ]


def from_keras_weights(cell, kernel, recurrent_kernel, bias, dense_kernel, dense_bias):
    """Keras [kernel, recurrent_kernel, bias] of a cell (GRU: reset_after=False) and an output
    Dense -> canonical params."""
    gates = KERAS_GATES[cell]
    params = {}
    for g, k, r, b in zip(
        gates,
        np.split(kernel, len(gates), axis=1),
        np.split(recurrent_kernel, len(gates), axis=1),
        np.split(bias, len(gates), axis=0),
    ):
        params[f"W_x{g}"], params[f"W_h{g}"], params[f"b_{g}"] = k, r, b
    params["W_hq"], params["b_q"] = dense_kernel, dense_bias
    return {name: np.asarray(params[name], np.float64) for name in ref.PARAM_NAMES[cell]}


# ---------------------------------------------------------------------------------------------
# Parameters and states


@pytest.mark.parametrize("cell", CELLS)
def test_params_have_canonical_names_shapes_and_init(cell):
    get_params = {"rnn": dl.get_rnn_params, "gru": dl.get_gru_params, "lstm": dl.get_lstm_params}[
        cell
    ]
    params = get_params(V, H)
    expected = ref.init_params(cell, V, H, np.random.default_rng(0))
    assert len(params) == len(ref.PARAM_NAMES[cell])
    assert [p.name.split(":")[0] for p in params] == list(ref.PARAM_NAMES[cell])
    for p, name in zip(params, ref.PARAM_NAMES[cell]):
        assert isinstance(p, tf.Variable) and p.trainable
        assert p.dtype == tf.float32
        assert tuple(p.shape) == expected[name].shape, name
        value = p.numpy()
        if name.startswith("b"):
            assert np.all(value == 0), name
        else:  # the book's N(0, 0.01)
            assert 0 < value.std() < 0.03, name
            assert abs(value.mean()) < 0.01, name
    assert dl.CELLS[cell][0] is get_params


# ---------------------------------------------------------------------------------------------
# Scratch cells against the NumPy reference


@pytest.mark.parametrize("cell", CELLS)
def test_forward_on_one_hot_tokens_and_a_list_of_steps(cell):
    """The book feeds one-hot tokens; a Python list of steps (as inside tf.function) and a
    compiled call give the same numbers."""
    params, state, _, _ = problem(cell, seed=3)
    ids = np.random.default_rng(4).integers(0, V, (B, T))
    X = ref.one_hot(ids.T, V, np.float32)
    Y_ref, final_ref, _ = ref.forward(
        cell, as_float64(params), X.astype(np.float64), as_float64(state)
    )
    variables = variables_from(cell, params)
    forward = tf_forward(cell)
    as_list = [tf.constant(x) for x in X]
    compiled = tf.function(lambda inputs, s: forward(tf.unstack(inputs), s, variables))
    for Y, final in (
        forward(as_list, state, variables),
        compiled(tf.constant(X), tuple(map(tf.constant, state))),
    ):
        np.testing.assert_allclose(Y.numpy(), Y_ref, **TOL)
        for s, s_ref in zip(final, final_ref):
            np.testing.assert_allclose(s.numpy(), s_ref, **TOL)


# ---------------------------------------------------------------------------------------------
# Scratch cells against Keras cells


@pytest.mark.parametrize("cell", CELLS)
def test_scratch_cell_matches_keras_cell_with_copied_weights(cell):
    params, state, X, _ = problem(cell, seed=11)
    keras_cell = KERAS_CELLS[cell]()
    keras_cell.build(tf.TensorShape([None, V]))
    keras_cell.set_weights(to_keras_weights(cell, params))
    keras_state = [tf.constant(s) for s in state]
    outputs = []
    for x in X:
        h, keras_state = keras_cell(tf.constant(x), keras_state)
        keras_state = tf.nest.flatten(keras_state)
        outputs.append(h.numpy() @ params["W_hq"] + params["b_q"])
    Y, final = tf_forward(cell)(
        tf.constant(X), tuple(map(tf.constant, state)), variables_from(cell, params)
    )
    np.testing.assert_allclose(Y.numpy(), np.concatenate(outputs, axis=0), **TOL)
    assert len(final) == len(keras_state)  # LSTM: (H, C) in Keras' order [h, c]
    for s, s_keras in zip(final, keras_state):
        np.testing.assert_allclose(s.numpy(), s_keras.numpy(), **TOL)


# ---------------------------------------------------------------------------------------------
# The concise model


def gru_reset_after_numpy(kernel, recurrent_kernel, bias, X, h):
    """Keras' default GRU (reset_after=True): the reset gate applies after W_hh."""
    bias_x, bias_h = bias
    hs = []
    for x in X:
        xz, xr, xh = np.split(x @ kernel + bias_x, 3, axis=1)
        hz, hr, hh = np.split(h @ recurrent_kernel + bias_h, 3, axis=1)
        z = 1 / (1 + np.exp(-(xz + hz)))
        r = 1 / (1 + np.exp(-(xr + hr)))
        h = z * h + (1 - z) * np.tanh(xh + r * hh)
        hs.append(h)
    return np.stack(hs), (h,)


LAYERS = {
    "rnn(lstmcell)": (
        "lstm",
        lambda: tf.keras.layers.RNN(
            tf.keras.layers.LSTMCell(H), time_major=True, return_sequences=True, return_state=True
        ),
    ),
    "lstm": (
        "lstm",
        lambda: tf.keras.layers.LSTM(H, time_major=True, return_sequences=True, return_state=True),
    ),
    "gru-reset-before": (
        "gru",
        lambda: tf.keras.layers.GRU(
            H, time_major=True, return_sequences=True, return_state=True, reset_after=False
        ),
    ),
    "gru": (
        "gru-reset-after",
        lambda: tf.keras.layers.GRU(H, time_major=True, return_sequences=True, return_state=True),
    ),
    "rnn(simplernncell)": (
        "rnn",
        lambda: tf.keras.layers.RNN(
            tf.keras.layers.SimpleRNNCell(H),
            time_major=True,
            return_sequences=True,
            return_state=True,
        ),
    ),
}


def output_layer_weights(model, layer):
    """The model's output Dense weights: its variables that are not the recurrent layer's."""
    layer_ids = {id(v) for v in layer.trainable_variables}
    rest = [v.numpy() for v in model.trainable_variables if id(v) not in layer_ids]
    assert len(rest) == 2, [r.shape for r in rest]
    kernel = next(r for r in rest if r.ndim == 2)
    bias = next(r for r in rest if r.ndim == 1)
    assert kernel.shape == (H, V) and bias.shape == (V,)
    return kernel, bias


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_rnn_model_logits_are_time_major_and_match_manual_computation(kind, compiled):
    cell, make_layer = LAYERS[kind]
    tf.random.set_seed(0)
    layer = make_layer()
    model = dl.RNNModel(layer, vocab_size=V)
    ids = np.random.default_rng(0).integers(0, V, (B, T)).astype(np.int32)
    count = 2 if cell == "lstm" else 1
    state = model.begin_state(batch_size=B)
    assert len(state) == count
    assert all(tuple(s.shape) == (B, H) and np.all(s.numpy() == 0) for s in state)
    # a non-zero initial state, so the state's path into the layer is checked too
    state = [tf.constant(s) for s in random_state("lstm" if count == 2 else "rnn", seed=2)]
    call = tf.function(lambda x, s: model(x, s)) if compiled else model
    Y, new_state = call(tf.constant(ids), state)
    assert tuple(Y.shape) == (T * B, V)
    assert len(new_state) == count
    kernel, recurrent_kernel, bias = layer.get_weights()
    dense_kernel, dense_bias = output_layer_weights(model, layer)
    X = ref.one_hot(ids.T, V)  # time-major (T, B, V)
    if cell == "gru-reset-after":
        hs, final = gru_reset_after_numpy(kernel, recurrent_kernel, bias, X, state[0].numpy())
        Y_ref = hs.reshape(T * B, H) @ dense_kernel + dense_bias
    else:
        params = from_keras_weights(cell, kernel, recurrent_kernel, bias, dense_kernel, dense_bias)
        Y_ref, final, _ = ref.forward(cell, params, X, as_float64(s.numpy() for s in state))
    np.testing.assert_allclose(Y.numpy(), Y_ref, **TOL)
    # rows t*B .. t*B+B-1 belong to step t: step 0 alone depends only on the first tokens
    np.testing.assert_allclose(Y.numpy()[:B], Y_ref[:B], **TOL)
    for s, s_ref in zip(new_state, final):
        assert tuple(s.shape) == (B, H)
        np.testing.assert_allclose(np.asarray(s), s_ref, **TOL)


@pytest.mark.parametrize("batch_size", [1, 4])
def test_rnn_model_begin_state_shapes(batch_size):
    lstm = dl.RNNModel(
        tf.keras.layers.LSTM(H, time_major=True, return_sequences=True, return_state=True),
        vocab_size=V,
    )
    gru = dl.RNNModel(
        tf.keras.layers.GRU(H, time_major=True, return_sequences=True, return_state=True),
        vocab_size=V,
    )
    assert [tuple(s.shape) for s in lstm.begin_state(batch_size)] == [(batch_size, H)] * 2
    assert [tuple(s.shape) for s in gru.begin_state(batch_size=batch_size)] == [(batch_size, H)]
    assert all(s.dtype == tf.float32 for s in lstm.begin_state(batch_size))


def test_rnn_model_state_round_trips_through_calls():
    """Feeding two halves with the state carried equals feeding the whole sequence."""
    tf.random.set_seed(1)
    model = dl.RNNModel(
        tf.keras.layers.LSTM(H, time_major=True, return_sequences=True, return_state=True),
        vocab_size=V,
    )
    ids = tf.constant(np.random.default_rng(1).integers(0, V, (B, 2 * T)), dtype=tf.int32)
    Y, _ = model(ids, model.begin_state(B))
    Y1, state = model(ids[:, :T], model.begin_state(B))
    Y2, _ = model(ids[:, T:], state)
    np.testing.assert_allclose(np.concatenate([Y1.numpy(), Y2.numpy()]), Y.numpy(), **TOL)


def test_rnn_model_rejects_layer_without_sequences_or_state():
    with pytest.raises(ValueError, match="return_sequences=True"):
        dl.RNNModel(tf.keras.layers.LSTM(H, time_major=True, return_state=True), vocab_size=V)


def test_scratch_model_logits_match_reference():
    """RNNModelScratch one-hot encodes (batch, steps) ids time-major, as the book does."""
    params = random_params("lstm", seed=21)
    model = dl.RNNModelScratch(
        V, H, dl.init_lstm_state, dl.lstm, lambda v, h: variables_from("lstm", params)
    )
    ids = np.random.default_rng(2).integers(0, V, (B, T)).astype(np.int32)
    state = model.begin_state(batch_size=B)
    assert [tuple(s.shape) for s in state] == [(B, H), (B, H)]
    Y, (Hn, Cn) = model(tf.constant(ids), state)
    Y_ref, (H_ref, C_ref), _ = ref.forward(
        "lstm", as_float64(params), ref.one_hot(ids.T, V), ref.init_state("lstm", B, H)
    )
    np.testing.assert_allclose(Y.numpy(), Y_ref, **TOL)
    np.testing.assert_allclose(Hn.numpy(), H_ref, **TOL)
    np.testing.assert_allclose(Cn.numpy(), C_ref, **TOL)
    assert [v.name.split(":")[0] for v in model.trainable_variables] == list(
        ref.PARAM_NAMES["lstm"]
    )
