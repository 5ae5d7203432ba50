"""``dl train --backend jax`` on several processes, started as torch's are (``torchrun`` or by
hand with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``): the
:class:`dl.cli.distributed.World` on ``jax.distributed``.

Rank 0 runs JAX's coordinator on ``MASTER_ADDR:MASTER_PORT + 1`` (torchrun's own store holds
``MASTER_PORT``); the processes train on CPUs, their collectives on gloo. ``jax.distributed``
aborts the process (no exception) when a process does not register in time, so a rendezvous
of plain sockets on that port comes first (:func:`knock`): an unreachable or missing process
is a message within ``--dist-timeout``, before JAX starts. Objects (inputs agreed, the resumed
checkpoint, the recurrent state) travel pickled through ``process_allgather``.
"""

from __future__ import annotations

import math
import os
import pickle
import socket
import sys
import time

import numpy as np

from dl.cli.options import UsageError
from dl.validate import parse_device

GO = b"1"  # rank 0's answer once every process knocked


def coordinator(environ=os.environ) -> tuple[str, int]:
    """``(host, port)`` of JAX's coordinator: ``MASTER_ADDR`` and ``MASTER_PORT + 1``."""
    host = environ.get("MASTER_ADDR", "127.0.0.1")
    text = environ.get("MASTER_PORT", "29500")
    try:
        port = int(text) + 1
    except ValueError:
        raise UsageError(f"environment variable MASTER_PORT={text!r}: give a port") from None
    return host, port


def device(name: str | None) -> str:
    """The device of each process: its CPUs (``--devices N`` of them)."""
    kind, _ = parse_device(name)
    if kind != "cpu" and name is not None:
        raise UsageError(
            f"--device {name}: dl train runs JAX across processes on CPUs only (it is "
            "tested there); on GPUs start one process with --devices N, or use --backend torch"
        )
    return "cpu"


def start(world, device_name: str | None, timeout: float) -> UsageError | None:
    """Meet the other processes (:func:`knock`), then start ``jax.distributed`` on CPUs with
    gloo collectives that wait ``timeout`` seconds; returns the device's error, for
    :meth:`World.agree` to report once."""
    try:
        device(device_name)
        error = None
    except UsageError as err:
        error = err
    host, port = coordinator()
    knock(world, host, port, timeout)
    import jax

    from dl.cli import backends

    backends.collective_timeout(timeout)
    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    seconds = max(1, math.ceil(timeout))
    jax.distributed.initialize(
        f"{host}:{port}",
        num_processes=world.size,
        process_id=world.rank,
        initialization_timeout=seconds,
        shutdown_timeout_seconds=seconds,
    )
    return error


def knock(world, host: str, port: int, timeout: float) -> None:
    """Every process reaches rank 0 on ``host:port`` (plain TCP) within ``timeout``, rank 0
    answers once all did; UsageError on any process that is left waiting."""
    deadline = time.monotonic() + timeout
    try:
        if world.writes:
            _wait_for_all(world.size - 1, port, deadline)
        else:
            _knock(world.rank, host, port, deadline)
    except OSError as err:
        raise UsageError(
            f"rank {world.rank} of {world.size}: the other processes were not reached at the "
            f"rendezvous {host}:{port} (JAX's coordinator, MASTER_PORT + 1) within "
            f"--dist-timeout {timeout:g}s ({err.strerror or err}); start every process with "
            "the same MASTER_ADDR and MASTER_PORT, or raise --dist-timeout"
        ) from None


def _wait_for_all(others: int, port: int, deadline: float) -> None:
    with socket.create_server(("", port)) as server:
        peers = []
        try:
            while len(peers) < others:
                server.settimeout(max(deadline - time.monotonic(), 0.01))
                try:
                    peer, _ = server.accept()
                except TimeoutError:
                    raise TimeoutError(
                        f"{len(peers)} of {others} other process(es) arrived"
                    ) from None
                peers.append(peer)
            for peer in peers:
                peer.sendall(GO)
        finally:
            for peer in peers:
                peer.close()


def _knock(rank: int, host: str, port: int, deadline: float) -> None:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"rank 0 at {host}:{port} did not answer")
        try:
            with socket.create_connection((host, port), timeout=left) as conn:
                conn.settimeout(max(deadline - time.monotonic(), 0.01))
                if conn.recv(1) == GO:
                    return
                raise ConnectionError("rank 0 stopped waiting for the other processes")
        except ConnectionRefusedError:  # rank 0 not listening yet
            time.sleep(min(0.2, left))


def gather(value) -> list:
    """Every process's ``value``, by rank: pickled, padded to a power of two (few compiled
    shapes) and all-gathered by JAX's collectives."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(pickle.dumps(value), np.uint8)
    sizes = multihost_utils.process_allgather(np.array([data.size], np.int32)).ravel()
    width = 1 << max(10, int(sizes.max() - 1).bit_length())
    padded = np.zeros(width, np.uint8)
    padded[: data.size] = data
    rows = multihost_utils.process_allgather(padded)
    return [pickle.loads(rows[rank, :size].tobytes()) for rank, size in enumerate(sizes)]


def stop(lost: Exception | None = None) -> None:
    """Leave ``jax.distributed``: every process waits for the others, up to the timeout. With
    a process ``lost`` that wait would fail, and jax aborts the process (as it does at exit):
    ``lost``'s one line is printed and the process ends at once, with status 2."""
    import jax

    if lost is not None:
        print(f"dl: error: {lost}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(2)
    if jax.distributed.is_initialized():
        jax.distributed.shutdown()
