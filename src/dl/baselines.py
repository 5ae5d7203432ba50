"""Baseline forecasters: the numbers a forecasting model has to beat (NumPy only).

Every forecaster has the interface the models use: ``fit(train)`` on the training part,
(T, D) or (T,), then ``predict(X)`` on windows X: (N, window, D) from
:func:`dl.data.series.make_windows` (the history up to time t) -> (N, horizon) float32
forecasts of the target column for t+1..t+horizon. Baselines work in whatever units X is
in (raw or scaled), as long as fit and predict see the same.

- naive: the last value, repeated.
- seasonal naive: the value one season earlier, ``y[t + k - period * ceil(k / period)]``;
  the period is given or inferred from the training part by :func:`infer_period`, falling
  back to naive when none is found.
- mean: the training mean of the target.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from dl.errors import InputError
from dl.validate import check_positive

ACF_THRESHOLD = 0.3  # least autocorrelation of a seasonal peak (3/sqrt(T) if higher)
HARMONIC_TOLERANCE = 0.8  # the shortest peak this close to the highest is the season


def autocorrelation(x, max_lag: int) -> np.ndarray:
    """Sample autocorrelation r_0..r_max_lag, (max_lag + 1,), of the 1-D `x` around its mean.

    r_k = sum_t (x_t - m)(x_{t+k} - m) / sum_t (x_t - m)^2; all NaN when `x` is constant.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x - x.mean()
    n = len(x)
    spectrum = np.fft.rfft(x, 2 * n)  # zero-padded: linear, not circular, correlation
    acov = np.fft.irfft(spectrum * np.conj(spectrum), 2 * n)[: max_lag + 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return acov / acov[0]


def infer_period(values, target: int = 0) -> int | None:
    """The seasonal period of a training part found by autocorrelation, or None.

    values: (T,) or (T, D); the `target` column is used. The rule:
    1. remove the linear trend (least squares), so a trend does not hide the season;
    2. autocorrelation r_k for lags k = 0..T // 2 (a season must repeat at least twice);
    3. candidates are lags after r first turns negative (a seasonal autocorrelation
       swings down before it comes back a season later) where r has a local maximum
       (r_{k-1} < r_k >= r_{k+1}) of at least max(ACF_THRESHOLD, 3 / sqrt(T));
    4. the smallest candidate k whose r_k is at least HARMONIC_TOLERANCE times the highest
       candidate's is the season (so 2 or 3 seasons do not win over one by noise);
    5. of k - 1, k and k + 1 the period is the lag p whose multiples p, 2p, ..., Jp (the same
       J = (T // 2) // (k + 1) for all three) have the highest mean r: a season's multiples
       line up with the peaks, a lag one off drifts away from them (noise flattens a peak's top).
    None when there is no candidate: white noise, a pure trend, a constant, a slow sine
    whose cycle does not fit twice, or fewer than 8 values.
    """
    x = _target_column(values, target, "infer_period")
    n = len(x)
    if n < 8:
        return None
    if not np.isfinite(x).all():
        raise InputError("infer_period got NaN or infinite values; fill or interpolate them first")
    time = np.arange(n, dtype=np.float64)
    design = np.stack([time, np.ones(n)], axis=1)
    residual = x - design @ np.linalg.lstsq(design, x, rcond=None)[0]
    if np.sqrt(np.mean(residual**2)) <= 1e-9 * np.abs(x).max():  # a line, up to rounding
        return None
    r = autocorrelation(residual, n // 2)
    negative = np.flatnonzero(r < 0)
    if negative.size == 0:
        return None
    threshold = max(ACF_THRESHOLD, 3 / math.sqrt(n))
    candidates = [
        k
        for k in range(max(2, negative[0] + 1), len(r) - 1)
        if r[k - 1] < r[k] >= r[k + 1] and r[k] >= threshold
    ]
    if not candidates:
        return None
    highest = max(r[k] for k in candidates)
    season = min(k for k in candidates if r[k] >= HARMONIC_TOLERANCE * highest)
    repeats = np.arange(1, max(1, (len(r) - 1) // (season + 1)) + 1)
    lags = [p for p in (season - 1, season, season + 1) if p >= 2 and p * repeats[-1] < len(r)]
    return int(max(lags, key=lambda p: r[p * repeats].mean()))


def _target_column(values, target, who):
    """The (T,) float64 target column of (T,) or (T, D) `values`."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise InputError(f"{who} needs values of shape (T,) or (T, D), got {values.shape}")
    if not (isinstance(target, numbers.Integral) and 0 <= target < values.shape[1]):
        raise InputError(
            f"{who}: target must be a column index in 0..{values.shape[1] - 1}, got {target!r}"
        )
    return values[:, target]


class Forecaster:
    """Base of the baselines: forecasts the next `horizon` values of column `target`."""

    name = "forecaster"

    def __init__(self, horizon: int = 1, target: int = 0):
        check_positive("horizon", horizon, integer=True)
        check_positive("target", target, allow_zero=True, integer=True)
        self.horizon, self.target = horizon, target

    def fit(self, train) -> Forecaster:
        """Learn from the training part (T,) or (T, D); returns self."""
        _target_column(train, self.target, f"{self.name}.fit")
        return self

    def predict(self, X) -> np.ndarray:
        """Forecasts (N, horizon) float32 from windows X: (N, window, D) or (N, window)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 2:
            X = X[:, :, None]
        if X.ndim != 3 or X.shape[1] == 0:
            raise InputError(
                f"{self.name}.predict needs windows (N, window, D), got shape {X.shape}"
            )
        if self.target >= X.shape[2]:
            raise InputError(
                f"{self.name}: target column {self.target} is not in windows with "
                f"{X.shape[2]} columns"
            )
        return self._forecast(X[:, :, self.target]).astype(np.float32)

    __call__ = predict

    def _forecast(self, history):
        """(N, horizon) forecasts from the target's history (N, window) float64."""
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(horizon={self.horizon}, target={self.target})"


class NaiveForecaster(Forecaster):
    """Tomorrow equals today: the last value of each window, for every step of the horizon."""

    name = "naive"

    def _forecast(self, history):
        return np.repeat(history[:, -1:], self.horizon, axis=1)


class SeasonalNaiveForecaster(Forecaster):
    """The value one season earlier: y_hat[t+k] = y[t + k - period * ceil(k / period)].

    `period`: the season length in steps; None infers it in :meth:`fit` with
    :func:`infer_period`, and when none is found falls back to naive (period 1) with
    ``fallback`` set. Windows must hold at least one season (window >= period).
    """

    name = "seasonal_naive"

    def __init__(self, horizon: int = 1, target: int = 0, period: int | None = None):
        super().__init__(horizon, target)
        if period is not None:
            check_positive("period", period, integer=True)
        self.requested_period = period
        self.period = period  # the period in use; None until fit infers it
        self.fallback = False  # True when no period was found and naive is used

    def fit(self, train) -> SeasonalNaiveForecaster:
        if self.requested_period is None:
            found = infer_period(train, self.target)
            self.period, self.fallback = (1, True) if found is None else (found, False)
        else:
            super().fit(train)
        return self

    def _forecast(self, history):
        if self.period is None:
            raise InputError(
                "seasonal_naive has no period yet: call fit(train) first or give period="
            )
        window = history.shape[1]
        if window < self.period:
            raise InputError(
                f"seasonal_naive: the windows hold {window} steps, less than one "
                f"season of {self.period}; use window >= {self.period}"
            )
        steps = np.arange(1, self.horizon + 1)
        index = window - 1 + steps - self.period * np.ceil(steps / self.period).astype(int)
        return history[:, index]

    def __repr__(self):
        return (
            f"{type(self).__name__}(horizon={self.horizon}, target={self.target}, "
            f"period={self.period})"
        )


class MeanForecaster(Forecaster):
    """The mean of the target over the training part, for every window and step."""

    name = "mean"

    def __init__(self, horizon: int = 1, target: int = 0):
        super().__init__(horizon, target)
        self.mean = None  # set by fit

    def fit(self, train) -> MeanForecaster:
        column = _target_column(train, self.target, "mean.fit")
        if column.size == 0 or not np.isfinite(column).all():
            raise InputError("mean.fit needs a non-empty training part of finite values")
        self.mean = float(column.mean())
        return self

    def _forecast(self, history):
        if self.mean is None:
            raise InputError("mean has not seen the training part: call fit(train) first")
        return np.full((history.shape[0], self.horizon), self.mean)


BASELINES = {cls.name: cls for cls in (NaiveForecaster, SeasonalNaiveForecaster, MeanForecaster)}


def make_baseline(name: str, horizon: int = 1, target: int = 0, **options) -> Forecaster:
    """The baseline called `name` (naive, seasonal_naive or mean), not yet fitted;
    `options` such as ``period=52`` go to its constructor."""
    if name not in BASELINES:
        raise InputError(f"unknown baseline {name!r}; known baselines: {', '.join(BASELINES)}")
    return BASELINES[name](horizon, target, **options)
