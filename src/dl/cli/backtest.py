"""``dl forecast --backtest K``: rolling-origin backtests with refits (:mod:`dl.backtest`),
their flags, progress lines, summary table and files.

After the run's model is saved, K origins over the test part are forecast by a fresh model
refit at each (or every ``--refit-every``) on the steps before it, beside every baseline on
the same origins. ``backtest.json`` (plan, per-origin forecasts and scores, summary),
``backtest.csv`` (one row per origin and model) and ``backtest.png`` (MASE by origin) go to
the run directory; an interrupted backtest writes the origins done and says so.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import sys
import time
from pathlib import Path

from dl import backtest as bt
from dl import forecast as core
from dl.cli import signals
from dl.cli.options import UsageError, choice, positive_int
from dl.files import atomic_write
from dl.plotting import save_png

FILES = ("backtest.json", "backtest.csv", "backtest.png")
OPTIONS = ("backtest", "backtest_window", "refit_every")  # dests of the flags below
# the library's words in plan()'s messages -> the command's flags
FLAGS = {"test_fraction": "--test-fraction", "refit_every": "--refit-every", "horizon": "--horizon"}


def add_options(parser) -> None:
    group = parser.add_argument_group("backtest")
    group.add_argument(
        "--backtest",
        type=positive_int,
        default=None,
        metavar="K",
        help="after scoring, forecast from K origins spread evenly over the test part, with "
        "the model refit on the steps before each and every baseline beside it; "
        "writes backtest.json, backtest.csv and backtest.png",
    )
    group.add_argument(
        "--backtest-window",
        type=choice(*bt.WINDOW_KINDS),
        default=None,
        metavar="|".join(bt.WINDOW_KINDS),
        help="the steps each refit trains on: expanding (every step before the origin) or "
        "sliding (as many as precede the first origin) (default: expanding)",
    )
    group.add_argument(
        "--refit-every",
        type=positive_int,
        default=None,
        metavar="M",
        help="refit at every M-th origin; the origins between forecast with the last refit's "
        "model (default: 1, at every origin; K: train once)",
    )


def check(args, data: core.ForecastData) -> bt.Plan | None:
    """The backtest asked for by ``args``, checked against ``data`` before anything trains;
    None without ``--backtest``."""
    if args.backtest is None:
        given = [
            f"--{name.replace('_', '-')}" for name in OPTIONS[1:] if getattr(args, name) is not None
        ]
        if given:
            verb = "shapes" if len(given) == 1 else "shape"
            raise UsageError(f"{' and '.join(given)} {verb} a backtest; add --backtest K")
        return None
    try:
        return bt.plan(
            data, args.backtest, args.backtest_window or "expanding", args.refit_every or 1
        )
    except bt.BacktestError as err:
        message = re.sub("|".join(FLAGS), lambda m: FLAGS[m.group()], str(err))
        raise UsageError(f"--backtest {args.backtest}: {message}") from None


def run(out: Path, build, data, config, settings, epochs: int, plan: bt.Plan, result) -> int:
    """Run ``plan`` with refits of ``epochs`` epochs, printing each origin; write its files in
    ``out`` and its summary into ``result`` (metrics.json). 0, or 130 / 143 when interrupted
    (the origins done are written)."""
    print(describe(plan, data, config, epochs), flush=True)
    done, started = [], time.perf_counter()
    try:
        for origin in bt.run(build, data, config, settings, plan, epochs):
            done.append(origin)
            print(
                progress(origin, plan, data, config, done, time.perf_counter() - started),
                flush=True,
            )
    except KeyboardInterrupt as err:
        if done:
            write(
                out, data, config, plan, epochs, done, time.perf_counter() - started, "interrupted"
            )
            kept = f"kept {the_origins(len(done))} done in {out / 'backtest.json'} and backtest.csv"
        else:
            kept = "no origin was done"
        print(
            f"{signals.describe(err)} in the backtest after {len(done)} of "
            f"{len(plan.origins)} origins: {kept}; the run's model and test scores are saved in "
            f"{out}",
            file=sys.stderr,
        )
        return signals.exit_status(err)
    except core.ForecastDivergedError as err:
        if done:
            write(out, data, config, plan, epochs, done, time.perf_counter() - started, "diverged")
        raise core.ForecastDivergedError(
            f"the backtest's refit at origin {len(done) + 1} of {len(plan.origins)} failed: "
            f"{err}; {out} holds the run's model and test scores"
            + (f" and {the_origins(len(done))} before in backtest.json" if done else "")
        ) from None
    seconds = time.perf_counter() - started
    summary = write(out, data, config, plan, epochs, done, seconds)
    print_summary(summary, data, config, len(done), seconds)
    result["backtest"] = {"file": "backtest.json", "origins": len(done), "summary": summary}
    atomic_write(out / "metrics.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    return 0


# ---------------------------------------------------------------- printing


def the_origins(n: int) -> str:
    return "the origin" if n == 1 else f"the {n} origins"


def label(name: str, data, config) -> str:
    return {
        "model": f"{config.cell} ({data.mode})",
        "seasonal_naive": f"seasonal naive ({data.period})",
    }.get(name, name)


def when(data, step: int):
    """The time label of ``step``, else the step number."""
    return data.series.time[step] if data.series.time else step


def describe(plan: bt.Plan, data, config, epochs: int) -> str:
    first, last = plan.origins[0], plan.origins[-1]
    refits = (
        "at every origin"
        if plan.refit_every == 1
        else f"every {plan.refit_every} origins"
        if plan.num_refits > 1
        else "once, at the first"
    )
    window = (
        "every step before the origin"
        if plan.kind == "expanding"
        else f"the {plan.length} steps before the origin"
    )
    return (
        f"backtest: {len(plan.origins)} origins from {when(data, first)} to {when(data, last)}; "
        f"a fresh {config.cell} refit {refits} ({plan.num_refits} refits of {epochs} epochs, "
        f"the best epoch count of the first fit) on {window} ({plan.kind} window), the "
        "baselines refit with it"
    )


def progress(origin: bt.Origin, plan: bt.Plan, data, config, done: list, elapsed: float) -> str:
    start, stop = origin.fitted_on
    how = (
        f"refit on {stop - start} steps in {origin.seconds:.1f} s"
        if origin.refit
        else f"with the models of origin {origin.index - origin.index % plan.refit_every + 1}"
    )
    mase = ", ".join(
        f"{config.cell if name == 'model' else name.replace('_', ' ')} {s['mase']:.3f}"
        for name, s in origin.scores.items()
    )
    refits_done = sum(o.refit for o in done)
    left = (plan.num_refits - refits_done) * sum(o.seconds for o in done) / refits_done
    return (
        f"origin {origin.index + 1}/{len(plan.origins)} ({when(data, origin.step)}): {how}; "
        f"MASE {mase}; {elapsed:.1f} s so far"
        + (f", about {left:.0f} s to go" if origin.index + 1 < len(plan.origins) else "")
    )


def figure(stats: dict, fmt: str) -> str:
    """``mean ± std [min, max]`` in format ``fmt``."""
    if stats["mean"] is None:
        return "undefined"
    spread = "" if stats["std"] is None else f" ± {stats['std']:{fmt}}"
    return f"{stats['mean']:{fmt}}{spread} [{stats['min']:{fmt}}, {stats['max']:{fmt}}]"


def print_summary(summary: dict, data, config, origins: int, seconds: float) -> None:
    print(
        f"backtest over {origins} origins in {seconds:.1f} s, mean ± std [min, max] over the "
        "origins, original units:"
    )
    print(f"{'':22}{'MASE':>30}{'RMSE':>30}{'sMAPE %':>30}")
    for name, stats in summary.items():
        print(
            f"{label(name, data, config):22}"
            + "".join(
                f"{figure(stats[m], fmt):>30}"
                for m, fmt in (("mase", ".3f"), ("rmse", ".3g"), ("smape", ".3g"))
            )
        )


# ---------------------------------------------------------------- files


def write(out: Path, data, config, plan, epochs, done, seconds, stopped: str | None = None) -> dict:
    """backtest.json, backtest.csv and backtest.png of the origins ``done``; the summary."""
    summary = bt.summarize(done)
    clean = lambda x: None if isinstance(x, float) and math.isnan(x) else x
    record = {
        "origins_planned": len(plan.origins),
        "origins_done": len(done),
        "stopped": stopped,  # None: complete; "interrupted" or "diverged"
        "window_kind": plan.kind,
        "train_length": plan.length if plan.kind == "sliding" else None,
        "refit_every": plan.refit_every,
        "refit_epochs": epochs,
        "horizon": data.horizon,
        "period": data.period,
        "seconds": seconds,
        "summary": summary,
        "per_origin": [
            {
                "origin": o.index + 1,
                "step": o.step,
                "time": when(data, o.step),
                "refit": o.refit,
                "fitted_on_steps": list(o.fitted_on),
                "refit_seconds": o.seconds,
                "truth": o.truth.tolist(),
                "forecasts": {name: f.tolist() for name, f in o.forecasts.items()},
                "scores": {
                    name: {k: clean(v) for k, v in s.items()} for name, s in o.scores.items()
                },
            }
            for o in done
        ],
    }
    rows = io.StringIO()
    table = csv.writer(rows, lineterminator="\n")
    table.writerow(
        ["origin", "step", "time", "refit", "fitted_from", "fitted_to", "model", *bt.METRICS]
    )
    for o in done:
        for name, s in o.scores.items():
            table.writerow(
                [o.index + 1, o.step, when(data, o.step), int(o.refit), *o.fitted_on, name]
                + ["" if math.isnan(s[m]) else f"{s[m]:.6g}" for m in bt.METRICS]
            )
    with signals.deferred():
        atomic_write(out / "backtest.json", json.dumps(record, indent=2, allow_nan=False) + "\n")
        atomic_write(out / "backtest.csv", rows.getvalue())
        write_plot(out / "backtest.png", data, config, plan, done)
    return summary


def write_plot(path: Path, data, config, plan: bt.Plan, done: list) -> bool:
    """``backtest.png``: each model's MASE by origin, refits marked; False without
    matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    from dl.cli.forecast import time_axis

    x, xlabel = time_axis(data.series, 0)
    at = x[[o.step for o in done]]
    fig = Figure(figsize=(8, 3.5))
    ax = fig.subplots()
    for name in done[0].scores:
        ax.plot(
            at,
            [o.scores[name]["mase"] for o in done],
            "o-",
            ms=3,
            lw=1,
            label=label(name, data, config),
        )
    if plan.refit_every > 1:
        for o in done:
            if o.refit:
                ax.axvline(x[o.step], color="0.8", lw=0.8, ls=":")
    ax.axhline(1, color="0.5", lw=0.8, ls="--")
    ax.set_xlabel(f"forecast origin ({xlabel})")
    ax.set_ylabel(f"MASE over {data.horizon} steps")
    ax.set_title(
        f"backtest: {plan.kind} window, refit every {plan.refit_every}"
        + (" (dotted: refits)" if plan.refit_every > 1 else ""),
        fontsize="medium",
    )
    save_png(fig, ax, path)
    return True
