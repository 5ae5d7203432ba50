"""Tests for dl.data.hub against a real HTTP server on 127.0.0.1."""

import hashlib
import io
import json
import os
import socket
import tarfile
import threading
import urllib.request
import zipfile
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from dl.data import hub
from dl.data.hub import (
    DATA_HUB,
    ArchiveError,
    ChecksumError,
    DownloadError,
    cache_dir,
    download,
    download_extract,
)
from dl.errors import InputError

BODY = b"It was the time traveller, as we shall call him.\n" * 50
BODY_SHA1 = hashlib.sha1(BODY).hexdigest()
STALL_S = 2.0  # how long a stalling handler waits; the client's timeout is 0.5 s
TIME_MACHINE_SHA1 = DATA_HUB["time_machine"][1]


class _Handler(BaseHTTPRequestHandler):
    """Answers GET with the route the test registered for the path (404 otherwise)."""

    def do_GET(self):
        self.server.hits[self.path] += 1
        self.server.routes.get(self.path, _not_found)(self)

    def log_message(self, *args):
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a handler still sleeping never blocks shutdown

    def handle_error(self, request, client_address):
        pass  # clients that gave up (timeouts) make handlers fail to write; expected


def _not_found(handler):
    handler.send_error(404)


def _send(body, declared_size=None):
    """Route: 200 with `body`, announcing `declared_size` bytes (default: the truth)."""

    def respond(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(declared_size or len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return respond


def _stall_before_headers(handler):
    handler.server.release.wait(STALL_S)
    _send(BODY)(handler)


def _stall_after_headers(handler):
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(BODY)))
    handler.end_headers()
    handler.wfile.flush()
    handler.server.release.wait(STALL_S)
    handler.wfile.write(BODY)


def _cut_mid_transfer(handler):
    _send(BODY[:100], declared_size=1000)(handler)
    handler.wfile.flush()
    handler.connection.shutdown(socket.SHUT_RDWR)
    handler.close_connection = True


@pytest.fixture
def server():
    """A live server on 127.0.0.1: set `routes[path] = respond`, read `hits[path]`."""
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.routes, srv.hits, srv.release = {}, Counter(), threading.Event()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    """No proxy for 127.0.0.1 and no data directory inherited from the caller."""
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")
    monkeypatch.delenv("DL_DATA_DIR", raising=False)


@pytest.fixture
def register(monkeypatch, server):
    """Serve `respond` at /<filename> and add it to DATA_HUB as 'test_file'; return the URL."""

    def add(respond, filename="file.txt", sha1=BODY_SHA1):
        server.routes[f"/{filename}"] = respond
        url = f"{server.url}/{filename}"
        monkeypatch.setitem(DATA_HUB, "test_file", (url, sha1))
        return url

    return add


def test_download_fetches_file_and_creates_cache_dir(register, tmp_path):
    register(_send(BODY))
    folder = tmp_path / "a" / "b"
    path = download("test_file", cache_dir=folder)
    assert path == folder / "file.txt"
    assert path.read_bytes() == BODY
    assert os.listdir(folder) == ["file.txt"]


def test_second_download_uses_cache(register, server, tmp_path):
    register(_send(BODY))
    first = download("test_file", cache_dir=tmp_path)
    second = download("test_file", cache_dir=str(tmp_path))
    assert first == second
    assert server.hits["/file.txt"] == 1


def test_corrupt_cached_file_is_replaced(register, server, tmp_path):
    register(_send(BODY))
    (tmp_path / "file.txt").write_bytes(b"stale")
    path = download("test_file", cache_dir=tmp_path)
    assert path.read_bytes() == BODY
    assert server.hits["/file.txt"] == 1
    assert os.listdir(tmp_path) == ["file.txt"]


def test_wrong_content_raises_checksum_error_and_saves_nothing(register, tmp_path):
    wrong = b"not the file you registered"
    url = register(_send(wrong))
    with pytest.raises(ChecksumError) as excinfo:
        download("test_file", cache_dir=tmp_path)
    message = str(excinfo.value)
    assert url in message
    assert BODY_SHA1 in message
    assert hashlib.sha1(wrong).hexdigest() in message
    assert isinstance(excinfo.value, DownloadError) and isinstance(excinfo.value, OSError)
    assert os.listdir(tmp_path) == []


def test_http_404_raises_download_error(register, tmp_path):
    url = register(_not_found)
    with pytest.raises(DownloadError) as excinfo:
        download("test_file", cache_dir=tmp_path)
    assert url in str(excinfo.value)
    assert "404" in str(excinfo.value)
    assert excinfo.value.__cause__ is not None
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("respond", [_stall_before_headers, _stall_after_headers])
def test_stalled_server_times_out(register, tmp_path, respond):
    url = register(respond)
    with pytest.raises(DownloadError) as excinfo:
        download("test_file", cache_dir=tmp_path, timeout=0.5)
    assert url in str(excinfo.value)
    assert "timed out" in str(excinfo.value)
    assert os.listdir(tmp_path) == []


def test_connection_cut_mid_transfer_leaves_no_partial_file(register, tmp_path):
    url = register(_cut_mid_transfer)
    with pytest.raises(DownloadError) as excinfo:
        download("test_file", cache_dir=tmp_path, timeout=5)
    assert url in str(excinfo.value)
    assert os.listdir(tmp_path) == []


def test_unreachable_host_says_where_to_put_the_file(monkeypatch, tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/file.txt"
    monkeypatch.setitem(DATA_HUB, "test_file", (url, BODY_SHA1))
    with pytest.raises(DownloadError) as excinfo:
        download("test_file", cache_dir=tmp_path, timeout=5)
    message = str(excinfo.value)
    assert url in message
    assert str(tmp_path / "file.txt") in message
    assert "DL_DATA_DIR" in message
    assert isinstance(excinfo.value.__cause__, OSError)
    assert os.listdir(tmp_path) == []


def test_unknown_name_lists_known_names(monkeypatch):
    monkeypatch.setitem(DATA_HUB, "aardvark", ("http://127.0.0.1:1/a.txt", BODY_SHA1))
    with pytest.raises(ValueError) as excinfo:
        download("no_such_data")
    assert "no_such_data" in str(excinfo.value)
    assert ", ".join(sorted(DATA_HUB)) in str(excinfo.value)


def test_time_machine_is_registered():
    assert DATA_HUB["time_machine"] == (
        hub.DATA_URL + "timemachine.txt",
        "090b5e7e70c295757f55df93cb0a180b9691891a",
    )


def test_dl_data_dir_sets_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DL_DATA_DIR", str(tmp_path))
    assert cache_dir() == tmp_path


def test_download_uses_dl_data_dir_by_default(register, monkeypatch, tmp_path):
    register(_send(BODY))
    monkeypatch.setenv("DL_DATA_DIR", str(tmp_path))
    assert download("test_file") == tmp_path / "file.txt"
    assert (tmp_path / "file.txt").read_bytes() == BODY


@pytest.mark.skipif(os.name == "nt", reason="Windows uses %LOCALAPPDATA%")
def test_cache_dir_falls_back_to_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("DL_DATA_DIR", "")  # empty counts as unset
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "dl"


def _local_time_machine_dir():
    """A directory holding an intact timemachine.txt, or None."""
    candidates = [Path(__file__).parents[1].parent / "shared" / "data"]
    if os.environ.get("DL_DATA_DIR"):
        candidates.insert(0, Path(os.environ["DL_DATA_DIR"]))
    for folder in candidates:
        path = folder / "timemachine.txt"
        if path.is_file() and hashlib.sha1(path.read_bytes()).hexdigest() == TIME_MACHINE_SHA1:
            return folder
    return None


TIME_MACHINE_DIR = _local_time_machine_dir()


@pytest.mark.skipif(TIME_MACHINE_DIR is None, reason="no local copy of timemachine.txt")
def test_time_machine_from_dl_data_dir_needs_no_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("download() used the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv("DL_DATA_DIR", str(TIME_MACHINE_DIR))
    assert download("time_machine") == TIME_MACHINE_DIR / "timemachine.txt"


def _zip_bytes(members):
    """A zip archive holding `members` (name -> text)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def _tar_gz_bytes(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def serve_archive(register, monkeypatch, tmp_path):
    """Register archive bytes under `filename` with their sha1; DL_DATA_DIR is tmp_path."""
    monkeypatch.setenv("DL_DATA_DIR", str(tmp_path))

    def add(body, filename):
        return register(_send(body), filename, hashlib.sha1(body).hexdigest())

    return add


def test_download_extract_moves_the_archive_folder_into_the_data_dir(serve_archive, tmp_path):
    serve_archive(
        _zip_bytes({"fra-eng/fra.txt": "Go.\tVa !\n", "fra-eng/_about.txt": "x"}), "fra-eng.zip"
    )
    data_dir = download_extract("test_file")
    assert data_dir == tmp_path / "fra-eng"
    assert (data_dir / "fra.txt").read_text() == "Go.\tVa !\n"
    assert sorted(os.listdir(tmp_path)) == ["fra-eng", "fra-eng.zip"]  # no temporary left


def test_download_extract_tar_gz_and_folder(serve_archive, tmp_path):
    serve_archive(_tar_gz_bytes({"data/a/b.txt": "b"}), "bundle.tar.gz")
    assert download_extract("test_file", "data") == tmp_path / "data"
    assert (tmp_path / "data" / "a" / "b.txt").read_text() == "b"
    assert download_extract("test_file") == tmp_path / "bundle.tar"  # the book's rule
    assert sorted(os.listdir(tmp_path)) == ["bundle.tar.gz", "data"]


def test_download_extract_puts_loose_files_in_the_folder_named_after_the_archive(
    serve_archive, tmp_path
):
    serve_archive(_zip_bytes({"a.txt": "a", "b.txt": "b"}), "loose.zip")
    data_dir = download_extract("test_file")
    assert data_dir == tmp_path / "loose"
    assert sorted(os.listdir(data_dir)) == ["a.txt", "b.txt"]


def test_download_extract_replaces_an_earlier_copy(serve_archive, tmp_path):
    serve_archive(_zip_bytes({"fra-eng/fra.txt": "new"}), "fra-eng.zip")
    (tmp_path / "fra-eng").mkdir()
    (tmp_path / "fra-eng" / "stale.txt").write_text("old")
    data_dir = download_extract("test_file")
    assert os.listdir(data_dir) == ["fra.txt"]
    assert sorted(os.listdir(tmp_path)) == ["fra-eng", "fra-eng.zip"]


@pytest.mark.parametrize(
    "filename, good", [("fra-eng.zip", _zip_bytes), ("fra-eng.tar.gz", _tar_gz_bytes)]
)
def test_damaged_archive_leaves_nothing_extracted_and_names_the_file(
    serve_archive, tmp_path, filename, good
):
    body = good({"fra-eng/fra.txt": "Go.\tVa !\n" * 500})
    damaged = body[: len(body) // 2]
    serve_archive(damaged, filename)
    with pytest.raises(ArchiveError) as excinfo:
        download_extract("test_file")
    assert str(tmp_path / filename) in str(excinfo.value)
    assert "nothing was extracted" in str(excinfo.value)
    assert isinstance(excinfo.value, DownloadError)
    assert os.listdir(tmp_path) == [filename]  # the fetched file only, checked by its sha1


def test_download_extract_refuses_a_file_that_is_no_archive(serve_archive, tmp_path):
    serve_archive(BODY, "plain.txt")
    with pytest.raises(InputError, match=r"plain\.txt: only zip and tar archives"):
        download_extract("test_file")
    assert os.listdir(tmp_path) == ["plain.txt"]


def test_fra_eng_is_registered_as_in_the_book():
    assert DATA_HUB["fra-eng"] == (
        hub.DATA_URL + "fra-eng.zip",
        "94646ad1522d915e7b0f9296181140edcf86a4f5",
    )


def test_dl_data_hub_entries_take_the_place_of_registered_ones(register, monkeypatch, tmp_path):
    url = register(_send(BODY))
    monkeypatch.setitem(DATA_HUB, "test_file", ("http://127.0.0.1:1/elsewhere.txt", "f" * 40))
    mirror = tmp_path / "hub.json"
    mirror.write_text(json.dumps({"test_file": [url, BODY_SHA1]}))
    monkeypatch.setenv("DL_DATA_HUB", str(mirror))
    assert download("test_file", cache_dir=tmp_path / "data").read_bytes() == BODY


@pytest.mark.parametrize("content", ["not json", '{"test_file": "http://x/a.txt"}'])
def test_dl_data_hub_that_cannot_be_used_is_named(monkeypatch, tmp_path, content):
    mirror = tmp_path / "hub.json"
    mirror.write_text(content)
    monkeypatch.setenv("DL_DATA_HUB", str(mirror))
    with pytest.raises(InputError, match=f"DL_DATA_HUB={mirror}"):
        download("time_machine", cache_dir=tmp_path)
