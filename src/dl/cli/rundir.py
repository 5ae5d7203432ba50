"""A run directory: checkpoints (``model.*`` latest, ``best.*`` best validation loss),
``metrics.jsonl`` (one JSON object per epoch) and ``perplexity.png``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from dl import checkpoint
from dl.errors import InputError
from dl.files import atomic_write

RUN_FILES = ("model.safetensors", "model.json", "best.safetensors", "best.json",
             "metrics.jsonl", "perplexity.png")


class RunDirError(InputError):
    """The run directory cannot be used as asked."""


class RunDir:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.metrics_path = self.path / "metrics.jsonl"
        self.plot_path = self.path / "perplexity.png"

    def holds_run(self) -> bool:
        return any((self.path / name).exists() for name in RUN_FILES)

    def prepare(self, resume: bool, force: bool) -> None:
        """Create the directory; refuse one holding another run unless resuming or forced
        (``force`` removes that run's files, nothing else)."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"--out {self.path} is a file; give a directory for the run")
        if resume:
            if not checkpoint.exists(self.path):
                raise RunDirError(f"--resume: {self.path} holds no checkpoint "
                                  "(model.safetensors); start the run without --resume")
            return
        if self.holds_run():
            if not force:
                raise RunDirError(
                    f"--out {self.path} already holds a run; continue it with --resume, "
                    "overwrite it with --force, or choose another --out")
            for name in RUN_FILES:
                (self.path / name).unlink(missing_ok=True)
        self.path.mkdir(parents=True, exist_ok=True)

    def drop_best_after(self, epoch: int) -> None:
        """Remove ``best.*`` if it comes from an epoch after ``epoch`` (one a resume trains
        again: the best of the replayed epochs is saved anew)."""
        if checkpoint.exists(self.path, "best") and checkpoint.load(self.path, "best")[1][
                "epoch"] > epoch:
            for name in ("best.safetensors", "best.json"):
                (self.path / name).unlink(missing_ok=True)

    def read_metrics(self) -> list[dict]:
        if not self.metrics_path.exists():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash: the ones before it count
                break
        return records

    def keep_metrics_until(self, epoch: int) -> list[dict]:
        """Drop records after ``epoch`` (those of epochs that a resume trains again)."""
        records = [r for r in self.read_metrics() if r["epoch"] <= epoch]
        atomic_write(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records))
        return records

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def plot(self, records: list[dict]) -> bool:
        """Write ``perplexity.png`` (training and validation curves); False without matplotlib."""
        import importlib.util
        if importlib.util.find_spec("matplotlib") is None:
            return False
        from dl.progress import Animator

        has_val = any(r.get("val_perplexity") is not None for r in records)
        animator = Animator(xlabel="epoch", ylabel="perplexity", yscale="log", figsize=(5, 3.5),
                            legend=["train", "validation"] if has_val else ["train"])
        for r in records:
            points = [r["train_perplexity"]] + ([r.get("val_perplexity")] if has_val else [])
            animator.add(r["epoch"], [p if p is not None and math.isfinite(p) else None
                                      for p in points])
        animator.savefig(self.plot_path)
        return True
