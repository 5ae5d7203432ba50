"""Training speed on the seed's workload, side by side in one run.

The seed's LSTM (256 hidden units, batch 32, 35 steps, The Time Machine's first 10,000
characters), scratch and concise, trained by:

- book loop: the book's eager loop (d2l 0.17 ``train_epoch_ch8``): a GradientTape per batch,
  clipping with the norm fetched to the host, the loss fetched every batch;
- dl eager: ``dl.tensorflow`` with ``compile=False``;
- dl compiled: ``dl.tensorflow`` as shipped (one ``tf.function`` step).

Usage: ``python benchmarks/seed_speed.py [--epochs 10] [--book-epochs 3]``. Prints tokens/s
and the ratio to the book loop. Timings are the median epoch after one warm-up epoch.
"""

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf

from dl import tensorflow as dl
from dl.train import train_epoch


def book_epoch(net, train_iter, loss, updater):
    """One epoch of the book's eager loop, as d2l 0.17 runs it (host sync every batch)."""
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
        float(l * tf.cast(tf.size(y), tf.float32))  # the book's metric.add syncs here
        tokens += Y.size
    return tokens


def dl_epoch(trainer, train_iter):
    _, tokens, _ = train_epoch(trainer, train_iter)
    return tokens


def median_speed(run_epoch, epochs):
    run_epoch()  # warm-up: tracing, variable creation
    speeds = []
    for _ in range(epochs):
        start = time.perf_counter()
        tokens = run_epoch()
        speeds.append(tokens / (time.perf_counter() - start))
    return statistics.median(speeds)


def models(vocab_size, num_hiddens=256):
    yield "scratch", lambda: dl.RNNModelScratch(vocab_size, num_hiddens, dl.init_lstm_state,
                                                dl.lstm, dl.get_lstm_params)
    yield "concise", lambda: dl.RNNModel(tf.keras.layers.RNN(
        tf.keras.layers.LSTMCell(num_hiddens), time_major=True, return_sequences=True,
        return_state=True), vocab_size)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="timed epochs, compiled")
    parser.add_argument("--book-epochs", type=int, default=3, help="timed epochs, eager")
    args = parser.parse_args()
    train_iter, vocab = dl.load_data_time_machine(32, 35)
    print(f"TensorFlow {tf.__version__}, tf.keras = {tf.keras.__name__.split('.')[0]}, "
          f"{len(tf.config.list_logical_devices('CPU'))} CPU device, "
          f"{8 * 32 * 35} tokens per epoch\n")
    print("| model | book loop (eager) | dl eager | dl compiled | compiled / book |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, make in models(len(vocab)):
        def make_trainer(compile):
            loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
            return dl.TFTrainer(make(), loss, tf.keras.optimizers.SGD(1.0), compile=compile)

        net = make()
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        updater = tf.keras.optimizers.SGD(1.0)
        book = median_speed(lambda: book_epoch(net, train_iter, loss, updater), args.book_epochs)
        eager_trainer, compiled_trainer = make_trainer(False), make_trainer(True)
        eager = median_speed(lambda: dl_epoch(eager_trainer, train_iter), args.book_epochs)
        compiled = median_speed(lambda: dl_epoch(compiled_trainer, train_iter), args.epochs)
        print(f"| {name} | {book:,.0f} | {eager:,.0f} | {compiled:,.0f} | {compiled / book:.1f}x |",
              flush=True)


if __name__ == "__main__":
    main()
