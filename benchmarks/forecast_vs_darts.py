"""``dl forecast`` side by side with darts' LSTMs on the same series, splits, origins and horizon.

For each series (sunspots, co2, macrodata: real GDP with real consumption and investment as
past covariates) the benchmark runs ``dl forecast --series NAME`` with its defaults as a
subprocess, reads its run directory (``metrics.json``: the split, window, horizon and season;
``test_forecasts.csv``: every test forecast and the truth), writes the same values (those of
:func:`dl.data.series.load_series`, checked against the run's SHA-256) to a CSV file and runs
``darts_forecast.py`` in darts' own environment once per darts model:

- ``RNNModel`` and ``BlockRNNModel`` with ``model="LSTM"`` and their documented defaults
  (25 hidden units, 100 epochs, batch 32, Adam at 1e-3, no validation; ``RNNModel``'s
  ``training_length`` raised to ``window + horizon`` where its default 24 is not longer than
  the window, which darts requires), ``input_chunk_length`` = dl's window and, for
  ``BlockRNNModel``, ``output_chunk_length`` = the horizon;
- the same with one tuned setting, ``dl forecast``'s own: 32 hidden units, Adam at 0.01,
  gradient norm clipped to 1, at most 200 epochs with early stopping on the validation loss
  (patience 20) and the best epoch's weights restored;
- with ``--quantiles``: the tuned setting trained with ``QuantileRegression`` at those levels.

Both sides get the same standardisation (fitted on the training part) and seed 0. One
function (:func:`score`) scores every forecaster's test forecasts: MASE scaled as in
``dl.forecast.evaluate`` (the training part's in-sample seasonal naive MAE, dl's season),
RMSE, sMAPE and, for quantile forecasts, the coverage of the outer central interval and the
mean pinball loss over the levels. Wall time is the whole command's (imports included), one
run at a time; every ``dl forecast`` starts from an empty compilation cache
(``DL_JAX_CACHE_DIR``), so it is the time of a first run. With ``--quantiles`` the default
``dl forecast`` (point forecasts, the MSE model) comes first, then the point forecasts of
each ``--dl-point-also`` (e.g. ``--dl-point-also='--relative window'``), then every
``dl forecast`` row with ``--quantiles`` too (a pinball-trained model, or with
``--dl-also='--likelihood gaussian'`` a Gaussian one), and its ``model_q<level>`` columns of
``test_forecasts.csv`` are scored, as are the baselines' residual quantiles
(``naive_q<level>``, ``seasonal_naive_q<level>``); a ``dl forecast``
without ``--quantiles`` is said so in the table.

Install darts in its own environment (not ``dl``'s)::

    python3 -m venv ~/darts-venv
    ~/darts-venv/bin/pip install torch==2.13.0   # the CPU build, as dl's
    ~/darts-venv/bin/pip install darts pytorch-lightning

Usage: ``python benchmarks/forecast_vs_darts.py --darts-python ~/darts-venv/bin/python
[--series sunspots,co2,macrodata] [--quantiles 0.1,0.5,0.9] [--dl-also=--select]
[--dl-point-also='--relative window'] [--timeout 1800]
[--out DIR]``;
writes ``--out/SERIES/result.json`` and prints a Markdown table; ``--report`` prints the table
of the series' earlier results in ``--out`` without running anything (to run the series one
at a time).
"""

import argparse
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dl.cli.options import list_of, positive_int
from dl.data.series import load_series
from dl.metrics import mase, rmse, smape

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
TUNED = {"hidden_dim": 32, "n_epochs": 200, "optimizer_kwargs": {"lr": 0.01}}
TUNED_TRAINER = {"gradient_clip_val": 1.0}  # dl's --clip 1
PATIENCE = 20  # dl's --patience


def darts_runs(window, horizon, quantiles):
    """``(label, spec fields)`` of every darts model the benchmark trains."""
    rnn = {"model": "LSTM", "input_chunk_length": window}
    if window >= 24:  # RNNModel's default training_length must exceed the window
        rnn["training_length"] = window + horizon
    block = {"model": "LSTM", "input_chunk_length": window, "output_chunk_length": horizon}
    tuned = {**TUNED, "pl_trainer_kwargs": TUNED_TRAINER}
    runs = []
    for name, kwargs in (("RNNModel", rnn), ("BlockRNNModel", block)):
        runs.append((f"darts {name} LSTM, defaults", name, kwargs, None, None))
        runs.append(
            (f"darts {name} LSTM, dl's settings", name, {**kwargs, **tuned}, PATIENCE, None)
        )
        if quantiles:
            label = f"darts {name} LSTM, dl's settings, QuantileRegression"
            runs.append((label, name, {**kwargs, **tuned}, PATIENCE, quantiles))
    return runs


def score(truth, forecast, y_train, period, quantiles=None):
    """MASE, RMSE, sMAPE of ``forecast: (N, h)`` against ``truth: (N, h)``; with
    ``quantiles`` (level -> (N, h)), the outer interval's coverage and the mean pinball loss."""
    scores = {
        "mase": mase(truth, forecast, y_train, period),
        "rmse": rmse(truth, forecast),
        "smape": smape(truth, forecast),
        "coverage": None,
        "pinball": None,
    }
    if quantiles:
        low, high = quantiles[min(quantiles)], quantiles[max(quantiles)]
        scores["coverage"] = float(np.mean((truth >= low) & (truth <= high)))
        scores["pinball"] = float(
            np.mean(
                [
                    np.mean(np.maximum(q * (truth - pred), (q - 1) * (truth - pred)))
                    for q, pred in quantiles.items()
                ]
            )
        )
    return scores


def read_forecasts(path, horizon):
    """``{column: (N, horizon)}`` of a long forecast CSV (rows by origin, then step)."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c not in ("origin", "step", "time")]
    return {c: np.array([float(r[c]) for r in rows]).reshape(-1, horizon) for c in columns}


def quantile_columns(forecasts, name="model"):
    """``{level: (N, h)}`` of the ``<name>_q<level>`` columns, or None."""
    prefix = f"{name}_q"
    found = {float(c[len(prefix) :]): v for c, v in forecasts.items() if c.startswith(prefix)}
    return found or None


def timed(command, timeout, env=None):
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{done.stderr[-3000:]}")
    return done.stdout, seconds


def dl_supports_quantiles(env):
    command = [sys.executable, "-m", "dl", "forecast", "--help"]
    return "--quantiles" in subprocess.run(command, capture_output=True, text=True, env=env).stdout


def run_dl(name, options, run_dir, args, env, quantiles):
    """``dl forecast --series NAME OPTIONS`` in ``run_dir``: (its row, metrics.json, forecasts)."""
    command = [sys.executable, "-m", "dl", "forecast", "--series", name, "--out", run_dir]
    command += ["--force", *args.dl_args]
    dl_quantiles = quantiles and dl_supports_quantiles(env)
    if dl_quantiles:
        options = [*options, "--quantiles", ",".join(f"{q:g}" for q in quantiles)]
    command += options
    cache = run_dir.with_name(f"{run_dir.name}-jax-cache")  # empty: every dl row compiles
    shutil.rmtree(cache, ignore_errors=True)
    _, seconds = timed(command, args.timeout, {**env, "DL_JAX_CACHE_DIR": str(cache)})
    metrics = json.loads((run_dir / "metrics.json").read_text())
    forecasts = read_forecasts(run_dir / "test_forecasts.csv", metrics["horizon"])
    cell = f"{metrics['model']['cell']} {metrics['model']['num_hiddens']}"
    row = {
        "forecaster": " ".join(["dl forecast", *options, f"({cell}, {metrics['backend']})"]),
        "quantiles": quantile_columns(forecasts),
        "wall_s": seconds,
        "fit_s": metrics["training"]["seconds"],
        "intervals": "yes" if dl_quantiles else "no --quantiles in this dl forecast",
    }
    return row, metrics, forecasts


def run_series(name, args, env, quantiles):
    out = args.out / name
    series = load_series(name)
    digest = hashlib.sha256(np.ascontiguousarray(series.values).tobytes()).hexdigest()
    rows, setting = [], None
    runs = [([], quantiles), *((extra.split(), quantiles) for extra in args.dl_also)]
    if quantiles:  # the default point forecast (the MSE model) too
        runs.insert(0, ([], None))
    runs[1:1] = [(extra.split(), None) for extra in args.dl_point_also]
    for i, (options, levels) in enumerate(runs):
        row, metrics, ours = run_dl(name, options, out / f"dl{i or ''}", args, env, levels)
        assert digest == metrics["series"]["sha256"], "dl forecast read other values"
        keys = ("parts", "horizon", "window", "period")
        if setting is None:
            setting = {key: metrics[key] for key in keys}
            parts, h, window, period = setting.values()
            truth = ours["truth"]
            y_train = series.target_values[: parts["train"]]
        assert setting == {key: metrics[key] for key in keys}, f"{options} changed the split"
        scores = score(truth, ours["model"], y_train, period, row.pop("quantiles"))
        rows.append({"forecaster": row.pop("forecaster"), **scores, **row})
    for baseline in ("seasonal_naive", "naive"):  # with residual quantiles, if dl gave them
        spread = quantile_columns(ours, baseline)
        rows.append(
            {
                "forecaster": baseline.replace("_", " ")
                + (", residual quantiles" if spread else ""),
                **score(truth, ours[baseline], y_train, period, spread),
            }
        )
    setting.update(origins=len(truth), columns=list(series.names))

    def save():  # after every row: an interrupted run keeps what it measured
        result = {"series": name, **setting, "rows": rows}
        (out / "result.json").write_text(json.dumps(result, indent=2))
        return result

    save()
    data_csv = out / "series.csv"
    with open(data_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(series.names)
        writer.writerows(series.values.tolist())
    for label, model, kwargs, patience, levels in darts_runs(window, h, quantiles):
        slug = label.replace(" ", "_").replace(",", "").replace("'", "")
        spec = {
            "csv": str(data_csv),
            "target": series.target_name,
            "covariates": [c for c in series.names if c != series.target_name],
            "n_train": parts["train"],
            "n_val": parts["val"],
            "window": window,
            "horizon": h,
            "model": model,
            "kwargs": kwargs,
            "early_stopping": patience,
            "quantiles": levels,
            "seed": 0,
        }
        spec_path, result_path = out / f"{slug}.json", out / f"{slug}.csv"
        spec_path.write_text(json.dumps(spec, indent=2))
        command = [args.darts_python, HERE / "darts_forecast.py", spec_path, result_path]
        try:
            stdout, seconds = timed(command, args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{name}: {label}: timed out after {args.timeout} s", flush=True)
            rows.append({"forecaster": label, "error": f"timed out after {args.timeout} s"})
            save()
            continue
        except RuntimeError as err:
            print(f"{name}: {label}: {err}", file=sys.stderr)
            rows.append({"forecaster": label, "error": str(err).splitlines()[0]})
            save()
            continue
        theirs = read_forecasts(result_path, h)
        assert theirs["model"].shape == truth.shape, f"{label}: other origins than dl's"
        rows.append(
            {
                "forecaster": label,
                **score(truth, theirs["model"], y_train, period, quantile_columns(theirs)),
                "wall_s": seconds,
                "fit_s": json.loads(stdout.strip().splitlines()[-1])["fit_seconds"],
            }
        )
        print(f"{name}: {label}: MASE {rows[-1]['mase']:.3f}, {seconds:.0f} s", flush=True)
        save()
    return save()


def table(results):
    fmt = lambda v, spec: "-" if v is None else format(v, spec)
    lines = [
        "| series | forecaster | MASE | RMSE | sMAPE % | outer interval coverage | pinball "
        "| wall s | fit s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        for row in result["rows"]:
            if "error" in row:
                lines.append(f"| {result['series']} | {row['forecaster']} | {row['error']} |||||||")
                continue
            coverage = fmt(row["coverage"], ".2f")
            if row.get("intervals", "yes") != "yes":
                coverage = row["intervals"]
            lines.append(
                f"| {result['series']} | {row['forecaster']} | {row['mase']:.3f} | "
                f"{row['rmse']:.4g} | {row['smape']:.2f} | {coverage} | "
                f"{fmt(row['pinball'], '.4g')} | {fmt(row.get('wall_s'), '.0f')} | "
                f"{fmt(row.get('fit_s'), '.1f')} |"
            )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--darts-python", required=True, help="the Python of darts' environment")
    parser.add_argument("--series", type=list_of(str), default=["sunspots", "co2", "macrodata"])
    parser.add_argument("--quantiles", type=list_of(float), default=None)
    parser.add_argument("--timeout", type=positive_int, default=1800, help="seconds a command")
    parser.add_argument("--out", type=Path, default=Path("runs/forecast-vs-darts"))
    parser.add_argument(
        "--dl-also",
        action="append",
        default=[],
        metavar="OPTIONS",
        help="one more dl row with these `dl forecast` options, e.g. --dl-also=--select",
    )
    parser.add_argument(
        "--dl-point-also",
        action="append",
        default=[],
        metavar="OPTIONS",
        help="one more dl row of point forecasts (without --quantiles) with these options",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="print the table of earlier runs in --out, run nothing",
    )
    parser.add_argument("dl_args", nargs="*", help="more `dl forecast` options, after --")
    args = parser.parse_args()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    results = []
    for name in args.series:
        if not args.report:
            run_series(name, args, env, args.quantiles)
        results.append(json.loads((args.out / name / "result.json").read_text()))
    print(table(results))


if __name__ == "__main__":
    main()
