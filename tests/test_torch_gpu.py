"""GPU behaviour of the PyTorch backend: no host sync inside an epoch, cuDNN, CUDA graphs.

Skipped where no CUDA GPU exists (CI); run on a GPU machine with ``pytest tests/test_torch_gpu.py``.
"""

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dl import torch as dl  # noqa: E402
from dl.data.batches import SeqDataLoader  # noqa: E402
from dl.data.text import Vocab  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")

VOCAB_SIZE, HIDDEN, BATCH, STEPS = 12, 64, 8, 10


@pytest.fixture
def loader():
    rng = np.random.default_rng(0)
    corpus = rng.integers(0, VOCAB_SIZE, 3000).tolist()
    vocab = Vocab([list("abcdefghijkl")])
    return SeqDataLoader(BATCH, STEPS, corpus=corpus, vocab=vocab)


def make(kind, device="cuda"):
    torch.manual_seed(0)
    if kind == "scratch":
        return dl.RNNModelScratch(
            VOCAB_SIZE, HIDDEN, device, dl.get_lstm_params, dl.init_lstm_state, dl.lstm
        )
    return dl.RNNModel(nn.LSTM(VOCAB_SIZE, HIDDEN), VOCAB_SIZE).to(device)


def trainer_for(net, **kwargs):
    updater = torch.optim.SGD(net.parameters(), 1.0) if isinstance(net, nn.Module) else 1.0
    return dl.TorchTrainer(net, nn.CrossEntropyLoss(reduction="none"), updater, "cuda", **kwargs)


def params_of(net):
    return [p.detach().cpu().numpy() for p in net.parameters()]


@pytest.mark.parametrize("kind", ["scratch", "concise"])
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_no_host_sync_inside_an_epoch(loader, kind, cuda_graph):
    trainer = trainer_for(make(kind), cuda_graph=cuda_graph)
    batches = list(loader)
    state = trainer.begin_state(BATCH)
    for X, Y in batches[:4]:  # warm-up and capture may allocate and synchronise
        state = trainer.train_step(X, Y, state)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for X, Y in batches[4:]:
            state = trainer.train_step(X, Y, state)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert np.isfinite(trainer.take_loss_sum())


@pytest.mark.parametrize("kind", ["scratch", "concise"])
def test_cuda_graph_trains_like_the_eager_step(loader, kind):
    """Step by step through warm-up, capture and replays, the graph gives the eager losses.

    Stale inputs or state in the graph would show at once; what remains is GPU reduction
    order (the two paths pick kernels independently), a few 1e-5 relative per step.
    """
    results = []
    for cuda_graph in (False, True):
        net = make(kind)
        trainer = trainer_for(net, cuda_graph=cuda_graph)
        losses, state = [], trainer.begin_state(BATCH)
        random.seed(0)  # the loader's random offset: the same batches for both runs
        for X, Y in list(loader)[:10]:
            state = trainer.train_step(X, Y, state)
            losses.append(trainer.take_loss_sum())
        results.append((losses, params_of(net)))
    (eager_losses, eager_params), (graph_losses, graph_params) = results
    np.testing.assert_allclose(graph_losses, eager_losses, rtol=1e-4)
    for a, b in zip(graph_params, eager_params):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_concise_lstm_runs_on_cudnn(loader):
    net = make("concise")
    X = torch.as_tensor(next(iter(loader))[0], device="cuda")
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    ) as prof:
        net(X, net.begin_state("cuda", BATCH))
        torch.cuda.synchronize()
    names = {event.name for event in prof.events()}
    assert any("cudnn" in name.lower() for name in names), sorted(names)[:40]
