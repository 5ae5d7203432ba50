"""Deep and bidirectional recurrent layers through the book's RNNModel (chapters 9.3 and 9.4):
TensorFlow ``RNN(StackedRNNCells([...]), time_major=True)`` and PyTorch ``num_layers=2`` /
``bidirectional=True`` give the layers' own outputs and train."""

import numpy as np
import pytest

from training_helpers import B, H, T, V, random_batches

# ------------------------------------------------------------------------------- TensorFlow


def tf_stacked_model(kinds, seed=0):
    from dl import tensorflow as dl  # noqa: I001 (first: makes tf.keras tf-keras)
    import tensorflow as tf

    make = {
        "lstm": lambda: tf.keras.layers.LSTMCell(H),
        "gru": lambda: tf.keras.layers.GRUCell(H),
        "gru-reset-before": lambda: tf.keras.layers.GRUCell(H, reset_after=False),
        "simplernn": lambda: tf.keras.layers.SimpleRNNCell(H),
    }
    layer = tf.keras.layers.RNN(
        tf.keras.layers.StackedRNNCells([make[k]() for k in kinds]),
        time_major=True,
        return_sequences=True,
        return_state=True,
    )
    model = dl.RNNModel(layer, V)
    model(np.zeros((1, 1), np.int32), model.begin_state(1))
    rng = np.random.default_rng(seed)
    model.set_weights(
        [(0.3 * rng.standard_normal(w.shape)).astype(np.float32) for w in model.get_weights()]
    )
    return model


TF_STACKS = [("lstm", "lstm"), ("gru", "gru"), ("gru-reset-before", "simplernn", "lstm")]


@pytest.mark.parametrize("kinds", TF_STACKS)
def test_tensorflow_stacked_cells_compiled_equal_the_layers_own_call(kinds):
    tf = pytest.importorskip("tensorflow")
    from dl.tensorflow import unrolled

    model = tf_stacked_model(kinds)
    assert unrolled.supports(model.rnn)  # the compiled call takes the unrolled fast path
    X = random_batches(1)[0][0]
    state = [
        tf.random.normal(tf.shape(s), seed=i)
        for i, s in enumerate(tf.nest.flatten(model.begin_state(B)))
    ]
    state = tf.nest.pack_sequence_as(model.begin_state(B), state)
    Y, *layer_state = model.rnn(tf.one_hot(X.T, V), initial_state=state)  # Keras' own call
    expected = model.dense(tf.reshape(Y, (-1, H)))
    logits, compiled_state = tf.function(model.call)(X, state)
    assert logits.shape == (T * B, V)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert tf.nest.map_structure(lambda t: t.shape, compiled_state) == tf.nest.map_structure(
        lambda t: t.shape, layer_state
    )
    for ours, theirs in zip(tf.nest.flatten(compiled_state), tf.nest.flatten(layer_state)):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


def test_tensorflow_stacked_begin_state_is_one_entry_per_layer():
    pytest.importorskip("tensorflow")
    state = tf_stacked_model(("lstm", "gru")).begin_state(3)
    assert len(state) == 2 and len(state[0]) == 2 and state[1].shape == (3, H)
    assert all(float(abs(s).numpy().max()) == 0 for s in [*state[0], state[1]])


@pytest.mark.parametrize("kinds", TF_STACKS[:2])
def test_tensorflow_stacked_training_compiled_equals_eager(kinds):
    tf = pytest.importorskip("tensorflow")
    from dl import tensorflow as dl

    def trainer(model, compile):
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
        return dl.TFTrainer(model, loss, tf.keras.optimizers.SGD(1.0), None, compile=compile)

    losses, weights = [], []
    for compile in (True, False):
        model, batches = tf_stacked_model(kinds), random_batches()
        before = [w.copy() for w in model.get_weights()]
        run, state, run_losses = trainer(model, compile), None, []
        for X, Y in batches:
            state = run.train_step(X, Y, state if state is not None else run.begin_state(B))
            run_losses.append(run.take_loss_sum() / Y.size)
        losses.append(run_losses)
        weights.append(model.get_weights())
        assert all(not np.allclose(b, a) for b, a in zip(before, model.get_weights()))
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    for compiled, eager in zip(*weights):
        np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-5)
    assert losses[0][-1] < losses[0][0]


# ---------------------------------------------------------------------------------- PyTorch

TORCH_LAYERS = [("LSTM", 2, False), ("GRU", 2, True), ("RNN", 1, True), ("LSTM", 2, True)]


@pytest.mark.parametrize("kind, num_layers, bidirectional", TORCH_LAYERS)
def test_torch_deep_and_bidirectional_layers_equal_the_layers_own_output(
    kind, num_layers, bidirectional
):
    torch = pytest.importorskip("torch")
    from dl import torch as dl

    torch.manual_seed(0)
    layer = getattr(torch.nn, kind)(V, H, num_layers=num_layers, bidirectional=bidirectional)
    model = dl.RNNModel(layer, V)
    X = torch.from_numpy(random_batches(1)[0][0]).long()
    state = model.begin_state(device="cpu", batch_size=B)
    directions = 2 if bidirectional else 1
    shapes = [s.shape for s in (state if kind == "LSTM" else (state,))]
    assert shapes == [(directions * num_layers, B, H)] * len(shapes)
    logits, new_state = model(X, state)
    Y, expected_state = layer(torch.nn.functional.one_hot(X.T, V).float(), state)
    torch.testing.assert_close(logits, model.linear(Y.reshape(-1, directions * H)))
    assert logits.shape == (T * B, V)
    for ours, theirs in zip(
        new_state if kind == "LSTM" else (new_state,),
        expected_state if kind == "LSTM" else (expected_state,),
    ):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("kind, num_layers, bidirectional", TORCH_LAYERS[:2])
def test_torch_deep_and_bidirectional_models_train_every_parameter(kind, num_layers, bidirectional):
    torch = pytest.importorskip("torch")
    from dl import torch as dl

    torch.manual_seed(0)
    model = dl.RNNModel(
        getattr(torch.nn, kind)(V, H, num_layers=num_layers, bidirectional=bidirectional), V
    )
    before = [p.detach().clone() for p in model.parameters()]
    trainer = dl.TorchTrainer(
        model,
        torch.nn.CrossEntropyLoss(reduction="none"),
        torch.optim.SGD(model.parameters(), 1.0),
        "cpu",
    )
    state, losses = trainer.begin_state(B), []
    for X, Y in random_batches():
        state = trainer.train_step(X, Y, state)
        losses.append(trainer.take_loss_sum() / Y.size)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert all(not torch.equal(b, a) for b, a in zip(before, model.parameters()))


@pytest.mark.parametrize("merge_mode", ["concat", "sum"])
def test_tensorflow_bidirectional_layer_equals_its_own_call_and_trains(merge_mode):
    from dl import tensorflow as dl  # noqa: I001 (first: makes tf.keras tf-keras)
    import tensorflow as tf

    layer = tf.keras.layers.Bidirectional(
        tf.keras.layers.LSTM(H, time_major=True, return_sequences=True, return_state=True),
        merge_mode=merge_mode,
    )
    model = dl.RNNModel(layer, V)
    state = model.begin_state(B)
    assert [tuple(s.shape) for s in state] == [(B, H)] * 4  # forward H, C, backward H, C
    X, Y = random_batches(1)[0]
    logits, new_state = model(X, state)
    outputs, *layer_state = layer(tf.one_hot(X.T, V), initial_state=state)
    width = 2 * H if merge_mode == "concat" else H
    np.testing.assert_allclose(logits, model.dense(tf.reshape(outputs, (-1, width))), rtol=1e-6)
    for ours, theirs in zip(new_state, layer_state):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    trainer = dl.TFTrainer(model, loss, tf.keras.optimizers.SGD(1.0), None)
    before = [w.copy() for w in model.get_weights()]
    trainer.train_step(X, Y, state)
    assert np.isfinite(trainer.take_loss_sum())
    assert all(not np.allclose(b, a) for b, a in zip(before, model.get_weights()))


def test_tensorflow_bidirectional_without_merging_is_refused():
    from dl import tensorflow as dl  # noqa: I001 (first: makes tf.keras tf-keras)
    import tensorflow as tf
    from dl.errors import InputError

    layer = tf.keras.layers.Bidirectional(
        tf.keras.layers.LSTM(H, time_major=True, return_sequences=True, return_state=True),
        merge_mode=None,
    )
    with pytest.raises(InputError, match="merge_mode='concat'"):
        dl.RNNModel(layer, V)
