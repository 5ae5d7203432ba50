"""The PyTorch trainer's options on CPU: bf16 autocast, torch.compile, cuda_graph."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dl import torch as dl  # noqa: E402
from dl.train import train_epoch  # noqa: E402

EPOCHS = 30


def perplexity_after(precision, train_iter, vocab):
    torch.manual_seed(0)
    net = dl.RNNModel(nn.LSTM(len(vocab), 256), len(vocab))
    trainer = dl.TorchTrainer(
        net,
        nn.CrossEntropyLoss(reduction="none"),
        torch.optim.SGD(net.parameters(), 1.0),
        "cpu",
        precision=precision,
    )
    for _ in range(EPOCHS):
        loss_sum, tokens, _ = train_epoch(trainer, train_iter)
    return math.exp(loss_sum / tokens)


@pytest.mark.slow
def test_bf16_perplexity_within_5_percent_of_fp32(time_machine_path):
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN: bf16 autocast is not supported on this CPU build")
    train_iter, vocab = dl.load_data_time_machine(32, 35)
    fp32 = perplexity_after("fp32", train_iter, vocab)
    bf16 = perplexity_after("bf16", train_iter, vocab)
    assert fp32 < 16  # it learned: 28 untrained, about 17.4 for character frequencies alone
    assert abs(bf16 - fp32) / fp32 < 0.05, (fp32, bf16)


def test_unknown_precision_is_refused():
    net = dl.RNNModel(nn.LSTM(5, 4), 5)
    with pytest.raises(ValueError, match="precision must be one of"):
        dl.TorchTrainer(
            net,
            nn.CrossEntropyLoss(),
            torch.optim.SGD(net.parameters(), 1.0),
            "cpu",
            precision="fp64",
        )


def test_cuda_graph_needs_a_cuda_device():
    net = dl.RNNModel(nn.LSTM(5, 4), 5)
    with pytest.raises(ValueError, match="cuda_graph=True needs a CUDA device"):
        dl.TorchTrainer(
            net,
            nn.CrossEntropyLoss(),
            torch.optim.SGD(net.parameters(), 1.0),
            "cpu",
            cuda_graph=True,
        )


@pytest.mark.slow
def test_compiled_forward_trains_like_eager():
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 7, (4, 5)), rng.integers(0, 7, (4, 5))) for _ in range(3)]
    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        net = dl.RNNModelScratch(7, 8, "cpu", dl.get_lstm_params, dl.init_lstm_state, dl.lstm)
        trainer = dl.TorchTrainer(
            net, nn.CrossEntropyLoss(reduction="none"), 1.0, "cpu", compile=compile
        )
        state, losses = trainer.begin_state(4), []
        for X, Y in batches:
            state = trainer.train_step(X, Y, state)
            losses.append(trainer.take_loss_sum())
        results.append((losses, [p.detach().numpy().copy() for p in net.params]))
    np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-5)
    for compiled, eager in zip(results[1][1], results[0][1]):
        np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)
