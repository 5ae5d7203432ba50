"""Training and prediction tests that are the same on every framework: each runs once per
installed framework (a missing one skips its cases), through a small adapter where the book's
API differs there (devices and strategies, RNNModelScratch's argument order, grad_clipping on
a net or on gradients). Framework-specific tests stay in ``test_{torch,tensorflow,jax}_training``.
"""

import contextlib
import importlib

import numpy as np
import pytest

from dl import reference as ref
from dl.train import DivergedError
from training_helpers import (
    B,
    H,
    V,
    assert_weights_close,
    global_norm,
    numpy_params,
    random_batches,
    random_grads,
    summary_line,
    tiny_loader,
    train_steps,
)

FRAMEWORKS = ("torch", "tensorflow", "jax")
CLIP_CASES = [
    ("torch", "module"),
    ("torch", "scratch"),
    ("tensorflow", "eager"),
    ("tensorflow", "compiled"),
    ("jax", "eager"),
    ("jax", "jit"),
]
JAX_COMPILED = "compiled the training step in"


class Adapter:
    """What most frameworks share; each subclass spells the book's API of one framework."""

    def compiled_once(self, trainer, net, capsys):
        """Checks around a trainer's first steps (JAX: compiled once); none by default."""
        return contextlib.nullcontext()

    def builds_no_graph(self, net):
        return True  # TensorFlow and JAX record gradients only under a tape or jax.grad


class TorchAdapter(Adapter):
    """dl.torch: a device argument everywhere, a loss and an updater, clipping on a net."""

    def __init__(self):
        self.torch = torch = importlib.import_module("torch")
        self.nn = importlib.import_module("torch.nn")
        self.dl = importlib.import_module("dl.torch")
        self.cpu = torch.device("cpu")

    def scratch_model(self, cell, params, vocab_size=V):
        _, init_state, forward = self.dl.CELLS[cell]
        tensors = [self.torch.tensor(params[n], requires_grad=True) for n in ref.PARAM_NAMES[cell]]
        return self.dl.RNNModelScratch(
            vocab_size, H, self.cpu, lambda v, h, d: tensors, init_state, forward
        )

    def concise_model(self, kind, vocab_size=V):
        self.torch.manual_seed(2)
        layer = {"gru": self.nn.GRU, "lstm": self.nn.LSTM}[kind]
        num_layers = 2 if kind == "gru" else 1  # the stacked case, as the torch tests had
        return self.dl.RNNModel(layer(vocab_size, H, num_layers), vocab_size=vocab_size)

    def losses(self):
        """Per-token or batch mean: the trainer sums over tokens either way."""
        return [self.nn.CrossEntropyLoss(reduction="none"), self.nn.CrossEntropyLoss()]

    def trainer(self, net, lr=1.0, theta=1.0, loss=None):
        loss = loss or self.losses()[0]
        return self.dl.TorchTrainer(net, loss, lr, self.cpu, theta=theta)

    def weights(self, net):
        return [p.detach().cpu().numpy().copy() for p in net.parameters()]

    def fill_nan(self, net):
        with self.torch.no_grad():
            for p in net.parameters():
                p.fill_(float("nan"))

    def train_dl(self, net, loader, vocab, lr, num_epochs, **kwargs):
        return self.dl.train_dl(net, loader, vocab, lr, num_epochs, self.cpu, **kwargs)

    def trained_on(self):
        """The device train_dl's summary line names."""
        return str(self.cpu)

    def updater(self, lr):
        return lr  # the fused SGD step

    def train_epoch(self, net, loader, updater):
        return self.dl.train_epoch_dl(net, loader, self.losses()[0], updater, self.cpu, False)

    def predict_dl(self, prefix, num_preds, net, vocab):
        return self.dl.predict_dl(prefix, num_preds, net, vocab, self.cpu)

    def begin_state(self, net):
        return net.begin_state(batch_size=1, device=self.cpu)

    def step(self, net, token, state):
        """One token through ``net``: (logits (1, vocab) as NumPy, state)."""
        with self.torch.no_grad():
            y, state = net(self.torch.tensor([[token]]), state)
        return y.numpy(), state

    def builds_no_graph(self, net):
        return all(p.grad is None for p in net.parameters())

    def clip(self, variant, norm, theta):
        """Sets gradients of global norm ``norm`` on a net and clips them in place; returns
        (the gradients set, the gradients after clipping) as NumPy."""
        if variant == "module":
            net = self.concise_model("lstm")
        else:
            net = self.scratch_model("lstm", numpy_params("lstm"))
        params = list(net.parameters())
        grads = random_grads([tuple(p.shape) for p in params], norm)
        for p, g in zip(params, grads):
            p.grad = self.torch.tensor(g)
        self.dl.grad_clipping(net, theta)
        return grads, [p.grad.numpy() for p in params]


class TensorFlowAdapter(Adapter):
    """dl.tensorflow: a strategy (None: the default) instead of a device, Keras losses and
    optimizers, clipping on a list of gradients (eager or in a tf.function)."""

    def __init__(self):
        self.tf = importlib.import_module("tensorflow")
        self.dl = importlib.import_module("dl.tensorflow")
        self.loss = self.tf.keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="none"
        )

    def scratch_model(self, cell, params, vocab_size=V):
        _, init_state, forward = self.dl.CELLS[cell]
        variables = [self.tf.Variable(params[n], name=n) for n in ref.PARAM_NAMES[cell]]
        return self.dl.RNNModelScratch(vocab_size, H, init_state, forward, lambda v, h: variables)

    def concise_model(self, kind, vocab_size=V):
        """An RNNModel built eagerly and given weights drawn from NumPy (reproducible)."""
        keras = self.tf.keras
        layer = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[kind]
        model = self.dl.RNNModel(
            layer(H, time_major=True, return_sequences=True, return_state=True),
            vocab_size=vocab_size,
        )
        model(self.tf.zeros((1, 1), self.tf.int32), model.begin_state(batch_size=1))
        rng = np.random.default_rng(2)
        model.set_weights(
            [(0.3 * rng.standard_normal(w.shape)).astype(np.float32) for w in model.get_weights()]
        )
        return model

    def losses(self):
        return [self.loss]  # one object: train_epoch_dl counts epochs per (net, loss, updater)

    def trainer(self, net, lr=1.0, theta=1.0, loss=None):
        loss = loss or self.losses()[0]
        return self.dl.TFTrainer(net, loss, self.tf.keras.optimizers.SGD(lr), theta=theta)

    def weights(self, net):
        return [v.numpy() for v in net.trainable_variables]

    def fill_nan(self, net):
        for v in net.trainable_variables:
            v.assign(self.tf.fill(v.shape, np.nan))

    def train_dl(self, net, loader, vocab, lr, num_epochs, **kwargs):
        return self.dl.train_dl(net, loader, vocab, lr, num_epochs, None, **kwargs)

    def trained_on(self):
        return self.dl.try_gpu()._device_name  # whatever the strategy

    def updater(self, lr):
        return self.tf.keras.optimizers.SGD(lr)  # counts the epochs it trained

    def train_epoch(self, net, loader, updater):
        return self.dl.train_epoch_dl(net, loader, self.losses()[0], updater, False)

    def predict_dl(self, prefix, num_preds, net, vocab):
        return self.dl.predict_dl(prefix, num_preds, net, vocab)

    def begin_state(self, net):
        return net.begin_state(batch_size=1)

    def step(self, net, token, state):
        y, state = net(self.tf.constant([[token]]), state)
        return y.numpy(), state

    def clip(self, variant, norm, theta):
        """Clips gradients of global norm ``norm``; returns (given, clipped) as NumPy."""
        grads = random_grads([(3, 4), (4,), (2, 2, 2)], norm)
        clip = self.tf.function(self.dl.grad_clipping) if variant == "compiled" else None
        clipped = (clip or self.dl.grad_clipping)([self.tf.constant(g) for g in grads], theta)
        return grads, [np.asarray(c) for c in clipped]


class JaxAdapter(Adapter):
    """dl.jax: PRNG keys instead of devices, a float learning rate instead of a loss and an
    updater, a pure grad_clipping on a pytree (eager or jitted)."""

    def __init__(self):
        self.jax = importlib.import_module("jax")
        self.jnp = importlib.import_module("jax.numpy")
        self.dl = importlib.import_module("dl.jax")

    def scratch_model(self, cell, params, vocab_size=V):
        _, init_state, forward = self.dl.CELLS[cell]
        arrays = [self.jnp.asarray(params[n]) for n in ref.PARAM_NAMES[cell]]
        key = self.jax.random.PRNGKey(0)
        return self.dl.RNNModelScratch(
            vocab_size, H, key, lambda v, h, k: arrays, init_state, forward
        )

    def concise_model(self, kind, vocab_size=V):
        layer = {"gru": self.dl.GRU, "lstm": self.dl.LSTM}[kind](vocab_size, H)
        return self.dl.RNNModel(layer, vocab_size, self.jax.random.PRNGKey(0))

    def losses(self):
        return [None]  # JaxTrainer sums the token cross-entropy itself

    def trainer(self, net, lr=1.0, theta=1.0, loss=None):
        return self.dl.JaxTrainer(net, lr, theta)

    @contextlib.contextmanager
    def compiled_once(self, trainer, net, capsys):
        """The step compiles (timed) on the first batch, once; the params stay a list."""
        assert trainer.compile_seconds is None
        yield
        assert trainer.compile_seconds > 0
        assert isinstance(net.params, list)
        assert capsys.readouterr().err.count(JAX_COMPILED) == 1

    def weights(self, net):
        return [np.asarray(p).copy() for p in self.jax.tree_util.tree_leaves(net.params)]

    def fill_nan(self, net):
        net.params = self.jax.tree_util.tree_map(lambda p: p * self.jnp.nan, net.params)

    def train_dl(self, net, loader, vocab, lr, num_epochs, **kwargs):
        return self.dl.train_dl(net, loader, vocab, lr, num_epochs, **kwargs)

    def trained_on(self):
        device = self.dl.try_gpu()  # train_dl's default
        return f"{device.platform}:{device.id}"

    def updater(self, lr):
        return lr

    def train_epoch(self, net, loader, updater):
        return self.dl.train_epoch_dl(net, loader, updater)

    def predict_dl(self, prefix, num_preds, net, vocab):
        return self.dl.predict_dl(prefix, num_preds, net, vocab)

    def begin_state(self, net):
        return net.begin_state(1)

    def step(self, net, token, state):
        y, state = self.jax.jit(net.apply)(net.params, self.jnp.array([[token]]), state)
        return np.asarray(y), state

    def clip(self, variant, norm, theta):
        """Clips a nested pytree of gradients of global norm ``norm``; checks the tree keeps
        its structure and the input is untouched; returns (given, clipped) leaves as NumPy."""
        tree_util = self.jax.tree_util
        leaves = random_grads([(3, 4), (4,), (2, 2, 2), (5,)], norm)
        grads = {"rnn": [leaves[0], leaves[1]], "dense": (leaves[2],), "b": leaves[3]}
        grads = tree_util.tree_map(self.jnp.asarray, grads)
        clip = self.dl.grad_clipping
        if variant == "jit":
            clip = self.jax.jit(clip, static_argnums=1)
        clipped = clip(grads, theta)
        assert tree_util.tree_structure(clipped) == tree_util.tree_structure(grads)
        given = [np.asarray(g) for g in tree_util.tree_leaves(grads)]  # after: clip is pure
        return given, [np.asarray(c) for c in tree_util.tree_leaves(clipped)]


ADAPTERS = {"torch": TorchAdapter, "tensorflow": TensorFlowAdapter, "jax": JaxAdapter}
_made = {}


def adapter(name):
    """The adapter of framework ``name``; skips the test when the framework is missing."""
    pytest.importorskip(name)
    if name not in _made:
        _made[name] = ADAPTERS[name]()
    return _made[name]


@pytest.fixture(params=FRAMEWORKS)
def fw(request):
    return adapter(request.param)


@pytest.fixture
def small_setup(fw):
    loader, vocab = tiny_loader()
    net = fw.scratch_model("lstm", numpy_params("lstm", vocab_size=len(vocab)), len(vocab))
    return net, loader, vocab


# ---------------------------------------------------------------------------------------------
# (a) the scratch models train exactly like the NumPy reference


@pytest.mark.parametrize("theta", [1.0, 0.2])  # 1: never clipped; 0.2: clipped (test_reference)
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_scratch_training_matches_reference(fw, cell, theta, capsys):
    params, batches = numpy_params(cell), random_batches()
    params64 = {name: p.astype(np.float64) for name, p in params.items()}
    ref_params, ref_losses = ref.train_steps(cell, params64, batches, lr=1.0, theta=theta)
    net = fw.scratch_model(cell, params)
    trainer = fw.trainer(net, lr=1, theta=theta)  # an integer lr
    with fw.compiled_once(trainer, net, capsys):
        losses = train_steps(trainer, batches)
    assert trainer.take_loss_sum() == 0.0  # reset by the last read
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-4, atol=1e-4)
    assert_weights_close(fw.weights(net), [ref_params[n] for n in ref.PARAM_NAMES[cell]], 1e-4)
    for before, after in zip((params[n] for n in ref.PARAM_NAMES[cell]), fw.weights(net)):
        assert not np.allclose(before, after)  # every parameter was trained


def test_trainer_loss_sum_is_token_summed_and_reset(fw):
    ((X, Y),) = random_batches(n=1)
    params = numpy_params("lstm")
    expected, _, _ = ref.loss_and_grads(
        "lstm",
        {n: p.astype(np.float64) for n, p in params.items()},
        ref.one_hot(X.T, V),
        Y.T.reshape(-1),
        ref.init_state("lstm", B, H),
    )
    for loss in fw.losses():
        trainer = fw.trainer(fw.scratch_model("lstm", params), loss=loss)
        state = trainer.train_step(X, Y, trainer.begin_state(B))
        assert [tuple(s.shape) for s in state] == [(B, H), (B, H)]
        np.testing.assert_allclose(trainer.take_loss_sum(), expected * Y.size, rtol=1e-5)
        assert trainer.take_loss_sum() == 0.0


# ---------------------------------------------------------------------------------------------
# (b) gradient clipping: on a net's gradients (torch) or on gradients (TensorFlow, JAX)


@pytest.mark.parametrize("name, variant", CLIP_CASES)
def test_grad_clipping_scales_a_large_norm_to_theta(name, variant):
    grads, clipped = adapter(name).clip(variant, norm=5.0, theta=1.0)
    assert global_norm(grads) == pytest.approx(5.0, rel=1e-6)
    assert global_norm(clipped) == pytest.approx(1.0, rel=1e-6)
    for g, c in zip(grads, clipped, strict=True):  # same direction: every entry scaled by 1/5
        assert c.shape == g.shape and c.dtype == g.dtype
        np.testing.assert_allclose(c, g / 5.0, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name, variant", CLIP_CASES)
def test_grad_clipping_leaves_a_small_norm_unchanged(name, variant):
    grads, clipped = adapter(name).clip(variant, norm=0.5, theta=1)  # integer theta
    for g, c in zip(grads, clipped, strict=True):
        np.testing.assert_array_equal(c, g)


@pytest.mark.parametrize("name, variant", CLIP_CASES[::2])
def test_grad_clipping_of_zero_gradients_stays_zero(name, variant):
    _, clipped = adapter(name).clip(variant, norm=0.0, theta=1.0)  # no division by zero
    assert all(np.all(c == 0) for c in clipped)


# ---------------------------------------------------------------------------------------------
# (c) bad inputs and divergence


@pytest.mark.parametrize(
    "lr, num_epochs, name",
    [
        (0, 1, "lr"),
        (-1.0, 1, "lr"),
        (float("nan"), 1, "lr"),
        (float("inf"), 1, "lr"),
        (1, -1, "num_epochs"),
        (1, 1.5, "num_epochs"),
    ],
)
def test_train_dl_rejects_bad_lr_and_epochs(fw, small_setup, capsys, lr, num_epochs, name):
    net, loader, vocab = small_setup
    before = fw.weights(net)
    with pytest.raises(ValueError, match=name):
        fw.train_dl(net, loader, vocab, lr, num_epochs)
    out = capsys.readouterr()
    assert out.out == "" and JAX_COMPILED not in out.err  # refused before training
    assert_weights_close(fw.weights(net), before, 0)


def test_predict_dl_rejects_negative_num_preds_and_empty_prefix(fw, small_setup):
    net, _, vocab = small_setup
    with pytest.raises(ValueError, match="num_preds"):
        fw.predict_dl("time", -1, net, vocab)
    with pytest.raises(ValueError, match="prefix"):
        fw.predict_dl("", 3, net, vocab)


@pytest.mark.filterwarnings("ignore:dl. lstm could not be compiled:RuntimeWarning")
@pytest.mark.parametrize("kind", ["scratch", "concise"])
def test_nan_weights_stop_training_with_diverged_error(fw, small_setup, capsys, kind):
    net, loader, vocab = small_setup
    if kind == "concise":
        net = fw.concise_model("lstm", vocab_size=len(vocab))
    fw.fill_nan(net)
    with pytest.raises(DivergedError, match=r"epoch 1\b") as info:
        fw.train_dl(net, loader, vocab, 1, 3)
    assert "smaller learning rate" in str(info.value)
    assert "perplexity" not in capsys.readouterr().out
    assert issubclass(fw.dl.DivergedError, FloatingPointError)
    assert fw.dl.DivergedError is DivergedError


@pytest.mark.parametrize("kind", ["scratch", "concise"])
def test_huge_learning_rate_stops_training_with_diverged_error(fw, small_setup, capsys, kind):
    net, loader, vocab = small_setup
    if kind == "concise":
        net = fw.concise_model("lstm", vocab_size=len(vocab))
    # clipped gradients keep the loss finite (~1e29 nats a token): the perplexity overflows
    with pytest.raises(DivergedError, match=r"epoch 1\b") as info:
        fw.train_dl(net, loader, vocab, 1e30, 3)
    assert "smaller learning rate" in str(info.value) and "lr=1e+30" in str(info.value)
    assert "perplexity" not in capsys.readouterr().out


def test_train_epoch_dl_names_the_epoch_and_lr_it_diverged_in(fw, small_setup):
    net, loader, _ = small_setup
    updater = fw.updater(0.5)
    for _ in range(2):
        fw.train_epoch(net, loader, updater)
    fw.fill_nan(net)
    with pytest.raises(DivergedError, match=r"in epoch 3\b.*\(lr=0\.5 now\)"):
        fw.train_epoch(net, loader, updater)


# ---------------------------------------------------------------------------------------------
# (d) train_dl, prediction and the book's names


def test_book_aliases(fw):
    assert fw.dl.train_ch8 is fw.dl.train_dl
    assert fw.dl.train_epoch_ch8 is fw.dl.train_epoch_dl
    assert fw.dl.predict_ch8 is fw.dl.predict_dl


@pytest.mark.parametrize("num_preds", [0, 1, 12])
def test_predict_dl_returns_prefix_plus_num_preds_characters(fw, small_setup, num_preds):
    net, _, vocab = small_setup
    out = fw.predict_dl("time traveller", num_preds, net, vocab)
    assert out.startswith("time traveller") and len(out) == len("time traveller") + num_preds
    assert fw.predict_dl("time traveller", num_preds, net, vocab) == out  # greedy


def test_predict_dl_maps_unknown_characters_to_unk(fw, small_setup):
    net, _, vocab = small_setup
    assert vocab["T"] == vocab["!"] == vocab.unk
    out = fw.predict_dl("Time Traveller!", 10, net, vocab)
    assert out.startswith("<unk>ime <unk>raveller<unk>")
    assert len(vocab[list(out.replace("<unk>", "?"))]) == len("Time Traveller!") + 10
    assert fw.predict_dl("time", 0, net, vocab) == "time"


@pytest.mark.parametrize("kind", ["scratch", "concise"])
def test_predict_dl_continuation_is_the_greedy_argmax(fw, small_setup, kind):
    """predict_dl warms up on the prefix and appends argmax tokens, as the book does."""
    net, _, vocab = small_setup
    if kind == "concise":
        net = fw.concise_model("gru", vocab_size=len(vocab))
    prefix = "the ti"
    state = fw.begin_state(net)
    outputs = [vocab[prefix[0]]]
    for token in prefix[1:]:
        _, state = fw.step(net, outputs[-1], state)
        outputs.append(vocab[token])
    for _ in range(5):
        y, state = fw.step(net, outputs[-1], state)
        outputs.append(int(np.argmax(y, axis=1)[0]))
    assert fw.predict_dl(prefix, 5, net, vocab) == "".join(vocab.to_tokens(outputs))
    assert fw.builds_no_graph(net)  # prediction builds no graph


def test_train_dl_returns_none_and_fills_a_given_animator(fw, small_setup, capsys):
    net, loader, vocab = small_setup
    animator = fw.dl.Animator()
    # None, as the book's: a notebook cell ending in train_dl shows no Out[] repr
    assert fw.train_dl(net, loader, vocab, 1, 20, animator=animator) is None
    assert animator.X == [[10, 20]] and len(animator.Y[0]) == 2
    assert all(np.isfinite(animator.Y[0]))
    lines = capsys.readouterr().out.strip("\n").split("\n")
    assert len(lines) == 5  # a continuation at epochs 10 and 20, the summary, two continuations
    assert summary_line(fw.trained_on()).match(lines[2]), lines[2]
