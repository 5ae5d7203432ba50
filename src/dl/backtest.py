"""Rolling-origin backtests with refits: the model and every baseline forecast from the same
K origins over the test part, refit as time moves on (NumPy only; models come from a
``build`` as in :func:`dl.forecast.train`).

An origin is the series step ``t`` whose value is the first of the ``horizon`` forecast from
the steps before it. The K origins are spread evenly over the test part's origins (its first
step to its last with a whole horizon after it; the first test step is always one). At every
``refit_every``-th origin, starting with the first, a fresh model of the chosen configuration
is trained on the steps before ``t`` (``expanding``: all of them; ``sliding``: the last
``length`` of them, as many as precede the first origin) for a fixed number of epochs,
with its scaling fitted on those steps (:func:`dl.forecast.refit`), and the baselines are
fitted on the same steps; the origins between refits forecast with the models of the last.
Nothing at or after the first origin is used to choose the configuration or the epochs.

A global model over several series (:mod:`dl.panel`) is backtested the same way: every
refit trains one model on the steps before the origin of every series, and every series and
its baselines forecast from the same origins.

Per origin and series: MAE, RMSE, MASE (scaled by the in-sample seasonal-naive error of the
steps the models in use were fitted on) and sMAPE of the ``(horizon,)`` forecast, in original
units; with quantiles, the interval scores of :func:`dl.intervals.figures` for the model and
the baselines given intervals (their residual quantiles on the same steps). :func:`overall`
averages the scale-free scores over the series; :func:`summarize` gives their mean, spread,
min and max over the origins.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator

import numpy as np

from dl import forecast as core
from dl import intervals, panel
from dl.baselines import BASELINES, make_baseline
from dl.data.series import SeriesError
from dl.errors import InputError
from dl.metrics import mae, mase, rmse, smape
from dl.validate import check_positive

WINDOW_KINDS = ("expanding", "sliding")
METRICS = ("mae", "rmse", "mase", "smape")


class BacktestError(InputError):
    """A backtest that cannot be run as asked; the message says what fits."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """Where a backtest forecasts from: ``origins`` (series steps, increasing), a refit at
    every ``refit_every``-th, training windows of kind ``kind`` (``length`` steps when
    sliding)."""

    origins: tuple[int, ...]
    refit_every: int
    kind: str
    length: int

    def refits_at(self, i: int) -> bool:
        """Whether the models are refit at origin number ``i`` (0-based)."""
        return i % self.refit_every == 0

    @property
    def num_refits(self) -> int:
        return math.ceil(len(self.origins) / self.refit_every)

    def history(self, t: int) -> slice:
        """The steps a refit at origin ``t`` trains on."""
        return slice(0 if self.kind == "expanding" else t - self.length, t)


def capacity(data: core.ForecastData) -> int:
    """How many origins the test part holds: its steps with a whole horizon after them."""
    return max(0, len(data.test) - data.horizon + 1)


def plan(
    data: core.ForecastData, num_origins: int, kind: str = "expanding", refit_every: int = 1
) -> Plan:
    """``num_origins`` origins spread evenly over the test part of ``data`` (first and last
    included), refit every ``refit_every`` (1: at each; ``num_origins``: once, at the first).
    Raises BacktestError when they do not fit."""
    check_positive("num_origins", num_origins, integer=True)
    check_positive("refit_every", refit_every, integer=True)
    if kind not in WINDOW_KINDS:
        raise BacktestError(f"window kind must be one of {', '.join(WINDOW_KINDS)}, got {kind!r}")
    room = capacity(data)
    if room == 0:
        raise BacktestError(
            "there is no test part to put backtest origins in; hold out a test_fraction > 0"
        )
    if num_origins > room:
        raise BacktestError(
            f"the test part's {len(data.test)} steps hold {room} origins with horizon "
            f"{data.horizon}, fewer than the {num_origins} asked for; ask for at most {room}, "
            "or hold out a larger test_fraction"
        )
    if refit_every > num_origins:
        raise BacktestError(
            f"refit_every {refit_every} is more than the {num_origins} origins; give 1 (refit "
            f"at every origin) to {num_origins} (train once, at the first)"
        )
    first = len(data.train) + len(data.val)
    if num_origins == 1:
        positions = [0]
    else:  # i * (room - 1) / (num_origins - 1), rounded half up
        positions = [
            (2 * i * (room - 1) + num_origins - 1) // (2 * (num_origins - 1))
            for i in range(num_origins)
        ]
    return Plan(tuple(first + p for p in positions), refit_every, kind, first)


@dataclasses.dataclass
class Origin:
    """One origin's forecasts of one series: ``truth`` and ``forecasts[name]`` ``(horizon,)``
    float64 for ``'model'`` and each baseline, ``scores[name][metric]`` (``mase`` NaN when
    undefined; with quantiles, :func:`dl.intervals.figures` too); ``fitted_on``: the steps
    ``[start, stop)`` the models in use were fitted on; ``refit``: whether they were fitted
    at this origin, in ``seconds`` (0 when not). With quantiles, ``quantiles[name]``:
    ``(horizon, L)`` for the model and the baselines given intervals, and ``intervals[name]``
    their :func:`dl.intervals.scores`."""

    index: int
    step: int
    refit: bool
    fitted_on: tuple[int, int]
    seconds: float
    truth: np.ndarray
    forecasts: dict[str, np.ndarray]
    scores: dict[str, dict[str, float]]
    quantiles: dict[str, np.ndarray] | None = None
    intervals: dict[str, dict] | None = None


def run(
    build: Callable,
    datas: list[core.ForecastData],
    config: core.ForecastConfig,
    settings: core.FitSettings,
    backtest: Plan,
    epochs: int,
) -> Iterator[list[Origin]]:
    """Yield each origin of ``backtest`` as it is done (so an interrupted backtest keeps the
    origins before), one :class:`Origin` per series of ``datas`` (one series, or the series
    of a global model, cut alike: :mod:`dl.panel`); refits train ``epochs`` epochs of
    ``settings`` with ``build``, one model on every series (:func:`dl.panel.refit`)."""
    model = wholes = baselines = fitted_on = None
    for i, t in enumerate(backtest.origins):
        refit = backtest.refits_at(i)
        seconds = 0.0
        if refit:
            started = time.perf_counter()
            span = backtest.history(t)
            model, wholes, _ = panel.refit(
                build, [before(data, span) for data in datas], config, settings, epochs
            )
            baselines = [
                [
                    make_baseline(name, d.horizon, d.target, **period_of(name, d.period)).fit(
                        d.series.values[span]
                    )
                    for name in BASELINES
                ]
                for d in datas
            ]
            fitted_on, seconds = (span.start, span.stop), time.perf_counter() - started
        yield [
            Origin(
                i, t, refit, fitted_on, seconds, *forecast_at(t, d, whole, fitted, model, config)
            )
            for d, whole, fitted in zip(datas, wholes, baselines)
        ]


def before(data: core.ForecastData, span: slice) -> core.ForecastData:
    """``data`` with its series cut to ``span`` (a refit prepares its series anew: only the
    series, window, horizon, mode and period of what it is given count)."""
    series = data.series
    return dataclasses.replace(
        data,
        series=dataclasses.replace(
            series,
            values=series.values[span],
            time=None if series.time is None else series.time[span],
        ),
    )


def forecast_at(t: int, data, whole, baselines, model, config) -> tuple:
    """``(truth, forecasts, scores, quantiles, intervals)`` of :class:`Origin` at step ``t``
    of ``data``'s series, by ``model`` (scaled as ``whole``) and the fitted ``baselines``;
    MASE and the scaled interval scores are scaled by the steps the baselines were fitted on.
    """
    values, target, h = data.series.values, data.target, data.horizon
    truth = values[t : t + h, target].astype(np.float64)
    X = values[None, t - data.window : t]
    point = intervals.point_predictor(model.predict, config)  # a median or mean, if any
    forecasts = {"model": core.forecast(point, whole, X)[0]}
    reach = min(max(data.window, data.period), t)
    X_base = values[None, t - reach : t]
    for baseline in baselines:
        forecasts[baseline.name] = baseline.predict(X_base)[0].astype(np.float64)
    y_fit = whole.series.values[:, target]
    scores = {name: score(truth, pred, y_fit, data.period) for name, pred in forecasts.items()}
    if not intervals.is_probabilistic(config):
        return truth, forecasts, scores, None, None
    levels = config.quantiles
    quantiles = {
        "model": intervals.model_quantiles(model.predict, whole, X, config)[0],
        **{
            name: q[0]
            for name, q in intervals.baseline_quantiles(
                whole.series.values, X_base, h, target, data.period, levels
            ).items()
        },
    }
    scored = {name: intervals.scores(truth[None], q[None], levels) for name, q in quantiles.items()}
    for name, each in scored.items():
        scores[name].update(intervals.figures(each, y_fit, data.period))
    return truth, forecasts, scores, quantiles, scored


def period_of(name: str, period: int) -> dict:
    """The constructor options of baseline ``name``: the seasonal one gets ``period``."""
    return {"period": period} if name == "seasonal_naive" else {}


def score(truth, pred, y_fit, period: int) -> dict[str, float]:
    """MAE, RMSE, MASE (scaled by ``y_fit``'s seasonal naive error) and sMAPE of one origin."""
    return {
        "mae": mae(truth, pred),
        "rmse": rmse(truth, pred),
        "mase": mase(truth, pred, y_fit, period),
        "smape": smape(truth, pred),
    }


def overall(origins: list[Origin]) -> dict[str, dict[str, float]]:
    """The series' origins at one step -> name -> the mean over the series of each
    scale-free score (:func:`dl.panel.overall`)."""
    return panel.overall([o.scores for o in origins])


def summarize(scores: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict]]:
    """One ``name -> metric -> score`` per origin (an :class:`Origin`'s ``scores``, or
    :func:`overall`'s) -> name -> metric -> ``{'mean', 'std', 'min', 'max', 'origins'}`` over
    the origins where the metric is defined (``std``: sample standard deviation, None for one
    origin; every figure None where it is defined at none)."""
    if not scores:
        raise SeriesError("no backtest origin is done yet: there is nothing to summarize")
    summary = {}
    for name, metrics in scores[0].items():
        summary[name] = {}
        for metric in metrics:
            v = np.array([each[name][metric] for each in scores], np.float64)
            v = v[np.isfinite(v)]
            summary[name][metric] = {
                "mean": float(v.mean()) if len(v) else None,
                "std": float(v.std(ddof=1)) if len(v) > 1 else None,
                "min": float(v.min()) if len(v) else None,
                "max": float(v.max()) if len(v) else None,
                "origins": len(v),
            }
    return summary
