"""``dl train`` on several processes: ``torchrun --nproc-per-node N -m dl train ...`` (or any
launcher that sets torch.distributed's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``) trains data-parallel on the PyTorch engine
(:class:`dl.torch.engine.TorchTrainer` sums gradients over the processes), or, with
``--backend jax``, on JAX's (:mod:`dl.cli.distributed_jax`: ``jax.distributed``, one mesh
over every process's devices).

:func:`world` reads the launcher's environment; :meth:`World.start` starts the process group
(gloo on CPUs, NCCL on GPUs, one GPU per process; JAX: gloo on CPUs) within a timeout. Every
process draws the same global batch and trains on its own rows of it (:meth:`World.rows`), so
``--batch-size`` means the same optimisation on any number of processes. Rank 0 alone writes
(checkpoints, metrics, plots, output); :meth:`World.agree` makes every process stop together
with rank 0's one message on a bad input anywhere, and :class:`Lockstep` carries the stop flags
(Ctrl-C, SIGTERM, ``--max-time``, a timed save) with each update's gradients, so every process
acts on them after the same update and none waits in a collective for one that left.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys

import numpy as np

from dl.cli.options import UsageError
from dl.errors import InputError
from dl.validate import parse_device

LAUNCHER = "torchrun"
FRAMEWORKS = ("torch", "jax")  # the backends dl train trains across processes on


class Reported(UsageError):
    """A bad input that rank 0 reports for every process: this one exits 2 saying nothing."""

    reported_elsewhere = True


class PeerLost(UsageError):
    """A collective failed: another process of the run ended (killed, crashed) or hangs."""


@dataclasses.dataclass
class World:
    """This process's place in the run: ``rank`` of ``size`` processes, ``local_rank`` of
    ``local_size`` on this machine (one process, rank 0 of 1, without a launcher)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    gpu: bool = False  # the process group's: NCCL on GPUs, else gloo
    framework: str = "torch"  # whose collectives: torch.distributed's or jax.distributed's

    @property
    def active(self) -> bool:
        return self.size > 1

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory and prints (rank 0)."""
        return self.rank == 0

    def check(self, settings: dict) -> None:
        """Refuse settings this world cannot train (before the process group starts)."""
        if not self.active:
            return
        backend = settings["backend"]
        if backend not in FRAMEWORKS:
            raise UsageError(
                f"{self.size} processes ({LAUNCHER}): dl train trains across processes on "
                f"--backend torch or jax, not {backend}; give one of them, or start one "
                "process (with --devices N for several devices)"
            )
        if backend != self.framework:
            raise UsageError(
                f"{self.size} processes ({LAUNCHER}): they started {self.framework}'s process "
                f"group (from the command's --backend, torch where none is given) and the run "
                f"trains on {backend}; give --backend {backend}"
            )
        if settings["batch_size"] % self.size:
            raise UsageError(
                f"--batch-size {settings['batch_size']} does not divide among {self.size} "
                f"processes (each trains on its own rows of the batch); give a multiple of "
                f"{self.size}"
            )

    def device(self, name: str | None) -> str | None:
        """The device of this process: ``cuda:LOCAL_RANK`` on GPUs (``--device gpu``, or no
        device with GPUs here), else the CPU; refuses a GPU index, too few GPUs, and (once
        started) a device of another kind than the process group's."""
        if not self.active:
            return name
        if self.framework == "jax":
            from dl.cli import distributed_jax

            return distributed_jax.device(name)
        import torch

        device = self._device(name, torch.cuda.device_count())
        if torch.distributed.is_initialized() and device.startswith("cuda") != self.gpu:
            raise UsageError(
                f"--device {name}: the processes started on {'GPUs' if self.gpu else 'CPUs'} "
                "as the command asked, and the run was trained on another device; give the "
                "run's --device"
            )
        return device

    def _device(self, name: str | None, count: int) -> str:
        """:meth:`device` with ``count`` GPUs here."""
        kind, _ = parse_device(name)
        if kind == "cpu" or (name is None and not count):
            return "cpu"
        if name not in ("gpu", "cuda", None):
            raise UsageError(
                f"--device {name}: under {LAUNCHER} each process takes the GPU of its local "
                "rank; give --device gpu (or cpu)"
            )
        if count < self.local_size:
            raise UsageError(
                f"--device {name}: {self.local_size} processes on this machine need a GPU each "
                f"and PyTorch sees {count}; start at most {count} processes per machine "
                "(--nproc-per-node), or give --device cpu"
            )
        return f"cuda:{self.local_rank}"

    def start(
        self, device: str | None, timeout: float, backend: str | None = None
    ) -> UsageError | None:
        """Join the process group (NCCL for a GPU, :meth:`device` of ``device``, else gloo;
        ``backend`` jax: :func:`dl.cli.distributed_jax.start`) within ``timeout`` seconds,
        which also bounds every collective; UsageError naming the rendezvous when the others
        cannot be reached. Returns the device's error (on gloo), for :meth:`agree` to report
        once."""
        if not self.active:
            return None
        if backend == "jax":
            from dl.cli import distributed_jax

            self.framework = "jax"
            return distributed_jax.start(self, device, timeout)
        import torch
        import torch.distributed as dist

        try:
            device, error = self.device(device), None
        except InputError as err:
            device, error = "cpu", err
        self.gpu = device.startswith("cuda")
        if self.gpu:
            torch.cuda.set_device(device)
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        try:
            dist.init_process_group(
                "nccl" if self.gpu else "gloo",
                rank=self.rank,
                world_size=self.size,
                timeout=datetime.timedelta(seconds=timeout),
            )
        except (RuntimeError, ValueError) as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UsageError(
                f"rank {self.rank} of {self.size}: the other processes were not reached at the "
                f"rendezvous {where} within --dist-timeout {timeout:g}s ({reason}); start "
                "every process with the same address and port, or raise --dist-timeout"
            ) from None
        return error

    def stop(self, lost: PeerLost | None = None) -> None:
        """Leave the process group (after the last collective; ``lost``: a process is gone)."""
        if not self.active:
            return
        if self.framework == "jax":
            from dl.cli import distributed_jax

            distributed_jax.stop(lost)
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    def rows(self, batch: tuple) -> tuple:
        """This process's rows of a global batch ``X, Y: (B, T)`` -> ``(B / size, T)``."""
        if not self.active:
            return batch
        return tuple(part[self._slice(part.shape[0])] for part in batch)

    def _slice(self, rows: int) -> slice:
        share = rows // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def state_rows(self, arrays: list, axes: list[int]) -> list:
        """This process's rows of a global recurrent state (``axes``: each array's batch axis)."""
        if not self.active:
            return arrays
        return [
            np.take(a, range(a.shape[ax])[self._slice(a.shape[ax])], axis=ax)
            for a, ax in zip(arrays, axes)
        ]

    def gather_state(self, arrays: list, axes: list[int]) -> list:
        """Every process's rows of a recurrent state, joined: the global state (a collective)."""
        if not self.active:
            return arrays
        parts = self._gather(arrays)
        return [np.concatenate([p[i] for p in parts], axis=ax) for i, ax in enumerate(axes)]

    def first(self, fn):
        """``fn()`` run by rank 0, its result on every process (a collective); where it raises
        a user's error (an InputError, an OS error about a user's file), every process raises
        its message (the others as :class:`Reported`)."""
        if not self.active:
            return fn()
        outcome = None
        if self.writes:
            try:
                outcome = ("ok", fn())
            except Exception as err:
                outcome = ("error", _user_message(err))
        kind, value = self._gather(outcome)[0]
        if kind == "error":
            raise (UsageError if self.writes else Reported)(value)
        return value

    def agree(self, fn, fingerprint):
        """``fn()`` on every process, then a check that it succeeded on all and that
        ``fingerprint(result)`` (a dict of what must be equal) is the same on all; the first
        failing process's message (or the differing settings) is raised on all (the others as
        :class:`Reported`)."""
        if not self.active:
            return fn()
        try:
            result, mine = fn(), None
        except Exception as err:
            result, mine = None, _user_message(err)
        report = ("error", mine) if mine else ("ok", fingerprint(result))
        reports = self._gather(report)
        message = _disagreement(reports)
        if message is not None:
            if mine is not None and not self.writes:
                raise Reported(mine) from None
            raise (UsageError if self.writes else Reported)(message) from None
        return result

    def _gather(self, value) -> list:
        """Every process's ``value`` (picklable), by rank (a collective); PeerLost where one
        of them ended or hangs."""
        out = [None] * self.size
        try:
            if self.framework == "jax":
                from dl.cli import distributed_jax

                out = distributed_jax.gather(value)
            else:
                import torch.distributed as dist

                dist.all_gather_object(out, value)
        except (RuntimeError, ValueError) as err:  # jax reports gloo's failures as either
            if not collective_failed(err):
                raise
            raise lost(self, err) from None
        return out


def _user_message(err: Exception) -> str:
    """The one line of a user's mistake (:func:`dl.cli.user_message`); a bug is raised."""
    from dl.cli import user_message

    message = user_message(err)
    if message is None:
        raise err
    return message


def _disagreement(reports: list[tuple[str, object]]) -> str | None:
    """The message for every process where a process failed or the fingerprints differ."""
    for rank, (kind, value) in enumerate(reports):
        if kind == "error":
            return value if rank == 0 else f"rank {rank}: {value}"
    base = reports[0][1]
    for rank, (_, value) in enumerate(reports[1:], 1):
        differ = [k for k in sorted(set(base) | set(value)) if base.get(k) != value.get(k)]
        if differ:
            shown = "; ".join(
                f"{_flag(k)} {value.get(k)} on rank {rank}, {base.get(k)} on rank 0" for k in differ
            )
            return (
                f"the processes were started with different settings ({shown}); start every "
                "process with the same command and the same text"
            )
    return None


def _flag(dest: str) -> str:
    return dest if dest.startswith("text ") else f"--{dest.replace('_', '-')}"


def fingerprint(settings: dict, texts: dict) -> dict:
    """What must be equal in every process: the settings (but paths and the device, which may
    differ between machines) and the SHA-256 of each text."""
    kept = {k: v for k, v in settings.items() if k not in ("device", *texts)}
    kept = {k: json.dumps(v, sort_keys=True, default=str) for k, v in kept.items()}
    kept.update({f"text {dest}": text.sha256 for dest, text in texts.items()})
    return kept


def collective_failed(err: BaseException) -> bool:
    """Whether ``err`` is a collective's failure (a peer gone, a timeout), not a bug."""
    if any(w in str(err) for w in ("gloo", "Gloo", "NCCL", "Timed out")):
        return True
    if "torch" not in sys.modules:
        return False
    import torch.distributed as dist

    return isinstance(err, dist.DistError)


def lost(world: World, err: BaseException) -> PeerLost:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return PeerLost(
        f"rank {world.rank}: lost contact with the other processes ({reason}); one of them "
        "ended or hangs"
    )


ONE = World()  # one process, no launcher


def world(environ=os.environ) -> World:
    """The world of ``environ``: torchrun's variables, else one process; UsageError naming a
    malformed one."""
    values = {}
    for name, default in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", None)):
        text = environ.get(name)
        try:
            values[name] = default if text is None else int(text)
        except ValueError:
            raise UsageError(f"environment variable {name}={text!r}: give a whole number") from None
    size, rank = values["WORLD_SIZE"], values["RANK"]
    if size < 1 or not 0 <= rank < size:
        raise UsageError(
            f"RANK={rank} and WORLD_SIZE={size}: a rank from 0 to WORLD_SIZE - 1 is needed"
        )
    local = values["LOCAL_RANK"]
    local = rank if local is None else local
    local_size = int(environ.get("LOCAL_WORLD_SIZE", size if local == rank else local + 1))
    return World(rank, size, local, local_size)


def batch_axes(begin_state) -> list[int]:
    """The batch axis of each array of a recurrent state (``begin_state(rows)`` gives one)."""
    from dl.train import state_arrays

    one, two = state_arrays(begin_state(1)), state_arrays(begin_state(2))
    return [
        next(i for i, (m, n) in enumerate(zip(a.shape, b.shape)) if m != n)
        for a, b in zip(one, two)
    ]


class Lockstep:
    """Flags each process raises and every process acts on together: they travel with the
    next update's gradients (``trainer.share``: torch's ``all_reduce``, JAX's compiled step)
    and are read after it, so all processes see them after the same update."""

    FLAGS = ("interrupt", "terminate", "max_time", "save")

    def __init__(self, trainer):
        self.trainer = trainer
        trainer.share(len(self.FLAGS))

    def raise_flag(self, flag: str) -> None:
        self.trainer.shared[self.FLAGS.index(flag)] = 1.0

    def raised(self) -> set[str]:
        """The flags any process raised for the update just taken (one host sync); this
        process's are cleared, having been sent."""
        values = self.trainer.shared_sum.tolist()
        self.trainer.shared[:] = 0
        return {flag for flag, value in zip(self.FLAGS, values) if value > 0}
