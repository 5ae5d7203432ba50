"""Every framework's scratch cells against the NumPy reference, with one test for all three.

``rnn``/``gru``/``lstm`` of dl.torch, dl.tensorflow and dl.jax must give the reference's
outputs, final state and mean cross-entropy, and its gradients of mean cross-entropy
+ sum(Y * dY) + sum(final * dfinal) (the loss path, the outputs' and the final state's) w.r.t.
every parameter, the initial state and the inputs; ``init_*_state`` gives zeros. What only
one framework has (its parameter init and seeds, one-hot and list inputs, its own layers) is
tested in test_torch_cells.py, test_tensorflow_cells.py and test_jax_cells.py.
"""

import importlib.util

import numpy as np
import pytest

from cell_problems import CELLS, TOL, B, H, T, V, as_float64, problem
from dl import reference as ref


class TorchCells:
    def __init__(self):
        import torch

        from dl import torch as dl

        self.torch, self.dl, self.cpu = torch, dl, torch.device("cpu")

    def init_state(self, cell):
        state = self.dl.CELLS[cell][1](B, H, self.cpu)
        assert all(s.dtype == self.torch.float32 and s.device.type == "cpu" for s in state)
        return state, [s.numpy() for s in state]

    def forward_and_grads(self, cell, params, state, X, labels, dY, dfinal):
        """(Y, final, loss, parameter grads, state grads, input grad), all NumPy."""
        torch = self.torch
        weights = [torch.tensor(params[name], requires_grad=True) for name in ref.PARAM_NAMES[cell]]
        state = tuple(torch.tensor(s, requires_grad=True) for s in state)
        X = torch.tensor(X, requires_grad=True)
        Y, final = self.dl.CELLS[cell][2](X, state, weights)
        loss = torch.nn.functional.cross_entropy(Y, torch.tensor(labels))
        objective = (
            loss
            + (Y * torch.tensor(dY)).sum()
            + sum((s * torch.tensor(d)).sum() for s, d in zip(final, dfinal))
        )
        objective.backward()
        assert Y.dtype == torch.float32 and isinstance(final, tuple)
        numpy = lambda t: t.detach().numpy()
        return (
            numpy(Y),
            [numpy(s) for s in final],
            float(loss.detach()),
            [numpy(w.grad) for w in weights],
            [numpy(s.grad) for s in state],
            numpy(X.grad),
        )


class TensorFlowCells:
    def __init__(self):
        import tensorflow as tf

        from dl import tensorflow as dl  # first: makes tf.keras tf-keras in this process

        self.tf, self.dl = tf, dl

    def init_state(self, cell):
        state = self.dl.CELLS[cell][1](B, H)
        assert all(s.dtype == self.tf.float32 for s in state)
        return state, [s.numpy() for s in state]

    def forward_and_grads(self, cell, params, state, X, labels, dY, dfinal):
        tf = self.tf
        variables = [tf.Variable(params[name], name=name) for name in ref.PARAM_NAMES[cell]]
        state, X = tuple(map(tf.constant, state)), tf.constant(X)
        with tf.GradientTape() as tape:
            tape.watch((state, X))
            Y, final = self.dl.CELLS[cell][2](X, state, variables)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, Y))
            objective = (
                loss
                + tf.reduce_sum(Y * dY)
                + tf.add_n([tf.reduce_sum(s * d) for s, d in zip(final, dfinal)])
            )
        grads, dstate, dX = tape.gradient(objective, (variables, state, X))
        assert Y.dtype == tf.float32
        return (
            Y.numpy(),
            [s.numpy() for s in final],
            float(loss),
            [g.numpy() for g in grads],
            [d.numpy() for d in dstate],
            dX.numpy(),
        )


class JaxCells:
    def __init__(self):
        import jax
        import jax.numpy as jnp

        from dl import jax as dl

        self.jax, self.jnp, self.dl = jax, jnp, dl

    def init_state(self, cell):
        state = self.dl.CELLS[cell][1](B, H)
        assert all(s.dtype == self.jnp.float32 for s in state)
        return state, [np.asarray(s) for s in state]

    def forward_and_grads(self, cell, params, state, X, labels, dY, dfinal):
        """Under ``jax.jit``, as training runs the cells."""
        jax, jnp, forward = self.jax, self.jnp, self.dl.CELLS[cell][2]

        def objective(weights, state, X):
            Y, final = forward(X, state, weights)
            loss = self.dl.token_loss_sum(Y, jnp.asarray(labels)) / labels.shape[0]
            return loss + (Y * dY).sum() + sum((s * d).sum() for s, d in zip(final, dfinal)), (
                loss,
                Y,
                final,
            )

        (_, (loss, Y, final)), (grads, dstate, dX) = jax.jit(
            jax.value_and_grad(objective, argnums=(0, 1, 2), has_aux=True)
        )(
            [jnp.asarray(params[name]) for name in ref.PARAM_NAMES[cell]],
            tuple(map(jnp.asarray, state)),
            jnp.asarray(X),
        )
        assert Y.dtype == jnp.float32 and isinstance(final, tuple) and isinstance(dstate, tuple)
        return (
            np.asarray(Y),
            [np.asarray(s) for s in final],
            float(loss),
            [np.asarray(g) for g in grads],
            [np.asarray(d) for d in dstate],
            np.asarray(dX),
        )


FRAMEWORKS = {
    "torch": (TorchCells, ("torch",)),
    "tensorflow": (TensorFlowCells, ("tensorflow", "tf_keras")),
    "jax": (JaxCells, ("jax",)),
}


@pytest.fixture(params=list(FRAMEWORKS), scope="module")
def framework(request):
    cells, packages = FRAMEWORKS[request.param]
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"{request.param} needs {', '.join(missing)}, not installed")
    return cells()


@pytest.mark.parametrize("cell, count", [("rnn", 1), ("gru", 1), ("lstm", 2)])
def test_init_state_is_zeros_of_batch_by_hidden(framework, cell, count):
    state, arrays = framework.init_state(cell)
    assert isinstance(state, tuple) and len(state) == count
    for s in arrays:
        assert s.shape == (B, H) and np.all(s == 0)
    dl = framework.dl  # the book's names are the ones CELLS holds
    assert dl.CELLS[cell][0] is getattr(dl, f"get_{cell}_params")
    assert dl.CELLS[cell][1] is getattr(dl, f"init_{cell}_state")
    assert dl.CELLS[cell][2] is getattr(dl, cell)


@pytest.mark.parametrize("cell", CELLS)
def test_forward_and_gradients_match_reference(framework, cell):
    params, state, X, labels = problem(cell, seed=5)
    rng = np.random.default_rng(8)
    dY = rng.standard_normal((T * B, V)).astype(np.float32)
    dfinal = tuple(rng.standard_normal(s.shape).astype(np.float32) for s in state)
    params64 = as_float64(params)
    Y_ref, final_ref, cache = ref.forward(cell, params64, X.astype(np.float64), as_float64(state))
    loss_ref, dloss = ref.softmax_cross_entropy(Y_ref, labels)
    grads_ref, dstate_ref, dX_ref = ref.backward(
        cell, params64, cache, dloss + dY, as_float64(dfinal)
    )

    Y, final, loss, grads, dstate, dX = framework.forward_and_grads(
        cell, params, state, X, labels, dY, dfinal
    )

    assert Y.shape == (T * B, V)
    np.testing.assert_allclose(Y, Y_ref, **TOL)
    assert len(final) == len(final_ref)
    for s, s_ref in zip(final, final_ref):
        np.testing.assert_allclose(s, s_ref, **TOL)
    np.testing.assert_allclose(loss, loss_ref, **TOL)
    assert len(grads) == len(ref.PARAM_NAMES[cell])
    for name, g in zip(ref.PARAM_NAMES[cell], grads):
        np.testing.assert_allclose(g, grads_ref[name], err_msg=name, **TOL)
    assert len(dstate) == len(dstate_ref)
    for d, d_ref in zip(dstate, dstate_ref):
        np.testing.assert_allclose(d, d_ref, **TOL)
    np.testing.assert_allclose(dX, dX_ref, **TOL)
