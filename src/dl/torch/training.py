"""Training and prediction on PyTorch: the backend adapter for :mod:`dl.train`.

A step keeps everything on the device: the loss is summed into a device tensor, the gradient
norm is clipped without a host round trip (the book's loop syncs twice per batch), and the
update uses fused multi-tensor kernels. Under ``torch.distributed`` each process trains on its
own rows of the batch and the gradients are summed across processes before clipping.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from dl import train as core
from dl.validate import check_positive

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def try_gpu(i=0):
    """``torch.device('cuda:i')`` if that GPU exists, else ``torch.device('cpu')``."""
    if torch.cuda.device_count() >= i + 1:
        return torch.device(f"cuda:{i}")
    return torch.device("cpu")


def _params(net):
    if isinstance(net, nn.Module):
        return [p for p in net.parameters() if p.requires_grad]
    return net.params


def grad_clipping(net, theta):
    """Scale the gradients of ``net``'s parameters so their global L2 norm is at most ``theta``.

    Computed on the device: no host synchronisation, unlike the book's ``if norm > theta``.
    """
    grads = [p.grad for p in _params(net) if p.grad is not None]
    if not grads:
        return
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    scale = torch.clamp(theta / norm, max=1.0)  # theta / norm where norm > theta, else 1
    torch._foreach_mul_(grads, scale)


def sgd(params, lr, batch_size):
    """The book's minibatch SGD: ``param -= lr * grad / batch_size``, then zero the gradients."""
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


def _detach(state):
    return _map(torch.Tensor.detach, state)


def _token_loss_sum(loss, y_hat, y):
    """Summed loss over tokens: a per-token loss is summed, a batch mean is scaled back."""
    values = loss(y_hat, y)
    return values * y.numel() if values.dim() == 0 else values.sum()


class TorchTrainer:
    """The :class:`dl.train.Trainer` for PyTorch models (scratch or ``nn.Module``).

    ``updater``: a ``torch.optim.Optimizer``; a number, the learning rate of plain SGD
    (fused, for scratch models); or the book's ``updater(batch_size)`` function.
    ``precision='bf16'`` runs the forward pass under ``torch.autocast``. ``compile=True`` runs
    the forward pass through ``torch.compile`` (fused kernels; the first step compiles, which
    takes tens of seconds). ``cuda_graph=True`` (CUDA only) captures the whole step, update
    included, in a CUDA graph after a few eager steps, and replays it for every batch.
    """

    def __init__(self, net, loss, updater, device, theta=1.0, precision="fp32", compile=False,
                 cuda_graph=False):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        self.net, self.loss, self.theta = net, loss, theta
        self.update = _update_fn(net, updater)
        self.device = torch.device(device)
        self.precision = PRECISIONS[precision]
        self.distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        self.world_size = torch.distributed.get_world_size() if self.distributed else 1
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        self.forward = net
        if compile:
            self.forward = torch.compile(net if isinstance(net, nn.Module) else net.__call__,
                                         dynamic=False)
        self.step = self._device_step
        if cuda_graph:
            if self.device.type != "cuda" or self.distributed:
                raise ValueError(f"cuda_graph=True needs a CUDA device and one process, got "
                                 f"device {self.device} (distributed: {self.distributed})")
            self.step = GraphedStep(self._device_step)

    def begin_state(self, batch_size):
        return self.net.begin_state(batch_size=batch_size, device=self.device)

    def train_step(self, X, Y, state):
        """``X, Y: (batch, num_steps)`` NumPy ints -> the state after the batch."""
        X, Y = torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(np.ascontiguousarray(Y.T))
        if self.device.type == "cuda":  # pinned memory makes the copies asynchronous
            X, Y = X.pin_memory(), Y.pin_memory()
        X = X.to(self.device, non_blocking=True)
        y = Y.reshape(-1).to(self.device, non_blocking=True).long()
        return self.step(X, y, state)

    def _device_step(self, X, y, state):
        """Forward, loss, backward, clipping and update, all queued on the device."""
        state = _detach(state)
        params = _params(self.net)
        for p in params:
            p.grad = None
        with _autocast(self.device, self.precision):
            y_hat, state = self.forward(X, state)
        loss_sum = _token_loss_sum(self.loss, y_hat.float(), y)
        # each process holds its own rows: summed over processes, this is the batch mean
        (loss_sum / (y.numel() * self.world_size)).backward()
        if self.distributed:
            for p in params:
                torch.distributed.all_reduce(p.grad)
        grad_clipping(self.net, self.theta)
        self.update()
        self.loss_sum += loss_sum.detach()
        return state

    def take_loss_sum(self) -> float:
        """The epoch's summed loss per process (averaged over processes when distributed)."""
        total = self.loss_sum.clone()
        self.loss_sum.zero_()
        if self.distributed:
            torch.distributed.all_reduce(total)
        return float(total) / self.world_size


class GraphedStep:
    """A training step ``step(X, y, state) -> state`` captured in a CUDA graph.

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
                state = self.step(X, y, state)
            torch.cuda.current_stream().wait_stream(side)
            return state
        if self.graph is None or self.X.shape != X.shape:
            self.X, self.y, self.state_in = X.clone(), y.clone(), _map(torch.clone, state)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.state_out = self.step(self.X, self.y, self.state_in)
        else:
            self.X.copy_(X)
            self.y.copy_(y)
            _map(lambda static, new: static.copy_(new), self.state_in, state)
        self.graph.replay()
        return self.state_out


def _map(fn, state, *others):
    """Apply ``fn`` to a state tensor or to each tensor of a state tuple (zipped with others)."""
    if isinstance(state, torch.Tensor):
        return fn(state, *others)
    return tuple(fn(*tensors) for tensors in zip(state, *others))


def _autocast(device, dtype):
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def _update_fn(net, updater):
    """A no-argument function applying one update with the (clipped) gradients."""
    if isinstance(updater, torch.optim.Optimizer):
        return updater.step
    if callable(updater):  # the book's scratch updater: lambda batch_size: sgd(params, lr, ...)
        return lambda: updater(batch_size=1)
    check_positive("lr", updater)
    params = _params(net)

    def fused_sgd():
        with torch.no_grad():
            torch._foreach_add_(params, [p.grad for p in params], alpha=-updater)
    return fused_sgd


def train_epoch_dl(net, train_iter, loss, updater, device, use_random_iter, *, precision="fp32"):
    """Train one epoch (the book's ``train_epoch_ch8``); returns ``(perplexity, tokens/sec)``."""
    trainer = TorchTrainer(net, loss, updater, device, precision=precision)
    loss_sum, num_tokens, speed = core.train_epoch(trainer, train_iter, use_random_iter)
    return core.epoch_perplexity(loss_sum, num_tokens, 1, "?"), speed


def train_dl(net, train_iter, vocab, lr, num_epochs, device, use_random_iter=False, *,
             theta=1.0, precision="fp32", compile=False, cuda_graph=False, animator=None):
    """Train with SGD and gradient clipping (the book's ``train_ch8``), printing as the book.

    ``precision='bf16'`` trains under autocast (bfloat16 matmuls, float32 weights);
    ``compile=True`` uses ``torch.compile``; ``cuda_graph=True`` replays the whole step as a
    CUDA graph (see :class:`TorchTrainer`).
    Returns None, as the book's; pass an ``animator`` to keep the perplexity curve.
    """
    check_positive("lr", lr)
    check_positive("num_epochs", num_epochs, allow_zero=True, integer=True)
    updater = torch.optim.SGD(net.parameters(), lr) if isinstance(net, nn.Module) else float(lr)
    trainer = TorchTrainer(net, nn.CrossEntropyLoss(reduction="none"), updater, device,
                           theta=theta, precision=precision, compile=compile,
                           cuda_graph=cuda_graph)
    predict = lambda prefix: predict_dl(prefix, 50, net, vocab, device)
    core.fit(trainer, train_iter, num_epochs, lr, predict, str(device), use_random_iter,
             animator=animator)


def predict_dl(prefix, num_preds, net, vocab, device):
    """``prefix`` followed by ``num_preds`` greedily predicted tokens (the book's ``predict_ch8``)."""
    state = net.begin_state(batch_size=1, device=device)

    def step(token, state):
        logits, state = net(torch.tensor([[token]], device=device), state)
        return logits.float().cpu(), state

    with torch.no_grad():
        return core.predict_tokens(prefix, num_preds, vocab, step, state)
