"""SIGTERM as an exception: :class:`Terminated`, a ``KeyboardInterrupt``, raised by the
handler :func:`terminate`. Imports nothing (``dl``'s ``__init__`` is one line too), so ``dl``'s
entry point installs the handler before any other import; :mod:`dl.cli.signals` is the rest of
the signal handling and exports :class:`Terminated` too."""


class Terminated(KeyboardInterrupt):
    """The process received SIGTERM."""


def terminate(signum, frame):
    """The SIGTERM handler: raise :class:`Terminated` where the program is."""
    raise Terminated
