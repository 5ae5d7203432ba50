"""The book's data hub: named files fetched once, checked by SHA-1 and cached.

Files are cached in the directory named by the environment variable ``DL_DATA_DIR``
when it is set; otherwise in a per-user cache directory (``$XDG_CACHE_HOME/dl`` or
``~/.cache/dl``; ``%LOCALAPPDATA%\\dl`` on Windows). A file already there with the right
SHA-1 is used as is, so pointing ``DL_DATA_DIR`` at a directory holding the files
(for example ``timemachine.txt``) works without network access.

Register a new file with ``DATA_HUB[name] = (url, sha1)``.
"""

import contextlib
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from dl.errors import InputError

DATA_URL = 'http://d2l-data.s3-accelerate.amazonaws.com/'

# name -> (url, sha1 of the file's bytes)
DATA_HUB: dict[str, tuple[str, str]] = {
    'time_machine': (DATA_URL + 'timemachine.txt', '090b5e7e70c295757f55df93cb0a180b9691891a'),
}

_CHUNK = 1 << 16  # bytes read from the network at a time


class DownloadError(OSError):
    """A hub file could not be fetched; the message says where to put it by hand."""


class ChecksumError(DownloadError):
    """The fetched bytes do not have the SHA-1 registered in ``DATA_HUB``."""


def cache_dir() -> Path:
    """Directory for hub files: ``$DL_DATA_DIR``, else the per-user cache directory."""
    override = os.environ.get('DL_DATA_DIR')
    if override:
        return Path(override).expanduser()
    if os.name == 'nt':
        base = os.environ.get('LOCALAPPDATA') or Path.home() / 'AppData' / 'Local'
    else:
        base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'dl'


_default_cache_dir = cache_dir  # `download` has a parameter of the same name


def download(name: str, cache_dir: str | os.PathLike | None = None,
             timeout: float = 30.0) -> Path:
    """Return the local path of hub file `name`, fetching it unless cached intact.

    `cache_dir` defaults to `cache_dir()`; `timeout` (seconds) bounds each network wait.
    Raises InputError for an unknown name, ChecksumError for wrong bytes and
    DownloadError when the file cannot be fetched. A failed fetch leaves no file behind.
    """
    if name not in DATA_HUB:
        raise InputError(f'unknown data hub name {name!r}; known names: '
                         f'{", ".join(sorted(DATA_HUB))}')
    url, sha1 = DATA_HUB[name]
    folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    target = folder / Path(urllib.parse.urlsplit(url).path).name
    if target.is_file() and _sha1_of(target) == sha1:
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=folder, prefix=f'.{target.name}.', suffix='.part')
    try:
        try:
            with os.fdopen(fd, 'wb') as out:
                actual, received, expected_size = _fetch(url, out, timeout)
        except (OSError, http.client.HTTPException) as err:
            raise DownloadError(_by_hand(url, _reason(err), target)) from err
        if expected_size is not None and received != expected_size:
            reason = f'connection closed after {received} of {expected_size} bytes'
            raise DownloadError(_by_hand(url, reason, target))
        if actual != sha1:
            raise ChecksumError(f'wrong content from {url}: expected sha1 {sha1}, '
                                f'got {actual}; nothing was saved')
        os.replace(part, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(part)
    return target


def _fetch(url, out, timeout):
    """Stream `url` into the binary file `out`; return (sha1, bytes read, Content-Length)."""
    digest, received = hashlib.sha1(), 0
    with urllib.request.urlopen(url, timeout=timeout) as response:  # non-2xx raises HTTPError
        length = response.headers.get('Content-Length', '')
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
    return digest.hexdigest(), received, int(length) if length.isdigit() else None


def _sha1_of(path):
    """SHA-1 hex digest of the file at `path`."""
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _reason(err):
    """A short human reason for a network error."""
    if isinstance(err, urllib.error.HTTPError):
        return f'HTTP status {err.code} {err.reason}'
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _by_hand(url, reason, target):
    """Message for a failed fetch that says how to provide the file manually."""
    return (f'could not download {url} ({reason}). Download it by hand and save it as '
            f'{target}, or set the environment variable DL_DATA_DIR to a directory '
            f'that holds {target.name}.')
