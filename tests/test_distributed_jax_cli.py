"""`dl train --backend jax` on several processes (:mod:`dl.cli.distributed_jax`): two local
CPU processes, started by hand with torchrun's environment variables or by torchrun, train as
one process on the whole batch; rank 0 alone writes; SIGTERM on one rank stops both and the
run resumes on one; bad input on any rank is one message; an absent peer or coordinator is a
message within --dist-timeout."""

import importlib.util
import signal
import subprocess
import sys
import time

import pytest
from launch_helpers import (
    LIMIT,
    assert_close,
    environment,
    finish,
    signal_after_first_save,
    spawn,
    train_setup,
)

from dl import checkpoint

pytest.importorskip("jax")
pytestmark = pytest.mark.slow
TINY = [
    *("--backend", "jax", "--impl", "scratch", "--device", "cpu", "--hidden", 16),
    *("--embedding", 8, "--batch-size", 4, "--num-steps", 10, "--max-tokens", 400),
    *("--print-every", 1000, "--schedule", "constant"),
    *("--embed-dropout", 0.3),  # JAX draws the global batch's masks: the same on any count
]
SENTENCE = "A blue kite climbs over the dunes while two dogs chase its long tail.\n"
JAX_ENV = {"JAX_PLATFORMS": "cpu"}


work, args = train_setup("jaxdist", SENTENCE, TINY)


def run(work, command, timeout=LIMIT):
    """``command`` (after ``python``) with the tests' environment: ``(status, output)``."""
    proc = subprocess.run(
        [sys.executable, *command],
        env=environment(work, **JAX_ENV),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout + proc.stderr


def launched(work, commands, world_size=None):
    return finish(spawn(work, commands, world_size, **JAX_ENV))


def quiet(result) -> bool:
    """Whether a rank printed nothing of its own (gloo's C++ start-up line aside)."""
    status, out, err = result
    return all(line.startswith("[Gloo]") for line in (out + err).splitlines())


@pytest.fixture(scope="module")
def single(work):
    """The one-process run that every two-process one must equal."""
    status, output = run(work, ["-m", "dl", *args(work, work / "single", "--epochs", 3)])
    assert status == 0, output
    return checkpoint.load(work / "single")


def test_two_processes_train_as_one_and_rank_0_alone_writes(work, single):
    """Rank 1 is given another --out: it must create nothing and print nothing."""
    two, other = work / "two", work / "not-written"
    results = launched(work, [args(work, two, "--epochs", 3), args(work, other, "--epochs", 3)])
    assert [r[0] for r in results] == [0, 0], results
    assert_close(checkpoint.load(two)[0], single[0])
    assert checkpoint.load(two)[1]["position"] == single[1]["position"]  # global tokens, steps
    assert len((two / "metrics.jsonl").read_text().splitlines()) == 3  # one writer
    assert not other.exists()
    assert quiet(results[1]), results[1]
    assert results[0][1].count("saved ") == 1


def test_torchrun_starts_jax_processes_and_a_one_process_run_resumes_on_two(work, single):
    if importlib.util.find_spec("torch") is None:
        pytest.skip("torchrun comes with torch")
    out = work / "one-then-two"
    status, output = run(work, ["-m", "dl", *args(work, out, "--epochs", 1)])
    assert status == 0, output
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "-m", "dl"]
    status, output = run(work, [*torchrun, *args(work, out, "--epochs", 3, "--resume")])
    assert status == 0, output[-3000:]
    assert_close(checkpoint.load(out)[0], single[0])
    assert checkpoint.load(out)[1]["settings"]["backend"] == "jax"


def test_sigterm_on_rank_1_stops_both_and_the_run_resumes_on_one(work, single):
    out = work / "interrupted"  # 50 epochs: far from done when the signal comes
    procs = spawn(work, [args(work, out, "--epochs", 50, "--save-every-steps", 3)] * 2, **JAX_ENV)
    results = signal_after_first_save(procs, out, 1, signal.SIGTERM, skip_if_done=False)
    assert [r[0] for r in results] == [143, 143], results
    assert quiet(results[1]), results[1]
    assert results[0][2].count("interrupted: ") == 1 and "--resume" in results[0][2]
    meta = checkpoint.load(out)[1]
    assert not meta["finished"] and meta["epoch"] < 3, meta["position"]
    # a constant rate: the run of 3 epochs, continued on one process
    status, output = run(work, ["-m", "dl", *args(work, out, "--epochs", 3, "--resume")])
    assert status == 0, output
    assert_close(checkpoint.load(out)[0], single[0])


def test_a_killed_rank_1_ends_rank_0_with_one_message_and_its_checkpoint_kept(work):
    out = work / "killed"
    procs = spawn(work, [args(work, out, "--epochs", 50, "--save-every-steps", 3)] * 2, **JAX_ENV)
    results = signal_after_first_save(procs, out, 1, signal.SIGKILL)
    assert results[0][0] == 2, results[0]
    lines = [line for line in results[0][2].splitlines() if line.startswith("dl: error:")]
    assert len(lines) == 1 and "rank 0: lost contact with the other processes" in lines[0]
    assert "--resume" in lines[0] and lines[0].count("checkpoint") == 1  # said once
    params, meta = checkpoint.load(out)  # whole, and it resumes
    status, output = run(
        work, ["-m", "dl", *args(work, out, "--epochs", meta["epoch"] + 1, "--resume")]
    )
    assert status == 0, output


def test_bad_input_on_either_rank_is_one_message_from_rank_0(work):
    missing = args(work, work / "b", "--epochs", 1)
    missing[missing.index("--text") + 1] = str(work / "missing.txt")
    other_lr = args(work, work / "b", "--epochs", 1, "--lr", 0.5)
    for rank_1, said in (
        (missing, "missing.txt"),
        (other_lr, "--lr 0.5 on rank 1, 0.003 on rank 0"),
    ):
        results = launched(work, [args(work, work / "b", "--epochs", 1), rank_1])
        assert [r[0] for r in results] == [2, 2], results
        assert said in results[0][2], results[0][2]
        assert quiet(results[1]), results[1]
    assert not checkpoint.exists(work / "b")


def test_gpus_and_other_backends_under_a_launcher_are_refused():
    from dl.cli import distributed, distributed_jax
    from dl.cli.options import UsageError

    assert distributed_jax.device(None) == distributed_jax.device("cpu") == "cpu"
    with pytest.raises(UsageError, match="--device gpu: dl train runs JAX across processes on"):
        distributed_jax.device("gpu")
    world = distributed.World(rank=0, size=2, framework="jax")
    world.check({"backend": "jax", "batch_size": 4})
    with pytest.raises(UsageError, match="started jax's process group .* give --backend torch"):
        world.check({"backend": "torch", "batch_size": 4})
    with pytest.raises(UsageError, match="MASTER_PORT='x'"):
        distributed_jax.coordinator({"MASTER_PORT": "x"})
    assert distributed_jax.coordinator({"MASTER_ADDR": "h", "MASTER_PORT": "29500"}) == ("h", 29501)


def test_an_absent_peer_or_coordinator_is_a_message_within_the_timeout(work):
    for rank in (0, 1):  # rank 0 waits for rank 1; rank 1 for rank 0's coordinator
        started = time.monotonic()
        procs = spawn(
            work, [args(work, work / "c", "--dist-timeout", 2)] * 2, world_size=2, **JAX_ENV
        )
        procs[1 - rank].kill()
        ((status, _, err),) = finish([procs[rank]], timeout=60)
        assert status == 2, err
        assert f"rank {rank} of 2: the other processes were not reached at the rendezvous" in err
        assert "--dist-timeout 2s" in err and len(err.strip().splitlines()) == 1, err
        assert time.monotonic() - started < 30
