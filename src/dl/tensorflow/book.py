"""The book's tensor aliases and small helpers for TensorFlow, bound as d2l 0.17.6's tensorflow
module binds them (``d2l.normal`` is ``tf.random.normal``, ``d2l.size(x)`` a Python number).
"""

import tensorflow as tf
from tensorflow import (  # the aliases that keep TensorFlow's names (in __all__)
    abs,
    argmax,
    concat,
    cos,
    cosh,
    exp,
    eye,
    float32,
    int32,
    linspace,
    matmul,
    meshgrid,
    ones,
    reduce_mean,
    reduce_sum,
    reshape,
    sin,
    sinh,
    stack,
    tanh,
    transpose,
    zeros,
)

from dl import book
from dl.progress import Accumulator

__all__ = [*book.TENSOR_NAMES, "sgd"]

normal = tf.random.normal
rand = tf.random.uniform
tensor = tf.constant
arange = tf.range
astype = tf.cast
log = tf.math.log


def size(a):
    """The number of elements of ``a``, as a NumPy integer."""
    return tf.size(a).numpy()


def numpy(x, *args, **kwargs):
    """``x`` (an eager tensor or variable) as a NumPy array."""
    return x.numpy(*args, **kwargs)


def load_array(data_arrays, batch_size, is_train=True):
    """A ``tf.data.Dataset`` of minibatches of ``data_arrays`` (each ``(n, ...)``), shuffled
    (with a buffer of 1,000 examples) when training."""
    dataset = tf.data.Dataset.from_tensor_slices(data_arrays)
    if is_train:
        dataset = dataset.shuffle(buffer_size=1000)
    return dataset.batch(batch_size)


def evaluate_loss(net, data_iter, loss):
    """The mean of ``loss(net(X), y)`` over every example of ``data_iter`` (the book's order of
    arguments; a Keras loss gives its batch mean, counted once per element)."""
    metric = Accumulator(2)  # sum of losses, number of elements
    for X, y in data_iter:
        values = loss(net(X), y)
        metric.add(tf.reduce_sum(values), size(values))
    return metric[0] / metric[1]


def synthetic_data(w, b, num_examples):
    """``(X: (num_examples, len(w)), y: (num_examples, 1))`` with ``y = Xw + b + noise``."""
    X = tf.random.normal(shape=(num_examples, w.shape[0]))
    y = tf.matmul(X, tf.reshape(w, (-1, 1))) + b
    y += tf.random.normal(shape=y.shape, stddev=0.01)
    return X, tf.reshape(y, (-1, 1))


def linreg(X, w, b):
    """The linear regression model ``Xw + b``."""
    return tf.matmul(X, w) + b


def squared_loss(y_hat, y):
    """Half the squared error, per example."""
    return (y_hat - tf.reshape(y, y_hat.shape)) ** 2 / 2


def sgd(params, grads, lr, batch_size):
    """The book's minibatch SGD on variables: ``param -= lr * grad / batch_size``."""
    for param, grad in zip(params, grads):
        param.assign_sub(lr * grad / batch_size)
