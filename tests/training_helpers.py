"""Data, parameters and checks shared by the training tests (NumPy only), and a fresh
interpreter for the tests that must set devices or Keras before a framework starts."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np

from dl import reference as ref
from dl.data.batches import SeqDataLoader
from dl.data.text import Vocab

V, H, B, T = 10, 16, 4, 6
TEXT = (
    "a recondite matter was expounding to us for him so it will be the time traveller "
    "of convenient speak "
) * 3
SUMMARY_LINE = r"^perplexity (\d+\.\d), (\d+\.\d) tokens/sec on {}$"


def global_norm(arrays):
    """The float64 global L2 norm of a list of arrays (gradients, say)."""
    return float(np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in arrays)))


def random_grads(shapes, norm, seed=0):
    """float32 arrays of ``shapes`` whose global norm is ``norm``."""
    rng = np.random.default_rng(seed)
    grads = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    scale = norm / global_norm(grads)
    return [g * np.float32(scale) for g in grads]


def tiny_corpus():
    vocab = Vocab(list(TEXT))
    return [vocab[c] for c in TEXT], vocab


def tiny_loader(batch_size=4, num_steps=8, use_random_iter=False):
    corpus, vocab = tiny_corpus()
    return SeqDataLoader(batch_size, num_steps, use_random_iter, corpus=corpus, vocab=vocab), vocab


def random_batches(n=5, batch_size=B, num_steps=T, vocab_size=V, seed=0):
    """``n`` sequential batches ``(X, Y): (batch, steps) int32`` whose rows continue."""
    ids = np.random.default_rng(seed).integers(0, vocab_size, (batch_size, n * num_steps + 1))
    ids = ids.astype(np.int32)
    return [
        (
            ids[:, i * num_steps : (i + 1) * num_steps],
            ids[:, i * num_steps + 1 : (i + 1) * num_steps + 1],
        )
        for i in range(n)
    ]


def numpy_params(cell, seed=1, scale=0.3, vocab_size=V):
    """float32 canonical params (book init, a larger scale so training moves)."""
    return ref.init_params(
        cell, vocab_size, H, np.random.default_rng(seed), scale=scale, dtype=np.float32
    )


def train_steps(trainer, batches):
    """Per-batch mean losses (before each update), the state carried across batches."""
    state, losses = trainer.begin_state(batches[0][0].shape[0]), []
    for X, Y in batches:
        state = trainer.train_step(X, Y, state)
        losses.append(trainer.take_loss_sum() / (Y.shape[0] * Y.shape[1]))
    return losses


def assert_weights_close(a, b, tol):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol, err_msg=f"parameter {i}")


def summary_line(device_name):
    """train_dl's last-epoch line, ``perplexity P, S tokens/sec on DEVICE``."""
    return re.compile(SUMMARY_LINE.format(re.escape(device_name)))


def check_book_output(out, vocab, device_name, epochs_printed=0):
    """train_dl's output: a continuation for each of ``epochs_printed`` epochs, the summary
    line (a perplexity under twice the vocabulary) and two continuations without <unk>."""
    lines = out.strip("\n").split("\n")
    assert len(lines) == epochs_printed + 3, out
    for line in lines[:epochs_printed]:
        assert line.startswith("time traveller") and len(line) == len("time traveller") + 50
    match = summary_line(device_name).match(lines[epochs_printed])
    assert match, lines[epochs_printed]
    assert 1.0 <= float(match.group(1)) < 2 * len(vocab) and float(match.group(2)) > 0
    for line, prefix in zip(lines[-2:], ("time traveller", "traveller")):
        assert line.startswith(prefix) and len(line) == len(prefix) + 50, line
        assert "<unk>" not in line


def run_fresh(code, *args, env=None, unset=(), timeout=300):
    """``code`` in a fresh interpreter with ``args`` (the environment plus ``env``, less the
    variables named in ``unset``); the JSON it prints after 'RESULT:'."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "JAX_PLATFORMS": "cpu", **(env or {})}
    for name in unset:
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT:")]
    assert lines, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT:") :])
