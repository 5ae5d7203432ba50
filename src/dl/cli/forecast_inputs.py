"""``dl forecast``'s covariate and several-series flags: what they add to the data source,
what a saved run's model reads (:class:`dl.data.covariates.Inputs`), and the refusal of data
that lacks it."""

from __future__ import annotations

from dl.cli.options import UsageError, list_of
from dl.data.covariates import ALL, Inputs


def add_arguments(group) -> None:
    group.add_argument(
        "--targets",
        type=list_of(str),
        default=None,
        help="forecast several columns with one global model, comma-separated (or 'all' "
        "numeric columns of the CSV); each is scaled by its own training part; --column then "
        "names past covariates shared by all",
    )
    group.add_argument(
        "--future-columns",
        type=list_of(str),
        default=None,
        help="CSV columns known in advance, comma-separated: the model reads their values "
        "for each step it forecasts, so they must go on --horizon rows past the target's last",
    )
    group.add_argument(
        "--calendar",
        action="store_true",
        default=None,
        help="add the calendar as future covariates: sine and cosine of the day of week, day "
        "or month of the year or quarter, as the time labels' frequency fixes",
    )


def options(args, csv: bool) -> dict:
    """The source settings of the flags given (nothing for those not given)."""
    targets = args.targets
    if targets and ALL in targets:
        if targets != [ALL] or not csv:
            raise UsageError(
                "--targets all takes every numeric column of a --csv file; give it alone"
            )
        targets = ALL
    given = {"targets": targets, "future_columns": args.future_columns, "calendar": args.calendar}
    return {key: value for key, value in given.items() if value}


def run_inputs(meta: dict) -> Inputs:
    """What the model of a saved run reads (a run from before covariates: its columns)."""
    if "inputs" in meta:
        return Inputs.from_dict(meta["inputs"])
    names = meta["series"]["names"]
    return Inputs(tuple(names[:1]), tuple(names[1:]))


def fill_from_run(args, meta: dict) -> None:
    """New data for a saved run (``--csv`` or ``--series`` with ``--from``): the flags left out
    take the run's inputs (columns, future columns, calendar, time column)."""
    if args.csv is None and args.series is None:
        return
    run = run_inputs(meta)
    if args.calendar is None and run.calendar:
        args.calendar = True
    if args.series is not None:
        if args.targets is None and len(run.targets) > 1:
            args.targets = list(run.targets)
        return
    if args.targets is None and args.column is None:
        if len(run.targets) > 1:
            args.targets, args.column = list(run.targets), list(run.past) or None
        else:
            args.column = [*run.targets, *run.past]
    if args.future_columns is None and run.future:
        args.future_columns = list(run.future)
    if args.time_column is None:
        args.time_column = meta["data"].get("time_column")
    refuse_moved(args, run)


def refuse_moved(args, run: Inputs) -> None:
    """Refuse a column given as a future covariate that the run's model reads as a target or
    past covariate, or the other way round (one of the two taken from the run), naming it;
    the data layer refuses other columns given twice."""
    future = set(args.future_columns or ())
    known = {*run.targets, *run.past, *run.future}
    moved = [c for c in [*(args.targets or ()), *(args.column or ())] if c in future & known]
    if moved:
        name = moved[0]
        if name in run.future:
            read, flags = "a future covariate", "--column and --targets"
        else:
            read = "a target" if name in run.targets else "a past covariate"
            flags = "--future-columns"
        raise UsageError(
            f"--from {args.from_run}: its model reads column {name!r} as {read}; leave it out "
            f"of {flags} (the run's inputs are taken by default)"
        )


def check(run, meta: dict, inputs: Inputs) -> None:
    """Refuse data whose inputs are not those the model of ``run`` reads, naming them."""
    wanted = run_inputs(meta)
    wrong = wanted.mismatch(inputs)
    if wrong:
        reads = "; ".join(
            f"{kind} {', '.join(names)}" for kind, names in wanted.to_dict().items() if names
        )
        raise UsageError(
            f"--from {run}: the data {wrong}; give data with the inputs the model was trained "
            f"on ({reads})"
        )
