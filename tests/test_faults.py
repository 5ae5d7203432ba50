"""Faults a run must survive: a second process in its directory, a kill at any moment (in a
save too), a full disk, damaged metrics, a missing or damaged file of each kind, and
interruptions outside training; each ends with one line that says what to do.

Training runs on the NumPy stand-in of ``fake_backend`` (in this process and in subprocesses),
so these tests check the command line's handling of runs, not a framework.
"""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fake_backend
from dl import checkpoint, files, lm
from dl.cli import main, signals
from dl.cli import train as cli_train

pytestmark = pytest.mark.usefixtures("time_machine_path")
SIZES = ["--backend", "torch", "--batch-size", "4", "--num-steps", "8", "--max-tokens", "2000"]
SMALL = [*SIZES, "--hidden", "8", "--print-every", "1000"]
FAKE = Path(fake_backend.__file__)
SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(autouse=True)
def fake(monkeypatch):
    fake_backend.install(monkeypatch)


def dl(*args):
    return main([str(a) for a in args])


def spawn(*args, ignore_sigint=False, ignore_sigterm=False, **env):
    """``dl ARGS`` on the fake backend in a subprocess (text pipes), as a user's shell starts it.

    A test run started with SIGINT ignored (CI, ``pytest &`` in a script) passes the ignore on,
    and Python then never raises KeyboardInterrupt: the child gets SIGINT's default back,
    unless ``ignore_sigint`` (as ``nohup`` or a background job of a script starts it);
    ``ignore_sigterm`` starts it with SIGTERM ignored.
    """
    sigint = signal.SIG_IGN if ignore_sigint else signal.SIG_DFL
    sigterm = signal.SIG_IGN if ignore_sigterm else signal.SIG_DFL

    def start():
        signal.signal(signal.SIGINT, sigint)
        signal.signal(signal.SIGTERM, sigterm)

    environment = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        **{k: str(v) for k, v in env.items()},
    )
    return subprocess.Popen(
        [sys.executable, str(FAKE), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        preexec_fn=start,
    )


def epochs_of(run):
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def half_written(root):
    """The temporaries of atomic writes left under ``root``."""
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def wait_for_epoch(run, epoch, process, timeout=60):
    """Wait until ``run``'s checkpoint holds epoch ``epoch`` or later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            if checkpoint.load(run)[1]["epoch"] >= epoch:
                return
        except checkpoint.CheckpointError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of epoch {epoch} in {timeout} s")


# ---------------------------------------------------------------- one owner per run directory


@pytest.mark.slow
def test_a_second_process_is_refused_naming_the_owner_and_sigterm_saves(tmp_path, capsys):
    run = tmp_path / "run"
    owner = spawn(
        "train", *SMALL, "--epochs", 1000, "--save-every", 1, "--out", run, FAKE_STEP_SECONDS=0.005
    )
    try:
        wait_for_epoch(run, 1, owner)
        for args in (
            ["train", *SMALL, "--epochs", 3, "--out", run],
            ["train", "--epochs", 3, "--out", run, "--resume"],
            ["train", *SMALL, "--epochs", 3, "--out", run, "--force"],
        ):
            assert dl(*args) == 2
            err = capsys.readouterr().err
            assert f"is in use by process {owner.pid} (`dl train " in err, err
            assert err.count("\n") == 1
    finally:
        owner.send_signal(signal.SIGTERM)
        _, err = owner.communicate(timeout=60)
    assert owner.returncode == 143, err
    assert "Traceback" not in err and "interrupted: epoch" in err
    saved = checkpoint.load(run)[1]["epoch"]
    assert epochs_of(run) == list(range(1, saved + 1))  # one run's records, in order, once
    assert (run / ".dl.lock").read_text() == ""  # released
    assert dl("train", "--epochs", saved + 1, "--out", run, "--resume") == 0
    assert epochs_of(run) == list(range(1, saved + 2))


@pytest.mark.slow
def test_a_killed_owners_lock_is_taken_over_with_a_note(tmp_path, capsys):
    run = tmp_path / "run"
    owner = spawn(
        "train", *SMALL, "--epochs", 1000, "--save-every", 1, "--out", run, FAKE_STEP_SECONDS=0.005
    )
    wait_for_epoch(run, 2, owner)
    owner.kill()
    owner.communicate()
    epoch = checkpoint.load(run)[1]["epoch"]
    assert dl("train", "--epochs", epoch + 1, "--out", run, "--resume") == 0
    err = capsys.readouterr().err
    assert f"was held by process {owner.pid} (`dl train " in err and "taking it over" in err
    assert checkpoint.load(run)[1]["epoch"] == epoch + 1


HOLDER = textwrap.dedent("""
    import fcntl, os, sys
    fd = os.open(os.path.join(sys.argv[1], ".dl.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.pwrite(fd, f"{os.getpid()}\\ndl {sys.argv[2]} --out {sys.argv[1]}\\n".encode(), 0)
    print("ready", flush=True)
    sys.stdin.read()
""")


@pytest.mark.parametrize(
    "kind,args",
    [
        ("train", ["train", "--epochs", 3, "--resume"]),
        ("forecast", ["forecast", "--series", "sunspots", "--epochs", 1]),
        ("sweep", ["sweep", *SIZES, "--hidden", "4,8", "--epochs", 1]),
    ],
)
def test_every_command_refuses_a_directory_another_process_holds(tmp_path, capsys, kind, args):
    out = tmp_path / "out"
    if kind == "train":
        assert dl("train", *SMALL, "--epochs", 1, "--out", out) == 0
    out.mkdir(exist_ok=True)
    before = sorted(p.name for p in out.iterdir())
    holder = subprocess.Popen(  # an OS lock on .dl.lock, held by another process
        [sys.executable, "-c", HOLDER, str(out), kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline() == b"ready\n"
        capsys.readouterr()
        assert dl(*args, "--out", out) == 2
        err = capsys.readouterr().err
        assert f"is in use by process {holder.pid} (`dl {kind} --out {out}`)" in err, err
        assert err.count("\n") == 1
        assert sorted(p.name for p in out.iterdir()) == sorted({*before, ".dl.lock"})
    finally:
        holder.communicate(b"")


def test_language_model_and_forecast_runs_refuse_each_others_directories(tmp_path, capsys):
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 1, "--out", run) == 0
    capsys.readouterr()
    assert dl("forecast", "--series", "sunspots", "--out", run) == 2
    assert "holds a `dl train` run (model.safetensors)" in capsys.readouterr().err
    assert dl("sweep", *SIZES, "--hidden", "4,8", "--epochs", 1, "--out", run) == 2
    assert "holds a `dl train` run" in capsys.readouterr().err
    forecast = tmp_path / "forecast"
    forecast.mkdir()
    (forecast / "forecast.safetensors").write_bytes(b"x")
    assert dl("train", *SMALL, "--epochs", 1, "--out", forecast, "--force") == 2
    assert "holds a `dl forecast` run (forecast.safetensors)" in capsys.readouterr().err
    assert sorted(p.name for p in forecast.iterdir()) == ["forecast.safetensors"]
    assert dl("generate", forecast) == 2
    assert (
        f"{forecast} is a `dl forecast` run, not a language model; use it with "
        f"`dl forecast --from {forecast}`"
    ) in capsys.readouterr().err
    assert dl("forecast", "--from", run) == 2
    assert f"--from {run} is a `dl train` run (a language model)" in capsys.readouterr().err


# ---------------------------------------------------------------- kills, full disks


SAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from dl import checkpoint
    print("ready", flush=True)
    for k in range(1, 10 ** 9):
        params = {"w": np.full((64, 1024), k, np.float32), "b": np.full(7, k, np.float32)}
        checkpoint.save(sys.argv[1], params, {"epoch": k}, optimizer_state={
            "opt.step": np.array(k, np.float32)})
""")


@pytest.mark.slow
def test_a_kill_at_any_moment_of_a_save_leaves_a_checkpoint_that_loads(tmp_path):
    rng = random.Random(0)
    run = tmp_path / "run"
    run.mkdir()
    env = dict(os.environ, PYTHONPATH=str(SRC))
    seen = set()
    for _ in range(6):
        saver = subprocess.Popen(
            [sys.executable, "-c", SAVER, str(run)], stdout=subprocess.PIPE, env=env
        )
        assert saver.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.05, 0.5))
        saver.kill()
        saver.wait()
        if not checkpoint.exists(run):
            continue
        params, state, meta = checkpoint.load_with_optimizer(run)
        k = meta["epoch"]  # weights, state and description all of one save
        assert (params["w"] == k).all() and (params["b"] == k).all()
        assert state["opt.step"] == k
        seen.add(k)
    assert seen  # at least one save completed before a kill


def full_disk_after(monkeypatch, allowed):
    """Every write to a file after the first ``allowed`` fails as on a full disk."""
    real, calls = files.write, []

    def write(f, data):
        calls.append(1)
        if len(calls) > allowed:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(f, data)

    monkeypatch.setattr(files, "write", write)


def test_a_full_disk_keeps_the_last_checkpoint_and_says_which(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 2, "--save-every", 1, "--out", run) == 0
    before = checkpoint.weights_path(run).read_bytes()
    capsys.readouterr()
    full_disk_after(monkeypatch, 1)  # epoch 3's metrics line, then its checkpoint fails
    assert dl("train", "--epochs", 4, "--save-every", 1, "--out", run, "--resume") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Errno" not in err
    assert f"cannot write {run / 'model.safetensors'}: the disk is full; free some space" in err
    assert f"The checkpoint of epoch 2 in {run} is kept; continue with `dl train --out" in err
    assert checkpoint.weights_path(run).read_bytes() == before
    assert not list(run.glob(".*.tmp"))


def test_a_full_disk_in_the_first_epoch_says_nothing_was_saved(tmp_path, monkeypatch, capsys):
    full_disk_after(monkeypatch, 0)
    assert dl("train", *SMALL, "--epochs", 2, "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert "metrics.jsonl: the disk is full" in err and err.endswith("Nothing was saved.\n")


ON_TMPFS = textwrap.dedent("""
    import json, subprocess, sys
    from pathlib import Path
    from dl import checkpoint
    disk, fake, free = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", disk], check=True)
    run = disk / "run"
    dl = [sys.executable, fake, "train", "--save-every", "1", "--out", run]
    first = subprocess.run([*dl, *sys.argv[4:], "--epochs", "2"], capture_output=True)
    assert first.returncode == 0, first.stderr
    metrics = (run / "metrics.jsonl").read_bytes()
    try:  # fill the disk, then free ``free`` bytes of it
        with open(disk / "filler", "wb") as f:
            while True:
                f.write(bytes(4096))
                f.flush()
    except OSError:
        pass
    with open(disk / "filler", "r+b") as f:
        f.truncate(max(0, (disk / "filler").stat().st_size - free))
    resumed = subprocess.run([*dl, "--epochs", "4", "--resume"], capture_output=True, text=True)
    print(json.dumps({
        "status": resumed.returncode,
        "err": resumed.stderr,
        "epoch": checkpoint.load(run)[1]["epoch"],
        "metrics_kept": (run / "metrics.jsonl").read_bytes().startswith(metrics),
        "temporaries": [p.name for p in run.iterdir() if p.name.endswith(".tmp")],
    }))
""")


@pytest.mark.slow
@pytest.mark.parametrize("free", [0, 8192])
def test_a_real_full_disk_keeps_the_last_checkpoint(tmp_path, free):
    """On a 512 KiB tmpfs (in a mount namespace of its own; skipped where the system allows
    none) filled up to ``free`` bytes, a resumed run fails with one line naming the disk, and
    its last checkpoint loads."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("no mount namespace here (unshare -rm) for a tmpfs of its own")
    (tmp_path / "disk").mkdir()
    args = [*SMALL[:-4], "--hidden", "64"]  # checkpoints of about 40 KB: larger than ``free``
    done = subprocess.run(
        [
            "unshare",
            "-rm",
            sys.executable,
            "-c",
            ON_TMPFS,
            *map(str, [tmp_path / "disk", FAKE, free, *args]),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(FAKE.parent)])),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    err = result["err"]
    assert result["status"] == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "the disk is full; free some space" in err and "Errno" not in err
    if free:
        assert "The checkpoint of epoch 2 in " in err and "is kept" in err
    assert result["epoch"] == 2 and result["metrics_kept"] and result["temporaries"] == []


def test_os_errors_say_what_to_do_with_the_path(tmp_path, monkeypatch, capsys):
    no_training(monkeypatch)
    (tmp_path / "file").write_text("x")
    assert dl("train", *SMALL, "--epochs", 1, "--out", tmp_path / "file" / "run") == 2
    assert capsys.readouterr().err == (
        f"dl: error: cannot create the directory {tmp_path / 'file' / 'run'}: a part of the "
        "path is a file, not a directory; choose another path\n"
    )
    assert str(files.explain(OSError(errno.EACCES, "Permission denied"), "/x")) == (
        "cannot write /x: permission denied; choose a directory you can write to, or change "
        "its permissions"
    )


def test_an_out_the_user_cannot_write_says_what_to_do(tmp_path, monkeypatch, capsys):
    no_training(monkeypatch)

    def mkdir(path, mode=0o777):  # as in a directory of another user's (tests may run as root)
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(os, "mkdir", mkdir)
    assert dl("train", *SMALL, "--epochs", 1, "--out", tmp_path / "theirs" / "run") == 2
    assert capsys.readouterr().err == (
        f"dl: error: cannot create the directory {tmp_path / 'theirs' / 'run'}: permission "
        "denied; choose a directory you can write to, or change its permissions\n"
    )


# ---------------------------------------------------------------- metrics.jsonl


def test_a_damaged_metrics_line_is_reported_and_later_records_kept(tmp_path, capsys):
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 4, "--save-every", 2, "--out", run) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[1] = lines[1][:17]  # epoch 2's record cut short
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert dl("train", "--epochs", 6, "--out", run, "--resume") == 0
    err = capsys.readouterr().err
    assert f"{run / 'metrics.jsonl'}: removed damaged line(s) 2, kept 3 record(s)" in err
    assert epochs_of(run) == [1, 3, 4, 5, 6]


def test_resume_drops_only_records_after_the_checkpoint_and_says_so(tmp_path, capsys):
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 4, "--save-every", 2, "--out", run) == 0
    with open(run / "metrics.jsonl", "a") as f:  # epochs 5 and 6 trained, then a kill
        f.write(json.dumps({"epoch": 5}) + "\n" + json.dumps({"epoch": 6})[:5])
    capsys.readouterr()
    assert dl("train", "--epochs", 5, "--out", run, "--resume") == 0
    err = capsys.readouterr().err
    assert "resuming after epoch 4 (the checkpoint's): removed the records of epoch(s) 5" in err
    assert "removed damaged line(s) 6" in err
    assert epochs_of(run) == [1, 2, 3, 4, 5]


def test_a_line_cut_by_a_crash_does_not_swallow_the_next_record(tmp_path):
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 2, "--out", run) == 0
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "train_lo')  # no newline: the process died mid-line
    cli_train.RunDir(run).append_metrics({"epoch": 3})
    records = cli_train.RunDir(run).read_metrics()
    assert [r["epoch"] for r in records] == [1, 2, 3]


# ---------------------------------------------------------------- missing or damaged files


def trained(tmp_path, capsys, val=True):
    run = tmp_path / "run"
    assert (
        dl(
            "train",
            *SMALL,
            "--epochs",
            3,
            "--out",
            run,
            *(["--val-fraction", "0.2"] if val else []),
        )
        == 0
    )
    capsys.readouterr()
    return run


def damage(path):
    path.write_bytes(path.read_bytes()[:100])


def test_a_damaged_best_checkpoint_names_the_healthy_one(tmp_path, capsys):
    run = trained(tmp_path, capsys)
    damage(run / "best.safetensors")
    assert dl("generate", run, "--num", 3) == 2
    err = capsys.readouterr().err
    assert f"{run / 'best.safetensors'}: not a readable safetensors file" in err
    assert f"{run / 'model.safetensors'} (epoch 3) loads: use --checkpoint model" in err
    assert dl("generate", run, "--num", 3, "--checkpoint", "model") == 0
    capsys.readouterr()
    assert dl("train", "--epochs", 4, "--out", run, "--resume") == 0  # best is saved anew
    assert "Moved it to best.safetensors.damaged" in capsys.readouterr().err
    assert checkpoint.load(run, "best")[1]["epoch"] == 4
    assert (run / "best.safetensors.damaged").exists()


def test_a_damaged_latest_checkpoint_names_the_best(tmp_path, capsys):
    run = trained(tmp_path, capsys)
    damage(run / "model.safetensors")
    assert dl("eval", run, "--checkpoint", "model") == 2
    best_epoch = checkpoint.load(run, "best")[1]["epoch"]
    assert (
        f"{run / 'best.safetensors'} (epoch {best_epoch}) loads: use --checkpoint best"
        in capsys.readouterr().err
    )


def test_without_model_safetensors_resume_continues_from_best(tmp_path, capsys):
    run = trained(tmp_path, capsys)
    best_epoch = checkpoint.load(run, "best")[1]["epoch"]
    checkpoint.weights_path(run).unlink()
    assert dl("train", "--epochs", 4, "--out", run, "--resume") == 0
    assert "model.safetensors is missing; resuming from best.safetensors" in (
        capsys.readouterr().err
    )
    assert epochs_of(run) == list(range(1, 5)) and best_epoch <= 3
    assert checkpoint.load(run)[1]["epoch"] == 4


def test_without_checkpoints_resume_says_what_to_do_and_a_new_run_keeps_the_metrics(
    tmp_path, capsys
):
    run = trained(tmp_path, capsys, val=False)
    checkpoint.weights_path(run).unlink()
    assert dl("train", "--epochs", 4, "--out", run, "--resume") == 2
    assert (
        "(metrics.jsonl records 3 epoch(s) whose weights are gone); start the run anew "
        f"with `dl train --out {run}`"
    ) in capsys.readouterr().err
    old = (run / "metrics.jsonl").read_text()
    assert dl("train", *SMALL, "--epochs", 2, "--out", run) == 0
    assert "moved them to" in capsys.readouterr().err
    (aside,) = run.glob("orphaned-*")
    assert (aside / "metrics.jsonl").read_text() == old
    assert epochs_of(run) == [1, 2]


@pytest.mark.parametrize("how", ["missing", "damaged"])
@pytest.mark.parametrize(
    "name", ["model.json", "best.json", "metrics.jsonl", "perplexity.png", ".dl.lock"]
)
def test_a_missing_or_damaged_side_file_leaves_the_run_usable(tmp_path, capsys, name, how):
    run = trained(tmp_path, capsys)
    if how == "missing":
        (run / name).unlink()
    else:
        (run / name).write_bytes(b"\x00\xff{not what it was\n")
    assert dl("generate", run, "--num", 3) == 0
    assert dl("train", "--epochs", 4, "--out", run, "--resume") == 0
    assert checkpoint.load(run)[1]["epoch"] == 4
    if name.endswith("json"):  # the readable descriptions are written anew
        assert json.loads((run / name).read_text())["epoch"] >= 1


def test_a_killed_saves_temporaries_are_removed_by_the_next_owner(tmp_path, capsys):
    run = trained(tmp_path, capsys, val=False)
    (run / ".model.safetensors.x1y2.tmp").write_bytes(b"half")  # as a kill mid-save leaves it
    (run / ".dl.lock").write_text("999999999\ndl train --out run\n")  # its owner never let go
    assert dl("train", "--epochs", 4, "--out", run, "--resume") == 0
    assert "and removing 1 half-written temporary file(s)" in capsys.readouterr().err
    assert half_written(run) == [] and checkpoint.load(run)[1]["epoch"] == 4


def test_nan_weights_are_refused_by_name_not_blamed_on_the_learning_rate(tmp_path, capsys):
    run = trained(tmp_path, capsys, val=False)
    params, state, meta = checkpoint.load_with_optimizer(run)
    params["b_q"][2] = np.nan
    checkpoint.save(run, params, meta, optimizer_state=state)
    assert dl("generate", run) == 2
    err = capsys.readouterr().err
    assert f"{run / 'model.safetensors'}: 1 of its" in err and "(b_q) hold NaN" in err
    assert dl("train", "--epochs", 4, "--out", run, "--resume") == 2
    err = capsys.readouterr().err
    assert "hold NaN or infinite values, so it cannot continue" in err
    assert "learning rate" not in err


def test_a_resumed_runs_relative_text_is_found_or_named_as_the_runs(tmp_path, monkeypatch, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "story.txt").write_text("the cat sat on the mat and looked about\n" * 40)
    monkeypatch.chdir(tmp_path / "a")
    for run in (tmp_path / "one", tmp_path / "two"):
        assert dl("train", *SMALL, "--epochs", 1, "--text", "story.txt", "--out", run) == 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert dl("train", "--epochs", 2, "--out", tmp_path / "one", "--resume") == 0
    assert f"using {tmp_path / 'a' / 'story.txt'}, where it was" in capsys.readouterr().err
    (tmp_path / "a" / "story.txt").rename(tmp_path / "story2.txt")
    assert dl("train", "--epochs", 3, "--out", tmp_path / "two", "--resume") == 2
    assert (
        "was trained on --text story.txt (stored in the run), which is not found from"
        in capsys.readouterr().err
    )


# ---------------------------------------------------------------- checked before training


def no_training(monkeypatch):
    """Fail the test if a batch trains."""

    def train_step(*args):
        raise AssertionError("a batch trained")

    monkeypatch.setattr(fake_backend.FakeTrainer, "train_step", train_step)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--prefix", ""], "--prefix '' holds nothing to continue"),
        (
            ["--prefix", "time", "--prefix", "123"],
            "--prefix '123': none of its chars is in the model's vocabulary of 28",
        ),
        (
            ["--min-freq", "100000"],
            (
                "--min-freq 100000: no token of The Time Machine occurs that "
                "often (the most frequent, 29927 times)"
            ),
        ),
        (["--resume", "--force"], "--resume continues the run in --out and --force overwrites it"),
        (
            ["--val-fraction", "0.99", "--batch-size", "32"],
            (
                "--val-fraction 0.99 leaves 20 of 2,000 tokens for training: a corpus of 20 tokens "
                "cannot make one batch"
            ),
        ),
    ],
)
def test_bad_inputs_are_refused_before_anything_trains(
    tmp_path, capsys, monkeypatch, args, message
):
    no_training(monkeypatch)
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 5, "--out", run, *args) == 2
    assert message in capsys.readouterr().err
    assert not run.exists()


@pytest.mark.parametrize(
    "prefix,message",
    [
        ("", "--prefix '' holds nothing to continue; give a few chars of the text"),
        ("%%", "--prefix '%%': none of its chars is in the model's vocabulary of 28"),
    ],
)
def test_generate_refuses_a_prefix_the_model_cannot_read(tmp_path, capsys, prefix, message):
    run = trained(tmp_path, capsys, val=False)
    assert dl("generate", run, "--prefix", prefix) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_a_prefix_the_resumed_run_cannot_read_is_refused_before_training(
    tmp_path, capsys, monkeypatch
):
    run = trained(tmp_path, capsys, val=False)
    before = (run / "metrics.jsonl").read_bytes()
    no_training(monkeypatch)
    assert dl("train", "--epochs", 6, "--out", run, "--resume", "--prefix", "") == 2
    assert (run / "metrics.jsonl").read_bytes() == before


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["--dropout", "0,0.5"],
            (
                "run dropout=0.5 of the sweep cannot train: --dropout 0.5 "
                "acts between stacked layers"
            ),
        ),
        (["--hidden", "8,8"], "--hidden 8,8 repeats a value; give each value once"),
        (
            ["--hidden", "4,8", "--prefix", "%%"],
            "run hidden=4 of the sweep cannot train: --prefix '%%': none of its chars",
        ),
    ],
)
def test_every_sweep_point_is_checked_before_the_first_trains(
    tmp_path, capsys, monkeypatch, args, message
):
    no_training(monkeypatch)
    out = tmp_path / "sweep"
    assert dl("sweep", *SIZES, "--epochs", 2, "--out", out, *args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_a_sweep_on_another_text_refuses_the_old_texts_runs(tmp_path, capsys):
    out = tmp_path / "sweep"
    texts = []
    for name, words in (("one.txt", "the cat sat on the mat "), ("two.txt", "a dog ran far ")):
        texts.append(tmp_path / name)
        texts[-1].write_text(words * 100)
    sizes = ["--backend", "torch", "--batch-size", "4", "--num-steps", "8", "--epochs", "1"]
    assert dl("sweep", *sizes, "--hidden", "4,8", "--text", texts[0], "--out", out) == 0
    capsys.readouterr()
    assert dl("sweep", *sizes, "--hidden", "4,8", "--text", texts[1], "--out", out) == 2
    assert (
        f"was trained with other --text (it has {texts[0]}, the sweep {texts[1]})"
        in capsys.readouterr().err
    )


# ---------------------------------------------------------------- interruptions


@pytest.mark.slow
def test_ctrl_c_and_sigterm_while_generating_end_with_one_line(tmp_path, capsys):
    run = trained(tmp_path, capsys, val=False)
    for sig, status in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        process = spawn("generate", run, "--num", 10000, FAKE_STEP_SECONDS=0.01)
        time.sleep(3)
        process.send_signal(sig)
        _, err = process.communicate(timeout=60)
        assert process.returncode == status, err
        assert err.strip().count("\n") == 0 and "Traceback" not in err, err
        assert "stopped, nothing half-written" in err


def test_ctrl_c_while_a_framework_imports_ends_with_one_line_and_no_directory(tmp_path):
    run = tmp_path / "run"
    process = spawn("train", *SMALL, "--epochs", 2, "--out", run, FAKE_IMPORT_SECONDS=60)
    deadline = time.monotonic() + 30
    while not (run / ".dl.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the run's directory is locked: start-up reached the backend
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.strip() == "dl: interrupted (Ctrl-C); stopped, nothing half-written"
    assert not run.exists()


SLOW_START = textwrap.dedent("""
    import sys, time
    class Slow:  # the command line's first module takes its time to import
        def find_spec(self, name, path=None, target=None):
            if name == "argparse":
                print("importing", flush=True)
                time.sleep(60)
    sys.meta_path.insert(0, Slow())
    from dl.__main__ import entry_point
    sys.argv = ["dl", "train", "--epochs", "1"]
    entry_point()
""")


@pytest.mark.parametrize(
    "sig,status,what",
    [(signal.SIGINT, 130, "interrupted (Ctrl-C)"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
)
def test_a_signal_while_dl_itself_starts_ends_with_one_line(sig, status, what):
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_START],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(SRC)),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stdout.readline() == "importing\n"
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    assert err.strip() == f"dl: {what}; stopped, nothing half-written"


def sine_csv(path):
    path.write_text("y\n" + "".join(f"{np.sin(i / 5):.4f}\n" for i in range(200)))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("sig,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("command", ["train", "eval", "sweep", "forecast", "bench"])
def test_a_signal_in_any_command_ends_it_with_one_line(tmp_path, capsys, command, sig, status):
    """``command`` signalled while it works (a framework importing, evaluating, a sweep's run
    training, a forecaster training, a benchmark measuring in its worker)."""
    if command in ("forecast", "bench"):
        pytest.importorskip("torch")
    run = trained(tmp_path, capsys, val=False) if command == "eval" else tmp_path / "run"
    args, env, ready = {
        "train": (["train", *SMALL, "--epochs", 2, "--out", run], {"FAKE_IMPORT_SECONDS": 60}, 2),
        "eval": (["eval", run, "--text", FAKE], {"FAKE_STEP_SECONDS": 0.5}, 2),
        "sweep": (
            ["sweep", *SIZES, "--hidden", "4,8", "--epochs", 1000, "--out", run],
            {"FAKE_STEP_SECONDS": 0.005},
            5,
        ),
        "forecast": (
            ["forecast", "--csv", sine_csv(tmp_path / "sine.csv"), "--column", "y"]
            + ["--backend", "torch", "--epochs", 100000, "--patience", 100000, "--out", run],
            {},
            8,
        ),
        "bench": (
            ["bench", "--backends", "torch", "--cells", "rnn", "--hidden", 8]
            + ["--data", "random", "--batches", 100000, "--out", run],
            {},
            10,
        ),
    }[command]
    process = spawn(*args, **env)
    time.sleep(ready)
    assert process.poll() is None, process.communicate()
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    assert process.returncode == status, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert half_written(tmp_path) == []
    if command == "sweep":
        assert "sweep interrupted in hidden=4; run it again to resume" in out
        assert checkpoint.load(run / "hidden=4")[1]["epoch"] >= 1
    if command == "forecast":
        assert dl("forecast", "--from", run) == 0
    if command == "bench":
        assert run.is_dir() and not list(run.iterdir())  # measuring had begun; no report


@pytest.mark.slow
@pytest.mark.parametrize(
    "ignored, other, status",
    [(signal.SIGINT, signal.SIGTERM, 143), (signal.SIGTERM, signal.SIGINT, 130)],
    ids=["sigint", "sigterm"],
)
def test_a_run_started_with_a_signal_ignored_keeps_training_through_it(
    tmp_path, ignored, other, status
):
    """``nohup dl train ... &``: a signal ignored when dl started is not for it (Ctrl-C in the
    terminal, or an inherited ignore of SIGTERM); the other still stops it and saves."""
    run = tmp_path / "run"
    args = ["train", *SMALL, "--epochs", 1000, "--save-every", 1, "--out", run]
    ignore = {f"ignore_{ignored.name.lower()}": True}
    process = spawn(*args, **ignore, FAKE_STEP_SECONDS=0.005)
    try:
        wait_for_epoch(run, 1, process)
        process.send_signal(ignored)
        reached = checkpoint.load(run)[1]["epoch"]
        wait_for_epoch(run, reached + 2, process)  # still training, two epochs later
    finally:
        process.send_signal(other)
        _, err = process.communicate(timeout=60)
    assert process.returncode == status, err  # the other signal's status: the ignored did nothing
    assert "is saved in" in err


# ---------------------------------------------------------------- messages


@pytest.mark.parametrize(
    "args,line",
    [
        (
            ["train", "--cell", "transformer"],
            "dl train: error: argument --cell: 'transformer' is not one of rnn, gru, lstm; see "
            "`dl train --help`",
        ),
        (
            ["eval", "run", "--bogus", "1"],
            "dl eval: error: unrecognized arguments: --bogus 1; see `dl eval --help`",
        ),
        (["sweep", "--hidden", "8,x"], "dl sweep: error: argument --hidden: 'x' is not a whole"),
        (["trian"], "dl: error: argument COMMAND: invalid choice: 'trian' (choose from 'train',"),
    ],
)
def test_option_errors_are_one_line_without_the_usage_block(capsys, args, line):
    with pytest.raises(SystemExit) as exit:
        dl(*args)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1, err


def test_eval_counts_unknown_tokens_among_those_it_predicts(tmp_path, capsys):
    run = tmp_path / "run"
    assert dl("train", *SMALL, "--epochs", 1, "--token", "book-word", "--out", run) == 0
    text = tmp_path / "other.txt"
    text.write_text("zebra quokka wombat\n" * 30)  # 90 words, none in the vocabulary
    capsys.readouterr()
    assert dl("eval", run, "--text", text, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] == 88  # 89 to predict, in 8 rows of 11: one left over
    assert result["unknown_tokens"] == 88


@pytest.mark.parametrize(
    "row,message",
    [
        ("1e308", "the value 1e+308 (step 29) is too large to compute with"),
        ("", "fill them, remove those rows, or pass --interpolate to fill them"),
    ],
)
def test_forecast_csv_values_are_refused_in_the_commands_words(tmp_path, capsys, row, message):
    csv = tmp_path / "series.csv"
    csv.write_text("t,y\n" + "".join(f"{i},{row if i == 30 else i % 7}\n" for i in range(1, 61)))
    assert dl("forecast", "--csv", csv, "--column", "y", "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Warning" not in err


def test_forecast_fractions_are_named_by_their_flags(tmp_path, capsys):
    assert (
        dl(
            "forecast",
            "--series",
            "sunspots",
            "--val-fraction",
            "0.7",
            "--test-fraction",
            "0.29",
            "--out",
            tmp_path / "out",
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "or a smaller --val-fraction or --test-fraction" in err and "_fraction" not in err


@pytest.mark.slow
@pytest.mark.parametrize("level", [None, "3"])
def test_tensorflow_starts_without_log_lines(tmp_path, level):
    """Importing TensorFlow prints nothing, and its backend's own error is the only line, with
    or without ``TF_CPP_MIN_LOG_LEVEL`` (its start-up lines come before any level applies)."""
    pytest.importorskip("tensorflow")
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(
        PYTHONPATH=str(SRC),
        CUDA_VISIBLE_DEVICES="",
        **({"TF_CPP_MIN_LOG_LEVEL": level} if level else {}),
    )
    imported = subprocess.run(
        [sys.executable, "-c", "import dl.tensorflow"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert imported.returncode == 0 and imported.stderr == ""
    refused = subprocess.run(
        [sys.executable, "-m", "dl", "train", *SIZES[2:], "--backend", "tensorflow"]
        + ["--device", "gpu", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert refused.returncode == 2 and not (tmp_path / "run").exists()
    assert (
        refused.stderr
        == "dl: error: device 'gpu': TensorFlow sees 0 GPU(s) here; use --device cpu\n"
    )


class Stopping:
    """A NumPy forecaster interrupted in training step ``stop_at`` (one step an epoch with a
    large --batch-size); each step adds 1 to ``b_q``, so the weights tell their epoch."""

    stop_at, interruption = 5, KeyboardInterrupt
    device_name = "np"

    def __init__(self, config, params):
        self.config, self.params, self.steps = config, dict(params), 0

    def make_step(self, optimizer, clip):
        def step(X, Y):
            self.steps += 1
            if self.steps == Stopping.stop_at:
                raise Stopping.interruption
            self.params["b_q"] = self.params["b_q"] + 1
            return 0.5

        return step

    def predict(self, X):
        return np.full((len(X), self.config.num_outputs), np.sin(self.steps), np.float32)

    def numpy_params(self):
        return {k: v.copy() for k, v in self.params.items()}

    def load(self, params):
        self.params = dict(params)

    def reseed(self, seed):
        pass


@pytest.mark.parametrize(
    "interruption,status", [(KeyboardInterrupt, 130), (signals.Terminated, 143)]
)
def test_an_interrupted_forecast_saves_its_best_epoch(
    tmp_path, capsys, monkeypatch, interruption, status
):
    from dl.cli import forecast as cli_forecast

    monkeypatch.setattr(cli_forecast, "builder", lambda backend, device: Stopping)
    monkeypatch.setattr(Stopping, "interruption", interruption)
    csv = tmp_path / "sine.csv"
    csv.write_text("y\n" + "".join(f"{np.sin(i / 5):.4f}\n" for i in range(200)))
    out = tmp_path / "run"
    assert (
        dl(
            "forecast",
            "--csv",
            csv,
            "--column",
            "y",
            "--window",
            12,
            "--horizon",
            3,
            "--batch-size",
            1000,
            "--epochs",
            50,
            "--out",
            out,
        )
        == status
    )
    err = capsys.readouterr().err
    params, meta = checkpoint.load(out, "forecast")
    best = meta["best_epoch"]
    assert meta["interrupted"] == "after epoch 4" and 1 <= best <= 4
    assert f"after epoch 4: saved the weights of its best epoch {best} in " in err
    assert f"score and forecast with them by `dl forecast --from {out}`" in err
    init = lm.init_params(cli_forecast.core.ForecastConfig.from_dict(meta["model"]), 0)
    np.testing.assert_array_equal(params["b_q"], init["b_q"] + best)
    assert dl("forecast", "--from", out) == 0
