"""The book's training and prediction functions on PyTorch, driving :mod:`dl.torch.engine`
through the shared loop of :mod:`dl.train`."""

from __future__ import annotations

import weakref

import torch
from torch import nn

from dl import train as core
from dl.torch.engine import TorchTrainer
from dl.validate import check_positive

_EPOCHS = weakref.WeakKeyDictionary()  # net -> epochs train_epoch_dl has trained it


def try_gpu(i=0):
    """``torch.device('cuda:i')`` if that GPU exists, else ``torch.device('cpu')``."""
    if torch.cuda.device_count() >= i + 1:
        return torch.device(f"cuda:{i}")
    return torch.device("cpu")


def sgd(params, lr, batch_size):
    """The book's minibatch SGD: ``param -= lr * grad / batch_size``, then zero the gradients."""
    with torch.no_grad():
        for param in params:
            param -= lr * param.grad / batch_size
            param.grad.zero_()


def train_epoch_dl(net, train_iter, loss, updater, device, use_random_iter, *, precision="fp32"):
    """Train one epoch (the book's ``train_epoch_ch8``); returns ``(perplexity, tokens/sec)``.

    ``updater`` as :class:`TorchTrainer` takes it. A non-finite loss raises
    :class:`dl.train.DivergedError` naming the epoch (the how-manieth call for ``net``) and
    the learning rate.
    """
    trainer = TorchTrainer(net, loss, updater, device, precision=precision)
    epoch = _EPOCHS[net] = _EPOCHS.get(net, 0) + 1
    loss_sum, num_tokens, speed = core.train_epoch(trainer, train_iter, use_random_iter)
    return core.epoch_perplexity(loss_sum, num_tokens, epoch, trainer.lr), speed


def train_dl(
    net,
    train_iter,
    vocab,
    lr,
    num_epochs,
    device,
    use_random_iter=False,
    *,
    theta=1.0,
    precision="fp32",
    compile=False,
    cuda_graph=False,
    animator=None,
):
    """Train with SGD and gradient clipping (the book's ``train_ch8``), printing as the book.

    ``precision='bf16'`` trains under autocast (bfloat16 matmuls, float32 weights);
    ``compile=True`` uses ``torch.compile``; ``cuda_graph=True`` replays the whole step as a
    CUDA graph (see :class:`TorchTrainer`).
    Returns None, as the book's; pass an ``animator`` to keep the perplexity curve.
    """
    check_positive("lr", lr)
    check_positive("num_epochs", num_epochs, allow_zero=True, integer=True)
    trainer = train_dl_trainer(
        net, lr, device, theta=theta, precision=precision, compile=compile, cuda_graph=cuda_graph
    )
    predict = lambda prefix: predict_dl(prefix, 50, net, vocab, device)
    core.fit(
        trainer,
        train_iter,
        num_epochs,
        lr,
        predict,
        str(device),
        use_random_iter,
        animator=animator,
    )


def train_dl_trainer(
    net, lr, device, *, theta=1.0, precision="fp32", compile=False, cuda_graph=False
) -> TorchTrainer:
    """The trainer whose epochs :func:`train_dl` runs: SGD at ``lr``, the token-summed
    cross-entropy, clipping at ``theta``."""
    return TorchTrainer(
        net,
        nn.CrossEntropyLoss(reduction="none"),
        float(lr),
        device,
        theta=theta,
        precision=precision,
        compile=compile,
        cuda_graph=cuda_graph,
    )


def predict_dl(prefix, num_preds, net, vocab, device):
    """``prefix`` and ``num_preds`` greedily predicted tokens (the book's ``predict_ch8``)."""
    state = net.begin_state(batch_size=1, device=device)

    def step(token, state):
        logits, state = net(torch.tensor([[token]], device=device), state)
        return logits.float().cpu(), state

    with torch.no_grad():
        return core.predict_tokens(prefix, num_preds, vocab, step, state)
