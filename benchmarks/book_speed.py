"""Training speed of the book's language-model chapters on d2l 0.17.6 and on ``dl``, in one run.

Each chapter's model (rnn-scratch, rnn-concise, gru, lstm, deep-rnn; bi-rnn in PyTorch, the
only edition with its code) is built twice by the chapter's own code, the lines that build it
re-typed from the script in ``../shared/book/`` and its functions and classes taken from there,
once with ``d2l`` bound to the book's library (d2l 0.17.6) and once to ``dl`` (the one-line
swap a reader makes). Both train on the same batches of The Time Machine (32 x 35, 8,960
tokens an epoch, the book's tensors) with the chapter's learning rate:

- book: d2l 0.17.6's own ``train_epoch_ch8``, the epoch its ``train_ch8`` runs (the loss and
  updater made as its ``train_ch8`` makes them);
- dl: the epochs ``dl``'s ``train_ch8`` runs (``train_dl_trainer``: TensorFlow, one
  ``tf.function`` step; PyTorch, eager with no host sync per batch).

rnn-scratch defines and calls its own ``train_ch8`` (the book's, which d2l saved from it): on
either library that chapter trains with its own loop, which is what both of its columns time.

The book's library must be importable, e.g. ``pip install --no-deps --target /tmp/d2l
d2l==0.17.6`` and ``PYTHONPATH=src:/tmp/d2l``. Its PyTorch edition imports torchvision (for its
image chapters only); where torchvision is not installed an empty stand-in module is put in
its place, with a line on stderr. Usage:
``python benchmarks/book_speed.py [--backends tensorflow,torch] [--rounds 5]``; each framework
runs in its own process; a model's two loops take turns, one epoch each per round after one
warm-up epoch (``seed_speed.interleaved_speeds``). Prints a Markdown table of median tokens/s.
"""

import argparse
import ast
import importlib.util
import math
import subprocess
import sys
import types
from pathlib import Path

from seed_speed import dl_epoch, interleaved_speeds

from dl.cli.options import positive_int

BOOK_DIR = Path(__file__).resolve().parents[2] / "shared" / "book"
BATCH_SIZE, NUM_STEPS = 32, 35


def chapter_definitions(script: str, d2l, book_dir: Path = BOOK_DIR) -> types.SimpleNamespace:
    """The imports, functions and classes of ``book_dir/<script>.py`` (none of its other
    statements), run with ``d2l`` bound to the library given; the chapter's own import of
    the library is left out."""
    path = book_dir / f"{script}.py"
    if not path.is_file():
        raise SystemExit(f"the book's chapter scripts are not here: {path} does not exist")
    namespace = {"d2l": d2l, "__name__": f"chapter {script}"}
    for node in ast.parse(path.read_text(), str(path)).body:
        imports_library = isinstance(node, ast.ImportFrom) and node.module in ("d2l", "dl")
        if isinstance(node, (ast.Import, ast.ImportFrom)) and imports_library:
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
            exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
    return types.SimpleNamespace(**namespace)


def book_library(framework: str):
    """``(module, version)``: d2l 0.17's edition for ``framework`` ('torch' or 'tensorflow')."""
    if importlib.util.find_spec("d2l") is None:
        raise SystemExit(
            "the book's library is not importable: pip install --no-deps --target /tmp/d2l "
            "d2l==0.17.6, then run with PYTHONPATH=src:/tmp/d2l"
        )
    import d2l

    if not d2l.__version__.startswith("0.17"):
        raise SystemExit(f"d2l {d2l.__version__} is importable; the baseline is d2l 0.17")
    if framework == "torch" and importlib.util.find_spec("torchvision") is None:
        print(
            "torchvision is not installed: an empty stand-in takes its place in d2l.torch's "
            "imports (its language-model code does not use it)",
            file=sys.stderr,
            flush=True,
        )
        stand_in = types.ModuleType("torchvision")
        stand_in.transforms = types.ModuleType("torchvision.transforms")
        sys.modules.update(torchvision=stand_in, **{"torchvision.transforms": stand_in.transforms})
    return importlib.import_module(f"d2l.{framework}"), d2l.__version__


def book_epoch(train_epoch_ch8, net, batches, *args):
    """One epoch of the book's ``train_epoch_ch8(net, batches, *args, use_random_iter=False)``
    as a ``run_epoch() -> tokens`` function."""
    tokens = sum(math.prod(Y.shape) for _, Y in batches)

    def run():
        train_epoch_ch8(net, batches, *args, False)
        return tokens

    return run


def torch_rows(args):
    """``(framework, chapter, model, d2l version, {"book": tokens/s, "dl": tokens/s})`` for
    each PyTorch chapter's model."""
    import torch
    from torch import nn

    from dl import torch as dl
    from dl.torch.training import train_dl_trainer

    book, version = book_library("torch")
    device = torch.device(args.device)
    train_iter, vocab = dl.load_data_time_machine(BATCH_SIZE, NUM_STEPS)
    batches, V = list(train_iter), len(vocab)  # int64 tensors, as the book's loader makes them

    def scratch_then_concise(chapter, get_params, init_state, forward_fn, layer):
        """The gru and lstm chapters' models: their own cells in ``RNNModelScratch``, then
        PyTorch's ``layer`` in ``RNNModel``, 256 hidden units, lr 1."""
        cells = lambda c: [getattr(c, name) for name in (get_params, init_state, forward_fn)]
        return [
            (
                chapter,
                f"RNNModelScratch, {forward_fn}, 256",
                1,
                lambda c: c.d2l.RNNModelScratch(V, 256, device, *cells(c)),
            ),
            (
                chapter,
                f"RNNModel(nn.{layer.__name__}), 256",
                1,
                lambda c: c.d2l.RNNModel(layer(V, 256), V),
            ),
        ]

    # (chapter script, model, lr, build(chapter) -> net), as each chapter builds them
    models = [
        (
            "rnn-scratch",
            "own RNNModelScratch, rnn, 512",
            1,
            lambda c: c.RNNModelScratch(V, 512, device, c.get_params, c.init_rnn_state, c.rnn),
        ),
        ("rnn-concise", "own RNNModel(nn.RNN), 256", 1, lambda c: c.RNNModel(nn.RNN(V, 256), V)),
        *scratch_then_concise("gru", "get_params", "init_gru_state", "gru", nn.GRU),
        *scratch_then_concise("lstm", "get_lstm_params", "init_lstm_state", "lstm", nn.LSTM),
        (
            "deep-rnn",
            "RNNModel(nn.LSTM, 2 layers)",
            2,
            lambda c: c.d2l.RNNModel(nn.LSTM(V, 256, 2), V),
        ),
        (
            "bi-rnn",
            "RNNModel(nn.LSTM, 2 layers, bidirectional)",
            1,
            lambda c: c.d2l.RNNModel(nn.LSTM(V, 256, 2, bidirectional=True), V),
        ),
    ]

    def book_loop(c, net, lr, train_epoch_ch8):
        """The book's ``train_ch8`` epoch: its loss and updater, made as it makes them."""
        if isinstance(net, nn.Module):
            updater = torch.optim.SGD(net.parameters(), lr)
        else:
            updater = lambda batch_size: c.d2l.sgd(net.params, lr, batch_size)
        loss = nn.CrossEntropyLoss()
        return book_epoch(train_epoch_ch8, net, batches, loss, updater, device)

    for chapter, model, lr, build in models:
        runs = {}
        for side, library in (("book", book), ("dl", dl)):
            c = chapter_definitions(f"{chapter}_pytorch", library)
            net = _on_device(build(c), device)
            if hasattr(c, "train_epoch_ch8"):  # the chapter's own loop, on either library
                runs[side] = book_loop(c, net, lr, c.train_epoch_ch8)
            elif side == "book":
                runs[side] = book_loop(c, net, lr, book.train_epoch_ch8)
            else:
                runs[side] = dl_epoch(train_dl_trainer(net, lr, device), batches)
        speeds = interleaved_speeds(runs, args.rounds)
        yield f"torch {torch.__version__} {device.type}", chapter, model, version, speeds


def _on_device(net, device):
    """``net.to(device)`` for a module, as the chapters do; a scratch model made on it as is."""
    return net.to(device) if hasattr(net, "to") else net


def tensorflow_rows(args):
    """``(framework, chapter, model, d2l version, {"book": tokens/s, "dl": tokens/s})`` for
    each TensorFlow chapter's model."""
    import tensorflow as tf

    from dl import tensorflow as dl
    from dl.tensorflow.training import train_dl_trainer

    book, version = book_library("tensorflow")
    train_iter, vocab = dl.load_data_time_machine(BATCH_SIZE, NUM_STEPS)
    batches, V = [(tf.constant(X), tf.constant(Y)) for X, Y in train_iter], len(vocab)
    layers = tf.keras.layers

    def keras_rnn(cell):
        return layers.RNN(cell, time_major=True, return_sequences=True, return_state=True)

    def scratch_then_concise(chapter, get_params, init_state, forward_fn, cell):
        """The gru and lstm chapters' models: their own cells in ``RNNModelScratch``, then
        Keras' ``cell`` in ``RNNModel``, 256 hidden units, lr 1."""
        cells = lambda c: [getattr(c, name) for name in (init_state, forward_fn, get_params)]
        concise = lambda c: c.d2l.RNNModel(
            keras_rnn(cell(256, kernel_initializer="glorot_uniform")), V
        )
        return [
            (
                chapter,
                f"RNNModelScratch, {forward_fn}, 256",
                1,
                lambda c: c.d2l.RNNModelScratch(V, 256, *cells(c)),
            ),
            (chapter, f"RNNModel({cell.__name__}), 256", 1, concise),
        ]

    models = [
        (
            "rnn-scratch",
            "own RNNModelScratch, rnn, 512",
            1,
            lambda c: c.RNNModelScratch(V, 512, c.init_rnn_state, c.rnn, c.get_params),
        ),
        (
            "rnn-concise",
            "own RNNModel(SimpleRNNCell), 256",
            1,
            lambda c: c.RNNModel(
                keras_rnn(layers.SimpleRNNCell(256, kernel_initializer="glorot_uniform")), V
            ),
        ),
        *scratch_then_concise("gru", "get_params", "init_gru_state", "gru", layers.GRUCell),
        *scratch_then_concise(
            "lstm", "get_lstm_params", "init_lstm_state", "lstm", layers.LSTMCell
        ),
        (
            "deep-rnn",
            "RNNModel(StackedRNNCells, 2 LSTMCell)",
            2,
            lambda c: c.d2l.RNNModel(
                keras_rnn(layers.StackedRNNCells([layers.LSTMCell(256) for _ in range(2)])), V
            ),
        ),
    ]
    strategy = tf.distribute.OneDeviceStrategy(dl.try_gpu()._device_name)

    def book_loop(net, lr, train_epoch_ch8):
        """The book's ``train_ch8`` epoch: its loss and updater, made as it makes them."""
        with strategy.scope():
            loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            updater = tf.keras.optimizers.SGD(lr)
        return book_epoch(train_epoch_ch8, net, batches, loss, updater)

    for chapter, model, lr, build in models:
        runs = {}
        for side, library in (("book", book), ("dl", dl)):
            c = chapter_definitions(f"{chapter}_tensorflow", library)
            with strategy.scope():
                net = build(c)
            if hasattr(c, "train_epoch_ch8"):  # the chapter's own loop, on either library
                runs[side] = book_loop(net, lr, c.train_epoch_ch8)
            elif side == "book":
                runs[side] = book_loop(net, lr, book.train_epoch_ch8)
            else:
                runs[side] = dl_epoch(train_dl_trainer(net, lr, strategy), batches)
        speeds = interleaved_speeds(runs, args.rounds)
        yield f"tensorflow {tf.__version__}", chapter, model, version, speeds


BACKENDS = {"tensorflow": tensorflow_rows, "torch": torch_rows}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    installed = [b for b in BACKENDS if importlib.util.find_spec(b)]
    parser.add_argument("--backends", default=",".join(installed), help="comma-separated")
    parser.add_argument("--rounds", type=positive_int, default=5, help="timed epochs of each")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    backends = args.backends.split(",")
    if not args.rows_only:
        print(f"median tokens/s over {args.rounds} rounds of one epoch each\n")
        print("| backend | chapter | model | book's d2l | dl | dl / book |")
        print("| --- | --- | --- | ---: | ---: | ---: |", flush=True)
    if len(backends) > 1:  # one process per framework: their thread pools slow each other
        for backend in backends:
            command = [sys.executable, __file__, "--rows-only", "--backends", backend]
            command += ["--rounds", str(args.rounds), "--device", args.device]
            subprocess.run(command, check=True)
        return
    for framework, chapter, model, version, speeds in BACKENDS[backends[0]](args):
        book, ours = speeds["book"], speeds["dl"]
        print(
            f"| {framework} | {chapter} | {model} | d2l {version}: {book:,.0f} | {ours:,.0f} "
            f"| {ours / book:.1f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
