"""A NumPy stand-in for a backend's language model, for tests of the command line that need
training but not a framework: the model is a unigram softmax over its output bias ``b_q``,
trained by exact gradient descent (so runs are deterministic and resume exactly), and its
other parameters are carried unchanged. So that a resume must restore them to be exact, the
recurrent state (a ``(batch_size, 1)`` array: the mean target id seen by each row) and, with
``dropout``, noise drawn from the generator ``reseed`` sets both move ``b_q``, and the learning
rate is the one ``set_lr`` gave.

``install(monkeypatch)`` makes every backend load this model; ``python fake_backend.py ARGS``
runs ``dl ARGS`` on it in a subprocess (``FAKE_STEP_SECONDS`` slows each step of training,
evaluation and generation, ``FAKE_IMPORT_SECONDS`` loading the backend, as a framework's
import does).
"""

import os
import sys
import time

import numpy as np

from dl import optim


def _log_softmax(b):
    shifted = b - b.max()
    return shifted - np.log(np.exp(shifted).sum())


class FakeModel:
    backend = "fake"
    device_name = "cpu"

    def __init__(self, config, params, device=None, precision="fp32", devices=1):
        self.config = config
        self.params = {k: np.array(v, np.float32) for k, v in params.items()}
        self.rng = np.random.default_rng(0)

    def numpy_params(self):
        return {k: v.copy() for k, v in self.params.items()}

    def reseed(self, seed):
        self.rng = np.random.default_rng(seed)

    def begin_state(self, batch_size):
        return (np.zeros((batch_size, 1), np.float32),)

    def eval_loss(self, X, Y, state):
        """``(summed cross-entropy of Y: (B, T) under softmax(b_q), state)``."""
        time.sleep(float(os.environ.get("FAKE_STEP_SECONDS", "0")))
        return float(-_log_softmax(self.params["b_q"].astype(np.float64))[Y].sum()), state

    def step(self, token, state):
        time.sleep(float(os.environ.get("FAKE_STEP_SECONDS", "0")))
        return self.params["b_q"].copy(), state

    def trainer(self, optimizer, clip):
        return FakeTrainer(self, optimizer.lr)


class FakeTrainer:
    def __init__(self, model, lr):
        self.model, self.lr, self.loss_sum, self.steps = model, lr, 0.0, 0

    def begin_state(self, batch_size):
        return self.model.begin_state(batch_size)

    def train_step(self, X, Y, state):
        time.sleep(float(os.environ.get("FAKE_STEP_SECONDS", "0")))
        b = self.model.params["b_q"].astype(np.float64)
        log_p = _log_softmax(b)
        self.loss_sum += float(-log_p[Y].sum())
        counts = np.bincount(Y.reshape(-1), minlength=len(b))
        gradient = np.exp(log_p) - counts / Y.size + 1e-3 * float(state[0].mean())
        if self.model.config.dropout:
            gradient = gradient + 1e-2 * self.model.rng.standard_normal(len(b))
        self.model.params["b_q"] = (b - self.lr * gradient).astype(np.float32)
        self.steps += 1
        return (state[0] + Y.mean(axis=1, keepdims=True).astype(np.float32),)

    def set_lr(self, lr):
        self.lr = lr

    def take_loss_sum(self):
        loss, self.loss_sum = self.loss_sum, 0.0
        return loss

    def optimizer_state(self):
        return {optim.STEP: np.array(self.steps, np.float32)}

    def load_optimizer_state(self, state):
        self.steps = int(np.asarray(state.get(optim.STEP, 0)).reshape(-1)[0])


def install(monkeypatch=None):
    """Every backend's model class becomes :class:`FakeModel`."""
    from dl.cli import backends

    def fake(name, impl="scratch"):
        time.sleep(float(os.environ.get("FAKE_IMPORT_SECONDS", "0")))  # a framework importing
        return FakeModel

    if monkeypatch is None:
        backends.model_class = fake
    else:
        monkeypatch.setattr(backends, "model_class", fake)


if __name__ == "__main__":
    install()
    sys.argv = ["dl", *sys.argv[1:]]
    from dl.__main__ import entry_point

    entry_point()
