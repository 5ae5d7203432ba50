"""dl.flops: parameter counts and FLOPs per token, against hand computations and LMConfig."""

import math
import subprocess
import sys
from fractions import Fraction

import pytest

from dl import flops
from dl.lm import LMConfig

SEED = LMConfig()  # the book's LSTM: V = 28, H = 256


def test_seed_lstm_by_hand():
    V, H = 28, 256
    parts = flops.forward_flops(SEED)
    assert parts == flops.Flops(
        input=4 * H,
        recurrent=2 * H * 4 * H,
        elementwise=13 * H,
        output=2 * H * V + V,
        softmax=3 * V,
    )
    assert parts.total == 1024 + 524_288 + 3_328 + 14_364 + 84 == 543_088
    assert flops.inference_flops(SEED) == 543_088
    assert flops.training_flops(SEED) == 3 * 543_088
    dense = flops.forward_flops(SEED, "dense")
    assert dense.input == 2 * V * 4 * H + 4 * H  # the book's one-hot product, plus biases
    assert flops.training_flops(SEED, "dense") - flops.training_flops(SEED) == 3 * 57_344
    assert flops.num_params(SEED) == 299_036


def test_tiny_rnn_and_gru_by_hand():
    rnn = LMConfig(cell="rnn", vocab_size=3, num_hiddens=2)
    # W_xh (3, 2) + W_hh (2, 2) + b_h (2,) + W_hq (2, 3) + b_q (3,)
    assert flops.num_params(rnn) == 6 + 4 + 2 + 6 + 3 == 21
    assert flops.forward_flops(rnn) == flops.Flops(
        input=2, recurrent=8, elementwise=4, output=15, softmax=9
    )
    gru = LMConfig(cell="gru", vocab_size=3, num_hiddens=2, num_layers=2)
    # layer 2's input product: (1, 2) @ (2, 3*2) is 2 * 2 * 6 multiply-adds
    assert flops.forward_flops(gru, "dense").input == (2 * 3 * 6 + 6) + (2 * 2 * 6 + 6)
    assert flops.forward_flops(gru).input == 6 + (2 * 2 * 6 + 6)
    assert flops.forward_flops(gru).recurrent == 2 * (2 * 2 * 6)
    assert flops.forward_flops(gru).elementwise == 2 * 11 * 2


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("vocab, hidden", [(28, 256), (5, 7), (1000, 64)])
def test_parameters_match_the_model(cell, layers, vocab, hidden):
    config = LMConfig(cell=cell, vocab_size=vocab, num_hiddens=hidden, num_layers=layers)
    assert flops.num_params(config) == config.num_params()


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers", [1, 2])
def test_dense_products_cost_two_flops_per_weight(cell, layers):
    config = LMConfig(cell=cell, vocab_size=11, num_hiddens=13, num_layers=layers)
    shapes = config.param_shapes()
    weights = sum(math.prod(s) for name, s in shapes.items() if len(s) == 2)
    biases = sum(math.prod(s) for s in shapes.values() if len(s) == 1)
    parts = flops.forward_flops(config, "dense")
    assert parts.input + parts.recurrent + parts.output == 2 * weights + biases


@pytest.mark.parametrize("hidden", [1, 16, 256, 1024])
@pytest.mark.parametrize("layers", [1, 3])
def test_recurrent_flops_lstm_is_four_thirds_gru_and_four_rnn(hidden, layers):
    recurrent = {
        cell: flops.forward_flops(
            LMConfig(cell=cell, num_hiddens=hidden, num_layers=layers)
        ).recurrent
        for cell in ("rnn", "gru", "lstm")
    }
    assert Fraction(recurrent["lstm"], recurrent["gru"]) == Fraction(4, 3)
    assert Fraction(recurrent["lstm"], recurrent["rnn"]) == 4
    assert recurrent["rnn"] == layers * 2 * hidden * hidden


def test_whole_model_ratios_approach_the_recurrent_ones_as_hidden_grows():
    def ratio(hidden, other):
        return flops.training_flops(LMConfig(num_hiddens=hidden)) / flops.training_flops(
            LMConfig(cell=other, num_hiddens=hidden)
        )

    assert ratio(64, "rnn") < ratio(256, "rnn") < ratio(4096, "rnn") < 4
    assert ratio(4096, "rnn") == pytest.approx(4, rel=0.01)
    assert ratio(4096, "gru") == pytest.approx(4 / 3, rel=0.01)


def test_output_tanh_is_one_flop_per_unit():
    without = LMConfig(output_tanh=False)
    assert flops.forward_flops(without).elementwise == 12 * 256
    assert flops.inference_flops(SEED) - flops.inference_flops(without) == 256
    assert flops.num_params(without) == flops.num_params(SEED)


def test_training_is_three_forward_passes():
    for cell in ("rnn", "gru", "lstm"):
        config = LMConfig(cell=cell, num_hiddens=100, num_layers=2)
        for view in flops.INPUT_PRODUCTS:
            assert flops.training_flops(config, view) == 3 * flops.inference_flops(config, view)


def test_unknown_input_product_is_refused():
    with pytest.raises(ValueError, match="one of lookup, dense, got 'sparse'"):
        flops.forward_flops(SEED, "sparse")


def test_importing_flops_imports_no_framework():
    code = (
        "import sys, dl.flops; "
        "print([m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
