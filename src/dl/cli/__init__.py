"""The ``dl`` command: ``dl train | generate | eval | sweep | bench | forecast``.

Every error a user can cause ends with a one-line message and exit status 2; Ctrl-C or
SIGTERM at any moment ends with one line and 130 / 143 (training saves a checkpoint first).
"""

from __future__ import annotations

import argparse
import sys

from dl import __version__

COMMANDS = ("train", "generate", "evaluate", "sweep", "forecast", "bench")


class Parser(argparse.ArgumentParser):
    """Option errors in one line: the option, what it accepts, and where the rest is."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def parser() -> argparse.ArgumentParser:
    import importlib

    top = Parser(prog="dl", description="Recurrent language models from the "
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
    from dl.cli import signals

    signals.install()
    sys.exit(signals.run(main))
