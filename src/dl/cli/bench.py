"""``dl bench``: the cost of RNN, GRU and LSTM language models per hidden size and backend,
analytic and measured (the chapter's exercise 3).

For each backend, implementation (``--impl``: ``scratch``, the book's cells written with the
framework's array ops, as ``dl train`` runs them; ``concise``, the framework's own recurrent
layers), cell and hidden size: parameters, FLOPs per token (:mod:`dl.flops`: training
= 3 x forward; the one-hot input a row lookup), training tokens/s (``dl train``'s epoch loop
over ``--batches`` batches of ``--batch-size`` x ``--num-steps``, median of ``--repeats`` after
a warm-up), generation tokens/s (``model.step`` one token at a time, greedy, batch 1) and the
GFLOP/s these achieve. Each backend is measured in a process of its own, so no two frameworks
share a process (their thread pools slow each other). Writes ``bench.md`` (the table and the
measured cost ratios LSTM/GRU and LSTM/RNN beside the analytic ones), ``bench.csv`` and
``bench.png`` (tokens/s against hidden size) to ``--out``.

The measuring processes inherit the environment, thread settings included: each framework uses
its default thread pools unless told otherwise. On a machine shared with other jobs, pin them
(``OMP_NUM_THREADS=1 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 XLA_FLAGS=
"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" dl bench``): busy-waiting
pools that find their cores taken can run a hundred times slower.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import itertools
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dl import flops, lm
from dl import train as core
from dl.cli import backends, user_message
from dl.cli.options import choice, list_of, positive_int
from dl.data.batches import seq_data_iter_sequential
from dl.data.text import load_corpus_time_machine
from dl.errors import InputError
from dl.files import atomic_write
from dl.optim import OptimizerConfig

BOOK_VOCAB_SIZE = 28  # The Time Machine's characters: 26 letters, space, <unk>
ROW_KEYS = ("backend", "impl", "framework", "device", "cell", "hidden")  # what a row measured
COLUMNS = (
    *ROW_KEYS,
    "params",
    "train_flops_per_token",
    "inference_flops_per_token",
    "train_tokens_per_sec",
    "train_gflops_per_sec",
    "generate_tokens_per_sec",
    "generate_gflops_per_sec",
)
ERROR = "dl: error: "  # how a worker reports bad input on stderr
MEASURED = (*ROW_KEYS, "vocab_size", "train_tokens_per_sec", "generate_tokens_per_sec")


class BenchError(InputError):
    """A benchmark cannot run as asked; the message says what to do."""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="parameters, FLOPs and tokens/s of RNN, GRU and LSTM (exercise 3)",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument(
        "--cells",
        type=list_of(choice(*lm.CELLS)),
        default=list(lm.CELLS),
        metavar="CELL[,...]",
        help="cells (default: rnn,gru,lstm)",
    )
    parser.add_argument(
        "--hidden",
        type=list_of(positive_int),
        default=[128, 256, 512, 1024],
        metavar="H[,...]",
        help="hidden sizes (default: 128,256,512,1024)",
    )
    parser.add_argument(
        "--backends",
        type=list_of(str),
        default=None,
        metavar="NAME[,...]",
        help="backends (default: every installed one)",
    )
    parser.add_argument(
        "--impl",
        type=list_of(choice(*backends.IMPLS)),
        default=["scratch"],
        metavar="IMPL[,...]",
        help="scratch (the book's cells, as dl train runs them), concise (the "
        "framework's own layers) or both (default: scratch)",
    )
    for flag, default, text in (
        ("--batch-size", 32, "sequences per training batch (default: 32)"),
        ("--num-steps", 35, "time steps per sequence (default: 35)"),
        (
            "--batches",
            8,
            "training batches per timed repeat (default: 8, an epoch of the book's "
            "10,000 characters)",
        ),
        ("--gen-tokens", 200, "tokens generated per timed repeat (default: 200)"),
        ("--repeats", 3, "timed repeats after the warm-up; the median counts (default: 3)"),
    ):
        parser.add_argument(flag, type=positive_int, default=default, help=text)
    parser.add_argument(
        "--data",
        type=choice("book", "random"),
        default="book",
        metavar="book|random",
        help="book: The Time Machine's characters; random: uniform ids over "
        f"its {BOOK_VOCAB_SIZE} tokens, no download (default: book)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu, gpu, cuda:N (default: a GPU if there is one)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/bench"),
        help="directory of bench.md, bench.csv, bench.png (default: runs/bench)",
    )
    parser.set_defaults(command=main)


def main(args: argparse.Namespace) -> int:
    if args.backends:
        names = [backends.choose(name) for name in dict.fromkeys(args.backends)]
    else:
        names = backends.installed() or [backends.choose(None)]  # raises: none installed
    settings = {
        "impls": list(dict.fromkeys(args.impl)),
        "cells": list(dict.fromkeys(args.cells)),
        "hidden": list(dict.fromkeys(args.hidden)),
        "batch_size": args.batch_size,
        "num_steps": args.num_steps,
        "batches": args.batches,
        "gen_tokens": args.gen_tokens,
        "repeats": args.repeats,
        "data": args.data,
        "device": args.device,
    }
    if not any(
        backends.computes(name, impl, cell)
        for name in names
        for impl in settings["impls"]
        for cell in settings["cells"]
    ):
        raise BenchError(
            f"nothing to measure: the own layers of {', '.join(names)} compute "
            f"none of --cells {','.join(settings['cells'])} in the book's form; "
            "add --impl scratch"
        )
    if args.out.exists() and not args.out.is_dir():
        raise BenchError(f"--out {args.out} is a file; give a directory for the reports")
    args.out.mkdir(parents=True, exist_ok=True)  # before measuring: fail fast
    rows = []
    for name in names:
        rows += [analytic_row(measured) for measured in measure_in_subprocess(name, settings)]
    report, plotted = write_reports(args.out, rows, settings)
    print(report, end="")
    print(
        f"wrote {args.out / 'bench.md'}, bench.csv"
        + (" and bench.png" if plotted else " (no bench.png: matplotlib is not installed)"),
        flush=True,
    )
    return 0


def analytic_row(measured: dict) -> dict:
    """A measured row completed with parameters, FLOPs per token and GFLOP/s."""
    config = lm.LMConfig(
        cell=measured["cell"], vocab_size=measured["vocab_size"], num_hiddens=measured["hidden"]
    )
    train, infer = flops.training_flops(config), flops.inference_flops(config)
    row = {key: measured[key] for key in MEASURED if key != "vocab_size"}
    row.update(
        params=flops.num_params(config),
        train_flops_per_token=train,
        inference_flops_per_token=infer,
        train_gflops_per_sec=measured["train_tokens_per_sec"] * train / 1e9,
        generate_gflops_per_sec=measured["generate_tokens_per_sec"] * infer / 1e9,
    )
    return {key: row[key] for key in COLUMNS}


def measure_in_subprocess(backend: str, settings: dict) -> list[dict]:
    """Rows of :data:`MEASURED` from ``python -m dl.cli.bench`` measuring ``backend`` alone.
    Its progress lines pass through; its stderr (framework logs) shows only if it fails."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "rows.json"
        done = subprocess.run(
            [sys.executable, "-m", "dl.cli.bench", backend, json.dumps(settings), str(result)],
            stderr=subprocess.PIPE,
            text=True,
        )
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            errors = [line for line in lines if line.startswith(ERROR)]
            if done.returncode == 2 and errors:  # bad input: the worker's one-line message
                raise BenchError(f"{backend}: {errors[-1].removeprefix(ERROR)}")
            raise RuntimeError(
                f"measuring {backend} failed (exit status {done.returncode}):\n"
                + "\n".join(lines[-20:])
            )
        return json.loads(result.read_text())


def measure(backend: str, settings: dict) -> list[dict]:
    """Measure every implementation, cell and hidden size on ``backend`` in this process
    (imports it). Cells that the framework's own layers do not compute (torch's GRU) are
    skipped for ``concise``, with a line that says so."""
    framework = f"{backend} {importlib.import_module(backend).__version__}"
    batches, vocab_size = training_batches(settings)
    rows = []
    for impl, cell in itertools.product(settings["impls"], settings["cells"]):
        if not backends.computes(backend, impl, cell):
            print(
                f"{backend} concise {cell}: skipped, {backend}'s own {cell.upper()} layer "
                "computes another cell than the book's",
                flush=True,
            )
            continue
        for hidden in settings["hidden"]:
            config = lm.LMConfig(cell=cell, vocab_size=vocab_size, num_hiddens=hidden)
            model = backends.model_class(backend, impl)(
                config, lm.init_params(config, seed=0), device=settings["device"]
            )
            trainer = model.trainer(OptimizerConfig(lr=1.0), clip=1.0)
            train = median_after_warmup(
                lambda trainer=trainer: core.train_epoch(trainer, batches)[2], settings["repeats"]
            )
            generate = median_after_warmup(
                generation_speed(model, settings["gen_tokens"]), settings["repeats"]
            )
            rows.append(
                dict(
                    zip(
                        MEASURED,
                        (
                            backend,
                            impl,
                            framework,
                            model.device_name,
                            cell,
                            hidden,
                            vocab_size,
                            train,
                            generate,
                        ),
                    )
                )
            )
            print(
                f"{backend} {impl} {cell} {hidden}: training {train:,.0f} tokens/s, "
                f"generation {generate:,.0f} tokens/s on {model.device_name}",
                flush=True,
            )
    return rows


def training_batches(settings: dict) -> tuple[list, int]:
    """``(batches, vocab_size)``: ``settings['batches']`` pairs ``X, Y: (B, T)`` int, from The
    Time Machine's characters walked sequentially (repeated if the book runs out) or random."""
    B, T, n = settings["batch_size"], settings["num_steps"], settings["batches"]
    if settings["data"] == "random":
        ids = np.random.default_rng(0).integers(0, BOOK_VOCAB_SIZE, (n, 2, B, T), np.int32)
        return [(X, Y) for X, Y in ids], BOOK_VOCAB_SIZE
    corpus, vocab = load_corpus_time_machine()  # all 170,580 characters
    book = seq_data_iter_sequential(corpus, B, T, rng=random.Random(0))
    return list(itertools.islice(itertools.cycle(book), n)), len(vocab)


def generation_speed(model, num_tokens: int):
    """``run() -> tokens/s`` of ``num_tokens`` greedy ``model.step`` calls, the state and the
    last token carried from one run to the next."""
    carried = {"state": model.begin_state(1), "token": 1}

    def run() -> float:
        state, token = carried["state"], carried["token"]
        start = time.perf_counter()
        for _ in range(num_tokens):
            logits, state = model.step(token, state)
            token = core.greedy(logits)
        seconds = time.perf_counter() - start
        carried.update(state=state, token=token)
        return num_tokens / seconds

    return run


def median_after_warmup(run, repeats: int) -> float:
    """The median of ``repeats`` calls of ``run() -> tokens/s`` after one untimed call
    (compilation, tracing and caches warm up there)."""
    run()
    return statistics.median(run() for _ in range(repeats))


def cost_ratios(rows: list[dict]) -> list[dict]:
    """Per backend, implementation and hidden size with an LSTM and a GRU or RNN row: time
    per token of the LSTM over the other cell's, training and generation, and the analytic
    FLOPs ratio."""
    by_key = {(r["backend"], r["impl"], r["hidden"], r["cell"]): r for r in rows}
    ratios = []
    for (backend, impl, hidden, cell), lstm in by_key.items():
        if cell != "lstm":
            continue
        ratio = {"backend": backend, "impl": impl, "hidden": hidden}
        for other in ("gru", "rnn"):
            if (backend, impl, hidden, other) in by_key:
                row = by_key[backend, impl, hidden, other]
                ratio[other] = (
                    row["train_tokens_per_sec"] / lstm["train_tokens_per_sec"],
                    row["generate_tokens_per_sec"] / lstm["generate_tokens_per_sec"],
                    lstm["train_flops_per_token"] / row["train_flops_per_token"],
                )
        if len(ratio) > 3:
            ratios.append(ratio)
    return ratios


def write_reports(out: Path, rows: list[dict], settings: dict) -> tuple[str, bool]:
    """``bench.csv``, ``bench.md`` and (with matplotlib) ``bench.png`` in ``out``; returns the
    Markdown and whether the plot was written (a plot of an earlier run is removed if not)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "bench.csv", buffer.getvalue())
    report = markdown(rows, settings)
    atomic_write(out / "bench.md", report)
    plotted = _plot(out / "bench.png", rows)
    if not plotted:
        (out / "bench.png").unlink(missing_ok=True)
    return report, plotted


def markdown(rows: list[dict], settings: dict) -> str:
    data = (
        "The Time Machine's characters"
        if settings["data"] == "book"
        else f"random ids over {BOOK_VOCAB_SIZE} tokens"
    )
    lines = [
        "# dl bench",
        "",
        f"Training: {settings['batches']} batches of {settings['batch_size']} x "
        f"{settings['num_steps']} ({data}), SGD with clipping; generation: "
        f"{settings['gen_tokens']} tokens one at a time (batch 1). Median tokens/s of "
        f"{settings['repeats']} timed repeat(s) after a warm-up. FLOPs per token from `dl.flops` "
        "(training = 3 x forward; the one-hot input is a row lookup).",
        "",
        "| backend | impl | device | cell | hidden | params | train MFLOP/token | inference "
        "MFLOP/token | train tokens/s | train GFLOP/s | generate tokens/s | generate GFLOP/s |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['framework']} | {r['impl']} | {r['device']} | {r['cell']} | {r['hidden']} | "
            f"{r['params']:,} | {r['train_flops_per_token'] / 1e6:.3g} | "
            f"{r['inference_flops_per_token'] / 1e6:.3g} | {r['train_tokens_per_sec']:,.0f} | "
            f"{r['train_gflops_per_sec']:.3g} | {r['generate_tokens_per_sec']:,.0f} | "
            f"{r['generate_gflops_per_sec']:.3g} |"
        )
    ratios = cost_ratios(rows)
    if ratios:
        lines += [
            "",
            "## Cost ratios",
            "",
            "Time per token of the LSTM over that of the GRU and of the RNN, measured "
            "(training, generation) and analytic (FLOPs per token of the whole model; the "
            "recurrent products alone give 4/3 and 4).",
            "",
            "| backend | impl | hidden | LSTM/GRU train | LSTM/GRU generate | LSTM/GRU FLOPs | "
            "LSTM/RNN train | LSTM/RNN generate | LSTM/RNN FLOPs |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for ratio in ratios:
            cells = [
                " | ".join(f"{v:.2f}" for v in ratio[other]) if other in ratio else "- | - | -"
                for other in ("gru", "rnn")
            ]
            lines.append(
                f"| {ratio['backend']} | {ratio['impl']} | {ratio['hidden']} | "
                f"{' | '.join(cells)} |"
            )
    return "\n".join(lines) + "\n"


def _plot(path: Path, rows: list[dict]) -> bool:
    """Training and generation tokens/s against hidden size, log-log, one line per cell,
    backend and implementation."""
    if importlib.util.find_spec("matplotlib") is None or not rows:
        return False
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    styles = dict(zip(backends.PREFERENCE, ("-", "--", ":")))
    colors = dict(zip(lm.CELLS, ("tab:blue", "tab:orange", "tab:green")))
    markers = dict(zip(backends.IMPLS, ("o", "s")))
    lines = sorted({(r["backend"], r["impl"], r["cell"]) for r in rows})
    hidden = sorted({r["hidden"] for r in rows})
    for ax, key, title in zip(
        axes,
        ("train_tokens_per_sec", "generate_tokens_per_sec"),
        ("training", "generation (batch 1)"),
    ):
        for backend, impl, cell in lines:
            points = sorted(
                (r["hidden"], r[key])
                for r in rows
                if (r["backend"], r["impl"], r["cell"]) == (backend, impl, cell)
            )
            ax.plot(
                *zip(*points),
                styles[backend],
                color=colors[cell],
                marker=markers[impl],
                label=f"{cell} {backend} {impl}",
            )
        ax.set(xscale="log", yscale="log", xlabel="hidden units", ylabel="tokens/s", title=title)
        ax.set_xticks(hidden, [str(h) for h in hidden], minor=False)
        ax.set_xticks([], minor=True)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write(path, buffer.getvalue())
    return True


def _worker(argv: list[str]) -> int:
    """``python -m dl.cli.bench BACKEND SETTINGS_JSON RESULT_PATH``: measure one backend."""
    backend, settings, result = argv[0], json.loads(argv[1]), Path(argv[2])
    try:
        rows = measure(backend, settings)
    except Exception as err:
        message = user_message(err)
        if message is None:  # a bug: the traceback reaches the parent's RuntimeError
            raise
        print(f"{ERROR}{message}", file=sys.stderr)  # bad input, as `dl` reports it
        return 2
    result.write_text(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
