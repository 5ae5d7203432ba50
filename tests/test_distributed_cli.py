"""`dl train` on several processes (:mod:`dl.cli.distributed`): two local CPU processes on
127.0.0.1, started by torchrun or by hand with its environment variables, train as one process
on the whole batch; rank 0 alone writes; a signal or a bad input on any rank stops every rank
with one message; runs resume on another process count; the rendezvous times out."""

import signal
import subprocess
import sys
import time

import numpy as np
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
from dl.cli import distributed
from dl.cli.options import UsageError

pytest.importorskip("torch")
pytestmark = pytest.mark.slow
TINY = [
    *("--backend", "torch", "--impl", "scratch", "--device", "cpu", "--hidden", 16),
    *("--embedding", 8, "--batch-size", 4, "--num-steps", 10, "--max-tokens", 400),
    *("--print-every", 1000, "--schedule", "constant"),  # a cosine spans the first --epochs
]
SENTENCE = "A small red boat drifts past the quiet harbour wall, and gulls follow it home.\n"


work, args = train_setup("ddp", SENTENCE, TINY)


def run_one(work, out, *extra):
    """One process, no launcher: ``(exit status, output)``."""
    proc = subprocess.run(
        [sys.executable, "-m", "dl", *args(work, out, *extra)],
        env=environment(work),
        capture_output=True,
        text=True,
        timeout=LIMIT,
    )
    return proc.returncode, proc.stdout + proc.stderr


def torchrun(work, out, *extra, nproc=2):
    """``torchrun --standalone --nproc-per-node 2 -m dl train ...``: ``(status, output)``."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={nproc}",
            "-m",
            "dl",
            *args(work, out, *extra),
        ],
        env=environment(work),
        capture_output=True,
        text=True,
        timeout=LIMIT,
    )
    return proc.returncode, proc.stdout + proc.stderr


def params(out):
    return checkpoint.load(out)[0]


@pytest.fixture(scope="module")
def single(work):
    """The one-process run that every distributed one must equal."""
    status, output = run_one(work, work / "single", "--epochs", 3, "--save-every-steps", 5)
    assert status == 0, output
    return params(work / "single"), checkpoint.load(work / "single")[1]


def test_two_processes_train_as_one_on_the_whole_batch(work, single):
    status, output = torchrun(work, work / "two", "--epochs", 3, "--save-every-steps", 5)
    assert status == 0, output[-3000:]
    assert_close(params(work / "two"), single[0])
    meta = checkpoint.load(work / "two")[1]
    assert meta["position"] == single[1]["position"]  # global tokens and updates
    lines = (work / "two" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3  # one writer: no record twice
    assert output.count("saved ") == 1  # the summary, by rank 0 alone


def test_rank_0_alone_writes(work):
    """Rank 1 is given another --out: it must create nothing and print nothing."""
    zero, one = work / "writer", work / "not-written"
    results = finish(spawn(work, [args(work, zero, "--epochs", 1), args(work, one, "--epochs", 1)]))
    assert [r[0] for r in results] == [0, 0], results
    assert checkpoint.exists(zero) and (zero / "metrics.jsonl").exists()
    assert not one.exists()
    assert results[1][1:] == ("", "")  # rank 1: no output at all
    assert "saved" in results[0][1]


def test_one_process_run_resumes_on_two(work, single):
    out = work / "one-then-two"
    status, output = run_one(work, out, "--epochs", 1, "--save-every-steps", 5)
    assert status == 0, output
    status, output = torchrun(work, out, "--epochs", 3, "--resume", "--save-every-steps", 5)
    assert status == 0, output[-3000:]
    assert_close(params(out), single[0])


def test_sigterm_on_rank_1_stops_both_and_the_run_resumes_on_one(work, single):
    out = work / "interrupted"
    procs = spawn(work, [args(work, out, "--epochs", 3, "--save-every-steps", 5)] * 2)
    results = signal_after_first_save(procs, out, 1, signal.SIGTERM)
    assert [r[0] for r in results] == [143, 143], results
    assert results[1][1:] == ("", "")  # one message: rank 0's
    assert results[0][2].count("interrupted: ") == 1 and "--resume" in results[0][2]
    saved = checkpoint.load(out)[1]
    assert not saved["finished"]
    status, output = run_one(work, out, "--epochs", 3, "--resume")
    assert status == 0, output
    assert_close(params(out), single[0])


def test_a_batch_that_does_not_divide_is_one_message(work):
    status, output = torchrun(work, work / "odd", "--epochs", 1, "--batch-size", 3)
    assert status != 0
    assert output.count("--batch-size 3 does not divide among 2 processes") == 1, output
    assert not (work / "odd" / "model.safetensors").exists()


def test_different_settings_on_the_ranks_are_refused_naming_them(work):
    results = finish(
        spawn(
            work,
            [
                args(work, work / "a", "--epochs", 1, "--lr", 0.01),
                args(work, work / "a", "--epochs", 1, "--lr", 0.02),
            ],
        )
    )
    assert [r[0] for r in results] == [2, 2]
    assert "--lr 0.02 on rank 1, 0.01 on rank 0" in results[0][2]
    assert results[1][1:] == ("", "")
    assert not checkpoint.exists(work / "a")


def test_a_bad_input_on_rank_1_alone_is_reported_by_rank_0(work):
    bad = args(work, work / "b", "--epochs", 1)
    bad[bad.index("--text") + 1] = str(work / "missing.txt")
    results = finish(spawn(work, [args(work, work / "b", "--epochs", 1), bad]))
    assert [r[0] for r in results] == [2, 2]
    assert "rank 1: " in results[0][2] and "missing.txt" in results[0][2]
    assert results[1][1:] == ("", "")


def test_an_unreachable_rendezvous_fails_within_the_timeout(work):
    started = time.monotonic()
    # rank 0 of a world of two, alone: it waits for rank 1, which never comes
    (proc,) = spawn(work, [args(work, work / "c", "--dist-timeout", 2)], world_size=2)
    ((status, _, err),) = finish([proc], timeout=60)
    assert status == 2, err
    assert "were not reached at the rendezvous 127.0.0.1:" in err and "--dist-timeout 2s" in err
    assert time.monotonic() - started < 45


def test_a_diverging_run_stops_every_rank_with_one_message(work):
    status, output = torchrun(
        work,
        work / "nan",
        "--epochs",
        3,
        "--optimizer",
        "sgd",
        "--lr",
        1e12,
        "--clip",
        1e30,
        "--schedule",
        "constant",
    )
    assert status != 0
    assert output.count("training diverged") == 1, output[-3000:]


def test_gpus_fewer_than_processes_and_a_gpu_index_are_refused():
    world = distributed.World(rank=1, size=2, local_rank=1, local_size=2)
    assert world._device("gpu", 2) == "cuda:1"
    assert world._device(None, 0) == "cpu" and world._device("cpu", 2) == "cpu"
    with pytest.raises(
        UsageError, match="2 processes on this machine need a GPU each and PyTorch sees 1"
    ):
        world._device("gpu", 1)
    with pytest.raises(UsageError, match="each process takes the GPU of its local rank"):
        world._device("gpu:1", 2)


def test_the_environment_and_the_backend_are_checked():
    assert distributed.world({}) == distributed.World()
    world = distributed.world({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    assert (world.rank, world.size, world.local_rank, world.writes) == (1, 2, 1, False)
    with pytest.raises(UsageError, match="RANK=2 and WORLD_SIZE=2"):
        distributed.world({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(UsageError, match="WORLD_SIZE='two'"):
        distributed.world({"WORLD_SIZE": "two"})
    with pytest.raises(UsageError, match="started torch's process group .* give --backend jax"):
        world.check({"backend": "jax", "batch_size": 4})
    with pytest.raises(UsageError, match="--backend torch or jax, not tensorflow"):
        world.check({"backend": "tensorflow", "batch_size": 4})


def test_each_rank_takes_its_own_rows_of_the_global_batch():
    X = np.arange(24).reshape(6, 4)
    parts = [distributed.World(rank=r, size=3).rows((X, X + 1)) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), X)
    np.testing.assert_array_equal(parts[1][1], X[2:4] + 1)
    state = [np.arange(2 * 6 * 5).reshape(2, 6, 5)]  # (layers, B, H): rows on axis 1
    (rows,) = distributed.World(rank=2, size=3).state_rows(state, [1])
    np.testing.assert_array_equal(rows, state[0][:, 4:6])
