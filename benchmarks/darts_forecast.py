"""One darts model's test forecasts on a series cut as ``dl forecast`` cuts it (run by
``forecast_vs_darts.py`` with the Python of darts' own environment; needs only darts).

Usage: ``python darts_forecast.py SPEC.json OUT.csv``. SPEC (written by the benchmark):
``csv`` (a header line, one row per time step), ``target`` and ``covariates`` (column names),
``n_train`` and ``n_val`` (the parts before the test part), ``window``, ``horizon``, ``model``
(``RNNModel`` | ``BlockRNNModel``), ``kwargs`` (the model's arguments, as JSON),
``early_stopping`` (patience, or null), ``quantiles`` (levels for a ``QuantileRegression``
likelihood, or null), ``seed``.

Target and covariates are standardised as ``dl`` does (darts' ``Scaler`` around scikit-learn's
``StandardScaler``, fitted on the training part).
``RNNModel`` takes no past covariates, so with covariates it forecasts all the columns
jointly (a multivariate target) and is scored on ``target``; ``BlockRNNModel`` gets them as
``past_covariates``. Forecasts: ``historical_forecasts`` from the first test step, stride 1,
no retraining, every whole horizon, so the origins are ``dl forecast``'s. With
``early_stopping`` the model validates on the validation part (windows reaching back into the
training part, as ``dl``'s do) and the best epoch's weights are restored, as ``dl`` does.

Writes OUT.csv: ``origin, step, model`` and ``model_q<level>`` columns with quantiles (from
200 samples; the point forecast is then the median), and prints one JSON line with the fit
and forecast seconds.
"""

import csv
import json
import sys
import tempfile
import time

import numpy as np
from darts import TimeSeries
from darts.dataprocessing.transformers import Scaler
from darts.models import BlockRNNModel, RNNModel
from darts.utils.likelihood_models import QuantileRegression
from pytorch_lightning.callbacks import EarlyStopping
from sklearn.preprocessing import StandardScaler

MODELS = {"RNNModel": RNNModel, "BlockRNNModel": BlockRNNModel}
NUM_SAMPLES = 200  # samples drawn from a quantile model's forecast


def read_columns(path, names):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return np.array([[float(row[name]) for name in names] for row in rows])


def build(spec, work_dir):
    kwargs = dict(spec["kwargs"])
    kwargs.update(random_state=spec["seed"], work_dir=work_dir)
    trainer = dict(kwargs.pop("pl_trainer_kwargs", {}))
    trainer.update(accelerator="cpu", enable_progress_bar=False, enable_model_summary=False)
    if spec["early_stopping"]:
        trainer["callbacks"] = [
            EarlyStopping("val_loss", patience=spec["early_stopping"], mode="min")
        ]
        kwargs.update(save_checkpoints=True, force_reset=True, model_name="best")
    if spec["quantiles"]:
        kwargs["likelihood"] = QuantileRegression(quantiles=spec["quantiles"])
    return MODELS[spec["model"]](pl_trainer_kwargs=trainer, **kwargs)


def main(spec_path, out_path):
    spec = json.loads(open(spec_path).read())
    n_train, n_val, window = spec["n_train"], spec["n_val"], spec["window"]
    joint = spec["model"] == "RNNModel"  # no past covariates: the columns become the target
    target_names = [spec["target"]] + (spec["covariates"] if joint else [])
    target = TimeSeries.from_values(read_columns(spec["csv"], target_names).astype(np.float32))
    covariates = None
    if spec["covariates"] and not joint:
        values = read_columns(spec["csv"], spec["covariates"]).astype(np.float32)
        covariates = TimeSeries.from_values(values)
    target_scaler = Scaler(StandardScaler()).fit(target[:n_train])
    series = target_scaler.transform(target)
    if covariates is not None:
        covariates = Scaler(StandardScaler()).fit(covariates[:n_train]).transform(covariates)
    cov = {} if covariates is None else {"past_covariates": covariates}
    with tempfile.TemporaryDirectory() as work_dir:
        model = build(spec, work_dir)
        started = time.perf_counter()
        fit = {"series": series[:n_train], **cov}
        if spec["early_stopping"]:
            fit["val_series"] = series[n_train - window : n_train + n_val]
            if covariates is not None:
                fit["val_past_covariates"] = covariates
        model.fit(**fit)
        if spec["early_stopping"]:
            model = model.load_from_checkpoint("best", work_dir=work_dir, best=True)
        fit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        forecasts = model.historical_forecasts(
            series,
            **cov,
            start=n_train + n_val,
            start_format="position",
            forecast_horizon=spec["horizon"],
            stride=1,
            retrain=False,
            last_points_only=False,
            overlap_end=False,
            num_samples=NUM_SAMPLES if spec["quantiles"] else 1,
            verbose=False,
            show_warnings=False,
        )
        forecast_seconds = time.perf_counter() - started
    levels = spec["quantiles"] or []
    with open(out_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["origin", "step", "model", *(f"model_q{q:g}" for q in levels)])
        for origin, forecast in enumerate(forecasts):
            samples = target_scaler.inverse_transform(forecast).all_values()[:, 0, :]  # (h, S)
            point = np.median(samples, axis=1) if levels else samples[:, 0]
            quantiles = [np.quantile(samples, q, axis=1) for q in levels]
            for step in range(spec["horizon"]):
                writer.writerow(
                    [origin, step + 1, float(point[step]), *(float(q[step]) for q in quantiles)]
                )
    print(json.dumps({"fit_seconds": fit_seconds, "forecast_seconds": forecast_seconds}))


if __name__ == "__main__":
    main(*sys.argv[1:])
