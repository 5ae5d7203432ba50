"""`dl.cli.main`: a mistake of the user's ends in one line and exit status 2; a bug in dl in its
traceback, a line saying it is a bug and where to report it, and exit status 1."""

import errno

import pytest

from dl import checkpoint
from dl.cli import BUG_LINE, main, user_message
from dl.errors import InputError
from dl.files import atomic_write


def run_generate_raising(monkeypatch, tmp_path, error):
    """``dl generate RUN`` where reading the checkpoint raises ``error``; its exit status."""

    def load(*args, **kwargs):
        raise error

    monkeypatch.setattr(checkpoint, "load", load)
    return main(["generate", str(tmp_path)])


@pytest.mark.parametrize(
    "error",
    [
        KeyError("W_xi"),
        ValueError("a plain ValueError is dl's own"),
        TypeError("unsupported operand"),
        OSError("an OS error about no file of the user's"),
        OSError(errno.ENOENT, "No such file or directory"),  # no filename: not the user's file
        FloatingPointError("overflow"),
    ],
)
def test_a_bug_prints_its_traceback_and_says_it_is_a_bug(monkeypatch, tmp_path, capsys, error):
    assert run_generate_raising(monkeypatch, tmp_path, error) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert err[-2] == f"{type(error).__name__}: {error}"
    assert err[-1] == BUG_LINE
    assert "bug in dl" in BUG_LINE and "report it" in BUG_LINE
    assert not any(line.startswith("dl: error:") for line in err)


@pytest.mark.parametrize(
    "error,line",
    [
        (InputError("--text x.txt: say what to do"), "--text x.txt: say what to do"),
        (
            checkpoint.CheckpointError("run/model.safetensors: damaged"),
            "run/model.safetensors: damaged",
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "run/model.json"),
            "run/model.json: No such file or directory",
        ),
        (PermissionError(errno.EACCES, "Permission denied", "runs"), "runs: Permission denied"),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "my.txt"), "my.txt: Is a directory"),
        (
            OSError(errno.ENOSPC, "No space left on device", "runs/x/model.safetensors"),
            "runs/x/model.safetensors: No space left on device",
        ),
    ],
)
def test_the_users_mistake_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys, error, line):
    assert run_generate_raising(monkeypatch, tmp_path, error) == 2
    assert capsys.readouterr().err == f"dl: error: {line}\n"


def test_bad_option_values_checked_below_argparse_are_one_line(tmp_path, capsys):
    assert main(["generate", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err == (
        f"dl: error: {tmp_path / 'nothing'}: no such run "
        "directory; give the --out directory of a `dl train` run\n"
    )
    assert main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dl: error: {tmp_path / 'model.safetensors'}: no checkpoint there")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_full_disk_names_the_file_being_written(monkeypatch, tmp_path):
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("os.fsync", fsync)
    target = tmp_path / "model.json"
    with pytest.raises(OSError) as info:
        atomic_write(target, "{}")
    assert user_message(info.value) == (
        f"cannot write {target}: the disk is full; free some "
        "space (or choose an --out on another disk) and run "
        "the command again"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_text_file_the_user_named_is_reported_by_name(tmp_path):
    from dl.data.text import read_text_file

    for path, message in (
        (tmp_path / "missing.txt", "no such file; check the path"),
        (tmp_path, "is a directory; pass a text file"),
    ):
        with pytest.raises(OSError) as info:
            read_text_file(path)
        assert user_message(info.value) == f"{path}: {message}"


def test_a_usage_error_of_a_command_is_one_line(capsys):
    assert main(["forecast"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dl: error: dl forecast needs a series: --series ")
    assert len(err.splitlines()) == 1


def test_every_error_type_a_user_can_cause_is_an_input_error():
    from dl.cli.backends import BackendError
    from dl.cli.bench import BenchError
    from dl.cli.options import UsageError
    from dl.cli.rundir import RunDirError
    from dl.cli.train import TrainingDiverged
    from dl.data.series import SeriesError
    from dl.errors import MissingDependencyError
    from dl.forecast import ForecastDivergedError

    for error in (
        BackendError,
        BenchError,
        UsageError,
        RunDirError,
        TrainingDiverged,
        SeriesError,
        checkpoint.CheckpointError,
        ForecastDivergedError,
        MissingDependencyError,
    ):
        assert issubclass(error, InputError), error
    assert issubclass(MissingDependencyError, ImportError)
