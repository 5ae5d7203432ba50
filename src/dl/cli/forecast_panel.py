"""``dl forecast --targets A,B,...``: one global model for several series (:mod:`dl.panel`),
trained on the pooled windows of all, each series scaled by its own training part; scored
per series beside its baselines, and over all series (mean MASE and sMAPE; with quantiles,
mean coverage and scaled pinball loss and CRPS); ``--backtest`` then refits it at each origin
(:mod:`dl.cli.backtest`)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import sys
import time
from pathlib import Path

from dl import checkpoint, intervals, panel
from dl import forecast as core
from dl.cli import backtest as backtest_cli
from dl.cli import forecast as cli
from dl.cli import forecast_intervals, signals
from dl.cli.rundir import locked
from dl.data.series import Scaler
from dl.files import atomic_write


def scaling(datas) -> dict:
    """What a global model's checkpoint keeps per series: scalers, periods, metadata."""
    return {
        "scaler": datas[0].scaler.to_dict(),
        "scalers": [d.scaler.to_dict() for d in datas],
        "periods": [d.period for d in datas],
        "panel": [d.series.metadata() for d in datas],
    }


def train_run(
    args, out: Path, source: dict, opts: dict, datas, backend: str, inputs, backtest
) -> int:
    """:func:`dl.cli.forecast.train_run` of a global model on ``datas`` (one per target),
    then the ``backtest`` plan, if any."""
    pooled = panel.pool(datas)
    config, settings = cli.configure(args, opts, pooled, inputs)
    for data in datas:
        print(cli.describe(data))
    print(
        f"one global model for {len(datas)} series: {len(pooled.train_windows[0])} training "
        "windows pooled, each series scaled by its own training part"
    )
    started, build = time.perf_counter(), cli.builder(backend, args.device)
    best = cli.BestSoFar(build)
    meta = {
        **cli.run_meta(config, settings, pooled, opts, source, backend, inputs),
        **scaling(datas),
    }
    try:
        model, config, settings, fit, trials = cli.fit_model(
            best.build, pooled, config, settings, args.select, best.log
        )
    except KeyboardInterrupt as err:
        return best.save_interrupted(out, meta, err)
    seconds = time.perf_counter() - started
    print(
        f"trained on {backend} ({model.device_name}) in {seconds:.1f} s: best epoch "
        f"{fit.best_epoch} of {len(fit.history)}, {cli.loss_name(pooled, config)} "
        f"{fit.best_loss:.4g} (scaled units, all series)"
    )
    by = "the model of the training part" if args.refit else None
    result, evaluations, futures = report(model, datas, config, forecast_by=by)
    result.update(
        training={
            **dataclasses.asdict(settings),
            "best_epoch": fit.best_epoch,
            "epochs_run": len(fit.history),
            "best_loss": fit.best_loss,
            "seconds": seconds,
            "history": fit.history,
        },
        selection=trials,
        backend=backend,
    )
    meta.update(
        model=config.to_dict(),
        training=dataclasses.asdict(settings),
        best_epoch=fit.best_epoch,
        best_loss=fit.best_loss,
    )
    if args.refit:
        try:
            started = time.perf_counter()
            refit, whole, refit_fit = panel.refit(build, datas, config, settings, fit.best_epoch)
        except (core.ForecastDivergedError, KeyboardInterrupt) as err:
            save(out, model, meta, datas, result, evaluations, futures)
            kept = f"{out} holds the model of the training part, its scores and its forecasts"
            if isinstance(err, KeyboardInterrupt):
                print(f"{signals.describe(err)} during the refit; {kept}", file=sys.stderr)
                return signals.exit_status(err)
            raise core.ForecastDivergedError(f"the refit failed: {err}; {kept}") from None
        point = intervals.point_predictor(refit.predict, config)
        model, futures = refit, [core.forecast_future(point, w) for w in whole]
        meta.update(scaling(whole))
        meta["refit"] = result["refit"] = {
            "epochs": fit.best_epoch,
            "seconds": time.perf_counter() - started,
            "train_loss": refit_fit.best_loss,
            "scaler": "each fitted on its whole series",
            "weights": "of the last epoch",
        }
        for data, whole_data, future in zip(datas, whole, futures):
            forecast = result["series"][data.series.target_name]["forecast"]
            forecast.update(
                values_of_model_of_training_part=forecast["values"],
                values=future.tolist(),
                model="refit on the whole series",
            )
            print(
                f"refit forecast of {data.series.target_name!r} after {cli.last_step(data)}: "
                + " ".join(f"{v:.4g}" for v in future)
            )
            quantiles = forecast_intervals.future(refit.predict, whole_data, config)
            if quantiles:
                forecast.update(
                    quantiles_of_model_of_training_part=forecast["quantiles"], **quantiles
                )
    save(out, model, meta, datas, result, evaluations, futures)
    if backtest is not None:
        return backtest_cli.run(
            out, build, datas, config, settings, fit.best_epoch, backtest, result
        )
    return 0


def save(out: Path, model, meta, datas, result, evaluations, futures) -> None:
    with signals.deferred():
        checkpoint.save(out, model.numpy_params(), meta, stem=cli.STEM)
    write_outputs(out, datas, result, evaluations, futures, f"{cli.STEM}.safetensors")


def from_run(args, params: dict, meta: dict, config, series) -> int:
    """:func:`dl.cli.forecast.from_run` of a global model's run on ``series``."""
    try:
        scalers = [Scaler.from_dict(s) for s in meta["scalers"]]
        periods = meta["periods"]
    except (KeyError, TypeError, ValueError) as err:
        raise checkpoint.CheckpointError(
            f"{checkpoint.weights_path(args.from_run, cli.STEM)}: its description lacks the "
            f"scalers of its series ({err}); the checkpoint is damaged"
        ) from None
    with cli.in_flags():
        datas = panel.prepare(
            series,
            meta["window"],
            meta["horizon"],
            meta["mode"],
            meta["val_fraction"],
            meta["test_fraction"],
            periods,
            scalers,
        )
    model = cli.builder(cli.choose_backend(args.backend), args.device)(config, params)
    for data in datas:
        print(cli.describe(data))
    in_sample = bool(meta.get("refit")) and [d.series.metadata() for d in datas] == meta["panel"]
    if in_sample:
        print(
            f"the model of {args.from_run} was refit on these whole series, test parts "
            "included: its test scores below are in-sample, not a held-out measure"
        )
    result, evaluations, futures = report(model, datas, config)
    result.update(
        checkpoint=str(checkpoint.weights_path(args.from_run, cli.STEM)), in_sample=in_sample
    )
    if args.out is not None:
        with locked(args.out, "dl forecast"):
            cli.prepare_out(args.out, args.force)
            write_outputs(args.out, datas, result, evaluations, futures)
    return 0


def report(model, datas, config, forecast_by: str | None = None):
    """Each series' scores and forecast (:func:`dl.cli.forecast.report`), then the mean
    scale-free scores over the series; returns metrics.json's data, the evaluations and the
    forecasts, one per series."""
    results, evaluations, futures = {}, [], []
    for data in datas:
        print(f"{data.series.target_name}:")
        result, evaluation, future = cli.report(model, data, config, forecast_by)
        results[data.series.target_name] = result
        evaluations.append(evaluation)
        futures.append(future)
    overall = panel.overall([e.scores for e in evaluations])
    names = {"model": f"{config.cell} (global)", "seasonal_naive": "seasonal naive"}
    print(f"mean over the {len(datas)} series:{'MASE':>10}{'sMAPE %':>10}")
    print_rows(overall, names)
    clean = lambda x: None if math.isnan(x) else x
    result = {
        "targets": list(results),
        "series": results,
        "overall": {n: {k: clean(v) for k, v in s.items()} for n, s in overall.items()},
        "model": config.to_dict(),
    }
    if intervals.is_probabilistic(config):
        scale_free = [interval_figures(d, e) for d, e in zip(datas, evaluations)]
        for data, figures in zip(datas, scale_free):
            results[data.series.target_name]["intervals"]["scale_free"] = figures
        mean = panel.overall(scale_free)
        print(
            f"{'mean, intervals:':22}"
            + "".join(f"{heading(metric):>16}" for metric in mean["model"])
        )
        print_rows(mean, names, 16)
        result["overall_intervals"] = {
            n: {k: clean(v) for k, v in s.items()} for n, s in mean.items()
        }
    return result, evaluations, futures


def interval_figures(data, evaluation) -> dict:
    """The scale-free interval figures (:func:`dl.intervals.figures`: coverages, scaled
    pinball and CRPS) of the model and the baselines on one series' test part."""
    y_train = data.train[:, data.target]
    return {
        name: {
            k: v
            for k, v in intervals.figures(scored, y_train, data.period).items()
            if panel.scale_free(k)
        }
        for name, scored in evaluation.intervals.scores.items()
    }


def heading(metric: str) -> str:
    """``coverage_80`` -> ``80% cover``, ``scaled_crps`` -> ``scaled CRPS``."""
    if metric.startswith("coverage_"):
        return f"{metric[9:]}% cover"
    return metric.replace("_", " ").replace("crps", "CRPS")


def print_rows(scores: dict, names: dict, width: int = 10) -> None:
    for name, row in scores.items():
        print(
            f"{names.get(name, name):22}"
            + "".join(
                f"{'undefined' if math.isnan(v) else f'{v:.4g}':>{width}}" for v in row.values()
            )
        )


def plot_name(target: str) -> str:
    return f"forecast-{re.sub(r'[^A-Za-z0-9._-]', '_', target)}.png"


def forecasts_csv(datas, evaluations) -> str:
    """:func:`dl.cli.forecast.forecasts_csv` of every series, one after the other, each row
    led by its series' target name (column ``series``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for i, (data, evaluation) in enumerate(zip(datas, evaluations)):
        header, *rows = csv.reader(io.StringIO(cli.forecasts_csv(data, evaluation)))
        if i == 0:
            writer.writerow(["series", *header])
        writer.writerows([data.series.target_name, *row] for row in rows)
    return buffer.getvalue()


def write_outputs(out: Path, datas, result, evaluations, futures, *extra: str) -> None:
    """metrics.json, test_forecasts.csv (:func:`forecasts_csv`) and a forecast plot per
    series."""
    atomic_write(out / "metrics.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    atomic_write(out / cli.FORECASTS_CSV, forecasts_csv(datas, evaluations))
    written = ["metrics.json", cli.FORECASTS_CSV, *extra]
    for data, evaluation, future in zip(datas, evaluations, futures):
        name = plot_name(data.series.target_name)
        forecast = result["series"][data.series.target_name]["forecast"]
        if cli.write_plot(
            out / name,
            data,
            evaluation,
            future,
            forecast.get("model"),
            bool(result.get("in_sample")),
            forecast.get("quantiles"),
        ):
            written.insert(0, name)
    print(f"wrote {', '.join(str(out / name) for name in written)}")
