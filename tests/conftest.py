"""Shared fixtures: where The Time Machine lives, and skipping cleanly when it is absent."""

import os
import signal
from pathlib import Path

import pytest

SHARED_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
TIME_MACHINE_FILE = "timemachine.txt"


@pytest.fixture(scope="session", autouse=True)
def _dl_data_dir(tmp_path_factory):
    """Point DL_DATA_DIR at the shared data directory (offline) unless the caller set it, and
    the token cache (DL_CACHE_DIR) and the JAX compilation cache (DL_JAX_CACHE_DIR) at the
    session's temporary directory, so that tests write nothing into the data directory or the
    user's cache."""
    if not os.environ.get("DL_DATA_DIR") and (SHARED_DATA_DIR / TIME_MACHINE_FILE).is_file():
        os.environ["DL_DATA_DIR"] = str(SHARED_DATA_DIR)
    os.environ.setdefault("DL_CACHE_DIR", str(tmp_path_factory.mktemp("token-cache")))
    os.environ.setdefault("DL_JAX_CACHE_DIR", str(tmp_path_factory.mktemp("jax-cache")))
    yield


@pytest.fixture(scope="session", autouse=True)
def _ctrl_c_raises():
    """Tests that press Ctrl-C in this process (``os.kill(os.getpid(), SIGINT)``) need
    Python's handler; a test run started with SIGINT ignored (CI, ``pytest &`` in a script)
    has none, and ``dl`` rightly leaves an inherited ignore alone."""
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if ignored:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.fixture(scope="session")
def time_machine_path(_dl_data_dir):
    """Path of the local copy of The Time Machine; skips the test when there is none.

    Tests never download: without a local copy they are skipped with the reason.
    """
    from dl.data import hub

    path = hub.cache_dir() / TIME_MACHINE_FILE
    if not path.is_file():
        pytest.skip(
            f"The Time Machine is not available offline: {path} does not exist; "
            f"set DL_DATA_DIR to a directory holding {TIME_MACHINE_FILE}"
        )
    return path
