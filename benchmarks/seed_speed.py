"""Training speed on the seed's workload, side by side in one run, for every installed backend.

The seed's LSTM (256 hidden units, batch 32, 35 steps, The Time Machine's first 10,000
characters), scratch and concise, trained by:

- book loop: the book's eager loop, d2l 0.17's ``train_epoch_ch8`` of that framework's edition:
  the norm for clipping and the loss fetched to the host every batch. For TensorFlow, the
  book's own library runs it when installed (``pip install --no-deps d2l==0.17.6``: its
  training loop still runs on tf-keras, its prediction code does not on NumPy 2); otherwise,
  and for PyTorch, the loop as re-created here;
- dl: ``dl.<backend>`` as shipped (TensorFlow: one ``tf.function`` step; PyTorch: eager with
  no host sync per batch; JAX: one ``jax.jit`` step) and its variants (TensorFlow
  ``compile=False``; PyTorch bf16, ``torch.compile`` and, on a GPU, a CUDA graph).

Usage: ``python benchmarks/seed_speed.py [--backends tensorflow,torch] [--rounds 5]``; on a
GPU machine ``python benchmarks/seed_speed.py --backends torch --device cuda`` adds the CUDA
graph variant (a few minutes).
Each model's variants take turns, one epoch each per round after one warm-up epoch, so that
the ratios hold on a machine whose speed drifts. Prints a Markdown table of median tokens/s
and each variant's ratio to the book loop.
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time

from dl.cli.options import positive_int
from dl.data.batches import load_data_time_machine
from dl.train import train_epoch

NUM_HIDDENS = 256


def interleaved_speeds(runs: dict, rounds: int) -> dict:
    """Median tokens/s of each ``run_epoch() -> tokens`` in ``runs`` (label -> function).

    After one warm-up epoch each, the runs take turns, one epoch each per round, so a machine
    whose speed drifts during the benchmark slows every run alike and the ratios hold.
    """
    for run in runs.values():
        run()
    speeds = {label: [] for label in runs}
    for _ in range(rounds):
        for label, run in runs.items():
            start = time.perf_counter()
            tokens = run()
            speeds[label].append(tokens / (time.perf_counter() - start))
    return {label: statistics.median(values) for label, values in speeds.items()}


def dl_epoch(trainer, train_iter):
    """One epoch of a ``dl`` trainer as a ``run_epoch() -> tokens`` function."""
    return lambda: train_epoch(trainer, train_iter)[1]


def tensorflow_rows(train_iter, vocab, args):
    import numpy as np
    import tensorflow as tf

    from dl import tensorflow as dl

    def book_epoch(net, loss, updater):
        state, tokens = None, 0
        for X, Y in train_iter:
            if state is None:
                state = net.begin_state(batch_size=X.shape[0], dtype=tf.float32)
            with tf.GradientTape(persistent=True) as tape:
                y_hat, state = net(X, state)
                y = tf.reshape(tf.transpose(Y), (-1))
                l = loss(y, y_hat)
            params = net.trainable_variables
            grads = tape.gradient(l, params)
            norm = np.sqrt(sum(float(tf.reduce_sum(g**2).numpy()) for g in grads))
            if norm > 1:
                grads = [g * 1 / norm for g in grads]
            updater.apply_gradients(zip(grads, params))
            float(l * tf.cast(tf.size(y), tf.float32))  # the book's metric.add
            tokens += Y.size
        return tokens

    models = {
        "scratch": lambda: dl.RNNModelScratch(
            len(vocab), NUM_HIDDENS, dl.init_lstm_state, dl.lstm, dl.get_lstm_params
        ),
        "concise": lambda: dl.RNNModel(
            tf.keras.layers.RNN(
                tf.keras.layers.LSTMCell(NUM_HIDDENS),
                time_major=True,
                return_sequences=True,
                return_state=True,
            ),
            len(vocab),
        ),
    }
    book_library, book_version = _d2l_tensorflow()
    for name, make in models.items():

        def trainer(compile):
            loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
            return dl.TFTrainer(make(), loss, tf.keras.optimizers.SGD(1.0), compile=compile)

        runs = {}
        if book_library is not None:
            runs[f"d2l {book_version}"] = _d2l_epoch(book_library, name, train_iter, len(vocab))
        net, updater = make(), tf.keras.optimizers.SGD(1.0)
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        runs["re-created book loop"] = lambda: book_epoch(net, loss, updater)
        runs["compile=False"] = dl_epoch(trainer(False), train_iter)
        runs["compiled"] = dl_epoch(trainer(True), train_iter)
        yield (
            f"tensorflow {tf.__version__}",
            name,
            next(iter(runs)),
            interleaved_speeds(runs, args.rounds),
        )


def _d2l_tensorflow():
    """``(module, version)`` of the book's own library (d2l 0.17, TensorFlow edition), or
    ``(None, None)`` with a line on stderr saying why it is not used."""
    if importlib.util.find_spec("d2l") is None:
        return None, None
    try:
        import d2l

        if not d2l.__version__.startswith("0.17"):
            raise ImportError(f"d2l {d2l.__version__} is installed; the baseline is d2l 0.17")
        from d2l import tensorflow as book
    except Exception as err:  # a partial install (pip --no-deps) can miss any of its imports
        print(
            f"not timing the book's own library ({type(err).__name__}: {err}); the book "
            "loop is the re-created one",
            file=sys.stderr,
            flush=True,
        )
        return None, None
    return book, d2l.__version__


def _d2l_epoch(book, name, train_iter, vocab_size):
    """One epoch of d2l's own ``train_epoch_ch8`` on the seed's model, built as the seed builds
    it (in a ``OneDeviceStrategy`` on ``try_gpu()``'s device), on the benchmark's batches as
    ``tf.Tensor`` s."""
    import tensorflow as tf

    from dl import tensorflow as dl

    batches = [(tf.constant(X), tf.constant(Y)) for X, Y in train_iter]
    strategy = tf.distribute.OneDeviceStrategy(dl.try_gpu()._device_name)
    with strategy.scope():
        if name == "scratch":
            net = book.RNNModelScratch(
                vocab_size, NUM_HIDDENS, dl.init_lstm_state, dl.lstm, dl.get_lstm_params
            )
        else:
            net = book.RNNModel(
                tf.keras.layers.RNN(
                    tf.keras.layers.LSTMCell(NUM_HIDDENS, kernel_initializer="glorot_uniform"),
                    time_major=True,
                    return_sequences=True,
                    return_state=True,
                ),
                vocab_size,
            )
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        updater = tf.keras.optimizers.SGD(1)
    tokens = sum(int(tf.size(Y)) for _, Y in batches)

    def epoch():
        book.train_epoch_ch8(net, batches, loss, updater, False)
        return tokens

    return epoch


def torch_rows(train_iter, vocab, args):
    import torch
    from torch import nn

    from dl import torch as dl

    device = torch.device(args.device)

    def book_epoch(net, loss, updater):
        state, tokens = None, 0
        params = list(net.parameters())
        for X, Y in train_iter:
            X, Y = torch.as_tensor(X).to(device), torch.as_tensor(Y).to(device)
            if state is None:
                state = net.begin_state(batch_size=X.shape[0], device=device)
            else:
                state = (
                    state.detach()
                    if isinstance(state, torch.Tensor)
                    else tuple(s.detach() for s in state)
                )
            y = Y.T.reshape(-1)
            y_hat, state = net(X, state)
            l = loss(y_hat, y.long()).mean()
            for p in params:
                p.grad = None
            l.backward()
            norm = torch.sqrt(sum(torch.sum(p.grad**2) for p in params))
            if norm > 1:  # a host sync, as in the book
                for p in params:
                    p.grad[:] *= 1 / norm
            updater()
            float(l.detach() * y.numel())  # the book's metric.add
            tokens += y.numel()
        return tokens

    models = {
        "scratch": lambda: dl.RNNModelScratch(
            len(vocab), NUM_HIDDENS, device, dl.get_lstm_params, dl.init_lstm_state, dl.lstm
        ),
        "concise": lambda: dl.RNNModel(nn.LSTM(len(vocab), NUM_HIDDENS), len(vocab)).to(device),
    }

    def sgd_updater(net):
        if isinstance(net, nn.Module):
            return torch.optim.SGD(net.parameters(), 1.0)
        return 1.0

    for name, make in models.items():
        book_net = make()
        optimizer = sgd_updater(book_net)
        step = optimizer.step if name == "concise" else (lambda: dl.sgd(book_net.params, 1.0, 1))
        runs = {"re-created book loop": lambda: book_epoch(book_net, nn.CrossEntropyLoss(), step)}
        options = {"fp32": {}, "bf16": {"precision": "bf16"}}
        if device.type == "cuda":
            options["fp32 cuda_graph"] = {"cuda_graph": True}
        options["fp32 compile"] = {"compile": True}
        for label, kwargs in options.items():
            net = make()
            trainer = dl.TorchTrainer(
                net, nn.CrossEntropyLoss(reduction="none"), sgd_updater(net), device, **kwargs
            )
            runs[label] = dl_epoch(trainer, train_iter)
        yield (
            f"torch {torch.__version__} {device.type}",
            name,
            "re-created book loop",
            interleaved_speeds(runs, args.rounds),
        )


def jax_rows(train_iter, vocab, args):
    import jax

    from dl import jax as dl

    key = jax.random.PRNGKey(0)
    models = {
        "scratch": lambda: dl.RNNModelScratch(
            len(vocab), NUM_HIDDENS, key, dl.get_lstm_params, dl.init_lstm_state, dl.lstm
        ),
        "concise": lambda: dl.RNNModel(dl.LSTM(len(vocab), NUM_HIDDENS), len(vocab), key),
    }
    for name, make in models.items():  # no book loop: the book has no JAX edition of d2l 0.17
        runs = {"jit, lax.scan": dl_epoch(dl.JaxTrainer(make(), 1.0), train_iter)}
        yield f"jax {jax.__version__}", name, None, interleaved_speeds(runs, args.rounds)


BACKENDS = {"tensorflow": tensorflow_rows, "torch": torch_rows, "jax": jax_rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    installed = [b for b in BACKENDS if importlib.util.find_spec(b)]
    parser.add_argument("--backends", default=",".join(installed), help="comma-separated")
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=5,
        help="timed epochs of every variant, taken in turns",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    backends = args.backends.split(",")
    if not args.rows_only:
        print(
            f"{8 * 32 * 35} tokens per epoch; median tokens/s over {args.rounds} rounds; "
            "(x) = ratio to the book loop\n"
        )
        print("| backend | model | book loop | variants |")
        print("| --- | --- | ---: | --- |", flush=True)
    if len(backends) > 1:  # one process per framework: their thread pools slow each other
        for backend in backends:
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--rows-only",
                    "--backends",
                    backend,
                    "--rounds",
                    str(args.rounds),
                    "--device",
                    args.device,
                ],
                check=True,
            )
        return
    train_iter, vocab = load_data_time_machine(32, 35)
    for framework, name, book, speeds in BACKENDS[backends[0]](train_iter, vocab, args):
        base = speeds.pop(book) if book else None
        ratio = (lambda v: "") if base is None else (lambda v: f" ({v / base:.1f}x)")
        cells = ", ".join(f"{k} {v:,.0f}{ratio(v)}" for k, v in speeds.items())
        book_cell = "-" if base is None else f"{book}: {base:,.0f}"
        print(f"| {framework} | {name} | {book_cell} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
