"""Tests for dl.baselines: naive, seasonal naive, mean, and period inference."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dl.baselines import (
    BASELINES,
    MeanForecaster,
    NaiveForecaster,
    SeasonalNaiveForecaster,
    autocorrelation,
    infer_period,
    make_baseline,
)
from dl.data.series import make_windows

# one window (N=1) of a univariate history 1..8
HISTORY = np.arange(1.0, 9.0)[None, :, None]


def test_naive_repeats_the_last_value():
    pred = NaiveForecaster(horizon=3).predict(HISTORY)
    assert pred.dtype == np.float32 and pred.tolist() == [[8, 8, 8]]


def test_seasonal_naive_repeats_the_last_season():
    # period 3: the last season is 6, 7, 8; horizon 7 wraps around it
    pred = SeasonalNaiveForecaster(horizon=7, period=3).predict(HISTORY)
    assert pred.tolist() == [[6, 7, 8, 6, 7, 8, 6]]
    assert SeasonalNaiveForecaster(horizon=2, period=1).predict(HISTORY).tolist() == [[8, 8]]
    assert SeasonalNaiveForecaster(horizon=2, period=8).predict(HISTORY).tolist() == [[1, 2]]


def test_seasonal_naive_forecasts_a_periodic_series_exactly():
    pattern = np.array([3.0, -1.0, 4.0, 1.0, -5.0])
    values = np.tile(pattern, 12)
    X, Y = make_windows(values, window=7, horizon=6)
    forecaster = SeasonalNaiveForecaster(horizon=6).fit(values[:40])
    assert forecaster.period == 5 and not forecaster.fallback
    np.testing.assert_array_equal(forecaster.predict(X), Y)


def test_mean_uses_the_training_target():
    train = np.array([[1.0, 10.0], [2.0, 20.0], [6.0, 0.0]])
    forecaster = MeanForecaster(horizon=2, target=1).fit(train)
    assert forecaster.mean == 10.0
    X = np.zeros((3, 4, 2))
    assert forecaster.predict(X).tolist() == [[10, 10]] * 3


def test_baselines_pick_the_target_column_of_multivariate_windows():
    X = np.array([[[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]])  # (1, 3, 2)
    assert NaiveForecaster(2, target=1).predict(X).tolist() == [[30, 30]]
    assert SeasonalNaiveForecaster(2, target=1, period=2).predict(X).tolist() == [[20, 30]]
    assert NaiveForecaster(1).predict(X[:, :, 0]).tolist() == [[3]]  # (N, window) is univariate


def test_forecaster_errors():
    with pytest.raises(
        ValueError,
        match=r"windows hold 8 steps, less than one season of 12; "
        r"use window >= 12",
    ):
        SeasonalNaiveForecaster(period=12).predict(HISTORY)
    with pytest.raises(ValueError, match=r"call fit\(train\) first"):
        SeasonalNaiveForecaster().predict(HISTORY)
    with pytest.raises(ValueError, match=r"call fit\(train\) first"):
        MeanForecaster().predict(HISTORY)
    with pytest.raises(ValueError, match="target column 1 is not in windows with 1 columns"):
        NaiveForecaster(target=1).predict(HISTORY)
    with pytest.raises(ValueError, match=r"needs windows \(N, window, D\), got shape \(8,\)"):
        NaiveForecaster().predict(np.arange(8.0))
    with pytest.raises(ValueError, match="horizon must be > 0"):
        NaiveForecaster(horizon=0)
    with pytest.raises(ValueError, match="period must be > 0"):
        SeasonalNaiveForecaster(period=0)


def test_make_baseline_by_name():
    assert set(BASELINES) == {"naive", "seasonal_naive", "mean"}
    forecaster = make_baseline("seasonal_naive", horizon=4, period=52)
    assert isinstance(forecaster, SeasonalNaiveForecaster)
    assert (forecaster.horizon, forecaster.period) == (4, 52)
    assert repr(forecaster) == "SeasonalNaiveForecaster(horizon=4, target=0, period=52)"
    with pytest.raises(
        ValueError, match="unknown baseline 'arima'; known baselines: naive, seasonal_naive, mean"
    ):
        make_baseline("arima")


# ---------------------------------------------------------------- period inference


def test_autocorrelation_known_values():
    r = autocorrelation([1.0, 2.0, 3.0, 4.0], 3)
    # deviations -1.5, -.5, .5, 1.5; sum of squares 5
    assert r.tolist() == pytest.approx([1.0, 1.25 / 5, -1.5 / 5, -2.25 / 5])


def seasonal(n, period, noise, seed=0, trend=0.0):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return np.sin(2 * np.pi * t / period) + trend * t + noise * rng.normal(size=n)


@pytest.mark.parametrize("period", [4, 7, 12, 52])
def test_infer_period_of_a_noisy_seasonal_series(period):
    assert infer_period(seasonal(10 * period, period, noise=0.3)) == period


def test_infer_period_sees_through_a_trend_and_picks_the_target_column():
    values = np.stack(
        [np.random.default_rng(1).normal(size=240), seasonal(240, 12, noise=0.3, trend=0.05)],
        axis=1,
    )
    assert infer_period(values, target=1) == 12
    assert infer_period(values, target=0) is None


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).normal(size=500),  # white noise
        np.arange(100.0) * 3 + 1,  # a pure trend
        np.full(50, 7.0),  # a constant
        np.zeros(50),
        np.arange(5.0),  # too short
        np.sin(0.01 * np.arange(1, 601))
        + np.random.default_rng(0).normal(0, 0.2, 600),  # the book's
    ],
)
def test_infer_period_finds_none(values):
    assert infer_period(values) is None


def test_seasonal_naive_falls_back_to_naive_without_a_period():
    train = np.random.default_rng(0).normal(size=300)
    forecaster = SeasonalNaiveForecaster(horizon=2).fit(train)
    assert forecaster.period == 1 and forecaster.fallback
    assert forecaster.predict(HISTORY).tolist() == [[8, 8]]


def test_infer_period_on_real_series():
    pytest.importorskip("statsmodels.datasets")
    from dl.data.series import load_series, split

    assert infer_period(split(load_series("co2").values, 0.1, 0.2).train) == 52
    assert infer_period(split(load_series("sunspots").values, 0.1, 0.2).train) == 11


def test_infer_period_refuses_nan():
    with pytest.raises(ValueError, match="NaN or infinite"):
        infer_period(np.array([1.0, np.nan] * 10))


@given(st.integers(1, 30), st.integers(1, 6), st.integers(1, 8), st.integers(1, 8))
@settings(max_examples=150, deadline=None, derandomize=True)
def test_seasonal_naive_takes_values_one_season_back(extra, period, horizon, seed):
    window = period + extra
    X = np.random.default_rng(seed).normal(size=(3, window, 1))
    pred = SeasonalNaiveForecaster(horizon, period=period).predict(X)
    for k in range(1, horizon + 1):
        back = -(-k // period) * period  # period * ceil(k / period)
        expected = X[:, window - 1 + k - back, 0].astype(np.float32)
        np.testing.assert_array_equal(pred[:, k - 1], expected)
