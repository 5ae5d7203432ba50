"""``dl eval``: a trained model's loss (nats per token), perplexity and, for character and byte
models, bits per character or byte on a text, read with the run's own tokenizer; tokens
outside the vocabulary count as ``<unk>`` and their number is reported."""

from __future__ import annotations

import argparse
import json

from dl import lm
from dl.cli.saved import add_run_arguments, open_run
from dl.cli.train import UsageError, describe
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
        "--text", default=None, help="a UTF-8 text file (default: The Time Machine)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(command=main)


def evaluate_text(model, tokenizer, settings: dict, path: str | None) -> dict:
    """The figures of ``model`` on the text at ``path`` (The Time Machine if None)."""
    text = corpus.TextFile.open(path, binary=tokenizer.kind == "byte")
    ids = corpus.encoded(text.read, text.sha256, tokenizer)
    try:
        loss_sum, num_tokens = lm.evaluate(
            model, ids, settings["batch_size"], settings["num_steps"]
        )
    except InputError as err:
        raise UsageError(f"--text {text.source}: {err}") from None
    # the predicted tokens are ids[1:num_tokens + 1] (dl.data.batches.eval_batches)
    unknown = int((ids[1 : num_tokens + 1] == tokenizer.unk).sum())
    return {
        "text": text.source,
        **text_figures(loss_sum, num_tokens, tokenizer.bits_per),
        "tokens": num_tokens,
        "unknown_tokens": unknown,
        "vocab_size": len(tokenizer),
        "token": tokenizer.kind,
    }


def main(args: argparse.Namespace) -> int:
    model, tokenizer, meta, stem = open_run(args)
    result = evaluate_text(model, tokenizer, meta["settings"], args.text)
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
