"""The book's helper names per backend (dl.torch.book, dl.tensorflow.book, dl.jax.book): bound as
d2l 0.17.6 binds them, and the small helpers (load_array, evaluate_loss, ...) give its numbers."""

import importlib

import numpy as np
import pytest

ALIASES = [
    "ones",
    "zeros",
    "tensor",
    "arange",
    "meshgrid",
    "sin",
    "sinh",
    "cos",
    "cosh",
    "tanh",
    "linspace",
    "exp",
    "log",
    "normal",
    "rand",
    "matmul",
    "int32",
    "float32",
    "concat",
    "stack",
    "abs",
    "eye",
    "numpy",
    "size",
    "reshape",
    "reduce_sum",
    "argmax",
    "astype",
    "transpose",
    "reduce_mean",
]
HELPERS = [
    "use_svg_display",
    "set_figsize",
    "set_axes",
    "plot",
    "plt",
    "load_array",
    "evaluate_loss",
    "synthetic_data",
    "linreg",
    "squared_loss",
    "sgd",
    "Timer",
    "Accumulator",
    "Animator",
]


@pytest.mark.parametrize("framework", ["torch", "tensorflow", "jax"])
def test_every_backend_exports_dl_books_names(framework):
    pytest.importorskip(framework)
    from dl import book

    dl = importlib.import_module(f"dl.{framework}")
    assert [
        name for name in book.__all__ if getattr(dl, name, None) is not getattr(book, name)
    ] == []
    own = book.CELL_NAMES + ((book.SEQ2SEQ_NAMES + book.TENSOR_NAMES) if framework != "jax" else ())
    assert [name for name in own if not hasattr(dl, name)] == []


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_every_book_name_is_there(framework):
    pytest.importorskip(framework)
    dl = importlib.import_module(f"dl.{framework}")
    missing = [name for name in ALIASES + HELPERS if not hasattr(dl, name)]
    assert missing == []
    assert framework != "torch" or hasattr(dl, "to")


def test_torch_aliases_are_the_books():
    torch = pytest.importorskip("torch")
    from dl import torch as d2l

    for name in [
        "ones",
        "zeros",
        "tensor",
        "arange",
        "sin",
        "exp",
        "log",
        "normal",
        "rand",
        "matmul",
        "stack",
        "abs",
        "eye",
        "linspace",
        "meshgrid",
    ]:
        assert getattr(d2l, name) is getattr(torch, name), name
    assert d2l.concat is torch.cat and d2l.float32 is torch.float32 and d2l.int32 is torch.int32
    x = torch.arange(6.0, requires_grad=True)
    assert isinstance(d2l.numpy(x * 2), np.ndarray)  # detached first
    assert d2l.size(torch.zeros(2, 3)) == 6
    assert d2l.reshape(x, (2, 3)).shape == (2, 3)
    assert d2l.transpose(torch.zeros(2, 3)).shape == (3, 2)
    assert d2l.astype(x, torch.int32).dtype == torch.int32
    assert float(d2l.reduce_sum(x.detach())) == 15 and float(d2l.reduce_mean(x.detach())) == 2.5
    assert int(d2l.argmax(x)) == 5
    assert d2l.to(x, torch.float64).dtype == torch.float64


def test_tensorflow_aliases_are_the_books():
    tf = pytest.importorskip("tensorflow")
    from dl import tensorflow as d2l

    assert d2l.normal is tf.random.normal and d2l.rand is tf.random.uniform
    assert d2l.tensor is tf.constant and d2l.arange is tf.range and d2l.astype is tf.cast
    assert d2l.log is tf.math.log and d2l.concat is tf.concat and d2l.reshape is tf.reshape
    assert d2l.transpose is tf.transpose and d2l.reduce_mean is tf.reduce_mean
    x = tf.reshape(tf.range(6.0), (2, 3))
    assert d2l.size(x) == 6 and isinstance(d2l.size(x), np.integer)
    np.testing.assert_array_equal(d2l.numpy(x), np.arange(6.0).reshape(2, 3))


def test_torch_load_array_and_evaluate_loss():
    torch = pytest.importorskip("torch")
    from dl import torch as d2l

    X, y = torch.arange(10.0).reshape(5, 2), torch.arange(5.0)
    batches = list(d2l.load_array((X, y), 2, is_train=False))
    assert [len(b[0]) for b in batches] == [2, 2, 1]
    torch.testing.assert_close(torch.cat([b[1] for b in batches]), y)
    net = torch.nn.Linear(2, 1)
    expected = float(((net(X).reshape(-1) - y) ** 2).mean().detach())
    loss = torch.nn.MSELoss(reduction="none")
    assert d2l.evaluate_loss(net, d2l.load_array((X, y), 2), loss) == pytest.approx(expected)


def test_torch_time_machine_batches_are_int64_tensors(time_machine_path):
    torch = pytest.importorskip("torch")
    from dl import torch as d2l

    train_iter, vocab = d2l.load_data_time_machine(4, 5)
    X, Y = next(iter(train_iter))
    assert X.dtype == Y.dtype == torch.int64 and X.shape == Y.shape == (4, 5)
    torch.testing.assert_close(X[:, 1:], Y[:, :-1])
    assert len(vocab) == 28


def test_tensorflow_load_array_and_evaluate_loss():
    tf = pytest.importorskip("tensorflow")
    from dl import tensorflow as d2l

    X, y = tf.reshape(tf.range(10.0), (5, 2)), tf.reshape(tf.range(5.0), (5, 1))
    batches = list(d2l.load_array((X, y), 2, is_train=False))
    assert [len(b[0]) for b in batches] == [2, 2, 1]
    np.testing.assert_array_equal(tf.concat([b[1] for b in batches], 0), y)
    shuffled = np.concatenate([b[1] for b in d2l.load_array((X, y), 2)])
    np.testing.assert_array_equal(np.sort(shuffled, axis=0), y)

    def loss(y_hat, y):  # per element, in the book's order of arguments
        return (y_hat - y) ** 2

    def net(X):
        return tf.reduce_sum(X, axis=1, keepdims=True)

    expected = float(tf.reduce_mean((net(X) - y) ** 2))
    assert d2l.evaluate_loss(net, d2l.load_array((X, y), 2), loss) == pytest.approx(expected)


@pytest.mark.parametrize("framework", ["torch", "tensorflow"])
def test_synthetic_data_fits_linreg(framework):
    pytest.importorskip(framework)
    dl = importlib.import_module(f"dl.{framework}")
    w, b = dl.tensor([2.0, -3.4]), 4.2
    X, y = dl.synthetic_data(w, b, 1000)
    assert tuple(X.shape) == (1000, 2) and tuple(y.shape) == (1000, 1)
    w_column = dl.reshape(w, (-1, 1))
    residual = dl.numpy(dl.squared_loss(dl.linreg(X, w_column, b), y))
    assert residual.shape == (1000, 1) and residual.mean() < 1e-3  # noise of std 0.01


def test_tensorflow_sgd_steps_each_variable():
    tf = pytest.importorskip("tensorflow")
    from dl import tensorflow as d2l

    w = tf.Variable([1.0, 2.0])
    d2l.sgd([w], [tf.constant([2.0, 4.0])], lr=0.5, batch_size=2)
    np.testing.assert_allclose(w.numpy(), [0.5, 1.0])


def test_jax_load_array_batches_shuffles_from_its_key_and_checks_inputs():
    jax = pytest.importorskip("jax")
    from dl import jax as d2l
    from dl.errors import InputError

    X, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    ordered = d2l.load_array((X, y), 2, is_train=False)
    assert len(ordered) == 3
    np.testing.assert_array_equal(np.concatenate([b[1] for b in ordered]), y)
    loader = d2l.load_array((X, y), 2, key=jax.random.PRNGKey(3))
    first, second = ([int(v) for b in loader for v in b[1]] for _ in range(2))
    assert sorted(first) == sorted(second) == list(range(5)) and first != second
    again = d2l.load_array((X, y), 2, key=jax.random.PRNGKey(3))
    assert [int(v) for b in again for v in b[1]] == first
    for rows in loader:
        np.testing.assert_array_equal(rows[0][:, 0], 2 * rows[1])  # rows stay paired
    with pytest.raises(InputError, match="one length"):
        d2l.load_array((X, y[:4]), 2)
    with pytest.raises(InputError, match="batch_size"):
        d2l.load_array((X, y), 0)
