"""The book's data hub: named files fetched once, checked by SHA-1 and cached.

Files are cached in the directory named by the environment variable ``DL_DATA_DIR``
when it is set; otherwise in a per-user cache directory (``$XDG_CACHE_HOME/dl`` or
``~/.cache/dl``; ``%LOCALAPPDATA%\\dl`` on Windows). A file already there with the right
SHA-1 is used as is, so pointing ``DL_DATA_DIR`` at a directory holding the files
(for example ``timemachine.txt``) works without network access.

Register a new file with ``DATA_HUB[name] = (url, sha1)``. The environment variable
``DL_DATA_HUB`` may name a JSON file ``{"name": ["url", "sha1"], ...}`` whose entries take the
place of those in ``DATA_HUB`` (even of entries a script registers itself): a mirror, or a
copy of your own, for machines that cannot reach the book's server.

Archives (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``) are unpacked
by :func:`download_extract`.
"""

import contextlib
import hashlib
import http.client
import json
import lzma
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

from dl.errors import InputError
from dl.files import user_cache_dir

DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/"

# name -> (url, sha1 of the file's bytes)
DATA_HUB: dict[str, tuple[str, str]] = {
    "time_machine": (DATA_URL + "timemachine.txt", "090b5e7e70c295757f55df93cb0a180b9691891a"),
    "fra-eng": (DATA_URL + "fra-eng.zip", "94646ad1522d915e7b0f9296181140edcf86a4f5"),
}

_CHUNK = 1 << 16  # bytes read from the network at a time


class DownloadError(OSError):
    """A hub file could not be fetched; the message says where to put it by hand."""


class ChecksumError(DownloadError):
    """The fetched bytes do not have the SHA-1 registered in ``DATA_HUB``."""


class ArchiveError(DownloadError):
    """A hub file with the registered SHA-1 could not be unpacked."""


def cache_dir() -> Path:
    """Directory for hub files: ``$DL_DATA_DIR``, else the per-user cache directory."""
    override = os.environ.get("DL_DATA_DIR")
    return Path(override).expanduser() if override else user_cache_dir()


_default_cache_dir = cache_dir  # `download` has a parameter of the same name


def download(name: str, cache_dir: str | os.PathLike | None = None, timeout: float = 30.0) -> Path:
    """Return the local path of hub file `name`, fetching it unless cached intact.

    `cache_dir` defaults to `cache_dir()`; `timeout` (seconds) bounds each network wait.
    Raises InputError for an unknown name, ChecksumError for wrong bytes and
    DownloadError when the file cannot be fetched. A failed fetch leaves no file behind.
    """
    url, sha1 = _entry(name)
    folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    target = folder / Path(urllib.parse.urlsplit(url).path).name
    if target.is_file() and _sha1_of(target) == sha1:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".part")
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                actual, received, expected_size = _fetch(url, out, timeout)
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(_by_hand(url, _reason(err), target)) from err
        if expected_size is not None and received != expected_size:
            reason = f"connection closed after {received} of {expected_size} bytes"
            raise DownloadError(_by_hand(url, reason, target))
        if actual != sha1:
            raise ChecksumError(
                f"wrong content from {url}: expected sha1 {sha1}, got {actual}; nothing was saved"
            )
        os.replace(part, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(part)
    return target


def _entry(name):
    """``(url, sha1)`` of hub file `name`: from ``$DL_DATA_HUB`` if it has one, else
    ``DATA_HUB``."""
    hub = {**DATA_HUB, **_mirror_entries()}
    if name not in hub:
        raise InputError(
            f"unknown data hub name {name!r}; known names: "
            f"{', '.join(sorted(hub))}; register it with "
            f"DATA_HUB[{name!r}] = (url, sha1)"
        )
    return tuple(hub[name])


def _mirror_entries():
    """The entries of the JSON file named by ``$DL_DATA_HUB`` (none when it is unset)."""
    path = os.environ.get("DL_DATA_HUB")
    if not path:
        return {}
    try:
        entries = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(
            f"DL_DATA_HUB={path}: cannot read it as JSON ({err}); give a JSON "
            'file {"name": ["url", "sha1"], ...} or unset the variable'
        ) from err
    if not isinstance(entries, dict) or not all(
        isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
        for v in entries.values()
    ):
        raise InputError(f'DL_DATA_HUB={path}: every entry must be "name": ["url", "sha1"]')
    return entries


ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz")


def download_extract(name: str, folder: str | None = None) -> Path:
    """Fetch hub archive `name` (as :func:`download`) and unpack it into the data directory.

    Returns ``folder`` inside the data directory when given, else the archive's path without
    its last suffix (``fra-eng.zip`` -> ``fra-eng``), as the book's ``download_extract``.
    The archive is unpacked into a temporary directory, then moved into place by one rename:
    its single top-level entry under its own name, or, when it has several, all of them as
    the directory named after the archive. An earlier copy is replaced. Raises InputError for
    a name that is not a zip or tar archive and ArchiveError for one that cannot be unpacked;
    either way nothing is left behind.
    """
    archive = download(name)
    if archive.suffix not in ARCHIVE_SUFFIXES:
        raise InputError(
            f"{archive.name}: only zip and tar archives ({', '.join(ARCHIVE_SUFFIXES)}) "
            f"can be extracted; use download({name!r}) for other files"
        )
    base_dir = archive.parent
    data_dir = archive.with_suffix("")
    staging = Path(tempfile.mkdtemp(dir=base_dir, prefix=f".{archive.name}.", suffix=".extract"))
    try:
        unpacked = staging / "unpacked"
        _unpack(archive, unpacked)
        entries = list(unpacked.iterdir())
        source, target = (
            (entries[0], base_dir / entries[0].name) if len(entries) == 1 else (unpacked, data_dir)
        )
        if target.exists() or target.is_symlink():
            os.rename(target, staging / "replaced")
        os.rename(source, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return base_dir / folder if folder else data_dir


def _unpack(archive, destination):
    """Unpack the zip or tar file `archive` into the new directory `destination`."""
    try:
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(destination)  # drops '..' and absolute parts of names
        else:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            with tarfile.open(archive) as tarred:
                tarred.extractall(destination, **safe)
        destination.mkdir(exist_ok=True)  # an empty archive
    except (
        zipfile.BadZipFile,
        tarfile.TarError,
        zlib.error,
        lzma.LZMAError,
        EOFError,
        OSError,
        ValueError,
    ) as err:
        raise ArchiveError(
            f"{archive}: cannot unpack it ({_reason(err)}); nothing was "
            "extracted. Delete the file and check the URL and sha1 registered "
            "for it in DATA_HUB"
        ) from err


def _fetch(url, out, timeout):
    """Stream `url` into the binary file `out`; return (sha1, bytes read, Content-Length)."""
    digest, received = hashlib.sha1(), 0
    with urllib.request.urlopen(url, timeout=timeout) as response:  # non-2xx raises HTTPError
        length = response.headers.get("Content-Length", "")
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
    return digest.hexdigest(), received, int(length) if length.isdigit() else None


def _sha1_of(path):
    """SHA-1 hex digest of the file at `path`."""
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _reason(err):
    """A short human reason for a network error."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP status {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _by_hand(url, reason, target):
    """Message for a failed fetch that says how to provide the file manually."""
    return (
        f"could not download {url} ({reason}). Download it by hand and save it as "
        f"{target}, or set the environment variable DL_DATA_DIR to a directory "
        f"that holds {target.name}."
    )
