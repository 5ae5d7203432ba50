"""The command line's model (dl.lm): the NumPy reference numbers in every backend."""

import importlib

import numpy as np
import pytest

from dl import lm
from dl import reference as ref
from dl.data.batches import eval_batches
from dl.optim import OptimizerConfig
from training_helpers import random_batches

BACKENDS = ["torch", "tensorflow", "jax"]
V, H, B, T = 10, 6, 4, 5


def backend(name):
    pytest.importorskip(name)
    return importlib.import_module(f"dl.{name}.lm")


def f64(params):
    return {k: v.astype(np.float64) for k, v in params.items()}


def ids(seed=0, shape=(B, T)):
    return np.random.default_rng(seed).integers(0, V, shape).astype(np.int32)


@pytest.mark.parametrize("cell", lm.CELLS)
@pytest.mark.parametrize("output_tanh", [True, False])
def test_one_layer_is_the_reference_cell(cell, output_tanh):
    if cell != "lstm" and not output_tanh:
        pytest.skip("output_tanh concerns the LSTM only")
    config = lm.LMConfig(cell, V, H, output_tanh=output_tanh)
    params = f64(lm.init_params(config, 0, scale=0.5))
    assert list(params) == list(ref.PARAM_NAMES[cell])  # the seed's names, in its order
    state = tuple(
        np.random.default_rng(1).standard_normal((B, H)) for _ in range(config.state_per_layer)
    )
    X = ids()
    Y, new_state = lm.forward(lm.NUMPY_OPS, params, X, state, config)
    Y_ref, state_ref, _ = ref.forward(cell, params, ref.one_hot(X.T, V), state, output_tanh)
    np.testing.assert_allclose(Y, Y_ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(new_state, state_ref):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", lm.CELLS)
def test_stacked_layers_feed_each_other(cell):
    """Layer 2 runs the reference cell on layer 1's hidden states."""
    config = lm.LMConfig(cell, V, H, num_layers=2)
    params = f64(lm.init_params(config, 0, scale=0.5))
    X = ids()
    Y, _ = lm.forward(lm.NUMPY_OPS, params, X, lm.zero_state(config, B, np.float64), config)

    def layer(k, inputs, out_W, out_b):
        p = {name: params[f"layer{k}.{name}"] for name in ref.PARAM_NAMES[cell][:-2]}
        p.update(W_hq=out_W, b_q=out_b)
        return ref.forward(cell, p, inputs, ref.init_state(cell, B, H))[0]

    hidden1 = layer(1, ref.one_hot(X.T, V), np.eye(H), np.zeros(H)).reshape(T, B, H)
    np.testing.assert_allclose(Y, layer(2, hidden1, params["W_hq"], params["b_q"]), atol=1e-12)


def test_config_checks_and_round_trip():
    config = lm.LMConfig("gru", 7, 3, num_layers=3, dropout=0.5)
    assert lm.LMConfig.from_dict(config.to_dict()) == config
    assert config.num_params() == sum(np.prod(s) for s in config.param_shapes().values())
    assert "layer3.W_hh" in config.param_shapes() and "W_hh" not in config.param_shapes()
    with pytest.raises(ValueError, match="cell must be one of rnn, gru, lstm, got 'cnn'"):
        lm.LMConfig("cnn")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        lm.LMConfig(dropout=1.0)
    with pytest.raises(ValueError, match="num_layers must be > 0"):
        lm.LMConfig(num_layers=0)
    with pytest.raises(ValueError, match=r"unknown model settings \['heads'\]"):
        lm.LMConfig.from_dict({"heads": 2})


def test_check_params_names_the_misfit():
    config = lm.LMConfig("rnn", V, H)
    params = lm.init_params(config, 0)
    params["W_hh"] = np.zeros((H, H + 1))
    with pytest.raises(ValueError, match=r"W_hh has shape \(6, 7\), the model needs \(6, 6\)"):
        lm.check_params(config, params)
    del params["b_q"]
    with pytest.raises(ValueError, match=r"missing \['b_q'\]"):
        lm.check_params(config, params)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("cell", lm.CELLS)
def test_backend_forward_matches_numpy(name, cell):
    module = backend(name)
    config = lm.LMConfig(cell, V, H, num_layers=2, dropout=0.3)
    params = lm.init_params(config, 0, scale=0.5)
    model = module.LanguageModel(config, params, device="cpu")
    X, Y = ids(0), ids(1)
    want, _ = lm.forward(lm.NUMPY_OPS, f64(params), X, lm.zero_state(config, B, np.float64), config)
    loss, _ = model.eval_loss(X, Y, model.begin_state(B))  # no dropout when evaluating
    want_loss = ref.softmax_cross_entropy(want, Y.T.reshape(-1))[0] * Y.size
    assert loss == pytest.approx(want_loss, rel=1e-5)
    for name_, value in model.numpy_params().items():
        np.testing.assert_array_equal(value, params[name_])
    logits, _ = model.step(int(X[0, 0]), model.begin_state(1))
    want_one, _ = lm.forward(
        lm.NUMPY_OPS, f64(params), X[:1, :1], lm.zero_state(config, 1, np.float64), config
    )
    np.testing.assert_allclose(logits, want_one[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize(
    "cell,output_tanh", [("rnn", True), ("gru", True), ("lstm", True), ("lstm", False)]
)
def test_backend_training_is_the_reference_clipped_sgd(name, cell, output_tanh):
    """Three steps with the state carried equal dl.reference.train_steps (one layer): the
    gradients of every cell, the LSTM without output tanh included, are the reference's."""
    module = backend(name)
    config = lm.LMConfig(cell, V, H, output_tanh=output_tanh)
    params = lm.init_params(config, 3, scale=0.5)
    batches = random_batches(3, B, T, V)
    want, losses = ref.train_steps(
        cell, f64(params), batches, lr=2.0, theta=0.5, output_tanh=output_tanh
    )
    model = module.LanguageModel(config, params, device="cpu")
    trainer = model.trainer(OptimizerConfig(lr=2.0), 0.5)
    state = trainer.begin_state(B)
    for X, Y in batches:
        state = trainer.train_step(X, Y, state)
    assert trainer.take_loss_sum() == pytest.approx(sum(losses) * B * T, rel=1e-5)
    for key, value in model.numpy_params().items():
        np.testing.assert_allclose(value, want[key], rtol=1e-4, atol=1e-5, err_msg=key)


@pytest.mark.parametrize("name", BACKENDS)
def test_dropout_is_seeded_and_only_in_training(name):
    module = backend(name)
    config = lm.LMConfig("lstm", V, H, num_layers=2, dropout=0.5)
    params = lm.init_params(config, 0, scale=0.5)
    batches = random_batches(2, B, T, V)

    def trained(seed, dropout=0.5):
        cfg = lm.LMConfig("lstm", V, H, num_layers=2, dropout=dropout)
        model = module.LanguageModel(cfg, params, device="cpu")
        model.reseed(seed)
        trainer = model.trainer(OptimizerConfig(lr=1.0), 1.0)
        state = trainer.begin_state(B)
        for X, Y in batches:
            state = trainer.train_step(X, Y, state)
        return model.numpy_params()["layer2.W_xi"]

    np.testing.assert_array_equal(trained(1), trained(1))
    assert not np.allclose(trained(1), trained(2))
    assert not np.allclose(trained(1), trained(1, dropout=0.0))
    model = module.LanguageModel(config, params, device="cpu")
    X, Y = batches[0]
    assert (
        model.eval_loss(X, Y, model.begin_state(B))[0]
        == model.eval_loss(X, Y, model.begin_state(B))[0]
    )


def test_evaluate_walks_every_token_once_with_the_state_carried():
    module = backend("torch")
    config = lm.LMConfig("gru", V, H)
    params = lm.init_params(config, 0, scale=0.5)
    corpus = list(ids(2, (1, 103))[0])
    batches = list(eval_batches(corpus, 4, 10))
    assert [X.shape for X, _ in batches] == [(4, 10), (4, 10), (4, 5)]  # 4 rows of 25
    for X, Y in batches:
        np.testing.assert_array_equal(Y[:, :-1], X[:, 1:])
    loss_sum, num_tokens = lm.evaluate(module.LanguageModel(config, params), corpus, 4, 10)
    X = np.concatenate([X for X, _ in batches], axis=1)
    Y = np.concatenate([Y for _, Y in batches], axis=1)
    logits, _ = lm.forward(
        lm.NUMPY_OPS, f64(params), X, lm.zero_state(config, 4, np.float64), config
    )
    assert num_tokens == 100
    assert loss_sum == pytest.approx(
        ref.softmax_cross_entropy(logits, Y.T.reshape(-1))[0] * 100, rel=1e-5
    )


def test_eval_batches_needs_two_tokens():
    with pytest.raises(ValueError, match="a corpus of 1 tokens has nothing to predict"):
        list(eval_batches([3], 4, 10))


def test_sampler_top_one_is_greedy_and_a_seed_repeats():
    logits = np.array([0.1, 2.0, -1.0, 1.9])
    assert {lm.sampler(5.0, top_k=1, seed=s)(logits) for s in range(20)} == {1}

    def draws(seed, top_k=None):
        choose = lm.sampler(1.0, top_k=top_k, seed=seed)
        return [choose(logits) for _ in range(40)]

    assert draws(7) == draws(7)
    assert set(draws(7)) == {0, 1, 2, 3}
    assert set(draws(0, top_k=2)) == {1, 3}
    with pytest.raises(ValueError, match="temperature must be > 0"):
        lm.sampler(0.0)
    with pytest.raises(ValueError, match="top_k must be > 0"):
        lm.sampler(1.0, top_k=0)


CONCISE = [
    ("torch", "rnn"),
    ("torch", "lstm"),
    ("tensorflow", "rnn"),
    ("tensorflow", "gru"),
    ("tensorflow", "lstm"),
    ("jax", "rnn"),
    ("jax", "gru"),
    ("jax", "lstm"),
]


@pytest.mark.parametrize("name,cell", CONCISE)
def test_framework_layers_compute_the_reference_and_save_canonical_names(name, cell):
    module = backend(name)
    config = lm.LMConfig(cell, V, H, num_layers=2, dropout=0.3)
    params = lm.init_params(config, 0, scale=0.5)
    model = module.LayersModel(config, params, device="cpu")
    saved = model.numpy_params()
    assert list(saved) == list(params)
    for key in params:
        np.testing.assert_array_equal(saved[key], params[key])
    X, Y = ids(0), ids(1)
    want, _ = lm.forward(lm.NUMPY_OPS, f64(params), X, lm.zero_state(config, B, np.float64), config)
    want_loss = ref.softmax_cross_entropy(want, Y.T.reshape(-1))[0] * Y.size
    assert model.eval_loss(X, Y, model.begin_state(B))[0] == pytest.approx(want_loss, rel=1e-5)
    state = model.begin_state(1)  # one token at a time, the state carried: the same logits
    for t in range(3):
        logits, state = model.step(int(X[0, t]), state)
        np.testing.assert_allclose(logits, want[t * B], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,cell", CONCISE)
def test_framework_layers_train_as_the_scratch_model(name, cell):
    module = backend(name)
    config = lm.LMConfig(cell, V, H, num_layers=2)
    params = lm.init_params(config, 3, scale=0.5)
    results = []
    for cls in (module.LanguageModel, module.LayersModel):
        model = cls(config, params, device="cpu")
        trainer = model.trainer(OptimizerConfig(lr=2.0), 0.5)
        state = trainer.begin_state(B)
        for X, Y in random_batches(3, B, T, V):
            state = trainer.train_step(X, Y, state)
        results.append(model.numpy_params())
    for key in params:
        np.testing.assert_allclose(results[1][key], results[0][key], rtol=1e-4, atol=1e-6)


def test_torch_layers_keep_their_second_bias_at_zero():
    module = backend("torch")
    config = lm.LMConfig("lstm", V, H)
    model = module.LayersModel(config, lm.init_params(config, 0), device="cpu")
    trainer = model.trainer(OptimizerConfig(lr=1.0), 1.0)
    state = trainer.begin_state(B)
    for X, Y in random_batches(2, B, T, V):
        state = trainer.train_step(X, Y, state)
    assert not model.rnn.bias_hh_l0.any() and model.rnn.bias_ih_l0.abs().sum() > 0


@pytest.mark.parametrize(
    "name,config,message",
    [
        ("torch", lm.LMConfig("gru", V, H), "PyTorch has no layer computing the book's GRU"),
        ("tensorflow", lm.LMConfig("lstm", V, H, output_tanh=False), "always applies tanh"),
    ],
)
def test_framework_layers_refuse_what_they_cannot_compute(name, config, message):
    module = backend(name)
    with pytest.raises(ValueError, match=message):
        module.LayersModel(config, lm.init_params(config, 0))


def test_tensorflow_step_takes_the_state_in_any_form_it_took_before():
    """The one-token step calls its traced function directly; other state forms still work."""
    module = backend("tensorflow")
    config = lm.LMConfig("lstm", V, H)
    model = module.LanguageModel(config, lm.init_params(config, 0, scale=0.5), device="cpu")
    want, _ = model.step(3, model.begin_state(1))
    for state in (
        tuple(np.zeros((1, H), np.float64) for _ in range(2)),  # NumPy, float64
        [np.zeros((1, H), np.float32)] * 2,
    ):  # a list
        logits, new_state = model.step(3, state)
        np.testing.assert_allclose(logits, want, rtol=1e-6)
        assert len(new_state) == 2
