"""What ``dl train`` needs for long runs beside its loop: where a run stands (:class:`Position`,
saved in every checkpoint so a resume continues from the middle of an epoch), the schedule and
plateau settings checked against the run's length (:func:`plan`), and when to evaluate, save
and stop (:class:`Cadence`, a few comparisons after each update)."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from dl.cli.options import UsageError
from dl.errors import InputError
from dl.optim import Plateau, ScheduleConfig


@dataclasses.dataclass
class Position:
    """Where a run stands: ``epoch`` epochs done, ``batch`` batches of the next one done,
    ``step`` updates in all; ``loss_sum`` and ``num_tokens``: that next epoch's training loss
    summed so far (as synced from the device) and its tokens."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    num_tokens: int = 0

    @classmethod
    def of(cls, meta: dict) -> Position:
        """The position of a checkpoint's ``meta`` (one saved before positions: its epoch)."""
        epoch = meta.get("epoch", 0)
        return cls(epoch, **meta.get("position", {}))

    def to_meta(self) -> dict:
        """``meta['position']``: all but the epoch, which is ``meta['epoch']``."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "epoch"}

    def describe(self) -> str:
        """``'epoch 3'`` at an epoch's end, ``'epoch 4 step 17'`` (batches done) within one."""
        return f"epoch {self.epoch + 1} step {self.batch}" if self.batch else f"epoch {self.epoch}"


def step_seed(seed: int, epoch: int, batch: int) -> int:
    """The dropout seed of batch ``batch`` (from 0) of epoch ``epoch``: a function of the three
    alone, so a run cut anywhere draws the same masks when resumed."""
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1)[0])


def plan(
    settings: dict, num_batches: int, meta: dict, has_val: bool
) -> tuple[ScheduleConfig, Plateau]:
    """The run's learning-rate schedule and plateau, their options checked (one-line
    :class:`UsageError` naming the option; ``has_val``: whether the run holds out validation
    tokens). The cosine spans ``--epochs`` x ``num_batches`` updates as the run started (a
    resume keeps the span its checkpoint records)."""
    s = settings
    for flag, name in (
        ("--patience", "patience"),
        ("--plateau-factor", "plateau_factor"),
        ("--eval-every", "eval_every"),
    ):
        if s[name] and not has_val:
            raise UsageError(
                f"{flag} {s[name]} works on the validation loss, and the run holds out none; "
                "give --val-fraction (e.g. 0.1) or --val-text FILE"
            )
    if s["plateau_patience"] and not s["plateau_factor"]:
        raise UsageError(
            f"--plateau-patience {s['plateau_patience']} counts evaluations before a plateau "
            "cut; give --plateau-factor (e.g. 0.25) too"
        )
    if s["min_lr_fraction"] and s["schedule"] != "cosine":
        raise UsageError(
            f"--min-lr-fraction {s['min_lr_fraction']} is where a cosine ends; give "
            "--schedule cosine, or leave it out"
        )
    if s["min_lr_fraction"] > 1:
        raise UsageError(
            f"--min-lr-fraction {s['min_lr_fraction']}: give a fraction of --lr from 0 to 1"
        )
    total = s["epochs"] * num_batches
    cosine = s["schedule"] == "cosine"
    if s["warmup"] > total or (cosine and s["warmup"] == total):
        raise UsageError(
            f"--warmup {s['warmup']} is not shorter than the run's {total:,} updates "
            f"({s['epochs']} epochs of {num_batches:,} batches); give a shorter --warmup or "
            "more --epochs"
        )
    stored = meta.get("schedule")
    try:
        schedule = (
            ScheduleConfig(**stored)
            if stored
            else ScheduleConfig(s["schedule"], s["warmup"], total, s["min_lr_fraction"])
        )
    except InputError as err:
        raise UsageError(f"--schedule {s['schedule']}: {err}") from None
    plateau = Plateau(s["plateau_factor"], s["plateau_patience"], **meta.get("plateau", {}))
    return schedule, plateau


class Cadence:
    """When to evaluate, save and stop, from ``--eval-every`` (updates), ``--save-every-steps``,
    ``--save-minutes`` and ``--max-time`` (seconds from now), and when a progress bar is
    refreshed (every ``refresh`` seconds, or never)."""

    def __init__(self, eval_every, save_every_steps, save_minutes, max_time, refresh=None):
        now = time.monotonic()
        self.eval_every, self.save_every_steps = eval_every, save_every_steps
        self.save_seconds = save_minutes * 60 if save_minutes else None
        self.deadline = now + max_time if max_time is not None else math.inf
        self.next_save = now + self.save_seconds if self.save_seconds else math.inf
        self.refresh = refresh
        self.next_refresh = now + refresh if refresh else math.inf
        self.timed = self.deadline < math.inf or self.next_save < math.inf or bool(refresh)

    def evaluate(self, step: int) -> bool:
        return bool(self.eval_every) and step % self.eval_every == 0

    def save(self, step: int, now: float) -> bool:
        """Whether a checkpoint is due after update ``step``; a timed one restarts the clock."""
        return self.timed_save(now) or self.step_save(step)

    def timed_save(self, now: float) -> bool:
        """Whether ``--save-minutes`` has passed since the last timed save (restarts it)."""
        if now >= self.next_save:
            self.next_save = now + self.save_seconds
            return True
        return False

    def step_save(self, step: int) -> bool:
        return bool(self.save_every_steps) and step % self.save_every_steps == 0

    def out_of_time(self, now: float) -> bool:
        return now >= self.deadline

    def refresh_due(self, now: float) -> bool:
        if now >= self.next_refresh:
            self.next_refresh = now + self.refresh
            return True
        return False
