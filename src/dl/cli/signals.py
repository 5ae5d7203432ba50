"""Ctrl-C (SIGINT) and a scheduler's stop (SIGTERM), at any moment: the command ends with one
line on stderr and exit status 130 or 143, never a traceback; training saves first.

SIGTERM is raised where the program is as :class:`Terminated`, a ``KeyboardInterrupt``, so
every ``except KeyboardInterrupt`` that saves work serves both signals. Inside :func:`polled`
(the training loop) both are only noted, and raised where the loop asks (:func:`check`, between
two updates), so the weights, optimizer state and data position saved are of one step.
"""

from __future__ import annotations

import contextlib
import signal
import sys

from dl.terminated import Terminated, install  # noqa: F401 (install: re-exported)

_noted: list[KeyboardInterrupt] = []  # a signal received inside polled(), not yet raised


def _ignored(sig) -> bool:
    """Whether ``sig`` was ignored when ``dl`` started (``nohup``, a job started in the
    background by a script): such a signal stays ignored, as the user's shell meant."""
    return signal.getsignal(sig) is signal.SIG_IGN


def exit_status(err: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM (128 + the signal's number, as shells report)."""
    return 128 + (signal.SIGTERM if isinstance(err, Terminated) else signal.SIGINT)


def describe(err: KeyboardInterrupt) -> str:
    return "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted (Ctrl-C)"


def run(command) -> int:
    """``command()``'s exit status; an interruption that nothing else handled ends it with one
    line (every file is written whole or not at all, so nothing is left half-written)."""
    try:
        return command()
    except KeyboardInterrupt as err:
        print(f"\ndl: {describe(err)}; stopped, nothing half-written", file=sys.stderr)
        return exit_status(err)


@contextlib.contextmanager
def deferred():
    """Hold SIGINT and SIGTERM back while the block runs (a checkpoint being saved); one that
    arrived meanwhile is raised when it ends."""
    signals = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def polled():
    """Inside the block SIGINT and SIGTERM (unless ignored) are noted, not raised: :func:`check`
    raises the first where the caller is at a clean point; a second signal raises at once (a
    user who presses Ctrl-C twice wants out now)."""

    def note(signum, frame):
        err = Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
        if _noted:
            raise err
        _noted.append(err)

    previous = {
        sig: signal.signal(sig, note)
        for sig in (signal.SIGINT, signal.SIGTERM)
        if not _ignored(sig)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _noted.clear()


def check() -> None:
    """Raise the signal noted inside :func:`polled`, if any."""
    if _noted:
        raise _noted.pop()


def take() -> KeyboardInterrupt | None:
    """The signal noted inside :func:`polled`, if any, no longer noted (to be raised later,
    where every process of a run raises it together)."""
    return _noted.pop() if _noted else None
