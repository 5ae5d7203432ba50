"""The book's ``load_array`` in JAX style: minibatches as ``jnp`` arrays, shuffled from an
explicit PRNG key (one fresh split per pass, so every pass is a new order and runs repeat)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dl.errors import InputError


class ArrayLoader:
    """Iterates over minibatches of ``data_arrays`` (each ``(n, ...)``): tuples of ``jnp`` arrays
    ``(batch_size, ...)``, the last one smaller when ``batch_size`` does not divide ``n``."""

    def __init__(self, data_arrays, batch_size: int, is_train: bool = True, key=None):
        self.arrays = tuple(jnp.asarray(a) for a in data_arrays)
        lengths = {len(a) for a in self.arrays}
        if len(lengths) != 1:
            raise InputError(
                f"load_array: data_arrays must have one length, got lengths "
                f"{sorted(lengths)}; pass arrays with the same first dimension"
            )
        if int(batch_size) < 1:
            raise InputError(f"load_array: batch_size must be at least 1, got {batch_size}")
        self.num_examples, self.batch_size, self.is_train = lengths.pop(), int(batch_size), is_train
        self.key = jax.random.PRNGKey(0) if key is None else key

    def __len__(self) -> int:
        return (self.num_examples + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        if self.is_train:
            self.key, subkey = jax.random.split(self.key)
            order = jax.random.permutation(subkey, self.num_examples)
        else:
            order = jnp.arange(self.num_examples)
        for start in range(0, self.num_examples, self.batch_size):
            rows = order[start : start + self.batch_size]
            yield tuple(a[rows] for a in self.arrays)


def load_array(data_arrays, batch_size, is_train=True, *, key=None) -> ArrayLoader:
    """Minibatches of ``data_arrays``, shuffled each pass when ``is_train`` (from ``key``,
    default ``jax.random.PRNGKey(0)``)."""
    return ArrayLoader(data_arrays, batch_size, is_train, key)
