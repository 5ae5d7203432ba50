"""One forecaster, three frameworks: dl.torch, dl.tensorflow and dl.jax forecast with the
numbers of :func:`dl.forecast.forecast_forward` on NumPy, and :func:`dl.forecast.fit` moves
their parameters alike."""

import dataclasses
import importlib
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from dl import checkpoint, lm
from dl import forecast as fc
from dl.optim import OptimizerConfig

FRAMEWORKS = {"torch": ("torch",), "tensorflow": ("tensorflow", "tf_keras"), "jax": ("jax",)}
INSTALLED = [
    name
    for name, needs in FRAMEWORKS.items()
    if all(importlib.util.find_spec(package) for package in needs)
]
B, W, D, H, Q = 6, 5, 2, 8, 3

pytestmark = pytest.mark.skipif(not INSTALLED, reason="no deep-learning framework installed")


def forecaster(backend, config, params):
    return importlib.import_module(f"dl.{backend}.forecast").Forecaster(
        config, params, device="cpu"
    )


def config_of(cell, layers=2, dropout=0.0):
    return fc.ForecastConfig(
        cell, num_inputs=D, num_hiddens=H, num_layers=layers, dropout=dropout, num_outputs=Q
    )


def data(n=B, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((n, W, D)).astype(np.float32),
        rng.standard_normal((n, Q)).astype(np.float32),
    )


@pytest.mark.parametrize("backend", INSTALLED)
@pytest.mark.parametrize("cell", lm.CELLS)
def test_predictions_are_the_numpy_forward(backend, cell):
    config = config_of(cell, dropout=0.5)  # no dropout when predicting
    params = lm.init_params(config, 3, scale=0.4)
    X, _ = data()
    expected = fc.forecast_forward(lm.NUMPY_OPS, params, X, config)
    np.testing.assert_allclose(
        forecaster(backend, config, params).predict(X), expected, atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("backend", INSTALLED)
@pytest.mark.parametrize(
    "relative, levels",
    [("target", {"quantiles": (0.1, 0.5, 0.9)}), ("window", {"likelihood": "gaussian"})],
)
def test_relative_models_predict_the_numpy_forward(backend, relative, levels):
    config = fc.ForecastConfig(
        "lstm", D, H, num_outputs=Q, relative=relative, target=1, num_leads=0, **levels
    )
    if relative == "window":  # the second input a lead, the first the target
        config = dataclasses.replace(config, target=0, num_leads=1)
    params = lm.init_params(config, 4, scale=0.4)
    X, _ = data()
    expected = fc.forecast_forward(lm.NUMPY_OPS, params, X, config)
    np.testing.assert_allclose(
        forecaster(backend, config, params).predict(X), expected, atol=1e-5, rtol=1e-5
    )


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", fc.OPTIMIZERS)
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_training_moves_every_parameter_alike_in_every_framework(cell, optimizer):
    config = config_of(cell)
    start = lm.init_params(config, 1, scale=0.4)
    # RMSprop's first steps are lr / sqrt(1 - rho) = 10 lr, whatever the gradient's size, so
    # float32 noise in a near-zero gradient moves a weight by 10 lr: a tenth of the rate
    lr = 0.005 if optimizer == "rmsprop" else 0.05
    settings = fc.FitSettings(epochs=3, batch_size=4, lr=lr, optimizer=optimizer, seed=5)
    trained, histories = {}, {}
    for backend in INSTALLED:
        model = forecaster(backend, config, start)
        result = fc.fit(model, data(12), data(4, seed=1), settings)
        trained[backend] = model.numpy_params()
        histories[backend] = [r["val_loss"] for r in result.history]
    first, *others = INSTALLED
    for name, value in trained[first].items():
        assert not np.allclose(value, start[name]), f"{name} did not move"
    if not others:
        pytest.skip(f"only {first} is installed: no other framework to compare with")
    for backend in others:
        np.testing.assert_allclose(histories[backend], histories[first], rtol=1e-4)
        for name, value in trained[first].items():
            np.testing.assert_allclose(
                trained[backend][name], value, atol=1e-4, err_msg=f"{backend} {name}"
            )


@pytest.mark.slow
@pytest.mark.parametrize("backend", INSTALLED)
def test_dropout_trains_and_predictions_stay_deterministic(backend):
    config = config_of("lstm", dropout=0.5)
    model = forecaster(backend, config, lm.init_params(config, 0, scale=0.4))
    model.reseed(1)
    loss = float(model.make_step(OptimizerConfig("adam", 0.01), 1.0)(*data()))
    X, _ = data(seed=2)
    assert np.isfinite(loss)
    np.testing.assert_array_equal(model.predict(X), model.predict(X))
    np.testing.assert_allclose(
        model.predict(X),
        fc.forecast_forward(lm.NUMPY_OPS, model.numpy_params(), X, config),
        atol=1e-5,
    )


def test_a_checkpoint_loads_in_every_framework(tmp_path):
    config = config_of("gru", layers=1)
    params = lm.init_params(config, 2, scale=0.4)
    checkpoint.save(tmp_path, params, {"model": config.to_dict()}, stem="forecast")
    loaded, meta = checkpoint.load(tmp_path, stem="forecast")
    config = fc.ForecastConfig.from_dict(meta["model"])
    X, _ = data()
    for backend in INSTALLED:
        model = forecaster(backend, config, loaded)
        np.testing.assert_allclose(
            model.predict(X), fc.forecast_forward(lm.NUMPY_OPS, params, X, config), atol=1e-5
        )
        model.load({name: value * 0 for name, value in params.items()})
        assert np.all(model.predict(X) == 0)


@pytest.mark.skipif("jax" not in INSTALLED, reason="JAX is not installed")
def test_jax_predicts_any_number_of_windows_with_one_compiled_shape():
    config = config_of("lstm", layers=1)
    params = lm.init_params(config, 5, scale=0.4)
    model = forecaster("jax", config, params)
    for n in (1, 300, 7):  # one window, two chunks (the second padded), a few
        X, _ = data(n, seed=n)
        expected = fc.forecast_forward(lm.NUMPY_OPS, params, X, config)
        np.testing.assert_allclose(model.predict(X), expected, atol=1e-5, rtol=1e-5)
    fc.fit(model, data(12), data(4, seed=1), fc.FitSettings(epochs=2, batch_size=4))
    model.predict(X)  # after the engine's parameters and load()'s: still the same program
    assert model._predict._cache_size() == 1


@pytest.fixture
def jax_cache_settings():
    """JAX's compilation cache settings, put back after the test."""
    jax = pytest.importorskip("jax")
    names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
    before = {name: getattr(jax.config, name) for name in names}
    yield jax
    for name, value in before.items():
        jax.config.update(name, value)


def test_the_compilation_cache_goes_where_it_is_told(tmp_path, monkeypatch, jax_cache_settings):
    from dl.jax import engine

    jax = jax_cache_settings
    monkeypatch.setenv("DL_JAX_CACHE_DIR", "off")
    before = jax.config.jax_compilation_cache_dir
    assert engine.use_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir == before
    monkeypatch.setenv("DL_JAX_CACHE_DIR", str(tmp_path / "mine"))
    assert engine.use_compilation_cache() == tmp_path / "mine" and (tmp_path / "mine").is_dir()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    monkeypatch.delenv("DL_JAX_CACHE_DIR")
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax's"))  # JAX reads it
    assert engine.use_compilation_cache() == tmp_path / "jax's"
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert engine.use_compilation_cache() == tmp_path / "xdg" / "dl" / "jax"
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("DL_JAX_CACHE_DIR", str(tmp_path / "file" / "below"))
    assert engine.use_compilation_cache() is None  # cannot be made: JAX as it was


@pytest.mark.skipif("jax" not in INSTALLED, reason="JAX is not installed")
def test_dl_forecast_keeps_its_compiled_programs_for_the_next_run(tmp_path):
    csv = tmp_path / "sine.csv"
    csv.write_text("y\n" + "".join(f"{np.sin(t / 3):.5f}\n" for t in range(80)))
    argv = ["forecast", "--csv", str(csv), "--column", "y", "--epochs", "2", "--backend", "jax"]
    cached = {}
    for setting in ("off", str(tmp_path / "cache")):
        env = {**os.environ, "DL_JAX_CACHE_DIR": setting, "JAX_PLATFORMS": "cpu"}
        out = ["--out", str(tmp_path / f"run-{len(cached)}")]
        done = subprocess.run(
            [sys.executable, "-m", "dl", *argv, *out], capture_output=True, text=True, env=env
        )
        assert done.returncode == 0, done.stderr[-3000:]
        cached[setting] = sorted(p.name for p in (tmp_path / "cache").glob("*"))
    assert cached["off"] == []
    assert any("pure_step" in name for name in cached[str(tmp_path / "cache")])
