"""``python -m dl``: the ``dl`` command."""

from dl.cli import entry_point

entry_point()
