"""``dl generate``: continue a prefix with a trained model, greedily (as the book) or by
sampling with a temperature and top-k, reproducibly for a seed. The prefix, given inline or in
a file, is read with the run's own tokenizer (``char`` and ``byte`` runs take it exactly as it
is) and the continuation written back with it."""

from __future__ import annotations

import argparse
import sys

from dl import lm
from dl import train as core
from dl.cli.options import count, positive_float, positive_int
from dl.cli.saved import add_run_arguments, open_run
from dl.cli.train import BOOK_PREFIXES, check_prefixes, sample
from dl.data.text import read_text_file


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="continue a prefix with a trained model", description=__doc__
    )
    add_run_arguments(parser)
    prefix = parser.add_mutually_exclusive_group()
    prefix.add_argument(
        "--prefix",
        default=None,
        help="text to continue (default: the run's first sample prefix, 'time traveller' "
        "on The Time Machine)",
    )
    prefix.add_argument(
        "--prefix-file", default=None, help="a file whose text to continue, exactly as it is"
    )
    parser.add_argument("--num", type=count, default=50, help="tokens to generate (default 50)")
    parser.add_argument(
        "--temperature",
        type=positive_float,
        default=None,
        help="sample from softmax(logits / T) instead of taking the most likely",
    )
    parser.add_argument(
        "--top-k",
        type=positive_int,
        default=None,
        help="sample among the K most likely tokens only",
    )
    parser.add_argument("--seed", type=count, default=None, help="seed of the sampling")
    parser.set_defaults(command=main)


def main(args: argparse.Namespace) -> int:
    model, tokenizer, meta, _ = open_run(args)
    option, prefix = "--prefix", args.prefix
    if args.prefix_file is not None:
        option = f"--prefix-file {args.prefix_file}:"
        prefix = read_text_file(args.prefix_file, binary=tokenizer.kind == "byte")
    elif prefix is None:
        prefix = meta.get("prefixes", BOOK_PREFIXES)[0]
    check_prefixes([prefix], tokenizer, option)
    choose = core.greedy
    if args.temperature is not None or args.top_k is not None or args.seed is not None:
        choose = lm.sampler(args.temperature or 1.0, args.top_k, args.seed)
    sys.stdout.write(sample(model, tokenizer, prefix, args.num, choose) + "\n")
    return 0
