"""The training engine of every backend: each optimizer of dl.optim, taken from the
framework's own library, computes the NumPy reference's updates; its state leaves and
re-enters a trainer under the canonical names, so a resumed run continues exactly, on any
backend."""

import importlib

import numpy as np
import pytest

from dl import lm, optim
from dl import reference as ref
from dl.optim import OptimizerConfig
from training_helpers import random_batches

BACKENDS = ["torch", "tensorflow", "jax"]
V, H, B, T = 10, 6, 4, 5
OPTIMIZERS = {
    "sgd": OptimizerConfig("sgd", 2.0),
    "sgd-decay": OptimizerConfig("sgd", 0.5, weight_decay=0.1),
    "adam": OptimizerConfig("adam", 0.05),
    "adamw": OptimizerConfig("adamw", 0.05, weight_decay=0.1),
    "rmsprop": OptimizerConfig("rmsprop", 0.01),
}


def lm_module(name):
    pytest.importorskip(name)
    return importlib.import_module(f"dl.{name}.lm")


def model_classes(module):
    """The backend's scratch model and, where it computes the LSTM, its layers."""
    return {"scratch": module.LanguageModel, "concise": module.LayersModel}


def train(trainer, batches, state=None):
    state = trainer.begin_state(B) if state is None else state
    for X, Y in batches:
        state = trainer.train_step(X, Y, state)
    return state


@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("name", BACKENDS)
def test_updates_and_state_are_the_reference(name, opt):
    config = lm.LMConfig("lstm", V, H)
    params = lm.init_params(config, 3, scale=0.5)
    batches = random_batches(3, B, T, V)
    f64 = {k: v.astype(np.float64) for k, v in params.items()}
    want, losses, want_state = ref.optimize_steps("lstm", f64, batches, OPTIMIZERS[opt], 0.5)
    for impl, cls in model_classes(lm_module(name)).items():
        model = cls(config, params, device="cpu")
        trainer = model.trainer(OPTIMIZERS[opt], 0.5)
        train(trainer, batches)
        assert trainer.take_loss_sum() == pytest.approx(sum(losses) * B * T, rel=1e-5)
        for key, value in model.numpy_params().items():
            np.testing.assert_allclose(
                value, want[key], rtol=1e-4, atol=1e-5, err_msg=f"{impl} {key}"
            )
        state = trainer.optimizer_state()
        assert list(state) == optim.state_names(OPTIMIZERS[opt], config.param_shapes())
        for key, value in state.items():
            np.testing.assert_allclose(
                value, want_state[key], rtol=1e-4, atol=1e-6, err_msg=f"{impl} {key}"
            )


@pytest.mark.parametrize("opt", ["rmsprop", "adamw"])
@pytest.mark.parametrize("name", BACKENDS)
def test_a_resumed_trainer_continues_exactly(name, opt):
    """Two steps, then weights and optimizer state through NumPy into a new model and
    trainer, then two more: bit for bit the four uninterrupted steps."""
    config = lm.LMConfig("lstm", V, H, num_layers=2)
    params = lm.init_params(config, 1, scale=0.5)
    batches = random_batches(4, B, T, V)
    for impl, cls in model_classes(lm_module(name)).items():
        whole = cls(config, params, device="cpu")
        train(whole.trainer(OPTIMIZERS[opt], 1.0), batches)
        first = cls(config, params, device="cpu")
        trainer = first.trainer(OPTIMIZERS[opt], 1.0)
        state = train(trainer, batches[:2])
        saved_params, saved_state = first.numpy_params(), trainer.optimizer_state()
        second = cls(config, saved_params, device="cpu")
        resumed = second.trainer(OPTIMIZERS[opt], 1.0)
        resumed.load_optimizer_state(saved_state)
        train(resumed, batches[2:], state)
        for key, value in second.numpy_params().items():
            np.testing.assert_array_equal(value, whole.numpy_params()[key], err_msg=f"{impl} {key}")


@pytest.mark.parametrize("name", BACKENDS)
def test_state_that_does_not_fit_is_refused(name):
    config = lm.LMConfig("lstm", V, H)
    model = lm_module(name).LanguageModel(config, lm.init_params(config, 0), device="cpu")
    trainer = model.trainer(OPTIMIZERS["adam"], 1.0)
    rms_state = optim.zero_state(OPTIMIZERS["rmsprop"], config.param_shapes())
    with pytest.raises(
        ValueError,
        match=r"optimizer state for adam does not fit: missing "
        r"\['opt.m.W_xi'",
    ):
        trainer.load_optimizer_state(rms_state)


def test_optimizer_state_moves_between_backends():
    """Adam's state from one backend continues on every other as the reference does."""
    installed = [name for name in BACKENDS if importlib.util.find_spec(name)]
    if len(installed) < 2:
        pytest.skip("needs two backends")
    config = lm.LMConfig("lstm", V, H)
    params = lm.init_params(config, 2, scale=0.5)
    batches = random_batches(4, B, T, V)
    first = lm_module(installed[0]).LanguageModel(config, params, device="cpu")
    trainer = first.trainer(OPTIMIZERS["adam"], 1.0)
    train(trainer, batches[:2])
    saved_params, saved_state = first.numpy_params(), trainer.optimizer_state()
    f64 = lambda arrays: {k: v.astype(np.float64) for k, v in arrays.items()}
    want, _, _ = ref.optimize_steps(
        "lstm",
        f64(saved_params),
        batches[2:],
        OPTIMIZERS["adam"],
        1.0,
        optimizer_state=f64(saved_state),
    )
    for other in installed[1:]:
        model = lm_module(other).LanguageModel(config, saved_params, device="cpu")
        resumed = model.trainer(OPTIMIZERS["adam"], 1.0)
        resumed.load_optimizer_state(saved_state)
        train(resumed, batches[2:])  # from a fresh recurrent state, as the reference
        for key, value in model.numpy_params().items():
            np.testing.assert_allclose(
                value, want[key], rtol=1e-4, atol=1e-5, err_msg=f"{other} {key}"
            )


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_forecasters_take_the_same_steps_on_every_backend(opt):
    """Three steps of each optimizer give one forecaster's weights on every backend."""
    from dl import forecast as fc

    installed = [name for name in BACKENDS if importlib.util.find_spec(name)]
    if len(installed) < 2:
        pytest.skip("needs two backends")
    config = fc.ForecastConfig(cell="gru", num_inputs=2, num_hiddens=5, num_outputs=3)
    params = lm.init_params(config, 0, scale=0.4)
    rng = np.random.default_rng(0)
    batches = [
        (
            rng.standard_normal((4, 6, 2)).astype(np.float32),
            rng.standard_normal((4, 3)).astype(np.float32),
        )
        for _ in range(3)
    ]
    results = {}
    for name in installed:
        module = importlib.import_module(f"dl.{name}.forecast")
        model = module.Forecaster(config, params, device="cpu")
        step = model.make_step(OPTIMIZERS[opt], 0.5)
        for X, Y in batches:
            step(X, Y)
        results[name] = model.numpy_params()
    for name in installed[1:]:
        for key, value in results[name].items():
            np.testing.assert_allclose(
                value, results[installed[0]][key], rtol=1e-4, atol=1e-5, err_msg=f"{name} {key}"
            )
