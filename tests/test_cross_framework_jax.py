"""One model, three frameworks: dl.jax trains the same numbers as dl.tensorflow and dl.torch.

From the same NumPy float32 weights, five clipped SGD steps (lr 1, theta 0.2) of the scratch
cells give the same per-step losses and weights in JAX (JaxTrainer), TensorFlow (TFTrainer with
keras SGD(1.0)) and PyTorch (TorchTrainer with a float lr). The concise models give the same
logits and states, with the weights mapped between the layouts:

- dl.jax layers: ``W_x (V, G*H)``, ``W_h (H, G*H)``, one bias ``b (G*H,)``, gates along the
  last axis (LSTM i, f, o, c; GRU z, r, h, reset before ``W_h`` as in the book).
- torch ``nn.LSTM``: ``weight_ih (4H, V)`` rows i, f, g, o and two biases whose sum is the
  JAX bias.
- Keras ``GRU(reset_after=False)`` is the book's GRU, with JAX's layout exactly (kernel,
  recurrent kernel, bias ``(3H,)``, gates z, r, h).
"""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
pytest.importorskip("tensorflow")
torch = pytest.importorskip("torch")

from dl import tensorflow as dtf  # noqa: E402  (before any use of tf.keras)
import tensorflow as tf  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from torch import nn  # noqa: E402

from dl import jax as djax  # noqa: E402
from dl import reference as ref  # noqa: E402
from dl import torch as dtorch  # noqa: E402

V, H, B, T = 10, 16, 4, 6
TOL = 1e-4
CPU = torch.device("cpu")
JAX_GATES = {"lstm": "ifoc", "gru": "zrh"}
TORCH_LSTM_GATES = "ifco"  # torch's i, f, g, o


def random_batches(n=5, seed=0):
    """``n`` sequential batches ``(X, Y): (B, T) int32`` whose rows continue."""
    ids = np.random.default_rng(seed).integers(0, V, (B, n * T + 1)).astype(np.int32)
    return [(ids[:, i * T:(i + 1) * T], ids[:, i * T + 1:(i + 1) * T + 1]) for i in range(n)]


def initial_params(cell, seed=1):
    """float32 canonical weights (a larger scale than the book's, so the steps move)."""
    return ref.init_params(cell, V, H, np.random.default_rng(seed), scale=0.3, dtype=np.float32)


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


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_scratch_cells_train_the_same_in_jax_tensorflow_and_pytorch(cell):
    """theta 0.2 clips the first steps (test_jax_training checks theta 1 and 0.2 against the
    reference, test_cross_framework TF against torch with both)."""
    theta = 0.2
    params, batches = initial_params(cell), random_batches()
    names = ref.PARAM_NAMES[cell]
    _, jax_init_state, jax_forward = djax.CELLS[cell]
    jax_net = djax.RNNModelScratch(V, H, jax.random.PRNGKey(0), lambda v, h, key: [
        jnp.asarray(params[n]) for n in names], jax_init_state, jax_forward)
    _, tf_init_state, tf_forward = dtf.CELLS[cell]
    tf_net = dtf.RNNModelScratch(V, H, tf_init_state, tf_forward, lambda v, h: [
        tf.Variable(params[n], name=n) for n in names])
    _, torch_init_state, torch_forward = dtorch.CELLS[cell]
    torch_net = dtorch.RNNModelScratch(V, H, CPU, lambda v, h, d: [
        torch.tensor(params[n], device=d, requires_grad=True) for n in names],
        torch_init_state, torch_forward)

    losses_jax = losses_of(djax.JaxTrainer(jax_net, 1.0, theta=theta), batches)
    losses_tf = losses_of(tf_trainer(tf_net, theta), batches)
    losses_torch = losses_of(dtorch.TorchTrainer(
        torch_net, nn.CrossEntropyLoss(reduction="none"), 1.0, CPU, theta=theta), batches)

    assert_close("losses jax-tf", losses_jax, losses_tf)
    assert_close("losses jax-torch", losses_jax, losses_torch)
    assert losses_jax[-1] != losses_jax[0]
    assert len(jax_net.params) == len(names)
    for name, p, v, t in zip(names, jax_net.params, tf_net.trainable_variables, torch_net.params):
        assert_close(f"{name} jax-tf", p, v.numpy())
        assert_close(f"{name} jax-torch", p, t.detach().numpy())
        assert not np.allclose(np.asarray(p), params[name])  # every parameter was trained
    # and all are the NumPy reference's numbers
    ref_params, ref_losses = ref.train_steps(
        cell, {n: p.astype(np.float64) for n, p in params.items()}, batches, lr=1.0, theta=theta)
    assert_close("reference losses", losses_jax, ref_losses)
    for name, p in zip(names, jax_net.params):
        assert_close(f"reference {name}", p, ref_params[name])


# ---------------------------------------------------------------------------------------------
# Concise models


def jax_lstm_from_torch(named):
    """torch ``RNNModel(nn.LSTM)`` weights -> dl.jax ``RNNModel(LSTM)`` params."""
    blocks = lambda w: dict(zip(TORCH_LSTM_GATES, np.split(w, 4, axis=0)))
    w_ih, w_hh = blocks(named["rnn.weight_ih_l0"]), blocks(named["rnn.weight_hh_l0"])
    bias = blocks(named["rnn.bias_ih_l0"] + named["rnn.bias_hh_l0"])
    order = JAX_GATES["lstm"]
    return {"rnn": {"W_x": jnp.asarray(np.concatenate([w_ih[g].T for g in order], axis=1)),
                    "W_h": jnp.asarray(np.concatenate([w_hh[g].T for g in order], axis=1)),
                    "b": jnp.asarray(np.concatenate([bias[g] for g in order]))},
            "dense": {"W": jnp.asarray(named["linear.weight"].T),
                      "b": jnp.asarray(named["linear.bias"])}}


def torch_named(model):
    return {name: p.detach().numpy().copy() for name, p in model.named_parameters()}


def test_concise_lstm_equals_torch_lstm():
    """dl.jax's LSTM layer (gates i, f, o, c) with torch's weights (i, f, g, o) and one bias."""
    torch.manual_seed(2)
    torch_net = dtorch.RNNModel(nn.LSTM(V, H), vocab_size=V)
    jax_net = djax.RNNModel(djax.LSTM(V, H), V, jax.random.PRNGKey(0))
    jax_net.params = jax_lstm_from_torch(torch_named(torch_net))  # b_ih + b_hh as one bias
    ids = np.random.default_rng(3).integers(0, V, (B, T)).astype(np.int32)
    rng = np.random.default_rng(4)
    state = [(0.5 * rng.standard_normal((B, H))).astype(np.float32) for _ in range(2)]
    Y_jax, state_jax = jax_net(jnp.asarray(ids), tuple(map(jnp.asarray, state)))
    with torch.no_grad():
        Y_torch, state_torch = torch_net(torch.tensor(ids),
                                         tuple(torch.tensor(s)[None] for s in state))
    assert_close("logits", Y_jax, Y_torch.numpy(), 1e-5)
    for name, s_jax, s_torch in zip("HC", state_jax, state_torch):
        assert_close(name, s_jax, s_torch[0].numpy(), 1e-5)


def test_concise_gru_equals_keras_gru_without_reset_after():
    """Keras ``GRU(reset_after=False)`` is the book's GRU; its weights are JAX's as they are."""
    layer = tf.keras.layers.GRU(H, reset_after=False, time_major=True, return_sequences=True,
                                return_state=True)
    tf_net = dtf.RNNModel(layer, vocab_size=V)
    tf_net(tf.zeros((1, 1), tf.int32), tf_net.begin_state(batch_size=1))
    rng = np.random.default_rng(5)
    tf_net.set_weights([(0.3 * rng.standard_normal(w.shape)).astype(np.float32)
                        for w in tf_net.get_weights()])
    kernel, recurrent, bias = layer.get_weights()
    assert kernel.shape == (V, 3 * H) and recurrent.shape == (H, 3 * H) and bias.shape == (3 * H,)
    layer_ids = {id(v) for v in layer.trainable_variables}
    dense = [v.numpy() for v in tf_net.trainable_variables if id(v) not in layer_ids]
    dense_kernel = next(d for d in dense if d.ndim == 2)
    dense_bias = next(d for d in dense if d.ndim == 1)

    jax_net = djax.RNNModel(djax.GRU(V, H), V, jax.random.PRNGKey(0))
    jax_net.params = {"rnn": {"W_x": jnp.asarray(kernel), "W_h": jnp.asarray(recurrent),
                              "b": jnp.asarray(bias)},
                      "dense": {"W": jnp.asarray(dense_kernel), "b": jnp.asarray(dense_bias)}}
    ids = np.random.default_rng(3).integers(0, V, (B, T)).astype(np.int32)
    state = (0.5 * np.random.default_rng(4).standard_normal((B, H))).astype(np.float32)
    Y_tf, state_tf = tf_net(tf.constant(ids), [tf.constant(state)])
    Y_jax, (state_jax,) = jax_net(jnp.asarray(ids), (jnp.asarray(state),))
    assert tuple(Y_tf.shape) == tuple(Y_jax.shape) == (T * B, V)
    assert_close("logits", Y_jax, Y_tf.numpy(), 1e-5)
    assert_close("state", state_jax, np.asarray(state_tf[0]), 1e-5)
