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
from dl.cli import forecast_intervals, signals
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


def run(out: Path, build, datas, config, settings, epochs: int, plan: bt.Plan, result) -> int:
    """Run ``plan`` with refits of ``epochs`` epochs on ``datas`` (one series, or a global
    model's), printing each origin; write its files in ``out`` and its summary into
    ``result`` (metrics.json). 0, or 130 / 143 when interrupted (the origins done are
    written)."""
    print(describe(plan, datas, config, epochs), flush=True)
    done, started = [], time.perf_counter()
    keep = lambda stopped=None: write(
        out, datas, config, plan, epochs, done, time.perf_counter() - started, stopped
    )
    try:
        for origins in bt.run(build, datas, config, settings, plan, epochs):
            done.append(origins)
            print(
                progress(origins, plan, datas, config, done, time.perf_counter() - started),
                flush=True,
            )
    except KeyboardInterrupt as err:
        if done:
            keep("interrupted")
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
            keep("diverged")
        raise core.ForecastDivergedError(
            f"the backtest's refit at origin {len(done) + 1} of {len(plan.origins)} failed: "
            f"{err}; {out} holds the run's model and test scores"
            + (f" and {the_origins(len(done))} before in backtest.json" if done else "")
        ) from None
    seconds = time.perf_counter() - started
    record = keep()
    print_summaries(record, datas, config, seconds)
    result["backtest"] = {
        "file": "backtest.json",
        "origins": len(done),
        **{key: record[key] for key in ("summary", "summary_by_series") if key in record},
    }
    atomic_write(out / "metrics.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    return 0


# ---------------------------------------------------------------- printing


def the_origins(n: int) -> str:
    return "the origin" if n == 1 else f"the {n} origins"


def label(name: str, datas, config) -> str:
    many = len(datas) > 1
    return {
        "model": f"{config.cell} ({'global' if many else datas[0].mode})",
        "seasonal_naive": "seasonal naive" if many else f"seasonal naive ({datas[0].period})",
    }.get(name, name)


def when(data, step: int):
    """The time label of ``step``, else the step number."""
    return data.series.time[step] if data.series.time else step


def describe(plan: bt.Plan, datas, config, epochs: int) -> str:
    first, last, data = plan.origins[0], plan.origins[-1], datas[0]
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
    model = f"{config.cell}" if len(datas) == 1 else f"global {config.cell} on {len(datas)} series"
    return (
        f"backtest: {len(plan.origins)} origins from {when(data, first)} to {when(data, last)}; "
        f"a fresh {model} refit {refits} ({plan.num_refits} refits of {epochs} epochs, "
        f"the best epoch count of the first fit) on {window} ({plan.kind} window), the "
        "baselines refit with it"
    )


def headline(origins: list[bt.Origin]) -> dict:
    """The scores of one series' origin, or the mean over the series of a global model's."""
    return origins[0].scores if len(origins) == 1 else bt.overall(origins)


def progress(origins: list, plan: bt.Plan, datas, config, done: list, elapsed: float) -> str:
    origin = origins[0]
    start, stop = origin.fitted_on
    how = (
        f"refit on {stop - start} steps in {origin.seconds:.1f} s"
        if origin.refit
        else f"with the models of origin {origin.index - origin.index % plan.refit_every + 1}"
    )
    mase = ", ".join(
        f"{config.cell if name == 'model' else name.replace('_', ' ')} {s['mase']:.3f}"
        for name, s in headline(origins).items()
    )
    over = "" if len(datas) == 1 else f" (mean over {len(datas)} series)"
    refits_done = sum(o[0].refit for o in done)
    left = (plan.num_refits - refits_done) * sum(o[0].seconds for o in done) / refits_done
    return (
        f"origin {origin.index + 1}/{len(plan.origins)} ({when(datas[0], origin.step)}): "
        f"{how}; MASE{over} {mase}; {elapsed:.1f} s so far"
        + (f", about {left:.0f} s to go" if origin.index + 1 < len(plan.origins) else "")
    )


def figure(stats: dict, fmt: str) -> str:
    """``mean ± std [min, max]`` in format ``fmt``."""
    if stats["mean"] is None:
        return "undefined"
    spread = "" if stats["std"] is None else f" ± {stats['std']:{fmt}}"
    return f"{stats['mean']:{fmt}}{spread} [{stats['min']:{fmt}}, {stats['max']:{fmt}}]"


POINT = (("mase", "MASE", ".3f"), ("rmse", "RMSE", ".3g"), ("smape", "sMAPE %", ".3g"))
INTERVAL = (("pinball", "pinball", ".3g"), ("crps", "CRPS", ".3g"))
SCALED = (("scaled_pinball", "scaled pinball", ".3f"), ("scaled_crps", "scaled CRPS", ".3f"))


def columns(summary: dict, averaged: bool) -> tuple[list, list]:
    """The point and interval columns ``(metric, heading, format)`` of a summary table; the
    scale-free ones only for an average over series."""
    metrics = summary["model"]
    coverage = [(m, f"{m[9:]}% cover", ".3f") for m in metrics if m.startswith("coverage_")]
    point = [c for c in POINT if c[0] in metrics]
    interval = coverage + [c for c in (SCALED if averaged else INTERVAL) if c[0] in metrics]
    return point, interval


def print_table(summary: dict, table: list, datas, config) -> None:
    """One row per model of ``summary`` that has ``table``'s metrics, each column as wide as
    its widest cell."""
    rows = [
        (label(name, datas, config), [figure(stats[m], fmt) for m, _, fmt in table])
        for name, stats in summary.items()
        if table[0][0] in stats  # the mean baseline gives no intervals
    ]
    widths = [
        2 + max(len(heading), *(len(cells[k]) for _, cells in rows))
        for k, (_, heading, _) in enumerate(table)
    ]
    print(f"{'':22}" + "".join(f"{h:>{w}}" for (_, h, _), w in zip(table, widths)))
    for name, cells in rows:
        print(f"{name:22}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths)))


def print_summaries(record: dict, datas, config, seconds: float) -> None:
    """The summary tables of backtest.json's ``record``: per series, then their mean."""
    print(
        f"backtest over {record['origins_done']} origins in {seconds:.1f} s, mean ± std "
        "[min, max] over the origins, original units:"
    )
    for target, summary in record.get("summary_by_series", {}).items():
        print(f"{target}:")
        for table in columns(summary, False):
            if table:
                print_table(summary, table, datas, config)
    if len(datas) > 1:
        print(f"mean over the {len(datas)} series at each origin:")
    for table in columns(record["summary"], len(datas) > 1):
        if table:
            print_table(record["summary"], table, datas, config)
    if config.quantiles:
        print(forecast_intervals.CRPS_NOTE)


# ---------------------------------------------------------------- files


def clean(x):
    return None if isinstance(x, float) and math.isnan(x) else x


def series_record(origin: bt.Origin) -> dict:
    """backtest.json's forecasts and scores of one series at one origin."""
    record = {
        "truth": origin.truth.tolist(),
        "forecasts": {name: f.tolist() for name, f in origin.forecasts.items()},
        "scores": {n: {k: clean(v) for k, v in s.items()} for n, s in origin.scores.items()},
    }
    if origin.quantiles is not None:
        record["quantiles"] = {name: q.tolist() for name, q in origin.quantiles.items()}
        record["intervals"] = origin.intervals
    return record


def write(
    out: Path, datas, config, plan, epochs, done, seconds, stopped: str | None = None
) -> dict:
    """backtest.json, backtest.csv and backtest.png of the origins ``done`` (one list of
    origins per step, one per series); backtest.json's record."""
    many = len(datas) > 1
    targets = [d.series.target_name for d in datas]
    by_series = [bt.summarize([o[s].scores for o in done]) for s in range(len(datas))]
    data = datas[0]
    record = {
        "targets": targets,
        "origins_planned": len(plan.origins),
        "origins_done": len(done),
        "stopped": stopped,  # None: complete; "interrupted" or "diverged"
        "window_kind": plan.kind,
        "train_length": plan.length if plan.kind == "sliding" else None,
        "refit_every": plan.refit_every,
        "refit_epochs": epochs,
        "horizon": data.horizon,
        "period": data.period if not many else [d.period for d in datas],
        "quantiles": list(config.quantiles) or None,
        "seconds": seconds,
        # one series: its scores; several: the means over the series at each origin
        "summary": bt.summarize([headline(o) for o in done]) if many else by_series[0],
    }
    if many:
        record["summary_by_series"] = dict(zip(targets, by_series))
    per_origin = []
    for origins in done:
        o = origins[0]
        entry = {
            "origin": o.index + 1,
            "step": o.step,
            "time": when(data, o.step),
            "refit": o.refit,
            "fitted_on_steps": list(o.fitted_on),
            "refit_seconds": o.seconds,
        }
        if many:
            entry["scores"] = {
                n: {k: clean(v) for k, v in s.items()} for n, s in headline(origins).items()
            }
            entry["series"] = {t: series_record(each) for t, each in zip(targets, origins)}
        else:
            entry.update(series_record(o))
        per_origin.append(entry)
    record["per_origin"] = per_origin
    with signals.deferred():
        atomic_write(out / "backtest.json", json.dumps(record, indent=2, allow_nan=False) + "\n")
        atomic_write(out / "backtest.csv", table(datas, done))
        write_plot(out / "backtest.png", datas, config, plan, done)
    return record


MEAN_ROW = "(mean)"  # backtest.csv's series of the rows averaged over the series


def table(datas, done) -> str:
    """backtest.csv: one row per origin, series and model (and, for several series, one per
    origin and model averaged over them, series ``(mean)``, its unit-bound scores empty)."""
    metrics = list(done[0][0].scores["model"])
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(
        ["origin", "step", "time", "refit", "fitted_from", "fitted_to", "series", "model"] + metrics
    )
    for origins in done:
        o = origins[0]
        lead = [o.index + 1, o.step, when(datas[0], o.step), int(o.refit), *o.fitted_on]
        rows_of = [(d.series.target_name, each.scores) for d, each in zip(datas, origins)]
        if len(datas) > 1:
            rows_of.append((MEAN_ROW, bt.overall(origins)))
        for target, scores in rows_of:
            for name, s in scores.items():
                writer.writerow(
                    [*lead, target, name]
                    + ["" if m not in s or math.isnan(s[m]) else f"{s[m]:.6g}" for m in metrics]
                )
    return rows.getvalue()


MOST_PLOTTED = 6  # series drawn one panel each in backtest.png, after their mean


def write_plot(path: Path, datas, config, plan: bt.Plan, done: list) -> bool:
    """``backtest.png``: each model's MASE by origin, refits marked; for several series, the
    mean over them first, then the first :data:`MOST_PLOTTED` series one panel each; False
    without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    from dl.cli.forecast import time_axis

    data = datas[0]
    x, xlabel = time_axis(data.series, 0)
    at = x[[o[0].step for o in done]]
    panels = [("", [headline(o) for o in done])]
    if len(datas) > 1:
        panels = [(f"mean over the {len(datas)} series", panels[0][1])] + [
            (d.series.target_name, [o[s].scores for o in done])
            for s, d in enumerate(datas[:MOST_PLOTTED])
        ]
    fig = Figure(figsize=(8, 3.5 if len(panels) == 1 else 1.2 + 2.2 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (title, scores) in zip(axes, panels):
        for name in scores[0]:
            ax.plot(
                at,
                [s[name]["mase"] for s in scores],
                "o-",
                ms=3,
                lw=1,
                label=label(name, datas, config),
            )
        if plan.refit_every > 1:
            for o in done:
                if o[0].refit:
                    ax.axvline(x[o[0].step], color="0.8", lw=0.8, ls=":")
        ax.axhline(1, color="0.5", lw=0.8, ls="--")
        ax.grid(alpha=0.3)
        ax.set_ylabel(f"MASE over {data.horizon} steps")
        if title:
            ax.set_title(title, fontsize="small", loc="left")
    axes[-1].set_xlabel(f"forecast origin ({xlabel})")
    shown = "" if len(datas) <= MOST_PLOTTED else f", the first {MOST_PLOTTED} series shown"
    fig.suptitle(
        f"backtest: {plan.kind} window, refit every {plan.refit_every}"
        + (" (dotted: refits)" if plan.refit_every > 1 else "")
        + shown,
        fontsize="medium",
    )
    save_png(fig, axes[0], path)
    return True
