"""The language model for real text (dl.lm: embedding table, tied output layer, dropout sites)
and host-set learning rates (dl.optim.ScheduleConfig) on TensorFlow: the scratch model and
Keras' layers compute the NumPy numbers, drop out alike and train alike."""

import dataclasses

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from dl import checkpoint, lm, optim  # noqa: E402
from dl import reference as ref  # noqa: E402
from dl.optim import OptimizerConfig, ScheduleConfig  # noqa: E402
from dl.tensorflow._keras import tf  # noqa: E402
from dl.tensorflow.lm import OPS, LanguageModel, LayersModel  # noqa: E402
from training_helpers import random_batches  # noqa: E402

V, H, B, T = 10, 6, 4, 5
DROPOUTS = dict(dropout=0.3, embed_dropout=0.2, output_dropout=0.4)


def text_config(cell="lstm", num_layers=2, tie=False, **settings):
    """An embedding model: E = H when tied, else E = 5 (E and H told apart)."""
    embedding = H if tie else 5
    return lm.LMConfig(cell, V, H, num_layers, embedding=embedding, tie_weights=tie, **settings)


def ids(seed=0, shape=(B, T)):
    return np.random.default_rng(seed).integers(0, V, shape).astype(np.int32)


def f64(params):
    return {k: v.astype(np.float64) for k, v in params.items()}


def random_state(config, seed=2):
    rng = np.random.default_rng(seed)
    count = config.num_layers * config.state_per_layer
    return tuple(rng.standard_normal((B, H)).astype(np.float32) for _ in range(count))


def dense(grads) -> list[np.ndarray]:
    """Gradients as NumPy arrays (an embedding lookup's come as ``tf.IndexedSlices``)."""
    return [tf.convert_to_tensor(g).numpy() for g in grads]


def loss_and_grads(model, X, Y, state, training=False):
    """``(logits, state, mean loss, canonical name -> gradient)`` of one forward pass."""
    with tf.GradientTape() as tape:
        logits, new_state = model(X, [tf.constant(s) for s in state], training=training)
        y = np.ascontiguousarray(Y.T).reshape(-1)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    grads = tape.gradient(loss, model.trainable_variables)
    grads = model.canonical(dense(grads))
    return logits.numpy(), [s.numpy() for s in new_state], float(loss), grads


def float64_grads(config, params, X, Y, state):
    """Gradients of :func:`dl.lm.forward` in float64 (TensorFlow's autodiff)."""
    variables = {name: tf.Variable(value) for name, value in f64(params).items()}
    with tf.GradientTape() as tape:
        logits, _ = lm.forward(OPS, variables, X, tuple(np.float64(s) for s in state), config)
        y = np.ascontiguousarray(Y.T).reshape(-1)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    grads = tape.gradient(loss, list(variables.values()))
    return dict(zip(variables, dense(grads)))


def close(got, want, what, rtol=1e-4, atol=1e-5):
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)


@pytest.mark.parametrize("tie", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", lm.CELLS)
def test_keras_layers_compute_the_scratch_and_numpy_numbers(cell, num_layers, tie):
    """Forward, state, loss and every gradient of the concise model (Keras Embedding and
    layers) are the scratch model's, and the float64 NumPy / autodiff numbers."""
    config = text_config(cell, num_layers, tie)
    params = lm.init_params(config, 0, scale=0.5)
    X, Y, state = ids(0), ids(1), random_state(config)
    want, want_state = lm.forward(
        lm.NUMPY_OPS, f64(params), X, tuple(np.float64(s) for s in state), config
    )
    want_loss = ref.softmax_cross_entropy(want, Y.T.reshape(-1))[0]
    want_grads = float64_grads(config, params, X, Y, state)
    results = {}
    for cls in (LanguageModel, LayersModel):
        model = cls(config, params, device="cpu")
        saved = model.numpy_params()
        assert list(saved) == list(config.param_shapes())
        for key, value in params.items():
            np.testing.assert_array_equal(saved[key], value, err_msg=f"{cls.__name__} {key}")
        results[cls] = logits, new_state, loss, grads = loss_and_grads(model, X, Y, state)
        close(logits, want, f"{cls.__name__} logits")
        for got, expected in zip(new_state, want_state):
            close(got, expected, f"{cls.__name__} state")
        assert loss == pytest.approx(want_loss, rel=1e-5)
        assert list(grads) == list(config.param_shapes())
        for key, value in grads.items():
            close(value, want_grads[key], f"{cls.__name__} d{key}", atol=1e-6)
        assert np.abs(grads["W_emb"]).sum() > 0
    for key, value in results[LayersModel][3].items():
        close(value, results[LanguageModel][3][key], f"concise d{key} vs scratch", atol=1e-6)


@pytest.mark.parametrize("cell", lm.CELLS)
def test_both_models_draw_the_same_masks_at_every_dropout_site(cell):
    """In training, the concise model drops embeddings, the outputs between layers and the
    last layer's outputs with the scratch model's seeded masks: the same logits and
    gradients."""
    config = text_config(cell, num_layers=2, tie=True, **DROPOUTS)
    params = lm.init_params(config, 4, scale=0.5)
    X, Y, state = ids(0), ids(1), random_state(config)
    results = []
    for cls in (LanguageModel, LayersModel):
        model = cls(config, params, device="cpu")
        model.reseed(7)
        eval_logits = loss_and_grads(model, X, Y, state)[0]
        results.append(loss_and_grads(model, X, Y, state, training=True))
        assert not np.allclose(results[-1][0], eval_logits)  # dropout acted
        assert np.allclose(loss_and_grads(model, X, Y, state)[0], eval_logits)  # eval: none
    (scratch_logits, _, _, scratch_grads), (logits, _, _, grads) = results
    close(logits, scratch_logits, "training logits")
    for key, value in grads.items():
        close(value, scratch_grads[key], f"d{key}", atol=1e-6)


@pytest.mark.parametrize("site", ["dropout", "embed_dropout", "output_dropout"])
@pytest.mark.parametrize("cls", [LanguageModel, LayersModel])
def test_each_dropout_site_alone_makes_the_model_stochastic(cls, site):
    config = text_config(num_layers=2, **{site: 0.5})
    model = cls(config, lm.init_params(config, 0, scale=0.5), device="cpu")
    X, state = ids(0), [tf.constant(s) for s in random_state(config)]
    eval_logits, _ = model(X, state)
    train_logits, _ = model(X, state, training=True)
    assert not np.allclose(train_logits, eval_logits)
    assert np.allclose(model(X, state)[0], eval_logits)


@pytest.mark.parametrize("cls", [LanguageModel, LayersModel])
def test_generation_steps_and_eval_with_an_embedding(cls):
    """One token at a time with the state carried gives the batch forward's logits; eval
    sums the NumPy cross-entropy (no dropout)."""
    config = text_config("gru", num_layers=2, tie=True, **DROPOUTS)
    params = lm.init_params(config, 1, scale=0.5)
    model = cls(config, params, device="cpu")
    X, Y = ids(0), ids(1)
    want, _ = lm.forward(lm.NUMPY_OPS, f64(params), X, lm.zero_state(config, B, np.float64), config)
    loss, _ = model.eval_loss(X, Y, model.begin_state(B))
    assert loss == pytest.approx(ref.softmax_cross_entropy(want, Y.T.reshape(-1))[0] * Y.size)
    state = model.begin_state(1)
    for t in range(T):
        logits, state = model.step(int(X[0, t]), state)
        close(logits, want[t * B], f"token {t}", rtol=1e-5, atol=1e-6)


def test_a_checkpoint_moves_between_the_two_models_under_canonical_names(tmp_path):
    config = text_config("lstm", num_layers=2, tie=True)
    trained = LayersModel(config, lm.init_params(config, 0, scale=0.5), device="cpu")
    trainer = trained.trainer(OptimizerConfig("adam", 0.05), 1.0)
    state = trainer.begin_state(B)
    for X, Y in random_batches(2, B, T, V):
        state = trainer.train_step(X, Y, state)
    checkpoint.save(tmp_path, trained.numpy_params(), {"model": config.to_dict()})
    params, meta = checkpoint.load(tmp_path)
    assert sorted(params) == sorted(config.param_shapes()) and "W_emb" in params
    assert "W_hq" not in params
    loaded = LanguageModel(lm.LMConfig.from_dict(meta["model"]), params, device="cpu")
    X, Y = ids(3), ids(4)
    want = trained.eval_loss(X, Y, trained.begin_state(B))[0]
    assert loaded.eval_loss(X, Y, loaded.begin_state(B))[0] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("opt", [OptimizerConfig("adam", 0.05), OptimizerConfig("sgd", 2.0)])
def test_the_two_models_train_alike_with_tied_embeddings_and_dropout(opt):
    """Three clipped steps through the engine (sparse embedding gradients, the tied matrix's
    two gradients summed, seeded dropout at every site): the same weights and optimizer
    state under the canonical names."""
    config = text_config("lstm", num_layers=2, tie=True, **DROPOUTS)
    params = lm.init_params(config, 2, scale=0.5)
    results = []
    for cls in (LanguageModel, LayersModel):
        model = cls(config, params, device="cpu")
        model.reseed(3)
        trainer = model.trainer(opt, 0.5)
        state = trainer.begin_state(B)
        for X, Y in random_batches(3, B, T, V):
            state = trainer.train_step(X, Y, state)
        results.append((model.numpy_params(), trainer.optimizer_state()))
    (scratch, scratch_state), (concise, concise_state) = results
    for key, value in concise.items():
        close(value, scratch[key], key, atol=1e-6)
        assert not np.array_equal(value, params[key]), f"{key} did not train"
    assert list(concise_state) == optim.state_names(opt, config.param_shapes())
    for key, value in concise_state.items():
        close(value, scratch_state[key], key, atol=1e-6)


SCHEDULE = ScheduleConfig("cosine", warmup_steps=2, total_steps=5, min_lr_fraction=0.1)
SCHEDULED = {"adam": OptimizerConfig("adam", 0.05), "sgd": OptimizerConfig("sgd", 2.0)}


def scheduled_steps(trainer, lr, batches, first=0):
    """One step per batch from a zero state, ``set_lr`` to the schedule's rate before each."""
    for step, (X, Y) in enumerate(batches, first):
        trainer.set_lr(lr * SCHEDULE.factor(step))
        trainer.train_step(X, Y, trainer.begin_state(B))


@pytest.mark.parametrize("cls", [LanguageModel, LayersModel])
@pytest.mark.parametrize("opt", SCHEDULED)
def test_set_lr_follows_a_schedule_as_the_reference_and_resumes_mid_schedule(opt, cls):
    """Six updates at warm-up + cosine rates set by the host equal dl.reference's updates at
    those rates, in one compiled step; a trainer resumed after three continues exactly."""
    config = lm.LMConfig("lstm", V, H)
    params = lm.init_params(config, 3, scale=0.5)
    batches = random_batches(6, B, T, V)
    optimizer = SCHEDULED[opt]
    want, state = f64(params), None
    for step, batch in enumerate(batches):
        rate = dataclasses.replace(optimizer, lr=optimizer.lr * SCHEDULE.factor(step))
        want, _, state = ref.optimize_steps("lstm", want, [batch], rate, 0.5, optimizer_state=state)
    whole = cls(config, params, device="cpu")
    trainer = whole.trainer(optimizer, 0.5)
    scheduled_steps(trainer, optimizer.lr, batches)
    assert trainer._step.experimental_get_tracing_count() == 1  # not traced again
    for key, value in whole.numpy_params().items():
        close(value, want[key], key)
    first = cls(config, params, device="cpu")
    trainer = first.trainer(optimizer, 0.5)
    scheduled_steps(trainer, optimizer.lr, batches[:3])
    second = cls(config, first.numpy_params(), device="cpu")
    resumed = second.trainer(optimizer, 0.5)
    resumed.load_optimizer_state(trainer.optimizer_state())
    scheduled_steps(resumed, optimizer.lr, batches[3:], first=3)
    for key, value in second.numpy_params().items():
        np.testing.assert_array_equal(value, whole.numpy_params()[key], err_msg=key)
