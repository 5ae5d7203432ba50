"""`dl train --devices N` on JAX and TensorFlow: one process, the batch split by rows across N
local devices (two CPU devices here), equal to one device within 1e-5, one writer, a run
resumed on another device count, and bad input (one line, exit 2)."""

import importlib.util
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from dl.cli import main
from training_helpers import run_fresh

SENTENCE = "A small test sentence of our own, read over and over by two devices.\n" * 40
TINY = [
    *("--impl", "scratch", "--hidden", 16, "--embedding", 8, "--schedule", "constant"),
    *("--batch-size", 4, "--num-steps", 8, "--print-every", 1000, "--device", "cpu"),
]
# runs in a fresh interpreter (the devices are set before the framework starts): the same
# training on one and on two devices, and runs saved on one count resumed on the other; prints
# each run's weights, its metrics' epochs and what the first summary named as its devices
RUNS = """
import io, contextlib, json, os, sys
from pathlib import Path
import numpy as np
from dl import checkpoint
from dl.cli import main

backend, text, tmp, tiny = sys.argv[1], sys.argv[2], Path(sys.argv[3]), json.loads(sys.argv[4])

def dl(out, devices, epochs, *extra):
    said = io.StringIO()
    with contextlib.redirect_stdout(said):
        code = main(["train", "--backend", backend, "--text", text, *tiny, "--out", str(tmp / out),
                     "--devices", str(devices), "--epochs", str(epochs), *extra])
    assert code == 0, said.getvalue()
    return said.getvalue()

out = {"said": dl("two", 2, 2)}  # first: TensorFlow's logical devices precede its start
out["xla_flags"] = os.environ.get("XLA_FLAGS", "")
dl("one", 1, 2)
dl("two_then_one", 2, 1); dl("two_then_one", 1, 2, "--resume")
dl("one_then_two", 1, 1); dl("one_then_two", 2, 2, "--resume")
for run in ("one", "two", "two_then_one", "one_then_two"):
    params, meta = checkpoint.load(tmp / run)
    lines = (tmp / run / "metrics.jsonl").read_text().splitlines()
    out[run] = {"params": {k: v.tolist() for k, v in params.items()},
                "epochs": [json.loads(line)["epoch"] for line in lines],
                "devices": meta["settings"]["devices"]}
print("RESULT:" + json.dumps(out))
"""


def dl(*args):
    return main([str(a) for a in args])


@pytest.fixture
def text(tmp_path, monkeypatch):
    monkeypatch.setenv("DL_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "sentence.txt"
    path.write_text(SENTENCE)
    return path


@pytest.mark.parametrize(
    "backend, env",
    [
        ("jax", {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}),
        ("tensorflow", {}),
    ],
)
def test_two_devices_train_as_one_and_resume_on_either_count(backend, env, text, tmp_path):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    tiny = json.dumps([str(a) for a in TINY])
    out = run_fresh(RUNS, backend, text, tmp_path, tiny, env=env)
    assert "cpu:0, cpu:1" in out["said"].lower().replace("/", "")  # the summary names both
    if backend == "jax":  # a late device waits --dist-timeout (300 s), not XLA's 40 s
        assert "--xla_cpu_collective_call_terminate_timeout_seconds=300" in out["xla_flags"]
    one = out["one"]
    devices = {run: out[run]["devices"] for run in ("one", "two", "two_then_one", "one_then_two")}
    assert devices == {"one": 1, "two": 2, "two_then_one": 1, "one_then_two": 2}  # as resumed
    for run in ("two", "two_then_one", "one_then_two"):
        assert out[run]["epochs"] == [1, 2], run  # one writer: each epoch's record once
        for name, value in one["params"].items():
            np.testing.assert_allclose(
                out[run]["params"][name], value, rtol=0, atol=1e-5, err_msg=f"{run}: {name}"
            )


# one device's thread reaches the batch's all-reduce `lag` seconds after the other's, as on a
# loaded machine; XLA:CPU aborts the process past its collective timeout (40 s of its own)
LATE_DEVICE = """
import sys, time
from dl.jax.engine import collective_timeout
collective_timeout(float(sys.argv[1]))
import jax, jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
mesh, lag = Mesh(jax.devices()[:2], ("batch",)), float(sys.argv[2])

def late(x):
    if x[0] == 0:
        time.sleep(lag)
    return x

def total(x):
    x = jax.pure_callback(late, jax.ShapeDtypeStruct(x.shape, x.dtype), x)
    return jax.lax.psum(x, "batch")

step = jax.jit(jax.shard_map(total, mesh=mesh, in_specs=P("batch"), out_specs=P()))
x = jax.device_put(jnp.arange(2.0), NamedSharding(mesh, P("batch")))
print("RESULT:" + str(float(step(x).block_until_ready()[0])))
"""


@pytest.mark.slow
def test_a_late_device_waits_for_the_collective_timeout_instead_of_aborting():
    """``collective_timeout`` (dl train's --dist-timeout) reaches XLA: a device 3 s late
    passes with a 20 s timeout and aborts the process with 1 s (XLA's own is 40 s)."""
    pytest.importorskip("jax")
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    runs = {
        seconds: subprocess.run(
            [sys.executable, "-c", LATE_DEVICE, str(seconds), "3"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        for seconds in (20, 1)
    }
    assert runs[20].returncode == 0 and "RESULT:1.0" in runs[20].stdout, runs[20].stderr[-3000:]
    assert runs[1].returncode == -signal.SIGABRT, runs[1].stderr[-3000:]
    assert "Termination timeout" in runs[1].stderr


def test_collective_timeout_keeps_the_flags_a_user_set():
    pytest.importorskip("jax")
    from dl.jax.engine import collective_timeout

    environ = {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2 "
        "--xla_cpu_collective_timeout_seconds=7"
    }
    assert collective_timeout(300, environ)
    flags = environ["XLA_FLAGS"].split()
    assert flags[:2] == [
        "--xla_force_host_platform_device_count=2",
        "--xla_cpu_collective_timeout_seconds=7",
    ]  # the user's, kept
    assert "--xla_cpu_collective_call_terminate_timeout_seconds=300" in flags
    assert "--xla_cpu_collective_call_warn_stuck_timeout_seconds=150" in flags
    assert len(flags) == 4


def test_devices_the_backend_cannot_split_across_are_refused(text, tmp_path, capsys):
    run = tmp_path / "run"
    cases = [
        (("--backend", "torch", "--devices", 2), "torchrun --nproc-per-node 2"),
        (("--backend", "jax", "--devices", 3), "does not divide --batch-size 4"),
    ]
    for extra, said in cases:
        assert dl("train", "--text", text, *TINY, "--out", run, *extra) == 2
        err = capsys.readouterr().err.strip()
        assert said in err and len(err.splitlines()) == 1, err
    assert not run.exists()  # nothing written
    for count in ("0", "-1"):
        with pytest.raises(SystemExit) as exit_info:
            dl("train", "--text", text, "--devices", count)
        assert exit_info.value.code == 2


MORE_THAN_THERE_ARE = """
import sys
from dl.cli import main
sys.exit(main(["train", "--backend", sys.argv[1], "--text", sys.argv[2], "--out", sys.argv[3],
               "--device", "cpu", "--devices", "4", "--batch-size", "4", "--epochs", "1"]))
"""


def test_more_jax_devices_than_there_are_names_them_and_how_to_have_more(text, tmp_path):
    pytest.importorskip("jax")
    run = tmp_path / "run"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    done = subprocess.run(
        [sys.executable, "-c", MORE_THAN_THERE_ARE, "jax", str(text), str(run)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert "JAX sees 2 cpu device(s)" in last, done.stderr[-3000:]
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=4" in last
    assert not run.exists()
