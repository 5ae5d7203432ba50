"""Time series for forecasting: sources, time-ordered splits, scaling and windows (NumPy only).

Sources give a :class:`Series`: the book's noisy sine (:func:`synthetic_sine`), three real
series that ship inside statsmodels and load offline (:func:`load_sunspots`,
:func:`load_co2`, :func:`load_macrodata`; needs ``pip install 'dl-rnn[forecast]'``), and any
CSV file (:func:`read_csv_series`). :func:`load_series` picks a built-in source by name.

The pipeline a forecaster uses::

    s = load_series('co2')
    parts = split(s.values, val_fraction=0.1, test_fraction=0.2, window=104, horizon=4)
    scaler = Scaler.fit(parts.train)                 # statistics of the training part only
    X, Y = make_windows(scaler.transform(parts.train), window=104, horizon=4, target=s.target)
    # X: (N, 104, D) float32 inputs, Y: (N, 4) float32 next values of the target column

Models predict in scaled units; ``scaler.inverse_transform(pred, column=s.target)`` maps
predictions of the target column back.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import inspect
import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dl.errors import InputError, MissingDependencyError
from dl.validate import check_positive

FORECAST_EXTRA = "pip install 'dl-rnn[forecast]'"
MACRO_COLUMNS = ("realgdp", "realcons", "realinv")  # load_macrodata's default columns
GAP_MARKERS = frozenset({"", "nan", "na", "n/a", "#n/a", "null", "none"})  # CSV cells read as gaps
_SHOWN = 5  # bad rows and values quoted in an error message


class SeriesError(InputError):
    """A series, file or argument cannot be used; the message names it and says what to do."""


@dataclass(frozen=True, eq=False)
class Series:
    """A (multivariate) time series and what is known about it.

    values: (T, D) float64, one row per time step, one column per variable.
    names: the D column names. target: index of the column to forecast.
    time: T labels of the time steps (strings such as ``'1958-03-29'``, or numbers), or None.
    interpolated: how many values were missing and filled by linear interpolation.
    source: where the series came from, in words. period: the seasonal period when it is
    fixed by the calendar (52 for weekly data with a yearly cycle, 4 for quarterly data),
    else None, and a seasonal method infers it from the data.
    """

    values: np.ndarray
    names: tuple[str, ...]
    target: int = 0
    time: tuple | None = None
    interpolated: int = 0
    source: str = ""
    period: int | None = None

    def __post_init__(self):
        values = np.array(self.values, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[0] == 0:
            raise SeriesError(f"Series values must be (T, D) with T >= 1, got shape {values.shape}")
        values.setflags(write=False)
        names = tuple(str(name) for name in self.names)
        if len(names) != values.shape[1]:
            raise SeriesError(
                f"Series has {values.shape[1]} columns but {len(names)} names "
                f"{names}; give one name per column"
            )
        if not (isinstance(self.target, numbers.Integral) and 0 <= self.target < len(names)):
            raise SeriesError(
                f"Series target must be a column index in 0..{len(names) - 1}, got {self.target!r}"
            )
        time = None if self.time is None else tuple(self.time)
        if time is not None and len(time) != len(values):
            raise SeriesError(f"Series has {len(values)} time steps but {len(time)} time labels")
        if self.period is not None:
            check_positive("period", self.period, integer=True)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "target", int(self.target))
        object.__setattr__(self, "time", time)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def target_name(self) -> str:
        return self.names[self.target]

    @property
    def target_values(self) -> np.ndarray:
        """The target column, (T,) float64."""
        return self.values[:, self.target]

    def metadata(self) -> dict:
        """Everything but the values, and the values' SHA-256 (float64, C order), as plain
        JSON-able data (for a checkpoint's JSON)."""
        return {
            "names": list(self.names),
            "target": self.target,
            "length": len(self),
            "interpolated": self.interpolated,
            "source": self.source,
            "period": self.period,
            "first_time": None if self.time is None else self.time[0],
            "last_time": None if self.time is None else self.time[-1],
            "sha256": hashlib.sha256(np.ascontiguousarray(self.values).tobytes()).hexdigest(),
        }


# ---------------------------------------------------------------- sources


def synthetic_sine(T: int = 1000, noise: float = 0.2, seed: int | None = 0) -> Series:
    """The book's series x_t = sin(0.01 t) + N(0, noise^2) for t = 1..T (d2l, sequence models).

    `noise` is the standard deviation of the Gaussian noise; `seed` fixes it (None: fresh).
    Its period, 2 pi / 0.01 = 628.3 steps, is not a whole number, so ``period`` is None.
    """
    check_positive("T", T, integer=True)
    check_positive("noise", noise, allow_zero=True)
    time = np.arange(1, T + 1)
    rng = np.random.default_rng(seed)
    x = np.sin(0.01 * time) + rng.normal(0.0, noise, size=T)
    return Series(
        x[:, None],
        ("x",),
        time=tuple(time.tolist()),
        source=f"synthetic: sin(0.01 t) + N(0, {noise:g}^2), t = 1..{T}, seed={seed}",
    )


def _statsmodels_data(name) -> dict[str, np.ndarray]:
    """The columns of statsmodels' bundled data set ``name``, ``{column: (T,) float64}`` in
    the file's order (NaN where a value is missing), read from the CSV file in the installed
    package without importing statsmodels, which costs half a second (pandas with it)."""
    spec = importlib.util.find_spec("statsmodels")
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = Path(spec.submodule_search_locations[0], "datasets", name, f"{name}.csv")
    if path is None or not path.is_file():
        raise MissingDependencyError(
            f"the {name!r} series ships with statsmodels, which is not installed: {FORECAST_EXTRA}"
        )
    with open(path, newline="") as f:
        header, *rows = csv.reader(f)
    values = np.array([[float(cell) if cell else np.nan for cell in row] for row in rows])
    return {column: values[:, i] for i, column in enumerate(header)}


def load_sunspots() -> Series:
    """Yearly sunspot activity (SUNACTIVITY), 1700-2008: 309 values, time = the years.

    The solar cycle is about 11 years but not fixed, so ``period`` is None.
    """
    data = _statsmodels_data("sunspots")
    years = tuple(int(year) for year in data["YEAR"])
    return Series(
        data["SUNACTIVITY"][:, None],
        ("SUNACTIVITY",),
        time=years,
        source="statsmodels sunspots: yearly sunspot activity 1700-2008",
    )


def load_co2() -> Series:
    """Weekly atmospheric CO2 (ppm) at Mauna Loa, 1958-03-29 to 2001-12-29: 2,284 weeks.

    The 59 missing weeks are filled by linear interpolation in time (``interpolated == 59``);
    time labels are ISO dates; ``period`` is 52 (the yearly cycle in weeks).
    """
    data = _statsmodels_data("co2")
    first = str(int(data["date"][0]))  # YYYYMMDD; the weeks follow it (statsmodels' index)
    start = np.datetime64(f"{first[:4]}-{first[4:6]}-{first[6:]}")
    days = start + 7 * np.arange(len(data["co2"]))
    values, filled = _interpolate(data["co2"][:, None], days.astype(np.int64).astype(np.float64))
    return Series(
        values,
        ("co2",),
        time=tuple(str(day) for day in days),
        interpolated=filled,
        period=52,
        source="statsmodels co2: weekly Mauna Loa CO2 (ppm) 1958-2001, "
        f"{filled} missing weeks interpolated linearly in time",
    )


def load_macrodata(columns: Sequence[str] = MACRO_COLUMNS, target: str | None = None) -> Series:
    """US quarterly macroeconomic data, 1959Q1-2009Q3: 203 quarters, ``period`` 4.

    `columns`: which of the data set's columns to keep (default real GDP, consumption and
    investment); `target`: the one to forecast (default the first of `columns`).
    Time labels read ``'1959Q1'``.
    """
    data = _statsmodels_data("macrodata")
    available = list(data)
    columns = [columns] if isinstance(columns, str) else list(columns)
    if not columns:
        raise SeriesError(
            f"load_macrodata needs at least one column; available: {', '.join(available)}"
        )
    unknown = [c for c in columns if c not in available]
    if unknown:
        raise SeriesError(
            f"macrodata has no column {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(available)}"
        )
    target = columns[0] if target is None else target
    if target not in columns:
        raise SeriesError(
            f"target {target!r} is not among the chosen columns {columns}; "
            "add it to columns or choose one of them"
        )
    time = tuple(f"{int(y)}Q{int(q)}" for y, q in zip(data["year"], data["quarter"]))
    return Series(
        np.stack([data[column] for column in columns], axis=1),
        tuple(columns),
        target=columns.index(target),
        time=time,
        period=4,
        source=f"statsmodels macrodata: US quarterly 1959Q1-2009Q3, columns {', '.join(columns)}",
    )


SERIES_LOADERS: dict[str, Callable[..., Series]] = {
    "sine": synthetic_sine,
    "sunspots": load_sunspots,
    "co2": load_co2,
    "macrodata": load_macrodata,
}


def load_series(name: str, **options) -> Series:
    """The built-in series `name` (one of ``SERIES_LOADERS``); `options` go to its loader,
    e.g. ``load_series('macrodata', columns=['realgdp', 'unemp'], target='unemp')``."""
    if name not in SERIES_LOADERS:
        raise SeriesError(
            f"unknown series {name!r}; known series: {', '.join(SERIES_LOADERS)}; "
            "for your own data use read_csv_series(path, column)"
        )
    loader = SERIES_LOADERS[name]
    accepted = list(inspect.signature(loader).parameters)
    unknown = [key for key in options if key not in accepted]
    if unknown:
        raise SeriesError(
            f"series {name!r} takes no option {', '.join(map(repr, unknown))}; "
            f"its options: {', '.join(accepted) or 'none'}"
        )
    return loader(**options)


# ---------------------------------------------------------------- CSV files


def read_csv_series(
    path: str | os.PathLike,
    column: str | Sequence[str],
    time_column: str | None = None,
    interpolate: bool = False,
) -> Series:
    """A series from a CSV file with a header line and one row per time step, in time order.

    `column`: the name of the column to forecast, or a list of names (the first is the
    target, all are inputs). `time_column`: a column of time labels (kept as numbers when all
    are numbers, else as text). Missing values (empty cells or NaN, NA, N/A, null, none)
    are refused with their row numbers unless `interpolate` is True: then they are filled by
    linear interpolation between neighbouring rows (rows are taken as evenly spaced; gaps at
    the start or end take the nearest value) and ``Series.interpolated`` counts them.
    Row numbers in messages are line numbers of the file, the header being line 1.
    A constant column loads; metrics that need variation say so themselves.
    Raises SeriesError (an InputError) naming the file and the fix.
    """
    path = Path(path)
    columns = [column] if isinstance(column, str) else list(column)
    if not columns:
        raise SeriesError(f"{path}: no column given; pass the name of the column to forecast")
    header, rows, lines = _read_csv_rows(path)
    return _series_from_rows(path, header, rows, lines, columns, time_column, interpolate)


def _series_from_rows(path, header, rows, lines, columns, time_column, interpolate) -> Series:
    """:func:`read_csv_series` of the rows read by :func:`_read_csv_rows`."""
    wanted = columns + ([time_column] if time_column is not None else [])
    missing = [name for name in wanted if name not in header]
    if missing:
        raise SeriesError(
            f"{path}: no column {', '.join(map(repr, missing))}; available "
            f"columns: {', '.join(map(repr, header))}"
        )
    values = np.empty((len(rows), len(columns)), dtype=np.float64)
    for j, name in enumerate(columns):
        values[:, j] = _parse_column(
            path, name, [_cell(row, header.index(name)) for row in rows], lines, interpolate
        )
    filled = int(np.isnan(values).sum())
    if filled:
        values, _ = _interpolate(values, np.arange(len(values), dtype=np.float64))
    time = None
    if time_column is not None:
        time = _time_labels([_cell(row, header.index(time_column)) for row in rows])
    return Series(
        values,
        tuple(columns),
        time=time,
        interpolated=filled,
        source=f"CSV file {path}" + (f", {filled} missing values interpolated" if filled else ""),
    )


def _read_csv_rows(path):
    """(header cells, data rows, 1-based line number where each row starts); clear errors."""
    if path.is_dir():
        raise SeriesError(f"{path} is a directory; pass a CSV file")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header, rows, lines, line = None, [], [], 1
            for record in reader:
                if record and any(cell.strip() for cell in record):
                    if header is None:
                        header = [cell.strip() for cell in record]
                    else:
                        rows.append(record)
                        lines.append(line)
                line = reader.line_num + 1
    except FileNotFoundError:
        raise SeriesError(f"{path}: no such file; check the path") from None
    except PermissionError:
        raise SeriesError(f"{path}: not readable; check its permissions") from None
    except UnicodeDecodeError as err:
        raise SeriesError(
            f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x}); save it as UTF-8 CSV"
        ) from None
    except csv.Error as err:
        raise SeriesError(
            f"{path}: not a readable CSV file (line {reader.line_num}: {err}); "
            "check the quoting and that it is a text file"
        ) from None
    if header is None:
        raise SeriesError(
            f"{path}: the file is empty; give a CSV file with a header line and "
            "one row per time step"
        )
    if not rows:
        raise SeriesError(f"{path}: no data rows after the header line; add one row per time step")
    return header, rows, lines


def _cell(row, index):
    """The stripped cell `index` of `row`; a short row's missing cells are empty."""
    return row[index].strip() if index < len(row) else ""


def _parse_column(path, name, cells, lines, interpolate):
    """(T,) float64 of the cells of column `name`, NaN at gaps; errors name the rows."""
    out = np.full(len(cells), np.nan)
    bad, gaps = [], []
    for i, cell in enumerate(cells):
        if cell.lower() in GAP_MARKERS:
            gaps.append(i)
            continue
        try:
            number = float(cell)
        except ValueError:
            number = math.inf
        if not math.isfinite(number):
            bad.append(i)
        else:
            out[i] = number
    if bad:
        raise SeriesError(
            f"{path}: column {name!r} has {len(bad)} values that are not finite "
            f"numbers, at rows {_rows(bad, lines)}: "
            f"{', '.join(repr(cells[i]) for i in bad[:_SHOWN])}"
            f"{' ...' if len(bad) > _SHOWN else ''}; "
            "fix or remove those rows"
        )
    if len(gaps) == len(cells):
        raise SeriesError(f"{path}: column {name!r} has no values; choose a column with numbers")
    if gaps and not interpolate:
        raise SeriesError(
            f"{path}: column {name!r} has {len(gaps)} missing values (empty or NaN) "
            f"at rows {_rows(gaps, lines)}; fill them, remove those rows, or pass "
            "interpolate=True to fill them by linear interpolation"
        )
    return out


def _rows(indices, lines):
    """The file line numbers of the first few data rows `indices`, as text."""
    shown = ", ".join(str(lines[i]) for i in indices[:_SHOWN])
    return shown + (f" and {len(indices) - _SHOWN} more" if len(indices) > _SHOWN else "")


def _time_labels(cells):
    """Numbers (ints when whole) when every cell is a finite number, else the text."""
    try:
        parsed = [float(cell) for cell in cells]
    except ValueError:
        return tuple(cells)
    if not all(math.isfinite(x) for x in parsed):
        return tuple(cells)
    return tuple(int(x) if x.is_integer() else x for x in parsed)


def _interpolate(values, times):
    """Fill the NaNs of each column of (T, D) `values` linearly in `times` (T,); the ends
    take the nearest value. Returns (filled copy, number of values filled)."""
    values = np.array(values, dtype=np.float64)
    gaps = np.isnan(values)
    for j in range(values.shape[1]):
        known = ~gaps[:, j]
        if gaps[:, j].any() and known.any():
            values[gaps[:, j], j] = np.interp(times[gaps[:, j]], times[known], values[known, j])
    return values, int(gaps.sum())


# ---------------------------------------------------------------- splits and scaling


class Split(NamedTuple):
    """Consecutive parts of a series in time order: train, then val, then test."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split(
    values,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    *,
    window: int = 1,
    horizon: int = 1,
) -> Split:
    """Cut `values` (T,) or (T, D) (or a Series) into train, val and test parts, in time order.

    The last ``floor(T * test_fraction + 0.5)`` steps are the test part, the
    ``floor(T * val_fraction + 0.5)`` before them the validation part (halves round up, not to
    even as Python's ``round`` does), the rest the training part (no shuffling: the future
    never leaks into training). A fraction of 0 gives an empty part.
    Every non-empty part must hold at least ``window + horizon`` steps so that
    :func:`make_windows` makes at least one window from it alone; otherwise SeriesError.
    (To forecast the first steps of a part, prepend the last `window` steps of the part
    before it: ``make_windows(np.concatenate([train[-window:], test]), ...)``.)
    """
    values = np.asarray(values.values if isinstance(values, Series) else values)
    check_positive("window", window, integer=True)
    check_positive("horizon", horizon, integer=True)
    for name, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        check_positive(name, fraction, allow_zero=True)
        if fraction >= 1:
            raise SeriesError(f"{name} must be < 1, got {fraction!r}")
    if val_fraction + test_fraction >= 1:
        raise SeriesError(
            f"val_fraction + test_fraction must be < 1 to leave a training part, "
            f"got {val_fraction!r} + {test_fraction!r}"
        )
    if values.ndim not in (1, 2):
        raise SeriesError(f"split needs values of shape (T,) or (T, D), got {values.shape}")
    T, need = len(values), window + horizon
    n_test = math.floor(T * test_fraction + 0.5)
    n_val = math.floor(T * val_fraction + 0.5)
    n_train = T - n_val - n_test
    for part, n, fraction in (
        ("train", n_train, None),
        ("val", n_val, val_fraction),
        ("test", n_test, test_fraction),
    ):
        if n < need and (fraction is None or fraction > 0):
            share = f"{1 - val_fraction - test_fraction:g}" if fraction is None else f"{fraction:g}"
            raise SeriesError(
                f"the {part} part would have {n} time steps ({share} of {T}), fewer than window + "
                f"horizon = {window} + {horizon} = {need}; use a longer series, a shorter window "
                "or horizon" + ("" if fraction is None else f", or a larger {part}_fraction")
            )
    return Split(values[:n_train], values[n_train : n_train + n_val], values[n_train + n_val :])


@dataclass(frozen=True, eq=False)
class Scaler:
    """Standardization per column, (x - mean) / std, with statistics of the training part only.

    mean, std: (D,) float64, read-only. ``std`` is the population standard deviation
    (ddof=0); a column whose training values are all equal gets std 1, so it maps to
    x - mean (0 on the training part) instead of dividing by zero.
    Make one with ``Scaler.fit(train)``; transforming other data never changes it.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        mean = np.array(self.mean, dtype=np.float64).reshape(-1)
        std = np.array(self.std, dtype=np.float64).reshape(-1)
        if mean.shape != std.shape or mean.size == 0:
            raise SeriesError(
                f"Scaler needs mean and std of the same length >= 1, got "
                f"{mean.size} and {std.size} values"
            )
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise SeriesError(
                f"Scaler needs finite means and positive finite stds, got mean "
                f"{mean.tolist()} and std {std.tolist()}"
            )
        mean.setflags(write=False)
        std.setflags(write=False)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def fit(cls, train) -> Scaler:
        """Mean and std of each column of `train` (T,) or (T, D), T >= 1, all finite."""
        train = np.asarray(train, dtype=np.float64)
        if train.ndim == 1:
            train = train[:, None]
        if train.ndim != 2 or len(train) == 0:
            raise SeriesError(
                f"Scaler.fit needs a (T, D) training part with T >= 1, got shape {train.shape}"
            )
        if not np.isfinite(train).all():
            raise SeriesError(
                "Scaler.fit got NaN or infinite training values; fill or interpolate them first"
            )
        std = train.std(axis=0)
        std[np.ptp(train, axis=0) == 0] = 1.0  # a constant column: no scaling
        return cls(train.mean(axis=0), std)

    @property
    def num_columns(self) -> int:
        return self.mean.size

    def transform(self, values, column: int | None = None) -> np.ndarray:
        """(values - mean) / std. `values`: (T, D), or (T,) when D == 1, or, with `column`,
        any shape scaled with that column's statistics. Float32 stays float32."""
        return self._apply(values, column, inverse=False)

    def inverse_transform(self, values, column: int | None = None) -> np.ndarray:
        """values * std + mean; e.g. target predictions (N, horizon) with ``column=target``."""
        return self._apply(values, column, inverse=True)

    def _apply(self, values, column, inverse):
        values = np.asarray(values)
        dtype = values.dtype if values.dtype in (np.float32, np.float64) else np.float64
        if column is not None:
            if not (isinstance(column, numbers.Integral) and 0 <= column < self.num_columns):
                raise SeriesError(f"column must be in 0..{self.num_columns - 1}, got {column!r}")
            mean, std = self.mean[column], self.std[column]
        elif values.ndim == 2 and values.shape[1] == self.num_columns:
            mean, std = self.mean, self.std
        elif values.ndim == 1 and self.num_columns == 1:
            mean, std = self.mean[0], self.std[0]
        else:
            raise SeriesError(
                f"the scaler was fitted on {self.num_columns} columns but got "
                f"values of shape {values.shape}; pass (T, {self.num_columns}) "
                "values, or column= to scale one column"
            )
        out = values * std + mean if inverse else (values - mean) / std
        return out.astype(dtype, copy=False)

    def to_dict(self) -> dict:
        """``{'mean': [...], 'std': [...]}`` of plain floats, for JSON."""
        return {"mean": [float(x) for x in self.mean], "std": [float(x) for x in self.std]}

    @classmethod
    def from_dict(cls, data) -> Scaler:
        """The scaler of a :meth:`to_dict` result (for example read back from JSON)."""
        if not (isinstance(data, dict) and {"mean", "std"} <= data.keys()):
            raise SeriesError(
                f'not a scaler: expected a dict with lists "mean" and "std" as '
                f"written by Scaler.to_dict(), got {data!r}"
            )
        return cls(data["mean"], data["std"])


# ---------------------------------------------------------------- windows


def make_windows(
    values, window: int, horizon: int = 1, target: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Supervised pairs from a series: each `window` consecutive steps -> the next `horizon`
    values of column `target`.

    values: (T, D) or (T,). Returns X: (N, window, D) float32 with X[i] = values[i : i+window]
    and Y: (N, horizon) float32 with Y[i] = values[i+window : i+window+horizon, target],
    N = T - window - horizon + 1. Raises SeriesError when T < window + horizon.
    """
    check_positive("window", window, integer=True)
    check_positive("horizon", horizon, integer=True)
    values = np.asarray(values.values if isinstance(values, Series) else values, dtype=np.float64)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2:
        raise SeriesError(f"make_windows needs values of shape (T,) or (T, D), got {values.shape}")
    T, D = values.shape
    if not (isinstance(target, numbers.Integral) and 0 <= target < D):
        raise SeriesError(f"target must be a column index in 0..{D - 1}, got {target!r}")
    if T < window + horizon:
        raise SeriesError(
            f"the series has {T} time steps, fewer than window + horizon = "
            f"{window} + {horizon} = {window + horizon}; use a shorter window or "
            "horizon, or a longer series"
        )
    view = np.lib.stride_tricks.sliding_window_view
    X = view(values[: T - horizon], window, axis=0).transpose(0, 2, 1)  # (N, window, D)
    Y = view(values[window:, target], horizon)  # (N, horizon)
    return np.ascontiguousarray(X, dtype=np.float32), np.ascontiguousarray(Y, dtype=np.float32)


def rollout(predict_next: Callable, context, horizon: int) -> np.ndarray:
    """Autoregressive multi-step forecast of a univariate series with a one-step predictor.

    context: (N, window) or (N, window, 1), the last `window` values before each forecast.
    predict_next(batch) takes a batch of that same layout and returns the next value of
    each row (N values, any shape, anything ``np.asarray`` accepts: move GPU tensors to
    the CPU). Each prediction is appended to the window (the oldest value dropped) and fed
    back, as in the book's k-step-ahead prediction. Returns (N, horizon) float32.
    """
    check_positive("horizon", horizon, integer=True)
    batch = np.array(context, dtype=np.float32)
    if not (batch.ndim == 2 or (batch.ndim == 3 and batch.shape[2] == 1)) or batch.size == 0:
        raise SeriesError(
            f"rollout needs a univariate context (N, window) or (N, window, 1), "
            f"got shape {batch.shape}; for several columns forecast all "
            "of them or train a model that predicts the whole horizon"
        )
    n = batch.shape[0]
    out = np.empty((n, horizon), dtype=np.float32)
    for step in range(horizon):
        pred = np.asarray(predict_next(batch), dtype=np.float32)
        if pred.size != n:
            raise SeriesError(
                f"predict_next returned shape {pred.shape} for {n} windows; it "
                f"must return one next value per window"
            )
        out[:, step] = pred.reshape(n)
        batch = np.roll(batch, -1, axis=1)
        batch[:, -1] = out[:, step].reshape((n,) + batch.shape[2:])
    return out
