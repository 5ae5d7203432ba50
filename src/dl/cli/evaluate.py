"""``dl eval``: a trained model's loss (nats per token), perplexity and, for character and byte
models, bits per character or byte on a text, read with the run's own tokenizer; tokens
outside the vocabulary count as ``<unk>`` and their number is reported. Without ``--text``,
on the run's own held-out text: its test part, else its validation part."""

from __future__ import annotations

import argparse
import json

import numpy as np

from dl import lm
from dl.cli.options import with_defaults
from dl.cli.saved import add_run_arguments, open_run
from dl.cli.train import RUN_TEXTS, UsageError, check_same_texts, describe, load_data, stored_text
from dl.data import corpus
from dl.errors import InputError
from dl.metrics import text_figures


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="loss, perplexity and bits per character of a trained model on a text",
        description=__doc__,
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--text",
        default=None,
        help="a UTF-8 text file (default: the run's held-out text, its test part, else its "
        "validation part)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(command=main)


def held_out(run, meta: dict, tokenizer) -> tuple[np.ndarray, str]:
    """``(ids, name)``: the ``(N,)`` ids of the run's test part, else of its validation part,
    read again from the run's texts (refused if they changed since) under its settings."""
    settings = {**with_defaults({}), **meta["settings"]}
    for dest in RUN_TEXTS:
        settings[dest] = stored_text(run, meta, dest, settings.get(dest), "dl eval")
    data = load_data(settings, tokenizer)
    check_same_texts(run, data, meta["data"], "dl eval")
    for part, ids, dest in (("test", data.test, "test_text"), ("validation", data.val, "val_text")):
        if len(ids):
            source = data.texts[dest].source if dest in data.texts else data.source
            return ids, f"the {part} part of {source}"
    raise UsageError(
        f"dl eval: {run} held out no text (--val-fraction and --test-fraction 0); give --text "
        "FILE to evaluate on"
    )


def evaluate_text(model, tokenizer, settings: dict, ids: np.ndarray, source: str) -> dict:
    """The figures of ``model`` on the ``(N,)`` token ids ``ids`` of text ``source``."""
    try:
        loss_sum, num_tokens = lm.evaluate(
            model, ids, settings["batch_size"], settings["num_steps"]
        )
    except InputError as err:
        raise UsageError(f"--text {source}: {err}") from None
    # the predicted tokens are ids[1:num_tokens + 1] (dl.data.batches.eval_batches)
    unknown = int((ids[1 : num_tokens + 1] == tokenizer.unk).sum())
    return {
        "text": source,
        **text_figures(loss_sum, num_tokens, tokenizer.bits_per),
        "tokens": num_tokens,
        "unknown_tokens": unknown,
        "vocab_size": len(tokenizer),
        "token": tokenizer.kind,
    }


def main(args: argparse.Namespace) -> int:
    model, tokenizer, meta, stem = open_run(args)
    if args.text is None:
        ids, source = held_out(args.run, meta, tokenizer)
    else:
        text = corpus.TextFile.open(args.text, binary=tokenizer.kind == "byte")
        ids, source = corpus.encoded(text.read, text.sha256, tokenizer), text.source
    result = evaluate_text(model, tokenizer, meta["settings"], ids, source)
    result.update(checkpoint=f"{stem} (epoch {meta['epoch']})", backend=model.backend)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{describe(result, tokenizer.bits_per)} on {result['tokens']:,} tokens of "
        f"{result['text']} ({result['unknown_tokens']:,} outside the vocabulary of "
        f"{result['vocab_size']:,}, counted as <unk>); {args.run} {result['checkpoint']}, "
        f"{model.backend}"
    )
    return 0
