"""What only dl.jax does in training and prediction: JaxTrainer's loss sum and ragged batches,
train_dl's compile log and output, the Predictor, and data parallelism over several (forced
host) devices. What every framework does the same (reference training, clipping, bad inputs,
divergence, predict_dl) is in test_training.py.

Sizes are tiny (vocab ~10-25, hidden 16, a few steps); the tests of the fresh Python process
with two devices are marked slow.
"""

import json
import os
import random
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from dl import jax as dl  # noqa: E402
from dl import reference as ref  # noqa: E402
from training_helpers import (
    H,
    T,
    V,
    assert_weights_close,
    check_book_output,
    numpy_params,
    random_batches,
    summary_line,
    tiny_loader,
)  # noqa: E402

CELLS = ("rnn", "gru", "lstm")
LAYER_GATES = {"rnn": ("h",), "gru": ("z", "r", "h"), "lstm": ("i", "f", "o", "c")}
COMPILED = "compiled the training step in"


def trained_on():
    """The device train_dl's summary line names by default (try_gpu(): 'cpu:0' here)."""
    device = dl.try_gpu()
    return f"{device.platform}:{device.id}"


def scratch_model(cell, params, vocab_size=V):
    _, init_state, forward = dl.CELLS[cell]
    return dl.RNNModelScratch(
        vocab_size,
        H,
        jax.random.PRNGKey(0),
        lambda v, h, key: [jnp.asarray(params[n]) for n in ref.PARAM_NAMES[cell]],
        init_state,
        forward,
    )


def fused_from_canonical(cell, params):
    gates = LAYER_GATES[cell]
    return {
        "rnn": {
            "W_x": jnp.concatenate([params[f"W_x{g}"] for g in gates], axis=1),
            "W_h": jnp.concatenate([params[f"W_h{g}"] for g in gates], axis=1),
            "b": jnp.concatenate([params[f"b_{g}"] for g in gates]),
        },
        "dense": {"W": jnp.asarray(params["W_hq"]), "b": jnp.asarray(params["b_q"])},
    }


def weights(net):
    return [np.asarray(p).copy() for p in jax.tree_util.tree_leaves(net.params)]


# ---------------------------------------------------------------------------------------------
# (a) JaxTrainer's token loss sum and batches of another shape


def test_token_loss_sum_is_the_summed_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((12, V)).astype(np.float32)
    labels = rng.integers(0, V, 12)
    mean, _ = ref.softmax_cross_entropy(logits.astype(np.float64), labels)
    total = dl.token_loss_sum(jnp.asarray(logits), jnp.asarray(labels))
    np.testing.assert_allclose(float(total), 12 * mean, rtol=1e-5)


def test_trainer_accepts_batches_of_another_shape():
    params = numpy_params("gru")
    (first,) = random_batches(n=1, num_steps=T, seed=3)
    (second,) = random_batches(n=1, batch_size=2, num_steps=T + 2, seed=4)  # a ragged tail
    params64 = {n: p.astype(np.float64) for n, p in params.items()}
    ref_params, ref_first = ref.train_steps("gru", params64, [first], lr=1.0)
    ref_params, ref_second = ref.train_steps("gru", ref_params, [second], lr=1.0)
    net = scratch_model("gru", params)
    trainer = dl.JaxTrainer(net, 1.0)
    losses = []
    for X, Y in (first, second):  # a fresh state each, as with random sampling
        trainer.train_step(X, Y, trainer.begin_state(X.shape[0]))
        losses.append(trainer.take_loss_sum() / Y.size)
    np.testing.assert_allclose(losses, ref_first + ref_second, rtol=1e-4, atol=1e-4)
    assert_weights_close(weights(net), [ref_params[n] for n in ref.PARAM_NAMES["gru"]], 1e-4)


# ---------------------------------------------------------------------------------------------
# (b) bad inputs and divergence


@pytest.fixture
def small_setup():
    loader, vocab = tiny_loader()
    net = scratch_model("lstm", numpy_params("lstm", vocab_size=len(vocab)), vocab_size=len(vocab))
    return net, loader, vocab


@pytest.mark.parametrize("lr", [0, -0.5])
def test_trainer_and_train_epoch_reject_a_non_positive_lr(small_setup, lr):
    net, loader, _ = small_setup
    with pytest.raises(ValueError, match="lr"):
        dl.JaxTrainer(net, lr)
    with pytest.raises(ValueError, match="lr"):
        dl.train_epoch_dl(net, loader, lr)


# ---------------------------------------------------------------------------------------------
# (c) train_dl end to end, prediction, the book's names


def test_train_dl_scratch_as_in_the_seed(capsys):
    loader, vocab = tiny_loader()
    device = dl.try_gpu()
    model = dl.RNNModelScratch(
        len(vocab), H, jax.random.PRNGKey(0), dl.get_lstm_params, dl.init_lstm_state, dl.lstm
    )
    before = weights(model)
    animator = dl.Animator()
    assert dl.train_dl(model, loader, vocab, 1, 12, device, animator=animator) is None
    captured = capsys.readouterr()
    check_book_output(captured.out, vocab, trained_on(), epochs_printed=1)
    assert captured.err.count(COMPILED) == 1  # compiled once for all 12 epochs
    assert re.search(COMPILED + r" \d+\.\d s", captured.err)
    assert COMPILED not in captured.out
    assert animator.X == [[10]] and np.isfinite(animator.Y[0][0])
    assert all(not np.allclose(b, a) for b, a in zip(before, weights(model)))


def test_train_ch8_concise_with_random_iter_trains_like_the_reference(capsys):
    """RNNModel(GRU) with canonical weights fused (gates z, r, h), 3 epochs of random batches
    (a fresh state each): the reference's weights and last-epoch perplexity."""
    loader, vocab = tiny_loader(use_random_iter=True)
    params = numpy_params("gru", vocab_size=len(vocab))
    random.seed(0)  # the loader's offsets and order in each epoch
    epochs = [list(loader) for _ in range(3)]
    ref_params = {n: p.astype(np.float64) for n, p in params.items()}
    for batches in epochs:
        losses = []
        for batch in batches:  # a fresh state for every batch
            ref_params, (loss,) = ref.train_steps("gru", ref_params, [batch], lr=1.0)
            losses.append(loss)
    model = dl.RNNModel(dl.GRU(len(vocab), H), len(vocab), jax.random.PRNGKey(1))
    model.params = fused_from_canonical("gru", params)
    random.seed(0)
    assert dl.train_ch8(model, loader, vocab, 1, 3, use_random_iter=True) is None
    captured = capsys.readouterr()
    check_book_output(captured.out, vocab, trained_on())
    assert captured.err.count(COMPILED) == 1
    ppl = float(summary_line(trained_on()).match(captured.out.split("\n")[0]).group(1))
    assert ppl == pytest.approx(np.exp(np.mean(losses)), abs=0.051)
    assert set(model.params) == {"rnn", "dense"} and set(model.params["rnn"]) == {"W_x", "W_h", "b"}
    expected = jax.tree_util.tree_leaves(fused_from_canonical("gru", ref_params))
    assert_weights_close(weights(model), [np.asarray(e) for e in expected], 1e-4)


def test_train_epoch_dl_matches_the_reference_epoch(capsys):
    """One epoch of sequential batches: the state carried, the loss summed on the device over
    the batches and read once; perplexity exp(mean loss) and the weights of the reference."""
    loader, vocab = tiny_loader()
    params = numpy_params("lstm", vocab_size=len(vocab))
    random.seed(0)  # the loader's random offset
    batches = list(loader)
    assert len(batches) > 2
    ref_params, ref_losses = ref.train_steps(
        "lstm", {n: p.astype(np.float64) for n, p in params.items()}, batches, lr=1.0
    )
    net = scratch_model("lstm", params, vocab_size=len(vocab))
    random.seed(0)
    ppl, speed = dl.train_epoch_dl(net, loader, 1.0, False, theta=1.0)
    assert ppl == pytest.approx(np.exp(np.mean(ref_losses)), rel=1e-4) and speed > 0
    assert_weights_close(weights(net), [ref_params[n] for n in ref.PARAM_NAMES["lstm"]], 1e-4)
    assert capsys.readouterr().err.count(COMPILED) == 1


def test_try_gpu():
    device = dl.try_gpu()
    assert isinstance(device, jax.Device)
    if not any(d.platform == "gpu" for d in jax.devices()):
        assert device == jax.devices("cpu")[0] and device.platform == "cpu"
        assert dl.try_gpu(3) == jax.devices("cpu")[0]


def test_predictor_continues_as_predict_dl(small_setup):
    net, _, vocab = small_setup
    out = dl.predict_dl("time traveller", 12, net, vocab)
    predictor = dl.Predictor(net, vocab, dl.try_gpu())
    for num_preds in (0, 1, 12):  # greedy: the same continuation, cut at num_preds
        assert predictor("time traveller", num_preds) == out[: len("time traveller") + num_preds]
    assert dl.predict_ch8("time traveller", 12, net, vocab, dl.try_gpu()) == out


# ---------------------------------------------------------------------------------------------
# (d) data parallelism: two forced host devices in a fresh process


DATA_PARALLEL = """
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"  # before importing jax
import io, json, sys, contextlib
import numpy as np
import jax, jax.numpy as jnp
from dl import jax as dl
from dl import reference as ref

V, H, B, T = 10, 16, 4, 6
assert len(jax.devices()) == 2, jax.devices()
ids = np.random.default_rng(0).integers(0, V, (B, 3 * T + 1)).astype(np.int32)
batches = [(ids[:, i * T:(i + 1) * T], ids[:, i * T + 1:(i + 1) * T + 1]) for i in range(3)]
params = ref.init_params("lstm", V, H, np.random.default_rng(1), scale=0.3, dtype=np.float32)

def make():
    return dl.RNNModelScratch(V, H, jax.random.PRNGKey(0),
        lambda v, h, k: [jnp.asarray(params[n]) for n in ref.PARAM_NAMES["lstm"]],
        dl.init_lstm_state, dl.lstm)

def sharding(a):
    s = a.sharding
    spec = getattr(s, "spec", None)
    return {"devices": len(s.device_set), "replicated": bool(s.is_fully_replicated),
            "whole": spec == jax.sharding.PartitionSpec(),
            "rows": spec == jax.sharding.PartitionSpec("batch")}

out = {}
for n in (1, 2):
    net = make()
    trainer = dl.JaxTrainer(net, 1.0, theta=0.5, device=jax.devices()[:n])
    state, losses = trainer.begin_state(B), []
    for X, Y in batches:
        state = trainer.train_step(X, Y, state)
        losses.append(trainer.take_loss_sum() / Y.size)
    out[f"scratch{n}"] = {
        "losses": losses,
        "weights": [np.asarray(p).tolist() for p in jax.tree_util.tree_leaves(net.params)],
        "params": [sharding(p) for p in jax.tree_util.tree_leaves(net.params)],
        "state": [sharding(s) for s in state]}

trainer = dl.JaxTrainer(make(), 1.0, device=jax.devices())
try:
    trainer.begin_state(3)
    out["odd_batch"] = "no error"
except ValueError as err:
    out["odd_batch"] = "ValueError: " + str(err)

TEXT = "the time traveller spoke of a machine that could travel in time " * 3
vocab = dl.Vocab(list(TEXT))
corpus = [vocab[c] for c in TEXT]
printed = io.StringIO()
try:
    with contextlib.redirect_stdout(printed):
        dl.train_dl(dl.RNNModelScratch(len(vocab), H, jax.random.PRNGKey(0), dl.get_lstm_params,
                                       dl.init_lstm_state, dl.lstm),
                    dl.SeqDataLoader(3, 5, corpus=corpus, vocab=vocab), vocab, 1, 1,
                    device=jax.devices())
    out["odd_train_dl"] = "no error"
except ValueError as err:
    out["odd_train_dl"] = "ValueError: " + str(err)
out["odd_train_dl_printed"] = printed.getvalue()
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def data_parallel_run(tmp_path_factory):
    script = tmp_path_factory.mktemp("dp") / "data_parallel.py"
    script.write_text(textwrap.dedent(DATA_PARALLEL))
    env = dict(
        os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.mark.slow
def test_two_devices_train_like_one(data_parallel_run):
    out = data_parallel_run
    one, two = out["scratch1"], out["scratch2"]
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5, atol=1e-5)
    assert_weights_close(
        [np.array(w) for w in two["weights"]], [np.array(w) for w in one["weights"]], 1e-5
    )
    assert one["losses"][-1] != one["losses"][0]
    # the parameters are replicated on both devices, the state is split by rows
    assert all(
        p == {"devices": 2, "replicated": True, "whole": True, "rows": False} for p in two["params"]
    ), two["params"]
    assert all(
        s == {"devices": 2, "replicated": False, "whole": False, "rows": True} for s in two["state"]
    ), two["state"]
    assert all(p["devices"] == 1 for p in one["params"])


@pytest.mark.slow
def test_two_devices_refuse_a_batch_size_they_cannot_split(data_parallel_run):
    out = data_parallel_run
    assert out["odd_batch"].startswith("ValueError") and "divisible" in out["odd_batch"]
    assert out["odd_train_dl"].startswith("ValueError") and "divisible" in out["odd_train_dl"]
    assert out["odd_train_dl_printed"] == ""
