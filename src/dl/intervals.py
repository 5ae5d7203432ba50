"""Prediction intervals for :mod:`dl.forecast`, written once for every framework.

A forecaster with ``quantiles`` (and no likelihood) outputs one value per quantile level and
horizon step, trained with the mean pinball loss: the median itself and, for each other level,
the softplus of its distance from its neighbour nearer the median, so the quantiles never
cross and every level's loss moves the median (:func:`level_values`); one with
``likelihood='gaussian'`` outputs
a mean and a scale (softplus) per step, trained with the Gaussian negative log-likelihood, and
its quantiles are the Gaussian's at ``quantiles`` (:data:`DEFAULT_QUANTILES` when none are
given). :func:`objective` is the training loss of every forecaster (MSE without either), on
the ``ops`` of any framework (:func:`dl.lm.array_ops`), so every backend computes one formula.

Scores (NumPy, original units; :func:`scores`): the mean pinball loss, the CRPS approximated
from the quantiles (:func:`crps_weights`), and the coverage and mean width of each central
interval. :func:`evaluate` gives them on the test origins for the model and for the naive and
seasonal naive baselines, whose quantiles are their point forecasts plus the empirical
quantiles of their residuals on the training part, per horizon step
(:func:`residual_quantiles`).

Output layout: ``(B, K * Q)`` in blocks of Q columns, one per horizon step: block ``k`` the
``k``-th quantile level's (the median's, or a raw offset, see :func:`level_values`), or for a
Gaussian block 0 the mean and block 1 the raw scale.
Shape letters as in :mod:`dl.forecast`; K = values per step, L = quantile levels.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from statistics import NormalDist

import numpy as np

from dl.baselines import NaiveForecaster, SeasonalNaiveForecaster
from dl.data.series import SeriesError, make_windows
from dl.errors import InputError
from dl.lm import NUMPY_OPS
from dl.metrics import mase_scale

LIKELIHOODS = ("gaussian",)
DEFAULT_QUANTILES = (0.1, 0.5, 0.9)  # a Gaussian model's levels when none are given
MIN_SCALE = 1e-3  # the Gaussian's least standard deviation (scaled units): log σ stays finite
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
BASELINES = ("naive", "seasonal_naive")  # the baselines given intervals
# how a pinball-trained model's outputs give its quantiles (dl.forecast.ForecastConfig):
# offsets: the median and softplus offsets from it, level by level, which never cross;
# independent: one free output per level, sorted where they cross (checkpoints before offsets)
QUANTILE_HEADS = ("offsets", "independent")


def check_levels(quantiles) -> tuple[float, ...]:
    """Quantile levels as a tuple of floats, checked: numbers strictly between 0 and 1,
    increasing (so none twice). Raises InputError naming the level and what to give."""
    levels = tuple(quantiles or ())
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
            raise InputError(f"quantiles must be numbers strictly between 0 and 1, got {level!r}")
    for low, high in zip(levels, levels[1:]):
        if high <= low:
            raise InputError(
                f"quantiles must be given in increasing order, each once; {high:g} follows "
                f"{low:g} (give e.g. 0.1,0.5,0.9)"
            )
    return tuple(float(level) for level in levels)


def check_quantiles(quantiles, likelihood: str | None = None) -> tuple[float, ...]:
    """The levels a model of ``likelihood`` (None: pinball-trained) forecasts, checked by
    :func:`check_levels`; a pinball-trained model needs 0.5 (its point forecast is the
    median), a Gaussian one without levels gets :data:`DEFAULT_QUANTILES`."""
    if likelihood is not None and likelihood not in LIKELIHOODS:
        raise InputError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}")
    levels = check_levels(quantiles)
    if likelihood is None and levels and 0.5 not in levels:
        raise InputError(
            f"quantiles {','.join(f'{q:g}' for q in levels)} lack 0.5: the model's point "
            "forecast is its median; add 0.5"
        )
    return levels or (DEFAULT_QUANTILES if likelihood else ())


def check_mode(config, mode: str) -> None:
    """Refuse quantiles in autoregressive mode: its one-step forecasts are fed back as inputs,
    which a set of quantiles cannot be."""
    if is_probabilistic(config) and mode != "direct":
        raise InputError(
            f"quantiles and likelihoods forecast the whole horizon at once; mode {mode} feeds "
            "one-step forecasts back as inputs; use mode direct"
        )


def is_probabilistic(config) -> bool:
    """Whether ``config`` (a ForecastConfig, or None) forecasts quantiles."""
    return config is not None and bool(config.quantiles)


def values_per_step(config) -> int:
    """K: output values per horizon step: 2 (Gaussian), one per quantile level, else 1."""
    if config.likelihood == "gaussian":
        return 2
    return len(config.quantiles) or 1


def objective_name(config) -> str:
    if config is not None and config.likelihood == "gaussian":
        return "Gaussian NLL"
    return "pinball loss" if is_probabilistic(config) else "MSE"


def pinball(ops, error, level: float):
    """The pinball (quantile) loss of ``error = truth - quantile forecast`` at ``level``,
    elementwise: ``level * error`` when the truth is above, ``(level - 1) * error`` below."""
    return ops.maximum(level * error, (level - 1) * error)


def objective(ops, outputs, Y, config=None):
    """The mean training loss of ``outputs: (B, K * Q)`` against ``Y: (B, Q)`` (scaled
    units) as a scalar of ``ops``' framework: the pinball loss averaged over quantile levels,
    steps and windows; the Gaussian NLL averaged over steps and windows; or, without
    quantiles (or ``config`` None), the mean squared error."""
    if config is not None and config.likelihood == "gaussian":
        Q = Y.shape[1]
        mean, scale = outputs[:, :Q], ops.softplus(outputs[:, Q:]) + MIN_SCALE
        z = (Y - mean) / scale
        return ops.mean(0.5 * z * z + ops.log(scale)) + HALF_LOG_2PI
    if is_probabilistic(config):
        losses = [
            ops.mean(pinball(ops, Y - values, level))
            for values, level in zip(level_values(ops, outputs, config), config.quantiles)
        ]
        return sum(losses) / len(losses)
    return ops.mean((outputs - Y) ** 2)


def level_values(ops, outputs, config) -> list:
    """The quantiles of a pinball-trained model's ``outputs: (B, L * Q)``, one ``(B, Q)``
    array of ``ops``' framework per level. The ``offsets`` head: block ``m`` (level 0.5) is
    the median; above it each level is the one below plus the softplus of its block, below it
    the one above minus it, so the levels increase strictly and all of them move the median.
    The ``independent`` head: the blocks themselves."""
    Q = config.num_outputs
    raw = [outputs[:, k * Q : (k + 1) * Q] for k in range(len(config.quantiles))]
    if config.quantile_head == "independent":
        return raw
    median = config.quantiles.index(0.5)
    values = raw[:]
    for k in range(median + 1, len(raw)):
        values[k] = values[k - 1] + ops.softplus(raw[k])
    for k in range(median - 1, -1, -1):
        values[k] = values[k + 1] - ops.softplus(raw[k])
    return values


def value_blocks(config) -> tuple[int, ...]:
    """The blocks of Q outputs that are values on the target's axis (the others are raw
    offsets or scales): the point forecast, a Gaussian's mean, the median of an ``offsets``
    head, every level of an ``independent`` one."""
    if config.likelihood == "gaussian" or not is_probabilistic(config):
        return (0,)
    if config.quantile_head == "offsets":
        return (config.quantiles.index(0.5),)
    return tuple(range(len(config.quantiles)))


def add_level(ops, outputs, level, config):
    """``outputs: (B, K * Q)`` with ``level: (B, 1)`` added to the :func:`value_blocks`, as
    arrays of ``ops``' framework: a model's forecast relative to ``level`` made absolute."""
    K, Q = values_per_step(config), config.num_outputs
    shifted = value_blocks(config)
    if len(shifted) == K:
        return outputs + level
    blocks = [outputs[:, k * Q : (k + 1) * Q] for k in range(K)]
    return ops.concat([b + level if k in shifted else b for k, b in enumerate(blocks)], -1)


# ---------------------------------------------------------------- forecasts


def quantile_forecasts(outputs, config) -> np.ndarray:
    """``outputs: (N, K * Q)`` -> ``(N, Q, L)`` float64, the forecast quantiles at
    ``config.quantiles`` in the units of ``outputs``, non-decreasing along L: the quantiles of
    an ``independent`` head that cross are sorted, which lowers their summed pinball loss."""
    outputs, Q = np.asarray(outputs, np.float64), config.num_outputs
    if config.likelihood == "gaussian":
        mean, scale = outputs[:, :Q], NUMPY_OPS.softplus(outputs[:, Q:]) + MIN_SCALE
        z = np.array([NormalDist().inv_cdf(level) for level in config.quantiles])
        return mean[..., None] + scale[..., None] * z
    quantiles = np.stack(level_values(NUMPY_OPS, outputs, config), axis=-1)
    return np.sort(quantiles, axis=-1) if config.quantile_head == "independent" else quantiles


def point_forecasts(outputs, config) -> np.ndarray:
    """``outputs: (N, K * Q)`` -> ``(N, Q)`` point forecasts: the median (0.5 quantile) of a
    pinball-trained model, the mean of a Gaussian one, the outputs themselves otherwise."""
    if not is_probabilistic(config):
        return outputs
    if config.likelihood == "gaussian":
        return np.asarray(outputs)[:, : config.num_outputs]
    return quantile_forecasts(outputs, config)[:, :, config.quantiles.index(0.5)]


def point_predictor(predict, config):
    """``predict`` (scaled ``(N, W, D)`` -> ``(N, K * Q)``) as a predictor of the point
    forecasts ``(N, Q)`` (:func:`point_forecasts`), for :func:`dl.forecast.evaluate`."""
    if not is_probabilistic(config):
        return predict
    return lambda X: point_forecasts(predict(X), config)


def future_quantiles(predict, data, config) -> np.ndarray:
    """The quantiles of the ``horizon`` values after the end of the series, ``(Q, L)``
    float64 in original units."""
    return model_quantiles(predict, data, data.series.values[None, -data.window :], config)[0]


def model_quantiles(predict, data, X, config) -> np.ndarray:
    """Raw windows ``X: (N, W, D)`` -> the quantiles ``predict`` forecasts from them,
    ``(N, Q, L)`` float64 in original units (``data``'s scaling)."""
    outputs = quantile_forecasts(predict(data.scale_windows(X)), config)
    return data.scaler.inverse_transform(outputs, column=data.target)


# ---------------------------------------------------------------- scores


def crps_weights(levels) -> np.ndarray:
    """``(L,)`` weights of the CRPS approximated from quantiles at ``levels``.

    The CRPS is the integral over levels t in (0, 1) of twice the pinball loss of the t
    quantile; with quantiles at the given levels only, the integrand is taken as constant
    around each level, on the cell between the midpoints to its neighbours (0 and 1 at the
    ends): the weight is the cell's length. Equal cells make the CRPS twice the mean pinball
    loss; the one level 0.5 makes it the absolute error, the CRPS of a point forecast."""
    levels = np.asarray(levels, np.float64)
    cuts = np.concatenate([[0.0], (levels[1:] + levels[:-1]) / 2, [1.0]])
    return np.diff(cuts)


def central_intervals(levels) -> list[tuple[int, int]]:
    """Index pairs of the central intervals: the lowest level with the highest, the second
    lowest with the second highest, ... (0.1 and 0.9 of 0.1,0.5,0.9: the 80% interval)."""
    return [(i, len(levels) - 1 - i) for i in range(len(levels) // 2)]


def scores(truth, quantiles, levels) -> dict:
    """``truth: (N, Q)`` and forecast ``quantiles: (N, Q, L)`` at ``levels`` -> ``{'pinball':
    mean over levels, steps and origins, 'crps': :func:`crps_weights`' approximation averaged
    over steps and origins, 'pinball_by_level': {level: mean}, 'intervals': [{'lower',
    'upper', 'nominal', 'coverage', 'width'}]}``: the share of truths inside each central
    interval (bounds included) and its mean width."""
    truth, quantiles = np.asarray(truth, np.float64), np.asarray(quantiles, np.float64)
    error = truth[..., None] - quantiles
    by_level = np.array(
        [np.mean(pinball(NUMPY_OPS, error[..., k], level)) for k, level in enumerate(levels)]
    )
    intervals = []
    for low, high in central_intervals(levels):
        lower, upper = quantiles[..., low], quantiles[..., high]
        intervals.append(
            {
                "lower": levels[low],
                "upper": levels[high],
                "nominal": round(levels[high] - levels[low], 12),
                "coverage": float(np.mean((lower <= truth) & (truth <= upper))),
                "width": float(np.mean(upper - lower)),
            }
        )
    return {
        "pinball": float(by_level.mean()),
        "crps": float(2 * by_level @ crps_weights(levels)),
        "pinball_by_level": {f"{level:g}": float(v) for level, v in zip(levels, by_level)},
        "intervals": intervals,
    }


def residual_quantiles(baseline, train: np.ndarray, history: int, levels) -> np.ndarray:
    """``(Q, L)``: per horizon step, the empirical quantiles (NumPy's linear interpolation)
    at ``levels`` of the fitted ``baseline``'s errors (truth - forecast) on every window of
    ``history`` steps of the training part ``train: (T, D)``."""
    if len(train) < history + baseline.horizon:
        raise SeriesError(
            f"the training part has {len(train)} steps, too few for the residuals of "
            f"{baseline.name} ({history} of history and {baseline.horizon} ahead); give a "
            "smaller val_fraction or test_fraction"
        )
    X, Y = make_windows(train, history, baseline.horizon, baseline.target)
    residuals = Y.astype(np.float64) - baseline.predict(X)
    return np.quantile(residuals, levels, axis=0).T


def baseline_quantiles(train, X, horizon: int, target: int, period: int, levels) -> dict:
    """The naive and seasonal naive baselines fitted on ``train: (T, D)``, forecasting from
    raw windows ``X: (N, w, D)``: name -> their point forecasts plus their residual quantiles
    per step (:func:`residual_quantiles`), ``(N, Q, L)`` float64."""
    quantiles = {}
    for baseline, history in (
        (NaiveForecaster(horizon, target), 1),
        (SeasonalNaiveForecaster(horizon, target, period), period),
    ):
        baseline.fit(train)
        spread = residual_quantiles(baseline, train, history, levels)
        quantiles[baseline.name] = baseline.predict(X)[..., None] + spread[None]
    return quantiles


def figures(scored: dict, y_train, period: int) -> dict[str, float]:
    """:func:`scores`' figures, flat: ``coverage_<nominal %>`` and ``width_<nominal %>`` of
    each central interval, ``pinball`` and ``crps`` (original units), and the same divided by
    MASE's scale on ``y_train: (T,)`` (:func:`dl.metrics.mase_scale`; NaN where it is
    undefined): ``scaled_pinball`` (the M5 competition's scaled pinball loss, with the
    seasonal period) and ``scaled_crps``, which average across series."""
    flat = {}
    for interval in scored["intervals"]:
        nominal = f"{100 * interval['nominal']:.3g}"
        flat[f"coverage_{nominal}"] = interval["coverage"]
        flat[f"width_{nominal}"] = interval["width"]
    scale = mase_scale(y_train, period)
    return {
        **flat,
        "pinball": scored["pinball"],
        "crps": scored["crps"],
        "scaled_pinball": scored["pinball"] / scale,
        "scaled_crps": scored["crps"] / scale,
    }


@dataclasses.dataclass
class IntervalEvaluation:
    """Interval scores on the test origins, original units: ``scores[name]`` as
    :func:`scores` for ``'model'`` and :data:`BASELINES`; ``quantiles[name]``: ``(N, Q, L)``
    at ``levels``; ``truth``: ``(N, Q)``, as :class:`dl.forecast.Evaluation`'s."""

    levels: tuple[float, ...]
    scores: dict[str, dict]
    quantiles: dict[str, np.ndarray]
    truth: np.ndarray


def evaluate(predict, data, config) -> IntervalEvaluation:
    """The quantiles of ``predict`` (scaled ``(N, W, D)`` -> ``(N, K * Q)``, a model of
    ``config``) and of the naive and seasonal naive baselines with residual quantiles
    (fitted on the training part), scored on the test origins of
    :func:`dl.forecast.evaluate`."""
    levels, h, target = config.quantiles, data.horizon, data.target
    X, truth = data.test_windows(data.window)
    X_base, _ = data.test_windows(max(data.window, data.period))
    quantiles = {
        "model": model_quantiles(predict, data, X, config),
        **baseline_quantiles(data.train, X_base, h, target, data.period, levels),
    }
    truth = truth.astype(np.float64)
    return IntervalEvaluation(
        levels,
        {name: scores(truth, q, levels) for name, q in quantiles.items()},
        quantiles,
        truth,
    )
