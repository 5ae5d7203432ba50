"""What only dl.tensorflow does in training: compiled and eager TFTrainer steps, IndexedSlices
in grad_clipping, distribution strategies, the eager fallback, train_dl's output and which
Keras ``tf.keras`` means. What every framework does the same (reference training, clipping,
bad inputs, divergence, predict_dl) is in test_training.py.

Sizes are tiny (vocab ~7-25, hidden 8-16, a few steps); anything that starts a fresh Python
process is marked slow.
"""

import random
import warnings

import numpy as np
import pytest
import tensorflow as tf

from dl import reference as ref
from dl import tensorflow as dl  # first: makes tf.keras tf-keras in this process
from dl.train import DivergedError
from training_helpers import (
    H,
    T,
    V,
    assert_weights_close,
    check_book_output,
    global_norm,
    numpy_params,
    random_batches,
    run_fresh,
    summary_line,
    tiny_loader,
    train_steps,
)

BOOK_DEVICE = dl.try_gpu()._device_name  # what train_dl's summary line names


def scratch_model(cell, params, forward_fn=None, vocab_size=V):
    _, init_state, forward = dl.CELLS[cell]
    return dl.RNNModelScratch(
        vocab_size,
        H,
        init_state,
        forward_fn or forward,
        lambda v, h: [tf.Variable(params[name], name=name) for name in ref.PARAM_NAMES[cell]],
    )


def keras_layer(kind):
    if kind == "lstm":
        return tf.keras.layers.LSTM(H, time_major=True, return_sequences=True, return_state=True)
    if kind == "rnn(lstmcell)":
        return tf.keras.layers.RNN(
            tf.keras.layers.LSTMCell(H), time_major=True, return_sequences=True, return_state=True
        )
    if kind == "gru-reset-before":
        return tf.keras.layers.GRU(
            H, time_major=True, return_sequences=True, return_state=True, reset_after=False
        )
    if kind == "simplernn":
        return tf.keras.layers.SimpleRNN(
            H, time_major=True, return_sequences=True, return_state=True
        )
    return tf.keras.layers.GRU(H, time_major=True, return_sequences=True, return_state=True)


def concise_model(kind, seed=2, vocab_size=V):
    """An RNNModel built eagerly and given weights drawn from NumPy (reproducible)."""
    model = dl.RNNModel(keras_layer(kind), vocab_size=vocab_size)
    model(tf.zeros((1, 1), tf.int32), model.begin_state(batch_size=1))
    rng = np.random.default_rng(seed)
    model.set_weights(
        [(0.3 * rng.standard_normal(w.shape)).astype(np.float32) for w in model.get_weights()]
    )
    return model


def sgd_trainer(net, compile=True, strategy=None, theta=1.0, lr=1.0):
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
    return dl.TFTrainer(
        net, loss, tf.keras.optimizers.SGD(lr), strategy, theta=theta, compile=compile
    )


def weights(net):
    return [v.numpy() for v in net.trainable_variables]


# ---------------------------------------------------------------------------------------------
# (a) compiled and eager steps agree


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_scratch_compiled_and_eager_steps_agree(cell):
    params, batches = numpy_params(cell), random_batches()
    compiled, eager = scratch_model(cell, params), scratch_model(cell, params)
    losses_compiled = train_steps(sgd_trainer(compiled, compile=True), batches)
    losses_eager = train_steps(sgd_trainer(eager, compile=False), batches)
    np.testing.assert_allclose(losses_compiled, losses_eager, rtol=1e-5, atol=1e-5)
    assert_weights_close(weights(compiled), weights(eager), 1e-5)
    for before, after in zip((params[n] for n in ref.PARAM_NAMES[cell]), weights(compiled)):
        assert not np.allclose(before, after)  # every parameter was trained


@pytest.mark.parametrize("kind", ["lstm", "rnn(lstmcell)", "gru", "gru-reset-before", "simplernn"])
def test_concise_compiled_and_eager_steps_agree(kind):
    batches = random_batches()
    compiled, eager = concise_model(kind), concise_model(kind)
    before = weights(compiled)
    assert_weights_close(before, weights(eager), 0)
    losses_compiled = train_steps(sgd_trainer(compiled, compile=True), batches)
    losses_eager = train_steps(sgd_trainer(eager, compile=False), batches)
    np.testing.assert_allclose(losses_compiled, losses_eager, rtol=1e-5, atol=1e-5)
    assert_weights_close(weights(compiled), weights(eager), 1e-5)
    assert all(not np.allclose(b, a) for b, a in zip(before, weights(compiled)))


def test_train_epoch_dl_compiled_and_eager_agree():
    loader, vocab = tiny_loader()
    params = numpy_params("lstm", vocab_size=len(vocab))
    results = {}
    for compile in (True, False):
        net = scratch_model("lstm", params, vocab_size=len(vocab))
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
        random.seed(0)  # the same random offset for the epoch
        ppl, speed = dl.train_epoch_dl(
            net, loader, loss, tf.keras.optimizers.SGD(1.0), False, compile=compile
        )
        assert speed > 0 and 1 < ppl < len(vocab) * 2
        results[compile] = ppl, weights(net)
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=1e-5)
    assert_weights_close(results[True][1], results[False][1], 1e-5)
    assert dl.train_epoch_ch8 is dl.train_epoch_dl


# ---------------------------------------------------------------------------------------------
# (b) gradient clipping of IndexedSlices


def test_grad_clipping_of_indexed_slices():
    table = tf.Variable(np.full((5, 3), 2.0, np.float32))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.gather(table, [0, 1, 1]) * 10.0)
    (grad,) = tape.gradient(loss, [table])
    assert isinstance(grad, tf.IndexedSlices)
    (clipped,) = dl.grad_clipping([grad], 2.0)
    assert tuple(clipped.shape) == (5, 3)
    assert global_norm([clipped]) == pytest.approx(2.0, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# (c) MirroredStrategy over two logical CPUs equals one device


def run_python(code):
    """``code`` in a fresh interpreter without TF_USE_LEGACY_KERAS; the JSON after 'RESULT:'."""
    return run_fresh(code, unset=("TF_USE_LEGACY_KERAS",), timeout=240)


MIRRORED = """
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

from dl import reference as ref
from dl import tensorflow as dl

V, H, B, T = 10, 16, 4, 6
rng = np.random.default_rng(0)
params = ref.init_params("lstm", V, H, rng, scale=0.3, dtype=np.float32)
ids = rng.integers(0, V, (B, 4 * T + 1)).astype(np.int32)
batches = [(ids[:, i * T:(i + 1) * T], ids[:, i * T + 1:(i + 1) * T + 1]) for i in range(4)]

def scratch():
    return dl.RNNModelScratch(V, H, dl.init_lstm_state, dl.lstm, lambda v, h: [
        tf.Variable(params[n]) for n in ref.PARAM_NAMES["lstm"]])

def concise():
    model = dl.RNNModel(tf.keras.layers.LSTM(H, time_major=True, return_sequences=True,
                                             return_state=True), vocab_size=V)
    model(tf.zeros((1, 1), tf.int32), model.begin_state(1))
    weights_rng = np.random.default_rng(1)  # the same weights every time
    model.set_weights([(0.3 * weights_rng.standard_normal(w.shape)).astype(np.float32)
                       for w in model.get_weights()])
    return model

def run(strategy, make):
    with strategy.scope():
        net = make()
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
        trainer = dl.TFTrainer(net, loss, tf.keras.optimizers.SGD(1.0), strategy)
    state, losses = trainer.begin_state(B), []
    for X, Y in batches:
        state = trainer.train_step(X, Y, state)
        losses.append(trainer.take_loss_sum() / Y.size)
    return {"losses": losses, "weights": [v.numpy().tolist() for v in net.trainable_variables]}

mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
out = {"replicas": mirrored.num_replicas_in_sync}
for name, make in [("scratch", scratch), ("concise", concise)]:
    out[name] = {"one": run(tf.distribute.get_strategy(), make), "two": run(mirrored, make)}
with mirrored.scope():
    trainer = dl.TFTrainer(scratch(), tf.keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="none"), tf.keras.optimizers.SGD(1.0), mirrored)
try:
    trainer.begin_state(3)
    out["odd_batch_error"] = None
except ValueError as err:
    out["odd_batch_error"] = str(err)
print("RESULT:" + json.dumps(out))
"""


@pytest.mark.slow
def test_mirrored_strategy_on_two_cpus_matches_one_device():
    out = run_python(MIRRORED)
    assert out["replicas"] == 2
    assert "divisible" in out["odd_batch_error"]  # batch 3 over 2 replicas is refused
    for name in ("scratch", "concise"):
        one, two = out[name]["one"], out[name]["two"]
        np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-4, atol=1e-4, err_msg=name)
        assert_weights_close(
            [np.array(w) for w in two["weights"]], [np.array(w) for w in one["weights"]], 1e-4
        )


# ---------------------------------------------------------------------------------------------
# (d) what compiles, and the eager fallback


class Counted:
    """Wraps a forward function and counts its Python calls (once per trace when compiled)."""

    def __init__(self, fn, name):
        self.fn, self.calls, self.__name__ = fn, 0, name

    def __call__(self, inputs, state, params):
        self.calls += 1
        return self.fn(inputs, state, params)


def lstm_with_numpy(inputs, state, params):
    np.asarray(inputs[0].numpy())  # only possible eagerly
    return dl.lstm(inputs, state, params)


def lstm_with_tf_shape(inputs, state, params):
    num_steps = tf.shape(inputs)[0]
    outputs, state = dl.lstm(inputs, state, params)
    return tf.reshape(outputs, (num_steps * tf.shape(state[0])[0], -1)), state


def lstm_with_static_shape(inputs, state, params):
    num_steps, batch_size, vocab_size = inputs.shape  # needs one tensor
    outputs, state = dl.lstm(tf.unstack(inputs, num=num_steps), state, params)
    return tf.reshape(outputs, (num_steps * batch_size, vocab_size)), state


def lstm_with_scan(inputs, state, params):
    W_xi, W_hi, b_i, W_xf, W_hf, b_f, W_xo, W_ho, b_o, W_xc, W_hc, b_c, W_hq, b_q = params

    def step(carry, X):
        H_, C = carry
        I = tf.sigmoid(X @ W_xi + H_ @ W_hi + b_i)
        F = tf.sigmoid(X @ W_xf + H_ @ W_hf + b_f)
        O = tf.sigmoid(X @ W_xo + H_ @ W_ho + b_o)
        C = F * C + I * tf.tanh(X @ W_xc + H_ @ W_hc + b_c)
        return O * tf.tanh(C), C

    Hs, Cs = tf.scan(step, inputs, initializer=tuple(state))
    return tf.reshape(Hs, (-1, W_hq.shape[0])) @ W_hq + b_q, (Hs[-1], Cs[-1])


@pytest.fixture
def restore_variable_scope():
    """A tf.scan that fails while traced leaves TF's global variable scope with a caching
    device (scan sets it without try/finally), after which creating a variable under any
    strategy scope raises; reset it so later tests are unaffected."""
    yield
    tf.function(
        lambda: tf.compat.v1.get_variable_scope().set_caching_device(None)
    ).get_concrete_function()


def train_counting_calls(trainer, batches, forward):
    """Like :func:`train_steps`, also returning ``forward.calls`` after each step: constant
    after the first step when compiled (Python runs only while tracing), growing when eager."""
    state, losses, calls = trainer.begin_state(batches[0][0].shape[0]), [], []
    for X, Y in batches:
        state = trainer.train_step(X, Y, state)
        losses.append(trainer.take_loss_sum() / Y.size)
        calls.append(forward.calls)
    return losses, calls


def eager_reference(batches, params):
    net = scratch_model("lstm", params)
    return train_steps(sgd_trainer(net, compile=False), batches), weights(net)


def test_untraceable_forward_falls_back_to_eager_with_a_warning_and_trains():
    params, batches = numpy_params("lstm"), random_batches()
    forward = Counted(lstm_with_numpy, "lstm_with_numpy")
    net = scratch_model("lstm", params, forward)
    trainer = sgd_trainer(net, compile=True)
    with pytest.warns(RuntimeWarning, match="could not be compiled") as record:
        losses, calls = train_counting_calls(trainer, batches, forward)
    messages = [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1, messages
    assert "lstm_with_numpy" in messages[0]  # names the function
    assert "eager" in messages[0]
    assert all(b > a for a, b in zip(calls, calls[1:])), calls  # it ran eagerly, every step
    expected_losses, expected_weights = eager_reference(batches, params)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5, atol=1e-5)
    assert_weights_close(weights(net), expected_weights, 1e-5)


class ReadersScratchModel:
    """The rnn-scratch chapter's own ``RNNModelScratch`` (not dl's): it hands ``forward_fn`` one
    time-major tensor, whose ``for X in inputs`` loop AutoGraph cannot trace into a list."""

    def __init__(self, vocab_size, num_hiddens, init_state, forward_fn, get_params):
        self.vocab_size, self.num_hiddens = vocab_size, num_hiddens
        self.init_state, self.forward_fn = init_state, forward_fn
        self.trainable_variables = get_params(vocab_size, num_hiddens)

    def __call__(self, X, state):
        X = tf.cast(tf.one_hot(tf.transpose(X), self.vocab_size), tf.float32)
        return self.forward_fn(X, state, self.trainable_variables)

    def begin_state(self, batch_size, *args, **kwargs):
        return self.init_state(batch_size, self.num_hiddens)


def test_a_readers_own_untraceable_model_trains_eagerly_with_a_warning():
    def rnn(inputs, state, params):  # the chapter's, as printed
        W_xh, W_hh, b_h, W_hq, b_q = params
        (H,) = state
        outputs = []
        for X in inputs:
            X = tf.reshape(X, [-1, W_xh.shape[0]])
            H = tf.tanh(tf.matmul(X, W_xh) + tf.matmul(H, W_hh) + b_h)
            outputs.append(tf.matmul(H, W_hq) + b_q)
        return tf.concat(outputs, axis=0), (H,)

    net = ReadersScratchModel(V, H, dl.init_rnn_state, rnn, dl.get_rnn_params)
    before = weights(net)
    with pytest.warns(RuntimeWarning, match="rnn could not be compiled") as record:
        losses = train_steps(sgd_trainer(net, compile=True), random_batches(n=2))
    assert "let ReadersScratchModel hand the forward function a list" in str(record[0].message)
    assert all(np.isfinite(losses)) and not np.allclose(weights(net)[0], before[0])


def test_eager_fallback_warning_says_why():
    net = scratch_model("lstm", numpy_params("lstm"), lstm_with_numpy)
    with pytest.warns(RuntimeWarning, match="could not be compiled") as record:
        train_steps(sgd_trainer(net, compile=True), random_batches(n=1))
    message = str(record[0].message)
    assert "has no attribute 'numpy'" in message, message


@pytest.mark.parametrize(
    "forward_fn",
    [lstm_with_tf_shape, lstm_with_static_shape, lstm_with_scan],
    ids=["tf.shape", "inputs.shape", "tf.scan"],
)
def test_forward_needing_one_tensor_still_compiles(forward_fn, restore_variable_scope):
    params, batches = numpy_params("lstm"), random_batches()  # B=4 != T=6
    forward = Counted(forward_fn, forward_fn.__name__)
    net = scratch_model("lstm", params, forward)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no eager fallback
        losses, calls = train_counting_calls(sgd_trainer(net, compile=True), batches, forward)
    assert calls[-1] == calls[0], calls  # traced once, not run per step
    expected_losses, expected_weights = eager_reference(batches, params)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5, atol=1e-5)
    assert_weights_close(weights(net), expected_weights, 1e-5)


def test_scan_forward_compiles_correctly_when_batch_size_equals_num_steps(restore_variable_scope):
    """With batch_size == num_steps a scan over a list of steps also traces (scanning the
    batch axis): the trainer must notice the numbers differ and give the scan one tensor."""
    params, batches = numpy_params("lstm"), random_batches(batch_size=T, num_steps=T)
    forward = Counted(lstm_with_scan, "lstm_with_scan")
    net = scratch_model("lstm", params, forward)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        losses, calls = train_counting_calls(sgd_trainer(net, compile=True), batches, forward)
    assert calls[-1] == calls[0], calls
    expected_losses, expected_weights = eager_reference(batches, params)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-5, atol=1e-5)
    assert_weights_close(weights(net), expected_weights, 1e-5)


def test_failed_trace_attempt_leaves_the_process_usable(restore_variable_scope):
    net = scratch_model("lstm", numpy_params("lstm"), lstm_with_scan)
    train_steps(sgd_trainer(net, compile=True), random_batches(n=1))  # B=4 != T=6: list fails
    # tf.scan leaves a caching device behind when its trace fails; with one left, creating a
    # variable under a strategy scope raises NotImplementedError for the rest of the process
    assert tf.compat.v1.get_variable_scope().caching_device is None
    with tf.distribute.OneDeviceStrategy("/CPU:0").scope():
        assert float(tf.Variable(1.0).numpy()) == 1.0


# ---------------------------------------------------------------------------------------------
# (e) bad inputs and divergence


@pytest.fixture
def small_setup():
    loader, vocab = tiny_loader()
    net = scratch_model("lstm", numpy_params("lstm", vocab_size=len(vocab)), vocab_size=len(vocab))
    return net, loader, vocab


def test_train_dl_accepts_integer_lr(small_setup, capsys):
    net, loader, vocab = small_setup
    before = weights(net)
    dl.train_dl(net, loader, vocab, 1, 1, None)
    assert "perplexity" in capsys.readouterr().out
    assert all(not np.allclose(b, a) for b, a in zip(before, weights(net)))


def test_nan_weights_do_not_make_the_forward_look_untraceable(small_setup, capsys):
    net, loader, vocab = small_setup
    for v in net.trainable_variables:
        v.assign(tf.fill(v.shape, np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(DivergedError):
            dl.train_dl(net, loader, vocab, 1, 3, None)


# ---------------------------------------------------------------------------------------------
# (f) train_dl end to end, the book's names


def test_train_dl_scratch_as_in_the_seed(capsys):
    loader, vocab = tiny_loader()
    strategy = tf.distribute.OneDeviceStrategy(dl.try_gpu()._device_name)
    with strategy.scope():
        model = dl.RNNModelScratch(len(vocab), H, dl.init_lstm_state, dl.lstm, dl.get_lstm_params)
    before = weights(model)
    dl.train_dl(model, loader, vocab, 1, 3, strategy)
    check_book_output(capsys.readouterr().out, vocab, BOOK_DEVICE)
    assert all(not np.allclose(b, a) for b, a in zip(before, weights(model)))


@pytest.mark.parametrize("compile", [True, False])
def test_train_dl_concise_as_in_the_seed(capsys, compile):
    loader, vocab = tiny_loader()
    lstm_cell = tf.keras.layers.LSTMCell(H, kernel_initializer="glorot_uniform")
    lstm_layer = tf.keras.layers.RNN(
        lstm_cell, time_major=True, return_sequences=True, return_state=True
    )
    strategy = tf.distribute.OneDeviceStrategy(dl.try_gpu()._device_name)
    with strategy.scope():
        model = dl.RNNModel(lstm_layer, vocab_size=len(vocab))
    dl.train_dl(model, loader, vocab, 1, 3, strategy, compile=compile)
    check_book_output(capsys.readouterr().out, vocab, BOOK_DEVICE)


def test_train_dl_without_strategy_scope_and_random_iter(capsys):
    loader, vocab = tiny_loader(use_random_iter=True)
    model = dl.RNNModelScratch(len(vocab), H, dl.init_gru_state, dl.gru, dl.get_gru_params)
    strategy = tf.distribute.OneDeviceStrategy("/CPU:0")  # model not built in its scope
    dl.train_ch8(model, loader, vocab, 1, 3, strategy, use_random_iter=True)
    check_book_output(capsys.readouterr().out, vocab, BOOK_DEVICE)


def test_train_dl_prints_a_continuation_every_ten_epochs(capsys):
    loader, vocab = tiny_loader(batch_size=4, num_steps=8)
    model = dl.RNNModelScratch(len(vocab), 8, dl.init_rnn_state, dl.rnn, dl.get_rnn_params)
    dl.train_dl(model, loader, vocab, 1, 10, None)
    lines = capsys.readouterr().out.strip("\n").split("\n")
    assert len(lines) == 4, lines
    assert lines[0].startswith("time traveller") and len(lines[0]) == len("time traveller") + 50
    assert summary_line(BOOK_DEVICE).match(lines[1]), lines[1]


def test_try_gpu():
    device = dl.try_gpu()
    assert device._device_name == "/CPU:0"  # no GPU on the test machine
    assert dl.try_gpu(3)._device_name == "/CPU:0"
    with dl.try_gpu():
        x = tf.ones((2, 2)) + 1
    assert x.device.endswith("CPU:0")


# ---------------------------------------------------------------------------------------------
# (g) which Keras tf.keras means


@pytest.mark.slow
def test_importing_dl_tensorflow_makes_tf_keras_the_keras_2_line():
    out = run_python("""
        import json
        import tensorflow as tf
        from dl import tensorflow as dl
        layer = tf.keras.layers.RNN(tf.keras.layers.LSTMCell(4), time_major=True,
                                    return_sequences=True, return_state=True)
        model = dl.RNNModel(layer, vocab_size=5)
        Y, state = model(tf.zeros((2, 3), tf.int32), model.begin_state(2))
        print("RESULT:" + json.dumps({"legacy": dl.KERAS_IS_TF_KERAS, "keras": tf.keras.__name__,
                                      "Y": list(Y.shape), "time_major": layer.time_major}))
    """)
    assert out["legacy"] is True
    assert out["keras"].startswith("tf_keras")
    assert out["time_major"] is True
    assert out["Y"] == [6, 5]


KERAS3 = """
import json
import warnings
import numpy as np
import tensorflow as tf

tf.keras.layers.Dense  # tf.keras is used (and becomes Keras 3) before dl.tensorflow
from dl import tensorflow as dl
from dl import reference as ref
import tf_keras

warnings.simplefilter("always")
V, H, B, T = 7, 8, 4, 5
rng = np.random.default_rng(0)
ids = rng.integers(0, V, (B, 2 * T + 1)).astype(np.int32)
out = {"legacy": dl.KERAS_IS_TF_KERAS, "keras": tf.keras.__name__}
with warnings.catch_warnings(record=True) as caught:
    layer = tf.keras.layers.LSTM(H, return_sequences=True, return_state=True)  # batch-major
    model = dl.RNNModel(layer, vocab_size=V)
    Y, state = model(tf.constant(ids[:, :T]), model.begin_state(batch_size=B))
out["warnings"] = [f"{w.category.__name__}: {w.message}" for w in caught]
out["Y"], out["state"] = list(Y.shape), [list(s.shape) for s in state]

# manual computation with the layer's own weights (Keras 3: kernel gates i, f, c, o)
kernel, recurrent, bias = layer.get_weights()
dense = [v.numpy() for v in model.trainable_variables
         if id(v) not in {id(w) for w in layer.trainable_variables}]
dense_kernel = next(d for d in dense if d.ndim == 2)
dense_bias = next(d for d in dense if d.ndim == 1)
params = {}
for g, k, r, b in zip("ifco", np.split(kernel, 4, 1), np.split(recurrent, 4, 1), np.split(bias, 4)):
    params["W_x" + g], params["W_h" + g], params["b_" + g] = k, r, b
params["W_hq"], params["b_q"] = dense_kernel, dense_bias
params = {n: params[n].astype(np.float64) for n in ref.PARAM_NAMES["lstm"]}
inputs = ref.one_hot(ids[:, :T].T, V)
Y_ref, _, _ = ref.forward("lstm", params, inputs, ref.init_state("lstm", B, H))
out["max_error"] = float(np.abs(Y.numpy() - Y_ref).max())

loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
trainer = dl.TFTrainer(model, loss, tf.keras.optimizers.SGD(1.0))
before = [v.numpy().copy() for v in model.trainable_variables]
state, losses = trainer.begin_state(B), []
for i in range(2):
    state = trainer.train_step(ids[:, i * T:(i + 1) * T], ids[:, i * T + 1:(i + 1) * T + 1], state)
    losses.append(trainer.take_loss_sum() / (B * T))
out["losses"] = losses
out["changed"] = all(not np.allclose(b, v.numpy())
                     for b, v in zip(before, model.trainable_variables))
vocab = dl.Vocab(list("abcdef"))  # 6 characters and <unk>
assert len(vocab) == V
out["prediction"] = dl.predict_dl("abc", 5, model, vocab)

try:
    dl.RNNModel(tf_keras.layers.LSTM(H, return_sequences=True, return_state=True), vocab_size=V)
    out["type_error"] = None
except TypeError as err:
    out["type_error"] = str(err)
print("RESULT:" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def keras3_run():
    return run_python(KERAS3)


@pytest.mark.slow
def test_with_keras_3_active_rnn_model_takes_batch_major_layers(keras3_run):
    out = keras3_run
    assert out["legacy"] is False
    assert not out["keras"].startswith("tf_keras")
    assert out["Y"] == [5 * 4, 7] and out["state"] == [[4, 8], [4, 8]]
    assert out["max_error"] < 1e-5  # time-major logits, as with tf-keras
    assert len(out["losses"]) == 2 and all(np.isfinite(out["losses"]))
    assert all(0 < loss < 10 for loss in out["losses"])
    assert out["changed"]
    prediction = out["prediction"].replace("<unk>", "?")  # ids include 0, <unk>
    assert prediction.startswith("abc") and len(prediction) == 3 + 5


@pytest.mark.slow
def test_with_keras_3_active_a_tf_keras_layer_is_refused_with_advice(keras3_run):
    message = keras3_run["type_error"]
    assert message is not None, "RNNModel accepted a tf_keras layer under Keras 3"
    assert "tf-keras" in message and "Keras 3" in message
    assert "import dl.tensorflow before" in message.lower() or "TF_USE_LEGACY_KERAS" in message


@pytest.mark.slow
def test_with_keras_3_active_rnn_model_builds_without_warnings(keras3_run):
    assert keras3_run["warnings"] == []
