"""Tests for dl.metrics."""

import collections
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl.metrics import bleu, mae, mase, mase_undefined_reason, perplexity, rmse, smape


@pytest.mark.parametrize(
    "loss_sum, num_tokens, expected",
    [
        (0.0, 5, 1.0),  # a perfect model
        (10 * math.log(28), 10, 28.0),  # uniform over the 28 characters of the book
        (3.0, 2, math.exp(1.5)),
        (35 * math.log(2), 35, 2.0),
        (2.5, 2.5, math.e),  # float token counts (weighted sums) are fine
        (-1.0, 1, math.exp(-1.0)),
    ],
)
def test_perplexity_known_values(loss_sum, num_tokens, expected):
    assert perplexity(loss_sum, num_tokens) == pytest.approx(expected, rel=1e-12)


def test_perplexity_returns_a_float():
    assert isinstance(perplexity(1, 1), float)


@pytest.mark.parametrize("num_tokens", [0, 0.0, -1, -100])
def test_perplexity_without_tokens_raises(num_tokens):
    with pytest.raises(ValueError, match="at least one token") as info:
        perplexity(1.0, num_tokens)
    assert f"num_tokens={num_tokens}" in str(info.value)


def test_perplexity_of_a_huge_finite_loss_is_inf():
    assert perplexity(1e6, 1) == math.inf


# ---------------------------------------------------------------- forecast errors

Y_TRUE = [1.0, 2.0, 3.0, 4.0]
Y_PRED = [1.0, 3.0, 5.0, 1.0]  # errors 0, 1, 2, 3
Y_TRAIN = [1.0, 3.0, 2.0, 5.0, 4.0]


def test_mae_and_rmse_known_values():
    assert mae(Y_TRUE, Y_PRED) == 1.5
    assert rmse(Y_TRUE, Y_PRED) == math.sqrt(3.5)  # (0 + 1 + 4 + 9) / 4
    assert mae([[1.0, 2.0]], [[2.0, 4.0]]) == 1.5  # (N, horizon)
    assert rmse([2.0], [2.0]) == 0.0
    assert isinstance(mae(Y_TRUE, Y_PRED), float)


def test_mase_known_values():
    # naive in-sample errors |3-1|, |2-3|, |5-2|, |4-5| -> scale 7/4
    assert mase(Y_TRUE, Y_PRED, Y_TRAIN) == pytest.approx(1.5 / 1.75, rel=1e-15)
    # period 2: |2-1|, |5-3|, |4-2| -> scale 5/3
    assert mase(Y_TRUE, Y_PRED, Y_TRAIN, period=2) == pytest.approx(0.9, rel=1e-15)
    assert mase(Y_TRUE, Y_TRUE, Y_TRAIN) == 0.0
    assert mase(Y_TRUE, Y_PRED, [[x] for x in Y_TRAIN]) == pytest.approx(6 / 7)  # (T, 1) is fine
    assert mase_undefined_reason(Y_TRAIN) is None


def test_mase_of_a_constant_training_part_is_nan_with_a_reason():
    assert math.isnan(mase(Y_TRUE, Y_PRED, [2.0, 2.0, 2.0]))
    assert math.isnan(mase([2.0], [2.0], [2.0, 2.0]))  # even a perfect forecast: 0/0
    reason = mase_undefined_reason([2.0, 2.0, 2.0])
    assert reason == (
        "MASE is undefined: the training part is constant, so the in-sample naive "
        "forecast has error 0 and there is no scale to divide by; compare MAE or "
        "RMSE instead"
    )


def test_mase_of_an_exactly_periodic_training_part_is_nan_with_a_reason():
    train = [1.0, 5.0, 1.0, 5.0, 1.0]
    assert math.isnan(mase(Y_TRUE, Y_PRED, train, period=2))
    assert mase_undefined_reason(train, period=2).startswith(
        "MASE is undefined: the training part repeats exactly every 2 steps, so the in-sample "
        "seasonal naive (period 2) forecast has error 0"
    )
    assert mase(Y_TRUE, Y_PRED, train, period=1) == pytest.approx(1.5 / 4)


def test_mase_with_nan_training_values():
    assert math.isnan(mase(Y_TRUE, Y_PRED, [1.0, math.nan, 3.0]))
    assert "NaN or infinite" in mase_undefined_reason([1.0, math.nan, 3.0])


@pytest.mark.parametrize(
    "y_train, period, message",
    [
        ([1.0, 2.0], 2, r"training part longer than period=2, got 2 values"),
        ([1.0, 2.0, 3.0], 0, r"period must be > 0"),
        (
            np.ones((4, 2)),
            1,
            r"y_train must be the training part of the target, shape \(T,\), "
            r"got \(4, 2\)",
        ),
    ],
)
def test_mase_argument_errors(y_train, period, message):
    with pytest.raises(ValueError, match=message):
        mase(Y_TRUE, Y_PRED, y_train, period)


def test_smape_known_values():
    # terms 0/2, 2/2, 0/0 -> 0, 2/6: 200/4 * (0 + 1 + 0 + 1/3)
    assert smape([1.0, 2.0, 0.0, 4.0], [1.0, 0.0, 0.0, 2.0]) == pytest.approx(200 / 3, rel=1e-15)
    assert smape([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert smape([1.0, -1.0], [-1.0, 1.0]) == 200.0  # opposite signs: the maximum
    assert smape([0.0], [5.0]) == 200.0


@pytest.mark.parametrize("metric", [mae, rmse, smape])
def test_metrics_refuse_mismatched_shapes_and_empty_input(metric):
    with pytest.raises(ValueError, match=r"same shape, got \(3,\) and \(3, 1\)"):
        metric([1.0, 2.0, 3.0], [[1.0], [2.0], [3.0]])
    with pytest.raises(ValueError, match="at least one value"):
        metric([], [])


@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), min_size=1, max_size=30))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_forecast_metric_properties(pairs):
    y_true, y_pred = (np.array(column) for column in zip(*pairs))
    assert 0.0 <= smape(y_true, y_pred) <= 200.0 + 1e-9
    assert smape(y_true, y_pred) == pytest.approx(smape(y_pred, y_true))  # symmetric
    assert 0.0 <= mae(y_true, y_pred) <= rmse(y_true, y_pred) * (1 + 1e-12) + 1e-12
    assert mae(y_true, y_true) == rmse(y_true, y_true) == smape(y_true, y_true) == 0.0


def _book_bleu(pred_seq, label_seq, k):
    """The book's bleu (d2l 0.17), as printed, for comparison."""
    pred_tokens, label_tokens = pred_seq.split(" "), label_seq.split(" ")
    len_pred, len_label = len(pred_tokens), len(label_tokens)
    score = math.exp(min(0, 1 - len_label / len_pred))
    for n in range(1, k + 1):
        num_matches, label_subs = 0, collections.defaultdict(int)
        for i in range(len_label - n + 1):
            label_subs[" ".join(label_tokens[i : i + n])] += 1
        for i in range(len_pred - n + 1):
            if label_subs[" ".join(pred_tokens[i : i + n])] > 0:
                num_matches += 1
                label_subs[" ".join(pred_tokens[i : i + n])] -= 1
        score *= math.pow(num_matches / (len_pred - n + 1), math.pow(0.5, n))
    return score


def test_bleu_reproduces_the_books_printed_scores():
    assert bleu("va !", "va !", k=2) == 1.0
    assert bleu("il est riche .", "il est calme .", k=2) == pytest.approx(0.658, abs=5e-4)
    assert bleu("je suis", "je suis chez moi .", k=2) == pytest.approx(math.exp(-1.5))
    assert bleu("a a a", "a b", k=1) == pytest.approx((1 / 3) ** 0.5)  # 'a' matches once


@given(
    st.lists(st.sampled_from("abc"), min_size=3, max_size=8),
    st.lists(st.sampled_from("abcd"), min_size=1, max_size=8),
    st.integers(1, 3),
)
def test_bleu_equals_the_books_where_the_book_is_defined(pred, label, k):
    assert bleu(" ".join(pred), " ".join(label), k) == pytest.approx(
        _book_bleu(" ".join(pred), " ".join(label), k)
    )


def test_bleu_of_a_prediction_shorter_than_k_is_zero():
    assert bleu("va", "va !", k=2) == 0.0  # the book raises ZeroDivisionError
