"""A run directory: checkpoints (``model.*`` latest, ``best.*`` best validation loss),
``metrics.jsonl`` (one JSON object per epoch, appended) and ``perplexity.png``; owned by one
process at a time through the lock file ``.dl.lock``."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shlex
import sys
import time
from pathlib import Path

from dl import checkpoint
from dl.errors import InputError
from dl.files import (
    append_line,
    atomic_write,
    explain,
    make_directory,
    remove_temporaries,
)

RUN_FILES = (
    "model.safetensors",
    "model.json",
    "best.safetensors",
    "best.json",
    "metrics.jsonl",
    "perplexity.png",
)
# the files that tell what made a directory
KINDS = {
    "dl train": RUN_FILES,
    "dl forecast": ("forecast.safetensors", "forecast.json", "forecast.png"),
    "dl sweep": ("sweep.csv", "sweep.md", "sweep.png"),
}
LOCK = ".dl.lock"  # the owner's PID and command line, while it runs


class RunDirError(InputError):
    """The run directory cannot be used as asked."""


def note(line: str) -> None:
    """A one-line remark about the run directory, on stderr."""
    print(f"dl: note: {line}", file=sys.stderr, flush=True)


def refuse_other_kind(path: Path, kind: str, option: str = "--out") -> None:
    """Refuse a directory that holds the files of another kind of run than ``kind``."""
    for other, names in KINDS.items():
        found = [name for name in names if other != kind and (path / name).exists()]
        if found:
            raise RunDirError(
                f"{option} {path} holds a `{other}` run ({found[0]}), not a "
                f"`{kind}` one; choose another {option}"
            )


_held: dict[Path, int] = {}  # directory -> descriptor of its locked .dl.lock


@contextlib.contextmanager
def locked(path: str | os.PathLike, kind: str, create: bool = True, option: str = "--out"):
    """Own the directory ``path`` while the block runs: an OS lock (``flock``) on its
    ``.dl.lock``, which the system releases however the process ends; a second owner is
    refused naming the first one's PID. ``create``: make the directory (removed again if the
    block fails and left nothing in it). A lock left by a killed process is taken over, and
    the temporaries it left are removed, with a note."""
    path = Path(path)
    key = path.resolve()
    if key in _held:  # this process owns it already (a sweep's run, a test's second call)
        yield
        return
    created = create and not path.exists()
    if create:
        make_directory(path, option)
    elif not path.is_dir():
        raise RunDirError(f"{option} {path}: no such directory")
    refuse_other_kind(path, kind, option)
    _held[key] = _acquire(path / LOCK, kind, option)
    try:
        yield
    except BaseException:
        _release(key)
        if created and [p.name for p in path.iterdir()] == [LOCK]:
            (path / LOCK).unlink()
            path.rmdir()
        raise
    _release(key)


def _acquire(lock: Path, kind: str, option: str) -> int:
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as err:
        raise explain(err, lock, "create the lock file") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid, command = _owner(fd)
        os.close(fd)
        raise RunDirError(
            f"{option} {lock.parent} is in use by process {pid} (`{command}`); wait for it to "
            f"finish or stop it (kill {pid}), or choose another {option}"
        ) from None
    pid, command = _owner(fd)
    if pid:
        left = remove_temporaries(lock.parent)
        note(
            f"{lock.parent} was held by process {pid} (`{command}`), which ended without "
            f"letting go (killed?); taking it over"
            + (f" and removing {len(left)} half-written temporary file(s)" if left else "")
        )
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{_command_line(kind)}\n".encode(), 0)
    except OSError as err:  # a full disk: nothing of the run is touched yet
        os.close(fd)
        raise explain(err, lock) from None
    return fd


def _command_line(kind: str) -> str:
    """This process's ``dl`` command line, or ``kind`` where ``dl`` runs inside another
    program (a test, a notebook)."""
    args = sys.argv[1:]
    return shlex.join(["dl", *args]) if args[:1] == kind.split()[1:] else kind


def _owner(fd: int) -> tuple[str, str]:
    """``(pid, command line)`` written in a lock file, empty strings if none."""
    text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
    pid, _, command = text.partition("\n")
    return pid.strip(), command.strip()


def _release(key: Path) -> None:
    fd = _held.pop(key)
    os.ftruncate(fd, 0)  # an empty lock file: released cleanly
    os.close(fd)


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.metrics_path = self.path / "metrics.jsonl"
        self.plot_path = self.path / "perplexity.png"

    def holds_run(self) -> bool:
        return any((self.path / name).exists() for name in RUN_FILES)

    def holds_checkpoint(self) -> bool:
        return checkpoint.exists(self.path) or checkpoint.exists(self.path, "best")

    def prepare(self, force: bool) -> None:
        """Ready the (locked) directory for a new run: refuse one holding another run's
        checkpoint unless ``force`` (which removes that run's files, nothing else); files of
        a run whose checkpoints are gone are moved aside, not deleted."""
        if self.holds_checkpoint():
            if not force:
                raise RunDirError(
                    f"--out {self.path} already holds a run; continue it with --resume, "
                    "overwrite it with --force, or choose another --out"
                )
            for name in RUN_FILES:
                (self.path / name).unlink(missing_ok=True)
        elif self.holds_run():
            self._move_aside()

    def _move_aside(self) -> None:
        aside = self.path / time.strftime("orphaned-%Y%m%d-%H%M%S")
        make_directory(aside)
        moved = [name for name in RUN_FILES if (self.path / name).exists()]
        for name in moved:
            os.replace(self.path / name, aside / name)
        note(
            f"{self.path} held {', '.join(moved)} of a run whose checkpoints are gone; moved "
            f"them to {aside} and starting a new run"
        )

    def resume_stem(self, needs_optimizer_state: bool = False) -> str:
        """The checkpoint a resume continues: ``model``, or ``best`` (with a note) when the
        latest is gone; refuses, saying what to do, when there is neither."""
        if checkpoint.exists(self.path):
            return "model"
        missing = f"{checkpoint.weights_path(self.path)} is missing"
        if checkpoint.exists(self.path, "best"):
            note(f"{missing}; resuming from best.safetensors, the best epoch kept")
            return "best"
        epochs = len(self.read_metrics())
        if epochs:
            raise RunDirError(
                f"--resume: {missing} (metrics.jsonl records {epochs} epoch(s) "
                "whose weights are gone); start the run anew with "
                f"`dl train --out {self.path}` (the old metrics are moved aside)"
            )
        raise RunDirError(
            f"--resume: {self.path} holds no checkpoint (model.safetensors); "
            "start the run without --resume"
        )

    def check_best(self, epoch: int, step: int | None = None) -> bool:
        """Keep ``best.*`` only if it loads and comes from epoch ``epoch`` (update ``step``,
        where both record it) or before (a resume trains the later ones again and saves their
        best anew); a damaged one is moved aside with a note. Returns whether ``best.*`` was
        damaged."""
        if not checkpoint.exists(self.path, "best"):
            return False
        try:
            meta = checkpoint.load(self.path, "best")[1]
            best_epoch, best_step = meta["epoch"], meta.get("position", {}).get("step")
        except (checkpoint.CheckpointError, KeyError, TypeError) as err:
            damaged = self.path / "best.safetensors.damaged"
            os.replace(checkpoint.weights_path(self.path, "best"), damaged)
            (self.path / "best.json").unlink(missing_ok=True)
            note(
                f"{err}. Moved it to {damaged.name}; the best of the epochs trained from now "
                "on is saved as best.safetensors"
            )
            return True
        if best_epoch > epoch if best_step is None or step is None else best_step > step:
            for name in ("best.safetensors", "best.json"):
                (self.path / name).unlink(missing_ok=True)
        return False

    def _scan(self) -> tuple[list[dict], list[int]]:
        """``(records, numbers of damaged lines)`` of ``metrics.jsonl``."""
        if not self.metrics_path.exists():
            return [], []
        records, damaged = [], []
        text = self.metrics_path.read_bytes().decode("utf-8", "replace")
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                records.append(record)
            else:
                damaged.append(number)
        return records, damaged

    def read_metrics(self) -> list[dict]:
        """The records of ``metrics.jsonl``; damaged lines are skipped with a note naming
        them (every valid record counts, before and after them)."""
        records, damaged = self._scan()
        if damaged:
            note(f"{self.metrics_path}: skipped damaged line(s) {_numbers(damaged)}")
        return records

    def keep_metrics_until(
        self, epoch: int, step: int | None = None, where: str | None = None
    ) -> list[dict]:
        """Drop the records after ``epoch`` (after update ``step`` where a record has one:
        those that a resume trains again) and damaged lines, saying so; the file is rewritten
        only when one of them is there. ``where``: the checkpoint's position, for the note."""
        records, damaged = self._scan()

        def after(r):
            return r["epoch"] > epoch if step is None or "step" not in r else r["step"] > step

        kept = [r for r in records if not after(r)]
        later = sorted({r["epoch"] for r in records if after(r)})
        if later or damaged:
            atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in kept))
        if later:
            note(
                f"resuming after {where or f'epoch {epoch}'} (the checkpoint's): removed the "
                "records of "
                f"epoch(s) {_numbers(later)} from {self.metrics_path}; they are trained again"
            )
        if damaged:
            note(
                f"{self.metrics_path}: removed damaged line(s) {_numbers(damaged)}, kept "
                f"{len(kept)} record(s)"
            )
        return kept

    def append_metrics(self, record: dict) -> None:
        append_line(self.metrics_path, json.dumps(record))

    def plot(self, records: list[dict]) -> bool:
        """Write ``perplexity.png`` (training and validation curves); False without matplotlib."""
        import importlib.util

        if importlib.util.find_spec("matplotlib") is None:
            return False
        from dl.progress import Animator

        has_val = any(r.get("val_perplexity") is not None for r in records)
        animator = Animator(
            xlabel="epoch",
            ylabel="perplexity",
            yscale="log",
            figsize=(5, 3.5),
            legend=["train", "validation"] if has_val else ["train"],
        )
        for r in records:
            points = [r.get("train_perplexity")] + ([r.get("val_perplexity")] if has_val else [])
            animator.add(
                r.get("epochs", r["epoch"]),  # a record within an epoch: its fraction
                [p if isinstance(p, (int, float)) and math.isfinite(p) else None for p in points],
            )
        animator.savefig(self.plot_path)
        return True


def _numbers(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers[:10])) + (
        f" and {len(numbers) - 10} more" if len(numbers) > 10 else ""
    )
