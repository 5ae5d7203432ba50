"""``dl sweep``: train over a grid of options (the chapter's exercise 1) and compare.

Options take comma-separated values, e.g. ``dl sweep --hidden 64,128,256 --lr 0.5,1,2
--num-steps 16,35 --epochs 100 --out sweeps/lstm``. Each combination trains in its own run
directory under ``--out``; finished runs are skipped when the sweep runs again and an
interrupted one resumes. Every combination is checked before the first trains, and runs left
by a sweep with other settings or another text are refused. The sweep writes ``sweep.csv``,
``sweep.md`` and ``sweep.png``: per run the running time, tokens/s, final training and
validation perplexity and a sample.
"""

from __future__ import annotations

import argparse
import csv
import io
import itertools
import statistics
from pathlib import Path

from dl import checkpoint
from dl.cli.backends import installed
from dl.cli.options import (
    SWEEPABLE,
    TRAIN_OPTIONS,
    UsageError,
    add_train_options,
    given,
    with_defaults,
)
from dl.cli.rundir import RunDir, locked
from dl.cli.saved import open_model, upgrade
from dl.cli.train import (
    BOOK_PREFIXES,
    RUN_TEXTS,
    TrainingDiverged,
    check_prefixes,
    load_data,
    resolve,
    sample,
    train,
)
from dl.files import atomic_write, make_directory

DIVERGED = "diverged.txt"  # in a run directory: training diverged, with the message
COLUMNS = ("run", "seconds", "tokens_per_sec", "train_perplexity", "val_perplexity", "sample")


DEFAULTS = {"val_fraction": 0.1}  # where a sweep differs from dl train: runs are compared


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="train over a grid of options and compare",
        description="Train over a grid of options (comma-separated values) and compare the runs.",
    )
    add_train_options(parser, lists=True, defaults=DEFAULTS)
    parser.add_argument("--out", type=Path, required=True, help="directory of the sweep")
    parser.add_argument(
        "--prefix",
        default=None,
        help="text the samples continue (default: 'time traveller' on The "
        "Time Machine, else the text's first two words)",
    )
    parser.set_defaults(command=main)


def grid(options: dict) -> list[dict]:
    """Every combination of the list-valued options (the others fixed), in the order given."""
    names = [name for name, value in options.items() if isinstance(value, list)]
    combos = itertools.product(*(options[name] for name in names))
    return [{**options, **dict(zip(names, combo))} for combo in combos]


def run_name(settings: dict, varying: list[str]) -> str:
    return (
        ",".join(
            f"{name}={settings[name]:g}"
            if isinstance(settings[name], float)
            else f"{name}={settings[name]}"
            for name in varying
        )
        or "run"
    )


def main(args: argparse.Namespace) -> int:
    options = given(args)
    for dest, value in DEFAULTS.items():
        options.setdefault(dest, [value])
    for option in SWEEPABLE:
        values = options.get(option.dest, [])
        if len(set(values)) < len(values):
            raise UsageError(
                f"{option.flag} {','.join(map(str, values))} repeats a value; give each value once"
            )
    varying = [o.dest for o in SWEEPABLE if len(options.get(o.dest, [None])) > 1]
    options = {
        k: (v if k in varying else v[0]) if isinstance(v, list) else v for k, v in options.items()
    }
    runs = grid(options)
    with locked(args.out, "dl sweep"):
        return _sweep(args, runs, varying)


def check_grid(runs: list[dict], names: list[str], out: Path, prefix: str | None) -> None:
    """Refuse the sweep before anything trains if one combination cannot train (its options,
    its text, ``prefix``) or its run directory holds a run of other settings or another
    text."""
    texts = {}
    for settings, name in zip(runs, names):
        try:
            resolved = resolve(settings)
            key = tuple(
                resolved[k]
                for k in (*RUN_TEXTS, "token", "max_tokens", "min_freq", "max_vocab")
                + ("val_fraction", "test_fraction")
            )
            if key not in texts:
                texts[key] = load_data(resolved)
            data = texts[key]
            if prefix is not None:
                check_prefixes([prefix], data.tokenizer)
        except ValueError as err:
            raise UsageError(f"run {name} of the sweep cannot train: {err}") from None
        _check_existing(out / name, resolved, data)


def _check_existing(run: Path, wanted: dict, data) -> None:
    """Refuse a run directory holding a run of other model settings or another text."""
    if not checkpoint.exists(run):
        return
    meta = upgrade(checkpoint.load(run)[1])
    differ = [
        o.flag
        for o in TRAIN_OPTIONS
        if o.model
        and wanted[o.dest] is not None
        and meta["settings"].get(o.dest, o.default) != wanted[o.dest]
    ]
    if meta["data"]["sha256"] != data.sha256:
        differ.append(f"--text (it has {meta['data']['source']}, the sweep {data.source})")
    if differ:
        raise UsageError(
            f"{run} was trained with other {', '.join(differ)} than this sweep "
            "asks for; give the sweep a new --out"
        )


def _sweep(args, runs: list[dict], varying: list[str]) -> int:
    names = [run_name(settings, varying) for settings in runs]
    check_grid(runs, names, args.out, args.prefix)
    rows = []
    for number, (settings, name) in enumerate(zip(runs, names), 1):
        run = args.out / name
        try:
            status = _train_or_skip(settings, run)
        except TrainingDiverged as err:  # recorded, and not trained again on a re-run
            atomic_write(run / DIVERGED, str(err) + "\n")
            status = 0
        if status in (130, 143):
            print(f"sweep interrupted in {name}; run it again to resume", flush=True)
            break
        rows.append(
            _diverged(name) if (run / DIVERGED).exists() else _summary(run, name, args.prefix)
        )
        print(f"[{number}/{len(runs)}] {name}: {_describe(rows[-1])}", flush=True)
    write_reports(args.out, rows, varying)
    print(f"wrote {args.out / 'sweep.md'}, sweep.csv and sweep.png", flush=True)
    return status if len(rows) < len(runs) else 0


def _train_or_skip(settings: dict, run: Path) -> int:
    """Train the run, resume it if it was cut short, or leave it if it finished (or diverged);
    :func:`check_grid` has checked that it is this sweep's."""
    if (run / DIVERGED).exists():
        return 0
    make_directory(run)  # kept if the run diverges: it records why
    if checkpoint.exists(run):
        meta = checkpoint.load(run)[1]
        if meta["finished"] and meta["settings"]["epochs"] >= with_defaults(settings)["epochs"]:
            return 0
        return train(settings, run, resume=True, quiet=True)
    return train(settings, run, quiet=True)


def _diverged(name: str) -> dict:
    nan = float("nan")
    return {
        "run": name,
        "seconds": nan,
        "tokens_per_sec": nan,
        "train_perplexity": float("inf"),
        "val_perplexity": None,
        "sample": "(diverged: see diverged.txt)",
    }


def _summary(run: Path, name: str, prefix: str | None) -> dict:
    backend = checkpoint.load(run)[1]["backend"]  # the framework that trained it is loaded
    model, tokenizer, meta, _ = open_model(
        run, "model", backend if backend in installed() else None
    )
    records = RunDir(run).read_metrics()
    if prefix is None:
        prefix = meta.get("prefixes", BOOK_PREFIXES)[0]
    return {
        "run": name,
        "seconds": meta["seconds"],
        "tokens_per_sec": statistics.median(r["tokens_per_sec"] for r in records),
        "train_perplexity": meta["train_perplexity"],
        "val_perplexity": meta["val_perplexity"],
        "sample": sample(model, tokenizer, prefix),
    }


def _describe(row: dict) -> str:
    if row["train_perplexity"] == float("inf"):
        return row["sample"]
    val = f" (validation {row['val_perplexity']:.2f})" if row["val_perplexity"] else ""
    return (
        f"perplexity {row['train_perplexity']:.2f}{val}, {row['seconds']:.1f} s, "
        f"{row['tokens_per_sec']:,.0f} tokens/s"
    )


def write_reports(out: Path, rows: list[dict], varying: list[str]) -> None:
    """``sweep.csv``, ``sweep.md`` and (with matplotlib) ``sweep.png`` in ``out``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "sweep.csv", buffer.getvalue())
    lines = [
        "| run | seconds | tokens/s | train ppl | val ppl | sample |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        val = f"{r['val_perplexity']:.2f}" if r["val_perplexity"] else "-"
        lines.append(
            f"| {r['run']} | {r['seconds']:.1f} | {r['tokens_per_sec']:,.0f} | "
            f"{r['train_perplexity']:.2f} | {val} | `{r['sample']}` |"
        )
    atomic_write(out / "sweep.md", "\n".join(lines) + "\n")
    _plot(out / "sweep.png", rows, varying)


def _plot(path: Path, rows: list[dict], varying: list[str]) -> None:
    """Per varying option: final perplexity and running time against its values."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None or not rows:
        return
    from matplotlib.figure import Figure

    rows = [r for r in rows if r["train_perplexity"] != float("inf")]  # diverged: no point
    if not rows:
        return
    names = varying or ["run"]
    fig = Figure(figsize=(3.2 * len(names), 5))
    axes = fig.subplots(2, len(names), squeeze=False)
    key = "val_perplexity" if rows[0]["val_perplexity"] else "train_perplexity"
    for column, name in enumerate(names):
        values = [
            dict(part.split("=") for part in r["run"].split(",")).get(name, r["run"])
            if varying
            else r["run"]
            for r in rows
        ]
        for row, (metric, label) in enumerate(
            ((key, key.replace("_", " ")), ("seconds", "seconds"))
        ):
            ax = axes[row][column]
            ax.scatter(values, [r[metric] for r in rows], alpha=0.7)
            ax.set_xlabel(name)
            ax.set_ylabel(label)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write(path, buffer.getvalue())
