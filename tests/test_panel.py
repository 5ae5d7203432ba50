"""A global model on several series (dl.panel, `dl forecast --targets`): per-series scaling,
pooled windows, per-series and overall scores beside the same baselines, checkpoints, and
the backends agreeing on it."""

import csv as csv_module
import importlib
import importlib.util
import json

import numpy as np
import pytest
from test_covariates import numpy_model, run, write  # noqa: F401 (the fixture)

from dl import checkpoint, lm, panel
from dl import forecast as fc
from dl.data import covariates as cv
from dl.data.series import Series

FRAMEWORKS = {"torch": ("torch",), "tensorflow": ("tensorflow", "tf_keras"), "jax": ("jax",)}
INSTALLED = [
    name
    for name, needs in FRAMEWORKS.items()
    if all(importlib.util.find_spec(package) for package in needs)
]


def two_series(n=120):
    """``a`` around 0 in units, ``b`` around 1000 in thousands, one time axis."""
    t = np.arange(n)
    a = np.sin(t / 3)
    b = 1000 + 500 * np.cos(t / 5)
    return cv.split_targets(Series(np.stack([a, b], axis=1), ("a", "b")), 2)


def test_each_series_is_scaled_by_its_own_training_part_and_the_windows_are_pooled():
    datas = panel.prepare(two_series(), 8, 2, "direct", 0.1, 0.2)
    for data in datas:
        np.testing.assert_allclose(data.scaler.mean, data.train.mean(axis=0))
        np.testing.assert_allclose(data.scaler.std, data.train.std(axis=0))
    pooled = panel.pool(datas)
    X, Y = pooled.train_windows
    (Xa, Ya), (Xb, Yb) = (d.train_windows for d in datas)
    assert len(X) == len(Xa) + len(Xb) and len(pooled.val_windows[0]) == 2 * len(
        datas[0].val_windows[0]
    )
    np.testing.assert_array_equal(X[len(Xa) :], Xb)
    np.testing.assert_array_equal(Y[: len(Ya)], Ya)
    assert abs(Xb.mean()) < 1 and Xb.std() < 2  # b in its own scaled units, not thousands


def test_overall_scores_are_the_means_of_the_scale_free_scores():
    datas = panel.prepare(two_series(), 8, 2, "direct", 0.1, 0.2)
    evaluations = [fc.evaluate(lambda X: X[:, -1, :1].repeat(2, axis=1), d) for d in datas]
    overall = panel.overall([e.scores for e in evaluations])
    assert set(overall["model"]) == {"mase", "smape"}
    for name in ("model", "naive", "seasonal_naive", "mean"):
        expected = np.mean([e.scores[name]["mase"] for e in evaluations])
        assert overall[name]["mase"] == pytest.approx(expected)
    # the model repeats the last value: the naive forecast, on every series
    assert overall["model"]["mase"] == pytest.approx(overall["naive"]["mase"], rel=1e-5)


def table(n=120):
    t = np.arange(n)
    return [(t_, f"{np.sin(t_ / 3):.5f}", f"{1000 + 500 * np.cos(t_ / 5):.3f}", "x") for t_ in t]


FAST = ("--window", "8", "--horizon", "2", "--hidden", "4", "--epochs", "2")


@pytest.mark.usefixtures("numpy_model")
def read_rows(path):
    with open(path, newline="") as f:
        return list(csv_module.DictReader(f))


def test_a_global_run_scores_each_series_beside_its_own_baselines(tmp_path, capsys):
    csv = write(tmp_path / "t.csv", "t,a,b,note", table())
    out = tmp_path / "run"
    status, text, err = run(
        capsys, "--csv", csv, "--targets", "all", "--time-column", "t", *FAST, "--out", out
    )
    assert status == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["targets"] == ["a", "b"]  # 'note' is text, 't' the time
    assert "one global model for 2 series" in text and "mean over the 2 series" in text
    assert {p.name for p in out.glob("*.png")} == {"forecast-a.png", "forecast-b.png"}
    _, meta = checkpoint.load(out, "forecast")
    assert meta["inputs"]["targets"] == ["a", "b"] and len(meta["scalers"]) == 2
    assert meta["scalers"][1]["mean"][0] > 900  # b's own scaler

    rows = read_rows(out / "test_forecasts.csv")
    assert [r["series"] for r in rows] == ["a"] * (len(rows) // 2) + ["b"] * (len(rows) // 2)
    for target in ("a", "b"):  # the baselines of a one-series run on the same column
        alone = tmp_path / f"alone-{target}"
        status, _, err = run(capsys, "--csv", csv, "--column", target, *FAST, "--out", alone)
        assert status == 0, err
        single = json.loads((alone / "metrics.json").read_text())["scores"]
        for baseline in ("naive", "seasonal_naive", "mean"):
            assert metrics["series"][target]["scores"][baseline] == single[baseline]
        ours = [{k: v for k, v in r.items() if k != "model"} for r in rows if r["series"] == target]
        theirs = read_rows(alone / "test_forecasts.csv")
        assert ours == [{"series": target, **r} for r in theirs if r.pop("model")]
    overall = metrics["overall"]["naive"]["mase"]
    assert overall == pytest.approx(
        np.mean([metrics["series"][t]["scores"]["naive"]["mase"] for t in "ab"])
    )

    status, again, err = run(capsys, "--from", out)
    assert status == 0, err
    assert again[again.index("a:\n") :] == text[text.index("a:\n") : text.index("wrote")]
    bad = write(tmp_path / "bad.csv", "t,a,c,note", table())
    status, _, err = run(capsys, "--from", out, "--csv", bad)
    assert status == 2 and err.count("\n") == 1 and "no column 'b'" in err
    status, _, err = run(capsys, "--from", out, "--csv", csv, "--targets", "a")
    assert status == 2 and "the data lacks the target column 'b'" in err


@pytest.mark.usefixtures("numpy_model")
def test_a_global_refit_trains_on_every_window_of_every_whole_series(tmp_path, capsys):
    csv = write(tmp_path / "t.csv", "t,a,b,note", table())
    out = tmp_path / "run"
    status, text, err = run(
        capsys,
        "--csv",
        csv,
        "--targets",
        "a,b",
        *FAST,
        "--refit",
        "--quantiles",
        "0.1,0.5,0.9",
        "--out",
        out,
    )
    assert status == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["refit"]["epochs"] == metrics["training"]["best_epoch"]
    for target in "ab":
        forecast = metrics["series"][target]["forecast"]
        assert forecast["model"] == "refit on the whole series" and len(forecast["values"]) == 2
        assert set(forecast["quantiles"]) == {"0.1", "0.5", "0.9"}
        assert forecast["quantiles"] != forecast["quantiles_of_model_of_training_part"]
        assert "coverage" in json.dumps(metrics["series"][target]["intervals"])
    values = {"a": np.sin(np.arange(120) / 3), "b": 1000 + 500 * np.cos(np.arange(120) / 5)}
    mean = metrics["overall_intervals"]
    assert set(mean) == {"model", "naive", "seasonal_naive"}
    for name in mean:
        assert set(mean[name]) == {"coverage_80", "scaled_pinball", "scaled_crps"}
        for metric, value in mean[name].items():
            per = [metrics["series"][t]["intervals"]["scale_free"][name][metric] for t in "ab"]
            assert value == pytest.approx(np.mean(per))
        for target in "ab":  # each series' own: its test scores over MASE's scale
            series = metrics["series"][target]
            scored = series["intervals"]["scores"][name]
            y, m = values[target][: series["parts"]["train"]], series["period"]
            scale = np.abs(y[m:] - y[:-m]).mean()
            figures = series["intervals"]["scale_free"][name]
            assert figures["scaled_crps"] == pytest.approx(scored["crps"] / scale, rel=1e-4)
            assert figures["scaled_pinball"] == pytest.approx(scored["pinball"] / scale, rel=1e-4)
            assert figures["coverage_80"] == scored["intervals"][0]["coverage"]
    assert "mean, intervals:" in text and "scaled CRPS" in text
    rows = read_rows(out / "test_forecasts.csv")
    for target in "ab":  # the pinball loss test_forecasts.csv gives is the scored one
        mine = [r for r in rows if r["series"] == target]
        truth = np.array([float(r["truth"]) for r in mine])
        for name in ("model", "naive"):
            losses = [
                np.mean(np.maximum(q * e, (q - 1) * e))
                for q in (0.1, 0.5, 0.9)
                for e in [truth - np.array([float(r[f"{name}_q{q:g}"]) for r in mine])]
            ]
            scored = metrics["series"][target]["intervals"]["scores"][name]["pinball"]
            assert np.mean(losses) == pytest.approx(scored, rel=1e-6)
    _, meta = checkpoint.load(out, "forecast")
    b = values["b"]
    assert meta["scalers"][1]["mean"][0] == pytest.approx(b.mean(), rel=1e-6)  # whole series


@pytest.mark.slow
@pytest.mark.skipif(not INSTALLED, reason="no deep-learning framework installed")
def test_every_backend_trains_the_same_global_model():
    """Pooled windows of two series with past and future covariates: one global model on
    each framework, compared with the NumPy forward and with each other."""
    t = np.arange(100)
    base = Series(
        np.stack([np.sin(t / 3), 50 + 9 * np.cos(t / 4), t % 7], axis=1),
        ("a", "b", "p"),
        time=tuple(f"2001-01-{1 + d % 28:02d}" for d in t),
    )
    future = np.stack([np.cos(np.arange(103) / 2)], axis=1)
    series = cv.split_targets(cv.with_future(base, future, ["x"], 3), 2)
    pooled = panel.pool(panel.prepare(series, 6, 3, "direct", 0.1, 0.2))
    config = fc.ForecastConfig("lstm", num_inputs=5, num_hiddens=6, num_outputs=3)
    start = lm.init_params(config, 0, scale=0.4)
    settings = fc.FitSettings(epochs=2, batch_size=16, lr=0.02, seed=1)
    trained, X = {}, pooled.val_windows[0]
    for backend in INSTALLED:
        module = importlib.import_module(f"dl.{backend}.forecast")
        model = module.Forecaster(config, start, device="cpu")
        fc.fit(model, pooled.train_windows, pooled.val_windows, settings, restore_best=False)
        trained[backend] = model.numpy_params()
        np.testing.assert_allclose(
            model.predict(X),
            fc.forecast_forward(lm.NUMPY_OPS, trained[backend], X, config),
            atol=1e-5,
        )
    first = INSTALLED[0]
    for name, value in trained[first].items():
        assert not np.allclose(value, start[name]), f"{name} did not move"
        for backend in INSTALLED[1:]:
            np.testing.assert_allclose(
                trained[backend][name], value, atol=1e-4, err_msg=f"{backend} {name}"
            )


@pytest.mark.parametrize(
    "argv",
    [
        ["--series", "macrodata", "--targets", "realgdp,realcons,realgdp"],
        ["--csv", "t.csv", "--targets", "a,b,a"],
    ],
)
def test_a_target_named_twice_is_refused_in_one_line(tmp_path, capsys, monkeypatch, argv):
    pytest.importorskip("statsmodels")
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "t.csv", "t,a,b,note", table())
    status, _, err = run(capsys, *argv, *FAST, "--out", tmp_path / "r")
    assert status == 2 and err.count("\n") == 1, err
    assert "is given twice; name each column once" in err and not (tmp_path / "r").exists()
