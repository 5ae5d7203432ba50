"""The PyTorch language model for real text: an embedding table, tied output weights and
dropout on embeddings and outputs, in the scratch model (:func:`dl.lm.forward`) and the
concise one (``nn.Embedding``, ``nn.RNN``/``nn.LSTM``, ``nn.Linear``); and the learning rate
a host-side schedule sets before each update (``TorchTrainer.set_lr``)."""

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from dl import checkpoint, lm, optim  # noqa: E402
from dl import reference as ref  # noqa: E402
from dl.errors import InputError  # noqa: E402
from dl.optim import OptimizerConfig, ScheduleConfig  # noqa: E402
from dl.torch.engine import TorchTrainer, trainable  # noqa: E402
from dl.torch.lm import OPS, LanguageModel, LayersModel  # noqa: E402
from training_helpers import random_batches  # noqa: E402

V, H, E, B, T = 10, 6, 5, 4, 5
MODELS = {"scratch": LanguageModel, "concise": LayersModel}
# PyTorch's nn.GRU is not the book's GRU: the concise model refuses it
CASES = [(impl, cell) for impl in MODELS for cell in lm.CELLS if (impl, cell) != ("concise", "gru")]
ADAM = OptimizerConfig("adam", 0.05)


def text_config(cell="lstm", num_layers=2, tied=False, **settings):
    """A model with an embedding table: E = H where the output layer is tied to it."""
    return lm.LMConfig(
        cell,
        V,
        H,
        num_layers=num_layers,
        embedding=H if tied else E,
        tie_weights=tied,
        **settings,
    )


def f64(arrays):
    return {k: np.asarray(v, np.float64) for k, v in arrays.items()}


def ids(seed, shape=(B, T)):
    return np.random.default_rng(seed).integers(0, V, shape)


def random_state(config, seed=1):
    """A flat state of :func:`dl.lm.forward`, float64, not zero."""
    rng = np.random.default_rng(seed)
    count = config.num_layers * config.state_per_layer
    return tuple(0.5 * rng.standard_normal((B, H)) for _ in range(count))


def model_state(model, flat):
    """A flat state as ``model`` takes it: a tuple of ``(B, H)``, or PyTorch's layers'
    ``(num_layers, B, H)`` slots."""
    tensors = [torch.tensor(s, dtype=torch.float32) for s in flat]
    if not isinstance(model, LayersModel):
        return tuple(tensors)
    per_layer = model.config.state_per_layer
    slots = tuple(torch.stack(tensors[slot::per_layer]) for slot in range(per_layer))
    return slots if per_layer == 2 else slots[0]


def flat_state(model, state):
    """The inverse of :func:`model_state`, as NumPy arrays."""
    if isinstance(model, LayersModel):
        slots = state if isinstance(state, tuple) else (state,)
        state = [slot[layer] for layer in range(model.config.num_layers) for slot in slots]
    return [s.detach().numpy() for s in state]


def float64_reference(config, params, X, Y, state):
    """NumPy's :func:`dl.lm.forward` in float64 (logits, state, mean loss) and the gradients
    of that loss, from the same forward pass in float64 under PyTorch's autograd."""
    logits, new_state = lm.forward(lm.NUMPY_OPS, f64(params), X, state, config)
    loss = ref.softmax_cross_entropy(logits, Y.T.reshape(-1))[0]
    leaves = {k: torch.tensor(v, requires_grad=True) for k, v in f64(params).items()}
    state64 = tuple(torch.tensor(s) for s in state)
    logits64, _ = lm.forward(OPS, leaves, torch.tensor(X), state64, config)
    np.testing.assert_allclose(logits64.detach().numpy(), logits, rtol=1e-12, atol=1e-14)
    F.cross_entropy(logits64, torch.tensor(Y.T.reshape(-1))).backward()
    return logits, new_state, loss, {k: w.grad.numpy() for k, w in leaves.items()}


def train(trainer, batches, state=None, schedule=None):
    """One update per batch; with a ``schedule``, ``set_lr`` before each update at the
    schedule's rate for the updates taken so far (``trainer.steps``, which resumes)."""
    state = trainer.begin_state(B) if state is None else state
    for X, Y in batches:
        if schedule is not None:
            trainer.set_lr(trainer.optimizer_config.lr * schedule.factor(trainer.steps))
        state = trainer.train_step(X, Y, state)
    return state


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("impl,cell", CASES)
def test_forward_loss_and_gradients_are_the_float64_model(impl, cell, num_layers, tied):
    config = text_config(cell, num_layers, tied)
    params = lm.init_params(config, 0, scale=0.5)
    X, Y, state = ids(0), ids(1), random_state(config)
    want, want_state, want_loss, want_grads = float64_reference(config, params, X, Y, state)
    model = MODELS[impl](config, params, device="cpu")
    assert list(model.numpy_params()) == list(config.param_shapes())
    # what trains is the canonical parameters, a tied matrix once
    assert sum(p.numel() for p in trainable(model)) == config.num_params()
    logits, new_state = model(torch.tensor(X), model_state(model, state))
    loss = F.cross_entropy(logits, torch.tensor(Y.T.reshape(-1)))
    loss.backward()
    np.testing.assert_allclose(logits.detach().numpy(), want, rtol=1e-5, atol=1e-6)
    assert float(loss.detach()) == pytest.approx(want_loss, rel=1e-6)
    for got, expected in zip(flat_state(model, new_state), want_state, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    grads = model.parameter_arrays(lambda p: p.grad.numpy().copy())
    assert list(grads) == list(want_grads)
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, want_grads[name], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("impl,cell", CASES)
def test_evaluation_and_generation_drop_nothing(impl, cell, tied):
    """A model that drops out at every site evaluates and generates, one token at a time
    with the state carried, as the float64 model without dropout."""
    config = text_config(cell, 2, tied, dropout=0.5, embed_dropout=0.5, output_dropout=0.5)
    params = lm.init_params(config, 2, scale=0.5)
    X, Y = ids(0), ids(1)
    want, _, want_loss, _ = float64_reference(
        config, params, X, Y, lm.zero_state(config, B, np.float64)
    )
    model = MODELS[impl](config, params, device="cpu")
    loss, _ = model.eval_loss(X, Y, model.begin_state(B))
    assert loss == pytest.approx(want_loss * Y.size, rel=1e-5)
    state = model.begin_state(1)
    for t in range(3):
        logits, state = model.step(int(X[0, t]), state)
        np.testing.assert_allclose(logits, want[t * B], rtol=1e-5, atol=1e-6)
    assert model.training  # evaluating leaves the training mode as it was


SITES = {
    "embeddings": dict(embed_dropout=0.3),
    "outputs": dict(output_dropout=0.4),
    "between layers": dict(dropout=0.5),
    "all": dict(embed_dropout=0.3, dropout=0.5, output_dropout=0.4),
}


@pytest.mark.parametrize("site", SITES)
def test_both_models_drop_the_same_units_at_every_site(site):
    """Seeded alike, the scratch and concise models draw the same masks and take the same
    steps; each site changes the training (it is not left out)."""
    config = text_config("lstm", 2, **SITES[site])
    params = lm.init_params(config, 4, scale=0.5)
    batches = random_batches(2, B, T, V)
    results = []
    for cls in MODELS.values():
        model = cls(config, params, device="cpu")
        model.reseed(7)
        trainer = model.trainer(ADAM, 1.0)
        train(trainer, batches)
        results.append((trainer.take_loss_sum(), model.numpy_params()))
    (scratch_loss, scratch), (concise_loss, concise) = results
    assert concise_loss == pytest.approx(scratch_loss, rel=1e-6)
    for name in params:
        np.testing.assert_allclose(concise[name], scratch[name], rtol=1e-4, atol=1e-6)
    plain = LanguageModel(text_config("lstm", 2), params, device="cpu")
    train(plain.trainer(ADAM, 1.0), batches)
    assert max(np.abs(plain.numpy_params()[k] - scratch[k]).max() for k in params) > 1e-2


def test_the_model_is_stochastic_when_any_site_drops():
    for settings, stochastic in [({}, False), *((s, True) for s in SITES.values())]:
        model = LanguageModel(text_config(**settings), lm.init_params(text_config(), 0))
        assert (model.dropout() is not None) == stochastic, settings
        model.eval()
        assert model.dropout() is None


def test_tied_weights_are_one_parameter_in_the_concise_model():
    config = text_config(tied=True)
    model = LayersModel(config, lm.init_params(config, 0, scale=0.5), device="cpu")
    assert model.linear.weight is model.embedding.weight
    trainer = model.trainer(ADAM, 1.0)
    state = trainer.begin_state(B)
    for X, Y in random_batches(2, B, T, V):
        state = trainer.train_step(X, Y, state)
    assert model.linear.weight is model.embedding.weight
    assert list(trainer.optimizer_state()) == optim.state_names(ADAM, config.param_shapes())
    assert "W_hq" not in model.numpy_params()


@pytest.mark.parametrize("impl", MODELS)
def test_weights_that_do_not_fit_the_table_are_refused(impl):
    config = text_config(tied=True)
    untied = lm.init_params(text_config(), 0)  # has W_hq and a (V, E) table
    with pytest.raises(InputError, match=r"unexpected \['W_hq'\]"):
        MODELS[impl](config, untied, device="cpu")
    params = dict(lm.init_params(config, 0), W_emb=np.zeros((V, E), np.float32))
    with pytest.raises(InputError, match=r"W_emb has shape \(10, 5\), the model needs \(10, 6\)"):
        MODELS[impl](config, params, device="cpu")


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("order", [("scratch", "concise"), ("concise", "scratch")])
def test_a_checkpoint_of_one_model_continues_in_the_other(tmp_path, order, tied):
    """Weights and Adam's state under the canonical names (``W_emb``, ``opt.m.W_emb``, ...)
    go through a checkpoint from one implementation to the other, which continues as an
    uninterrupted run of it; in the same implementation, bit for bit."""
    config = text_config("lstm", 2, tied)
    params = lm.init_params(config, 5, scale=0.5)
    batches = random_batches(4, B, T, V)
    first, second = (MODELS[impl] for impl in order)
    whole = {}
    for cls in (first, second):
        model = cls(config, params, device="cpu")
        train(model.trainer(ADAM, 1.0), batches)
        whole[cls] = model.numpy_params()
    model = first(config, params, device="cpu")
    trainer = model.trainer(ADAM, 1.0)
    state = flat_state(model, train(trainer, batches[:2]))
    checkpoint.save(tmp_path, model.numpy_params(), {}, optimizer_state=trainer.optimizer_state())
    saved, saved_state, _ = checkpoint.load_with_optimizer(tmp_path)
    assert "W_emb" in saved and "opt.m.W_emb" in saved_state and ("W_hq" in saved) != tied
    for cls in (first, second):
        resumed = cls(config, saved, device="cpu")
        trainer = resumed.trainer(ADAM, 1.0)
        trainer.load_optimizer_state(saved_state)
        train(trainer, batches[2:], model_state(resumed, state))
        for name, value in resumed.numpy_params().items():
            if cls is first:
                np.testing.assert_array_equal(value, whole[first][name], err_msg=name)
            np.testing.assert_allclose(value, whole[second][name], rtol=1e-4, atol=1e-6)


SCHEDULE = ScheduleConfig("cosine", warmup_steps=2, total_steps=5, min_lr_fraction=0.1)
SCHEDULED = {"sgd": OptimizerConfig("sgd", 2.0), "adam": ADAM}


def scheduled_reference(params, batches, optimizer, theta):
    """dl.reference's LSTM in float64, the state carried, one clipped update per batch at
    the schedule's rate for that update."""
    params, opt_state = f64(params), None
    state = ref.init_state("lstm", B, H)
    for step, (X, Y) in enumerate(batches):
        logits, new_state, cache = ref.forward("lstm", params, ref.one_hot(X.T, V), state)
        _, dlogits = ref.softmax_cross_entropy(logits, Y.T.reshape(-1))
        grads, _, _ = ref.backward("lstm", params, cache, dlogits)
        at_step = dataclasses.replace(optimizer, lr=optimizer.lr * SCHEDULE.factor(step))
        params, opt_state = ref.optimizer_step(
            at_step, params, ref.clip_grads(grads, theta), opt_state
        )
        state = new_state
    return params


@pytest.mark.parametrize("opt", SCHEDULED)
@pytest.mark.parametrize("impl", MODELS)
def test_a_schedule_set_before_each_update_is_the_reference(impl, opt):
    """Six updates through warm-up and a cosine decay to its floor, ``set_lr`` before each,
    give the reference's weights; the constant rate does not."""
    config = lm.LMConfig("lstm", V, H)
    params = lm.init_params(config, 3, scale=0.5)
    batches = random_batches(6, B, T, V)
    want = scheduled_reference(params, batches, SCHEDULED[opt], 0.5)
    model = MODELS[impl](config, params, device="cpu")
    trainer = model.trainer(SCHEDULED[opt], 0.5)
    train(trainer, batches, schedule=SCHEDULE)
    assert trainer.lr == pytest.approx(SCHEDULED[opt].lr * SCHEDULE.factor(5))
    for name, value in model.numpy_params().items():
        np.testing.assert_allclose(value, want[name], rtol=1e-4, atol=1e-5, err_msg=name)
    constant = MODELS[impl](config, params, device="cpu")
    train(constant.trainer(SCHEDULED[opt], 0.5), batches)
    assert not np.allclose(constant.numpy_params()["W_hq"], want["W_hq"], rtol=1e-3)


@pytest.mark.parametrize("impl", MODELS)
def test_a_run_resumed_mid_schedule_continues_exactly(impl):
    """Three scheduled updates, weights and optimizer state into a new model and trainer,
    three more: the rate follows the restored update count, bit for bit the six in one go."""
    config = text_config("lstm", 1, tied=True)
    params = lm.init_params(config, 1, scale=0.5)
    batches = random_batches(6, B, T, V)
    whole = MODELS[impl](config, params, device="cpu")
    train(whole.trainer(ADAM, 1.0), batches, schedule=SCHEDULE)
    first = MODELS[impl](config, params, device="cpu")
    trainer = first.trainer(ADAM, 1.0)
    state = train(trainer, batches[:3], schedule=SCHEDULE)
    second = MODELS[impl](config, first.numpy_params(), device="cpu")
    resumed = second.trainer(ADAM, 1.0)
    resumed.load_optimizer_state(trainer.optimizer_state())
    train(resumed, batches[3:], state, schedule=SCHEDULE)
    for name, value in second.numpy_params().items():
        np.testing.assert_array_equal(value, whole.numpy_params()[name], err_msg=name)


def test_set_lr_needs_a_learning_rate_to_set():
    config = lm.LMConfig("lstm", V, H)
    model = LanguageModel(config, lm.init_params(config, 0), device="cpu")
    trainer = TorchTrainer(model, nn.CrossEntropyLoss(), lambda batch_size: None, "cpu")
    with pytest.raises(InputError, match="set_lr: the book's updater function holds its own"):
        trainer.set_lr(0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_set_lr_refuses_a_cuda_graph_step():
    config = lm.LMConfig("lstm", V, H)
    model = LayersModel(config, lm.init_params(config, 0), device="cuda")
    trainer = TorchTrainer(model, nn.CrossEntropyLoss(), 1.0, "cuda", cuda_graph=True)
    with pytest.raises(InputError, match="replays the learning rate it captured"):
        trainer.set_lr(0.1)
