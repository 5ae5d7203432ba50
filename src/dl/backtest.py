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

Per origin: MAE, RMSE, MASE (scaled by the in-sample seasonal-naive error of the steps the
models in use were fitted on) and sMAPE of the ``(horizon,)`` forecast, in original units;
:func:`summarize` gives their mean, spread, min and max over the origins.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator

import numpy as np

from dl import forecast as core
from dl import intervals
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
    """One origin's forecasts: ``truth`` and ``forecasts[name]`` ``(horizon,)`` float64 for
    ``'model'`` and each baseline, ``scores[name][metric]`` (``mase`` NaN when undefined);
    ``fitted_on``: the steps ``[start, stop)`` the models in use were fitted on; ``refit``:
    whether they were fitted at this origin, in ``seconds`` (0 when not)."""

    index: int
    step: int
    refit: bool
    fitted_on: tuple[int, int]
    seconds: float
    truth: np.ndarray
    forecasts: dict[str, np.ndarray]
    scores: dict[str, dict[str, float]]


def run(
    build: Callable,
    data: core.ForecastData,
    config: core.ForecastConfig,
    settings: core.FitSettings,
    backtest: Plan,
    epochs: int,
) -> Iterator[Origin]:
    """Yield each origin of ``backtest`` as it is done (so an interrupted backtest keeps the
    origins before); refits train ``epochs`` epochs of ``settings`` with ``build``."""
    values, target, h = data.series.values, data.target, data.horizon
    model = whole = baselines = fitted_on = None
    for i, t in enumerate(backtest.origins):
        refit = backtest.refits_at(i)
        seconds = 0.0
        if refit:
            started = time.perf_counter()
            span = backtest.history(t)
            # refit() prepares its series anew: only the series, window, horizon, mode and
            # period of the data it is given count
            history = dataclasses.replace(
                data,
                series=dataclasses.replace(
                    data.series,
                    values=values[span],
                    time=None if data.series.time is None else data.series.time[span],
                ),
            )
            model, whole, _ = core.refit(build, history, config, settings, epochs)
            baselines = [
                make_baseline(name, h, target, **period_of(name, data.period)).fit(values[span])
                for name in BASELINES
            ]
            fitted_on, seconds = (span.start, span.stop), time.perf_counter() - started
        truth = values[t : t + h, target].astype(np.float64)
        point = intervals.point_predictor(model.predict, config)  # a median or mean, if any
        forecasts = {"model": core.forecast(point, whole, values[None, t - data.window : t])[0]}
        reach = min(max(data.window, data.period), t)
        for baseline in baselines:
            forecasts[baseline.name] = baseline.predict(values[None, t - reach : t])[0].astype(
                np.float64
            )
        y_fit = values[fitted_on[0] : fitted_on[1], target]
        scores = {name: score(truth, pred, y_fit, data.period) for name, pred in forecasts.items()}
        yield Origin(i, t, refit, fitted_on, seconds, truth, forecasts, scores)


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


def summarize(origins: list[Origin]) -> dict[str, dict[str, dict]]:
    """name -> metric -> ``{'mean', 'std', 'min', 'max', 'origins'}`` over the origins where
    the metric is defined (``std``: sample standard deviation, None for one origin; every
    figure None where it is defined at none)."""
    if not origins:
        raise SeriesError("no backtest origin is done yet: there is nothing to summarize")
    summary = {}
    for name in origins[0].scores:
        summary[name] = {}
        for metric in METRICS:
            v = np.array([o.scores[name][metric] for o in origins], np.float64)
            v = v[np.isfinite(v)]
            summary[name][metric] = {
                "mean": float(v.mean()) if len(v) else None,
                "std": float(v.std(ddof=1)) if len(v) > 1 else None,
                "min": float(v.min()) if len(v) else None,
                "max": float(v.max()) if len(v) else None,
                "origins": len(v),
            }
    return summary
