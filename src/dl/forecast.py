"""Time-series forecasting with the chapter's recurrent cells, written once for every framework.

:func:`forecast_forward` runs the stacked layers of :mod:`dl.lm` over a window of real values
and maps the last step's hidden state to the forecast; :func:`fit` is the one training loop
(shuffled minibatches, MSE on scaled values, early stopping), driven through a small
per-backend adapter (:class:`Backend`) that knows tensors only. :func:`prepare` cuts a
:class:`~dl.data.series.Series` into scaled training and validation windows, :func:`evaluate`
scores a fitted model beside the baselines on the test part in original units, and
:func:`select` picks hyperparameters by the validation part alone.

Levels (``ForecastConfig.relative``, :data:`RELATIVE`): a ``none`` model forecasts the scaled
values themselves; a ``target`` model forecasts their distance from the window's last value of
the target (its untrained forecast is the naive one, and a series that leaves its training
range is forecast from where it is); a ``window`` model also reads its past inputs as distances
from each column's last value in the window, so it sees the window's shape and not its level
(trending series). The level is added inside :func:`forecast_forward`, so every framework,
loss and forecast sees values on the scaled axis.

Two modes: ``direct`` models output the whole horizon at once (``num_outputs = horizon``);
``autoregressive`` models predict one step and are rolled out (:func:`dl.data.series.rollout`).

Shape letters: B = windows in a batch, W = window length, D = variables, H = num_hiddens,
Q = num_outputs.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from dl import intervals, lm
from dl.baselines import MeanForecaster, NaiveForecaster, SeasonalNaiveForecaster, infer_period
from dl.data.series import Scaler, Series, SeriesError, make_windows, rollout, split
from dl.errors import InputError
from dl.metrics import mae, mase, mase_undefined_reason, rmse, smape
from dl.optim import NAMES as OPTIMIZERS
from dl.optim import OptimizerConfig
from dl.train import DivergedError
from dl.validate import check_positive

MODES = ("direct", "autoregressive")
RELATIVE = ("none", "target", "window")  # what a model's outputs and inputs are relative to
SELECT_GRID = {"num_hiddens": (16, 32, 64), "lr": (0.003, 0.01)}  # what --select tries


@dataclasses.dataclass(frozen=True)
class ForecastConfig(lm.RecurrentShape):
    """What defines a forecasting model's parameters and computation (stored in checkpoints)."""

    cell: str = "lstm"  # rnn | gru | lstm
    num_inputs: int = 1  # D: variables per time step
    num_hiddens: int = 32  # H: units per layer
    num_layers: int = 1  # stacked recurrent layers
    dropout: float = 0.0  # on each layer's outputs but the last, while training
    output_tanh: bool = True  # lstm only: False gives H = O * C
    num_outputs: int = 1  # Q: the horizon (direct) or 1 (autoregressive)
    quantiles: tuple[float, ...] = ()  # levels forecast (dl.intervals); none: a point forecast
    likelihood: str | None = None  # 'gaussian': a mean and scale per step (dl.intervals)
    quantile_head: str = "offsets"  # outputs -> quantiles: dl.intervals.QUANTILE_HEADS
    relative: str = "none"  # none | target | window: see RELATIVE and the module's docstring
    target: int = 0  # the input column forecast (whose last value relative models add back)
    num_leads: int = 0  # the last inputs are future covariates' leads ('window' keeps them)

    def __post_init__(self):
        check_positive("num_inputs", self.num_inputs, integer=True)
        check_positive("num_outputs", self.num_outputs, integer=True)
        if self.relative not in RELATIVE:
            raise InputError(
                f"relative must be one of {', '.join(RELATIVE)}, got {self.relative!r}"
            )
        check_positive("num_leads", self.num_leads, allow_zero=True, integer=True)
        check_positive("target", self.target, allow_zero=True, integer=True)
        if self.target >= self.past_inputs:
            raise InputError(
                f"target must be a past input column, 0..{self.past_inputs - 1} of "
                f"{self.num_inputs} inputs with {self.num_leads} leads; got {self.target}"
            )
        if self.quantile_head not in intervals.QUANTILE_HEADS:
            raise InputError(
                f"quantile_head must be one of {', '.join(intervals.QUANTILE_HEADS)}, got "
                f"{self.quantile_head!r}"
            )
        levels = intervals.check_quantiles(self.quantiles, self.likelihood)
        object.__setattr__(self, "quantiles", levels)  # a tuple, also from JSON's list
        self._check()

    @property
    def past_inputs(self) -> int:
        """The inputs before the leads: the target and the past covariates."""
        return self.num_inputs - self.num_leads

    @property
    def output_units(self) -> int:
        """K * Q: :func:`dl.intervals.values_per_step` values for each of the Q steps."""
        return self.num_outputs * intervals.values_per_step(self)

    @classmethod
    def from_dict(cls, values: dict):
        """A checkpoint's configuration; one written before ``quantile_head`` has the
        independent head."""
        return super().from_dict({"quantile_head": "independent", **values})


def forecast_forward(ops, params: dict, X, config: ForecastConfig, dropout=None, state=None):
    """``X: (B, W, D)`` float windows -> ``(B, K * Q)`` outputs (K values a step, as
    :mod:`dl.intervals` lays them out; K = 1 for point forecasts): the last step's hidden
    state of the last layer through the output layer. Every window starts from the zero state:
    ``state`` is that zero state as arrays of ``ops``' framework (a flat tuple of ``(B, H)``;
    default NumPy zeros, which NumPy and JAX accept). ``dropout`` as in :func:`dl.lm.run_layers`.
    ``config.relative`` (:data:`RELATIVE`): the window's last target value, ``(B, 1)``, is
    added to the outputs that are values (:func:`dl.intervals.add_level`); ``window`` reads
    the past inputs less each column's last value.
    """
    if state is None:
        state = lm.zero_state(config, X.shape[0])
    level = X[:, -1, config.target : config.target + 1]  # (B, 1)
    if config.relative == "window":
        X = shape_of_window(ops, X, config)
    inputs = ops.stack([X[:, t] for t in range(X.shape[1])])  # (W, B, D), time-major
    x_proj = lm.input_projection(ops, params, inputs, config)
    outputs, _ = lm.run_layers(ops, params, x_proj, tuple(state), config, dropout)
    outputs = outputs[-1] @ params["W_hq"] + params["b_q"]
    if config.relative == "none":
        return outputs
    return intervals.add_level(ops, outputs, level, config)


def shape_of_window(ops, X, config: ForecastConfig):
    """``X: (B, W, D)`` -> the same with each past input (the first
    ``config.past_inputs`` columns) less its value at the window's last step; leads as
    they are."""
    P = config.past_inputs
    past = X[:, :, :P] - X[:, -1:, :P]
    return past if P == X.shape[2] else ops.concat([past, X[:, :, P:]], -1)


class ForecastDivergedError(DivergedError, InputError):
    """The training loss became NaN or infinite (an InputError: the command line exits with 2)."""


class Backend(Protocol):
    """What a framework provides to :func:`fit` (see ``dl.<framework>.forecast.Forecaster``)."""

    config: ForecastConfig

    def make_step(self, optimizer: OptimizerConfig, clip: float) -> Callable[[Any, Any], Any]:
        """A compiled training step with a fresh optimizer: ``step(X: (B, W, D), Y: (B, Q))``
        NumPy float32 -> the batch's :func:`dl.intervals.objective` (MSE for point forecasts)
        as a framework scalar (no host sync);
        gradients clipped to global norm ``clip``, then one update of ``optimizer``
        (the backend's ``engine``)."""

    def predict(self, X: np.ndarray) -> np.ndarray:
        """``X: (B, W, D)`` float32 -> ``(B, K * Q)`` float32 NumPy outputs (no dropout)."""

    def numpy_params(self) -> dict[str, np.ndarray]:
        """The parameters under their canonical names."""

    def load(self, params: dict[str, np.ndarray]) -> None:
        """Set the parameters from NumPy arrays of the canonical names and shapes."""

    def reseed(self, seed: int) -> None:
        """Seed the dropout masks."""


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """How :func:`fit` trains (stored in checkpoints beside the model's configuration)."""

    epochs: int = 200  # at most; early stopping usually ends sooner
    batch_size: int = 32  # windows per minibatch
    lr: float = 0.01  # learning rate
    optimizer: str = "adam"  # one of dl.optim.NAMES (adam | adamw | rmsprop | sgd)
    clip: float = 1.0  # global gradient norm clipping threshold
    patience: int = 20  # stop after this many epochs without a better loss
    seed: int = 0  # initial weights, shuffling and dropout

    def __post_init__(self):
        for name in ("epochs", "batch_size", "patience"):
            check_positive(name, getattr(self, name), integer=True)
        check_positive("seed", self.seed, allow_zero=True, integer=True)
        check_positive("lr", self.lr)
        check_positive("clip", self.clip)
        if self.optimizer not in OPTIMIZERS:
            raise InputError(
                f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )


@dataclasses.dataclass
class FitResult:
    """``history``: per epoch ``{'epoch', 'train_loss', 'val_loss'}`` (the model's
    :func:`dl.intervals.objective`, MSE for point forecasts, scaled units; val
    None without validation windows). ``best_epoch`` and ``best_loss``: the epoch whose weights
    were kept and its validation (else training) loss."""

    history: list[dict]
    best_epoch: int
    best_loss: float
    stopped_early: bool


def validation_loss(model: Backend, val: tuple[np.ndarray, np.ndarray]) -> float:
    """The training objective (:func:`dl.intervals.objective`) of ``model`` on ``val``."""
    pred = np.asarray(model.predict(val[0]), np.float64)
    return float(intervals.objective(lm.NUMPY_OPS, pred, val[1], model.config))


def fit(
    model: Backend,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None = None,
    settings: FitSettings = FitSettings(),
    log: Callable[[dict], None] | None = None,
    restore_best: bool = True,
) -> FitResult:
    """Train ``model`` on windows ``train = (X: (N, W, D), Y: (N, Q))`` float32, scaled.

    Each epoch visits the windows in an order drawn from ``np.random.default_rng(seed)`` in
    minibatches of ``batch_size`` (one batch of all when there are fewer windows; the windows
    left over by the division sit that epoch out, so the step compiles for one shape), then
    computes the validation loss on ``val`` (same layout). The weights of the epoch with the
    lowest validation loss (training loss without ``val``) are restored at the end; training
    stops once ``patience`` epochs pass without improvement. ``restore_best=False`` keeps the
    last epoch's weights instead (``best_epoch`` is then the last). ``log(record)`` sees each
    epoch's history record.
    Raises :class:`ForecastDivergedError` when a loss is NaN or infinite.
    """
    X, Y = train
    if len(X) == 0:
        raise InputError("fit needs at least one training window")
    size = min(settings.batch_size, len(X))  # one shape: one compiled step
    num_batches = len(X) // size
    rng = np.random.default_rng(settings.seed)
    step = model.make_step(OptimizerConfig(settings.optimizer, settings.lr), settings.clip)
    history, best_loss, best_epoch, best_params = [], math.inf, 0, None
    for epoch in range(1, settings.epochs + 1):
        model.reseed(int(rng.integers(2**31)))
        order, total = rng.permutation(len(X)), 0.0
        for start in range(0, num_batches * size, size):
            rows = order[start : start + size]
            total = total + step(X[rows], Y[rows])  # stays on the device
        record = {
            "epoch": epoch,
            "train_loss": float(total) / num_batches,
            "val_loss": None if val is None else validation_loss(model, val),
        }
        _check_finite(record, settings)
        history.append(record)
        if log is not None:
            log(record)
        loss = record["train_loss"] if val is None else record["val_loss"]
        if loss < best_loss:
            best_loss, best_epoch, best_params = loss, epoch, model.numpy_params()
        elif epoch - best_epoch >= settings.patience:
            break
    if restore_best:
        model.load(best_params)
    else:
        best_epoch, best_loss = epoch, loss
    return FitResult(history, best_epoch, best_loss, stopped_early=epoch < settings.epochs)


def _check_finite(record, settings):
    for name in ("train_loss", "val_loss"):
        if record[name] is not None and not math.isfinite(record[name]):
            raise ForecastDivergedError(
                f"training diverged in epoch {record['epoch']}: the {name.replace('_', ' ')} "
                f"became {record[name]}; train again with a smaller learning rate "
                f"(lr={settings.lr} now, try {settings.lr / 10:g}) or a smaller --clip"
            )


# ---------------------------------------------------------------- data


@dataclasses.dataclass(frozen=True, eq=False)
class ForecastData:
    """A series cut for forecasting (see :func:`prepare`).

    ``train``, ``val``, ``test``: the raw parts, ``(T_part, D)`` float64; ``scaler``: fitted on
    the training part; ``period``: the seasonal period of the seasonal naive baseline and of
    MASE (``period_source`` says where it came from); ``train_windows`` and ``val_windows``:
    scaled ``(X: (N, W, D), Y: (N, Q))`` float32 for :func:`fit` (``val_windows`` None when
    there is no validation part), Q = horizon (direct) or 1 (autoregressive).
    """

    series: Series
    window: int
    horizon: int
    mode: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    scaler: Scaler
    period: int
    period_source: str
    train_windows: tuple[np.ndarray, np.ndarray]
    val_windows: tuple[np.ndarray, np.ndarray] | None

    @property
    def num_outputs(self) -> int:
        return self.horizon if self.mode == "direct" else 1

    @property
    def target(self) -> int:
        return self.series.target

    def history(self) -> np.ndarray:
        """The training and validation parts, ``(T_train + T_val, D)``: what precedes the test."""
        return np.concatenate([self.train, self.val])

    def test_windows(self, window: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw ``(X: (N, w, D), Y: (N, horizon))`` of every test origin (each test step with a
        whole horizon after it), ``w = min(window, the steps before the test part)``."""
        history = self.history()
        w = min(window, len(history))
        return make_windows(np.concatenate([history[-w:], self.test]), w, self.horizon, self.target)

    def scale_windows(self, X) -> np.ndarray:
        """Raw windows ``(N, W, D)`` -> scaled float32."""
        X = np.asarray(X, np.float64)
        return self.scaler.transform(X.reshape(-1, X.shape[-1])).reshape(X.shape).astype(np.float32)


def seasonal_period(
    series: Series, train: np.ndarray, period: int | None = None
) -> tuple[int, str]:
    """``(period, where it came from)``: ``period`` if given, else the series' own, else one
    inferred from the training part ``train: (T, D)`` (:func:`dl.baselines.infer_period`),
    else 1 (the seasonal naive forecast is then the naive one)."""
    if period is not None:
        check_positive("period", period, integer=True)
        return period, "given"
    if series.period:
        return series.period, "of the series"
    found = infer_period(train, series.target)
    return (found, "inferred") if found else (1, "none found")


def default_window(
    series: Series, horizon: int = 1, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> int:
    """Two seasons (see :func:`seasonal_period`), at least 16 steps, but no more than leaves
    every part of the split ``window + horizon`` steps."""
    parts = split(series.values, val_fraction, test_fraction)
    shortest = min(len(part) for part in parts if len(part))
    return max(1, min(max(2 * seasonal_period(series, parts.train)[0], 16), shortest - horizon))


def prepare(
    series: Series,
    window: int,
    horizon: int = 1,
    mode: str = "direct",
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    period: int | None = None,
    scaler: Scaler | None = None,
) -> ForecastData:
    """Split ``series`` in time order, scale by the training part, make the windows.

    Validation windows start in the training part so that every validation value is a target
    once. ``period``: see :func:`seasonal_period`. ``scaler``: a trained model's, instead of
    one fitted on the training part. Raises SeriesError (an InputError) saying what to change.
    """
    if mode not in MODES:
        raise InputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    check_positive("window", window, integer=True)
    check_positive("horizon", horizon, integer=True)
    if mode == "autoregressive" and series.values.shape[1] > 1:
        raise SeriesError(
            f"autoregressive mode feeds forecasts back as inputs, so it needs one "
            f"column; the series has {len(series.names)} ({', '.join(series.names)})"
            "; use mode direct"
        )
    if len(series) < window + horizon:
        raise SeriesError(
            f"{series.source or 'the series'}: {len(series)} time steps, fewer than "
            f"window + horizon = {window} + {horizon}; use a shorter window or "
            "horizon, or a longer series"
        )
    parts = split(series.values, val_fraction, test_fraction, window=window, horizon=horizon)
    scaler = scaler or Scaler.fit(parts.train)
    period, source = seasonal_period(series, parts.train, period)
    q = horizon if mode == "direct" else 1
    train_windows = make_windows(scaler.transform(parts.train), window, q, series.target)
    val_windows = None
    if len(parts.val):
        val_windows = make_windows(
            scaler.transform(np.concatenate([parts.train[-window:], parts.val])),
            window,
            q,
            series.target,
        )
    return ForecastData(
        series,
        window,
        horizon,
        mode,
        parts.train,
        parts.val,
        parts.test,
        scaler,
        period,
        source,
        train_windows,
        val_windows,
    )


# ---------------------------------------------------------------- forecasts and evaluation


def forecast(predict: Callable[[np.ndarray], np.ndarray], data: ForecastData, X) -> np.ndarray:
    """Raw windows ``X: (N, W, D)`` -> ``(N, horizon)`` float64 forecasts of the target in
    original units, by ``predict`` (scaled ``(N, W, D)`` -> scaled ``(N, Q)``) directly or
    rolled out one step at a time (autoregressive)."""
    X = data.scale_windows(X)
    pred = predict(X) if data.mode == "direct" else rollout(predict, X, data.horizon)
    return data.scaler.inverse_transform(np.asarray(pred, np.float64), column=data.target)


def forecast_future(predict, data: ForecastData) -> np.ndarray:
    """The ``horizon`` values after the end of the whole series, ``(horizon,)`` float64."""
    return forecast(predict, data, data.series.values[None, -data.window :])[0]


@dataclasses.dataclass
class Evaluation:
    """Test-part scores in original units. ``scores``: name -> ``{'mae', 'rmse', 'mase',
    'smape'}`` for ``'model'`` and the baselines (``mase`` NaN when undefined, ``mase_note``
    says why); ``truth`` and ``forecasts[name]``: ``(N, horizon)``, one row per forecast origin
    (every test step with a whole horizon after it)."""

    scores: dict[str, dict[str, float]]
    truth: np.ndarray
    forecasts: dict[str, np.ndarray]
    period: int
    mase_note: str | None
    intervals: Any = None  # a dl.intervals.IntervalEvaluation, for a model with quantiles

    def beats(self, baseline: str = "seasonal_naive", metric: str = "mase") -> bool | None:
        """Whether the model scores lower than ``baseline``; None when the metric is NaN."""
        ours, theirs = self.scores["model"][metric], self.scores[baseline][metric]
        return None if math.isnan(ours) or math.isnan(theirs) else ours < theirs


def evaluate(predict: Callable[[np.ndarray], np.ndarray], data: ForecastData) -> Evaluation:
    """Score ``predict`` (as in :func:`forecast`) and the naive, seasonal naive and mean
    baselines (fitted on the training part) on the test part: MAE, RMSE, MASE with the seasonal
    period ``data.period`` (scaled by the training part) and sMAPE, in original units.

    Forecast origins are every test step with ``horizon`` test values after it; windows reach
    back into the validation and training parts. Baselines see ``max(window, period)`` steps.
    """
    if len(data.test) == 0:
        raise SeriesError("there is no test part to evaluate on; give a test fraction > 0")
    h, target = data.horizon, data.target
    X, truth = data.test_windows(data.window)
    X_base, _ = data.test_windows(max(data.window, data.period))
    forecasts = {"model": forecast(predict, data, X)}
    for baseline in (
        NaiveForecaster(h, target),
        SeasonalNaiveForecaster(h, target, data.period),
        MeanForecaster(h, target),
    ):
        forecasts[baseline.name] = baseline.fit(data.train).predict(X_base).astype(np.float64)
    y_train = data.train[:, target]
    scores = {
        name: {
            "mae": mae(truth, pred),
            "rmse": rmse(truth, pred),
            "mase": mase(truth, pred, y_train, data.period),
            "smape": smape(truth, pred),
        }
        for name, pred in forecasts.items()
    }
    return Evaluation(
        scores,
        truth.astype(np.float64),
        forecasts,
        data.period,
        mase_undefined_reason(y_train, data.period),
    )


# ---------------------------------------------------------------- training and selection


def train(
    build: Callable[[ForecastConfig, dict], Backend],
    data: ForecastData,
    config: ForecastConfig,
    settings: FitSettings = FitSettings(),
    log=None,
    restore_best: bool = True,
) -> tuple[Backend, FitResult]:
    """A model made by ``build(config, params)`` from :func:`dl.lm.init_params` with the seed,
    fitted on ``data``'s windows (:func:`fit`); returns ``(model, FitResult)``."""
    if config.num_inputs != data.series.values.shape[1] or config.num_outputs != data.num_outputs:
        raise InputError(
            f"the model takes {config.num_inputs} inputs and gives "
            f"{config.num_outputs} outputs; this data needs num_inputs="
            f"{data.series.values.shape[1]} and num_outputs={data.num_outputs}"
        )
    intervals.check_mode(config, data.mode)
    model = build(config, lm.init_params(config, settings.seed))
    return model, fit(model, data.train_windows, data.val_windows, settings, log, restore_best)


def refit(
    build: Callable[[ForecastConfig, dict], Backend],
    data: ForecastData,
    config: ForecastConfig,
    settings: FitSettings,
    epochs: int,
    log=None,
) -> tuple[Backend, ForecastData, FitResult]:
    """The model to forecast past the end with: a fresh model of ``config`` (same seed) trained
    on every window of the whole series, its scaling fitted on the whole series, for exactly
    ``epochs`` epochs (typically the best epoch of the first fit: nothing is held out now to
    stop on), keeping the last epoch's weights. The whole series has more windows than the
    training part, so as many epochs take more steps.

    Returns ``(model, the whole series prepared as training data, FitResult)``."""
    whole = prepare(
        data.series,
        data.window,
        data.horizon,
        data.mode,
        val_fraction=0.0,
        test_fraction=0.0,
        period=data.period,
    )
    settings = dataclasses.replace(settings, epochs=epochs, patience=epochs)
    model, result = train(build, whole, config, settings, log, restore_best=False)
    return model, whole, result


@dataclasses.dataclass
class Selection:
    """The outcome of :func:`select`: the fitted best model, its settings, every trial."""

    model: Backend
    config: ForecastConfig
    settings: FitSettings
    fit: FitResult
    trials: list[dict]  # {'choice': {field: value}, 'val_loss', 'best_epoch'}


def select(
    build,
    data: ForecastData,
    config: ForecastConfig,
    settings: FitSettings = FitSettings(),
    grid: dict | None = None,
    log=None,
    epoch_log=None,
) -> Selection:
    """Train one model per combination of ``grid`` (field name of ForecastConfig or FitSettings
    -> values; default :data:`SELECT_GRID`) and keep the one with the lowest validation loss.
    The test part is never looked at. ``log(trial)`` sees each finished trial, ``epoch_log``
    each epoch's record of :func:`fit` with the trial's ``'choice'`` added."""
    if data.val_windows is None:
        raise SeriesError(
            "selection compares models on the validation part, and there is "
            "none; give a validation fraction > 0"
        )
    grid = SELECT_GRID if grid is None else grid
    model_fields = {f.name for f in dataclasses.fields(ForecastConfig)}
    unknown = sorted(set(grid) - model_fields - {f.name for f in dataclasses.fields(FitSettings)})
    if unknown:
        raise InputError(
            f"cannot search over {unknown}: not fields of ForecastConfig or FitSettings"
        )
    best, trials = None, []
    for values in itertools.product(*grid.values()):
        choice = dict(zip(grid, values))
        trial_config = dataclasses.replace(
            config, **{k: v for k, v in choice.items() if k in model_fields}
        )
        trial_settings = dataclasses.replace(
            settings, **{k: v for k, v in choice.items() if k not in model_fields}
        )
        epochs = None if epoch_log is None else lambda r, c=choice: epoch_log({**r, "choice": c})
        model, result = train(build, data, trial_config, trial_settings, log=epochs)
        trials.append(
            {"choice": choice, "val_loss": result.best_loss, "best_epoch": result.best_epoch}
        )
        if log is not None:
            log(trials[-1])
        if best is None or result.best_loss < best.fit.best_loss:
            best = Selection(model, trial_config, trial_settings, result, trials)
    return best
