"""Covariates for forecasting: past columns, future columns known in advance, calendar
features, and several target series from one table (NumPy only).

A forecaster's inputs at time step t are, in this order (the names of :attr:`Series.names`):

- the target column (the one forecast);
- past covariates: other columns, known up to t (``realcons`` beside ``realgdp``);
- future covariates, known in advance for the whole horizon: given columns (a CSV that goes
  on past the target's last value) and calendar features (sine and cosine of the position in
  the season that the time labels' frequency fixes: day of week, day or month of the year,
  quarter). The model reads each future covariate ``c`` as ``horizon`` lead columns
  ``c[t+1] .. c[t+horizon]``, so the last step of a window holds the covariates of every step
  it forecasts, and the recurrent models need no change.

:func:`load_inputs` reads what a ``source`` (the JSON-able settings kept in checkpoints)
describes and gives one :class:`~dl.data.series.Series` per target; :class:`Inputs` records
which inputs a model needs and refuses data that lacks them.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from dl.data.series import (
    GAP_MARKERS,
    Series,
    SeriesError,
    _cell,
    _interpolate,
    _parse_column,
    _read_csv_rows,
    _series_from_rows,
    load_series,
)

DAY = 86400  # seconds
# frequency -> the calendar positions it encodes (name, period); the step's length decides
CALENDAR = {
    "hourly": (("hour_of_day", 24), ("day_of_week", 7)),
    "daily": (("day_of_week", 7), ("day_of_year", 365.25)),
    "weekly": (("day_of_year", 365.25),),
    "monthly": (("month_of_year", 12),),
    "quarterly": (("quarter_of_year", 4),),
}
ALL = "all"  # --targets all: every numeric column that is not otherwise used


# ---------------------------------------------------------------- calendar features


def parse_times(time, source: str = "the series") -> np.ndarray:
    """Time labels -> ``(T,)`` ``datetime64[s]``: ISO dates and times (``2001-12-29``,
    ``2001-12``, ``2001-12-29 10:00``) or quarters (``1959Q1``, the quarter's first day)."""
    if time is None:
        raise SeriesError(
            f"{source}: calendar features are computed from the time labels, and it has "
            "none; give its time column"
        )
    if any(not isinstance(label, str) for label in time):
        raise SeriesError(
            f"{source}: calendar features need dates as time labels (such as 2001-12-29, "
            f"2001-12 or 1959Q1); its labels are numbers ({time[0]}, ...): leave out the "
            "calendar features, or give a time column of dates"
        )
    out = np.empty(len(time), "datetime64[s]")
    for i, label in enumerate(time):
        text = label.strip()
        try:
            if len(text) == 6 and text[4] in "Qq" and text[5] in "1234":
                out[i] = np.datetime64(f"{text[:4]}-{3 * int(text[5]) - 2:02d}")
            else:
                out[i] = np.datetime64(text)
        except ValueError:
            raise SeriesError(
                f"{source}: time label {label!r} (step {i}) is not a date (such as "
                "2001-12-29, 2001-12 or 1959Q1); calendar features need dates"
            ) from None
    if len(out) > 1 and not (np.diff(out) > np.timedelta64(0, "s")).all():
        i = int(np.argmin(np.diff(out) > np.timedelta64(0, "s")))
        raise SeriesError(
            f"{source}: time labels must increase, but {time[i]!r} (step {i}) is followed "
            f"by {time[i + 1]!r}; sort the rows by time"
        )
    return out


def frequency(times: np.ndarray, source: str = "the series") -> str:
    """The frequency of ``(T,)`` ``datetime64[s]`` times from their median step: hourly, daily,
    weekly, monthly or quarterly (one of :data:`CALENDAR`)."""
    if len(times) < 2:
        raise SeriesError(f"{source}: one time label does not tell the frequency; give more")
    step = float(np.median(np.diff(times).astype(np.float64))) / DAY
    for name, low, high in (
        ("hourly", 0, 0.5),
        ("daily", 0.5, 3),
        ("weekly", 3, 14),
        ("monthly", 27, 32),
        ("quarterly", 85, 95),
    ):
        if low < step <= high:
            return name
    raise SeriesError(
        f"{source}: its time steps are {step:g} days apart, which is none of hourly, daily, "
        "weekly, monthly or quarterly, so there is no calendar season to encode; leave out "
        "the calendar features"
    )


def extend_times(times: np.ndarray, freq: str, extra: int) -> np.ndarray:
    """``times`` and ``extra`` steps after them: months added for monthly and quarterly
    data, the median step for the others."""
    steps = np.arange(1, extra + 1)
    if freq in ("monthly", "quarterly"):
        months = times.astype("datetime64[M]")
        after = months[-1] + (1 if freq == "monthly" else 3) * steps
        return np.concatenate([times, after.astype("datetime64[s]")])
    step = np.median(np.diff(times).astype(np.int64)).astype(np.int64)
    return np.concatenate([times, times[-1] + (step * steps).astype("timedelta64[s]")])


def position(times: np.ndarray, name: str) -> np.ndarray:
    """Where each time falls in the season ``name`` (a key of :data:`CALENDAR`'s pairs),
    ``(T,)`` float64 in [0, period)."""
    days = times.astype("datetime64[D]")
    if name == "hour_of_day":
        return (times - days).astype("timedelta64[h]").astype(np.float64)
    if name == "day_of_week":  # Monday 0 (1970-01-01 was a Thursday)
        return ((days.astype(np.int64) + 3) % 7).astype(np.float64)
    if name == "day_of_year":
        return (days - days.astype("datetime64[Y]")).astype(np.float64)
    month = (times.astype("datetime64[M]").astype(np.int64) % 12).astype(np.float64)
    return month if name == "month_of_year" else month // 3


def calendar_features(time, extra: int = 0, source: str = "the series"):
    """``(values, names)``: ``values: (T + extra, F)`` float64, the sine and cosine of each
    calendar position of the labels' :func:`frequency` (see :data:`CALENDAR`), for the T
    labels and ``extra`` steps after them; ``names``: F names such as ``month_of_year_sin``."""
    times = parse_times(time, source)
    freq = frequency(times, source)
    times = extend_times(times, freq, extra)
    columns, names = [], []
    for name, period in CALENDAR[freq]:
        angle = 2 * np.pi * position(times, name) / period
        columns += [np.sin(angle), np.cos(angle)]
        names += [f"{name}_sin", f"{name}_cos"]
    return np.stack(columns, axis=1), tuple(names)


# ---------------------------------------------------------------- future covariates


def with_future(series: Series, future: np.ndarray, names, horizon: int) -> Series:
    """``series`` with the lead columns of the future covariates appended: ``future:
    (T + k, F)`` known for the series' T steps and k >= horizon after; the column
    ``name[t+j]`` at step t holds ``future[t + j]``, j = 1..horizon."""
    T = len(series)
    if len(future) < T + horizon:
        raise SeriesError(
            f"{series.source}: the future covariates are known for {len(future) - T} steps "
            f"after the target's last value, and a forecast of {horizon} steps needs them "
            f"for {horizon}; add their values for the next {horizon} rows"
        )
    leads = [future[j : T + j, f] for f in range(future.shape[1]) for j in range(1, horizon + 1)]
    lead_names = [f"{name}[t+{j}]" for name in names for j in range(1, horizon + 1)]
    return dataclasses.replace(
        series,
        values=np.concatenate([series.values, np.stack(leads, axis=1)], axis=1),
        names=series.names + tuple(lead_names),
    )


def read_csv_future(
    path, columns, future_columns, horizon, time_column=None, interpolate=False, num_targets=1
):
    """``(series, future)``: the ``columns`` of a CSV file (see
    :func:`~dl.data.series.read_csv_series`) up to the last row that holds a value of one of
    the first ``num_targets`` (the targets; the rows after it hold the future), and
    the ``future_columns``, ``(T + horizon, F)`` float64. A future column must be known for
    the ``horizon`` rows after the series; its gaps and text are refused as a series
    column's are."""
    path = Path(path)
    header, rows, lines = _read_csv_rows(path)
    missing = [name for name in (*columns, *future_columns) if name not in header]
    if missing:
        raise SeriesError(
            f"{path}: no column {', '.join(map(repr, missing))}; available "
            f"columns: {', '.join(map(repr, header))}"
        )
    cells = lambda name, n=None: [_cell(row, header.index(name)) for row in rows[:n]]
    known = lambda name: max(
        (i + 1 for i, cell in enumerate(cells(name)) if cell.lower() not in GAP_MARKERS), default=0
    )
    end = max(known(name) for name in columns[:num_targets])
    series = _series_from_rows(
        path, header, rows[:end], lines[:end], list(columns), time_column, interpolate
    )
    for name in future_columns:
        if known(name) < end + horizon:
            last = f"line {lines[end - 1]}" if end else "the header"
            raise SeriesError(
                f"{path}: future covariate {name!r} is known for {max(0, known(name) - end)} "
                f"rows after the targets' last value ({last}), and a forecast of {horizon} "
                f"steps needs it for {horizon}; add its values for the next rows, or give "
                "it as a past covariate"
            )
    future = np.empty((end + horizon, len(future_columns)))
    for j, name in enumerate(future_columns):
        future[:, j] = _parse_column(path, name, cells(name, end + horizon), lines, interpolate)
    if end < len(rows):
        series = dataclasses.replace(
            series,
            source=f"{series.source}, the {len(rows) - end} rows after the targets' last "
            "value left out",
        )
    return series, _interpolate(future, np.arange(len(future), dtype=np.float64))[0]


# ---------------------------------------------------------------- several targets


def split_targets(series: Series, num_targets: int) -> list[Series]:
    """One series per target of ``series``, whose first ``num_targets`` columns are targets
    and the others shared inputs (past covariates, leads): ``[target_i, shared...]``."""
    shared = series.values[:, num_targets:]
    return [
        dataclasses.replace(
            series,
            values=np.concatenate([series.values[:, i : i + 1], shared], axis=1),
            names=(series.names[i],) + series.names[num_targets:],
            target=0,
            source=series.source if num_targets == 1 else f"{series.source}, {series.names[i]}",
        )
        for i in range(num_targets)
    ]


def numeric_columns(path, exclude) -> list[str]:
    """The columns of a CSV file whose first value is a number, but ``exclude``."""
    header, rows, _ = _read_csv_rows(Path(path))
    found = []
    for j, name in enumerate(header):
        first = next((c for c in (_cell(r, j) for r in rows) if c.lower() not in GAP_MARKERS), "")
        try:
            float(first)
        except ValueError:
            continue
        if name not in exclude:
            found.append(name)
    return found


@dataclasses.dataclass(frozen=True)
class Inputs:
    """Which inputs a model reads (kept in checkpoints): ``targets`` (one model per run; a
    global model when several), shared ``past`` columns, given ``future`` columns, and
    ``calendar`` feature names (empty without)."""

    targets: tuple[str, ...]
    past: tuple[str, ...] = ()
    future: tuple[str, ...] = ()
    calendar: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {name: list(value) for name, value in dataclasses.asdict(self).items()}

    def lead_columns(self, horizon: int) -> int:
        """How many of the last input columns are leads (:func:`with_future`): ``horizon``
        for each future covariate and calendar feature."""
        return horizon * (len(self.future) + len(self.calendar))

    @classmethod
    def from_dict(cls, data: dict) -> Inputs:
        return cls(
            **{
                name: tuple(data.get(name, ()))
                for name in ("targets", "past", "future", "calendar")
            }
        )

    def mismatch(self, data: Inputs) -> str | None:
        """What the inputs of ``data`` lack of these (or hold beyond them), in words; None
        when they are the same."""
        for kind, words in (
            ("targets", "target column"),
            ("past", "past covariate column"),
            ("future", "future covariate column"),
            ("calendar", "calendar feature"),
        ):
            ours, theirs = getattr(self, kind), getattr(data, kind)
            missing = [name for name in ours if name not in theirs]
            if missing:
                return f"lacks the {words} {', '.join(map(repr, missing))}, which the model reads"
            extra = [name for name in theirs if name not in ours]
            if extra or ours != theirs:
                return f"has the {words} {', '.join(map(repr, extra or theirs))}" + (
                    ", which the model does not read" if extra else " in another order"
                )
        return None


def refuse_twice(columns: list, future_columns: list) -> None:
    """Refuse a column named twice among targets and past columns, or both there and among
    the future columns."""
    twice = sorted(set(columns) & set(future_columns)) or sorted(
        {c for c in columns if columns.count(c) > 1}
    )
    if twice:
        raise SeriesError(
            f"column {', '.join(map(repr, twice))} is given twice; name each column once, "
            "as a target, a past or a future covariate"
        )


def load_inputs(source: dict, horizon: int) -> tuple[list[Series], Inputs]:
    """``(series, inputs)``: one series per target of ``source`` (settings as kept in
    checkpoints: ``series`` or ``csv`` with ``column``, ``time_column``, ``interpolate``, and
    optionally ``targets``, ``future_columns``, ``calendar``), each with the shared past
    columns and the leads of the future covariates for ``horizon`` steps
    (:func:`with_future`), and the :class:`Inputs` they hold.

    Without ``targets`` the first of ``column`` is the target and the rest past columns;
    with ``targets`` (a list, or ``'all'`` numeric columns of the CSV not otherwise used),
    ``column`` lists past columns only."""
    targets = source.get("targets")
    future_columns = list(source.get("future_columns") or ())
    if "series" in source:
        if targets and source["series"] != "macrodata":
            raise SeriesError(
                f"series {source['series']!r} has one column; several targets come from "
                "macrodata or a CSV file"
            )
        refuse_twice(list(targets or []), [])
        base = load_series(source["series"], **({"columns": targets} if targets else {}))
    else:
        past = list(source.get("column") or ())
        if targets == ALL:
            used = set(past) | set(future_columns) | {source.get("time_column")}
            targets = numeric_columns(source["csv"], used)
            if not targets:
                raise SeriesError(
                    f"{source['csv']}: no numeric column is left to forecast (besides "
                    f"{', '.join(sorted(c for c in used if c))}); name the targets"
                )
        columns = list(targets or []) + past
        refuse_twice(columns, future_columns)
        time_column, interpolate = source.get("time_column"), source.get("interpolate", False)
        base, future = read_csv_future(
            source["csv"],
            columns,
            future_columns,
            horizon,
            time_column,
            interpolate,
            len(targets or [None]),
        )
    num_targets = len(targets) if targets else 1
    parts, names, calendar = [], list(future_columns), ()
    if future_columns:
        parts.append(future)
    if source.get("calendar"):
        values, calendar = calendar_features(base.time, horizon, base.source)
        parts.append(values)
        names += calendar
    inputs = Inputs(
        base.names[:num_targets], base.names[num_targets:], tuple(future_columns), calendar
    )
    if parts:
        base = with_future(base, np.concatenate(parts, axis=1), names, horizon)
    return split_targets(base, num_targets), inputs
