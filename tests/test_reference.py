import numpy as np
import pytest

from dl import reference as ref

V, H, B, T = 5, 4, 3, 4  # vocab/inputs, hiddens, batch, steps: tiny so every entry is checked
CASES = [("rnn", True), ("gru", True), ("lstm", True), ("lstm", False)]
CASE_IDS = ["rnn", "gru", "lstm", "lstm-no-output-tanh"]


def random_problem(cell, seed=0):
    """Params with non-zero biases, a non-zero initial state, dense X and random output
    gradients, so that every term of the backward pass matters."""
    rng = np.random.default_rng(seed)
    params = ref.init_params(cell, V, H, rng, scale=0.5)
    params = {
        name: p + 0.3 * rng.standard_normal(p.shape) if name.startswith("b") else p
        for name, p in params.items()
    }
    state = tuple(0.5 * rng.standard_normal(s.shape) for s in ref.init_state(cell, B, H))
    X = rng.standard_normal((T, B, V))
    dY = rng.standard_normal((T * B, V))
    dstate = tuple(rng.standard_normal(s.shape) for s in state)
    return params, state, X, dY, dstate


def objective(cell, params, state, X, dY, dstate, output_tanh):
    Y, final, _ = ref.forward(cell, params, X, state, output_tanh)
    return np.sum(Y * dY) + sum(np.sum(s * d) for s, d in zip(final, dstate))


def numeric_grad(f, array, eps=1e-5):
    """Central differences of f() in every entry of `array`, which f reads and which is
    perturbed in place."""
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        original = array[index]
        array[index] = original + eps
        plus = f()
        array[index] = original - eps
        minus = f()
        array[index] = original
        grad[index] = (plus - minus) / (2 * eps)
    return grad


def assert_close_relative(analytic, numeric, what):
    scale = max(np.abs(analytic).max(), np.abs(numeric).max())
    assert scale > 0, f"{what}: gradient is identically zero"
    error = np.abs(analytic - numeric).max() / scale
    assert error < 1e-6, f"{what}: relative error {error:.2e}"


@pytest.mark.parametrize("cell, output_tanh", CASES, ids=CASE_IDS)
def test_backward_matches_finite_differences(cell, output_tanh):
    params, state, X, dY, dstate = random_problem(cell)
    _, _, cache = ref.forward(cell, params, X, state, output_tanh)
    grads, dstate0, dX = ref.backward(cell, params, cache, dY, dstate)

    def f():
        return objective(cell, params, state, X, dY, dstate, output_tanh)

    for name in ref.PARAM_NAMES[cell]:
        assert_close_relative(grads[name], numeric_grad(f, params[name]), name)
    for i, (s, ds) in enumerate(zip(state, dstate0)):
        assert_close_relative(ds, numeric_grad(f, s), f"state[{i}]")
    assert_close_relative(dX, numeric_grad(f, X), "X")


@pytest.mark.parametrize("cell, output_tanh", CASES, ids=CASE_IDS)
def test_loss_and_grads_matches_finite_differences(cell, output_tanh):
    params, state, _, _, _ = random_problem(cell, seed=1)
    rng = np.random.default_rng(2)
    X = ref.one_hot(rng.integers(0, V, (T, B)), V)
    labels = rng.integers(0, V, T * B)
    loss, grads, dstate0 = ref.loss_and_grads(cell, params, X, labels, state, output_tanh)

    def f():
        return ref.loss_and_grads(cell, params, X, labels, state, output_tanh)[0]

    assert loss == pytest.approx(f())
    for name in ("W_hq", ref.PARAM_NAMES[cell][1]):
        assert_close_relative(grads[name], numeric_grad(f, params[name]), name)
    assert_close_relative(dstate0[0], numeric_grad(f, state[0]), "state[0]")


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_shapes_and_names(cell):
    params = ref.init_params(cell, V, H, np.random.default_rng(0), num_outputs=7)
    assert tuple(params) == ref.PARAM_NAMES[cell]
    for name, p in params.items():
        assert p.dtype == np.float64
        if name.startswith("b"):
            assert not p.any(), f"{name} should start at zero"
    assert params["W_hq"].shape == (H, 7) and params["b_q"].shape == (7,)
    assert params[ref.PARAM_NAMES[cell][0]].shape == (V, H)
    state = ref.init_state(cell, B, H)
    assert len(state) == (2 if cell == "lstm" else 1)
    assert all(s.shape == (B, H) and not s.any() for s in state)

    Y, final, cache = ref.forward(cell, params, np.ones((T, B, V)), state)
    assert Y.shape == (T * B, 7)
    assert [s.shape for s in final] == [(B, H)] * len(state)
    grads, dstate0, dX = ref.backward(cell, params, cache, np.ones_like(Y))
    assert {k: g.shape for k, g in grads.items()} == {k: p.shape for k, p in params.items()}
    assert [s.shape for s in dstate0] == [(B, H)] * len(state)
    assert dX.shape == (T, B, V)


def test_init_params_scale():
    params = ref.init_params("lstm", 200, 100, np.random.default_rng(0), scale=0.01)
    assert params["W_xi"].std() == pytest.approx(0.01, rel=0.05)
    assert params["W_hi"].mean() == pytest.approx(0, abs=1e-3)


@pytest.mark.parametrize("cell, output_tanh", CASES, ids=CASE_IDS)
def test_output_is_time_major_concatenation_of_steps(cell, output_tanh):
    params, state, X, _, _ = random_problem(cell)
    Y, final, _ = ref.forward(cell, params, X, state, output_tanh)
    step_state, rows = state, []
    for t in range(T):
        Y_t, step_state, _ = ref.forward(cell, params, X[t : t + 1], step_state, output_tanh)
        rows.append(Y_t)
        np.testing.assert_array_equal(Y[t * B : (t + 1) * B], Y_t)
    np.testing.assert_array_equal(Y, np.concatenate(rows))
    for s, s_step in zip(final, step_state):
        np.testing.assert_array_equal(s, s_step)


def test_lstm_output_tanh_changes_the_hidden_state():
    params, state, X, _, _ = random_problem("lstm")
    (H_tanh, C_tanh), (H_plain, C_plain) = (
        ref.forward("lstm", params, X[:1], state, flag)[1] for flag in (True, False)
    )
    np.testing.assert_array_equal(C_tanh, C_plain)
    O = H_plain / C_plain
    np.testing.assert_allclose(H_tanh, O * np.tanh(C_tanh), rtol=1e-12)


def test_float32_params_compute_in_float32():
    params = ref.init_params("gru", V, H, np.random.default_rng(0), dtype=np.float32)
    X = ref.one_hot(np.zeros((T, B), dtype=int), V)  # float64 input is cast to the params
    Y, final, cache = ref.forward("gru", params, X, ref.init_state("gru", B, H))
    grads, dstate0, dX = ref.backward("gru", params, cache, np.ones_like(Y))
    assert Y.dtype == final[0].dtype == dstate0[0].dtype == dX.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads.values())


def test_softmax_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, V)) * 3
    labels = rng.integers(0, V, 6)
    loss, dlogits = ref.softmax_cross_entropy(logits, labels)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.log(probs[np.arange(6), labels]).mean(), rel=1e-12)
    numeric = numeric_grad(lambda: ref.softmax_cross_entropy(logits, labels)[0], logits)
    assert_close_relative(dlogits, numeric, "logits")
    assert np.isfinite(ref.softmax_cross_entropy(logits * 1e4, labels)[0])


def test_one_hot():
    encoded = ref.one_hot(np.array([[0, 2], [1, 4]]), V)
    assert encoded.shape == (2, 2, V) and encoded.dtype == np.float64
    np.testing.assert_array_equal(encoded.argmax(-1), [[0, 2], [1, 4]])
    np.testing.assert_array_equal(encoded.sum(-1), 1)
    with pytest.raises(ValueError, match="ids must lie in"):
        ref.one_hot(np.array([V]), V)


def test_clip_grads_scales_large_gradients_to_theta():
    rng = np.random.default_rng(0)
    grads = {"a": rng.standard_normal((3, 4)) * 10, "b": rng.standard_normal(5) * 10}
    clipped = ref.clip_grads(grads, 1.0)
    norm = np.sqrt(sum(np.sum(g**2) for g in clipped.values()))
    assert norm == pytest.approx(1.0, rel=1e-12)
    original_norm = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
    for name in grads:
        np.testing.assert_allclose(clipped[name], grads[name] / original_norm, rtol=1e-12)


def test_clip_grads_leaves_small_gradients_unchanged():
    grads = {"a": np.full((2, 2), 0.1), "b": np.array([0.2, -0.3])}
    clipped = ref.clip_grads(grads, 1.0)
    for name in grads:
        np.testing.assert_array_equal(clipped[name], grads[name])


def test_sgd_step_returns_new_params():
    params = {"W": np.ones((2, 2)), "b": np.zeros(2)}
    grads = {"W": np.full((2, 2), 0.5), "b": np.array([1.0, -1.0])}
    new = ref.sgd_step(params, grads, 0.1)
    np.testing.assert_allclose(new["W"], 0.95)
    np.testing.assert_allclose(new["b"], [-0.1, 0.1])
    np.testing.assert_array_equal(params["W"], 1)


@pytest.mark.parametrize("cell, output_tanh", CASES, ids=CASE_IDS)
def test_train_steps_memorises_a_periodic_sequence(cell, output_tanh):
    num_steps, offsets = 5, np.array([[0], [2]])  # two rows starting at different tokens
    # the corpus 0 1 2 3 4 0 1 ... partitioned sequentially, as the book's iterator does:
    # batch k holds tokens k * num_steps .. k * num_steps + num_steps - 1 of each row
    batches = []
    for k in range(50):
        X_ids = (offsets + k * num_steps + np.arange(num_steps)) % V
        batches.append((X_ids, (X_ids + 1) % V))  # the next token is always determined
    params = ref.init_params(cell, V, 16, np.random.default_rng(0), scale=0.1)
    new_params, losses = ref.train_steps(
        cell, params, batches, lr=1.0, theta=1.0, output_tanh=output_tanh
    )
    assert len(losses) == 50 and all(isinstance(loss, float) for loss in losses)
    assert losses[0] == pytest.approx(np.log(V), rel=0.05)
    assert losses[-1] < 0.5 * losses[0]  # lstm reaches ~0.3-0.5, rnn and gru ~0.05
    assert tuple(new_params) == ref.PARAM_NAMES[cell]
    assert all(not np.array_equal(new_params[k], params[k]) for k in params)


def test_train_steps_carries_state_across_batches():
    rng = np.random.default_rng(0)
    params = ref.init_params("rnn", V, H, rng, scale=0.5)
    X_ids = rng.integers(0, V, (B, T))
    batches = [(X_ids, X_ids)] * 2
    _, losses = ref.train_steps("rnn", params, batches, lr=0.0)
    assert losses[0] != losses[1]  # same batch, same params: only the carried state differs
    state = ref.init_state("rnn", B, H)
    _, again = ref.train_steps("rnn", params, batches[:1], lr=0.0, state=state)
    assert again == losses[:1]


def test_errors_name_the_problem():
    params = ref.init_params("rnn", V, H, np.random.default_rng(0))
    with pytest.raises(ValueError, match="cell='transformer'"):
        ref.init_params("transformer", V, H, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"X must be \(num_steps"):
        ref.forward("rnn", params, np.zeros((T, B, V + 1)), ref.init_state("rnn", B, H))
    _, _, cache = ref.forward("rnn", params, np.zeros((T, B, V)), ref.init_state("rnn", B, H))
    with pytest.raises(ValueError, match="cache comes from a 'rnn' forward"):
        ref.backward("gru", params, cache, np.zeros((T * B, V)))


def gradient_norms_along_training(cell, theta):
    """Global gradient norms of ``training_helpers``' five batches, trained with clipping at
    ``theta`` (the problem every backend's training tests run)."""
    from training_helpers import B, H, V, numpy_params, random_batches

    params = {name: p.astype(np.float64) for name, p in numpy_params(cell).items()}
    state, norms = ref.init_state(cell, B, H), []
    for X, Y in random_batches():
        Y_hat, state_next, cache = ref.forward(cell, params, ref.one_hot(X.T, V), state)
        _, dY = ref.softmax_cross_entropy(Y_hat, Y.T.reshape(-1))
        grads, _, _ = ref.backward(cell, params, cache, dY)
        norms.append(float(np.sqrt(sum(np.sum(g**2) for g in grads.values()))))
        params, state = ref.sgd_step(params, ref.clip_grads(grads, theta), 1.0), state_next
    return norms


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_backend_training_problem_clips_at_theta_0_2_and_never_at_1(cell):
    """The backends' training tests train that problem with theta 1 and 0.2: along the
    theta=1 run no step is clipped, along the theta=0.2 run the first four of five are."""
    assert all(norm < 1.0 for norm in gradient_norms_along_training(cell, 1.0))
    assert all(norm > 0.2 for norm in gradient_norms_along_training(cell, 0.2)[:4])
