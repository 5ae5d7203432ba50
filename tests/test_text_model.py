"""The language model for real text in :mod:`dl.lm` (embedding table, tied output layer,
dropout sites) and the learning-rate schedules of :mod:`dl.optim`, on NumPy."""

import math

import numpy as np
import pytest

from dl import lm
from dl.errors import InputError
from dl.optim import ScheduleConfig


def f64(params):
    return {k: v.astype(np.float64) for k, v in params.items()}


def run(config, params, X):
    B = X.shape[0]
    return lm.forward(lm.NUMPY_OPS, f64(params), X, lm.zero_state(config, B, np.float64), config)


def test_embedding_shapes_and_names():
    config = lm.LMConfig(vocab_size=11, num_hiddens=6, num_layers=2, embedding=5)
    shapes = config.param_shapes()
    assert list(shapes)[0] == "W_emb" and shapes["W_emb"] == (11, 5)
    assert shapes["layer1.W_xi"] == (5, 6) and shapes["layer2.W_xi"] == (6, 6)
    assert shapes["W_hq"] == (6, 11)
    tied = lm.LMConfig(vocab_size=11, num_hiddens=6, embedding=6, tie_weights=True)
    assert "W_hq" not in tied.param_shapes() and tied.param_shapes()["b_q"] == (11,)
    assert tied.num_params() == 11 * 6 + 4 * (6 * 6 + 6 * 6 + 6) + 11


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_an_identity_embedding_is_the_one_hot_model(cell):
    V, H = 7, 5
    one_hot = lm.LMConfig(cell=cell, vocab_size=V, num_hiddens=H, num_layers=2)
    embedded = lm.LMConfig(cell=cell, vocab_size=V, num_hiddens=H, num_layers=2, embedding=V)
    params = lm.init_params(one_hot, seed=3, scale=0.3)
    with_table = dict(params, W_emb=np.eye(V, dtype=np.float32))
    X = np.random.default_rng(0).integers(0, V, (3, 4))
    want, want_state = run(one_hot, params, X)
    got, got_state = run(embedded, with_table, X)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    for g, w in zip(got_state, want_state):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def test_tied_weights_are_the_embedding_transposed():
    V, H = 9, 4
    untied = lm.LMConfig(vocab_size=V, num_hiddens=H, embedding=H)
    tied = lm.LMConfig(vocab_size=V, num_hiddens=H, embedding=H, tie_weights=True)
    params = lm.init_params(untied, seed=1, scale=0.3)
    params["W_hq"] = params["W_emb"].T.copy()
    X = np.random.default_rng(1).integers(0, V, (2, 6))
    want, _ = run(untied, params, X)
    got, _ = run(tied, {k: v for k, v in params.items() if k != "W_hq"}, X)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_dropout_sites_and_their_rates():
    config = lm.LMConfig(
        vocab_size=8,
        num_hiddens=4,
        num_layers=3,
        embedding=3,
        dropout=0.2,
        embed_dropout=0.1,
        output_dropout=0.3,
    )
    seen = []

    def dropout(x, site):
        seen.append((site, x.shape, lm.dropout_rate(config, site)))
        return x * 0.5

    params = f64(lm.init_params(config, seed=0, scale=0.3))
    X = np.zeros((2, 5), int)
    lm.forward(lm.NUMPY_OPS, params, X, lm.zero_state(config, 2, np.float64), config, dropout)
    assert seen == [
        (lm.EMBEDDING_SITE, (5, 2, 3), 0.1),
        (0, (5, 2, 4), 0.2),
        (1, (5, 2, 4), 0.2),
        (lm.OUTPUT_SITE, (5, 2, 4), 0.3),
    ]
    assert lm.any_dropout(config) and not lm.any_dropout(lm.LMConfig())


def test_a_site_at_rate_0_is_left_alone():
    config = lm.LMConfig(vocab_size=8, num_hiddens=4, embedding=3, output_dropout=0.5)
    sites = []
    params = f64(lm.init_params(config, seed=0, scale=0.3))
    state = lm.zero_state(config, 1, np.float64)
    lm.forward(
        lm.NUMPY_OPS,
        params,
        np.zeros((1, 2), int),
        state,
        config,
        lambda x, s: sites.append(s) or x,
    )
    assert sites == [lm.OUTPUT_SITE]


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(embedding=4, num_hiddens=8, tie_weights=True), "embedding (4) must equal"),
        (dict(tie_weights=True), "embedding (0) must equal"),
        (dict(embed_dropout=0.1), "embed_dropout needs an embedding"),
        (dict(embedding=4, output_dropout=1.0), "output_dropout must be in [0, 1)"),
        (dict(embedding=-1), "embedding"),
    ],
)
def test_bad_text_model_settings(settings, message):
    with pytest.raises(
        InputError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        lm.LMConfig(**settings)


def test_old_checkpoints_load_as_one_hot_models():
    stored = {
        "cell": "lstm",
        "vocab_size": 28,
        "num_hiddens": 8,
        "num_layers": 1,
        "dropout": 0.0,
        "output_tanh": True,
    }
    config = lm.LMConfig.from_dict(stored)
    assert config.embedding == 0 and "W_emb" not in config.param_shapes()


def test_warm_up_then_cosine():
    schedule = ScheduleConfig("cosine", warmup_steps=4, total_steps=14, min_lr_fraction=0.1)
    factors = [schedule.factor(s) for s in range(20)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[9] == pytest.approx(0.55)
    assert factors[14:] == [pytest.approx(0.1)] * 6
    assert all(a >= b for a, b in zip(factors[3:], factors[4:]))
    assert ScheduleConfig().constant and not schedule.constant
    assert ScheduleConfig(warmup_steps=2).factor(5) == 1.0
    mid = ScheduleConfig("cosine", total_steps=10).factor(5)
    assert mid == pytest.approx(0.5 * (1 + math.cos(math.pi / 2)))


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(decay="linear"), "decay must be one of constant, cosine"),
        (dict(decay="cosine", warmup_steps=5, total_steps=5), "beyond the warm-up"),
        (dict(min_lr_fraction=2.0), "at most 1"),
        (dict(warmup_steps=-1), "warmup_steps"),
    ],
)
def test_bad_schedules(settings, message):
    with pytest.raises(InputError, match=message):
        ScheduleConfig(**settings)


def test_uniform_initialisation_bounds_and_reproducibility():
    config = lm.LMConfig(vocab_size=50, num_hiddens=16, num_layers=2, embedding=8)
    params = lm.init_params(config, seed=4, kind="uniform")
    assert params.keys() == config.param_shapes().keys()
    for name, value in params.items():
        assert value.dtype == np.float32
        if not name.rpartition(".")[2].startswith("W"):
            assert not value.any(), name  # biases start at 0
            continue
        limit = 0.1 if name in ("W_emb", "W_hq") else 0.25  # 1 / sqrt(16)
        assert np.abs(value).max() <= limit and np.abs(value).max() > 0.8 * limit, name
    again = lm.init_params(config, seed=4, kind="uniform")
    assert all(np.array_equal(params[k], again[k]) for k in params)
    book = lm.init_params(config, seed=4)
    assert np.abs(book["W_emb"]).max() < 0.06  # N(0, 0.01)
    with pytest.raises(InputError, match="init must be one of book, uniform"):
        lm.init_params(config, seed=4, kind="xavier")
