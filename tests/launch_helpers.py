"""Starting `dl` as several local processes on 127.0.0.1, as a launcher would: torchrun's
environment variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) on a free port,
each process killed when the test's limit passes; the folder and `dl train` arguments that
such a test file's runs share."""

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from dl import checkpoint

LIMIT = 180  # seconds before a hung process fails the test


def environment(work, **extra):
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    return dict(
        os.environ,
        DL_DATA_DIR=str(work / "data"),
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.path.abspath(src),
        **extra,
    )


def train_setup(name, sentence, tiny):
    """A module-scoped ``work`` fixture (a fresh folder ``name*`` holding ``text.txt``,
    ``sentence`` forty times) and ``args(work, out, *extra)``: ``dl train`` with ``tiny`` on
    that text, saving to ``out``."""

    @pytest.fixture(scope="module", name="work")
    def work(tmp_path_factory):
        tmp = tmp_path_factory.mktemp(name)
        (tmp / "text.txt").write_text(sentence * 40)
        return tmp

    def args(work, out, *extra):
        text = ("--text", work / "text.txt", "--out", out)
        return ["train", *map(str, tiny), *map(str, text), *map(str, extra)]

    return work, args


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(work, commands, world_size=None, **extra):
    """One process per rank with torchrun's environment variables, each running its own
    ``dl`` arguments (``commands[rank]``), in a world of ``world_size`` (default: one rank
    per command); ``extra``: more environment variables."""
    size = str(world_size or len(commands))
    env = dict(
        environment(work, **extra),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        WORLD_SIZE=size,
        LOCAL_WORLD_SIZE=size,
    )
    return [
        subprocess.Popen(
            [sys.executable, "-m", "dl", *command],
            env=dict(env, RANK=str(rank), LOCAL_RANK=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank, command in enumerate(commands)
    ]


def finish(procs, timeout=LIMIT):
    """``[(status, stdout, stderr)]`` of each process; every one is killed on a timeout."""
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            proc.kill()
    return results


def assert_close(a, b, tol=1e-5):
    assert a.keys() == b.keys()
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)
    assert worst < tol, worst


def signal_after_first_save(procs, out, rank, signum, skip_if_done=True):
    """Send ``signum`` to ``procs[rank]`` once ``out`` holds a checkpoint; every process's
    ``(status, stdout, stderr)``, which must all have ended within 30 s of it (skips where
    the run finished first, as on a loaded machine, if ``skip_if_done``)."""
    deadline = time.monotonic() + LIMIT
    while not checkpoint.exists(out) and time.monotonic() < deadline:
        time.sleep(0.02)
    procs[rank].send_signal(signum)
    sent = time.monotonic()
    results = finish(procs, timeout=60)
    assert time.monotonic() - sent < 30
    if skip_if_done and all(r[0] == 0 for r in results):
        pytest.skip("the run ended before the signal arrived (a loaded machine)")
    return results
