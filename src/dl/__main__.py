"""``python -m dl`` and the ``dl`` command (``dl.__main__:entry_point``).

Nothing but :mod:`sys` is imported before the command's handling of an interruption is in
place, so Ctrl-C while ``dl`` itself starts up ends with the same one line and 130 as later.
"""

import sys


def entry_point() -> None:
    try:
        from dl.cli import main, signals
    except KeyboardInterrupt:  # while the command line's modules import
        print("\ndl: interrupted (Ctrl-C); stopped, nothing half-written", file=sys.stderr)
        sys.exit(130)
    signals.install()
    sys.exit(signals.run(main))


if __name__ == "__main__":
    entry_point()
