"""One model, three frameworks: dl.tensorflow, dl.torch and dl.jax train the same numbers.

From the same NumPy float32 weights, five clipped SGD steps (lr 1; theta 1 and 0.2, where
clipping is active) of the scratch cells give the same per-step losses and weights in every
pair of frameworks (TFTrainer with keras SGD(1.0), TorchTrainer with a float lr, JaxTrainer),
and each is the NumPy reference's numbers. The concise models give the same logits and states,
and TensorFlow's and PyTorch's train the same, with the weights mapped between the layouts:

- Keras kernel ``(V, G*H)``, recurrent kernel ``(H, G*H)``, gates as columns; torch
  ``weight_ih`` ``(G*H, V)``, ``weight_hh`` ``(G*H, H)``, gates as rows.
- LSTM gates: Keras i, f, c, o; torch i, f, g, o (the same order). Keras has one bias, torch
  ``b_ih + b_hh``: the Keras bias goes to ``b_ih`` and ``b_hh`` is held at zero (frozen, or
  SGD would move the sum twice as fast and clipping would count the bias twice).
- GRU (Keras reset_after=True is torch's formula): Keras gates z, r, h with a bias ``(2, 3H)``
  of input and recurrent halves; torch gates r, z, n with ``b_ih`` and ``b_hh``.
- Dense kernel ``(H, V)`` is the transpose of Linear's weight ``(V, H)``.
- dl.jax layers: ``W_x (V, G*H)``, ``W_h (H, G*H)``, one bias ``b (G*H,)``, gates along the
  last axis (LSTM i, f, o, c; GRU z, r, h, reset before ``W_h`` as in the book); torch's two
  LSTM biases sum to the JAX bias, and Keras ``GRU(reset_after=False)`` (the book's GRU) has
  JAX's layout exactly.

Every test compares two frameworks or more; one whose framework is missing is skipped.
"""

import functools

import numpy as np
import pytest

pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

import tensorflow as tf  # noqa: E402
from torch import nn  # noqa: E402

from dl import reference as ref  # noqa: E402
from dl import tensorflow as dtf  # noqa: E402  (before any use of tf.keras)
from dl import torch as dtorch  # noqa: E402
from training_helpers import B, H, T, V, numpy_params, random_batches  # noqa: E402

try:
    import jax
    import jax.numpy as jnp

    from dl import jax as djax
except ImportError:  # the tests that need JAX skip
    jax = jnp = djax = None

TOL = 1e-4
CPU = torch.device("cpu")
JAX_GATES = {"lstm": "ifoc", "gru": "zrh"}
TORCH_LSTM_GATES = "ifco"  # torch's i, f, g, o


def needs_jax():
    pytest.importorskip("jax")


def losses_of(trainer, batches):
    """Per-batch mean losses (before each update), the state carried across batches."""
    state, losses = trainer.begin_state(B), []
    for X, Y in batches:
        state = trainer.train_step(X, Y, state)
        losses.append(trainer.take_loss_sum() / Y.size)
    return losses


def tf_trainer(net, theta):
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    return dtf.TFTrainer(net, loss, tf.keras.optimizers.SGD(1.0), theta=theta)


def assert_close(name, a, b, tol=TOL):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol, err_msg=name)


# ---------------------------------------------------------------------------------------------
# Scratch cells


def train_tensorflow(cell, params, batches, theta):
    """(per-step losses, trained weights in canonical order) of dl.tensorflow's scratch cell."""
    _, init_state, forward = dtf.CELLS[cell]
    net = dtf.RNNModelScratch(
        V,
        H,
        init_state,
        forward,
        lambda v, h: [tf.Variable(params[n], name=n) for n in ref.PARAM_NAMES[cell]],
    )
    losses = losses_of(tf_trainer(net, theta), batches)
    return losses, [v.numpy() for v in net.trainable_variables]


def train_torch(cell, params, batches, theta):
    _, init_state, forward = dtorch.CELLS[cell]
    net = dtorch.RNNModelScratch(
        V,
        H,
        CPU,
        lambda v, h, d: [
            torch.tensor(params[n], device=d, requires_grad=True) for n in ref.PARAM_NAMES[cell]
        ],
        init_state,
        forward,
    )
    losses = losses_of(
        dtorch.TorchTrainer(net, nn.CrossEntropyLoss(reduction="none"), 1.0, CPU, theta=theta),
        batches,
    )
    return losses, [p.detach().numpy() for p in net.params]


def train_jax(cell, params, batches, theta):
    _, init_state, forward = djax.CELLS[cell]
    net = djax.RNNModelScratch(
        V,
        H,
        jax.random.PRNGKey(0),
        lambda v, h, key: [jnp.asarray(params[n]) for n in ref.PARAM_NAMES[cell]],
        init_state,
        forward,
    )
    losses = losses_of(djax.JaxTrainer(net, 1.0, theta=theta), batches)
    return losses, [np.asarray(p) for p in net.params]


TRAIN = {"tensorflow": train_tensorflow, "torch": train_torch, "jax": train_jax}


@functools.cache
def scratch_run(framework, cell, theta):
    """(losses, weights) of five steps in ``framework``, computed once for every pair."""
    pytest.importorskip(framework)
    return TRAIN[framework](cell, numpy_params(cell), random_batches(), theta)


@pytest.mark.parametrize("theta", [1.0, 0.2])  # 0.2: clipping active
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize(
    "first, second", [("tensorflow", "torch"), ("jax", "tensorflow"), ("jax", "torch")]
)
def test_scratch_cells_train_the_same_in_two_frameworks(first, second, cell, theta):
    (losses_a, params_a), (losses_b, params_b) = (
        scratch_run(first, cell, theta),
        scratch_run(second, cell, theta),
    )
    names, initial = ref.PARAM_NAMES[cell], numpy_params(cell)
    assert_close(f"losses {first}-{second}", losses_a, losses_b)
    assert losses_a[-1] != losses_a[0]
    assert len(params_a) == len(params_b) == len(names)
    for name, a, b in zip(names, params_a, params_b):
        assert_close(f"{name} {first}-{second}", a, b)
        assert not np.allclose(a, initial[name])  # every parameter was trained
    # and both are the NumPy reference's numbers
    ref_params, ref_losses = ref.train_steps(
        cell,
        {n: p.astype(np.float64) for n, p in initial.items()},
        random_batches(),
        lr=1.0,
        theta=theta,
    )
    for framework, losses, params in ((first, losses_a, params_a), (second, losses_b, params_b)):
        assert_close(f"reference losses {framework}", losses, ref_losses)
        for name, p in zip(names, params):
            assert_close(f"reference {name} {framework}", p, ref_params[name])


# ---------------------------------------------------------------------------------------------
# Concise models: TensorFlow and PyTorch


KERAS_GATES = {"lstm": "ifco", "gru": "zrh"}
TORCH_GATES = {"lstm": "ifco", "gru": "rzh"}


def reorder(blocks, cell):
    """Keras' gate blocks (a list in Keras order) in torch's order."""
    by_gate = dict(zip(KERAS_GATES[cell], blocks))
    return [by_gate[g] for g in TORCH_GATES[cell]]


def keras_model(cell, seed=2):
    """A built tf RNNModel with weights drawn from NumPy; returns it and those weights."""
    if cell == "lstm":  # the book's concise LSTM
        layer = tf.keras.layers.RNN(
            tf.keras.layers.LSTMCell(H), time_major=True, return_sequences=True, return_state=True
        )
    else:  # reset_after=True, the default: torch's GRU
        layer = tf.keras.layers.GRU(H, time_major=True, return_sequences=True, return_state=True)
    model = dtf.RNNModel(layer, vocab_size=V)
    model(tf.zeros((1, 1), tf.int32), model.begin_state(batch_size=1))
    rng = np.random.default_rng(seed)
    model.set_weights(
        [(0.3 * rng.standard_normal(w.shape)).astype(np.float32) for w in model.get_weights()]
    )
    return model, layer


def keras_layer_weights(model, layer):
    """(kernel, recurrent_kernel, bias, dense_kernel, dense_bias) as NumPy arrays."""
    kernel, recurrent, bias = layer.get_weights()
    layer_ids = {id(v) for v in layer.trainable_variables}
    dense = [v.numpy() for v in model.trainable_variables if id(v) not in layer_ids]
    dense_kernel = next(d for d in dense if d.ndim == 2)
    dense_bias = next(d for d in dense if d.ndim == 1)
    assert kernel.shape[0] == V and recurrent.shape[0] == H and dense_kernel.shape == (H, V)
    return kernel, recurrent, bias, dense_kernel, dense_bias


def keras_to_torch(cell, kernel, recurrent, bias, dense_kernel, dense_bias):
    """Keras weights -> {torch name: array} of ``nn.LSTM``/``nn.GRU`` plus the Linear layer."""
    gates = len(KERAS_GATES[cell])
    w_ih = np.concatenate(reorder(np.split(kernel, gates, axis=1), cell), axis=1).T
    w_hh = np.concatenate(reorder(np.split(recurrent, gates, axis=1), cell), axis=1).T
    if cell == "lstm":  # one bias: all of it in b_ih
        b_ih, b_hh = np.concatenate(reorder(np.split(bias, gates), cell)), np.zeros(gates * H)
    else:  # (2, 3H): input and recurrent biases
        b_ih, b_hh = (np.concatenate(reorder(np.split(b, gates), cell)) for b in bias)
    return {
        "rnn.weight_ih_l0": w_ih,
        "rnn.weight_hh_l0": w_hh,
        "rnn.bias_ih_l0": b_ih,
        "rnn.bias_hh_l0": b_hh,
        "linear.weight": dense_kernel.T,
        "linear.bias": dense_bias,
    }


def torch_model(cell, mapped):
    model = dtorch.RNNModel((nn.LSTM if cell == "lstm" else nn.GRU)(V, H), vocab_size=V)
    named = dict(model.named_parameters())
    assert set(named) == set(mapped)
    with torch.no_grad():
        for name, value in mapped.items():
            assert tuple(named[name].shape) == value.shape, name
            named[name].copy_(torch.tensor(value, dtype=torch.float32))
    if cell == "lstm":  # Keras has no second bias: keep b_hh at zero
        model.rnn.bias_hh_l0.requires_grad_(False)
    return model


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_concise_models_give_the_same_logits(cell):
    tf_net, layer = keras_model(cell)
    torch_net = torch_model(cell, keras_to_torch(cell, *keras_layer_weights(tf_net, layer)))
    ids = np.random.default_rng(3).integers(0, V, (B, T)).astype(np.int32)
    rng = np.random.default_rng(4)
    states = [
        (0.5 * rng.standard_normal((B, H))).astype(np.float32)
        for _ in range(2 if cell == "lstm" else 1)
    ]
    Y_tf, state_tf = tf_net(tf.constant(ids), [tf.constant(s) for s in states])
    torch_state = tuple(torch.tensor(s)[None] for s in states)
    with torch.no_grad():
        Y_torch, state_torch = torch_net(
            torch.tensor(ids), torch_state if cell == "lstm" else torch_state[0]
        )
    assert tuple(Y_torch.shape) == tuple(Y_tf.shape) == (T * B, V)
    np.testing.assert_allclose(Y_torch.numpy(), Y_tf.numpy(), rtol=1e-5, atol=1e-5)
    state_torch = state_torch if cell == "lstm" else (state_torch,)
    for s_torch, s_tf in zip(state_torch, state_tf):  # LSTM: (h, c) in both
        np.testing.assert_allclose(s_torch[0].numpy(), np.asarray(s_tf), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("theta", [1.0, 0.2])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_concise_models_train_the_same_in_tensorflow_and_pytorch(cell, theta):
    batches = random_batches()
    tf_net, layer = keras_model(cell)
    initial = keras_layer_weights(tf_net, layer)
    torch_net = torch_model(cell, keras_to_torch(cell, *initial))
    trainable = [p for p in torch_net.parameters() if p.requires_grad]

    losses_tf = losses_of(tf_trainer(tf_net, theta), batches)
    losses_torch = losses_of(
        dtorch.TorchTrainer(
            torch_net,
            nn.CrossEntropyLoss(reduction="none"),
            torch.optim.SGD(trainable, 1.0),
            CPU,
            theta=theta,
        ),
        batches,
    )

    assert_close("losses", losses_torch, losses_tf)
    assert losses_tf[-1] != losses_tf[0]
    expected = keras_to_torch(cell, *keras_layer_weights(tf_net, layer))
    named = dict(torch_net.named_parameters())
    for name, value in expected.items():
        assert_close(name, named[name].detach().numpy(), value)
    moved = keras_to_torch(cell, *initial)
    for name, value in moved.items():
        if named[name].requires_grad:
            assert not np.allclose(named[name].detach().numpy(), value), name
    if cell == "lstm":
        assert torch.all(torch_net.rnn.bias_hh_l0 == 0)


# ---------------------------------------------------------------------------------------------
# Concise models: JAX against PyTorch and TensorFlow


def jax_lstm_from_torch(named):
    """torch ``RNNModel(nn.LSTM)`` weights -> dl.jax ``RNNModel(LSTM)`` params."""
    blocks = lambda w: dict(zip(TORCH_LSTM_GATES, np.split(w, 4, axis=0)))
    w_ih, w_hh = blocks(named["rnn.weight_ih_l0"]), blocks(named["rnn.weight_hh_l0"])
    bias = blocks(named["rnn.bias_ih_l0"] + named["rnn.bias_hh_l0"])
    order = JAX_GATES["lstm"]
    return {
        "rnn": {
            "W_x": jnp.asarray(np.concatenate([w_ih[g].T for g in order], axis=1)),
            "W_h": jnp.asarray(np.concatenate([w_hh[g].T for g in order], axis=1)),
            "b": jnp.asarray(np.concatenate([bias[g] for g in order])),
        },
        "dense": {
            "W": jnp.asarray(named["linear.weight"].T),
            "b": jnp.asarray(named["linear.bias"]),
        },
    }


def torch_named(model):
    return {name: p.detach().numpy().copy() for name, p in model.named_parameters()}


def test_concise_lstm_equals_torch_lstm():
    """dl.jax's LSTM layer (gates i, f, o, c) with torch's weights (i, f, g, o) and one bias."""
    needs_jax()
    torch.manual_seed(2)
    torch_net = dtorch.RNNModel(nn.LSTM(V, H), vocab_size=V)
    jax_net = djax.RNNModel(djax.LSTM(V, H), V, jax.random.PRNGKey(0))
    jax_net.params = jax_lstm_from_torch(torch_named(torch_net))  # b_ih + b_hh as one bias
    ids = np.random.default_rng(3).integers(0, V, (B, T)).astype(np.int32)
    rng = np.random.default_rng(4)
    state = [(0.5 * rng.standard_normal((B, H))).astype(np.float32) for _ in range(2)]
    Y_jax, state_jax = jax_net(jnp.asarray(ids), tuple(map(jnp.asarray, state)))
    with torch.no_grad():
        Y_torch, state_torch = torch_net(
            torch.tensor(ids), tuple(torch.tensor(s)[None] for s in state)
        )
    assert_close("logits", Y_jax, Y_torch.numpy(), 1e-5)
    for name, s_jax, s_torch in zip("HC", state_jax, state_torch):
        assert_close(name, s_jax, s_torch[0].numpy(), 1e-5)


def test_concise_gru_equals_keras_gru_without_reset_after():
    """Keras ``GRU(reset_after=False)`` is the book's GRU; its weights are JAX's as they are."""
    needs_jax()
    layer = tf.keras.layers.GRU(
        H, reset_after=False, time_major=True, return_sequences=True, return_state=True
    )
    tf_net = dtf.RNNModel(layer, vocab_size=V)
    tf_net(tf.zeros((1, 1), tf.int32), tf_net.begin_state(batch_size=1))
    rng = np.random.default_rng(5)
    tf_net.set_weights(
        [(0.3 * rng.standard_normal(w.shape)).astype(np.float32) for w in tf_net.get_weights()]
    )
    kernel, recurrent, bias = layer.get_weights()
    assert kernel.shape == (V, 3 * H) and recurrent.shape == (H, 3 * H) and bias.shape == (3 * H,)
    layer_ids = {id(v) for v in layer.trainable_variables}
    dense = [v.numpy() for v in tf_net.trainable_variables if id(v) not in layer_ids]
    dense_kernel = next(d for d in dense if d.ndim == 2)
    dense_bias = next(d for d in dense if d.ndim == 1)

    jax_net = djax.RNNModel(djax.GRU(V, H), V, jax.random.PRNGKey(0))
    jax_net.params = {
        "rnn": {"W_x": jnp.asarray(kernel), "W_h": jnp.asarray(recurrent), "b": jnp.asarray(bias)},
        "dense": {"W": jnp.asarray(dense_kernel), "b": jnp.asarray(dense_bias)},
    }
    ids = np.random.default_rng(3).integers(0, V, (B, T)).astype(np.int32)
    state = (0.5 * np.random.default_rng(4).standard_normal((B, H))).astype(np.float32)
    Y_tf, state_tf = tf_net(tf.constant(ids), [tf.constant(state)])
    Y_jax, (state_jax,) = jax_net(jnp.asarray(ids), (jnp.asarray(state),))
    assert tuple(Y_tf.shape) == tuple(Y_jax.shape) == (T * B, V)
    assert_close("logits", Y_jax, Y_tf.numpy(), 1e-5)
    assert_close("state", state_jax, np.asarray(state_tf[0]), 1e-5)
