"""Training speed on the seed's workload, side by side in one run, for every installed backend.

The seed's LSTM (256 hidden units, batch 32, 35 steps, The Time Machine's first 10,000
characters), scratch and concise, trained by:

- book loop: the book's eager loop (d2l 0.17 ``train_epoch_ch8`` of that framework's edition,
  re-created here): the norm for clipping and the loss fetched to the host every batch;
- dl: ``dl.<backend>`` as shipped (TensorFlow: one ``tf.function`` step; PyTorch: eager with
  no host sync per batch) and its variants (TensorFlow ``compile=False``; PyTorch bf16).

Usage: ``python benchmarks/seed_speed.py [--backends tensorflow,torch] [--epochs 5]``; on a
GPU machine ``python benchmarks/seed_speed.py --backends torch --device cuda`` adds the CUDA
graph variant (a few minutes).
Prints a Markdown table of median tokens/s over the timed epochs (after one warm-up epoch)
and each variant's ratio to the book loop.
"""

import argparse
import importlib.util
import statistics
import subprocess
import sys
import time

from dl.data.batches import load_data_time_machine
from dl.train import train_epoch

NUM_HIDDENS = 256


def median_speed(run_epoch, epochs):
    """Median tokens/s of ``run_epoch() -> tokens`` over ``epochs`` runs after one warm-up."""
    run_epoch()
    speeds = []
    for _ in range(epochs):
        start = time.perf_counter()
        tokens = run_epoch()
        speeds.append(tokens / (time.perf_counter() - start))
    return statistics.median(speeds)


def dl_speed(trainer, train_iter, epochs):
    return median_speed(lambda: train_epoch(trainer, train_iter)[1], epochs)


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
            norm = np.sqrt(sum(float(tf.reduce_sum(g ** 2).numpy()) for g in grads))
            if norm > 1:
                grads = [g * 1 / norm for g in grads]
            updater.apply_gradients(zip(grads, params))
            float(l * tf.cast(tf.size(y), tf.float32))  # the book's metric.add
            tokens += Y.size
        return tokens

    models = {
        "scratch": lambda: dl.RNNModelScratch(len(vocab), NUM_HIDDENS, dl.init_lstm_state,
                                              dl.lstm, dl.get_lstm_params),
        "concise": lambda: dl.RNNModel(tf.keras.layers.RNN(
            tf.keras.layers.LSTMCell(NUM_HIDDENS), time_major=True, return_sequences=True,
            return_state=True), len(vocab)),
    }
    for name, make in models.items():
        def trainer(compile):
            loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
            return dl.TFTrainer(make(), loss, tf.keras.optimizers.SGD(1.0), compile=compile)
        net, updater = make(), tf.keras.optimizers.SGD(1.0)
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        book = median_speed(lambda: book_epoch(net, loss, updater), args.book_epochs)
        yield (f"tensorflow {tf.__version__}", name, book,
               {"compile=False": dl_speed(trainer(False), train_iter, args.book_epochs),
                "compiled": dl_speed(trainer(True), train_iter, args.epochs)})


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
                state = state.detach() if isinstance(state, torch.Tensor) else tuple(s.detach() for s in state)
            y = Y.T.reshape(-1)
            y_hat, state = net(X, state)
            l = loss(y_hat, y.long()).mean()
            for p in params:
                p.grad = None
            l.backward()
            norm = torch.sqrt(sum(torch.sum(p.grad ** 2) for p in params))
            if norm > 1:  # a host sync, as in the book
                for p in params:
                    p.grad[:] *= 1 / norm
            updater()
            float(l.detach() * y.numel())  # the book's metric.add
            tokens += y.numel()
        return tokens

    models = {
        "scratch": lambda: dl.RNNModelScratch(len(vocab), NUM_HIDDENS, device, dl.get_lstm_params,
                                              dl.init_lstm_state, dl.lstm),
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
        book = median_speed(lambda: book_epoch(book_net, nn.CrossEntropyLoss(), step), args.epochs)
        variants = {}
        options = {"fp32": {}, "bf16": {"precision": "bf16"}}
        if device.type == "cuda":
            options["fp32 cuda_graph"] = {"cuda_graph": True}
        options["fp32 compile"] = {"compile": True}
        for label, kwargs in options.items():
            net = make()
            trainer = dl.TorchTrainer(net, nn.CrossEntropyLoss(reduction="none"),
                                      sgd_updater(net), device, **kwargs)
            variants[label] = dl_speed(trainer, train_iter, args.epochs)
        yield f"torch {torch.__version__} {device.type}", name, book, variants


def jax_rows(train_iter, vocab, args):
    import jax
    from dl import jax as dl

    key = jax.random.PRNGKey(0)
    models = {
        "scratch": lambda: dl.RNNModelScratch(len(vocab), NUM_HIDDENS, key, dl.get_lstm_params,
                                              dl.init_lstm_state, dl.lstm),
        "concise": lambda: dl.RNNModel(dl.LSTM(len(vocab), NUM_HIDDENS), len(vocab), key),
    }
    for name, make in models.items():  # no book loop: the book has no JAX edition of d2l 0.17
        speed = dl_speed(dl.JaxTrainer(make(), 1.0), train_iter, args.epochs)
        yield f"jax {jax.__version__}", name, None, {"jit, lax.scan": speed}


BACKENDS = {"tensorflow": tensorflow_rows, "torch": torch_rows, "jax": jax_rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    installed = [b for b in BACKENDS if importlib.util.find_spec(b)]
    parser.add_argument("--backends", default=",".join(installed), help="comma-separated")
    parser.add_argument("--epochs", type=int, default=10, help="timed epochs, fast paths")
    parser.add_argument("--book-epochs", type=int, default=3, help="timed epochs, TF eager")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    backends = args.backends.split(",")
    if not args.rows_only:
        print(f"{8 * 32 * 35} tokens per epoch; median tokens/s; (x) = ratio to the book loop\n")
        print("| backend | model | book loop | dl variants |")
        print("| --- | --- | ---: | --- |", flush=True)
    if len(backends) > 1:  # one process per framework: their thread pools slow each other
        for backend in backends:
            subprocess.run([sys.executable, __file__, "--rows-only", "--backends", backend,
                            "--epochs", str(args.epochs), "--book-epochs", str(args.book_epochs),
                            "--device", args.device], check=True)
        return
    train_iter, vocab = load_data_time_machine(32, 35)
    for framework, name, book, variants in BACKENDS[backends[0]](train_iter, vocab, args):
        ratio = (lambda v: "") if book is None else (lambda v: f" ({v / book:.1f}x)")
        cells = ", ".join(f"{k} {v:,.0f}{ratio(v)}" for k, v in variants.items())
        book_cell = "-" if book is None else f"{book:,.0f}"
        print(f"| {framework} | {name} | {book_cell} | {cells} |", flush=True)


if __name__ == "__main__":
    main()
