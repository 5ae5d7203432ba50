"""The project's own exceptions for mistakes a user can make.

:class:`InputError` is raised where an input is checked, with a message that names the input
and says what to do; it subclasses ``ValueError``, which the book's API promises. The command
line turns it (and OS errors about the user's own files) into one line and exit status 2;
any other exception is a bug in ``dl`` and is reported as one.
"""


class InputError(ValueError):
    """An input (argument, file, option) that ``dl`` cannot use; the message says what to do."""


class MissingDependencyError(InputError, ImportError):
    """An optional package that the input needs is not installed; the message says which extra
    to install. Still an ``ImportError`` for code that catches one."""
