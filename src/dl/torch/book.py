"""The book's tensor aliases and small helpers for PyTorch, bound as d2l 0.17.6's torch module
binds them (``d2l.zeros`` is ``torch.zeros``, ``d2l.reshape(x, shape)`` is ``x.reshape(shape)``).
"""

import torch
from torch.utils import data

from dl import book
from dl.data import batches
from dl.progress import Accumulator

__all__ = [*book.TENSOR_NAMES, "SeqDataLoader", "load_data_time_machine", "to"]

ones = torch.ones
zeros = torch.zeros
tensor = torch.tensor
arange = torch.arange
meshgrid = torch.meshgrid
sin = torch.sin
sinh = torch.sinh
cos = torch.cos
cosh = torch.cosh
tanh = torch.tanh
linspace = torch.linspace
exp = torch.exp
log = torch.log
normal = torch.normal
rand = torch.rand
matmul = torch.matmul
int32 = torch.int32
float32 = torch.float32
concat = torch.cat
stack = torch.stack
abs = torch.abs
eye = torch.eye


def numpy(x, *args, **kwargs):
    """``x`` as a NumPy array, detached from the autograd graph (a CPU tensor)."""
    return x.detach().numpy(*args, **kwargs)


def _method(alias: str, name: str, doc: str | None = None):
    """The book's ``alias(x, *args, **kwargs)``: ``x.name(*args, **kwargs)``."""

    def call(x, *args, **kwargs):
        return getattr(x, name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = alias
    call.__doc__ = doc or f"``x.{name}(*args, **kwargs)``."
    return call


size = _method("size", "numel", "The number of elements of ``x``.")
reshape = _method("reshape", "reshape")
to = _method("to", "to")
reduce_sum = _method("reduce_sum", "sum")
argmax = _method("argmax", "argmax")
astype = _method("astype", "type")
transpose = _method("transpose", "t", "The transpose of a matrix ``x`` (``x.t()``).")
reduce_mean = _method("reduce_mean", "mean")


def load_array(data_arrays, batch_size, is_train=True):
    """A ``DataLoader`` over tensors ``data_arrays`` (each ``(n, ...)``), shuffled when training."""
    dataset = data.TensorDataset(*data_arrays)
    return data.DataLoader(dataset, batch_size, shuffle=is_train)


class SeqDataLoader(batches.SeqDataLoader):
    """The book's minibatches of a corpus for PyTorch: ``(X, Y)``, ``(batch_size, num_steps)``
    int64 tensors (the framework-free loader yields NumPy int32)."""

    def __iter__(self):
        for X, Y in super().__iter__():
            yield torch.from_numpy(X).long(), torch.from_numpy(Y).long()


def load_data_time_machine(
    batch_size, num_steps, use_random_iter=False, max_tokens=10000, *, token="char"
):
    """``(train_iter, vocab)`` over The Time Machine, batches as tensors (the book's)."""
    data_iter = SeqDataLoader(batch_size, num_steps, use_random_iter, max_tokens, token=token)
    return data_iter, data_iter.vocab


def evaluate_loss(net, data_iter, loss):
    """The mean of ``loss(net(X), y)`` over every example of ``data_iter`` (no gradients)."""
    metric = Accumulator(2)  # sum of losses, number of examples
    with torch.no_grad():
        for X, y in data_iter:
            out = net(X)
            y = reshape(y, out.shape)
            values = loss(out, y)
            metric.add(reduce_sum(values), size(values))
    return metric[0] / metric[1]


def synthetic_data(w, b, num_examples):
    """``(X: (num_examples, len(w)), y: (num_examples, 1))`` with ``y = Xw + b + noise``."""
    X = normal(0, 1, (num_examples, len(w)))
    y = matmul(X, w) + b
    y += normal(0, 0.01, y.shape)
    return X, reshape(y, (-1, 1))


def linreg(X, w, b):
    """The linear regression model ``Xw + b``."""
    return matmul(X, w) + b


def squared_loss(y_hat, y):
    """Half the squared error, per example."""
    return (y_hat - reshape(y, y_hat.shape)) ** 2 / 2
