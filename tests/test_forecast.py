"""dl.forecast (NumPy only: a scripted backend drives the loop) and the `dl forecast` command."""

import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dl import checkpoint, intervals, lm, reference
from dl import forecast as fc
from dl.baselines import SeasonalNaiveForecaster
from dl.cli import main
from dl.data.series import Scaler, Series, SeriesError, make_windows

# ---------------------------------------------------------------- model


def test_config_shapes_and_round_trip():
    config = fc.ForecastConfig("gru", num_inputs=3, num_hiddens=5, num_layers=2, num_outputs=4)
    shapes = config.param_shapes()
    assert shapes["layer1.W_xz"] == (3, 5) and shapes["layer2.W_xz"] == (5, 5)
    assert shapes["W_hq"] == (5, 4) and shapes["b_q"] == (4,)
    assert fc.ForecastConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="num_outputs"):
        fc.ForecastConfig(num_outputs=0)
    with pytest.raises(ValueError, match="cell"):
        fc.ForecastConfig(cell="transformer")


@pytest.mark.parametrize("cell", lm.CELLS)
def test_forward_is_the_reference_cell_read_at_the_last_step(cell):
    config = fc.ForecastConfig(cell, num_inputs=2, num_hiddens=6, num_outputs=3)
    params = {k: v.astype(np.float64) for k, v in lm.init_params(config, 1, scale=0.5).items()}
    X = np.random.default_rng(0).standard_normal((4, 7, 2))  # (B, W, D)
    state = reference.init_state(cell, 4, 6)
    Y, _, _ = reference.forward(cell, params, X.transpose(1, 0, 2), state)
    out = fc.forecast_forward(lm.NUMPY_OPS, params, X, config)
    assert out.shape == (4, 3)
    np.testing.assert_allclose(out, Y[-4:], rtol=1e-12, atol=1e-12)


def test_every_window_starts_from_the_zero_state():
    config = fc.ForecastConfig(num_hiddens=4, num_layers=2, num_outputs=2)
    params = lm.init_params(config, 0, scale=0.5)
    X = np.random.default_rng(1).standard_normal((5, 6, 1)).astype(np.float32)
    together = fc.forecast_forward(lm.NUMPY_OPS, params, X, config)
    alone = np.concatenate(
        [fc.forecast_forward(lm.NUMPY_OPS, params, X[i : i + 1], config) for i in range(5)]
    )
    np.testing.assert_allclose(together, alone, rtol=1e-6)


def relative_pair(relative, num_leads=0, **levels):
    """A model with ``relative`` and its ``none`` twin of the same weights, 3 inputs (the
    target second, ``num_leads`` leads last)."""
    config = fc.ForecastConfig(
        num_inputs=3, num_hiddens=5, num_outputs=2, target=1, num_leads=num_leads, **levels
    )
    params = {k: v.astype(np.float64) for k, v in lm.init_params(config, 2, scale=0.5).items()}
    return dataclasses.replace(config, relative=relative), config, params


HEADS = [
    {},
    {"quantiles": (0.1, 0.5, 0.9)},
    {"quantiles": (0.1, 0.5, 0.9), "quantile_head": "independent"},
    {"likelihood": "gaussian"},
]


def quantiles_of(outputs, config):
    if config.quantiles:
        return intervals.quantile_forecasts(outputs, config)
    return outputs[..., None]


@pytest.mark.parametrize("head", HEADS, ids=["point", "offsets", "independent", "gaussian"])
def test_a_target_relative_model_adds_the_windows_last_target_value(head):
    config, twin, params = relative_pair("target", **head)
    X = np.random.default_rng(3).standard_normal((4, 6, 3))
    level = X[:, -1, 1][:, None, None]
    ours = quantiles_of(fc.forecast_forward(lm.NUMPY_OPS, params, X, config), config)
    theirs = quantiles_of(fc.forecast_forward(lm.NUMPY_OPS, params, X, twin), twin)
    np.testing.assert_allclose(ours, theirs + level, rtol=1e-12, atol=1e-12)
    untrained = {**params, "W_hq": 0 * params["W_hq"], "b_q": 0 * params["b_q"]}
    if not config.quantiles:  # zero output weights: the naive forecast
        naive = fc.forecast_forward(lm.NUMPY_OPS, untrained, X, config)
        np.testing.assert_allclose(naive, np.repeat(X[:, -1, 1:2], 2, axis=1))


@pytest.mark.parametrize("head", HEADS, ids=["point", "offsets", "independent", "gaussian"])
def test_a_window_relative_model_sees_the_shape_of_the_past_and_every_lead(head):
    config, twin, params = relative_pair("window", num_leads=1, **head)
    X = np.random.default_rng(4).standard_normal((4, 6, 3))
    shift = np.array([5.0, -3.0, 0.0])  # the past inputs move, the lead does not
    forecast = lambda X: quantiles_of(fc.forecast_forward(lm.NUMPY_OPS, params, X, config), config)
    np.testing.assert_allclose(forecast(X + shift), forecast(X) - 3.0, rtol=1e-9, atol=1e-9)
    lead_moved = X + np.array([0.0, 0.0, 1.0])
    assert not np.allclose(forecast(lead_moved), forecast(X))
    relative = X.copy()
    relative[:, :, :2] -= X[:, -1:, :2]
    expected = quantiles_of(fc.forecast_forward(lm.NUMPY_OPS, params, relative, twin), twin)
    np.testing.assert_allclose(forecast(X), expected + X[:, -1, 1][:, None, None], atol=1e-12)


def test_relative_settings_are_checked_and_old_checkpoints_read_as_none():
    with pytest.raises(ValueError, match="relative must be one of none, target, window"):
        fc.ForecastConfig(relative="last")
    with pytest.raises(ValueError, match="target must be a past input column, 0..1 of 3"):
        fc.ForecastConfig(num_inputs=3, num_leads=1, target=2)
    with pytest.raises(ValueError, match="num_leads"):
        fc.ForecastConfig(num_leads=-1)
    written_before = {k: v for k, v in fc.ForecastConfig().to_dict().items()}
    for name in ("relative", "target", "num_leads"):
        del written_before[name]
    assert fc.ForecastConfig.from_dict(written_before).relative == "none"


# ---------------------------------------------------------------- the training loop


class Scripted:
    """A Backend whose training losses and validation predictions follow a script."""

    def __init__(self, config=None, params=None, val_errors=(), train_loss=0.5):
        self.config, self.params = config, {"w": np.zeros(1, np.float32)}
        self.val_errors, self.train_loss = list(val_errors), train_loss
        self.batches, self.seeds = [], []

    def make_step(self, optimizer, clip):
        def step(X, Y):
            self.batches.append(X[:, 0, 0].copy())
            self.params["w"] = self.params["w"] + 1  # one more step taken
            return self.train_loss

        return step

    def predict(self, X):
        error = self.val_errors.pop(0) if self.val_errors else 1.0
        return np.full((len(X), 1), error, np.float32)  # val Y is 0: MSE = error ** 2

    def numpy_params(self):
        return {k: v.copy() for k, v in self.params.items()}

    def load(self, params):
        self.params = {k: np.array(v) for k, v in params.items()}

    def reseed(self, seed):
        self.seeds.append(seed)


def windows(n, q=1):
    X = np.arange(n, dtype=np.float32).reshape(n, 1, 1)
    return X, np.zeros((n, q), np.float32)


def test_fit_stops_after_patience_and_restores_the_best_epoch():
    model = Scripted(val_errors=[3, 2, 1, 2, 3, 4, 5])
    settings = fc.FitSettings(epochs=50, batch_size=4, patience=3)
    result = fc.fit(model, windows(10), windows(3), settings)
    assert [r["val_loss"] for r in result.history] == [9, 4, 1, 4, 9, 16]
    assert (result.best_epoch, result.best_loss, result.stopped_early) == (3, 1.0, True)
    assert model.params["w"][0] == 3 * 2  # the weights after epoch 3: 2 batches of 4 per epoch
    assert [r["train_loss"] for r in result.history] == [0.5] * 6


def test_fit_shuffles_reproducibly_in_batches_of_one_shape():
    runs = []
    for _ in range(2):
        model = Scripted()
        fc.fit(model, windows(10), None, fc.FitSettings(epochs=3, batch_size=4, seed=7))
        runs.append((np.stack(model.batches), model.seeds))
    (batches, seeds), (again, seeds_again) = runs
    assert batches.shape == (6, 4)  # 10 windows: two batches of 4 per epoch, 2 sit out
    np.testing.assert_array_equal(batches, again)
    assert seeds == seeds_again and len(set(seeds)) == 3
    for epoch in batches.reshape(3, 8):
        assert len(set(epoch.tolist())) == 8
    assert not np.array_equal(batches[:2], batches[2:4])  # a new order every epoch


def test_fewer_windows_than_a_batch_train_as_one_batch():
    model = Scripted()
    fc.fit(model, windows(3), None, fc.FitSettings(epochs=2, batch_size=32))
    assert [len(b) for b in model.batches] == [3, 3]


@pytest.mark.parametrize("where", ["train", "val"])
def test_a_nan_loss_stops_training_with_advice(where):
    model = Scripted(
        train_loss=math.nan if where == "train" else 0.5,
        val_errors=[1, math.nan] if where == "val" else [],
    )
    with pytest.raises(fc.ForecastDivergedError, match=r"smaller learning rate \(lr=0.05 now"):
        fc.fit(model, windows(8), windows(2), fc.FitSettings(lr=0.05))
    assert issubclass(fc.ForecastDivergedError, ValueError)


# ---------------------------------------------------------------- data and evaluation


def line(T=60, D=1):
    """y = t (and extra columns 2t): linear extrapolation forecasts it exactly."""
    t = np.arange(T, dtype=np.float64)
    return Series(
        np.stack([t * (j + 1) for j in range(D)], axis=1),
        tuple(f"c{j}" for j in range(D)),
        source="a line",
    )


def extrapolate(horizon):
    """Scaled (N, W, D) -> (N, horizon): continue the target's last slope."""

    def predict(X):
        last, slope = X[:, -1, 0], X[:, -1, 0] - X[:, -2, 0]
        return last[:, None] + slope[:, None] * np.arange(1, horizon + 1)

    return predict


def test_prepare_scales_by_the_training_part_and_makes_every_validation_value_a_target():
    data = fc.prepare(line(100), window=5, horizon=3, val_fraction=0.1, test_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (70, 10, 20)
    np.testing.assert_allclose(data.scaler.mean, [34.5])
    X, Y = data.train_windows
    assert X.shape == (70 - 5 - 3 + 1, 5, 1) and Y.shape == (63, 3)
    X_val, Y_val = data.val_windows
    assert data.scaler.inverse_transform(Y_val[:, 0], column=0)[[0, -1]].tolist() == [70, 77]
    assert (data.period, data.period_source) == (1, "none found")
    ar = fc.prepare(line(100), window=5, horizon=3, mode="autoregressive")
    assert ar.train_windows[1].shape == (70 - 5, 1) and ar.num_outputs == 1


def test_prepare_refuses_what_cannot_work():
    with pytest.raises(SeriesError, match="fewer than window \\+ horizon = 50 \\+ 20"):
        fc.prepare(line(60), window=50, horizon=20)
    with pytest.raises(SeriesError, match="needs one column.*use mode direct"):
        fc.prepare(line(60, D=2), window=5, mode="autoregressive")
    with pytest.raises(ValueError, match="mode must be one of"):
        fc.prepare(line(60), window=5, mode="sideways")


def test_default_window_is_two_seasons_that_fit_the_parts():
    assert fc.default_window(dataclasses.replace(line(2000), period=52)) == 104
    assert fc.default_window(line(1000)) == 16
    assert fc.default_window(dataclasses.replace(line(300), period=52), horizon=4) == 30 - 4


@pytest.mark.parametrize("mode", fc.MODES)
def test_evaluate_scores_an_exact_forecast_and_the_baselines(mode):
    data = fc.prepare(line(100), window=5, horizon=3, mode=mode)
    evaluation = fc.evaluate(extrapolate(data.num_outputs), data)
    assert evaluation.truth.shape == (20 - 3 + 1, 3)
    np.testing.assert_allclose(evaluation.truth[0], [80, 81, 82])
    assert evaluation.scores["model"]["mae"] == pytest.approx(0, abs=1e-4)  # float32 inputs
    naive = evaluation.scores["naive"]
    assert naive["mae"] == pytest.approx(2.0) and naive["rmse"] == pytest.approx(math.sqrt(14 / 3))
    assert naive["mase"] == pytest.approx(2.0)  # the in-sample naive error of a line is 1
    assert evaluation.scores["mean"]["mae"] == pytest.approx(np.mean(evaluation.truth) - 34.5)
    assert evaluation.beats() is True and evaluation.mase_note is None


def test_evaluate_gives_the_seasonal_baseline_a_whole_season_of_history():
    t = np.arange(300)
    series = Series(np.sin(2 * np.pi * t / 12) + 0.01 * t, ("x",), period=12)
    data = fc.prepare(series, window=4, horizon=2)
    evaluation = fc.evaluate(lambda X: np.zeros((len(X), 2)), data)
    history = np.concatenate([data.history(), data.test])[:, 0]
    first = len(data.train) + len(data.val)
    expected = (
        SeasonalNaiveForecaster(2, period=12)
        .fit(data.train)
        .predict(history[None, first - 12 : first])
    )
    np.testing.assert_allclose(evaluation.forecasts["seasonal_naive"][0], expected[0], rtol=1e-6)


def test_mase_of_an_exactly_periodic_training_part_is_reported_undefined():
    series = Series(np.tile([1.0, 3.0, 2.0, 5.0], 30), ("x",), period=4)
    evaluation = fc.evaluate(lambda X: X[:, -4:-2, 0], fc.prepare(series, window=8, horizon=2))
    assert math.isnan(evaluation.scores["model"]["mase"]) and evaluation.beats() is None
    assert "repeats exactly every 4 steps" in evaluation.mase_note
    assert evaluation.scores["seasonal_naive"]["mae"] == 0


def test_forecast_future_continues_the_whole_series():
    data = fc.prepare(line(100), window=5, horizon=3, mode="autoregressive")
    np.testing.assert_allclose(fc.forecast_future(extrapolate(1), data), [100, 101, 102])


class Fitted(Scripted):
    """Validation error |H - 32| + 0.1: lowest at num_hiddens 32, whatever the lr."""

    def predict(self, X):
        return np.full((len(X), 1), abs(self.config.num_hiddens - 32) + 0.1, np.float32)


def test_select_picks_by_the_validation_part_without_looking_at_the_test_part():
    values = np.concatenate([np.sin(np.arange(80) / 3), np.full(20, np.nan)])  # test: NaN
    data = fc.prepare(Series(values, ("x",)), window=6, horizon=1, test_fraction=0.2)
    picked = fc.select(Fitted, data, fc.ForecastConfig(), fc.FitSettings(epochs=2))
    assert picked.config.num_hiddens == 32 and len(picked.trials) == 6
    assert picked.fit.best_loss == min(t["val_loss"] for t in picked.trials)
    assert [t["choice"] for t in picked.trials][:2] == [
        {"num_hiddens": 16, "lr": 0.003},
        {"num_hiddens": 16, "lr": 0.01},
    ]
    with pytest.raises(SeriesError, match="validation fraction > 0"):
        fc.select(Fitted, fc.prepare(line(100), 5, val_fraction=0), fc.ForecastConfig())
    with pytest.raises(ValueError, match="cannot search over \\['colour'\\]"):
        fc.select(Fitted, data, fc.ForecastConfig(), grid={"colour": (1, 2)})


def test_refit_trains_on_every_window_of_the_whole_series_for_the_given_epochs():
    data = fc.prepare(line(100), window=5, horizon=2, val_fraction=0.1, test_fraction=0.2)
    built = []

    def build(config, params):
        built.append(Scripted(config, params, train_loss=0.25))
        return built[-1]

    model, whole, result = fc.refit(
        build,
        data,
        fc.ForecastConfig(num_outputs=2),
        fc.FitSettings(epochs=200, batch_size=4, patience=1),
        7,
    )
    assert model is built[0] and len(whole.train) == 100 and len(whole.test) == 0
    assert whole.val_windows is None and whole.period == data.period
    scaler = Scaler.fit(line(100).values)  # the whole series' scaling
    assert whole.scaler.to_dict() == scaler.to_dict()
    X, Y = whole.train_windows
    want_X, want_Y = make_windows(scaler.transform(line(100).values), 5, 2, 0)
    np.testing.assert_array_equal(X, want_X)  # every window, to the series' last step
    np.testing.assert_array_equal(Y, want_Y)
    assert len(X) == 100 - 5 - 2 + 1
    # exactly 7 epochs; the last epoch's weights kept although its loss is no lower
    assert len(result.history) == 7 and (result.best_epoch, result.best_loss) == (7, 0.25)
    assert model.params["w"][0] == 7 * (len(X) // 4)  # 4 windows a batch, every epoch run


# ---------------------------------------------------------------- the command line


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `dl forecast ARGV` in this process."""
    status = main(["forecast", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def write_csv(path, rows, header="time,y"):
    path.write_text(header + "\n" + "".join(f"{row}\n" for row in rows))
    return path


def sine_rows(n=80):
    return [f"{t},{math.sin(t / 3):.6f}" for t in range(n)]


@pytest.mark.parametrize(
    "rows, argv, message",
    [
        (sine_rows(), ["--column", "z"], "no column 'z'; available columns: 'time', 'y'"),
        (
            sine_rows()[:5] + ["5,abc"] + sine_rows()[6:],
            ["--column", "y"],
            "column 'y' has 1 values that are not finite numbers, at rows 7: 'abc'",
        ),
        (
            sine_rows()[:5] + ["5,"] + sine_rows()[6:],
            ["--column", "y"],
            "1 missing values (empty or NaN) at rows 7; fill them, remove those rows, or pass "
            "--interpolate",
        ),
        (
            sine_rows(20),
            ["--column", "y", "--window", "24"],
            "20 time steps, fewer than window + horizon = 24 + 4",
        ),
        (
            [f"{t},5" for t in range(200)],
            ["--column", "y", "--window", "8"],
            "column 'y' is constant (5) over the training part, so MASE is undefined",
        ),
        (
            sine_rows(),
            ["--column", "y,time", "--mode", "autoregressive", "--window", "8"],
            "needs one column; the series has 2 (y, time); use --mode direct",
        ),
        (sine_rows(), [], "say which column to forecast with --column NAME"),
    ],
)
def test_bad_input_gives_one_line_and_status_2(tmp_path, capsys, rows, argv, message):
    csv = write_csv(tmp_path / "data.csv", rows)
    status, out, err = run(capsys, "--csv", csv, *argv, "--out", tmp_path / "run")
    assert status == 2
    assert err.startswith("dl: error: ") and err.count("\n") == 1
    assert message in err, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "needs a series: --series sine|sunspots|co2|macrodata, or --csv FILE --column NAME"),
        (["--column", "y"], "--column apply to a CSV file; give --csv FILE"),
        (
            ["--series", "sine", "--interpolate"],
            "--series sine is a built-in series; leave out --interpolate",
        ),
        (["--from", "nowhere"], "--from nowhere: no forecast checkpoint there"),
        (["--from", "nowhere", "--hidden", "8"], "leave out --hidden or train a new run"),
    ],
)
def test_bad_requests_give_status_2(capsys, argv, message):
    status, _, err = run(capsys, *argv)
    assert status == 2 and message in err and err.count("\n") == 1


def test_gaps_are_filled_when_asked(tmp_path, capsys):
    """--interpolate gets past the gap (to the next check: the window is too long)."""
    csv = write_csv(tmp_path / "gaps.csv", sine_rows(30)[:5] + ["5,"] + sine_rows(30)[6:])
    _, _, err = run(capsys, "--csv", csv, "--column", "y", "--interpolate", "--window", "40")
    assert "1 missing values interpolated: 30 time steps, fewer than window" in err


@pytest.mark.slow
def test_forecast_trains_writes_a_run_and_reuses_it(tmp_path, capsys):
    pytest.importorskip("torch")
    csv = write_csv(tmp_path / "sine.csv", sine_rows(200))
    out = tmp_path / "run"
    status, text, err = run(
        capsys,
        "--csv",
        csv,
        "--column",
        "y",
        "--time-column",
        "time",
        "--window",
        "12",
        "--horizon",
        "3",
        "--hidden",
        "8",
        "--epochs",
        "3",
        "--backend",
        "torch",
        "--out",
        out,
    )
    assert status == 0, err
    assert {p.name for p in out.iterdir()} == {
        "forecast.safetensors",
        "forecast.json",
        "metrics.json",
        "test_forecasts.csv",
        "forecast.png",
        ".dl.lock",  # the run's owner lock (released; the file stays, as flock's do)
    }
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["scores"]) == {"model", "naive", "seasonal_naive", "mean"}
    assert metrics["test_origins"] == 40 - 3 + 1 and len(metrics["forecast"]["values"]) == 3
    assert metrics["training"]["epochs_run"] == 3 and metrics["forecast"]["after"] == 199
    assert "lstm (direct)" in text and "forecast of the 3 steps after 199:" in text
    assert (out / "forecast.png").read_bytes()[:4] == b"\x89PNG"

    status, again, err = run(capsys, "--from", out, "--backend", "torch")
    assert status == 0, err
    table = lambda text: text[text.index("test scores") :]
    assert table(again) == table(text[: text.index("wrote")])

    status, _, err = run(capsys, "--csv", csv, "--column", "y", "--window", "12", "--out", out)
    assert status == 2 and "already holds a forecast" in err


def test_a_window_relative_model_forecasts_a_trend_past_its_training_range(tmp_path, capsys):
    pytest.importorskip("jax")
    rng = np.random.default_rng(0)
    rows = [f"{t},{t + 3 * math.sin(t / 2) + rng.normal():.4f}" for t in range(160)]
    csv = write_csv(tmp_path / "trend.csv", rows)
    small = ["--csv", csv, "--column", "y", "--window", "8", "--hidden", "8", "--epochs", "5"]
    scores = {}
    for relative in ("none", "window"):
        out = tmp_path / relative
        status, text, err = run(capsys, *small, "--relative", relative, "--out", out)
        assert status == 0, err
        _, meta = checkpoint.load(out, "forecast")
        assert meta["model"]["relative"] == relative
        scores[relative] = json.loads((out / "metrics.json").read_text())["scores"]["model"]
    # the test part (values 128-160) lies above the training part's (0-112): a model of the
    # scaled values cannot reach it, one of the window's shape forecasts from where it is
    assert scores["window"]["mase"] < 1 < 4 < scores["none"]["mase"]
    status, again, err = run(capsys, "--from", out)
    assert status == 0, err
    assert again[again.index("test scores") :].split("wrote")[0] in text
    status, _, err = run(capsys, "--from", out, "--relative", "none")
    assert status == 2 and "--relative" in err


def test_a_device_the_backend_lacks_is_refused_before_anything_is_printed(tmp_path, capsys):
    jax = pytest.importorskip("jax")
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("JAX sees a GPU here")
    csv = write_csv(tmp_path / "sine.csv", sine_rows(100))
    out = tmp_path / "run"
    argv = ["--csv", csv, "--column", "y", "--backend", "jax", "--device", "gpu", "--out", out]
    status, text, err = run(capsys, *argv)
    assert status == 2 and text == "" and not out.exists()
    assert err == "dl: error: device 'gpu': JAX sees 0 GPU(s) here; use --device cpu\n"


class Persistence(Scripted):
    """A NumPy forecaster for the command line's flow: the last input value, offset by
    |hidden - 32| / 100 (so --select picks 32); its weight counts steps. The model built as
    number ``diverge_at`` (if any) gets a NaN training loss."""

    diverge_at = None
    built = []

    def __init__(self, config, params):
        Persistence.built.append(self)
        diverges = len(Persistence.built) == Persistence.diverge_at
        super().__init__(config, params, train_loss=math.nan if diverges else 0.5)
        self.device_name = "np"

    def predict(self, X):
        offset = abs(self.config.num_hiddens - 32) / 100
        return np.repeat(X[:, -1, :1], self.config.num_outputs, axis=1) + offset


@pytest.fixture
def persistence(monkeypatch):
    from dl.cli import forecast as cli_forecast

    monkeypatch.setattr(Persistence, "built", [])
    monkeypatch.setattr(cli_forecast, "builder", lambda backend, device: Persistence)
    return Persistence


def test_select_then_refit_retrains_the_picked_model_for_its_best_epochs(
    tmp_path, capsys, persistence
):
    csv = write_csv(tmp_path / "sine.csv", sine_rows(200))
    status, text, err = run(
        capsys,
        "--csv",
        csv,
        "--column",
        "y",
        "--window",
        "12",
        "--horizon",
        "3",
        "--epochs",
        "30",
        "--patience",
        "4",
        "--select",
        "--refit",
        "--out",
        tmp_path / "run",
    )
    assert status == 0, err
    refit = persistence.built[-1]  # built after the trials (hidden 16, 32, 64 x lr)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"]["num_hiddens"] == 32 == refit.config.num_hiddens
    best = metrics["training"]["best_epoch"]
    assert metrics["refit"]["epochs"] == best and metrics["refit"]["windows"] == 186
    assert refit.params["w"][0] == best * (186 // 32)  # trained that many epochs, all windows
    params, meta = checkpoint.load(tmp_path / "run", "forecast")
    assert params["w"][0] == refit.params["w"][0] and meta["refit"]["epochs"] == best


def test_test_forecasts_csv_holds_every_origin_and_scores_as_metrics_json(
    tmp_path, capsys, persistence
):
    """test_forecasts.csv: one row per test origin and step, the truth, the model's and each
    baseline's forecast; MASE recomputed from it is metrics.json's."""
    import csv as csv_module

    from dl.metrics import mase

    path = write_csv(
        tmp_path / "sine.csv", [f"{1000 + t},{math.sin(t / 3):.6f}" for t in range(200)]
    )
    out = tmp_path / "run"
    argv = ["--csv", path, "--column", "y", "--time-column", "time", "--window", "12"]
    status, _, err = run(capsys, *argv, "--horizon", "3", "--epochs", "2", "--out", out)
    assert status == 0, err
    with open(out / "test_forecasts.csv", newline="") as f:
        rows = list(csv_module.DictReader(f))
    assert list(rows[0]) == [
        "origin",
        "step",
        "time",
        "truth",
        "model",
        "naive",
        "seasonal_naive",
        "mean",
    ]
    values = [float(f"{math.sin(t / 3):.6f}") for t in range(200)]
    first = 200 - 40  # train 140, validation 20, test 40
    assert len(rows) == (40 - 3 + 1) * 3 and rows[-1]["origin"] == "37" and rows[-1]["step"] == "3"
    for row in rows:
        index = first + int(row["origin"]) + int(row["step"]) - 1
        assert int(row["time"]) == 1000 + index
        assert float(row["truth"]) == pytest.approx(values[index], abs=1e-6)
        last_seen = values[first + int(row["origin"]) - 1]  # persistence and naive: the last value
        assert float(row["model"]) == pytest.approx(last_seen, abs=1e-5)
        assert float(row["naive"]) == pytest.approx(last_seen, abs=1e-6)
    metrics = json.loads((out / "metrics.json").read_text())
    truth = np.array([float(r["truth"]) for r in rows])
    train = np.array(values[:140])
    for name in ("model", "seasonal_naive", "mean"):
        pred = np.array([float(r[name]) for r in rows])
        assert mase(truth, pred, train, metrics["period"]) == pytest.approx(
            metrics["scores"][name]["mase"], rel=1e-9
        )


@pytest.mark.parametrize(
    "argv, windows",
    [(["--mode", "autoregressive"], 200 - 12 - 1 + 1), (["--val-fraction", "0"], 200 - 12 - 3 + 1)],
)
def test_refit_in_autoregressive_mode_and_without_a_validation_part(
    tmp_path, capsys, persistence, argv, windows
):
    csv = write_csv(tmp_path / "sine.csv", sine_rows(200))
    status, text, err = run(
        capsys,
        "--csv",
        csv,
        "--column",
        "y",
        "--window",
        "12",
        "--horizon",
        "3",
        "--epochs",
        "30",
        "--patience",
        "4",
        *argv,
        "--refit",
        "--out",
        tmp_path / "run",
    )
    assert status == 0, err
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["refit"]["windows"] == windows and len(metrics["forecast"]["values"]) == 3
    best = metrics["training"]["best_epoch"]  # by the training loss without a validation part
    refit = persistence.built[-1]
    assert metrics["refit"]["epochs"] == best and refit.params["w"][0] == best * (windows // 32)


def test_a_diverging_refit_keeps_the_scored_run_and_says_so(
    tmp_path, capsys, persistence, monkeypatch
):
    monkeypatch.setattr(persistence, "diverge_at", 2)  # the model of the training part is 1
    csv = write_csv(tmp_path / "sine.csv", sine_rows(200))
    status, text, err = run(
        capsys,
        "--csv",
        csv,
        "--column",
        "y",
        "--window",
        "12",
        "--horizon",
        "3",
        "--epochs",
        "5",
        "--refit",
        "--out",
        tmp_path / "r",
    )
    assert status == 2 and err.count("\n") == 1
    assert (
        "the refit on the whole series failed: training diverged in epoch 1: the train "
        "loss became nan"
    ) in err
    assert (
        f"{tmp_path / 'r'} holds the model of the training part, its scores and its forecast" in err
    )
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert "refit" not in metrics and "model" not in metrics["forecast"]
    _, meta = checkpoint.load(tmp_path / "r", "forecast")
    assert meta["refit"] is None


@pytest.mark.slow
def test_refit_forecasts_with_a_model_of_the_whole_series(tmp_path, capsys):
    pytest.importorskip("torch")
    csv = write_csv(tmp_path / "sine.csv", sine_rows(200))
    argv = [
        "--csv",
        csv,
        "--column",
        "y",
        "--window",
        "12",
        "--horizon",
        "3",
        "--hidden",
        "8",
        "--epochs",
        "4",
        "--backend",
        "torch",
    ]
    status, held_out, err = run(capsys, *argv, "--out", tmp_path / "held")
    assert status == 0, err
    status, text, err = run(capsys, *argv, "--refit", "--out", tmp_path / "refit")
    assert status == 0, err
    table = lambda text: text[text.index("test scores") : text.index("forecast ")]
    assert table(text) == table(held_out)  # scored by the model of the training part
    metrics = json.loads((tmp_path / "refit" / "metrics.json").read_text())
    best = metrics["training"]["best_epoch"]
    assert "forecast by the model of the training part of the 3 steps after 199:" in text
    assert f"refit a fresh model on all 200 steps (186 windows) for {best} epochs" in text
    assert metrics["refit"]["epochs"] == best and metrics["refit"]["steps"] == 200
    assert metrics["forecast"]["model"] == "refit on the whole series"
    held = json.loads((tmp_path / "held" / "metrics.json").read_text())
    assert metrics["forecast"]["values_of_model_of_training_part"] == held["forecast"]["values"]
    _, meta = checkpoint.load(tmp_path / "refit", "forecast")
    assert meta["refit"]["epochs"] == best
    assert (
        meta["scaler"] != json.loads((tmp_path / "held" / "forecast.json").read_text())["scaler"]
    )  # the whole series' scaling, not the training part's

    status, again, err = run(
        capsys, "--from", tmp_path / "refit", "--backend", "torch", "--out", tmp_path / "again"
    )
    assert status == 0, err
    assert (
        "was refit on the whole series, test part included: its test scores below are "
        "in-sample" in again
    )
    verdict = [line for line in again.splitlines() if "seasonal naive on test MASE" in line]
    assert len(verdict) == 1 and verdict[0].endswith(" (in-sample)"), again
    reused = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert reused["in_sample"] is True
    longer = write_csv(tmp_path / "longer.csv", sine_rows(230))  # new data since the refit
    status, later, err = run(
        capsys,
        "--from",
        tmp_path / "refit",
        "--backend",
        "torch",
        "--csv",
        longer,
        "--column",
        "y",
        "--time-column",
        "time",
    )
    assert status == 0, err
    assert (
        "was refit on " in later
        and "(200 steps, up to 199): the test part here may overlap what it trained on" in later
    )
    edited = write_csv(tmp_path / "sine.csv", sine_rows(199) + ["199,0.5"])  # same length
    status, later, err = run(
        capsys,
        "--from",
        tmp_path / "refit",
        "--backend",
        "torch",
        "--csv",
        edited,
        "--column",
        "y",
        "--time-column",
        "time",
    )
    assert status == 0 and "may overlap what it trained on" in later and "in-sample" not in later
    status, held_again, err = run(
        capsys, "--from", tmp_path / "held", "--backend", "torch", "--out", tmp_path / "held-again"
    )
    assert status == 0 and "in-sample" not in held_again
    assert json.loads((tmp_path / "held-again" / "metrics.json").read_text())["in_sample"] is False
    np.testing.assert_allclose(
        reused["forecast"]["values"], metrics["forecast"]["values"], rtol=1e-5
    )
    status, _, err = run(capsys, "--from", tmp_path / "refit", "--refit")
    assert status == 2 and "leave out --refit" in err


@pytest.mark.slow
def test_the_exercise_example_runs_on_sunspots_and_co2():
    pytest.importorskip("statsmodels")
    pytest.importorskip("jax")
    example = Path(__file__).resolve().parents[1] / "examples" / "forecast_lstm.py"
    result = subprocess.run(
        [sys.executable, str(example), "--epochs", "1"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines if not line.startswith(" ")] == ["sunspots", "co2"]
    assert sum(line.split()[0] == "seasonal_naive" for line in lines) == 2
    assert sum("seasonal naive on test MASE" in line for line in lines) == 2
