"""Metrics shared by every backend: perplexity for language models, BLEU for translations,
forecast errors for series.

Forecast metrics take y_true and y_pred of the same shape (any shape, e.g. (N, horizon));
shapes are never broadcast, so a (N, 1) against (N,) mix-up is an error, not a silent
(N, N) comparison. They return Python floats; NaN in the inputs gives NaN.
"""

import collections
import math

import numpy as np

from dl.errors import InputError
from dl.validate import check_positive


def perplexity(loss_sum: float, num_tokens: float) -> float:
    """exp of the mean cross-entropy (nats) over ``num_tokens`` tokens; ``inf`` past float range."""
    if num_tokens <= 0:
        raise InputError(f"perplexity needs at least one token, got num_tokens={num_tokens}")
    mean = loss_sum / num_tokens
    return math.exp(mean) if mean < 709 else math.inf


def text_figures(loss_sum: float, num_tokens: int, bits_per: str | None = None) -> dict:
    """A language model's figures over ``num_tokens`` tokens of summed cross-entropy
    ``loss_sum`` (nats): ``loss`` (nats per token), ``perplexity`` and, where each token is a
    character or a byte (``bits_per``: ``'char'``, ``'byte'``), ``bits_per_char`` or
    ``bits_per_byte`` (the loss in base 2)."""
    figures = {"loss": loss_sum / num_tokens, "perplexity": perplexity(loss_sum, num_tokens)}
    if bits_per is not None:
        figures[f"bits_per_{bits_per}"] = figures["loss"] / math.log(2)
    return figures


def bleu(pred_seq: str, label_seq: str, k: int) -> float:
    """The book's BLEU of a space-separated prediction against one label, n-grams up to ``k``:
    ``exp(min(0, 1 - len_label / len_pred)) * prod_n p_n ** (1 / 2 ** n)``, ``p_n`` the share
    of the prediction's n-grams found in the label (each label n-gram matched once). A
    prediction shorter than ``n`` tokens has no n-grams: ``p_n`` is 0 (the book divides by 0)."""
    check_positive("k", k, integer=True)
    pred_tokens, label_tokens = pred_seq.split(" "), label_seq.split(" ")
    len_pred, len_label = len(pred_tokens), len(label_tokens)
    score = math.exp(min(0, 1 - len_label / len_pred))
    for n in range(1, k + 1):
        label_counts = collections.Counter(
            " ".join(label_tokens[i : i + n]) for i in range(len_label - n + 1)
        )
        pred_counts = collections.Counter(
            " ".join(pred_tokens[i : i + n]) for i in range(len_pred - n + 1)
        )
        num_matches = sum(min(count, label_counts[gram]) for gram, count in pred_counts.items())
        num_grams = len_pred - n + 1
        score *= (num_matches / num_grams) ** (0.5**n) if num_grams > 0 else 0.0
    return score


def _pair(name, y_true, y_pred):
    """y_true and y_pred as float64 arrays of one shape with at least one value."""
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape:
        raise InputError(
            f"{name}: y_true and y_pred must have the same shape, got "
            f"{y_true.shape} and {y_pred.shape}"
        )
    if y_true.size == 0:
        raise InputError(f"{name} needs at least one value, got empty arrays")
    return y_true, y_pred


def mae(y_true, y_pred) -> float:
    """Mean absolute error, mean |y_true - y_pred|."""
    y_true, y_pred = _pair("mae", y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


def rmse(y_true, y_pred) -> float:
    """Root mean squared error, sqrt(mean (y_true - y_pred)^2)."""
    y_true, y_pred = _pair("rmse", y_true, y_pred)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def _naive_scale(y_train, period):
    """In-sample MAE of the seasonal naive forecast y[t - period] on the training part."""
    check_positive("period", period, integer=True)
    y_train = np.asarray(y_train, dtype=np.float64)
    if y_train.ndim == 2 and y_train.shape[1] == 1:
        y_train = y_train[:, 0]
    if y_train.ndim != 1:
        raise InputError(
            f"mase: y_train must be the training part of the target, shape (T,), "
            f"got {y_train.shape}"
        )
    if len(y_train) <= period:
        raise InputError(
            f"mase needs a training part longer than period={period}, got {len(y_train)} values"
        )
    return float(np.mean(np.abs(y_train[period:] - y_train[:-period])))


def mase(y_true, y_pred, y_train, period: int = 1) -> float:
    """Mean absolute scaled error: MAE / the in-sample MAE of the seasonal naive forecast
    (y[t] predicted by y[t - period]; period 1: naive) on the training part y_train (T,).

    Below 1 beats that naive forecast on average. When the scale is 0 (the training part is
    constant, or repeats exactly every `period` steps) MASE is undefined: the result is
    ``math.nan`` (never a ZeroDivisionError) and :func:`mase_undefined_reason` says why.
    """
    y_true, y_pred = _pair("mase", y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred))) / mase_scale(y_train, period)


def mase_scale(y_train, period: int = 1) -> float:
    """MASE's denominator: the in-sample MAE of the seasonal naive forecast on ``y_train``
    (T,); NaN where MASE is undefined (0, or not finite)."""
    scale = _naive_scale(y_train, period)
    return scale if scale > 0 and math.isfinite(scale) else math.nan


def mase_undefined_reason(y_train, period: int = 1) -> str | None:
    """Why :func:`mase` returns NaN for this training part, or None when it is defined."""
    scale = _naive_scale(y_train, period)
    if not math.isfinite(scale):
        return "MASE is undefined: the training part has NaN or infinite values"
    if scale > 0:
        return None
    y_train = np.ravel(np.asarray(y_train, dtype=np.float64))
    what = (
        "is constant" if np.all(y_train == y_train[0]) else f"repeats exactly every {period} steps"
    )
    return (
        f"MASE is undefined: the training part {what}, so the in-sample "
        f"{'naive' if period == 1 else f'seasonal naive (period {period})'} forecast has "
        "error 0 and there is no scale to divide by; compare MAE or RMSE instead"
    )


def smape(y_true, y_pred) -> float:
    """Symmetric mean absolute percentage error in percent, 0..200:
    mean of 200 |y_true - y_pred| / (|y_true| + |y_pred|), where a term with
    y_true = y_pred = 0 (0/0) counts as 0, a perfect forecast."""
    y_true, y_pred = _pair("smape", y_true, y_pred)
    denominator = np.abs(y_true) + np.abs(y_pred)
    safe = np.where(denominator == 0, 1.0, denominator)
    terms = np.where(denominator == 0, 0.0, 2.0 * np.abs(y_true - y_pred) / safe)
    return float(100.0 * np.mean(terms))
