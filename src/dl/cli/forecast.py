"""``dl forecast``: a recurrent network forecasts a time series, scored beside naive baselines
(the chapter's exercise 5).

It trains on the first part of the series (or picks the best of a small grid by the validation
part with ``--select``), scores the model and the naive, seasonal naive and mean forecasts on
the last part, forecasts ``--horizon`` values past the end, and writes ``forecast.png``,
``metrics.json``, every test forecast (``test_forecasts.csv``) and the checkpoint
``forecast.safetensors`` to ``--out``.
With ``--refit`` a fresh model of the same configuration is then trained on the whole series
and forecasts past the end (the scores stay those of the model of the training part).
``dl forecast --from RUN`` scores and forecasts with that checkpoint, without training.
``--backtest K`` then refits and scores from K origins over the test part (:mod:`dl.cli.backtest`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import importlib
import io
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

from dl import __version__, checkpoint, intervals, lm, panel
from dl import forecast as core
from dl.cli import backends, forecast_inputs, forecast_intervals, forecast_panel, signals
from dl.cli import backtest as backtest_cli
from dl.cli.options import (
    UsageError,
    choice,
    count,
    fraction,
    list_of,
    positive_float,
    positive_int,
)
from dl.cli.rundir import locked, refuse_other_kind
from dl.data.covariates import load_inputs
from dl.data.series import SERIES_LOADERS, Scaler, SeriesError
from dl.files import atomic_write, make_directory
from dl.plotting import save_png

STEM = "forecast"  # forecast.safetensors and forecast.json in the run directory
FORECASTS_CSV = "test_forecasts.csv"  # every test forecast, see forecasts_csv
# fastest first for forecasting on a CPU (2 cores, the defaults; wall time of `dl forecast`):
# sunspots 5.8 s JAX, 8.5 s TensorFlow, 6.5 s PyTorch; co2 (window 104) 22 s JAX (the window
# scanned by XLA), 35 s TensorFlow (unrolled in one graph), 53 s PyTorch (op by op)
FASTEST = ("jax", "tensorflow", "torch")
MODEL_OPTIONS = (
    "cell",
    "hidden",
    "layers",
    "dropout",
    "window",
    "horizon",
    "mode",
    "relative",
    "epochs",
    "lr",
    "batch_size",
    "optimizer",
    "clip",
    "patience",
    "val_fraction",
    "test_fraction",
    "seed",
    "select",
    "refit",
    *backtest_cli.OPTIONS,
    "quantiles",
    "likelihood",
)
DEFAULTS = dict(
    cell="lstm",
    hidden=32,
    layers=1,
    dropout=0.0,
    horizon=4,
    mode="direct",
    relative="none",
    val_fraction=0.1,
    test_fraction=0.2,
    **{f.name: f.default for f in dataclasses.fields(core.FitSettings)},
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "forecast",
        help="forecast a time series with an LSTM, beside naive baselines",
        description=__doc__.split("\n\n")[0],
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--series",
        type=choice(*SERIES_LOADERS),
        help=f"a built-in series: {', '.join(SERIES_LOADERS)}",
    )
    data.add_argument("--csv", type=Path, help="a CSV file with a header line, one row per step")
    data.add_argument(
        "--column",
        type=list_of(str),
        help="the CSV column(s) to use, comma-separated; the first is forecast",
    )
    data.add_argument("--time-column", help="the CSV column of time labels (for the plot)")
    data.add_argument(
        "--interpolate", action="store_true", help="fill missing CSV values by linear interpolation"
    )
    forecast_inputs.add_arguments(data)
    model = parser.add_argument_group("model and training")
    add = lambda flag, parse, text: model.add_argument(
        flag,
        type=parse,
        default=None,
        help=f"{text} (default: {DEFAULTS[flag[2:].replace('-', '_')]})",
    )
    add("--cell", choice(*lm.CELLS), "recurrent cell")
    add("--hidden", positive_int, "hidden units per layer")
    add("--layers", positive_int, "stacked recurrent layers")
    add("--dropout", fraction, "dropout between layers while training")
    model.add_argument(
        "--window",
        type=positive_int,
        default=None,
        help="past steps the model sees (default: two seasons, at least 16, "
        "at most what the shortest part allows)",
    )
    forecast_intervals.add_arguments(model)
    add("--horizon", positive_int, "steps to forecast")
    add(
        "--mode",
        choice(*core.MODES),
        "direct: the model outputs the whole horizon; autoregressive: one step, fed back",
    )
    add(
        "--relative",
        choice(*core.RELATIVE),
        "none: forecast the scaled values; target: their distance from the window's last "
        "target value; window: that, also reading the past inputs as distances from their "
        "last values (trending series)",
    )
    add("--epochs", positive_int, "most training epochs (early stopping ends sooner)")
    add("--patience", positive_int, "stop after this many epochs without a better validation loss")
    add("--lr", positive_float, "learning rate")
    add("--optimizer", choice(*core.OPTIMIZERS), "adam, adamw, rmsprop or sgd (dl.optim)")
    add("--clip", positive_float, "global gradient norm clipping threshold")
    add("--batch-size", positive_int, "windows per minibatch")
    add("--val-fraction", fraction, "share of the series held out for validation")
    add("--test-fraction", fraction, "share at the end held out for the test scores")
    add("--seed", count, "seed of the weights, shuffling and dropout")
    model.add_argument(
        "--select",
        action="store_true",
        default=None,
        help="train one model per combination of "
        f"{', '.join(f'{k} {v}' for k, v in core.SELECT_GRID.items())} and "
        "keep the best on the validation part",
    )
    model.add_argument(
        "--refit",
        action="store_true",
        default=None,
        help="after scoring on the test part, train a fresh model of the same "
        "configuration on the whole series (scaling included) for the "
        "best epoch count of the first, forecast past the end with it and "
        "save it as the run's model",
    )
    backtest_cli.add_options(parser)
    run = parser.add_argument_group("run")
    run.add_argument(
        "--backend",
        type=choice(*FASTEST),
        default=None,
        help=f"{', '.join(FASTEST)} (default: the first installed)",
    )
    run.add_argument("--device", default=None, help="cpu, gpu, cuda:N (default: a GPU if any)")
    run.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run directory (default: runs/forecast-<series>-<date>-<time>; with "
        "--from, nothing is written unless --out is given)",
    )
    run.add_argument("--force", action="store_true", help="overwrite the forecast run in --out")
    run.add_argument(
        "--from",
        dest="from_run",
        type=Path,
        default=None,
        metavar="RUN",
        help="use the checkpoint of an earlier `dl forecast` run, do not train",
    )
    parser.set_defaults(command=main)


def main(args: argparse.Namespace) -> int:
    if args.from_run is not None:
        return from_run(args)
    source = data_source(args)
    if source is None:
        raise UsageError(
            "dl forecast needs a series: --series "
            f"{'|'.join(SERIES_LOADERS)}, or --csv FILE --column NAME"
        )
    opts = {
        name: DEFAULTS[name] if getattr(args, name) is None else getattr(args, name)
        for name in DEFAULTS
    }
    series, inputs = open_series(source, opts["horizon"])
    with in_flags():
        window = args.window or min(
            core.default_window(s, opts["horizon"], opts["val_fraction"], opts["test_fraction"])
            for s in series
        )
        datas = panel.prepare(
            series,
            window,
            opts["horizon"],
            opts["mode"],
            opts["val_fraction"],
            opts["test_fraction"],
        )
    for data in datas:
        check_varies(data)
    backtest = backtest_cli.check(args, datas[0])  # the series of a global model: cut alike
    out = args.out or Path("runs") / time.strftime(
        f"forecast-{args.series or args.csv.stem}-%Y%m%d-%H%M%S"
    )
    backend = choose_backend(args.backend)
    start_backend(backend, args.device)
    with locked(out, "dl forecast"):
        prepare_out(out, args.force)
        if len(datas) > 1:
            return forecast_panel.train_run(
                args, out, source, opts, datas, backend, inputs, backtest
            )
        return train_run(args, out, source, opts, datas[0], backend, inputs, backtest)


def train_run(
    args, out: Path, source: dict, opts: dict, data, backend: str, inputs, backtest
) -> int:
    """Train (or select), score, refit if asked and save the run in the locked ``out``; then
    the ``backtest`` plan, if any."""
    config, settings = configure(args, opts, data, inputs)
    print(describe(data))
    started, build = time.perf_counter(), builder(backend, args.device)
    best = BestSoFar(build)
    meta = run_meta(config, settings, data, opts, source, backend, inputs)
    try:
        model, config, settings, fit, trials = fit_model(
            best.build, data, config, settings, args.select, best.log
        )
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: keep the best epoch trained
        return best.save_interrupted(out, meta, err)
    seconds = time.perf_counter() - started
    print(
        f"trained on {backend} ({model.device_name}) in {seconds:.1f} s: best epoch "
        f"{fit.best_epoch} of {len(fit.history)}, {loss_name(data, config)} {fit.best_loss:.4g} "
        "(scaled units)"
    )
    result, evaluation, future = report(
        model, data, config, forecast_by="the model of the training part" if args.refit else None
    )
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
            model, future, quantiles, meta["refit"], scaler = refit_model(
                build, data, config, settings, fit.best_epoch
            )
        except (core.ForecastDivergedError, KeyboardInterrupt) as err:
            save_run(out, model, meta, data, result, evaluation, future)
            kept = f"{out} holds the model of the training part, its scores and its forecast"
            if isinstance(err, KeyboardInterrupt):
                print(
                    f"{signals.describe(err)} during the refit on the whole series; {kept}",
                    file=sys.stderr,
                )
                return signals.exit_status(err)
            raise core.ForecastDivergedError(
                f"the refit on the whole series failed: {err}; {kept}"
            ) from None
        meta["scaler"] = scaler.to_dict()
        result["refit"] = meta["refit"]
        result["forecast"].update(
            values_of_model_of_training_part=result["forecast"]["values"],
            values=future.tolist(),
            model="refit on the whole series",
        )
        if quantiles:
            result["forecast"].update(
                quantiles_of_model_of_training_part=result["forecast"]["quantiles"], **quantiles
            )
    save_run(out, model, meta, data, result, evaluation, future)
    if backtest is not None:
        return backtest_cli.run(
            out, build, [data], config, settings, fit.best_epoch, backtest, result
        )
    return 0


def configure(args, opts: dict, data, inputs) -> tuple[core.ForecastConfig, core.FitSettings]:
    """The model and training settings of the command's options for ``data``, whose last
    columns are the leads of ``inputs`` (:class:`dl.data.covariates.Inputs`)."""
    config = core.ForecastConfig(
        opts["cell"],
        data.series.values.shape[1],
        opts["hidden"],
        opts["layers"],
        opts["dropout"],
        True,
        data.num_outputs,
        **forecast_intervals.distribution(args, data.mode),
        relative=opts["relative"],
        target=data.target,
        num_leads=inputs.lead_columns(data.horizon),
    )
    return config, core.FitSettings(
        **{f.name: opts[f.name] for f in dataclasses.fields(core.FitSettings)}
    )


def run_meta(config, settings, data, opts: dict, source: dict, backend: str, inputs) -> dict:
    """The checkpoint's description of a run before training (``model.json``'s data)."""
    return {
        "model": config.to_dict(),
        "training": dataclasses.asdict(settings),
        "scaler": data.scaler.to_dict(),
        "window": data.window,
        "horizon": data.horizon,
        "mode": data.mode,
        "period": data.period,
        "val_fraction": opts["val_fraction"],
        "test_fraction": opts["test_fraction"],
        "data": source,
        "series": data.series.metadata(),
        "inputs": inputs.to_dict(),
        "refit": None,
        "backend": backend,
        "dl_version": __version__,
    }


def save_run(out: Path, model, meta: dict, data, result: dict, evaluation, future) -> None:
    """The checkpoint, metrics.json and forecast.png of a trained run."""
    with signals.deferred():
        checkpoint.save(out, model.numpy_params(), meta, stem=STEM)
    write_outputs(out, data, result, evaluation, future, f"{STEM}.safetensors")


class BestSoFar:
    """The weights of the best epoch of the models being trained (one, or the trials of a
    selection, which compete on the same validation part), for an interrupted run."""

    def __init__(self, build):
        self._build, self.model, self.training, self.config = build, None, None, None
        self.params, self.record, self.epochs, self.built = None, None, 0, 0

    def build(self, config, params):
        """``build(config, params)``, remembered as the model being trained."""
        self.model, self.training, self.epochs = self._build(config, params), config, 0
        self.built += 1
        return self.model

    def log(self, record: dict) -> None:
        """After each epoch (printed as :func:`print_epoch`, unless a selection trial's, with
        its ``'choice'``): keep the weights if they are the best."""
        if "choice" not in record:
            print_epoch(record, intervals.objective_name(self.training))
        self.epochs = record["epoch"]
        loss = record["train_loss"] if record["val_loss"] is None else record["val_loss"]
        if self.record is None or loss < self.record["loss"]:
            self.params, self.config = self.model.numpy_params(), self.training
            self.record = {**record, "loss": loss}

    def save_interrupted(self, out: Path, meta: dict, err: KeyboardInterrupt) -> int:
        """Save the best epoch's weights as the run's checkpoint (unscored); 130 or 143."""
        how = signals.describe(err)
        if self.params is None:
            print(f"{how} before an epoch's weights were kept: nothing was saved", file=sys.stderr)
            return signals.exit_status(err)
        where = f"after epoch {self.epochs}" if self.epochs else "in its first epoch"
        whose = "its best epoch"
        choice = self.record.get("choice")
        if choice is not None:  # a selection: the trial's settings go with its weights
            where = f"in selection trial {self.built}, {where}"
            whose = f"the best epoch of the trials so far ({describe_choice(choice)}), epoch"
            settings = {f.name for f in dataclasses.fields(core.FitSettings)}
            meta = {
                **meta,
                "training": {
                    **meta["training"],
                    **{k: v for k, v in choice.items() if k in settings},
                },
            }
        meta = {
            **meta,
            "model": self.config.to_dict(),
            "best_epoch": self.record["epoch"],
            "best_loss": self.record["loss"],
            "interrupted": where,
        }
        with signals.deferred():
            checkpoint.save(out, self.params, meta, stem=STEM)
        print(
            f"{how} {where}: saved the weights of {whose} "
            f"{self.record['epoch']} in {checkpoint.weights_path(out, STEM)}; score and "
            f"forecast with them by `dl forecast --from {out}`",
            file=sys.stderr,
        )
        return signals.exit_status(err)


def fit_model(build, data, config, settings, select: bool, log):
    """``(model, config, settings, FitResult, trials)``: one model trained (``log`` sees each
    epoch's record, with the trial's choice in a selection), or the best of
    :data:`dl.forecast.SELECT_GRID` on the validation part
    (``trials`` None without select)."""
    if not select:
        model, fit = core.train(build, data, config, settings, log=log)
        return model, config, settings, fit, None
    name = intervals.objective_name(config)
    picked = core.select(
        build, data, config, settings, log=lambda t: print_trial(t, name), epoch_log=log
    )
    return picked.model, picked.config, picked.settings, picked.fit, picked.trials


def refit_model(build, data, config, settings, epochs: int):
    """``(model, future forecast, refit record, scaler)``: :func:`dl.forecast.refit`,
    printed."""
    started = time.perf_counter()
    model, whole, fit = core.refit(build, data, config, settings, epochs)
    seconds = time.perf_counter() - started
    future = core.forecast_future(intervals.point_predictor(model.predict, config), whole)
    windows = len(whole.train_windows[0])
    print(
        f"refit a fresh model on all {len(data.series)} steps ({windows} windows) for "
        f"{epochs} epochs in {seconds:.1f} s, training {intervals.objective_name(config)} "
        f"{fit.best_loss:.4g} (scaled units); its forecast of the {data.horizon} steps after "
        f"{last_step(data)}: " + " ".join(f"{v:.4g}" for v in future)
    )
    quantiles = forecast_intervals.future(model.predict, whole, config)
    record = {
        "epochs": epochs,
        "steps": len(data.series),
        "windows": windows,
        "seconds": seconds,
        "train_loss": fit.best_loss,
        "scaler": "fitted on the whole series",
        "weights": "of the last epoch",
    }
    return model, future, quantiles, record, whole.scaler


def from_run(args: argparse.Namespace) -> int:
    """``dl forecast --from RUN``: score and forecast with a saved model, no training."""
    given = [
        f"--{name.replace('_', '-')}" for name in MODEL_OPTIONS if getattr(args, name) is not None
    ]
    if given:
        raise UsageError(
            f"--from {args.from_run} uses the model and settings of that run; "
            f"leave out {', '.join(given)} or train a new run without --from"
        )
    params, meta, config, scaler = open_run(args.from_run)
    forecast_inputs.fill_from_run(args, meta)
    source = data_source(args) or meta["data"]
    series, inputs = open_series(source, meta["horizon"])
    forecast_inputs.check(args.from_run, meta, inputs)
    start_backend(choose_backend(args.backend), args.device)
    if len(series) > 1:
        return forecast_panel.from_run(args, params, meta, config, series)
    with in_flags():
        data = core.prepare(
            series[0],
            meta["window"],
            meta["horizon"],
            meta["mode"],
            meta["val_fraction"],
            meta["test_fraction"],
            meta["period"],
            scaler,
        )
    data = dataclasses.replace(data, period_source=f"of {args.from_run}")
    model = builder(choose_backend(args.backend), args.device)(config, params)
    print(describe(data))
    in_sample = refit_in_sample(args.from_run, meta, data)
    result, evaluation, future = report(model, data, config, in_sample=bool(in_sample))
    result.update(checkpoint=str(checkpoint.weights_path(args.from_run, STEM)), in_sample=in_sample)
    if args.out is not None:
        with locked(args.out, "dl forecast"):
            prepare_out(args.out, args.force)
            write_outputs(args.out, data, result, evaluation, future)
    return 0


def refit_in_sample(run: Path, meta: dict, data) -> bool | None:
    """Whether the test part of ``data`` was in the training data of the run's model, printed:
    True for a model refit on this very series, False for a model of its training part, None
    (cannot tell) for a model refit on another or an earlier version of the series."""
    if not meta.get("refit"):
        return False
    if data.series.metadata() == meta["series"]:
        print(
            f"the model of {run} was refit on the whole series, test part included: its test "
            "scores below are in-sample, not a held-out measure"
        )
        return True
    trained = meta["series"]
    print(
        f"the model of {run} was refit on {trained['source']} ({trained['length']} steps, up "
        f"to {trained['last_time'] or trained['length'] - 1}): the test part here may overlap "
        "what it trained on"
    )
    return None


# ---------------------------------------------------------------- data and model


def data_source(args) -> dict | None:
    """What to load, as JSON-able settings (kept in the checkpoint); None when not given."""
    csv_only = [
        flag
        for flag, value in (
            ("--column", args.column),
            ("--time-column", args.time_column),
            ("--interpolate", args.interpolate),
            ("--future-columns", args.future_columns),
        )
        if value
    ]
    if args.series is not None and (args.csv is not None or csv_only):
        raise UsageError(
            f"--series {args.series} is a built-in series; leave out "
            f"{', '.join((['--csv'] if args.csv else []) + csv_only)}"
        )
    inputs = forecast_inputs.options(args, csv=args.csv is not None)
    if args.series is not None:
        return {"series": args.series, **inputs}
    if args.csv is None:
        if csv_only or inputs:
            flags = csv_only + [f"--{key.replace('_', '-')}" for key in inputs]
            raise UsageError(f"{', '.join(flags)} apply to a CSV file; give --csv FILE")
        return None
    if not args.column and not args.targets:
        raise UsageError(
            f"--csv {args.csv}: say which column to forecast with --column NAME (or several "
            "with --targets A,B)"
        )
    return {
        "csv": str(args.csv.resolve()),
        "column": args.column,
        "time_column": args.time_column,
        "interpolate": bool(args.interpolate),
        **inputs,
    }


# the library's argument names in its messages -> the command's flags
FLAGS = {
    "interpolate=True": "--interpolate",
    "val_fraction": "--val-fraction",
    "test_fraction": "--test-fraction",
    "use mode direct": "use --mode direct",
    "a shorter window or horizon": "a shorter --window or --horizon",
    "give its time column": "give --time-column",
    "leave out the calendar features": "leave out --calendar",
    "give it as a past covariate": "give it in --column instead",
}
LARGEST = 1e150  # larger values overflow when squared (variances, scores)


@contextlib.contextmanager
def in_flags():
    """Re-raise the series layer's :class:`SeriesError` in the command's words (its flags);
    a training part too short says which fractions to lower."""
    try:
        yield
    except SeriesError as err:
        message = re.sub("|".join(map(re.escape, FLAGS)), lambda m: FLAGS[m.group()], str(err))
        if message.startswith("the train part"):
            message += ", or a smaller --val-fraction or --test-fraction"
        raise UsageError(message) from None


def open_series(source: dict, horizon: int):
    """``(series, inputs)``: one series per target of ``source`` (:func:`data_source`) with
    its covariates (:func:`dl.data.covariates.load_inputs`); refuses values too large to
    scale."""
    with in_flags():
        series, inputs = load_inputs(source, horizon)
    for one in series:
        check_magnitude(one)
    return series, inputs


def check_magnitude(series) -> None:
    """Refuse values too large to scale."""
    too_large = np.argwhere(np.abs(series.values) > LARGEST)
    if len(too_large):
        row, column = too_large[0]
        raise UsageError(
            f"{series.source}: the value {series.values[row, column]:g} (step "
            f"{row}) is too large to compute with (|x| over {LARGEST:g} overflows "
            "when squared); rescale the column, e.g. divide it by a power of 10"
        )


def check_varies(data: core.ForecastData) -> None:
    """Refuse a constant training part: MASE is undefined there and nothing can be learnt."""
    y = data.train[:, data.target]
    if np.ptp(y) == 0:
        raise UsageError(
            f"{data.series.source}: column {data.series.target_name!r} is constant "
            f"({y[0]:g}) over the training part, so MASE is undefined (the naive "
            "forecast has no error to scale by) and there is nothing to learn; "
            "give a series that varies"
        )


def choose_backend(name: str | None) -> str:
    """``name`` if installed, else the first installed of :data:`FASTEST`."""
    installed = backends.installed()
    return backends.choose(name or next((b for b in FASTEST if b in installed), None))


def start_backend(backend: str, device: str | None) -> None:
    """Import ``backend`` and refuse a ``--device`` it cannot use (InputError naming it),
    before the run prints or writes anything; JAX keeps its compiled programs for the next
    run (:func:`dl.jax.engine.use_compilation_cache`)."""
    importlib.import_module(f"dl.{backend}.lm").device_of(device)
    if backend == "jax":
        importlib.import_module("dl.jax.engine").use_compilation_cache()


def builder(backend: str, device: str | None):
    """``build(config, params) -> Forecaster`` of ``backend`` (imports the framework)."""
    cls = importlib.import_module(f"dl.{backend}.forecast").Forecaster
    return lambda config, params: cls(config, params, device=device)


def open_run(run: Path):
    """``(params, meta, config, scaler)`` of the forecast checkpoint in ``run``."""
    if not checkpoint.exists(run, STEM) and checkpoint.exists(run):
        raise UsageError(
            f"--from {run} is a `dl train` run (a language model), not a "
            "forecast; give the --out directory of a `dl forecast` run"
        )
    if not checkpoint.exists(run, STEM):
        raise UsageError(
            f"--from {run}: no forecast checkpoint there ({STEM}.safetensors); "
            f"train one with `dl forecast --out {run}`"
        )
    params, meta = checkpoint.load(run, STEM)
    try:
        config = core.ForecastConfig.from_dict(meta["model"])
        lm.check_params(config, params)
        scaler = Scaler.from_dict(meta["scaler"])
        meta["window"], meta["horizon"], meta["mode"], meta["period"], meta["data"]
    except (KeyError, TypeError, ValueError) as err:
        raise checkpoint.CheckpointError(
            f"{checkpoint.weights_path(run, STEM)}: its description does not fit its weights "
            f"({err}); the checkpoint is damaged"
        ) from None
    return params, meta, config, scaler


# ---------------------------------------------------------------- output


def loss_name(data, config) -> str:
    part = "validation" if data.val_windows is not None else "training"
    return f"{part} {intervals.objective_name(config)}"


def describe(data: core.ForecastData) -> str:
    s = data.series
    return (
        f"{s.source}: {len(s)} steps of {s.target_name!r}; train {len(data.train)}, "
        f"validation {len(data.val)}, test {len(data.test)}; window {data.window}, horizon "
        f"{data.horizon} ({data.mode}); season {data.period} ({data.period_source})"
    )


def print_epoch(record: dict, loss: str = "MSE") -> None:
    if record["epoch"] % 10 == 0:
        val = record["val_loss"]
        print(
            f"epoch {record['epoch']}: training {loss} {record['train_loss']:.4g}"
            + ("" if val is None else f", validation {loss} {val:.4g}"),
            flush=True,
        )


def describe_choice(choice: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in choice.items())


def print_trial(trial: dict, loss: str = "MSE") -> None:
    print(
        f"{describe_choice(trial['choice'])}: validation {loss} "
        f"{trial['val_loss']:.4g} (epoch {trial['best_epoch']})",
        flush=True,
    )


def report(
    model,
    data: core.ForecastData,
    config: core.ForecastConfig,
    forecast_by: str | None = None,
    in_sample: bool = False,
):
    """Score on the test part, forecast past the end, print both (the forecast labelled as by
    ``forecast_by``, the verdict as in-sample if so); returns metrics.json's data, the
    :class:`~dl.forecast.Evaluation` and the forecast ``(horizon,)``."""
    point = intervals.point_predictor(model.predict, config)
    evaluation = core.evaluate(point, data)
    future = core.forecast_future(point, data)
    label = f"{config.cell} ({data.mode})"
    names = {
        "model": label,
        "naive": "naive",
        "seasonal_naive": f"seasonal naive ({data.period})",
        "mean": "mean",
    }
    print(f"test scores over {len(evaluation.truth)} forecast origins, original units:")
    print(f"{'':22}{'MAE':>10}{'RMSE':>10}{'MASE':>10}{'sMAPE %':>10}")
    for name, scores in evaluation.scores.items():
        print(
            f"{names[name]:22}"
            + "".join(
                f"{'undefined' if math.isnan(v) else f'{v:.4g}':>10}" for v in scores.values()
            )
        )
    if evaluation.mase_note:
        print(evaluation.mase_note)
    if intervals.is_probabilistic(config):
        evaluation.intervals = intervals.evaluate(model.predict, data, config)
        forecast_intervals.print_scores(evaluation.intervals, names, config)
    beats = evaluation.beats()
    if beats is not None:
        ours, theirs = (evaluation.scores[n]["mase"] for n in ("model", "seasonal_naive"))
        print(
            f"{label} {'beats' if beats else 'does not beat'} seasonal naive on test MASE: "
            f"{ours:.3f} {'<' if beats else '>='} {theirs:.3f}"
            + (" (in-sample)" if in_sample else "")
        )
    last = last_step(data)
    print(
        f"forecast{f' by {forecast_by}' if forecast_by else ''} of the {data.horizon} steps "
        f"after {last}: " + " ".join(f"{v:.4g}" for v in future)
    )
    future_quantiles = forecast_intervals.future(model.predict, data, config)
    clean = lambda x: None if isinstance(x, float) and math.isnan(x) else x
    result = {
        "series": data.series.metadata(),
        "target": data.series.target_name,
        "window": data.window,
        "horizon": data.horizon,
        "mode": data.mode,
        "period": data.period,
        "period_source": data.period_source,
        "parts": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "test_origins": len(evaluation.truth),
        "model": config.to_dict(),
        "scores": {
            name: {k: clean(v) for k, v in scores.items()}
            for name, scores in evaluation.scores.items()
        },
        "mase_note": evaluation.mase_note,
        "beats_seasonal_naive_mase": beats,
        "forecast": {"after": last, "values": future.tolist(), **future_quantiles},
    }
    if evaluation.intervals is not None:
        result["intervals"] = forecast_intervals.to_json(evaluation.intervals, config)
    return result, evaluation, future


def last_step(data) -> str | int:
    """The series' last time label, else its last index."""
    return data.series.time[-1] if data.series.time else len(data.series) - 1


def write_outputs(out: Path, data, result: dict, evaluation, future, *extra: str) -> None:
    atomic_write(out / "metrics.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    atomic_write(out / FORECASTS_CSV, forecasts_csv(data, evaluation))
    written = ["metrics.json", FORECASTS_CSV, *extra]
    if write_plot(
        out / "forecast.png",
        data,
        evaluation,
        future,
        result["forecast"].get("model"),
        bool(result.get("in_sample")),
        result["forecast"].get("quantiles"),
    ):
        written.insert(0, "forecast.png")
    else:
        print(
            "matplotlib is not installed, so there is no forecast.png: pip install 'dl-rnn[plot]'"
        )
    print(f"wrote {', '.join(str(out / name) for name in written)}")


def forecasts_csv(data, evaluation) -> str:
    """Every test forecast, one row per origin and step: ``origin`` (the index in the test
    part of the origin's first forecast step), ``step`` (1..horizon), ``time`` (the forecast
    step's time label, else its index in the series), ``truth`` and one column per forecaster
    of :class:`~dl.forecast.Evaluation` (original units), for scoring them elsewhere; with
    intervals, then ``<name>_q<level>`` per forecaster given quantiles and level (the model's,
    then the baselines' residual quantiles, as :func:`dl.intervals.evaluate` scores them)."""
    columns = dict(evaluation.forecasts)
    if evaluation.intervals is not None:
        levels = evaluation.intervals.levels
        for name, quantiles in evaluation.intervals.quantiles.items():  # (N, horizon, L)
            columns.update({f"{name}_q{q:g}": quantiles[..., k] for k, q in enumerate(levels)})
    start, time = len(data.train) + len(data.val), data.series.time
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["origin", "step", "time", "truth", *columns])
    for origin, row in enumerate(evaluation.truth):
        for step, truth in enumerate(row):
            index = start + origin + step
            values = [float(column[origin, step]) for column in columns.values()]
            writer.writerow(
                [origin, step + 1, time[index] if time else index, float(truth), *values]
            )
    return buffer.getvalue()


def prepare_out(out: Path, force: bool) -> None:
    make_directory(out)
    refuse_other_kind(out, "dl forecast")
    if not force and any(
        (out / name).exists()
        for name in (f"{STEM}.safetensors", "metrics.json", "forecast.png", *backtest_cli.FILES)
    ):
        raise UsageError(
            f"--out {out} already holds a forecast; choose another --out, or "
            "overwrite it with --force"
        )
    for name in backtest_cli.FILES:  # an earlier run's backtest is not this run's
        (out / name).unlink(missing_ok=True)


def time_axis(series, extra: int) -> tuple[np.ndarray, str]:
    """x positions of the series' steps and ``extra`` steps after it, with the axis label:
    the time labels when they are numbers or ISO dates, else step numbers."""
    time_labels, n = series.time, len(series)
    x, label = np.arange(n + extra), "time step"
    if time_labels is not None and n >= 2:
        try:
            known = np.array(
                time_labels,
                dtype="datetime64[D]" if isinstance(time_labels[0], str) else np.float64,
            )
            x, label = (
                np.concatenate(
                    [known, known[-1] + (known[-1] - known[-2]) * np.arange(1, extra + 1)]
                ),
                "time",
            )
        except ValueError:  # labels such as '1959Q1'
            pass
    return x, label


def write_plot(
    path: Path,
    data,
    evaluation,
    future,
    future_model: str | None = None,
    in_sample: bool = False,
    future_quantiles: dict | None = None,
) -> bool:
    """``forecast.png``: history, test truth, the model's test forecasts (marked in-sample if
    so) and the forecast past the end (by ``future_model``, if not the scored model), with
    the bands of its outer quantiles if it has some; False without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    series, h = data.series, data.horizon
    x, xlabel = time_axis(series, h)
    y, n_test = series.target_values, len(data.test)
    start = len(series) - n_test
    fig = Figure(figsize=(8, 3.5))
    ax = fig.subplots()
    ax.plot(x[:start], y[:start], color="0.6", lw=1, label="history (train, validation)")
    ax.plot(x[start : len(y)], y[start:], color="black", lw=1, label="test truth")
    steps = evaluation.forecasts["model"][:, -1]  # h steps ahead of each origin
    ax.plot(
        x[start + h - 1 : start + h - 1 + len(steps)],
        steps,
        color="tab:blue",
        lw=1,
        label=f"model, {h} step{'s' if h > 1 else ''} ahead"
        + (" (in-sample)" if in_sample else ""),
    )
    forecast_intervals.draw_bands(ax, x, start, evaluation, future_quantiles)
    ax.plot(
        x[len(y) :],
        future,
        "o--",
        color="tab:red",
        ms=3,
        label="forecast" + (f" ({future_model})" if future_model else ""),
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(series.target_name)
    save_png(fig, ax, path)
    return True
