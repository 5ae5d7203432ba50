"""Optimizers, named once for every backend; each backend's ``engine`` builds them from its
framework's own library (``torch.optim``, ``optax``, Keras) with the same numbers.

Adding an optimizer: one entry in :data:`SLOTS` (the state it keeps) and, if it has
hyperparameters of its own, fields of :class:`OptimizerConfig`; then one entry in each
backend's ``engine`` table.

Update rules, with ``g`` the clipped gradient and ``t`` the step number from 1 (these are
PyTorch's formulas, which optax and Keras reproduce with the settings each engine passes):

- ``sgd``: ``p -= lr * (g + weight_decay * p)``
- ``adam``: ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g²``,
  ``p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``
- ``adamw``: ``p *= 1 - lr * weight_decay``, then the Adam step
- ``rmsprop``: ``v = rho v + (1 - rho) g²``, ``p -= lr * g / (sqrt(v) + eps)`` (char-rnn's
  optimizer; uncentred, no momentum)

Optimizer state travels in checkpoints under canonical names beside the weights: ``opt.step``
(updates taken, a 0-d float32 array) and ``opt.<slot>.<param>`` for each slot of
:data:`SLOTS` and each parameter's canonical name (``opt.m.W_xi``, ``opt.v.layer2.W_hh``);
``m`` is the first moment, ``v`` the running mean of squared gradients. So a run resumes
exactly on any backend, whatever the optimizer.

Learning-rate schedules (:class:`ScheduleConfig`) are a function of the update count alone:
the rate of update ``s + 1`` is ``lr * schedule.factor(s)``, set on the framework's optimizer
before the update (``trainer.set_lr``), so the schedule's position is ``opt.step`` and a
resumed run continues it exactly. :class:`Plateau` scales the rate down when the validation loss
stops improving (the word-language-model example's annealing); its state is three numbers.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from dl.errors import InputError
from dl.validate import check_positive

# optimizer -> the per-parameter state slots it keeps
SLOTS = {"sgd": (), "adam": ("m", "v"), "adamw": ("m", "v"), "rmsprop": ("v",)}
DECAYS = ("constant", "cosine")
NAMES = tuple(SLOTS)
PREFIX = "opt."
STEP = PREFIX + "step"


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Which update rule, with which hyperparameters (stored in checkpoints)."""

    name: str = "sgd"  # sgd | adam | adamw | rmsprop
    lr: float = 1.0  # learning rate
    weight_decay: float = 0.0  # sgd: L2 on the gradient; adamw: decoupled; else refused
    beta1: float = 0.9  # adam, adamw: decay of the first moment
    beta2: float = 0.999  # adam, adamw: decay of the second moment
    rho: float = 0.99  # rmsprop: decay of the mean square (torch's alpha)
    eps: float = 1e-8  # adam, adamw, rmsprop: added to the root of the second moment

    def __post_init__(self):
        if self.name not in SLOTS:
            raise InputError(f"optimizer must be one of {', '.join(NAMES)}, got {self.name!r}")
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_positive("eps", self.eps)
        for name in ("beta1", "beta2", "rho"):
            value = getattr(self, name)
            check_positive(name, value, allow_zero=True)
            if value >= 1:
                raise InputError(f"{name} must be in [0, 1), got {value!r}")
        if self.weight_decay and self.name in ("adam", "rmsprop"):
            raise InputError(
                f"weight_decay with {self.name}: use adamw (decoupled weight decay) "
                "or sgd, or leave weight decay at 0"
            )

    @property
    def slots(self) -> tuple[str, ...]:
        return SLOTS[self.name]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def state_names(config: OptimizerConfig, param_names) -> list[str]:
    """The canonical names of ``config``'s state for parameters ``param_names``, in order:
    ``opt.step`` first, then slot by slot, parameter by parameter."""
    return [STEP] + [f"{PREFIX}{slot}.{name}" for slot in config.slots for name in param_names]


def split(tensors: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(weights, optimizer state)`` of a checkpoint's tensors, by the ``opt.`` prefix."""
    weights = {k: v for k, v in tensors.items() if not k.startswith(PREFIX)}
    return weights, {k: v for k, v in tensors.items() if k.startswith(PREFIX)}


def check_state(config: OptimizerConfig, param_shapes: dict[str, tuple], state: dict) -> None:
    """Raise ValueError naming what is missing, extra or misshapen in ``state`` for
    ``config`` and parameters of ``param_shapes`` (canonical names -> shapes)."""
    expected = state_names(config, param_shapes)
    missing = [name for name in expected if name not in state]
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise InputError(
            f"optimizer state for {config.name} does not fit: missing {missing[:4]}"
            f"{'...' if len(missing) > 4 else ''}, unexpected {extra[:4]}"
            f"{'...' if len(extra) > 4 else ''}"
        )
    for name in expected[1:]:
        shape = param_shapes[name.split(".", 2)[2]]
        if tuple(np.shape(state[name])) != tuple(shape):
            raise InputError(
                f"optimizer state {name} has shape {np.shape(state[name])}, "
                f"the parameter has {tuple(shape)}"
            )


def zero_state(config: OptimizerConfig, param_shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
    """The state before the first update: step 0 and zero slots."""
    state = {STEP: np.zeros((), np.float32)}
    for name in state_names(config, param_shapes)[1:]:
        state[name] = np.zeros(param_shapes[name.split(".", 2)[2]], np.float32)
    return state


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """How the learning rate moves with the update count (stored in checkpoints): a linear
    warm-up over ``warmup_steps`` updates, then constant or a cosine decay that reaches
    ``min_lr_fraction * lr`` at update ``total_steps`` and stays there."""

    decay: str = "constant"  # constant | cosine
    warmup_steps: int = 0  # updates of linear warm-up: update s + 1 gets (s + 1) / warmup
    total_steps: int = 0  # cosine: the update where the decay ends
    min_lr_fraction: float = 0.0  # cosine: the final rate, as a fraction of lr

    def __post_init__(self):
        if self.decay not in DECAYS:
            raise InputError(f"decay must be one of {', '.join(DECAYS)}, got {self.decay!r}")
        check_positive("warmup_steps", self.warmup_steps, allow_zero=True, integer=True)
        check_positive("total_steps", self.total_steps, allow_zero=True, integer=True)
        check_positive("min_lr_fraction", self.min_lr_fraction, allow_zero=True)
        if self.min_lr_fraction > 1:
            raise InputError(f"min_lr_fraction must be at most 1, got {self.min_lr_fraction!r}")
        if self.decay == "cosine" and self.total_steps <= self.warmup_steps:
            raise InputError(
                f"a cosine decay needs total_steps ({self.total_steps}) beyond the warm-up "
                f"({self.warmup_steps} steps)"
            )

    @property
    def constant(self) -> bool:
        """Whether every update gets the full rate (nothing to set per step)."""
        return self.decay == "constant" and not self.warmup_steps

    def factor(self, step: int) -> float:
        """The fraction of ``lr`` for the update after ``step`` updates (``step`` from 0)."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.decay == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / (self.total_steps - self.warmup_steps))
        low = self.min_lr_fraction
        return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * progress))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Plateau:
    """Reduce-on-plateau: after more than ``patience`` evaluations in a row without a lower
    validation loss than the best so far, ``scale`` (the factor on the rate) is multiplied by
    ``factor`` and the count starts again. ``factor`` 0: off."""

    factor: float = 0.0  # 0: off; the word-language-model example's 0.25
    patience: int = 0  # evaluations without improvement tolerated before a cut
    scale: float = 1.0  # the product of the cuts so far
    best: float | None = None  # the lowest validation loss seen
    bad: int = 0  # evaluations since the best, or since the last cut

    def update(self, val_loss: float) -> bool:
        """Count one evaluation; returns whether the rate was cut."""
        if self.best is None or val_loss < self.best:
            self.best, self.bad = val_loss, 0
            return False
        self.bad += 1
        if not self.factor or self.bad <= self.patience:
            return False
        self.scale, self.bad = self.scale * self.factor, 0
        return True

    def state(self) -> dict:
        """What a checkpoint keeps (the settings hold ``factor`` and ``patience``)."""
        return {"scale": self.scale, "best": self.best, "bad": self.bad}
