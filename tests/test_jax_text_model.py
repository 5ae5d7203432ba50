"""The language model for real text on JAX: an embedding table, tied output weights and
dropout at every site of dl.lm in the scratch model and the framework-layer (concise) model,
the same numbers as NumPy's float64 ``lm.forward``; ``trainer.set_lr`` follows a schedule as
the NumPy optimizer does, without a new compiled step, and resumes mid-schedule exactly."""

import dataclasses

import numpy as np
import pytest

jax = pytest.importorskip("jax")

from dl import lm, optim  # noqa: E402
from dl import reference as ref  # noqa: E402
from dl.errors import InputError  # noqa: E402
from dl.jax.lm import LanguageModel, LayersModel  # noqa: E402
from dl.jax.training import token_loss_sum  # noqa: E402
from dl.optim import OptimizerConfig, ScheduleConfig  # noqa: E402
from training_helpers import random_batches  # noqa: E402

V, H, B, T = 9, 6, 3, 4
MODELS = {"scratch": LanguageModel, "concise": LayersModel}
DROPOUT = dict(dropout=0.3, embed_dropout=0.2, output_dropout=0.4)


def text_config(cell="lstm", layers=2, tied=False, **dropout):
    return lm.LMConfig(
        cell, V, H, num_layers=layers, embedding=H if tied else 5, tie_weights=tied, **dropout
    )


def f64(params):
    return {k: np.asarray(v, np.float64) for k, v in params.items()}


def ids(seed, shape=(B, T)):
    return np.random.default_rng(seed).integers(0, V, shape).astype(np.int32)


def numpy_dropout(key, config):
    """NumPy's ``dropout(x, site)`` with the masks the JAX models draw from ``key``."""

    def dropout(x, site):
        rate = lm.dropout_rate(config, site)
        keep = jax.random.bernoulli(jax.random.fold_in(key, site), 1 - rate, x.shape)
        return np.where(np.asarray(keep), x / (1 - rate), 0.0)

    return dropout


def numpy_loss(config, params, X, Y, dropout=None):
    """Mean cross-entropy of NumPy's float64 ``lm.forward``."""
    state = lm.zero_state(config, X.shape[0], np.float64)
    logits, _ = lm.forward(lm.NUMPY_OPS, params, X, state, config, dropout)
    return ref.softmax_cross_entropy(logits, Y.T.reshape(-1))[0], logits


def jax_loss_and_grads(model, X, Y, key):
    """``(mean loss, logits, canonical gradients)`` of a training forward with ``key``."""

    def loss(params):
        logits, _ = model.apply(params, X, model.begin_state(B), key=key)
        return token_loss_sum(logits, Y.T.reshape(-1)) / Y.size, logits

    (value, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(model.params)
    return float(value), np.asarray(logits), model.to_numpy(grads)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", lm.CELLS)
def test_both_models_compute_numpy_float64_forward_loss_and_gradients(cell, layers, tied):
    """With dropout at every site (the same masks), forward, loss and every gradient of the
    scratch and the concise model equal NumPy's float64 model; each gradient is checked
    against a central difference of NumPy's loss along a random direction."""
    config = text_config(cell, layers, tied, **DROPOUT)
    params = lm.init_params(config, 0, scale=0.5)
    X, Y, key = ids(0), ids(1), jax.random.PRNGKey(7)
    dropout = numpy_dropout(key, config)
    want_loss, want_logits = numpy_loss(config, f64(params), X, Y, dropout)
    results = {}
    for impl, cls in MODELS.items():
        model = cls(config, params, device="cpu")
        loss, logits, grads = jax_loss_and_grads(model, X, Y, key)
        np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-6, err_msg=impl)
        assert loss == pytest.approx(want_loss, rel=1e-6), impl
        assert list(grads) == list(config.param_shapes())
        results[impl] = grads
    rng, eps = np.random.default_rng(2), 1e-6
    for name, grad in results["scratch"].items():
        np.testing.assert_allclose(results["concise"][name], grad, rtol=1e-5, atol=1e-7)
        direction = rng.standard_normal(grad.shape)
        moved = [f64(params) for _ in range(2)]
        moved[0][name] += eps * direction
        moved[1][name] -= eps * direction
        up, down = (numpy_loss(config, p, X, Y, dropout)[0] for p in moved)
        assert np.sum(grad * direction) == pytest.approx(
            (up - down) / (2 * eps), rel=1e-4, abs=1e-7
        ), name


@pytest.mark.parametrize("impl", MODELS)
@pytest.mark.parametrize("tied", [False, True])
def test_eval_generation_and_canonical_names(impl, tied):
    """Parameters load and save under the canonical names (``W_emb`` first, no ``W_hq`` when
    tied); evaluation drops nothing; one token at a time, the state carried, gives the
    batch's logits."""
    config = text_config("gru", 2, tied, **DROPOUT)
    params = lm.init_params(config, 4, scale=0.5)
    model = MODELS[impl](config, params, device="cpu")
    assert model.stochastic
    saved = model.numpy_params()
    assert list(saved) == list(params) and list(saved)[0] == "W_emb"
    assert ("W_hq" in saved) is not tied
    for name, value in saved.items():
        np.testing.assert_array_equal(value, params[name], err_msg=name)
    X, Y = ids(3), ids(4)
    want_loss, want_logits = numpy_loss(config, f64(params), X, Y)
    for _ in range(2):
        loss, _ = model.eval_loss(X, Y, model.begin_state(B))
        assert loss == pytest.approx(want_loss * Y.size, rel=1e-5)
    state = model.begin_state(1)
    for t in range(T):
        logits, state = model.step(int(X[0, t]), state)
        np.testing.assert_allclose(logits, want_logits[t * B], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", MODELS)
def test_parameters_without_the_embedding_table_are_refused(impl):
    config = text_config()
    params = lm.init_params(config, 0)
    del params["W_emb"]
    with pytest.raises(InputError, match=r"missing \['W_emb'\]"):
        MODELS[impl](config, params, device="cpu")


def trained(cls, config, params, optimizer, batches, seed=0):
    model = cls(config, params, device="cpu")
    model.reseed(seed)
    trainer = model.trainer(optimizer, 0.5)
    state = trainer.begin_state(B)
    for X, Y in batches:
        state = trainer.train_step(X, Y, state)
    return model.numpy_params()


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_concise_trains_as_scratch_with_tied_weights_and_dropout_everywhere(cell):
    config = text_config(cell, 2, tied=True, **DROPOUT)
    params = lm.init_params(config, 5, scale=0.5)
    batches = random_batches(3, B, T, V)
    adam = OptimizerConfig("adam", 0.05)
    scratch, concise = (trained(cls, config, params, adam, batches) for cls in MODELS.values())
    for name, value in scratch.items():
        np.testing.assert_allclose(concise[name], value, rtol=1e-4, atol=1e-6, err_msg=name)
        assert not np.allclose(value, params[name]), f"{name} did not train"


@pytest.mark.parametrize("site", ["embed_dropout", "output_dropout"])
@pytest.mark.parametrize("impl", MODELS)
def test_dropout_at_one_site_alone_makes_training_seeded(impl, site):
    """A model that drops out only its embeddings or only its outputs is stochastic: the seed
    repeats its masks and another seed draws others."""
    config = text_config("lstm", 1, **{site: 0.5})
    params = lm.init_params(config, 0, scale=0.5)
    batches = random_batches(2, B, T, V)
    sgd = OptimizerConfig("sgd", 1.0)
    run = lambda seed: trained(MODELS[impl], config, params, sgd, batches, seed)["W_hq"]
    first = run(1)
    np.testing.assert_array_equal(run(1), first)
    assert not np.allclose(run(2), first)
    plain = dataclasses.replace(config, **{site: 0.0})
    assert not np.allclose(trained(MODELS[impl], plain, params, sgd, batches)["W_hq"], first)


SCHEDULE = ScheduleConfig("cosine", warmup_steps=2, total_steps=5, min_lr_fraction=0.1)
SCHEDULED = {"adam": OptimizerConfig("adam", 0.05), "sgd": OptimizerConfig("sgd", 2.0)}


def scheduled_steps(trainer, batches, start=0):
    """One update per batch from a zero state, at the schedule's rate for its step."""
    for step, (X, Y) in enumerate(batches, start):
        trainer.set_lr(trainer.config.lr * SCHEDULE.factor(step))
        trainer.train_step(X, Y, trainer.begin_state(B))


@pytest.mark.parametrize("impl", MODELS)
@pytest.mark.parametrize("opt", SCHEDULED)
def test_set_lr_follows_a_schedule_as_the_numpy_optimizer(opt, impl):
    """Six updates, warm-up then cosine, are the float64 reference's with each step's rate,
    through one compiled step (a reseed between epochs compiles nothing either)."""
    config = lm.LMConfig("lstm", V, H)
    params = lm.init_params(config, 3, scale=0.5)
    batches = random_batches(6, B, T, V)
    want, opt_state = f64(params), None
    for step, batch in enumerate(batches):
        rate = dataclasses.replace(SCHEDULED[opt], lr=SCHEDULED[opt].lr * SCHEDULE.factor(step))
        want, _, opt_state = ref.optimize_steps("lstm", want, [batch], rate, 0.5, None, opt_state)
    model = MODELS[impl](config, params, device="cpu")
    trainer = model.trainer(SCHEDULED[opt], 0.5)
    scheduled_steps(trainer, batches[:3])
    model.reseed(1)
    scheduled_steps(trainer, batches[3:], start=3)
    assert trainer._step._cache_size() == 1
    for name, value in model.numpy_params().items():
        np.testing.assert_allclose(value, want[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("opt", SCHEDULED)
def test_a_resume_mid_schedule_continues_exactly(opt):
    """Three scheduled updates, weights and optimizer state through NumPy into a new trainer
    (its rate set before the state is loaded, which keeps it), three more: bit for bit the
    six uninterrupted ones."""
    config = text_config("lstm", 2, tied=True, dropout=0.2)
    params = lm.init_params(config, 1, scale=0.5)
    batches = random_batches(6, B, T, V)
    whole = LayersModel(config, params, device="cpu")
    scheduled_steps(whole.trainer(SCHEDULED[opt], 0.5), batches)
    first = LayersModel(config, params, device="cpu")
    trainer = first.trainer(SCHEDULED[opt], 0.5)
    scheduled_steps(trainer, batches[:3])
    saved = first.numpy_params(), trainer.optimizer_state(), first.key
    assert saved[1][optim.STEP] == 3
    second = LayersModel(config, saved[0], device="cpu")
    second.key = saved[2]
    resumed = second.trainer(SCHEDULED[opt], 0.5)
    resumed.set_lr(resumed.config.lr * SCHEDULE.factor(3))
    resumed.load_optimizer_state(saved[1])
    X, Y = batches[3]
    resumed.train_step(X, Y, resumed.begin_state(B))
    scheduled_steps(resumed, batches[4:], start=4)
    for name, value in second.numpy_params().items():
        np.testing.assert_array_equal(value, whole.numpy_params()[name], err_msg=name)
