"""dl.torch's scratch cells and concise model against the NumPy reference and torch.nn.

The scratch cells' outputs, final state and gradients against the reference, and their zero
states, are tested for every framework in test_cells.py; here, with the same weights the RNN
and LSTM must equal ``nn.RNN`` and ``nn.LSTM``. PyTorch's GRU is not the book's (torch
applies the reset gate after ``W_hn h + b_hn``), so the scratch GRU is compared with the
reference only and ``RNNModel(nn.GRU)`` with a manual computation in torch's own formula.
``RNNModel`` must give time-major logits equal to running its layer directly plus its linear
layer.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from cell_problems import CELLS, TOL, B, H, T, V, as_float64, problem, random_params  # noqa: E402
from dl import reference as ref  # noqa: E402
from dl import torch as dl  # noqa: E402

CPU = torch.device("cpu")

# torch's gate order in weight_ih_l0 / weight_hh_l0 rows, as canonical gate letters
TORCH_GATES = {"rnn": ("h",), "lstm": ("i", "f", "c", "o")}


def tensors_from(cell, params):
    """Canonical params as leaf tensors with requires_grad, in canonical order."""
    return [torch.tensor(params[name], requires_grad=True) for name in ref.PARAM_NAMES[cell]]


def torch_forward(cell):
    return {"rnn": dl.rnn, "gru": dl.gru, "lstm": dl.lstm}[cell]


# ---------------------------------------------------------------------------------------------
# Parameters and states


@pytest.mark.parametrize("cell", CELLS)
def test_params_have_canonical_shapes_and_book_init(cell):
    get_params = {"rnn": dl.get_rnn_params, "gru": dl.get_gru_params, "lstm": dl.get_lstm_params}[
        cell
    ]
    torch.manual_seed(0)
    params = get_params(40, 32, CPU)  # large enough for the statistics below
    shapes = ref.param_shapes(cell, 40, 32)
    assert len(params) == len(ref.PARAM_NAMES[cell])
    for p, name in zip(params, ref.PARAM_NAMES[cell]):
        assert isinstance(p, torch.Tensor) and p.is_leaf and p.requires_grad, name
        assert p.dtype == torch.float32 and p.device.type == "cpu"
        assert tuple(p.shape) == shapes[name], name
        if name.startswith("b"):
            assert torch.all(p == 0), name
        else:  # the book's N(0, 0.01)
            assert 0.005 < float(p.detach().std()) < 0.02, name
            assert abs(float(p.detach().mean())) < 0.005, name
    assert dl.CELLS[cell][0] is get_params


def test_params_follow_the_torch_seed():
    torch.manual_seed(3)
    first = dl.get_lstm_params(V, H, CPU)
    torch.manual_seed(3)
    second = dl.get_lstm_params(V, H, "cpu")  # a device name works too
    for a, b in zip(first, second):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------
# Scratch cells against the NumPy reference


@pytest.mark.parametrize("cell", CELLS)
def test_forward_on_one_hot_tokens_matches_reference(cell):
    params, state, _, _ = problem(cell, seed=3)
    ids = np.random.default_rng(4).integers(0, V, (B, T))
    X = ref.one_hot(ids.T, V, np.float32)
    Y_ref, final_ref, _ = ref.forward(
        cell, as_float64(params), X.astype(np.float64), as_float64(state)
    )
    inputs = nn.functional.one_hot(torch.tensor(ids).T, V).float()
    with torch.no_grad():
        Y, final = torch_forward(cell)(
            inputs, tuple(map(torch.tensor, state)), tensors_from(cell, params)
        )
    np.testing.assert_allclose(Y.numpy(), Y_ref, **TOL)
    for s, s_ref in zip(final, final_ref):
        np.testing.assert_allclose(s.numpy(), s_ref, **TOL)


# ---------------------------------------------------------------------------------------------
# Scratch cells against torch.nn layers


def split_bias(bias, seed):
    """A random split ``bias = b_ih + b_hh``: both of torch's biases must be added."""
    b_hh = np.random.default_rng(seed).standard_normal(bias.shape).astype(np.float32)
    return bias - b_hh, b_hh


def load_torch_layer(layer, cell, params, seed=0):
    """Canonical params -> a 1-layer torch ``nn.RNN``/``nn.LSTM`` (weights (gates*H, V))."""
    gates = TORCH_GATES[cell]
    w_ih = np.concatenate([params[f"W_x{g}"].T for g in gates], axis=0)
    w_hh = np.concatenate([params[f"W_h{g}"].T for g in gates], axis=0)
    b_ih, b_hh = split_bias(np.concatenate([params[f"b_{g}"] for g in gates]), seed)
    with torch.no_grad():
        for name, value in (
            ("weight_ih_l0", w_ih),
            ("weight_hh_l0", w_hh),
            ("bias_ih_l0", b_ih),
            ("bias_hh_l0", b_hh),
        ):
            getattr(layer, name).copy_(torch.tensor(value))


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_scratch_cell_matches_torch_layer_with_copied_weights(cell):
    params, state, X, _ = problem(cell, seed=11)
    layer = nn.RNN(V, H, nonlinearity="tanh") if cell == "rnn" else nn.LSTM(V, H)
    assert tuple(layer.weight_ih_l0.shape) == (len(TORCH_GATES[cell]) * H, V)
    load_torch_layer(layer, cell, params)
    torch_state = tuple(torch.tensor(s)[None] for s in state)  # (1, B, H)
    with torch.no_grad():
        hs, final_layer = layer(torch.tensor(X), torch_state[0] if cell == "rnn" else torch_state)
        Y_layer = hs.reshape(T * B, H) @ torch.tensor(params["W_hq"]) + torch.tensor(params["b_q"])
        Y, final = torch_forward(cell)(
            torch.tensor(X), tuple(map(torch.tensor, state)), tensors_from(cell, params)
        )
    np.testing.assert_allclose(Y.numpy(), Y_layer.numpy(), **TOL)
    final_layer = (final_layer,) if cell == "rnn" else final_layer  # LSTM: (h, c)
    assert len(final) == len(final_layer)
    for s, s_layer in zip(final, final_layer):
        np.testing.assert_allclose(s.numpy(), s_layer[0].numpy(), **TOL)


def test_torch_gru_is_not_the_books_gru():
    """The note in the module docstring: with weights copied gate by gate, nn.GRU (reset after
    W_hn h) and the book's GRU (reset before W_hh) give different states."""
    params, state, X, _ = problem("gru", seed=12)
    layer = nn.GRU(V, H)
    gates = ("r", "z", "h")  # torch's order r, z, n
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.tensor(np.concatenate([params[f"W_x{g}"].T for g in gates])))
        layer.weight_hh_l0.copy_(torch.tensor(np.concatenate([params[f"W_h{g}"].T for g in gates])))
        layer.bias_ih_l0.copy_(torch.tensor(np.concatenate([params[f"b_{g}"] for g in gates])))
        layer.bias_hh_l0.zero_()
        _, h_torch = layer(torch.tensor(X), torch.tensor(state[0])[None])
        _, (h_book,) = dl.gru(
            torch.tensor(X), tuple(map(torch.tensor, state)), tensors_from("gru", params)
        )
    assert not np.allclose(h_torch[0].numpy(), h_book.numpy(), atol=1e-3)


# ---------------------------------------------------------------------------------------------
# The scratch model


@pytest.mark.parametrize("cell", CELLS)
def test_scratch_model_logits_match_reference(cell):
    """RNNModelScratch one-hot encodes (batch, steps) ids time-major, as the book does."""
    params = random_params(cell, seed=21)
    get_params, init_state, forward = dl.CELLS[cell]
    calls = []

    def given_params(vocab_size, num_hiddens, device):
        calls.append((vocab_size, num_hiddens, device))
        return tensors_from(cell, params)

    model = dl.RNNModelScratch(V, H, CPU, given_params, init_state, forward)
    assert calls == [(V, H, CPU)]
    ids = np.random.default_rng(2).integers(0, V, (B, T)).astype(np.int32)
    state = model.begin_state(batch_size=B, device=CPU)
    assert [tuple(s.shape) for s in state] == [(B, H)] * (2 if cell == "lstm" else 1)
    with torch.no_grad():
        Y, final = model(torch.tensor(ids), state)  # int32 ids are fine
    Y_ref, final_ref, _ = ref.forward(
        cell, as_float64(params), ref.one_hot(ids.T, V), ref.init_state(cell, B, H)
    )
    assert tuple(Y.shape) == (T * B, V)
    np.testing.assert_allclose(Y.numpy(), Y_ref, **TOL)
    for s, s_ref in zip(final, final_ref):
        np.testing.assert_allclose(s.numpy(), s_ref, **TOL)
    assert list(model.parameters()) == model.params and len(model.params) == len(params)


def test_scratch_model_as_in_the_book():
    torch.manual_seed(0)
    device = dl.try_gpu()
    model = dl.RNNModelScratch(V, H, device, dl.get_lstm_params, dl.init_lstm_state, dl.lstm)
    state = model.begin_state(B, device)
    Y, (Hn, Cn) = model(torch.randint(0, V, (B, T), device=device), state)
    assert Y.device == Hn.device == model.params[0].device
    assert tuple(Y.shape) == (T * B, V) and tuple(Hn.shape) == tuple(Cn.shape) == (B, H)
    Y.sum().backward()
    assert all(p.grad is not None for p in model.params)


# ---------------------------------------------------------------------------------------------
# The concise model


def make_layer(kind, num_layers=1, bidirectional=False, **kwargs):
    layer = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind]
    return layer(V, H, num_layers=num_layers, bidirectional=bidirectional, **kwargs)


def random_begin_state(kind, num_layers, directions, seed=2):
    rng = np.random.default_rng(seed)
    shape = (num_layers * directions, B, H)
    states = [
        torch.tensor(0.5 * rng.standard_normal(shape), dtype=torch.float32)
        for _ in range(2 if kind == "lstm" else 1)
    ]
    return tuple(states) if kind == "lstm" else states[0]


CONFIGS = [(1, False), (2, False), (1, True), (2, True)]


@pytest.mark.parametrize(
    "num_layers, bidirectional",
    CONFIGS,
    ids=["1-layer", "2-layer", "bidirectional", "2-layer-bidirectional"],
)
@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_rnn_model_equals_its_layer_plus_linear(kind, num_layers, bidirectional):
    torch.manual_seed(0)
    layer = make_layer(kind, num_layers, bidirectional)
    model = dl.RNNModel(layer, vocab_size=V)
    directions = 2 if bidirectional else 1
    assert model.linear.in_features == directions * H and model.linear.out_features == V
    ids = torch.tensor(np.random.default_rng(0).integers(0, V, (B, T)))
    state = random_begin_state(kind, num_layers, directions)
    with torch.no_grad():
        Y, new_state = model(ids, state)
        X = nn.functional.one_hot(ids.T, V).float()  # (T, B, V) time-major
        hs, expected_state = layer(X, state)
        Y_expected = model.linear(hs.reshape(T * B, directions * H))
    assert tuple(Y.shape) == (T * B, V)
    np.testing.assert_allclose(Y.numpy(), Y_expected.numpy(), **TOL)
    for s, e in zip(
        tuple(new_state) if kind == "lstm" else (new_state,),
        tuple(expected_state) if kind == "lstm" else (expected_state,),
    ):
        assert tuple(s.shape) == (num_layers * directions, B, H)
        np.testing.assert_allclose(s.numpy(), e.numpy(), **TOL)


def canonical_from_torch(cell, layer, linear):
    """A 1-layer ``nn.RNN``/``nn.LSTM`` and the output Linear -> float64 canonical params."""
    gates = TORCH_GATES[cell]
    params = {}
    w_ih = np.split(layer.weight_ih_l0.detach().numpy(), len(gates))
    w_hh = np.split(layer.weight_hh_l0.detach().numpy(), len(gates))
    bias = np.split((layer.bias_ih_l0 + layer.bias_hh_l0).detach().numpy(), len(gates))
    for g, wi, wh, b in zip(gates, w_ih, w_hh, bias):
        params[f"W_x{g}"], params[f"W_h{g}"], params[f"b_{g}"] = wi.T, wh.T, b
    params["W_hq"] = linear.weight.detach().numpy().T  # Linear weight is (V, H)
    params["b_q"] = linear.bias.detach().numpy()
    return as_float64({name: params[name] for name in ref.PARAM_NAMES[cell]})


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_rnn_model_matches_reference_with_its_own_weights(kind):
    """Independent of torch's layer: the canonical cell on the model's weights."""
    torch.manual_seed(1)
    model = dl.RNNModel(make_layer(kind), vocab_size=V)
    ids = np.random.default_rng(1).integers(0, V, (B, T))
    state = random_begin_state(kind, 1, 1, seed=3)
    with torch.no_grad():
        Y, new_state = model(torch.tensor(ids), state)
    params = canonical_from_torch(kind, model.rnn, model.linear)
    ref_state = tuple(s[0].numpy() for s in (state if kind == "lstm" else (state,)))
    Y_ref, final_ref, _ = ref.forward(kind, params, ref.one_hot(ids.T, V), as_float64(ref_state))
    np.testing.assert_allclose(Y.numpy(), Y_ref, **TOL)
    # rows t*B .. t*B+B-1 belong to step t
    np.testing.assert_allclose(Y.numpy()[:B], Y_ref[:B], **TOL)
    for s, s_ref in zip(new_state if kind == "lstm" else (new_state,), final_ref):
        np.testing.assert_allclose(s[0].numpy(), s_ref, **TOL)


def gru_reset_after(layer, X, h):
    """torch's GRU formula (gates r, z, n; the reset gate scales ``W_hn h + b_hn``)."""
    w_ir, w_iz, w_in = layer.weight_ih_l0.detach().to(X.dtype).chunk(3)
    w_hr, w_hz, w_hn = layer.weight_hh_l0.detach().to(X.dtype).chunk(3)
    b_ir, b_iz, b_in = layer.bias_ih_l0.detach().to(X.dtype).chunk(3)
    b_hr, b_hz, b_hn = layer.bias_hh_l0.detach().to(X.dtype).chunk(3)
    hs = []
    for x in X:
        r = torch.sigmoid(x @ w_ir.T + b_ir + h @ w_hr.T + b_hr)
        z = torch.sigmoid(x @ w_iz.T + b_iz + h @ w_hz.T + b_hz)
        n = torch.tanh(x @ w_in.T + b_in + r * (h @ w_hn.T + b_hn))
        h = (1 - z) * n + z * h
        hs.append(h)
    return torch.stack(hs), h


def test_rnn_model_gru_matches_torch_gru_formula():
    torch.manual_seed(2)
    model = dl.RNNModel(nn.GRU(V, H), vocab_size=V)
    ids = torch.tensor(np.random.default_rng(2).integers(0, V, (B, T)))
    state = random_begin_state("gru", 1, 1, seed=4)
    with torch.no_grad():
        Y, new_state = model(ids, state)
        hs, h = gru_reset_after(
            model.rnn, nn.functional.one_hot(ids.T, V).double(), state[0].double()
        )
        hs, h = hs.float(), h.float()
        Y_manual = model.linear(hs.reshape(T * B, H))
    np.testing.assert_allclose(Y.numpy(), Y_manual.numpy(), **TOL)
    np.testing.assert_allclose(new_state[0].numpy(), h.numpy(), **TOL)


@pytest.mark.parametrize("num_layers, bidirectional", CONFIGS)
@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_rnn_model_begin_state_shapes(kind, num_layers, bidirectional):
    model = dl.RNNModel(make_layer(kind, num_layers, bidirectional), vocab_size=V)
    shape = ((2 if bidirectional else 1) * num_layers, 4, H)
    state = model.begin_state(CPU, batch_size=4)
    states = state if kind == "lstm" else (state,)
    if kind == "lstm":
        assert isinstance(state, tuple) and len(state) == 2
    else:
        assert isinstance(state, torch.Tensor)
    for s in states:
        assert tuple(s.shape) == shape and s.dtype == torch.float32
        assert s.device.type == "cpu" and torch.all(s == 0)
    default = model.begin_state(CPU)  # the book's default batch_size=1
    for s in default if kind == "lstm" else (default,):
        assert tuple(s.shape) == (shape[0], 1, H)
    Y, _ = model(torch.zeros((4, T), dtype=torch.long), state)  # the state fits the layer
    assert tuple(Y.shape) == (T * 4, V)


def test_rnn_model_state_round_trips_through_calls():
    """Feeding two halves with the state carried equals feeding the whole sequence."""
    torch.manual_seed(1)
    model = dl.RNNModel(nn.LSTM(V, H, num_layers=2), vocab_size=V)
    ids = torch.tensor(np.random.default_rng(1).integers(0, V, (B, 2 * T)))
    with torch.no_grad():
        Y, _ = model(ids, model.begin_state(CPU, B))
        Y1, state = model(ids[:, :T], model.begin_state(CPU, B))
        Y2, _ = model(ids[:, T:], state)
    np.testing.assert_allclose(torch.cat([Y1, Y2]).numpy(), Y.numpy(), **TOL)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_rnn_model_rejects_a_batch_first_layer(kind):
    with pytest.raises(ValueError, match="batch_first"):
        dl.RNNModel(make_layer(kind, batch_first=True), vocab_size=V)


def test_rnn_model_is_a_module_with_all_parameters():
    model = dl.RNNModel(nn.LSTM(V, H), vocab_size=V)
    assert isinstance(model, nn.Module)
    names = {name for name, _ in model.named_parameters()}
    assert {
        "rnn.weight_ih_l0",
        "rnn.weight_hh_l0",
        "rnn.bias_ih_l0",
        "rnn.bias_hh_l0",
        "linear.weight",
        "linear.bias",
    } == names
    assert model.vocab_size == V and model.num_hiddens == H


def test_rnn_model_with_a_projected_lstm():
    model = dl.RNNModel(nn.LSTM(V, H, proj_size=4), vocab_size=V)
    Y, _ = model(torch.zeros((B, T), dtype=torch.long), model.begin_state(CPU, B))
    assert tuple(Y.shape) == (T * B, V)
