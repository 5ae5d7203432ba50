"""The ``dl`` command: ``dl train | generate | eval | sweep | bench | forecast``.

Every error a user can cause (an :class:`~dl.errors.InputError`, or an OS error about one of
the user's files) ends with a one-line message and exit status 2; a failed download with one
line and 1; anything else is a bug in ``dl``: its traceback, a line saying so, and 1. Ctrl-C or
SIGTERM at any moment ends with one line and 130 / 143 (training saves a checkpoint first).
"""

from __future__ import annotations

import argparse
import errno
import sys
import traceback

from dl import __version__
from dl.errors import InputError

COMMANDS = ("train", "generate", "evaluate", "sweep", "forecast", "bench")
# OS errors about a file the user named (``--text``, ``--out``, a run directory) or a disk
# that cannot take a run: the user's to fix, so one line says what happened to which file
USER_FILE_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.ENAMETOOLONG})
BUG_LINE = (
    f"dl: this is a bug in dl {__version__}, not a mistake in your command; please "
    "report it to the dl-rnn maintainers with the command and the traceback above"
)


class Parser(argparse.ArgumentParser):
    """Option errors in one line: the option, what it accepts, and where the rest is."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, but an unknown option is blamed on the command it was given to
        (``dl train: error: unrecognized arguments: --bogus; see `dl train --help```)."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            getattr(parsed, "command_parser", self).error(
                f"unrecognized arguments: {' '.join(extras)}"
            )
        return parsed


def parser() -> argparse.ArgumentParser:
    import importlib

    top = Parser(
        prog="dl",
        description="Recurrent language models from the "
        "LSTM chapter of Dive into Deep Learning, on TensorFlow, "
        "PyTorch or JAX.",
    )
    top.add_argument("--version", action="version", version=f"dl {__version__}")
    subparsers = top.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"dl.cli.{name}").add_parser(subparsers)
    for command in subparsers.choices.values():
        command.set_defaults(command_parser=command)
    return top


def user_message(err: BaseException) -> str | None:
    """The one line that tells the user what to fix, or None if ``err`` is a bug in dl."""
    if isinstance(err, InputError):
        return str(err)
    if (
        isinstance(err, OSError)
        and err.filename is not None
        and (isinstance(err, USER_FILE_ERRORS) or err.errno in DISK_ERRNOS)
    ):
        return f"{err.filename}: {err.strerror}"
    return None


def main(argv: list[str] | None = None) -> int:
    from dl.data.hub import DownloadError

    args = parser().parse_args(argv)
    try:
        return args.command(args)
    except DownloadError as err:  # the network or the server: one line, and how to fetch by hand
        print(f"dl: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        if getattr(err, "reported_elsewhere", False):  # by rank 0, for every process
            return 2
        message = user_message(err)
        if message is None:
            traceback.print_exc()
            print(BUG_LINE, file=sys.stderr)
            return 1
        print(f"dl: error: {message}", file=sys.stderr)
        return 2


from dl.__main__ import entry_point  # noqa: E402  (the target of `dl` scripts installed before)
