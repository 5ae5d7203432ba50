"""dl.torch.engine beyond the contract of test_engine.py: its optimizer table, the
forecaster's step, state before any update and from a foreign updater, and the book's
train_epoch_dl stopping on a non-finite loss."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn

from dl import forecast as fc
from dl import lm, optim
from dl import reference as ref
from dl import torch as dl
from dl.errors import InputError
from dl.optim import OptimizerConfig
from dl.torch import engine
from dl.torch.forecast import Forecaster
from dl.torch.lm import LanguageModel, LayersModel
from test_engine import OPTIMIZERS
from training_helpers import numpy_params, tiny_loader


def test_the_table_builds_every_optimizer_of_dl_optim_with_its_numbers():
    assert set(engine.OPTIMIZERS) == set(optim.NAMES)
    param = nn.Parameter(torch.zeros(2))
    config = OptimizerConfig("rmsprop", 0.02, rho=0.9, eps=1e-6)
    group = engine.build_optimizer(config, [param]).param_groups[0]
    assert isinstance(engine.build_optimizer(config, [param]), torch.optim.RMSprop)
    assert (
        group["lr"],
        group["alpha"],
        group["eps"],
        group["momentum"],
        group["centered"],
        group["foreach"],
    ) == (0.02, 0.9, 1e-6, 0, False, True)
    group = engine.build_optimizer(OPTIMIZERS["adamw"], [param]).param_groups[0]
    assert (group["betas"], group["weight_decay"]) == ((0.9, 0.999), 0.1)


@pytest.mark.parametrize("opt", OPTIMIZERS)
def test_a_forecaster_step_is_the_reference_update_of_its_clipped_mean_squared_error(opt):
    config = fc.ForecastConfig(cell="lstm", num_inputs=2, num_hiddens=5, num_outputs=3)
    params = lm.init_params(config, 0, scale=0.4)
    rng = np.random.default_rng(0)
    batches = [
        (
            rng.standard_normal((4, 6, 2)).astype(np.float32),
            rng.standard_normal((4, 3)).astype(np.float32),
        )
        for _ in range(3)
    ]
    model, probe = Forecaster(config, params, device="cpu"), Forecaster(config, params, "cpu")
    step = model.make_step(OPTIMIZERS[opt], 0.5)
    want, state = {k: v.astype(np.float64) for k, v in params.items()}, None
    for X, Y in batches:
        probe.load(want)
        loss = nn.functional.mse_loss(probe(torch.tensor(X)), torch.tensor(Y))
        loss.backward()
        grads = {name: w.grad.double().numpy() for name, w in zip(probe.names, probe.weights)}
        want, state = ref.optimizer_step(OPTIMIZERS[opt], want, ref.clip_grads(grads, 0.5), state)
        probe.zero_grad()
        assert float(step(X, Y)) == pytest.approx(float(loss.detach()), rel=1e-5)
    for name, value in model.numpy_params().items():
        np.testing.assert_allclose(value, want[name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_state_before_any_update_is_the_zero_state():
    config = lm.LMConfig("lstm", 10, 6, num_layers=2)
    for cls in (LanguageModel, LayersModel):
        trainer = cls(config, lm.init_params(config, 0), "cpu").trainer(OPTIMIZERS["adam"], 1.0)
        zero = optim.zero_state(OPTIMIZERS["adam"], config.param_shapes())
        state = trainer.optimizer_state()
        assert list(state) == list(zero)
        for name, value in zero.items():
            np.testing.assert_array_equal(state[name], value, err_msg=name)


def test_a_torch_optimizer_has_no_canonical_state():
    config = lm.LMConfig("lstm", 10, 6)
    model = LanguageModel(config, lm.init_params(config, 0), "cpu")
    trainer = dl.TorchTrainer(
        model, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters()), "cpu"
    )
    with pytest.raises(InputError, match="not a dl.optim.OptimizerConfig"):
        trainer.optimizer_state()


@pytest.mark.parametrize("kind", ["float", "optim"])
def test_train_epoch_dl_names_the_epoch_and_learning_rate_where_the_loss_diverges(kind):
    loader, vocab = tiny_loader()
    params = numpy_params("lstm", vocab_size=len(vocab))
    net = dl.RNNModelScratch(
        len(vocab),
        16,
        "cpu",
        lambda v, h, d: [
            torch.tensor(params[n], requires_grad=True) for n in ref.PARAM_NAMES["lstm"]
        ],
        dl.init_lstm_state,
        dl.lstm,
    )
    updater = 0.5 if kind == "float" else torch.optim.SGD(net.params, 0.5)
    loss = nn.CrossEntropyLoss()
    for _ in range(2):
        dl.train_epoch_dl(net, loader, loss, updater, "cpu", False)
    with torch.no_grad():
        net.params[0].fill_(float("nan"))
    with pytest.raises(dl.DivergedError, match=r"diverged in epoch 3\b.*\(lr=0\.5 now\)"):
        dl.train_epoch_dl(net, loader, loss, updater, "cpu", False)
