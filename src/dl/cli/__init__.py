"""The ``dl`` command: ``dl train | generate | eval | sweep | bench | forecast``.

Every error a user can cause ends with a one-line message and exit status 2; Ctrl-C during
training saves a checkpoint and exits with 130.
"""

from __future__ import annotations

import argparse
import sys

from dl import __version__

COMMANDS = ("train", "generate", "evaluate", "sweep", "forecast", "bench")


def parser() -> argparse.ArgumentParser:
    import importlib

    top = argparse.ArgumentParser(prog="dl", description="Recurrent language models from the "
                                  "LSTM chapter of Dive into Deep Learning, on TensorFlow, "
                                  "PyTorch or JAX.")
    top.add_argument("--version", action="version", version=f"dl {__version__}")
    subparsers = top.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"dl.cli.{name}").add_parser(subparsers)
    return top


def main(argv: list[str] | None = None) -> int:
    from dl.data.hub import DownloadError

    args = parser().parse_args(argv)
    try:
        return args.command(args)
    except DownloadError as err:
        print(f"dl: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as err:  # bad input: every such message says what to do
        print(f"dl: error: {err}", file=sys.stderr)
        return 2


def entry_point() -> None:
    sys.exit(main())
