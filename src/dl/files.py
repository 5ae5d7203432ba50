"""Atomic file writes: a reader sees the old file or the new one, never half of either; a
write that the system refuses raises :class:`WriteError`, saying what to do."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from dl.errors import InputError

# errno -> what it means for the user and what to do about it
_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space (or choose an --out on another disk) "
    "and run the command again",
    errno.EDQUOT: "your disk quota is used up; free some space and run the command again",
    errno.EACCES: "permission denied; choose a directory you can write to, or change its "
    "permissions",
    errno.EPERM: "permission denied; choose a directory you can write to, or change its "
    "permissions",
    errno.EROFS: "the file system is read-only; choose a directory on a writable disk",
    errno.ENOTDIR: "a part of the path is a file, not a directory; choose another path",
    errno.EEXIST: "a file of that name is in the way; remove it or choose another path",
    errno.EISDIR: "a directory of that name is in the way; remove it or choose another path",
    errno.ENAMETOOLONG: "the path is too long; choose a shorter one",
    errno.EIO: "the disk reported an input/output error; check the disk",
    errno.ENOENT: "its directory does not exist; create it or choose another path",
}


class WriteError(InputError, OSError):
    """A file could not be written; the message names it and says what to do."""


_WRITE_ERRORS: dict[type, type] = {}  # OSError subclass -> WriteError of that kind too


def explain(err: OSError, path: str | os.PathLike, doing: str = "write") -> WriteError:
    """``err`` as one line of advice naming ``path``: ``cannot write P: the disk is full; ...``.
    The result is also of ``err``'s own type (``FileNotFoundError``, ``PermissionError``, ...)
    with its ``errno``, so code that catches those still does."""
    advice = _ADVICE.get(err.errno, f"{err.strerror or err}; check the path and the disk")
    kind = type(err)
    if kind not in _WRITE_ERRORS:
        _WRITE_ERRORS[kind] = type(f"WriteError({kind.__name__})", (WriteError, kind), {})
    error = _WRITE_ERRORS[kind](f"cannot {doing} {path}: {advice}")
    error.errno = err.errno
    return error


def make_directory(path: str | os.PathLike, option: str = "--out") -> Path:
    """Create the directory ``path`` (with its parents) or raise :class:`WriteError`."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise WriteError(f"{option} {path} is a file; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise explain(err, path, "create the directory") from None
    return path


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, flushed to disk
    and renamed over ``path``; on any failure the old file stays and no temporary is left.
    Raises :class:`WriteError` (naming ``path``) when the system refuses the write."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    try:
        _write_and_rename(path, data)
    except OSError as err:
        raise explain(err, path) from None


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append ``line`` and a newline to ``path``, flushed to disk; a last line left without its
    newline (cut by a crash) is ended first, so the new line stands alone.
    Raises :class:`WriteError` when the system refuses the write."""
    path = Path(path)
    try:
        with open(path, "ab+") as f:
            f.seek(0, os.SEEK_END)
            cut = False
            if f.tell():
                f.seek(-1, os.SEEK_END)
                cut = f.read(1) != b"\n"
            write(f, (("\n" if cut else "") + line + "\n").encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise explain(err, path) from None


def _write_and_rename(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and err.errno is not None and err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from err  # name the file written
        raise


def write(f, data: bytes) -> None:
    """``f.write(data)``: the one place a file's bytes go out (tests inject a full disk here)."""
    f.write(data)


def remove_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of :func:`atomic_write` left in ``directory`` by a killed
    process (only its owner may call this); returns those removed."""
    left = sorted(Path(directory).glob(".*.tmp"))
    for tmp in left:
        tmp.unlink(missing_ok=True)
    return left


def _mode_for(path: Path) -> int:
    """The mode ``path`` has, or that a new file gets under the umask (not mkstemp's 0600)."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def user_cache_dir() -> Path:
    """The per-user cache directory of dl: ``$XDG_CACHE_HOME/dl`` (``~/.cache/dl``), on
    Windows ``%LOCALAPPDATA%/dl``."""
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dl"
