"""``python -m dl`` and the ``dl`` command (``dl.__main__:entry_point``).

Nothing but :mod:`sys` and :mod:`dl.terminated` (which imports only :mod:`signal`) is
imported before the command's handling of an interruption is in place, so Ctrl-C or SIGTERM
while ``dl`` itself starts up ends with the same one line and 130 or 143 as later.
"""

import sys

from dl.terminated import Terminated, install


def entry_point() -> None:
    install()
    try:
        from dl.cli import main, signals
    except KeyboardInterrupt as err:  # while the command line's modules import
        term = isinstance(err, Terminated)
        what = "terminated (SIGTERM)" if term else "interrupted (Ctrl-C)"
        print(f"\ndl: {what}; stopped, nothing half-written", file=sys.stderr)
        sys.exit(143 if term else 130)
    sys.exit(signals.run(main))


if __name__ == "__main__":
    entry_point()
