"""The one training step of the PyTorch backend and the optimizers (``torch.optim``) it owns,
for the book's models (:func:`train_dl`), ``dl train`` (``LanguageModel.trainer``) and
``dl forecast`` (``Forecaster.make_step``).

A step keeps everything on the device: the loss is summed into a device tensor, the gradient
norm is clipped without a host round trip (the book's loop syncs twice per batch), and the
update is ``torch.optim``'s multi-tensor (``foreach``) kernel. Under ``torch.distributed`` each
process trains on its own rows of the batch; one ``all_reduce`` per update sums the gradients
(before clipping), the batch's loss and the trainer's :attr:`TorchTrainer.shared` values (a
caller's stop flags) across processes. An optimizer of :mod:`dl.optim` is one entry of
:data:`OPTIMIZERS`.
"""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from dl import optim
from dl.errors import InputError
from dl.optim import OptimizerConfig

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


class TorchOptimizer(NamedTuple):
    """How one :mod:`dl.optim` optimizer is built from ``torch.optim``."""

    cls: type  # the torch.optim class
    arguments: Callable[[OptimizerConfig], dict]  # its hyperparameters but lr
    slots: dict[str, str]  # dl.optim slot -> torch.optim state key


_ADAM_SLOTS = {"m": "exp_avg", "v": "exp_avg_sq"}
OPTIMIZERS = {
    "sgd": TorchOptimizer(torch.optim.SGD, lambda c: {"weight_decay": c.weight_decay}, {}),
    "adam": TorchOptimizer(
        torch.optim.Adam, lambda c: {"betas": (c.beta1, c.beta2), "eps": c.eps}, _ADAM_SLOTS
    ),
    "adamw": TorchOptimizer(
        torch.optim.AdamW,
        lambda c: {"betas": (c.beta1, c.beta2), "eps": c.eps, "weight_decay": c.weight_decay},
        _ADAM_SLOTS,
    ),
    "rmsprop": TorchOptimizer(
        torch.optim.RMSprop,
        lambda c: {"alpha": c.rho, "eps": c.eps, "momentum": 0, "centered": False},
        {"v": "square_avg"},
    ),
}


def build_optimizer(config: OptimizerConfig, params) -> torch.optim.Optimizer:
    """``config``'s optimizer over ``params``, with multi-tensor kernels on every device."""
    entry = OPTIMIZERS[config.name]
    return entry.cls(params, config.lr, foreach=True, **entry.arguments(config))


def trainable(net) -> list:
    """The parameters a step updates: an ``nn.Module``'s that require gradients, or a scratch
    model's ``params``."""
    if isinstance(net, nn.Module):
        return [p for p in net.parameters() if p.requires_grad]
    return list(net.params)


def grad_clipping(net, theta):
    """Scale the gradients of ``net``'s trainable parameters so their global L2 norm is at
    most ``theta``, on the device (no host sync, unlike the book's ``if norm > theta``)."""
    grads = [p.grad for p in trainable(net) if p.grad is not None]
    if not grads:
        return
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    scale = torch.clamp(theta / norm, max=1.0)  # theta / norm where norm > theta, else 1
    torch._foreach_mul_(grads, scale)


def token_batch(X, Y, device):
    """``X, Y: (B, T)`` NumPy ints -> ``X: (B, T)`` and time-major ``y: (T * B,)`` int64 on
    ``device`` (through pinned memory to a GPU, so the copies are asynchronous)."""
    X, Y = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(np.ascontiguousarray(Y.T))
    if device.type == "cuda":
        X, Y = X.pin_memory(), Y.pin_memory()
    return X.to(device, non_blocking=True), Y.reshape(-1).to(device, non_blocking=True).long()


def token_loss_sum(loss, y_hat, y):
    """Summed loss over targets: a per-element loss is summed, a batch mean is scaled back."""
    values = loss(y_hat, y)
    return values * y.numel() if values.dim() == 0 else values.sum()


class TorchTrainer:
    """The :class:`dl.train.Trainer` of every PyTorch model (scratch or ``nn.Module``).

    ``updater``: a :class:`dl.optim.OptimizerConfig` (built by :data:`OPTIMIZERS`; its state
    leaves by :meth:`optimizer_state` and re-enters by :meth:`load_optimizer_state`), a
    ``torch.optim.Optimizer``, a number (the learning rate of SGD) or the book's
    ``updater(batch_size)`` function. ``forward(X, state) -> (outputs, state)`` defaults to
    ``net``. ``precision='bf16'`` runs the forward pass under ``torch.autocast``.
    ``compile=True`` runs it through ``torch.compile`` (fused kernels; the first step compiles,
    which takes tens of seconds). ``cuda_graph=True`` (CUDA only) captures the whole step,
    update included, in a CUDA graph after a few eager steps, and replays it for every batch.
    """

    def __init__(
        self,
        net,
        loss,
        updater,
        device,
        theta=1.0,
        precision="fp32",
        compile=False,
        cuda_graph=False,
        forward=None,
    ):
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.net, self.loss, self.theta = net, loss, theta
        self.params = trainable(net)
        if isinstance(updater, numbers.Real):
            updater = OptimizerConfig("sgd", float(updater))
        self.optimizer_config = updater if isinstance(updater, OptimizerConfig) else None
        self.optimizer = build_optimizer(updater, self.params) if self.optimizer_config else updater
        if isinstance(self.optimizer, torch.optim.Optimizer):
            self.update = self.optimizer.step
        else:  # the book's scratch updater: lambda batch_size: sgd(params, lr, batch_size)
            self.update = lambda: updater(batch_size=1)
        self.device = torch.device(device)
        self.precision = PRECISIONS[precision]
        self.distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.world_size = torch.distributed.get_world_size() if self.distributed else 1
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.share(0)
        self.steps = 0  # updates taken: dl.optim's opt.step
        forward = forward or (net if isinstance(net, nn.Module) else net.__call__)
        self.forward = torch.compile(forward, dynamic=False) if compile else forward
        self._run = self._device_step
        if cuda_graph:
            if self.device.type != "cuda" or self.distributed:
                raise InputError(
                    f"cuda_graph=True needs a CUDA device and one process, got "
                    f"device {self.device} (distributed: {self.distributed})"
                )
            self._run = GraphedStep(self._device_step)

    def share(self, count: int) -> None:
        """``count`` values (:attr:`shared`) every process adds to the next update's
        all_reduce; after it, their sum over processes is in :attr:`shared_sum` (dl train's
        stop flags; none for the book)."""
        self.shared = torch.zeros(count, device=self.device)
        self.shared_sum = self.shared.clone()

    @property
    def lr(self):
        """The learning rate, where the updater says it (not the book's function)."""
        if isinstance(self.optimizer, torch.optim.Optimizer):
            return self.optimizer.param_groups[0]["lr"]
        return "?"

    def begin_state(self, batch_size):
        return self.net.begin_state(batch_size=batch_size, device=self.device)

    def train_step(self, X, Y, state):
        """``X, Y: (batch, num_steps)`` NumPy ints -> the state after the batch."""
        state, loss_sum = self.step(*token_batch(X, Y, self.device), state)
        self.loss_sum += loss_sum
        return state

    def step(self, X, y, state):
        """One update on device tensors: ``forward(X, state)`` against targets ``y`` ->
        ``(state, the loss summed over y)``, nothing synchronised."""
        self.steps += 1
        return self._run(X, y, state)

    def _device_step(self, X, y, state):
        """Forward, loss, backward, clipping and update, all queued on the device."""
        state = _detach(state)
        for p in self.params:
            p.grad = None
        with _autocast(self.device, self.precision):
            y_hat, state = self.forward(X, state)
        loss_sum = token_loss_sum(self.loss, y_hat.float(), y)
        # each process holds its own rows: summed over processes, this is the batch mean
        (loss_sum / (y.numel() * self.world_size)).backward()
        loss_sum = loss_sum.detach()
        if self.distributed:
            loss_sum = self._all_reduce(loss_sum)
        grad_clipping(self.net, self.theta)
        self.update()
        return state, loss_sum

    def _all_reduce(self, loss_sum):
        """Sum every gradient, ``loss_sum`` (this process's rows) and :attr:`shared` over the
        processes in one flat ``all_reduce``; returns the batch's loss summed over them."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads] + [loss_sum.reshape(1), self.shared])
        torch.distributed.all_reduce(flat)
        sizes = [g.numel() for g in grads]
        for p, g in zip(self.params, torch.split(flat[: sum(sizes)], sizes)):
            p.grad = g.view_as(p)
        self.shared_sum = flat[sum(sizes) + 1 :]
        return flat[sum(sizes)]

    def take_loss_sum(self) -> float:
        """The summed loss since the last call per process (averaged over processes when
        distributed: the steps summed it over them already, so no collective here)."""
        total = float(self.loss_sum)
        self.loss_sum.zero_()
        return total / self.world_size

    def set_lr(self, lr: float) -> None:
        """The learning rate of the following updates (a schedule's value, set by the host):
        the optimizer's ``param_groups``, read by its next ``step`` (nothing recompiles)."""
        if not isinstance(self.optimizer, torch.optim.Optimizer):
            raise InputError(
                "set_lr: the book's updater function holds its own learning rate; "
                "give the trainer a dl.optim.OptimizerConfig or a torch.optim optimizer"
            )
        if isinstance(self._run, GraphedStep):
            raise InputError(
                "set_lr: a CUDA-graph step replays the learning rate it captured; "
                "train with cuda_graph=False to schedule the learning rate"
            )
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def optimizer_state(self) -> dict[str, np.ndarray]:
        """The optimizer's state under :mod:`dl.optim`'s canonical names, NumPy float32
        copies (``net`` maps its parameters to canonical names: a ``dl.torch.lm`` model)."""
        state = {optim.STEP: np.asarray(self.steps, np.float32)}
        for slot, key in self._slots().items():
            arrays = self.net.parameter_arrays(  # zeros before the first update
                lambda p, key=key: to_numpy(self.optimizer.state[p].get(key, torch.zeros_like(p)))
            )
            state.update({f"{optim.PREFIX}{slot}.{name}": a for name, a in arrays.items()})
        return state

    def load_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from ``state`` (canonical names, as :meth:`optimizer_state` gives);
        raises InputError naming what does not fit."""
        slots = self._slots()
        shapes = self.net.config.param_shapes()
        optim.check_state(self.optimizer_config, shapes, state)
        step = float(np.asarray(state[optim.STEP]).item())  # a checkpoint holds it as (1,)
        per_param = {p: {"step": torch.tensor(step)} if slots else {} for p in self.params}
        for slot, key in slots.items():
            arrays = {name: state[f"{optim.PREFIX}{slot}.{name}"] for name in shapes}
            for p, array in self.net.parameter_pairs(arrays):
                if p in per_param:
                    per_param[p][key] = torch.tensor(np.asarray(array, np.float32))
        saved = self.optimizer.state_dict()  # torch.optim places the tensors beside the params
        saved["state"] = {i: per_param[p] for i, p in enumerate(self.params) if per_param[p]}
        self.optimizer.load_state_dict(saved)
        self.steps = int(step)

    def _slots(self) -> dict[str, str]:
        if self.optimizer_config is None:
            raise InputError(
                "this trainer's updater is not a dl.optim.OptimizerConfig, so its "
                "state has no canonical names; build it from one"
            )
        return OPTIMIZERS[self.optimizer_config.name].slots


def to_numpy(tensor) -> np.ndarray:
    """A float32 NumPy copy of ``tensor``."""
    return tensor.detach().float().cpu().numpy().copy()


class GraphedStep:
    """A training step ``step(X, y, state) -> (state, loss)`` captured in a CUDA graph.

    The first ``warmup`` calls run eagerly on a side stream (real training steps, as CUDA
    graph capture requires); the next call captures the step and every later call copies its
    inputs into the graph's static tensors and replays it. New shapes capture a new graph.
    """

    def __init__(self, step, warmup=3):
        self.step, self.warmup, self.graph = step, warmup, None

    def __call__(self, X, y, state):
        state = _detach(state)
        if self.graph is None and self.warmup > 0:
            self.warmup -= 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                outputs = self.step(X, y, state)
            torch.cuda.current_stream().wait_stream(side)
            return outputs
        if self.graph is None or self.X.shape != X.shape:
            self.X, self.y, self.state_in = X.clone(), y.clone(), _map(torch.clone, state)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = self.step(self.X, self.y, self.state_in)
        else:
            self.X.copy_(X)
            self.y.copy_(y)
            _map(lambda static, new: static.copy_(new), self.state_in, state)
        self.graph.replay()
        return self.outputs


def _detach(state):
    return _map(torch.Tensor.detach, state)


def _map(fn, state, *others):
    """Apply ``fn`` to a state tensor or to each tensor of a state tuple (zipped with others)."""
    if isinstance(state, torch.Tensor):
        return fn(state, *others)
    return tuple(fn(*tensors) for tensors in zip(state, *others))


def _autocast(device, dtype):
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
