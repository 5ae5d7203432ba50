"""dl.jax's scratch cells and layers against the NumPy reference.

The scratch cells (``get_*_params(vocab, hidden, key)``, ``init_*_state(batch, hidden)`` and
``rnn``/``gru``/``lstm``, scanned with ``jax.lax.scan``) give the reference's outputs, final
state and gradients (``jax.grad``, tested for every framework in test_cells.py); a user's
Python ``for X in inputs`` loop must give the same numbers, eagerly and under
``jax.jit``. The layers ``RNN``/``GRU``/``LSTM`` keep fused weights ``W_x: (V, G*H)``,
``W_h: (H, G*H)``, ``b: (G*H,)`` with the gates along the last axis (LSTM i, f, o, c; GRU z, r,
h); built from canonical weights, ``RNNModel`` must equal the scratch model.
"""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from cell_problems import CELLS, TOL, B, H, T, V, as_float64, problem, random_params, random_state  # noqa: E402
from dl import jax as dl  # noqa: E402
from dl import reference as ref  # noqa: E402

FORWARD = {"rnn": dl.rnn, "gru": dl.gru, "lstm": dl.lstm}
GET_PARAMS = {"rnn": dl.get_rnn_params, "gru": dl.get_gru_params, "lstm": dl.get_lstm_params}
# the fused layers' gate order along the last axis, as canonical gate letters
LAYER_GATES = {"rnn": ("h",), "gru": ("z", "r", "h"), "lstm": ("i", "f", "o", "c")}
LAYERS = {"rnn": dl.RNN, "gru": dl.GRU, "lstm": dl.LSTM}


def jax_params(cell, params):
    """Canonical params as a list of jnp arrays in canonical order."""
    return [jnp.asarray(params[name]) for name in ref.PARAM_NAMES[cell]]


# ---------------------------------------------------------------------------------------------
# Parameters and states


@pytest.mark.parametrize("cell", CELLS)
def test_params_have_canonical_shapes_order_and_book_init_and_follow_the_key(cell):
    get_params = GET_PARAMS[cell]
    params = get_params(40, 32, jax.random.PRNGKey(0))  # large enough for the statistics
    shapes = ref.param_shapes(cell, 40, 32)
    assert isinstance(params, list) and len(params) == len(ref.PARAM_NAMES[cell])
    weights = []
    for p, name in zip(params, ref.PARAM_NAMES[cell]):
        assert isinstance(p, jax.Array) and p.dtype == jnp.float32, name
        assert tuple(p.shape) == shapes[name], name
        p = np.asarray(p)
        if name.startswith("b"):
            assert np.all(p == 0), name
        else:  # the book's N(0, 0.01)
            assert 0.008 < p.std() < 0.012 and abs(p.mean()) < 0.002, name
            weights.append(p)
    for i, a in enumerate(weights):  # every weight has its own key
        for b in weights[i + 1 :]:
            assert a.shape != b.shape or not np.allclose(a, b)
    again = get_params(40, 32, jax.random.PRNGKey(0))  # the same key, the same weights
    for p, q in zip(params, again):
        np.testing.assert_array_equal(np.asarray(p), np.asarray(q))
    other = get_params(40, 32, jax.random.PRNGKey(1))
    assert not np.allclose(np.asarray(other[0]), np.asarray(params[0]))
    assert dl.CELLS[cell][0] is get_params


# ---------------------------------------------------------------------------------------------
# A user's forward function: the seed's lstm with jnp and a Python loop


def seed_lstm(inputs, state, params):
    """The seed's ``lstm`` (the book's LSTM from scratch), written with jnp."""
    [W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c, W_hq, b_q] = params
    (H, C) = state
    outputs = []
    for X in inputs:
        I = jax.nn.sigmoid((X @ W_xi) + (H @ W_hi) + b_i)
        F = jax.nn.sigmoid((X @ W_xf) + (H @ W_hf) + b_f)
        O = jax.nn.sigmoid((X @ W_xo) + (H @ W_ho) + b_o)
        C_tilda = jnp.tanh((X @ W_xc) + (H @ W_hc) + b_c)
        C = F * C + I * C_tilda
        H = O * jnp.tanh(C)
        Y = (H @ W_hq) + b_q
        outputs.append(Y)
    return jnp.concatenate(outputs, axis=0), (H, C)


def test_a_python_loop_lstm_equals_the_scanned_lstm_eagerly_and_under_jit():
    params, state, X, _ = problem("lstm", seed=13)
    args = (jnp.asarray(X), tuple(map(jnp.asarray, state)), jax_params("lstm", params))
    Y, final = dl.lstm(*args)
    for user in (seed_lstm, jax.jit(seed_lstm)):
        Y_user, final_user = user(*args)
        assert Y_user.shape == Y.shape == (T * B, V)
        np.testing.assert_allclose(np.asarray(Y_user), np.asarray(Y), **TOL)
        for a, b in zip(final_user, final):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), **TOL)


# ---------------------------------------------------------------------------------------------
# The scratch model


@pytest.mark.parametrize("cell", CELLS)
def test_scratch_model_logits_match_reference(cell):
    """RNNModelScratch one-hot encodes (batch, steps) ids time-major, as the book does."""
    params = random_params(cell, seed=21)
    _, init_state, forward = dl.CELLS[cell]
    calls = []
    key = jax.random.PRNGKey(7)

    def given_params(vocab_size, num_hiddens, k):
        calls.append((vocab_size, num_hiddens, k))
        return jax_params(cell, params)

    model = dl.RNNModelScratch(V, H, key, given_params, init_state, forward)
    assert len(calls) == 1 and calls[0][:2] == (V, H) and calls[0][2] is key
    ids = np.random.default_rng(2).integers(0, V, (B, T)).astype(np.int32)
    state = model.begin_state(B)
    assert [tuple(s.shape) for s in state] == [(B, H)] * (2 if cell == "lstm" else 1)
    Y, final = model(jnp.asarray(ids), state)
    Y_ref, final_ref, _ = ref.forward(
        cell, as_float64(params), ref.one_hot(ids.T, V), ref.init_state(cell, B, H)
    )
    assert tuple(Y.shape) == (T * B, V)
    np.testing.assert_allclose(np.asarray(Y), Y_ref, **TOL)
    for s, s_ref in zip(final, final_ref):
        np.testing.assert_allclose(np.asarray(s), s_ref, **TOL)
    Y_np, _ = model(ids, list(state))  # NumPy ids and a list state work as well
    np.testing.assert_allclose(np.asarray(Y_np), np.asarray(Y), **TOL)


# ---------------------------------------------------------------------------------------------
# The layers and RNNModel


def fused_from_canonical(cell, params):
    """Canonical params -> RNNModel params: gates concatenated along the last axis."""
    gates = LAYER_GATES[cell]
    return {
        "rnn": {
            "W_x": jnp.concatenate([params[f"W_x{g}"] for g in gates], axis=1),
            "W_h": jnp.concatenate([params[f"W_h{g}"] for g in gates], axis=1),
            "b": jnp.concatenate([params[f"b_{g}"] for g in gates]),
        },
        "dense": {"W": jnp.asarray(params["W_hq"]), "b": jnp.asarray(params["b_q"])},
    }


@pytest.mark.parametrize("cell", CELLS)
def test_layer_init_shapes_and_bounds(cell):
    layer = LAYERS[cell](V, H)
    G = len(LAYER_GATES[cell])
    model = dl.RNNModel(layer, V, jax.random.PRNGKey(0))
    assert model.rnn is layer and model.vocab_size == V
    params = model.params
    assert set(params) == {"rnn", "dense"}
    assert set(params["rnn"]) == {"W_x", "W_h", "b"} and set(params["dense"]) == {"W", "b"}
    shapes = {"W_x": (V, G * H), "W_h": (H, G * H), "b": (G * H,)}
    bound = H**-0.5
    for name, shape in shapes.items():
        p = np.asarray(params["rnn"][name])
        assert p.shape == shape and p.dtype == np.float32, name
        assert np.all(np.abs(p) <= bound) and p.std() > 0.3 * bound, name
    assert params["dense"]["W"].shape == (H, V) and np.all(np.abs(params["dense"]["W"]) <= bound)
    assert params["dense"]["b"].shape == (V,) and np.all(np.asarray(params["dense"]["b"]) == 0)
    again = dl.RNNModel(LAYERS[cell](V, H), V, jax.random.PRNGKey(0)).params
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("cell", CELLS)
def test_rnn_model_with_fused_canonical_weights_equals_the_scratch_model(cell):
    """Logits and final state of RNNModel with the canonical weights fused gate by gate equal
    the scratch model's and the reference's (training, gradients included: test_jax_training)."""
    params = random_params(cell, seed=31)
    state = tuple(map(jnp.asarray, random_state(cell, seed=32)))
    ids = jnp.asarray(np.random.default_rng(33).integers(0, V, (B, T)))
    model = dl.RNNModel(LAYERS[cell](V, H), V, jax.random.PRNGKey(0))
    model.params = fused_from_canonical(cell, params)
    scratch = dl.RNNModelScratch(
        V, H, jax.random.PRNGKey(0), lambda v, h, k: jax_params(cell, params), *dl.CELLS[cell][1:]
    )
    Y, final = model(ids, state)
    Y_scratch, final_scratch = scratch(ids, state)
    assert tuple(Y.shape) == (T * B, V)
    np.testing.assert_allclose(np.asarray(Y), np.asarray(Y_scratch), **TOL)
    assert isinstance(final, tuple) and len(final) == len(final_scratch)
    for s, e in zip(final, final_scratch):
        np.testing.assert_allclose(np.asarray(s), np.asarray(e), **TOL)
    # the layer alone: time-major hidden states, the last one is the final H
    Hs, _ = model.rnn.apply(model.params["rnn"], jax.nn.one_hot(ids.T, V), state)
    assert Hs.shape == (T, B, H)
    np.testing.assert_allclose(np.asarray(Hs[-1]), np.asarray(final[0]), **TOL)
    # both are the reference's numbers
    Y_ref, final_ref, _ = ref.forward(
        cell, as_float64(params), ref.one_hot(np.asarray(ids).T, V), as_float64(state)
    )
    np.testing.assert_allclose(np.asarray(Y), Y_ref, **TOL)
    for s, s_ref in zip(final, final_ref):
        np.testing.assert_allclose(np.asarray(s), s_ref, **TOL)


def test_lstm_layer_gate_order_is_i_f_o_c():
    """With zero weights each gate is its bias block: a distinct bias per block and a non-zero
    memory cell give C = sigmoid(b_f) C0 + sigmoid(b_i) tanh(b_c), H = sigmoid(b_o) tanh(C)."""
    layer = dl.LSTM(V, H)
    b_i, b_f, b_o, b_c = 0.3, -1.2, 2.0, 0.7
    bias = np.repeat(np.float32([b_i, b_f, b_o, b_c]), H)
    params = {"W_x": jnp.zeros((V, 4 * H)), "W_h": jnp.zeros((H, 4 * H)), "b": jnp.asarray(bias)}
    C0 = np.linspace(-1, 1, B * H, dtype=np.float32).reshape(B, H)
    _, (Hn, Cn) = layer.apply(params, jnp.zeros((1, B, V)), (jnp.zeros((B, H)), jnp.asarray(C0)))
    sigmoid = lambda x: 1 / (1 + np.exp(-x))
    C = sigmoid(b_f) * C0 + sigmoid(b_i) * np.tanh(b_c)
    np.testing.assert_allclose(np.asarray(Cn), C, **TOL)
    np.testing.assert_allclose(np.asarray(Hn), sigmoid(b_o) * np.tanh(C), **TOL)


def test_rnn_model_state_round_trips_through_calls():
    """Feeding two halves with the state carried equals feeding the whole sequence."""
    model = dl.RNNModel(dl.LSTM(V, H), V, jax.random.PRNGKey(1))
    ids = jnp.asarray(np.random.default_rng(1).integers(0, V, (B, 2 * T)))
    Y, _ = model(ids, model.begin_state(B))
    Y1, state = model(ids[:, :T], model.begin_state(B))
    Y2, _ = model(ids[:, T:], state)
    np.testing.assert_allclose(np.concatenate([Y1, Y2]), np.asarray(Y), **TOL)


@pytest.mark.parametrize("cell, count", [("rnn", 1), ("gru", 1), ("lstm", 2)])
def test_begin_state_shapes(cell, count):
    layer = LAYERS[cell](V, H)
    model = dl.RNNModel(layer, V, jax.random.PRNGKey(0))
    for state in (layer.begin_state(4), model.begin_state(4), model.begin_state(batch_size=4)):
        assert isinstance(state, tuple) and len(state) == count
        for s in state:
            assert tuple(s.shape) == (4, H) and s.dtype == jnp.float32
            assert np.all(np.asarray(s) == 0)
    Y, _ = model(jnp.zeros((4, T), jnp.int32), model.begin_state(4))  # the state fits the layer
    assert tuple(Y.shape) == (T * 4, V)


class LookalikeLayer:
    """Has everything a dl.jax layer has, but is not one (e.g. a flax or torch layer)."""

    num_inputs, num_hiddens, gates = V, H, 4

    def init(self, key):
        return dl.LSTM(V, H).init(key)

    def begin_state(self, batch_size):
        return dl.LSTM(V, H).begin_state(batch_size)

    def apply(self, params, inputs, state):
        return dl.LSTM(V, H).apply(params, inputs, state)


@pytest.mark.parametrize(
    "layer", [LookalikeLayer(), object(), None, "lstm"], ids=["lookalike", "object", "None", "str"]
)
def test_rnn_model_rejects_a_layer_that_is_not_dl_jax(layer):
    with pytest.raises(TypeError, match="RNN, GRU or LSTM"):
        dl.RNNModel(layer, V, jax.random.PRNGKey(0))
