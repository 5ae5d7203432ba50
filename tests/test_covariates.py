"""Covariates (dl.data.covariates): calendar features, future columns read as horizon leads,
the CSV that goes on past the target, and `dl forecast`'s flags, checkpoints and refusals."""

import importlib.util
import json
import re

import numpy as np
import pytest

from dl import checkpoint, lm
from dl import forecast as fc
from dl.cli import main
from dl.data import covariates as cv
from dl.data.series import Series, SeriesError


def months(n, start=2001):
    return tuple(f"{start + m // 12}-{m % 12 + 1:02d}" for m in range(n))


# ---------------------------------------------------------------- calendar features


def test_monthly_labels_give_the_month_of_year_and_continue_past_the_end():
    values, names = cv.calendar_features(months(11)[-3:], extra=3)  # Sep, Oct, Nov 2001
    assert names == ("month_of_year_sin", "month_of_year_cos")
    month = np.array([8, 9, 10, 11, 0, 1])  # ... Dec 2001, Jan and Feb 2002
    np.testing.assert_allclose(values[:, 0], np.sin(2 * np.pi * month / 12), atol=1e-12)
    np.testing.assert_allclose(values[:, 1], np.cos(2 * np.pi * month / 12), atol=1e-12)


@pytest.mark.parametrize(
    "labels, names, first, extra_first",
    [
        (("1959Q3", "1959Q4"), ("quarter_of_year_sin", "quarter_of_year_cos"), 2, 0),
        (("2026-12-07", "2026-12-08"), ("day_of_week_sin", "day_of_week_cos"), 0, 2),  # Monday
        (("1958-03-29", "1958-04-05"), ("day_of_year_sin", "day_of_year_cos"), 87, 101),
        (("2026-12-07 22:00", "2026-12-07 23:00"), ("hour_of_day_sin", "hour_of_day_cos"), 22, 0),
    ],
)
def test_the_frequency_chooses_the_season(labels, names, first, extra_first):
    values, got = cv.calendar_features(labels, extra=1)
    assert got[:2] == names
    period = dict(sum(cv.CALENDAR.values(), ()))[names[0][:-4]]
    expected = np.array([first, extra_first]) * 2 * np.pi / period
    np.testing.assert_allclose(values[[0, 2], 0], np.sin(expected), atol=1e-12)


@pytest.mark.parametrize(
    "labels, message",
    [
        (None, "has none; give its time column"),
        (
            (1700, 1701),
            "need dates as time labels (such as 2001-12-29, 2001-12 or 1959Q1); its labels are "
            "numbers (1700, ...): leave out the calendar features",
        ),
        (("2001-01-01", "soon"), "time label 'soon' (step 1) is not a date"),
        (("2001-02", "2001-01"), "must increase, but '2001-02' (step 0) is followed by"),
        (("2001", "2002"), "365 days apart, which is none of hourly"),
    ],
)
def test_calendar_features_refuse_labels_that_are_not_a_calendar(labels, message):
    with pytest.raises(SeriesError, match=re.escape(message)):
        cv.calendar_features(labels)


# ---------------------------------------------------------------- future covariates as leads


def test_the_last_step_of_a_window_holds_the_covariates_of_the_steps_it_forecasts():
    T, h, window = 30, 3, 5
    rng = np.random.default_rng(0)
    future = rng.standard_normal((T + h, 1))
    series = cv.with_future(Series(np.arange(T, dtype=float), ("y",)), future, ["x"], h)
    assert series.names == ("y", "x[t+1]", "x[t+2]", "x[t+3]")
    data = fc.prepare(series, window, h, val_fraction=0, test_fraction=0)
    X, Y = data.train_windows
    raw = data.scaler.inverse_transform(X[:, -1].astype(np.float64))
    target_steps = np.rint(data.scaler.inverse_transform(Y.astype(np.float64), column=0))
    np.testing.assert_allclose(raw[:, 1:], future[target_steps.astype(int), 0], rtol=1e-5)
    last = series.values[-1, 1:]  # what forecast_future reads: the horizon after the end
    np.testing.assert_array_equal(last, future[T : T + h, 0])


def test_future_covariates_known_for_less_than_the_horizon_are_refused():
    series = Series(np.zeros(10), ("y",), source="the test")
    with pytest.raises(SeriesError, match="known for 2 steps after the target's last value"):
        cv.with_future(series, np.zeros((12, 1)), ["x"], 3)


def write(path, header, rows):
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def table(n=60, ahead=4, seed=0):
    """Rows (month, y, p, x): y = 2 x + a cycle, x known in advance; p is a past covariate; the last
    ``ahead`` rows hold x only."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n + ahead)
    rows = []
    for t, label in enumerate(months(n + ahead)):
        y, p = (f"{2 * x[t] + np.sin(t / 4):.5f}", f"{x[t - 1]:.5f}") if t < n else ("", "")
        rows.append((label, y, p, f"{x[t]:.5f}"))
    return rows


def test_a_csv_that_goes_on_past_the_target_gives_the_future_rows(tmp_path):
    csv = write(tmp_path / "t.csv", "month,y,p,x", table(40, ahead=4))
    series, future = cv.read_csv_future(csv, ["y", "p"], ["x"], 3, "month")
    assert len(series) == 40 and series.time[-1] == "2004-04"
    assert future.shape == (43, 1)
    (one,), inputs = cv.load_inputs(
        {
            "csv": str(csv),
            "column": ["y", "p"],
            "time_column": "month",
            "future_columns": ["x"],
            "calendar": True,
        },
        3,
    )
    assert inputs == cv.Inputs(("y",), ("p",), ("x",), ("month_of_year_sin", "month_of_year_cos"))
    assert one.names[:5] == ("y", "p", "x[t+1]", "x[t+2]", "x[t+3]") and len(one.names) == 11


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda rows: rows[:-2],
            "future covariate 'x' is known for 2 rows after the targets' "
            "last value (line 41), and a forecast of 4 steps needs it for 4",
        ),
        (
            lambda rows: [r[:3] + ("cloudy",) if i == 5 else r for i, r in enumerate(rows)],
            "column 'x' has 1 values that are not finite numbers, at rows 7: 'cloudy'",
        ),
        (
            lambda rows: [r[:3] + ("",) if i == 5 else r for i, r in enumerate(rows)],
            "column 'x' has 1 missing values (empty or NaN) at rows 7",
        ),
    ],
)
def test_a_future_column_with_gaps_text_or_too_few_rows_is_refused(tmp_path, edit, message):
    csv = write(tmp_path / "t.csv", "month,y,p,x", edit(table(40)))
    with pytest.raises(SeriesError) as err:
        cv.read_csv_future(csv, ["y"], ["x"], 4, "month")
    assert message in str(err.value)


# ---------------------------------------------------------------- the command line


class NumpyForecaster:
    """The forward of dl.forecast on NumPy with untrained weights: `dl forecast`'s whole flow
    (checkpoint, --from) without a framework. Training steps change nothing."""

    device_name = "numpy"

    def __init__(self, config, params):
        self.config, self.params = config, params
        NumpyForecaster.built.append(self)

    def make_step(self, optimizer, clip):
        return lambda X, Y: float(np.mean(Y**2))

    def predict(self, X):
        self.seen = X
        return np.asarray(fc.forecast_forward(lm.NUMPY_OPS, self.params, X, self.config))

    def numpy_params(self):
        return dict(self.params)

    def load(self, params):
        self.params = dict(params)

    def reseed(self, seed):
        pass


@pytest.fixture
def numpy_model(monkeypatch):
    from dl.cli import forecast as cli_forecast

    monkeypatch.setattr(NumpyForecaster, "built", [], raising=False)
    monkeypatch.setattr(cli_forecast, "builder", lambda backend, device: NumpyForecaster)
    return NumpyForecaster


def run(capsys, *argv):
    status = main(["forecast", *map(str, argv)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


FAST = ("--window", "6", "--horizon", "4", "--hidden", "4", "--epochs", "2")


def test_a_run_records_its_inputs_and_refuses_new_data_that_lacks_them(
    tmp_path, capsys, numpy_model
):
    csv = write(tmp_path / "t.csv", "month,y,p,x", table(120))
    out = tmp_path / "run"
    argv = ("--csv", csv, "--column", "y,p", "--time-column", "month", "--future-columns", "x")
    status, text, err = run(capsys, *argv, "--calendar", *FAST, "--out", out)
    assert status == 0, err
    _, meta = checkpoint.load(out, "forecast")
    assert meta["inputs"] == {
        "targets": ["y"],
        "past": ["p"],
        "future": ["x"],
        "calendar": ["month_of_year_sin", "month_of_year_cos"],
    }
    assert meta["model"]["num_inputs"] == 2 + 3 * 4  # y, p, and 4 leads of x, sin and cos
    assert numpy_model.built[-1].seen.shape[1:] == (6, 14)

    # new data with the same columns: the run's inputs are taken by default
    new = write(tmp_path / "new.csv", "month,y,p,x", table(120, seed=1))
    status, again, err = run(capsys, "--from", out, "--csv", new)
    assert status == 0 and "test scores" in again, err

    for header, extra, message in [
        ("month,y,q,x", (), "new.csv: no column 'p'; available columns: 'month', 'y', 'q', 'x'"),
        (
            "month,y,p,x",
            ("--column", "y"),
            "the data lacks the past covariate column 'p', which the model reads",
        ),
        ("day,y,p,x", (), "no column 'month'"),
        (
            "month,y,p,x",
            ("--future-columns", "p"),
            f"--from {out}: its model reads column 'p' as a past covariate; leave it out of "
            "--future-columns (the run's inputs are taken by default)",
        ),
        (
            "month,y,p,x",
            ("--column", "y,p,x"),
            f"--from {out}: its model reads column 'x' as a future covariate; leave it out of "
            "--column and --targets",
        ),
    ]:
        bad = write(tmp_path / "new.csv", header, table(120, seed=1))
        status, _, err = run(capsys, "--from", out, "--csv", bad, *extra)
        assert status == 2 and err.count("\n") == 1 and message in err, err
    write(tmp_path / "new.csv", "month,y,p,x", table(120, ahead=0))  # x ends with y
    status, _, err = run(capsys, "--from", out, "--csv", tmp_path / "new.csv")
    assert status == 2 and "future covariate 'x' is known for 0 rows after" in err


def test_a_model_without_the_calendar_refuses_data_with_it(tmp_path, capsys, numpy_model):
    csv = write(tmp_path / "t.csv", "month,y,p,x", table(120, ahead=0))
    out = tmp_path / "run"
    status, _, err = run(capsys, "--csv", csv, "--column", "y", *FAST, "--out", out)
    assert status == 0, err
    status, _, err = run(
        capsys, "--from", out, "--csv", csv, "--time-column", "month", "--calendar"
    )
    assert status == 2 and "has the calendar feature 'month_of_year_sin'" in err
    assert "which the model does not read" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--column", "y", "--future-columns", "z"], "no column 'z'; available columns"),
        (["--column", "y,p", "--future-columns", "p"], "column 'p' is given twice"),
        (["--column", "y", "--future-columns", "x", "--calendar"], "give --time-column"),
        (
            ["--column", "y", "--future-columns", "x", "--horizon", "6"],
            "future covariate 'x' is known for 4 rows after the targets' last value",
        ),
        (["--targets", "all,y"], "--targets all takes every numeric column"),
        (
            ["--targets", "all", "--column", "y,p,x", "--time-column", "month"],
            "no numeric column is left to forecast (besides month, p, x, y)",
        ),
    ],
)
def test_bad_covariates_give_one_line_and_status_2(tmp_path, capsys, argv, message):
    csv = write(tmp_path / "t.csv", "month,y,p,x", table(120))
    status, _, err = run(capsys, "--csv", csv, *argv, "--window", "6", "--out", tmp_path / "r")
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "r").exists()


def test_a_past_covariate_with_text_or_gaps_gives_one_line(tmp_path, capsys):
    rows = table(120, ahead=0)
    for cell, message in [("n/a", "column 'p' has 1 missing values"), ("high", "'high'")]:
        bad = [r[:2] + (cell,) + r[3:] if i == 9 else r for i, r in enumerate(rows)]
        csv = write(tmp_path / "t.csv", "month,y,p,x", bad)
        status, _, err = run(capsys, "--csv", csv, "--column", "y,p", "--window", "6")
        assert status == 2 and err.count("\n") == 1 and message in err and "rows 11" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--series", "co2", "--future-columns", "x"], "leave out --future-columns"),
        (["--calendar"], "--calendar apply to a CSV file; give --csv FILE"),
        (["--series", "sine", "--targets", "x,y"], "series 'sine' has one column"),
    ],
)
def test_covariate_flags_that_do_not_apply_give_status_2(capsys, argv, message):
    status, _, err = run(capsys, *argv)
    assert status == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.slow
@pytest.mark.skipif(not importlib.util.find_spec("jax"), reason="jax is not installed")
def test_a_model_with_the_future_covariate_forecasts_what_one_without_cannot(tmp_path, capsys):
    """y_t = 2 x_t + a trend, x white noise known in advance: only the future column tells."""
    csv = write(tmp_path / "t.csv", "month,y,p,x", table(160))
    scores = {}
    for name, extra in [("without", []), ("with", ["--future-columns", "x"])]:
        status, _, err = run(
            capsys,
            "--csv",
            csv,
            "--column",
            "y",
            *extra,
            "--window",
            "6",
            "--horizon",
            "2",
            "--hidden",
            "16",
            "--epochs",
            "30",
            "--lr",
            "0.01",
            "--backend",
            "jax",
            "--out",
            tmp_path / name,
        )
        assert status == 0, err
        scores[name] = json.loads((tmp_path / name / "metrics.json").read_text())["scores"]
    assert scores["with"]["model"]["mase"] < 0.5 * scores["without"]["model"]["mase"]
    assert scores["with"]["model"]["mase"] < scores["with"]["naive"]["mase"]
