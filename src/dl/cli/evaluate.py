"""``dl eval``: perplexity of a trained model on a text, with the run's tokenizer and
vocabulary; tokens outside the vocabulary count as ``<unk>`` and their number is reported."""

from __future__ import annotations

import argparse
import json

from dl import lm
from dl.cli.saved import add_run_arguments, open_run
from dl.cli.train import load_lines
from dl.data.text import encode
from dl.metrics import perplexity


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval", help="perplexity of a trained model on a text", description=__doc__
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--text", default=None, help="a UTF-8 text file (default: The Time Machine)"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(command=main)


def evaluate_text(model, vocab, settings: dict, path: str | None) -> dict:
    """Perplexity of ``model`` on the text at ``path`` (The Time Machine if None)."""
    lines, source, _ = load_lines(path)
    ids, _ = encode(lines, settings["token"], vocab)
    loss_sum, num_tokens = lm.evaluate(model, ids, settings["batch_size"], settings["num_steps"])
    # the predicted tokens are ids[1:num_tokens + 1] (dl.data.batches.eval_batches)
    unknown = sum(1 for i in ids[1 : num_tokens + 1] if i == vocab.unk)
    return {
        "text": source,
        "perplexity": perplexity(loss_sum, num_tokens),
        "loss": loss_sum / num_tokens,
        "tokens": num_tokens,
        "unknown_tokens": unknown,
        "vocab_size": len(vocab),
    }


def main(args: argparse.Namespace) -> int:
    model, vocab, meta, stem = open_run(args)
    result = evaluate_text(model, vocab, meta["settings"], args.text)
    result.update(checkpoint=f"{stem} (epoch {meta['epoch']})", backend=model.backend)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"perplexity {result['perplexity']:.3f} on {result['tokens']:,} tokens of "
            f"{result['text']} ({result['unknown_tokens']:,} outside the vocabulary of "
            f"{result['vocab_size']:,}, counted as <unk>); {args.run} {result['checkpoint']}, "
            f"{model.backend}"
        )
    return 0
