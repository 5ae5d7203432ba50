"""What only dl.torch does in training and prediction: torch tensors and torch.optim in
TorchTrainer and train_epoch_dl, frozen parameters in grad_clipping, the book's sgd, precision,
train_dl's output, torch.distributed data parallelism, bf16 and CUDA. What every framework
does the same (reference training, clipping, bad inputs, divergence, predict_dl) is in
test_training.py.

Sizes are tiny (vocab ~10-25, hidden 16, a few steps); anything that starts a fresh Python
process is marked slow.
"""

import copy
import json
import os
import random
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from dl import reference as ref  # noqa: E402
from dl import torch as dl  # noqa: E402
from training_helpers import (
    B,
    H,
    V,
    assert_weights_close,
    check_book_output,
    global_norm,
    numpy_params,
    random_batches,
    random_grads,
    tiny_loader,
    train_steps,
)

CPU = torch.device("cpu")


def scratch_model(cell, params, vocab_size=V, device=CPU):
    _, init_state, forward = dl.CELLS[cell]
    return dl.RNNModelScratch(
        vocab_size,
        H,
        device,
        lambda v, h, d: [
            torch.tensor(params[n], device=d, requires_grad=True) for n in ref.PARAM_NAMES[cell]
        ],
        init_state,
        forward,
    )


def concise_model(kind="lstm", seed=2, vocab_size=V, **kwargs):
    torch.manual_seed(seed)
    layer = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind](vocab_size, H, **kwargs)
    return dl.RNNModel(layer, vocab_size=vocab_size)


def ce():
    return nn.CrossEntropyLoss(reduction="none")


def trainer_for(net, lr=1.0, theta=1.0, **kwargs):
    """The book's choice: torch.optim.SGD for an nn.Module, a fused float lr for scratch."""
    updater = torch.optim.SGD(net.parameters(), lr) if isinstance(net, nn.Module) else lr
    return dl.TorchTrainer(net, ce(), updater, CPU, theta=theta, **kwargs)


def weights(net):
    return [p.detach().cpu().numpy().copy() for p in net.parameters()]


# ---------------------------------------------------------------------------------------------
# (a) TorchTrainer takes torch tensors


def test_trainer_accepts_torch_tensors_and_carries_the_state():
    params, batches = numpy_params("gru"), random_batches(n=3)
    net_np, net_t = scratch_model("gru", params), scratch_model("gru", params)
    losses_np = train_steps(trainer_for(net_np), batches)
    losses_t = train_steps(
        trainer_for(net_t), [(torch.tensor(X), torch.tensor(Y)) for X, Y in batches]
    )
    np.testing.assert_allclose(losses_t, losses_np, rtol=1e-6)
    assert_weights_close(weights(net_t), weights(net_np), 1e-6)


# ---------------------------------------------------------------------------------------------
# (b) gradient clipping and the book's sgd


def set_grads(params, norm):
    """Gives ``params`` gradients of global norm ``norm``; returns copies of them."""
    grads = random_grads([tuple(p.shape) for p in params], norm)
    for p, g in zip(params, grads):
        p.grad = torch.tensor(g)
    return grads


def test_grad_clipping_skips_frozen_and_gradless_parameters_and_zero_grads():
    net = concise_model("lstm")
    net.linear.weight.requires_grad_(False)
    net.linear.weight.grad = torch.full_like(net.linear.weight, 100.0)  # frozen: not counted
    trainable = [p for p in net.parameters() if p.requires_grad]
    grads = set_grads(trainable[:-1], 3.0)
    trainable[-1].grad = None  # no gradient yet
    dl.grad_clipping(net, 1.5)
    assert global_norm([p.grad for p in trainable[:-1]]) == pytest.approx(1.5, rel=1e-6)
    np.testing.assert_allclose(trainable[0].grad.numpy(), grads[0] / 2, rtol=1e-5, atol=1e-8)
    assert trainable[-1].grad is None
    assert torch.all(net.linear.weight.grad == 100.0)
    for p in trainable[:-1]:
        p.grad = torch.zeros_like(p)
    dl.grad_clipping(net, 1.0)  # a zero norm: no division by zero
    assert all(torch.all(p.grad == 0) for p in trainable[:-1])
    dl.grad_clipping(dl.RNNModel(nn.RNN(V, H), V), 1.0)  # no gradients at all: a no-op


def test_sgd_is_the_books_minibatch_update_and_zeroes_the_gradients():
    params = [torch.tensor([1.0, 2.0], requires_grad=True), torch.ones((2, 2), requires_grad=True)]
    params[0].grad = torch.tensor([4.0, -8.0])
    params[1].grad = torch.full((2, 2), 2.0)
    dl.sgd(params, 0.5, 4)
    np.testing.assert_allclose(params[0].detach().numpy(), [0.5, 3.0])
    np.testing.assert_allclose(params[1].detach().numpy(), np.full((2, 2), 0.75))
    assert all(torch.all(p.grad == 0) for p in params)
    assert all(p.requires_grad and p.is_leaf for p in params)


# ---------------------------------------------------------------------------------------------
# (c) the updaters: the book's function, a float learning rate, torch.optim


def test_book_scratch_updater_matches_the_fused_float_lr_path():
    loader, vocab = tiny_loader()
    params = numpy_params("lstm", vocab_size=len(vocab))
    results = []
    for use_function in (True, False):
        net = scratch_model("lstm", params, vocab_size=len(vocab))
        lr = 1.0
        updater = (
            (lambda batch_size, net=net, lr=lr: dl.sgd(net.params, lr, batch_size))
            if use_function
            else lr
        )
        random.seed(0)  # the same random offset for the epoch
        ppl, speed = dl.train_epoch_dl(net, loader, ce(), updater, CPU, False)
        assert speed > 0 and 1 < ppl < 2 * len(vocab)
        results.append((ppl, weights(net)))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6)
    assert_weights_close(results[0][1], results[1][1], 1e-6)
    assert not np.allclose(results[0][1][0], params["W_xi"])
    assert dl.train_epoch_ch8 is dl.train_epoch_dl


def manual_steps(net, batches, lr, theta):
    """The book's step written out: mean loss, backward, clip_grad_norm_, p -= lr * grad."""
    state, losses = net.begin_state(CPU, batch_size=batches[0][0].shape[0]), []
    for X, Y in batches:
        state = tuple(s.detach() for s in state)
        y_hat, state = net(torch.tensor(X), state)
        loss = nn.functional.cross_entropy(y_hat, torch.tensor(Y).T.reshape(-1).long())
        net.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), theta)
        with torch.no_grad():
            for p in net.parameters():
                p -= lr * p.grad
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize("updater", ["optim", "float"])
def test_rnn_model_steps_match_a_manual_loop(updater):
    batches = random_batches()
    expected_net, net = concise_model("lstm"), concise_model("lstm")
    expected = manual_steps(expected_net, batches, lr=0.5, theta=0.3)
    opt = torch.optim.SGD(net.parameters(), 0.5) if updater == "optim" else 0.5
    losses = train_steps(dl.TorchTrainer(net, ce(), opt, CPU, theta=0.3), batches)
    np.testing.assert_allclose(losses, expected, rtol=1e-5, atol=1e-6)
    assert_weights_close(weights(net), weights(expected_net), 1e-5)


def test_train_epoch_dl_with_torch_optim_for_rnn_model():
    loader, vocab = tiny_loader(use_random_iter=True)
    net = concise_model("gru", vocab_size=len(vocab), num_layers=2)
    before = weights(net)
    ppl, speed = dl.train_epoch_dl(
        net, loader, nn.CrossEntropyLoss(), torch.optim.SGD(net.parameters(), 1.0), CPU, True
    )
    assert 1 < ppl < 2 * len(vocab) and speed > 0
    assert all(not np.allclose(b, a) for b, a in zip(before, weights(net)))


# ---------------------------------------------------------------------------------------------
# (d) bad inputs and divergence


@pytest.fixture
def small_setup():
    loader, vocab = tiny_loader()
    net = scratch_model("lstm", numpy_params("lstm", vocab_size=len(vocab)), vocab_size=len(vocab))
    return net, loader, vocab


@pytest.mark.parametrize("precision", ["fp64", "fp8", "float64", ""])
def test_unknown_precision_is_refused(small_setup, capsys, precision):
    net, loader, vocab = small_setup
    with pytest.raises(ValueError, match="precision"):
        dl.train_dl(net, loader, vocab, 1, 1, CPU, precision=precision)
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError, match="precision"):
        dl.TorchTrainer(net, ce(), 1.0, CPU, precision=precision)
    with pytest.raises(ValueError, match="precision"):
        dl.train_epoch_dl(net, loader, ce(), 1.0, CPU, False, precision=precision)


def test_train_epoch_dl_accepts_an_iterator_of_torch_tensor_batches():
    net = concise_model("lstm")
    batches = [(torch.tensor(X), torch.tensor(Y)) for X, Y in random_batches(n=2)]
    ppl, _ = dl.train_epoch_dl(
        net, batches, ce(), torch.optim.SGD(net.parameters(), 1.0), CPU, False
    )
    assert 1 < ppl < 2 * V


# ---------------------------------------------------------------------------------------------
# (e) train_dl end to end, the book's names


def test_train_dl_scratch_as_in_the_seed(capsys):
    loader, vocab = tiny_loader()
    device = dl.try_gpu()
    torch.manual_seed(0)
    model = dl.RNNModelScratch(
        len(vocab), H, device, dl.get_lstm_params, dl.init_lstm_state, dl.lstm
    )
    before = weights(model)
    assert dl.train_dl(model, loader, vocab, 1, 3, device) is None
    check_book_output(capsys.readouterr().out, vocab, str(device))
    assert all(not np.allclose(b, a) for b, a in zip(before, weights(model)))


def test_train_dl_concise_as_in_the_seed(capsys):
    loader, vocab = tiny_loader()
    torch.manual_seed(0)
    device = dl.try_gpu()
    model = dl.RNNModel(nn.LSTM(len(vocab), H), vocab_size=len(vocab)).to(device)
    before = weights(model)
    dl.train_ch8(model, loader, vocab, 1, 3, device)
    check_book_output(capsys.readouterr().out, vocab, str(device))
    assert all(not np.allclose(b, a) for b, a in zip(before, weights(model)))


def test_train_dl_with_random_iter_and_integer_lr(capsys):
    loader, vocab = tiny_loader(use_random_iter=True)
    torch.manual_seed(0)
    model = dl.RNNModelScratch(len(vocab), H, CPU, dl.get_gru_params, dl.init_gru_state, dl.gru)
    dl.train_dl(model, loader, vocab, 1, 3, CPU, use_random_iter=True)
    check_book_output(capsys.readouterr().out, vocab, "cpu")


def test_try_gpu():
    if not torch.cuda.is_available():
        assert dl.try_gpu() == torch.device("cpu")
    assert isinstance(dl.try_gpu(), torch.device)
    assert dl.try_gpu(torch.cuda.device_count()) == torch.device("cpu")  # one past the last


# ---------------------------------------------------------------------------------------------
# (f) torch.distributed: two gloo processes, half the batch rows each, equal one process


DISTRIBUTED = """
import json, os, sys
import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn
from dl import torch as dl

V, H, B, T = 10, 16, 4, 6

def main(rank, world_size, out_path):
    if world_size > 1:
        torch_dist.init_process_group("gloo", rank=rank, world_size=world_size)
    ids = np.random.default_rng(0).integers(0, V, (B, 3 * T + 1)).astype(np.int32)
    batches = [(ids[:, i * T:(i + 1) * T], ids[:, i * T + 1:(i + 1) * T + 1]) for i in range(3)]
    rows = slice(rank * B // world_size, (rank + 1) * B // world_size)
    out = {}
    for kind in ("scratch", "concise"):
        torch.manual_seed(0)  # the same initial weights in every process
        if kind == "scratch":
            net = dl.RNNModelScratch(V, H, "cpu", lambda v, h, d: [
                (p * 30).detach().requires_grad_(True) for p in dl.get_lstm_params(v, h, d)],
                dl.init_lstm_state, dl.lstm)
            updater = 1.0
        else:
            net = dl.RNNModel(nn.LSTM(V, H), V)
            updater = torch.optim.SGD(net.parameters(), 1.0)
        trainer = dl.TorchTrainer(net, nn.CrossEntropyLoss(reduction="none"), updater, "cpu",
                                  theta=0.5)
        state, losses = trainer.begin_state(B // world_size), []
        for X, Y in batches:
            state = trainer.train_step(X[rows], Y[rows], state)
            losses.append(trainer.take_loss_sum() / Y[rows].size)
        out[kind] = {"distributed": trainer.distributed, "losses": losses,
                     "weights": [p.detach().numpy().tolist() for p in net.parameters()]}
    with open(out_path, "w") as f:
        json.dump(out, f)
    if world_size > 1:
        # gloo's teardown (destroy_process_group or interpreter exit) sometimes aborts with
        # "terminate called without an active exception" (seen once in CI); the results are
        # written, so wait for the peer and leave without tearing anything down
        torch_dist.barrier()
        os._exit(0)

if __name__ == "__main__":
    main(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), sys.argv[1])
"""


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory):
    """Two gloo processes (world size 2) and one plain run in this process."""
    tmp = tmp_path_factory.mktemp("ddp")
    script = tmp / "ddp_worker.py"
    script.write_text(textwrap.dedent(DISTRIBUTED))
    namespace = {"__name__": "ddp_worker"}
    exec(compile(script.read_text(), str(script), "exec"), namespace)
    namespace["main"](0, 1, str(tmp / "single.json"))
    env = dict(
        os.environ,
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        WORLD_SIZE="2",
        OMP_NUM_THREADS="1",
    )
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp / f"rank{rank}.json")],
            env=dict(env, RANK=str(rank)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(2)
    ]
    for proc in procs:
        try:
            output, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, output[-5000:]
    return {
        name: json.loads((tmp / f"{name}.json").read_text())
        for name in ("single", "rank0", "rank1")
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["scratch", "concise"])
def test_distributed_data_parallel_matches_one_process(distributed_run, kind):
    single = distributed_run["single"][kind]
    assert single["distributed"] is False
    for rank in ("rank0", "rank1"):
        run = distributed_run[rank][kind]
        assert run["distributed"] is True  # detected from init_process_group
        # the mean loss over the whole batch, the same in both processes
        np.testing.assert_allclose(run["losses"], single["losses"], rtol=1e-5, atol=1e-6)
        assert_weights_close(
            [np.array(w) for w in run["weights"]], [np.array(w) for w in single["weights"]], 1e-5
        )
    first = [np.array(w) for w in single["weights"]]
    torch.manual_seed(0)
    if kind == "concise":
        initial = weights(dl.RNNModel(nn.LSTM(V, H), V))
        assert all(not np.allclose(a, b) for a, b in zip(first, initial))  # training moved


# ---------------------------------------------------------------------------------------------
# (g) CUDA


def cuda_copy(net, device):
    if isinstance(net, nn.Module):
        return copy.deepcopy(net).to(device)
    cell = {dl.lstm: "lstm", dl.gru: "gru", dl.rnn: "rnn"}[net.forward_fn]
    params = {n: p.detach().numpy() for n, p in zip(ref.PARAM_NAMES[cell], net.params)}
    return scratch_model(cell, params, vocab_size=net.vocab_size, device=device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("kind", ["scratch", "concise"])
def test_train_dl_on_cuda_gives_the_cpu_loss(kind, capsys):
    loader, vocab = tiny_loader()
    if kind == "scratch":
        net = scratch_model(
            "lstm", numpy_params("lstm", vocab_size=len(vocab)), vocab_size=len(vocab)
        )
    else:
        net = concise_model("lstm", vocab_size=len(vocab))
    gpu = dl.try_gpu()
    assert gpu.type == "cuda"
    results = {}
    for device in (CPU, gpu):
        model = cuda_copy(net, device)
        animator = dl.Animator()
        random.seed(0)
        dl.train_dl(model, loader, vocab, 1, 10, device, animator=animator)
        out = capsys.readouterr().out
        assert f"tokens/sec on {device}" in out
        results[device.type] = animator.Y[0][0], weights(model)
    np.testing.assert_allclose(results["cuda"][0], results["cpu"][0], rtol=1e-3)
    assert_weights_close(results["cuda"][1], results["cpu"][1], 1e-3)


# ---------------------------------------------------------------------------------------------
# (h) bf16 autocast on CPU


@pytest.mark.parametrize("kind", ["scratch", "concise"])
def test_bf16_training_lowers_a_finite_loss(kind):
    net = (
        scratch_model("lstm", numpy_params("lstm")) if kind == "scratch" else concise_model("lstm")
    )
    trainer = trainer_for(net, precision="bf16")
    ((X, Y),) = random_batches(n=1)
    losses = []
    for _ in range(15):  # the same batch: the loss must fall
        trainer.train_step(X, Y, trainer.begin_state(B))
        losses.append(trainer.take_loss_sum() / Y.size)
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.05, losses
    assert all(p.dtype == torch.float32 for p in net.parameters())  # weights stay float32


def test_train_dl_in_bf16_prints_as_the_book(capsys):
    loader, vocab = tiny_loader()
    torch.manual_seed(0)
    model = dl.RNNModel(nn.LSTM(len(vocab), H), vocab_size=len(vocab))
    dl.train_dl(model, loader, vocab, 1, 3, CPU, precision="bf16")
    check_book_output(capsys.readouterr().out, vocab, "cpu")
