"""Tests for dl.data.series: sources, CSV files, splits, scaling, windows and roll-outs."""

import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dl.data.series as series_module
from dl.data.series import (
    MACRO_COLUMNS,
    SERIES_LOADERS,
    Scaler,
    Series,
    SeriesError,
    load_series,
    make_windows,
    read_csv_series,
    rollout,
    split,
    synthetic_sine,
)

# ---------------------------------------------------------------- Series


def test_series_makes_2d_float64_read_only_values():
    s = Series([1, 2, 3], ("x",), time=[10, 11, 12], source="test")
    assert s.values.shape == (3, 1) and s.values.dtype == np.float64
    assert len(s) == 3
    assert s.target_name == "x"
    assert s.target_values.tolist() == [1.0, 2.0, 3.0]
    assert s.time == (10, 11, 12)
    assert s.period is None and s.interpolated == 0
    with pytest.raises(ValueError):
        s.values[0, 0] = 5.0
    assert s.metadata() == {
        "names": ["x"],
        "target": 0,
        "length": 3,
        "interpolated": 0,
        "source": "test",
        "period": None,
        "first_time": 10,
        "last_time": 12,
        "sha256": hashlib.sha256(np.array([[1.0], [2.0], [3.0]]).tobytes()).hexdigest(),
    }
    json.dumps(s.metadata())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(values=np.zeros((3, 2)), names=("a",)), "2 columns but 1 names"),
        (dict(values=np.zeros((3, 2)), names=("a", "b"), target=2), r"0\.\.1, got 2"),
        (
            dict(values=np.zeros((3, 1)), names=("a",), time=(1, 2)),
            "3 time steps but 2 time labels",
        ),
        (dict(values=np.zeros((0, 1)), names=("a",)), r"T >= 1, got shape \(0, 1\)"),
        (dict(values=np.zeros((3, 1)), names=("a",), period=0), "period must be > 0"),
    ],
)
def test_series_rejects_inconsistent_fields(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Series(**kwargs)


# ---------------------------------------------------------------- synthetic sine


def test_synthetic_sine_is_the_books_series():
    s = synthetic_sine()
    assert s.values.shape == (1000, 1)
    assert s.time[0] == 1 and s.time[-1] == 1000
    assert s.period is None
    noise = s.target_values - np.sin(0.01 * np.arange(1, 1001))
    assert abs(noise.mean()) < 0.03
    assert noise.std() == pytest.approx(0.2, abs=0.02)
    assert np.array_equal(synthetic_sine(seed=0).values, s.values)  # seeded: reproducible
    assert not np.array_equal(synthetic_sine(seed=1).values, s.values)


def test_synthetic_sine_without_noise_is_exact():
    s = synthetic_sine(T=5, noise=0)
    np.testing.assert_array_equal(s.target_values, np.sin(0.01 * np.arange(1, 6)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(T=0), "T must be > 0"),
        (dict(T=2.5), "T must be an integer"),
        (dict(noise=-0.1), "noise must be >= 0"),
    ],
)
def test_synthetic_sine_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        synthetic_sine(**kwargs)


# ---------------------------------------------------------------- statsmodels series


@pytest.fixture(scope="module")
def statsmodels_datasets():
    return pytest.importorskip("statsmodels.datasets")


def test_sunspots(statsmodels_datasets):
    s = load_series("sunspots")
    assert s.values.shape == (309, 1)
    assert s.names == ("SUNACTIVITY",)
    assert s.time[0] == 1700 and s.time[-1] == 2008
    assert s.values[0, 0] == 5.0 and s.values[-1, 0] == 2.9
    assert s.period is None  # the ~11-year cycle is not fixed
    assert s.interpolated == 0


def test_co2_is_weekly_with_59_interpolated_weeks(statsmodels_datasets):
    s = load_series("co2")
    assert s.values.shape == (2284, 1)
    assert s.interpolated == 59
    assert not np.isnan(s.values).any()
    assert s.time[0] == "1958-03-29" and s.time[-1] == "2001-12-29"
    assert s.values[0, 0] == pytest.approx(316.1)
    assert s.period == 52
    # week 6 (1958-05-10) is missing between 316.9 and 317.5: the midpoint in time
    assert s.time[6] == "1958-05-10"
    assert s.values[5:8, 0].tolist() == pytest.approx([316.9, 317.2, 317.5])
    assert "59 missing weeks interpolated" in s.source


def test_macrodata_default_columns_and_choice(statsmodels_datasets):
    s = load_series("macrodata")
    assert s.names == MACRO_COLUMNS == ("realgdp", "realcons", "realinv")
    assert s.values.shape == (203, 3)
    assert s.target == 0 and s.target_name == "realgdp"
    assert s.values[0].tolist() == [2710.349, 1707.4, 286.898]
    assert s.time[0] == "1959Q1" and s.time[-1] == "2009Q3"
    assert s.period == 4
    s = load_series("macrodata", columns=["realgdp", "unemp"], target="unemp")
    assert s.names == ("realgdp", "unemp") and s.target == 1 and s.values[0, 1] == 5.8


def test_macrodata_bad_columns_name_the_available_ones(statsmodels_datasets):
    with pytest.raises(SeriesError, match="no column 'gdp'.*available: year, quarter, realgdp"):
        load_series("macrodata", columns=["gdp"])
    with pytest.raises(SeriesError, match="target 'unemp' is not among"):
        load_series("macrodata", target="unemp")
    with pytest.raises(SeriesError, match="at least one column"):
        load_series("macrodata", columns=[])


def test_the_bundled_series_are_statsmodels_own_values_read_without_it(statsmodels_datasets):
    import importlib

    for name in ("sunspots", "co2", "macrodata"):
        series = load_series(name)
        data = importlib.import_module(f"statsmodels.datasets.{name}").load_pandas().data
        if name == "co2":  # statsmodels' weekly index; its gaps are ours interpolated
            assert series.time == tuple(str(d.date()) for d in data.index)
            known = ~data["co2"].isna().to_numpy()
            assert series.values[known, 0].tolist() == data["co2"].to_numpy()[known].tolist()
            continue
        assert series.values.tolist() == data[list(series.names)].to_numpy(float).tolist()
    everything = load_series("macrodata", columns=["realgdp", "infl", "realint"])
    assert everything.values[-1].tolist() == data[["realgdp", "infl", "realint"]].iloc[-1].tolist()


def test_reading_a_bundled_series_does_not_import_statsmodels_or_pandas(statsmodels_datasets):
    code = (
        "import sys; from dl.data.series import load_series; load_series('co2'); "
        "print(sorted({'statsmodels', 'pandas'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_load_series_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        load_series("airline")
    message = str(info.value)
    assert "'airline'" in message
    assert all(name in message for name in SERIES_LOADERS)
    assert "read_csv_series" in message


def test_load_series_unknown_option_lists_the_options():
    with pytest.raises(
        SeriesError, match="'sine' takes no option 'columns'; its options: T, noise, seed"
    ):
        load_series("sine", columns=["x"])
    with pytest.raises(SeriesError, match="its options: none"):
        load_series("co2", interpolate=False)
    assert load_series("sine", T=10).values.shape == (10, 1)


@pytest.mark.parametrize("name", ["sunspots", "co2", "macrodata"])
def test_missing_statsmodels_says_how_to_install(monkeypatch, name):
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    monkeypatch.setitem(sys.modules, f"statsmodels.datasets.{name}", None)
    with pytest.raises(ImportError, match=r"statsmodels.*pip install 'dl-rnn\[forecast\]'"):
        load_series(name)


# ---------------------------------------------------------------- CSV files


def write(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_csv_series_one_column(tmp_path):
    path = write(tmp_path, "date,sales,price\n2024-01,1,9.5\n2024-02,2.5,9\n2024-03,-3e1,8\n")
    s = read_csv_series(path, "sales", time_column="date")
    assert s.values.tolist() == [[1.0], [2.5], [-30.0]]
    assert s.names == ("sales",) and s.target == 0
    assert s.time == ("2024-01", "2024-02", "2024-03")
    assert s.interpolated == 0 and s.period is None
    assert str(path) in s.source


def test_read_csv_series_several_columns_numeric_time_bom_and_blank_lines(tmp_path):
    path = tmp_path / "multi.csv"
    path.write_bytes("\ufeffyear, a ,b\r\n1990,1,2\r\n\r\n1991,3,4\r\n1992.5,5,6\r\n".encode())
    s = read_csv_series(path, ["b", "a"], time_column="year")
    assert s.names == ("b", "a")
    assert s.values.tolist() == [[2, 1], [4, 3], [6, 5]]
    assert s.time == (1990, 1991, 1992.5)
    assert isinstance(s.time[0], int)


def test_read_csv_series_constant_column_loads(tmp_path):
    s = read_csv_series(write(tmp_path, "x\n3\n3\n3\n"), "x")
    assert s.values.ravel().tolist() == [3.0, 3.0, 3.0]


def test_read_csv_series_missing_file(tmp_path):
    path = tmp_path / "nope.csv"
    with pytest.raises(SeriesError, match="no such file; check the path") as info:
        read_csv_series(path, "x")
    assert str(path) in str(info.value)


def test_read_csv_series_directory(tmp_path):
    with pytest.raises(SeriesError, match="is a directory; pass a CSV file") as info:
        read_csv_series(tmp_path, "x")
    assert str(tmp_path) in str(info.value)


def test_read_csv_series_unreadable(tmp_path, monkeypatch):
    path = write(tmp_path, "x\n1\n")

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(series_module, "open", refuse, raising=False)
    with pytest.raises(SeriesError, match="not readable; check its permissions") as info:
        read_csv_series(path, "x")
    assert str(path) in str(info.value)


@pytest.mark.parametrize("text", ["", "\n\n", " , \n"])
def test_read_csv_series_empty_file(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(SeriesError, match="the file is empty; give a CSV file with") as info:
        read_csv_series(path, "x")
    assert str(path) in str(info.value)


def test_read_csv_series_header_only(tmp_path):
    path = write(tmp_path, "x,y\n")
    with pytest.raises(SeriesError, match="no data rows after the header line") as info:
        read_csv_series(path, "x")
    assert str(path) in str(info.value)


def test_read_csv_series_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("x\n1\nf\xfcr\n".encode("latin-1"))
    with pytest.raises(SeriesError, match=r"not UTF-8 text \(byte 0xfc\); save it as UTF") as info:
        read_csv_series(path, "x")
    assert str(path) in str(info.value)


def test_read_csv_series_missing_column_lists_the_available_ones(tmp_path):
    path = write(tmp_path, "date,sales,price\n1,2,3\n")
    with pytest.raises(SeriesError) as info:
        read_csv_series(path, "Sales")
    assert str(info.value) == (
        f"{path}: no column 'Sales'; available columns: 'date', 'sales', 'price'"
    )
    with pytest.raises(SeriesError, match="no column 'when'; available columns"):
        read_csv_series(path, "sales", time_column="when")


def test_read_csv_series_non_numeric_values_name_rows_and_values(tmp_path):
    path = write(tmp_path, 'x\n1\nabc\n3\n"1,5"\ninf\n')
    with pytest.raises(SeriesError) as info:
        read_csv_series(path, "x")
    assert str(info.value) == (
        f"{path}: column 'x' has 3 values that are not finite numbers, "
        "at rows 3, 5, 6: 'abc', '1,5', 'inf'; fix or remove those rows"
    )


def test_read_csv_series_many_bad_values_show_the_first_five(tmp_path):
    path = write(tmp_path, "x\n" + "".join(f"v{i}\n" for i in range(8)))
    with pytest.raises(SeriesError) as info:
        read_csv_series(path, "x")
    assert (
        "8 values that are not finite numbers, at rows 2, 3, 4, 5, 6 and 3 more: "
        "'v0', 'v1', 'v2', 'v3', 'v4' ...; fix"
    ) in str(info.value)


def test_read_csv_series_gaps_are_refused_with_row_numbers(tmp_path):
    path = write(tmp_path, "x,y\n1,0\n,0\n3,0\nNaN,0\n\n5,0\nNA\n7,0\n")
    with pytest.raises(SeriesError) as info:
        read_csv_series(path, "x")
    # line 6 is blank: skipped, but counted, so rows are the file's line numbers
    assert str(info.value) == (
        f"{path}: column 'x' has 3 missing values (empty or NaN) at rows "
        "3, 5, 8; fill them, remove those rows, or pass interpolate=True "
        "to fill them by linear interpolation"
    )


def test_read_csv_series_short_row_is_a_gap(tmp_path):
    path = write(tmp_path, "x,y\n1,2\n3\n5,6\n")
    with pytest.raises(SeriesError, match="column 'y' has 1 missing values .* at rows 3;"):
        read_csv_series(path, ["x", "y"])


def test_read_csv_series_interpolates_when_asked(tmp_path):
    path = write(tmp_path, "x,y\n,0\n1,0\n,0\n,0\n4,0\nnan,1\n")
    s = read_csv_series(path, ["x", "y"], interpolate=True)
    # inner gaps linear in row position; the ends take the nearest value
    assert s.values[:, 0].tolist() == [1.0, 1.0, 2.0, 3.0, 4.0, 4.0]
    assert s.values[:, 1].tolist() == [0, 0, 0, 0, 0, 1]
    assert s.interpolated == 4
    assert "4 missing values interpolated" in s.source


def test_read_csv_series_column_without_values(tmp_path):
    path = write(tmp_path, "x,y\n,1\n,2\n")
    with pytest.raises(SeriesError, match="column 'x' has no values"):
        read_csv_series(path, "x", interpolate=True)


def test_read_csv_series_unreadable_csv(tmp_path):
    path = write(tmp_path, "x\n1\n" + "2" * 200_000 + "\n")  # over the csv module's field limit
    with pytest.raises(SeriesError, match=r"not a readable CSV file \(line 3: field") as info:
        read_csv_series(path, "x")
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- split


def test_split_in_time_order():
    values = np.arange(20.0)
    train, val, test = split(values, 0.1, 0.2)
    assert train.tolist() == list(range(14))
    assert val.tolist() == [14, 15]
    assert test.tolist() == [16, 17, 18, 19]
    parts = split(values.reshape(10, 2), val_fraction=0.25, test_fraction=0.25)  # 2.5 rounds up
    assert [len(p) for p in parts] == [4, 3, 3]
    assert parts.test.tolist() == [[14, 15], [16, 17], [18, 19]]


def test_split_accepts_a_series_and_zero_fractions():
    s = Series(np.arange(10.0), ("x",))
    train, val, test = split(s, val_fraction=0, test_fraction=0.3)
    assert train.shape == (7, 1) and val.shape == (0, 1) and test.shape == (3, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(val_fraction=0.1, test_fraction=0.1, window=8, horizon=2),
            r"the val part would have 2 time steps \(0.1 of 20\), fewer than window \+ horizon = "
            r"8 \+ 2 = 10; use a longer series, a shorter window or horizon, "
            r"or a larger val_fraction",
        ),
        (
            dict(val_fraction=0.5, test_fraction=0.3, window=3, horizon=2),
            r"the train part would have 4 time steps \(0.2 of 20\), fewer than window \+ horizon = "
            r"3 \+ 2 = 5; use a longer series, a shorter window or horizon$",
        ),
        (dict(val_fraction=0.0, test_fraction=0.01), r"the test part would have 0 time steps"),
        (dict(val_fraction=0.6, test_fraction=0.4), r"val_fraction \+ test_fraction must be < 1"),
        (dict(val_fraction=1.0, test_fraction=0), r"val_fraction must be < 1"),
        (dict(val_fraction=-0.1, test_fraction=0), r"val_fraction must be >= 0"),
        (dict(window=0), r"window must be > 0"),
    ],
)
def test_split_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split(np.arange(20.0), **kwargs)


@given(st.integers(1, 200), st.floats(0, 0.45), st.floats(0, 0.45))
@settings(max_examples=200, deadline=None, derandomize=True)
def test_split_parts_tile_the_series(T, val_fraction, test_fraction):
    values = np.arange(float(T))
    try:
        parts = split(values, val_fraction, test_fraction)
    except SeriesError:
        return
    assert np.concatenate(parts).tolist() == values.tolist()
    assert len(parts.test) == math.floor(T * test_fraction + 0.5)


# ---------------------------------------------------------------- Scaler


def test_scaler_standardizes_with_training_statistics():
    train = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0]])  # second column constant
    scaler = Scaler.fit(train)
    assert scaler.mean.tolist() == [2.0, 10.0]
    assert scaler.std.tolist() == [math.sqrt(2 / 3), 1.0]  # population std; constant -> 1
    scaled = scaler.transform(train)
    assert scaled[:, 0] == pytest.approx([-math.sqrt(1.5), 0, math.sqrt(1.5)])
    assert scaled[:, 1].tolist() == [0, 0, 0]
    np.testing.assert_allclose(scaler.inverse_transform(scaled), train)
    # one column of any shape, e.g. target predictions (N, horizon)
    pred = np.array([[0.0, 1.0]], dtype=np.float32)
    back = scaler.inverse_transform(pred, column=0)
    assert back.dtype == np.float32 and back.shape == (1, 2)
    np.testing.assert_allclose(back, [[2.0, 2.0 + math.sqrt(2 / 3)]], rtol=1e-7)
    assert scaler.transform(np.array([12.0]), column=1).tolist() == [2.0]


def test_scaler_cannot_leak_test_statistics():
    rng = np.random.default_rng(0)
    train, val, test = split(rng.normal(5, 2, size=(100, 2)), 0.1, 0.2)
    scaler = Scaler.fit(train)
    mean, std = scaler.mean.copy(), scaler.std.copy()
    scaled_test = scaler.transform(test * 100)  # wildly different data
    scaler.inverse_transform(scaled_test)
    assert np.array_equal(scaler.mean, mean) and np.array_equal(scaler.std, std)
    assert np.array_equal(mean, train.mean(axis=0)) and np.array_equal(std, train.std(axis=0))
    with pytest.raises(ValueError):
        scaler.mean[0] = 0.0  # read-only
    with pytest.raises(AttributeError):
        scaler.mean = np.zeros(2)  # frozen
    assert np.abs(scaler.transform(train).mean(axis=0)).max() < 1e-12


def test_scaler_dict_round_trip_through_json():
    scaler = Scaler.fit(np.array([[1.0, -4.0], [2.0, 8.0], [4.5, 0.5]]))
    data = json.loads(json.dumps(scaler.to_dict()))
    assert set(data) == {"mean", "std"} and all(type(x) is float for x in data["mean"])
    again = Scaler.from_dict(data)
    assert np.array_equal(again.mean, scaler.mean) and np.array_equal(again.std, scaler.std)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"mean": [1.0]}, 'expected a dict with lists "mean" and "std"'),
        ([1, 2], "not a scaler"),
        ({"mean": [1.0, 2.0], "std": [1.0]}, "same length"),
        ({"mean": [1.0], "std": [0.0]}, "positive finite stds"),
        ({"mean": [float("nan")], "std": [1.0]}, "finite means"),
    ],
)
def test_scaler_from_dict_rejects_foreign_data(data, message):
    with pytest.raises(SeriesError, match=message):
        Scaler.from_dict(data)


def test_scaler_errors():
    scaler = Scaler.fit(np.ones((4, 2)))
    with pytest.raises(SeriesError, match=r"fitted on 2 columns but got values of shape \(4, 3\)"):
        scaler.transform(np.ones((4, 3)))
    with pytest.raises(SeriesError, match=r"column must be in 0\.\.1, got 2"):
        scaler.inverse_transform(np.ones(3), column=2)
    with pytest.raises(SeriesError, match="NaN or infinite"):
        Scaler.fit(np.array([1.0, np.nan]))
    with pytest.raises(SeriesError, match="T >= 1"):
        Scaler.fit(np.zeros((0, 2)))
    one = Scaler.fit(np.array([1.0, 3.0]))  # (T,) is one column
    assert one.transform(np.array([1.0, 3.0])).tolist() == [-1.0, 1.0]


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40))
@settings(max_examples=150, deadline=None, derandomize=True)
def test_scaler_round_trip_property(xs):
    values = np.array(xs)
    scaler = Scaler.fit(values)
    np.testing.assert_allclose(
        scaler.inverse_transform(scaler.transform(values)), values, rtol=1e-9, atol=1e-6
    )


# ---------------------------------------------------------------- windows


def test_make_windows_shapes_and_contents():
    values = np.arange(20.0).reshape(10, 2)  # column 0: 0, 2, ..., 18; column 1: 1, 3, ..., 19
    X, Y = make_windows(values, window=3, horizon=2, target=1)
    assert X.shape == (6, 3, 2) and Y.shape == (6, 2)
    assert X.dtype == Y.dtype == np.float32
    assert X[0].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert Y[0].tolist() == [7, 9]
    assert X[-1].tolist() == [[10, 11], [12, 13], [14, 15]]
    assert Y[-1].tolist() == [17, 19]
    assert X.flags.c_contiguous and X.flags.writeable


def test_make_windows_univariate_and_exact_fit():
    X, Y = make_windows(np.array([1.0, 2, 3, 4]), window=3, horizon=1)
    assert X.shape == (1, 3, 1) and X[0, :, 0].tolist() == [1, 2, 3] and Y.tolist() == [[4]]


@pytest.mark.parametrize("T, window, horizon", [(4, 4, 1), (5, 3, 3), (0, 1, 1)])
def test_make_windows_too_short_states_both_lengths(T, window, horizon):
    with pytest.raises(SeriesError) as info:
        make_windows(np.zeros(T), window, horizon)
    assert str(info.value) == (
        f"the series has {T} time steps, fewer than window + horizon = "
        f"{window} + {horizon} = {window + horizon}; use a shorter window "
        "or horizon, or a longer series"
    )


def test_make_windows_argument_errors():
    with pytest.raises(ValueError, match="window must be > 0"):
        make_windows(np.zeros(5), 0)
    with pytest.raises(ValueError, match="horizon must be an integer"):
        make_windows(np.zeros(5), 2, 1.5)
    with pytest.raises(SeriesError, match=r"target must be a column index in 0\.\.1, got 2"):
        make_windows(np.zeros((5, 2)), 2, 1, target=2)
    with pytest.raises(SeriesError, match=r"\(T,\) or \(T, D\)"):
        make_windows(np.zeros((5, 2, 2)), 2)


@given(st.integers(1, 40), st.integers(1, 4), st.integers(1, 8), st.integers(1, 5), st.data())
@settings(max_examples=200, deadline=None, derandomize=True)
def test_windows_tile_the_series(T, D, window, horizon, data):
    target = data.draw(st.integers(0, D - 1))
    values = np.arange(T * D, dtype=np.float64).reshape(T, D)
    if T < window + horizon:
        with pytest.raises(SeriesError):
            make_windows(values, window, horizon, target)
        return
    X, Y = make_windows(values, window, horizon, target)
    N = T - window - horizon + 1
    assert X.shape == (N, window, D) and Y.shape == (N, horizon)
    for i in range(N):
        assert np.array_equal(X[i], values[i : i + window])
        assert np.array_equal(Y[i], values[i + window : i + window + horizon, target])


# ---------------------------------------------------------------- roll-out


def test_rollout_feeds_predictions_back():
    context = np.array([[1.0, 2.0], [3.0, 5.0]])
    seen = []

    def predict_next(batch):  # next = sum of the last two (Fibonacci-like)
        seen.append(batch.copy())
        return batch.sum(axis=1)

    out = rollout(predict_next, context, horizon=3)
    assert out.dtype == np.float32 and out.tolist() == [[3, 5, 8], [8, 13, 21]]
    assert seen[1].tolist() == [[2, 3], [5, 8]]
    assert context.tolist() == [[1, 2], [3, 5]]  # the caller's array is untouched


def test_rollout_keeps_a_3d_layout_and_matches_the_series():
    # a perfect one-step predictor of an arithmetic series rolls out the series itself
    values = np.arange(30.0)
    X, Y = make_windows(values, window=4, horizon=5)

    def predict_next(batch):
        assert batch.ndim == 3 and batch.shape[1:] == (4, 1)
        return (2 * batch[:, -1, 0] - batch[:, -2, 0])[:, None]  # (N, 1) is fine

    np.testing.assert_array_equal(rollout(predict_next, X, 5), Y)


def test_rollout_errors():
    with pytest.raises(SeriesError, match=r"univariate context .* got shape \(2, 3, 2\)"):
        rollout(lambda b: b[:, -1, 0], np.zeros((2, 3, 2)), 2)
    with pytest.raises(SeriesError, match=r"returned shape \(3,\) for 2 windows"):
        rollout(lambda b: np.zeros(3), np.zeros((2, 3)), 2)
    with pytest.raises(ValueError, match="horizon must be > 0"):
        rollout(lambda b: b[:, -1], np.zeros((2, 3)), 0)
