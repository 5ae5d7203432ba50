"""`dl train` with an optimizer that keeps state: a run stopped after two epochs and resumed
to four ends with the four-epoch run's weights and optimizer state, bit for bit, on every
backend (the state travels in the checkpoint under dl.optim's canonical names)."""

import numpy as np
import pytest

from dl import checkpoint
from dl.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("time_machine_path")]
SMALL = [
    "--hidden",
    "16",
    "--batch-size",
    "4",
    "--num-steps",
    "8",
    "--max-tokens",
    "2000",
    "--optimizer",
    "rmsprop",
    "--lr",
    "0.01",
    "--save-every",
    "2",
]


@pytest.mark.parametrize("backend", ["torch", "tensorflow", "jax"])
def test_a_resumed_rmsprop_run_ends_as_the_uninterrupted_one(tmp_path, capsys, backend):
    pytest.importorskip(backend)
    dl = lambda *args: main([str(a) for a in args])
    assert (
        dl("train", *SMALL, "--backend", backend, "--epochs", 4, "--out", tmp_path / "whole") == 0
    )
    assert dl("train", *SMALL, "--backend", backend, "--epochs", 2, "--out", tmp_path / "cut") == 0
    assert dl("train", "--out", tmp_path / "cut", "--resume", "--epochs", 4) == 0
    whole_params, whole_state, whole_meta = checkpoint.load_with_optimizer(tmp_path / "whole")
    cut_params, cut_state, cut_meta = checkpoint.load_with_optimizer(tmp_path / "cut")
    assert cut_meta["epoch"] == whole_meta["epoch"] == 4
    assert sorted(whole_state) == sorted(cut_state) and "opt.v.W_xi" in whole_state
    assert whole_state["opt.step"].item() > 0  # updates counted, compared below
    for name, value in {**whole_params, **whole_state}.items():
        np.testing.assert_array_equal({**cut_params, **cut_state}[name], value, err_msg=name)
