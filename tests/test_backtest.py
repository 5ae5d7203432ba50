"""dl.backtest (NumPy only: scripted backends drive the refits) and `dl forecast --backtest`."""

import csv
import dataclasses
import json
import math
import os
import signal
import time

import numpy as np
import pytest
from test_forecast import Scripted

from dl import backtest as bt
from dl import checkpoint, intervals, panel
from dl import forecast as fc
from dl.baselines import BASELINES, SeasonalNaiveForecaster
from dl.cli import main, signals
from dl.data import covariates as cv
from dl.data.series import Scaler, Series

# ---------------------------------------------------------------- the plan


def line(T=100):
    """y = t: the exact forecast continues the slope."""
    return Series(np.arange(T, dtype=np.float64)[:, None], ("y",), source="a line")


def test_origins_are_spread_evenly_over_the_test_part_from_its_first_step():
    data = fc.prepare(line(), window=5, horizon=3)  # test part: steps 80..99, 18 origins
    assert bt.capacity(data) == 18
    assert bt.plan(data, 4).origins == (80, 86, 91, 97)  # 97 + 3 = 100: the last whole horizon
    assert bt.plan(data, 18).origins == tuple(range(80, 98))
    assert bt.plan(data, 1).origins == (80,)
    sliding = bt.plan(data, 4, "sliding", refit_every=3)
    assert sliding.length == 80 and sliding.history(91) == slice(11, 91)
    assert [sliding.refits_at(i) for i in range(4)] == [True, False, False, True]
    assert sliding.num_refits == 2 and bt.plan(data, 4).history(91) == slice(0, 91)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"num_origins": 19},
            "the test part's 20 steps hold 18 origins with horizon 3, fewer "
            "than the 19 asked for; ask for at most 18",
        ),
        ({"num_origins": 4, "refit_every": 5}, "refit_every 5 is more than the 4 origins; give 1"),
        ({"num_origins": 4, "kind": "rolling"}, "window kind must be one of expanding, sliding"),
    ],
)
def test_a_plan_that_does_not_fit_is_refused(kwargs, message):
    with pytest.raises(bt.BacktestError, match=message):
        bt.plan(fc.prepare(line(), window=5, horizon=3), **kwargs)


def test_without_a_test_part_there_is_nowhere_to_backtest():
    data = fc.prepare(line(), window=5, horizon=3, test_fraction=0)
    with pytest.raises(bt.BacktestError, match="no test part"):
        bt.plan(data, 1)


# ---------------------------------------------------------------- running it


class Slope(Scripted):
    """A Backend that continues the last slope of its (scaled) window; training counts steps
    (in ``params['w']``)."""

    device_name = "np"

    def predict(self, X):
        last, slope = X[:, -1, 0], X[:, -1, 0] - X[:, -2, 0]
        return last[:, None] + slope[:, None] * np.arange(1, self.config.num_outputs + 1)


def one_series(steps):
    """bt.run's origins of a backtest of one series."""
    origins = []
    for step in steps:
        assert len(step) == 1
        origins.append(step[0])
    return origins


@pytest.mark.parametrize("kind", bt.WINDOW_KINDS)
def test_each_refit_trains_on_the_steps_before_its_origin_only(kind, monkeypatch):
    data = fc.prepare(line(), window=5, horizon=3)
    seen, real_refit = [], panel.refit

    def refit(build, histories, *args):
        seen.extend(history.series.values[:, 0].copy() for history in histories)
        return real_refit(build, histories, *args)

    monkeypatch.setattr(panel, "refit", refit)
    plan = bt.plan(data, 4, kind, refit_every=2)
    config = fc.ForecastConfig(num_outputs=3)
    origins = one_series(bt.run(Slope, [data], config, fc.FitSettings(batch_size=4), plan, 3))
    start = lambda t: 0 if kind == "expanding" else t - 80
    assert [len(s) for s in seen] == [80, 91 - start(91)]  # refits at origins 1 and 3
    for history, t in zip(seen, (80, 91)):
        np.testing.assert_array_equal(history, np.arange(start(t), t))  # nothing from t on
    assert [o.fitted_on for o in origins] == [(0, 80), (0, 80), (start(91), 91), (start(91), 91)]
    assert [o.refit for o in origins] == [True, False, True, False]
    assert origins[1].seconds == 0 < origins[0].seconds
    for o in origins:  # the window before each origin, forecast exactly
        np.testing.assert_allclose(o.truth, np.arange(o.step, o.step + 3))
        np.testing.assert_allclose(o.forecasts["model"], o.truth, atol=1e-3)
        assert o.scores["model"]["mae"] == pytest.approx(0, abs=1e-3)


@pytest.mark.parametrize("mode, columns", [("autoregressive", 1), ("direct", 2)])
def test_a_backtest_forecasts_in_either_mode_and_with_covariates(mode, columns):
    t = np.arange(100, dtype=np.float64)
    series = Series(np.stack([t, np.cos(t)][:columns], axis=1), ("y", "x")[:columns])
    data = fc.prepare(series, window=5, horizon=3, mode=mode)
    config = fc.ForecastConfig(num_inputs=columns, num_outputs=data.num_outputs)
    for o in one_series(bt.run(Slope, [data], config, fc.FitSettings(), bt.plan(data, 3), 1)):
        np.testing.assert_allclose(o.forecasts["model"], np.arange(o.step, o.step + 3), atol=1e-3)


def test_every_baseline_forecasts_from_the_same_origins_fitted_on_the_same_steps():
    t = np.arange(200)
    values = np.sin(2 * np.pi * t / 12) + 0.01 * t
    data = fc.prepare(Series(values, ("x",), period=12), window=4, horizon=2)
    plan = bt.plan(data, 5, "expanding", refit_every=2)
    config = fc.ForecastConfig(num_outputs=2)
    origins = one_series(bt.run(Slope, [data], config, fc.FitSettings(batch_size=8), plan, 1))
    assert [o.step for o in origins] == list(plan.origins)
    for o in origins:
        assert set(o.forecasts) == {"model", *BASELINES} == set(o.scores)
        start, stop = o.fitted_on
        np.testing.assert_allclose(o.forecasts["naive"], values[o.step - 1], rtol=1e-6)
        season = values[o.step - 12 : o.step - 10]  # one season before each forecast step
        np.testing.assert_allclose(o.forecasts["seasonal_naive"], season, rtol=1e-6)
        np.testing.assert_allclose(o.forecasts["mean"], values[start:stop].mean(), rtol=1e-6)
        np.testing.assert_allclose(o.truth, values[o.step : o.step + 2])
        assert o.scores["naive"]["mae"] == pytest.approx(
            np.abs(o.truth - values[o.step - 1]).mean(), rel=1e-5
        )
        scale = np.abs(
            values[start + 12 : stop] - values[start : stop - 12]
        ).mean()  # MASE: the steps fitted on
        assert o.scores["mean"]["mase"] == pytest.approx(o.scores["mean"]["mae"] / scale)
    means = [o.forecasts["mean"][0] for o in origins]
    assert means[0] == means[1] != means[2] == means[3] != means[4]  # refit every 2nd origin


def test_summary_gives_mean_spread_and_range_over_the_origins():
    data = fc.prepare(line(), window=5, horizon=3)
    config = fc.ForecastConfig(num_outputs=3)
    origins = one_series(bt.run(Slope, [data], config, fc.FitSettings(), bt.plan(data, 6), 1))
    origins[2].scores["naive"]["mase"] = math.nan  # undefined at one origin
    summary = bt.summarize([o.scores for o in origins])
    for name in ("model", *BASELINES):
        for metric in bt.METRICS:
            v = np.array([o.scores[name][metric] for o in origins])
            v = v[np.isfinite(v)]
            stats = summary[name][metric]
            assert stats["mean"] == pytest.approx(v.mean())
            assert stats["std"] == pytest.approx(v.std(ddof=1))
            assert (stats["min"], stats["max"]) == (v.min(), v.max())
            assert stats["origins"] == len(v)
    assert summary["naive"]["mase"]["origins"] == 5
    assert bt.summarize([origins[0].scores])["naive"]["rmse"]["std"] is None


def two_series(n=200):
    """A seasonal series with a trend, and a line in other units, on one time axis."""
    t = np.arange(n, dtype=np.float64)
    values = np.stack([np.sin(2 * np.pi * t / 12) + 0.01 * t, 1000 + 3 * t], axis=1)
    return cv.split_targets(Series(values, ("a", "b"), period=12), 2)


def test_a_global_backtest_forecasts_every_series_and_baseline_from_the_same_origins(
    monkeypatch,
):
    series = two_series()
    datas = panel.prepare(series, 4, 2, "direct", 0.1, 0.2)
    plan = bt.plan(datas[0], 5, "sliding", refit_every=2)
    config, settings = fc.ForecastConfig(num_outputs=2), fc.FitSettings(batch_size=8)
    trained, real_train = [], fc.train

    def train(build, data, *args, **kwargs):
        trained.append(data.train_windows[0])
        return real_train(build, data, *args, **kwargs)

    monkeypatch.setattr(fc, "train", train)
    steps = list(bt.run(Slope, datas, config, settings, plan, 1))
    assert len(trained) == 3  # one global model per refit, not one per series
    alone = [one_series(bt.run(Slope, [d], config, settings, plan, 1)) for d in datas]
    assert len(trained) == 3 + 2 * 3
    for i, step in enumerate(steps):
        assert len(step) == 2
        assert {(o.index, o.step, o.refit, o.fitted_on) for o in step} == {
            (i, plan.origins[i], plan.refits_at(i), step[0].fitted_on)
        }
        for o, single in zip(step, (a[i] for a in alone)):  # each series' own backtest
            assert set(o.forecasts) == {"model", *BASELINES}
            for name in o.forecasts:
                np.testing.assert_allclose(o.forecasts[name], single.forecasts[name], rtol=1e-6)
                assert o.scores[name] == pytest.approx(single.scores[name], rel=1e-6)
        overall = bt.overall(step)
        for name in o.forecasts:
            assert set(overall[name]) == {"mase", "smape"}
            for metric in ("mase", "smape"):
                mean = np.mean([o.scores[name][metric] for o in step])
                assert overall[name][metric] == pytest.approx(mean)
    # the pooled windows of both series, cut at the origin: each series' refit windows
    start = plan.origins[2] - plan.length
    assert len(trained[1]) == 2 * (plan.length - 4 - 2 + 1)
    history = series[1].values[start : plan.origins[2]]
    scaled = fc.prepare(
        dataclasses.replace(series[1], values=history, time=None), 4, 2, "direct", 0, 0
    ).train_windows[0]
    np.testing.assert_allclose(trained[1][len(scaled) :], scaled)


class Spread(Slope):
    """A Slope with quantiles (the slope's forecast, 0.8 scaled units apart per 0.5 of
    level) or a Gaussian (mean the slope's forecast, raw scale 0: softplus 0.69)."""

    def predict(self, X):
        point = super().predict(X)
        if self.config.likelihood == "gaussian":
            return np.concatenate([point, np.zeros_like(point)], axis=1)
        return np.concatenate([point + 1.6 * (q - 0.5) for q in self.config.quantiles], axis=1)


@pytest.mark.parametrize("likelihood", [None, "gaussian"])
def test_interval_scores_at_each_origin_are_the_intervals_modules(likelihood):
    t = np.arange(200)
    values = (np.sin(2 * np.pi * t / 12) + 0.01 * t + 0.3 * np.cos(t * 1.7))[:, None]
    data = fc.prepare(Series(values, ("x",), period=12), window=4, horizon=2)
    levels = (0.05, 0.1, 0.5, 0.9, 0.95)
    config = fc.ForecastConfig(num_outputs=2, quantiles=levels, likelihood=likelihood)
    plan = bt.plan(data, 5, "sliding", refit_every=2)
    origins = one_series(bt.run(Spread, [data], config, fc.FitSettings(batch_size=8), plan, 1))
    for o in origins:
        train = values[slice(*o.fitted_on)]
        scaler = Scaler.fit(train)
        outputs = Spread(config, None).predict(scaler.transform(values[o.step - 4 : o.step])[None])
        model = scaler.inverse_transform(intervals.quantile_forecasts(outputs, config), column=0)
        np.testing.assert_allclose(o.quantiles["model"], model[0], atol=1e-5)
        np.testing.assert_allclose(o.forecasts["model"], model[0, :, 2], atol=1e-5)  # median
        residuals = np.stack([train[1:-1, 0], train[2:, 0]], axis=1) - train[:-2]  # naive's
        spread = np.quantile(residuals, levels, axis=0).T
        np.testing.assert_allclose(o.quantiles["naive"], values[o.step - 1] + spread, atol=1e-6)
        seasonal = intervals.residual_quantiles(
            SeasonalNaiveForecaster(2, 0, 12).fit(train), train, 12, levels
        )
        np.testing.assert_allclose(
            o.quantiles["seasonal_naive"], o.forecasts["seasonal_naive"][:, None] + seasonal
        )
        assert set(o.quantiles) == set(o.intervals) == {"model", "naive", "seasonal_naive"}
        scale = np.abs(train[12:, 0] - train[:-12, 0]).mean()  # MASE's, on the same steps
        for name, q in o.quantiles.items():
            expected = intervals.scores(o.truth[None], q[None], levels)
            assert o.intervals[name] == expected
            figures = o.scores[name]
            assert figures["pinball"] == expected["pinball"]
            assert figures["crps"] == expected["crps"]
            assert figures["scaled_crps"] == pytest.approx(expected["crps"] / scale)
            assert figures["scaled_pinball"] == pytest.approx(expected["pinball"] / scale)
            for key, interval in zip(("90", "80"), expected["intervals"]):
                assert figures[f"coverage_{key}"] == interval["coverage"]
                assert figures[f"width_{key}"] == interval["width"]
        assert "pinball" not in o.scores["mean"]  # no intervals for the mean baseline
    summary = bt.summarize([o.scores for o in origins])
    for name in ("model", "naive", "seasonal_naive"):
        for metric in ("pinball", "crps", "coverage_80", "scaled_crps"):
            v = [o.scores[name][metric] for o in origins]
            assert summary[name][metric]["mean"] == pytest.approx(np.mean(v))
            assert summary[name][metric]["std"] == pytest.approx(np.std(v, ddof=1))
    coverage = [o.scores["model"]["coverage_80"] for o in origins]
    assert len(set(coverage)) > 1  # origins differ: the test can tell them apart


# ---------------------------------------------------------------- the command line


class Recorder(Slope):
    """A Slope for the command line: remembers the largest |value| it trained or predicted on
    in each phase (``Recorder.phase``); the model built as number ``stop_at`` gets
    ``signal_to_send`` in its first step, number ``diverge_at`` a NaN loss."""

    built, seen, phase = [], {}, "training"
    stop_at, signal_to_send, diverge_at = None, None, None

    def __init__(self, config, params):
        super().__init__(config, params)
        Recorder.built.append(self)
        self.largest_trained = 0.0

    def note(self, X):
        Recorder.seen[Recorder.phase] = max(Recorder.seen.get(Recorder.phase, 0), np.abs(X).max())

    def make_step(self, optimizer, clip):
        inner = super().make_step(optimizer, clip)

        def step(X, Y):
            if len(Recorder.built) == Recorder.stop_at:
                os.kill(os.getpid(), Recorder.signal_to_send)
                time.sleep(5)  # the signal is raised here
            if len(Recorder.built) == Recorder.diverge_at:
                return math.nan
            self.note(X), self.note(Y)
            self.largest_trained = max(self.largest_trained, np.abs(X).max(), np.abs(Y).max())
            return inner(X, Y)

        return step

    def predict(self, X):
        self.note(X)
        return super().predict(X)


@pytest.fixture
def recorder(monkeypatch):
    from dl.cli import forecast as cli_forecast

    monkeypatch.setattr(Recorder, "built", [])
    monkeypatch.setattr(Recorder, "seen", {})
    monkeypatch.setattr(cli_forecast, "builder", lambda backend, device: Recorder)
    return Recorder


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `dl forecast ARGV` in this process; argparse's
    refusals give their status too, an interruption that escapes fails the test."""
    try:
        status = main(["forecast", *map(str, argv)])
    except SystemExit as exit:
        status = exit.code
    except KeyboardInterrupt as err:  # a failure of this test, not the end of the test run
        pytest.fail(f"{type(err).__name__} escaped dl forecast")
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def sine_csv(path, n=200, test_values=None):
    """A CSV of sin(t / 5) with a column x of covariates; ``test_values(t)`` replaces the
    values of the last 20% (the default test part)."""
    rows = []
    for t in range(n):
        y = math.sin(t / 5) if test_values is None or t < n * 0.8 else test_values(t)
        rows.append(f"{t},{y:.6f},{math.cos(t / 7):.6f}\n")
    path.write_text("t,y,x\n" + "".join(rows))
    return path


SMALL = ["--column", "y", "--window", "12", "--horizon", "3", "--epochs", "4", "--batch-size", "16"]


def test_a_backtest_writes_its_origins_and_summary(tmp_path, capsys, recorder):
    csv_path, out = sine_csv(tmp_path / "s.csv"), tmp_path / "run"
    argv = ["--csv", csv_path, *SMALL, "--time-column", "t", "--out", out]
    status, text, err = run(
        capsys, *argv, "--backtest", 4, "--refit-every", 2, "--backtest-window", "sliding"
    )
    assert status == 0, err
    record = json.loads((out / "backtest.json").read_text())
    assert (record["origins_planned"], record["origins_done"], record["stopped"]) == (4, 4, None)
    assert (record["window_kind"], record["train_length"], record["refit_every"]) == (
        "sliding",
        160,
        2,
    )
    best = json.loads((out / "metrics.json").read_text())["training"]["best_epoch"]
    assert record["refit_epochs"] == best
    per = record["per_origin"]
    assert [o["step"] for o in per] == [160, 172, 185, 197] == [o["time"] for o in per]
    assert [o["refit"] for o in per] == [True, False, True, False]
    assert [o["fitted_on_steps"] for o in per] == [[0, 160]] * 2 + [[25, 185]] * 2
    assert len(recorder.built) == 1 + 2  # the run's model, then one per refit
    for refit in recorder.built[1:]:  # fixed epochs: 148 windows of 160 steps, 9 batches of 16
        assert refit.params["w"][0] == best * (160 - 12 - 3 + 1) // 16
    assert set(record["summary"]) == {"model", *BASELINES}
    for name, stats in record["summary"].items():
        rmse = [o["scores"][name]["rmse"] for o in per]
        assert stats["rmse"]["mean"] == pytest.approx(np.mean(rmse))
        assert stats["rmse"]["std"] == pytest.approx(np.std(rmse, ddof=1))
    rows = list(csv.DictReader((out / "backtest.csv").open()))
    assert len(rows) == 4 * 4 and rows[0]["model"] == "model" and rows[0]["refit"] == "1"
    assert float(rows[0]["mase"]) == pytest.approx(per[0]["scores"]["model"]["mase"], rel=1e-5)
    assert (out / "backtest.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backtest"]["summary"] == record["summary"]
    assert (
        "backtest: 4 origins from 160 to 197; a fresh lstm refit every 2 origins (2 refits of"
        in text
    )
    assert "origin 1/4 (160): refit on 160 steps in " in text
    assert "origin 2/4 (172): with the models of origin 1; MASE lstm " in text
    assert "about" in text.split("origin 1/4")[1].splitlines()[0]  # the time still to go
    table = text[text.index("backtest over 4 origins") :].splitlines()
    assert table[1].split() == ["MASE", "RMSE", "sMAPE", "%"]
    assert [row.split()[0] for row in table[2:6]] == ["lstm", "naive", "seasonal", "mean"]

    status, _, err = run(capsys, "--csv", csv_path, *SMALL, "--out", out, "--force")
    assert status == 0 and not (out / "backtest.json").exists()  # not this run's any more


def test_a_global_backtest_reports_each_series_and_their_mean(tmp_path, capsys, recorder):
    """Two targets, the first jumping to 1000 and more in the test part: the first refit's
    model trains on neither series' test part, later refits do."""
    csv_path = sine_csv(tmp_path / "s.csv", test_values=lambda t: 1000.0 + t)
    out = tmp_path / "run"
    argv = ["--csv", csv_path, "--targets", "y,x", *SMALL[2:], "--time-column", "t"]
    status, text, err = run(capsys, *argv, "--backtest", 3, "--out", out)
    assert status == 0, err
    record = json.loads((out / "backtest.json").read_text())
    assert record["targets"] == ["y", "x"]
    per = record["per_origin"]
    assert [o["step"] for o in per] == [160, 179, 197]
    assert len(recorder.built) == 1 + 3  # the run's global model, then one per refit
    best = json.loads((out / "metrics.json").read_text())["training"]["best_epoch"]
    first, second, _ = recorder.built[1:]
    assert first.params["w"][0] == best * (2 * (160 - 12 - 3 + 1) // 16)  # both series' windows
    assert first.largest_trained < 2 < second.largest_trained  # |scaled sine, cosine| < 1.5
    rows = list(csv.DictReader((out / "backtest.csv").open()))
    assert len(rows) == 3 * (2 + 1) * 4  # origins x (series and their mean) x models
    for origin in per:
        for name in ("model", *BASELINES):
            by_series = [origin["series"][t]["scores"][name] for t in ("y", "x")]
            for metric in ("mase", "smape"):
                mean = np.mean([s[metric] for s in by_series])
                assert origin["scores"][name][metric] == pytest.approx(mean)
                (row,) = [
                    r
                    for r in rows
                    if r["origin"] == str(origin["origin"])
                    and r["series"] == "(mean)"
                    and r["model"] == name
                ]
                assert float(row[metric]) == pytest.approx(mean, rel=1e-5)
            assert row["rmse"] == ""  # not averaged over series in other units
    summary, by_series = record["summary"], record["summary_by_series"]
    assert set(by_series) == {"y", "x"}
    for name in ("model", *BASELINES):
        mase = [o["scores"][name]["mase"] for o in per]
        assert summary[name]["mase"]["mean"] == pytest.approx(np.mean(mase))
        assert summary[name]["mase"]["std"] == pytest.approx(np.std(mase, ddof=1))
        assert summary[name]["mase"]["mean"] == pytest.approx(
            np.mean([by_series[t][name]["mase"]["mean"] for t in ("y", "x")])
        )
        assert "rmse" not in summary[name] and "rmse" in by_series["y"][name]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["backtest"]["summary_by_series"] == by_series
    assert "a fresh global lstm on 2 series refit at every origin" in text
    assert "origin 2/3 (179): refit on 179 steps in" in text and "MASE (mean over 2 series)" in text
    assert "mean over the 2 series at each origin:" in text
    assert (out / "backtest.png").read_bytes()[:4] == b"\x89PNG"


class SpreadRecorder(Recorder, Spread):
    """A Recorder whose forecasts have quantiles (Spread's)."""


@pytest.mark.parametrize(
    "targets, flags",
    [
        (["--column", "y"], ["--likelihood", "gaussian"]),
        (["--targets", "y,x"], ["--quantiles", "0.1,0.5,0.9"]),
    ],
)
def test_a_backtest_with_quantiles_scores_the_intervals_at_each_origin(
    tmp_path, capsys, recorder, monkeypatch, targets, flags
):
    from dl.cli import forecast as cli_forecast

    monkeypatch.setattr(cli_forecast, "builder", lambda backend, device: SpreadRecorder)
    out = tmp_path / "run"
    argv = ["--csv", sine_csv(tmp_path / "s.csv"), *targets, *SMALL[2:], *flags]
    status, text, err = run(capsys, *argv, "--backtest", 3, "--out", out)
    assert status == 0, err
    record = json.loads((out / "backtest.json").read_text())
    assert record["quantiles"] == [0.1, 0.5, 0.9]
    rows = list(csv.DictReader((out / "backtest.csv").open()))
    names = ("model", "naive", "seasonal_naive")
    for origin in record["per_origin"]:
        for target, each in origin.get("series", {"y": origin}).items():
            for name in names:
                q = np.array(each["quantiles"][name])
                expected = intervals.scores(np.array([each["truth"]]), q[None], (0.1, 0.5, 0.9))
                assert each["intervals"][name] == expected  # JSON keeps every digit
                assert each["scores"][name]["coverage_80"] == expected["intervals"][0]["coverage"]
                (row,) = [
                    r
                    for r in rows
                    if (r["origin"], r["series"], r["model"])
                    == (str(origin["origin"]), target, name)
                ]
                assert float(row["crps"]) == pytest.approx(expected["crps"], rel=1e-5)
                assert float(row["width_80"]) == pytest.approx(
                    expected["intervals"][0]["width"], rel=1e-5
                )
            assert "pinball" not in each["scores"]["mean"]
    summary = record["summary"]
    for name in names:
        per = [o["scores"][name]["coverage_80"] for o in record["per_origin"]]
        assert summary[name]["coverage_80"]["mean"] == pytest.approx(np.mean(per))
        assert summary[name]["coverage_80"]["std"] == pytest.approx(np.std(per, ddof=1))
    if "series" in record["per_origin"][0]:  # the mean over the series: scale-free figures
        for origin in record["per_origin"]:
            for metric in ("coverage_80", "scaled_pinball", "scaled_crps"):
                mean = np.mean([origin["series"][t]["scores"]["model"][metric] for t in "yx"])
                assert origin["scores"]["model"][metric] == pytest.approx(mean)
            assert "pinball" not in origin["scores"]["model"]
        heading = text[text.index("mean over the 2 series at each origin") :].splitlines()
        assert heading[6].split() == ["80%", "cover", "scaled", "pinball", "scaled", "CRPS"]
    else:
        heading = text[text.index("backtest over 3 origins") :].splitlines()
        assert heading[6].split() == ["80%", "cover", "pinball", "CRPS"]
    assert [line.split()[0] for line in heading[7:10]] == ["lstm", "naive", "seasonal"]


def test_selection_sees_nothing_at_or_after_the_first_origin(
    tmp_path, capsys, recorder, monkeypatch
):
    """The test part's values are 1000 or more: a scaled window with one in it stands out."""
    from dl.cli import forecast as cli_forecast

    real_select = fc.select

    def select(*args, **kwargs):
        monkeypatch.setattr(Recorder, "phase", "selection")
        try:
            return real_select(*args, **kwargs)
        finally:
            monkeypatch.setattr(Recorder, "phase", "after")

    monkeypatch.setattr(cli_forecast.core, "select", select)
    csv_path = sine_csv(tmp_path / "s.csv", test_values=lambda t: 1000.0 + t)
    status, text, err = run(
        capsys, "--csv", csv_path, *SMALL, "--select", "--backtest", 3, "--out", tmp_path / "r"
    )
    assert status == 0, err
    trials = len(fc.SELECT_GRID["num_hiddens"]) * len(fc.SELECT_GRID["lr"])
    assert len(recorder.built) == trials + 3
    assert recorder.seen["selection"] < 10  # sine values scaled by the training part
    assert recorder.seen["after"] > 100  # the test part: the watch can see it
    first, second, third = recorder.built[trials:]
    assert first.largest_trained < 2 < second.largest_trained  # |scaled sine| <= sqrt(2)
    record = json.loads((tmp_path / "r" / "backtest.json").read_text())
    assert record["per_origin"][0]["step"] == 160 and record["per_origin"][0][
        "fitted_on_steps"
    ] == [0, 160]
    picked = json.loads((tmp_path / "r" / "metrics.json").read_text())["model"]["num_hiddens"]
    assert all(model.config.num_hiddens == picked for model in (first, second, third))


@pytest.mark.parametrize(
    "sig, status, how",
    [(signal.SIGINT, 130, "interrupted (Ctrl-C)"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
)
def test_an_interrupted_backtest_keeps_the_origins_done_and_the_run(
    tmp_path, capsys, recorder, monkeypatch, sig, status, how
):
    previous = signal.getsignal(signal.SIGTERM)
    signals.install()  # as the `dl` command does: SIGTERM raises signals.Terminated
    try:
        monkeypatch.setattr(Recorder, "stop_at", 1 + 3)  # the third refit
        monkeypatch.setattr(Recorder, "signal_to_send", sig)
        out = tmp_path / "run"
        code, text, err = run(
            capsys, "--csv", sine_csv(tmp_path / "s.csv"), *SMALL, "--backtest", 5, "--out", out
        )
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert code == status, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert (
        f"{how} in the backtest after 2 of 5 origins: kept the 2 origins done in "
        f"{out / 'backtest.json'} and backtest.csv; the run's model and test scores are saved "
        f"in {out}"
    ) in err
    record = json.loads((out / "backtest.json").read_text())
    assert (record["origins_done"], record["stopped"]) == (2, "interrupted")
    assert [o["origin"] for o in record["per_origin"]] == [1, 2]
    assert record["summary"]["model"]["mase"]["origins"] == 2
    assert len(list(csv.DictReader((out / "backtest.csv").open()))) == 2 * 4
    params, meta = checkpoint.load(out, "forecast")
    assert "interrupted" not in meta and params["w"][0] > 0  # the run's model, whole
    assert "backtest" not in json.loads((out / "metrics.json").read_text())
    assert "origin 2/5" in text and "origin 3/5" not in text


def test_an_interruption_in_the_first_refit_says_no_origin_was_done(
    tmp_path, capsys, recorder, monkeypatch
):
    monkeypatch.setattr(Recorder, "stop_at", 2)
    monkeypatch.setattr(Recorder, "signal_to_send", signal.SIGINT)
    out = tmp_path / "run"
    code, _, err = run(
        capsys, "--csv", sine_csv(tmp_path / "s.csv"), *SMALL, "--backtest", 2, "--out", out
    )
    assert code == 130 and err.count("\n") == 1
    assert "in the backtest after 0 of 2 origins: no origin was done; the run's model" in err
    assert not (out / "backtest.json").exists() and checkpoint.exists(out, "forecast")


def test_a_diverging_refit_keeps_the_origins_before_and_says_so(
    tmp_path, capsys, recorder, monkeypatch
):
    monkeypatch.setattr(Recorder, "diverge_at", 1 + 2)  # the second refit
    out = tmp_path / "run"
    argv = ["--csv", sine_csv(tmp_path / "s.csv"), *SMALL, "--backtest", 3, "--out", out]
    status, _, err = run(capsys, *argv)
    assert status == 2 and err.count("\n") == 1
    assert (
        "the backtest's refit at origin 2 of 3 failed: training diverged in epoch 1: the train "
        "loss became nan; train again with a smaller learning rate (lr=0.01 now, try 0.001) or "
        f"a smaller --clip; {out} holds the run's model and test scores and the origin before "
        "in backtest.json"
    ) in err
    record = json.loads((out / "backtest.json").read_text())
    assert (record["origins_done"], record["stopped"]) == (1, "diverged")
    assert checkpoint.exists(out, "forecast")


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--backtest", 39],
            "--backtest 39: the test part's 40 steps hold 38 origins with "
            "--horizon 3, fewer than the 39 asked for; ask for at most 38, or hold out a larger "
            "--test-fraction",
        ),
        (
            ["--backtest", 4, "--refit-every", 5],
            "--backtest 4: --refit-every 5 is more than "
            "the 4 origins; give 1 (refit at every origin) to 4 (train once, at the first)",
        ),
        (
            ["--backtest", 2, "--test-fraction", 0],
            "--backtest 2: there is no test part to put "
            "backtest origins in; hold out a --test-fraction > 0",
        ),
        (["--refit-every", 2], "--refit-every shapes a backtest; add --backtest K"),
        (
            ["--backtest-window", "sliding", "--refit-every", 2],
            "--backtest-window and --refit-every shape a backtest; add --backtest K",
        ),
        (["--backtest", 0], "argument --backtest: 0 must be at least 1"),
        (["--backtest", "two"], "argument --backtest: 'two' is not a whole number"),
        (["--backtest", 3, "--refit-every", 0], "argument --refit-every: 0 must be at least 1"),
        (
            ["--backtest", 3, "--backtest-window", "rolling"],
            "argument --backtest-window: 'rolling' is not one of expanding, sliding",
        ),
    ],
)
def test_bad_backtest_requests_give_one_line_and_status_2_before_training(
    tmp_path, capsys, recorder, argv, message
):
    out = tmp_path / "run"
    status, _, err = run(capsys, "--csv", sine_csv(tmp_path / "s.csv"), *SMALL, *argv, "--out", out)
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists() and recorder.built == []


def test_a_backtest_of_a_saved_run_is_refused(tmp_path, capsys, recorder):
    status, _, err = run(capsys, "--from", tmp_path, "--backtest", 3)
    assert status == 2 and "leave out --backtest or train a new run without --from" in err


@pytest.mark.parametrize(
    "cell, message",
    [
        ("abc", "column 'x' has 1 values that are not finite numbers, at rows 9: 'abc'"),
        ("", "column 'x' has 1 missing values (empty or NaN) at rows 9; fill them"),
    ],
)
def test_a_covariate_column_with_text_or_gaps_gives_one_line(
    tmp_path, capsys, recorder, cell, message
):
    path = sine_csv(tmp_path / "s.csv")
    lines = path.read_text().splitlines()
    lines[8] = lines[8].rsplit(",", 1)[0] + "," + cell  # row 9 of the file, x's cell
    path.write_text("\n".join(lines) + "\n")
    argv = ["--csv", path, "--column", "y,x", "--backtest", 3, "--out", tmp_path / "run"]
    status, _, err = run(capsys, *argv)
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert recorder.built == []


class Offset(Recorder):
    """A Recorder whose forecasts are (1 + |hidden - 32| / 4) times too large: selection
    prefers 32."""

    def predict(self, X):
        return super().predict(X) * (1 + abs(self.config.num_hiddens - 32) / 4)


def test_an_interrupted_selection_saves_the_best_trial_so_far_with_its_settings(
    tmp_path, capsys, recorder, monkeypatch
):
    from dl.cli import forecast as cli_forecast

    monkeypatch.setattr(cli_forecast, "builder", lambda backend, device: Offset)
    monkeypatch.setattr(Recorder, "stop_at", 5)  # trials 1-4: hidden 16, 16, 32, 32
    monkeypatch.setattr(Recorder, "signal_to_send", signal.SIGINT)
    out = tmp_path / "run"
    argv = ["--csv", sine_csv(tmp_path / "s.csv"), *SMALL, "--select", "--backtest", 2]
    status, text, err = run(capsys, *argv, "--out", out)
    assert status == 130 and err.count("\n") == 1, err
    params, meta = checkpoint.load(out, "forecast")
    assert meta["model"]["num_hiddens"] == 32 and meta["training"]["lr"] == 0.003  # trial 3
    assert meta["interrupted"] == "in selection trial 5, in its first epoch"
    assert (
        "interrupted (Ctrl-C) in selection trial 5, in its first epoch: saved the weights of "
        "the best epoch of the trials so far (num_hiddens 32, lr 0.003), epoch "
        f"{meta['best_epoch']} in"
    ) in err
    assert params["w"][0] == meta["best_epoch"] * ((140 - 12 - 3 + 1) // 16)  # training part
    assert "epoch 1:" not in text  # trials print one line each, not their epochs
    assert not (out / "backtest.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_backtest_on_a_real_backend(tmp_path, capsys, backend):
    pytest.importorskip(backend)
    out = tmp_path / "run"
    argv = ["--csv", sine_csv(tmp_path / "s.csv", n=120), "--column", "y,x", "--window", "8"]
    argv += ["--hidden", "4", "--epochs", "2", "--backend", backend, "--out", out]
    status, text, err = run(capsys, *argv, "--backtest", 3, "--backtest-window", "sliding")
    assert status == 0, err
    record = json.loads((out / "backtest.json").read_text())
    assert [o["fitted_on_steps"] for o in record["per_origin"]] == [[0, 96], [10, 106], [20, 116]]
    for o in record["per_origin"]:
        assert len(o["forecasts"]["model"]) == 4 and math.isfinite(o["scores"]["model"]["rmse"])
    assert "origin 3/3 (116): refit on 96 steps" in text
