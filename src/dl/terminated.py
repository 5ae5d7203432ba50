"""SIGTERM as an exception: :class:`Terminated`, a ``KeyboardInterrupt``, raised by the
handler :func:`terminate` that :func:`install` puts in place. Imports only :mod:`signal`
(``dl``'s ``__init__`` is one line too), so ``dl``'s entry point installs the handler before
any other import; :mod:`dl.cli.signals` is the rest of the signal handling and exports
:class:`Terminated` and :func:`install` too."""

import signal


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


def terminate(signum, frame):
    """The SIGTERM handler: raise :class:`Terminated` where the program is."""
    raise Terminated


def install() -> None:
    """Make SIGTERM raise :class:`Terminated`, unless it was ignored when ``dl`` started
    (``nohup``, a script's background job): such an ignore stays, as the user's shell meant
    (SIGINT raises ``KeyboardInterrupt`` already)."""
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN:
        signal.signal(signal.SIGTERM, terminate)
