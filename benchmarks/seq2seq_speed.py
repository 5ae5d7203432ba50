"""Training speed of the seq2seq chapter's model, the book's loop beside ``dl``'s, in one run.

The book's model and sizes (section 9.7: embeddings and 2 GRU layers of 32, dropout 0.1,
batch 64, 10 steps, 600 pairs of the book's vocabulary sizes, 184 and 201 tokens), on random
token ids of random valid lengths (speed does not depend on the words). Trained by:

- book loop: the chapter's ``train_seq2seq`` loop as printed, with d2l 0.17's own
  ``grad_clipping`` (the gradient norm fetched to the host every batch) and its ``metric.add``
  (the loss fetched every batch);
- dl: ``dl.<backend>.train_seq2seq``'s step (PyTorch: every sum on the device; TensorFlow: one
  ``tf.function``; JAX: one ``jax.jit`` with optax), the host waiting once per epoch.

Usage: ``python benchmarks/seq2seq_speed.py [--backends torch,tensorflow,jax] [--rounds 5]``.
Variants take turns, one epoch each per round after a warm-up epoch (see
``seed_speed.interleaved_speeds``); prints a Markdown table of median tokens/s and each
variant's ratio to the book loop of its framework. The ``book_*_step`` functions are also the
reference the tests hold ``dl``'s steps to.
"""

import argparse
import importlib.util

import numpy as np
from seed_speed import interleaved_speeds

from dl.cli.options import positive_int
from dl.data.nmt import ArrayBatches
from dl.data.text import Vocab
from dl.seq2seq import param_shapes

SIZES = dict(embed_size=32, num_hiddens=32, num_layers=2, dropout=0.1)
SRC_VOCAB, TGT_VOCAB, NUM_PAIRS, BATCH_SIZE, NUM_STEPS, LR = 184, 201, 600, 64, 10, 0.005
TGT = Vocab(reserved_tokens=["<pad>", "<bos>", "<eos>"] + [f"w{i}" for i in range(TGT_VOCAB - 4)])


def random_pairs(seed=0, num_pairs=NUM_PAIRS, num_steps=NUM_STEPS):
    """``(src, src_valid_len, tgt, tgt_valid_len)`` int64 arrays as ``build_array_nmt`` makes
    them: ids after the reserved ones, then ``<eos>``, then ``<pad>`` to ``num_steps``."""
    rng = np.random.default_rng(seed)
    arrays = []
    for vocab_size in (SRC_VOCAB, TGT_VOCAB):
        valid_len = rng.integers(2, num_steps + 1, num_pairs)
        ids = rng.integers(4, vocab_size, (num_pairs, num_steps))
        steps = np.arange(num_steps)[None, :]
        padded = np.where(steps < valid_len[:, None], ids, TGT["<pad>"])
        ids = np.where(steps == valid_len[:, None] - 1, TGT["<eos>"], padded)
        arrays += [ids, valid_len]
    return arrays


def book_torch_step(net, optimizer, loss, batch, tgt_vocab, device):
    """One batch of the book's PyTorch ``train_seq2seq``; returns ``(l.sum(), num_tokens)``
    fetched to the host, as its ``metric.add`` does."""
    import torch

    optimizer.zero_grad()
    X, X_valid_len, Y, Y_valid_len = [x.to(device) for x in batch]
    bos = torch.tensor([tgt_vocab["<bos>"]] * Y.shape[0], device=device).reshape(-1, 1)
    dec_input = torch.cat([bos, Y[:, :-1]], 1)
    Y_hat, _ = net(X, dec_input, X_valid_len)
    l = loss(Y_hat, Y, Y_valid_len)
    l.sum().backward()
    params = [p for p in net.parameters() if p.requires_grad]  # d2l 0.17's grad_clipping
    norm = torch.sqrt(sum(torch.sum(p.grad**2) for p in params))
    if norm > 1:
        for param in params:
            param.grad[:] *= 1 / norm
    num_tokens = Y_valid_len.sum()
    optimizer.step()
    with torch.no_grad():
        return float(l.sum()), float(num_tokens)


def book_tf_step(net, optimizer, batch, tgt_vocab):
    """One batch of the book's TensorFlow ``train_seq2seq``; returns ``(loss sum, tokens)``."""
    import tensorflow as tf

    from dl.tensorflow import MaskedSoftmaxCELoss

    X, X_valid_len, Y, Y_valid_len = batch
    bos = tf.reshape(tf.constant([tgt_vocab["<bos>"]] * Y.shape[0]), shape=(-1, 1))
    dec_input = tf.concat([bos, Y[:, :-1]], 1)
    with tf.GradientTape() as tape:
        Y_hat, _ = net(X, dec_input, X_valid_len, training=True)
        l = MaskedSoftmaxCELoss(Y_valid_len)(Y, Y_hat)
    gradients = tape.gradient(l, net.trainable_variables)
    gradients = [
        tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in gradients
    ]  # d2l 0.17's grad_clipping
    norm = tf.cast(tf.math.sqrt(sum(tf.reduce_sum(g**2).numpy() for g in gradients)), tf.float32)
    if tf.greater(norm, 1.0):
        gradients = [g * 1.0 / norm for g in gradients]
    optimizer.apply_gradients(zip(gradients, net.trainable_variables))
    num_tokens = tf.reduce_sum(Y_valid_len).numpy()
    return float(tf.reduce_sum(l)), float(num_tokens)


def _epoch(step, data_iter):
    """One epoch of ``step(batch) -> (loss, tokens)`` as a ``run_epoch() -> tokens`` function."""
    return lambda: sum(step(batch)[1] for batch in data_iter)


def _dl_epoch(trainer, data_iter):
    def run():
        for batch in data_iter:
            trainer.train_step(*batch)
        return trainer.take_sums()[1]

    return run


def torch_rows(arrays):
    import torch

    from dl import torch as d2l
    from dl.torch.seq2seq import Seq2SeqTrainer

    device = d2l.try_gpu()
    data_iter = ArrayBatches(arrays, BATCH_SIZE, convert=torch.from_numpy)

    def model():
        net = d2l.EncoderDecoder(
            d2l.Seq2SeqEncoder(SRC_VOCAB, **SIZES), d2l.Seq2SeqDecoder(TGT_VOCAB, **SIZES)
        ).to(device)
        return net.train()

    book_net = model()
    optimizer, loss = torch.optim.Adam(book_net.parameters(), lr=LR), d2l.MaskedSoftmaxCELoss()
    book = lambda batch: book_torch_step(book_net, optimizer, loss, batch, TGT, device)
    return {
        "torch book loop": _epoch(book, data_iter),
        "torch dl.train_seq2seq": _dl_epoch(Seq2SeqTrainer(model(), LR, TGT, device), data_iter),
    }


def tensorflow_rows(arrays):
    import tensorflow as tf

    from dl import tensorflow as d2l
    from dl.tensorflow.seq2seq import Seq2SeqTrainer

    data_iter = ArrayBatches(arrays, BATCH_SIZE, convert=lambda a: tf.constant(a, tf.int32))
    model = lambda: d2l.EncoderDecoder(
        d2l.Seq2SeqEncoder(SRC_VOCAB, **SIZES), d2l.Seq2SeqDecoder(TGT_VOCAB, **SIZES)
    )
    book_net, optimizer = model(), tf.keras.optimizers.Adam(learning_rate=LR)
    book = lambda batch: book_tf_step(book_net, optimizer, batch, TGT)
    return {
        "tensorflow book loop": _epoch(book, data_iter),
        "tensorflow dl.train_seq2seq": _dl_epoch(Seq2SeqTrainer(model(), LR, TGT), data_iter),
    }


def jax_rows(arrays):
    import jax

    from dl import jax as d2l
    from dl.jax.seq2seq import Seq2SeqTrainer

    data_iter = ArrayBatches([a.astype(np.int32) for a in arrays], BATCH_SIZE)
    net = d2l.EncoderDecoder(
        d2l.Seq2SeqEncoder(SRC_VOCAB, **SIZES),
        d2l.Seq2SeqDecoder(TGT_VOCAB, **SIZES),
        jax.random.PRNGKey(0),
    )
    assert set(net.params) == set(param_shapes(SRC_VOCAB, TGT_VOCAB, 32, 32, 2))
    return {"jax dl.train_seq2seq": _dl_epoch(Seq2SeqTrainer(net, LR, TGT), data_iter)}


ROWS = {"torch": torch_rows, "tensorflow": tensorflow_rows, "jax": jax_rows}


def table(speeds: dict) -> str:
    """Markdown rows: variant, median tokens/s, ratio to its framework's book loop."""
    lines = ["| variant | tokens/s | vs book loop |", "| --- | ---: | ---: |"]
    for label, speed in speeds.items():
        book = speeds.get(f"{label.split(' ')[0]} book loop")
        ratio = f"{speed / book:.2f}x" if book else "n/a"
        lines.append(f"| {label} | {speed:,.0f} | {ratio} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="torch,tensorflow,jax")
    parser.add_argument("--rounds", type=positive_int, default=5)
    args = parser.parse_args(argv)
    arrays, runs = random_pairs(), {}
    for backend in args.backends.split(","):
        module = "tensorflow" if backend == "tensorflow" else backend
        if importlib.util.find_spec(module) is None:
            print(f"{backend}: not installed, skipped")
            continue
        runs.update(ROWS[backend](arrays))
    print(table(interleaved_speeds(runs, args.rounds)))


if __name__ == "__main__":
    main()
