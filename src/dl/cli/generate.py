"""``dl generate``: continue a prefix with a trained model, greedily (as the book) or by
sampling with a temperature and top-k, reproducibly for a seed."""

from __future__ import annotations

import argparse

from dl import lm
from dl import train as core
from dl.cli.options import count, positive_float, positive_int
from dl.cli.saved import add_run_arguments, open_run
from dl.cli.train import check_prefixes, sample


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "generate", help="continue a prefix with a trained model", description=__doc__
    )
    add_run_arguments(parser)
    parser.add_argument("--prefix", default="time traveller", help="text to continue")
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
    model, vocab, meta, _ = open_run(args)
    check_prefixes([args.prefix], vocab, meta["settings"]["token"])
    choose = core.greedy
    if args.temperature is not None or args.top_k is not None or args.seed is not None:
        choose = lm.sampler(args.temperature or 1.0, args.top_k, args.seed)
    print(sample(model, vocab, args.prefix, meta["settings"]["token"], args.num, choose))
    return 0
