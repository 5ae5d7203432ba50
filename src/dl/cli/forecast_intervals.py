"""``dl forecast --quantiles`` and ``--likelihood``: the flags, the interval scores beside the
baselines' (:mod:`dl.intervals`), the forecast's quantiles and the plot's bands."""

from __future__ import annotations

import argparse

import numpy as np

from dl import intervals
from dl.cli.options import UsageError, choice, list_of
from dl.errors import InputError

CRPS_NOTE = (
    "CRPS approximated from the quantiles: twice the pinball loss of each level, weighted by "
    "the share of (0, 1) nearest that level (dl.intervals.crps_weights)"
)


def quantile_levels(text: str) -> tuple[float, ...]:
    """``--quantiles 0.1,0.5,0.9``: numbers strictly between 0 and 1, increasing."""
    levels = []
    for item in list_of(str)(text):
        try:
            levels.append(float(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not a number") from None
    try:
        return intervals.check_levels(levels)
    except InputError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(group) -> None:
    group.add_argument(
        "--quantiles",
        type=quantile_levels,
        default=None,
        help="forecast these quantiles (e.g. 0.1,0.5,0.9; 0.5 needed, the point forecast), "
        "trained with the pinball loss; with --likelihood, the levels reported "
        f"(default: {','.join(f'{q:g}' for q in intervals.DEFAULT_QUANTILES)} there)",
    )
    group.add_argument(
        "--likelihood",
        type=choice(*intervals.LIKELIHOODS),
        default=None,
        help="gaussian: forecast a mean and a scale per step, trained by the Gaussian "
        "negative log-likelihood; its intervals are the Gaussian's quantiles",
    )


def distribution(args, mode: str) -> dict:
    """``{'quantiles', 'likelihood'}`` of :class:`dl.forecast.ForecastConfig` from the flags."""
    if args.quantiles is None and args.likelihood is None:
        return {}
    if mode != "direct":
        given = "--quantiles" if args.likelihood is None else "--likelihood"
        raise UsageError(
            f"{given} forecasts the whole horizon at once; --mode {mode} feeds one-step "
            "forecasts back as inputs; use --mode direct"
        )
    try:
        levels = intervals.check_quantiles(args.quantiles, args.likelihood)
    except InputError as err:
        raise UsageError(f"--{err}") from None
    return {"quantiles": levels, "likelihood": args.likelihood}


def label(low: float, high: float) -> str:
    return f"{100 * (high - low):.3g}%"


def print_scores(evaluation: intervals.IntervalEvaluation, names: dict, config) -> None:
    """The coverage and width of each central interval, the pinball loss and the CRPS of the
    model and the baselines."""
    pairs = [
        (evaluation.levels[i], evaluation.levels[j])
        for i, j in intervals.central_intervals(evaluation.levels)
    ]
    point = "means of its Gaussians" if config.likelihood else "medians (0.5 quantiles)"
    print(
        f"the model's point forecasts above are the {point}; prediction intervals over the "
        f"same origins (quantiles {' '.join(f'{q:g}' for q in evaluation.levels)}; baselines: "
        "their forecast plus their residuals' quantiles on the training part, per step):"
    )
    header = "".join(
        f"{f'{label(low, high)} cover':>12}{f'{label(low, high)} width':>12}" for low, high in pairs
    )
    print(f"{'':22}{header}{'pinball':>10}{'CRPS':>10}")
    for name, scores in evaluation.scores.items():
        cells = "".join(
            f"{interval['coverage']:>12.3f}{interval['width']:>12.4g}"
            for interval in scores["intervals"]
        )
        print(f"{names[name]:22}{cells}{scores['pinball']:>10.4g}{scores['crps']:>10.4g}")
    print(CRPS_NOTE)


def to_json(evaluation: intervals.IntervalEvaluation, config) -> dict:
    """metrics.json's ``intervals``."""
    return {
        "quantiles": list(evaluation.levels),
        "likelihood": config.likelihood,
        "point_forecast": "mean" if config.likelihood else "median",
        "baselines": "point forecast + empirical quantiles of the training part's residuals, "
        "per horizon step",
        "crps": CRPS_NOTE,
        "scores": evaluation.scores,
    }


def future(predict, data, config) -> dict:
    """``{'quantiles': {level: (horizon,) list}}`` of the forecast past the end (for
    metrics.json's ``forecast``), printed with the outer interval; empty without quantiles."""
    if not intervals.is_probabilistic(config):
        return {}
    values = intervals.future_quantiles(predict, data, config)
    low, high = config.quantiles[0], config.quantiles[-1]
    print(
        f"its {low:g}-{high:g} quantiles: "
        + " ".join(f"[{a:.4g}, {b:.4g}]" for a, b in zip(values[:, 0], values[:, -1]))
    )
    return {"quantiles": {f"{q:g}": values[:, k].tolist() for k, q in enumerate(config.quantiles)}}


def draw_bands(ax, x, start: int, evaluation, future_quantiles: dict | None) -> None:
    """Fill between the outer quantiles: the model's ``h``-steps-ahead test forecasts from
    ``x[start + h - 1]`` on, and the forecast past the end (``future_quantiles`` as
    :func:`future` gives, or None)."""
    intervals_ = evaluation.intervals
    if intervals_ is None:
        return
    levels, quantiles = intervals_.levels, intervals_.quantiles["model"][:, -1]  # (N, L)
    h, n = intervals_.truth.shape[1], len(quantiles)
    span = f"{levels[0]:g}-{levels[-1]:g} quantiles"
    ax.fill_between(
        x[start + h - 1 : start + h - 1 + n],
        quantiles[:, 0],
        quantiles[:, -1],
        color="tab:blue",
        alpha=0.2,
        lw=0,
        label=f"model, {span}",
    )
    if future_quantiles:
        low, high = (np.asarray(future_quantiles[f"{q:g}"]) for q in (levels[0], levels[-1]))
        ax.fill_between(x[-len(low) :], low, high, color="tab:red", alpha=0.2, lw=0)
