"""A global forecasting model: one recurrent model trained on several series at once.

Each series is cut and scaled on its own (:func:`dl.forecast.prepare`: its own training part
fixes its own :class:`~dl.data.series.Scaler`), and the windows of every series are pooled
into one training set (:func:`pool`), so one set of weights learns from all of them; the
model is then scored on each series' test part beside that series' baselines
(:func:`dl.forecast.evaluate`), and the scale-free scores (MASE, sMAPE, interval coverage,
scaled pinball and CRPS) are averaged over the series (:func:`overall`). The series share a
time axis and their inputs' layout (:func:`dl.data.covariates.split_targets`):
``[target, shared past columns, leads]``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dl import forecast as core

SCALE_FREE = ("mase", "smape")  # scores that average across series in different units
SCALE_FREE_PREFIXES = ("scaled_", "coverage_")  # dl.intervals.figures' that do too


def scale_free(metric: str) -> bool:
    """Whether a score named ``metric`` is free of the series' units (it averages across
    series): MASE, sMAPE, interval coverages and scaled pinball and CRPS."""
    return metric in SCALE_FREE or metric.startswith(SCALE_FREE_PREFIXES)


def prepare(series, window, horizon, mode, val_fraction, test_fraction, periods=None, scalers=None):
    """:func:`dl.forecast.prepare` of each of ``series``, with its own seasonal period and
    scaler when ``periods`` and ``scalers`` give them (a trained model's; else each series'
    own: inferred, and fitted on its training part)."""
    periods = periods or [None] * len(series)
    scalers = scalers or [None] * len(series)
    return [
        core.prepare(s, window, horizon, mode, val_fraction, test_fraction, period, scaler)
        for s, period, scaler in zip(series, periods, scalers)
    ]


def _concat(parts):
    """``(X, Y)`` pairs -> one pair of the rows of all; None when there are none."""
    parts = [part for part in parts if part is not None]
    if not parts:
        return None
    return np.concatenate([X for X, _ in parts]), np.concatenate([Y for _, Y in parts])


def pool(datas: list[core.ForecastData]) -> core.ForecastData:
    """The first series' data with the training and validation windows of every series:
    ``(N_1 + ... + N_S, W, D)`` (each scaled by its own series' scaler), what
    :func:`dl.forecast.train` and :func:`dl.forecast.select` fit one model on."""
    return dataclasses.replace(
        datas[0],
        train_windows=_concat(d.train_windows for d in datas),
        val_windows=_concat(d.val_windows for d in datas),
    )


def overall(scores: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """One ``name -> metric -> score`` dict per series (an Evaluation's ``scores``, an
    origin's) -> the mean over the series of each scale-free score (:func:`scale_free`),
    NaN when a series' score is undefined."""
    return {
        name: {
            metric: float(np.mean([each[name][metric] for each in scores]))
            for metric in figures
            if scale_free(metric)
        }
        for name, figures in scores[0].items()
    }


def refit(build, datas, config, settings, epochs: int, log=None):
    """:func:`dl.forecast.refit` of a global model: a fresh model trained for ``epochs`` on
    every window of every whole series, each scaled by itself. Returns ``(model, the whole
    series prepared, FitResult)``."""
    whole = [
        core.prepare(
            d.series,
            d.window,
            d.horizon,
            d.mode,
            val_fraction=0.0,
            test_fraction=0.0,
            period=d.period,
        )
        for d in datas
    ]
    settings = dataclasses.replace(settings, epochs=epochs, patience=epochs)
    model, result = core.train(build, pool(whole), config, settings, log, restore_best=False)
    return model, whole, result
