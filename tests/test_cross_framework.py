"""One model, two frameworks: dl.tensorflow and dl.torch train the same numbers.

From the same NumPy initial weights, five clipped SGD steps of the scratch cells (TFTrainer
with keras SGD vs TorchTrainer) give the same per-step losses and weights; so do the concise
models (tf-keras ``RNN(LSTMCell)`` time-major vs ``nn.LSTM``, Keras ``GRU`` vs ``nn.GRU``) with
the weights mapped between the layouts:

- Keras kernel ``(V, G*H)``, recurrent kernel ``(H, G*H)``, gates as columns; torch
  ``weight_ih`` ``(G*H, V)``, ``weight_hh`` ``(G*H, H)``, gates as rows.
- LSTM gates: Keras i, f, c, o; torch i, f, g, o (the same order). Keras has one bias, torch
  ``b_ih + b_hh``: the Keras bias goes to ``b_ih`` and ``b_hh`` is held at zero (frozen, or
  SGD would move the sum twice as fast and clipping would count the bias twice).
- GRU (Keras reset_after=True is torch's formula): Keras gates z, r, h with a bias ``(2, 3H)``
  of input and recurrent halves; torch gates r, z, n with ``b_ih`` and ``b_hh``.
- Dense kernel ``(H, V)`` is the transpose of Linear's weight ``(V, H)``.
"""
import numpy as np
import pytest

pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

from dl import tensorflow as dtf  # noqa: E402  (before any use of tf.keras)
import tensorflow as tf  # noqa: E402
from torch import nn  # noqa: E402

from dl import reference as ref  # noqa: E402
from dl import torch as dtorch  # noqa: E402

V, H, B, T = 10, 16, 4, 6
TOL = 1e-4
CPU = torch.device("cpu")


def random_batches(n=5, seed=0):
    """``n`` sequential batches ``(X, Y): (B, T) int32`` whose rows continue."""
    ids = np.random.default_rng(seed).integers(0, V, (B, n * T + 1)).astype(np.int32)
    return [(ids[:, i * T:(i + 1) * T], ids[:, i * T + 1:(i + 1) * T + 1]) for i in range(n)]


def initial_params(cell, seed=1):
    """float32 canonical weights (a larger scale than the book's, so the steps move)."""
    return ref.init_params(cell, V, H, np.random.default_rng(seed), scale=0.3, dtype=np.float32)


def tf_losses(trainer, batches):
    state, losses = trainer.begin_state(B), []
    for X, Y in batches:
        state = trainer.train_step(X, Y, state)
        losses.append(trainer.take_loss_sum() / Y.size)
    return losses


def torch_losses(trainer, batches):
    state, losses = trainer.begin_state(B), []
    for X, Y in batches:
        state = trainer.train_step(X, Y, state)
        losses.append(trainer.take_loss_sum() / Y.size)
    return losses


def tf_trainer(net, theta):
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    return dtf.TFTrainer(net, loss, tf.keras.optimizers.SGD(1.0), theta=theta)


def assert_close(name, a, b):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=TOL, atol=TOL, err_msg=name)


# ---------------------------------------------------------------------------------------------
# Scratch cells


@pytest.mark.parametrize("theta", [1.0, 0.2])  # 0.2: clipping active
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_scratch_cells_train_the_same_in_tensorflow_and_pytorch(cell, theta):
    params, batches = initial_params(cell), random_batches()
    names = ref.PARAM_NAMES[cell]
    _, tf_init_state, tf_forward = dtf.CELLS[cell]
    tf_net = dtf.RNNModelScratch(V, H, tf_init_state, tf_forward, lambda v, h: [
        tf.Variable(params[n], name=n) for n in names])
    _, torch_init_state, torch_forward = dtorch.CELLS[cell]
    torch_net = dtorch.RNNModelScratch(V, H, CPU, lambda v, h, d: [
        torch.tensor(params[n], device=d, requires_grad=True) for n in names],
        torch_init_state, torch_forward)

    losses_tf = tf_losses(tf_trainer(tf_net, theta), batches)
    losses_torch = torch_losses(dtorch.TorchTrainer(
        torch_net, nn.CrossEntropyLoss(reduction="none"), 1.0, CPU, theta=theta), batches)

    assert_close("losses", losses_torch, losses_tf)
    assert losses_tf[-1] != losses_tf[0]
    for name, v, p in zip(names, tf_net.trainable_variables, torch_net.params):
        assert_close(name, p.detach().numpy(), v.numpy())
        assert not np.allclose(v.numpy(), params[name])  # every parameter was trained
    # and both are the NumPy reference's numbers
    ref_params, ref_losses = ref.train_steps(
        cell, {n: p.astype(np.float64) for n, p in params.items()}, batches, lr=1.0, theta=theta)
    assert_close("reference losses", losses_torch, ref_losses)
    assert_close("reference W_hq", torch_net.params[-2].detach().numpy(), ref_params["W_hq"])


# ---------------------------------------------------------------------------------------------
# Concise models


KERAS_GATES = {"lstm": "ifco", "gru": "zrh"}
TORCH_GATES = {"lstm": "ifco", "gru": "rzh"}


def reorder(blocks, cell):
    """Keras' gate blocks (a list in Keras order) in torch's order."""
    by_gate = dict(zip(KERAS_GATES[cell], blocks))
    return [by_gate[g] for g in TORCH_GATES[cell]]


def keras_model(cell, seed=2):
    """A built tf RNNModel with weights drawn from NumPy; returns it and those weights."""
    if cell == "lstm":  # the book's concise LSTM
        layer = tf.keras.layers.RNN(tf.keras.layers.LSTMCell(H), time_major=True,
                                    return_sequences=True, return_state=True)
    else:  # reset_after=True, the default: torch's GRU
        layer = tf.keras.layers.GRU(H, time_major=True, return_sequences=True,
                                    return_state=True)
    model = dtf.RNNModel(layer, vocab_size=V)
    model(tf.zeros((1, 1), tf.int32), model.begin_state(batch_size=1))
    rng = np.random.default_rng(seed)
    model.set_weights([(0.3 * rng.standard_normal(w.shape)).astype(np.float32)
                       for w in model.get_weights()])
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
    return {"rnn.weight_ih_l0": w_ih, "rnn.weight_hh_l0": w_hh, "rnn.bias_ih_l0": b_ih,
            "rnn.bias_hh_l0": b_hh, "linear.weight": dense_kernel.T, "linear.bias": dense_bias}


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
    states = [(0.5 * rng.standard_normal((B, H))).astype(np.float32)
              for _ in range(2 if cell == "lstm" else 1)]
    Y_tf, state_tf = tf_net(tf.constant(ids), [tf.constant(s) for s in states])
    torch_state = tuple(torch.tensor(s)[None] for s in states)
    with torch.no_grad():
        Y_torch, state_torch = torch_net(torch.tensor(ids),
                                         torch_state if cell == "lstm" else torch_state[0])
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

    losses_tf = tf_losses(tf_trainer(tf_net, theta), batches)
    losses_torch = torch_losses(dtorch.TorchTrainer(
        torch_net, nn.CrossEntropyLoss(reduction="none"), torch.optim.SGD(trainable, 1.0), CPU,
        theta=theta), batches)

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
