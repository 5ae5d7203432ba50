"""dl.intervals (pinball loss, Gaussian likelihood, CRPS from quantiles, coverage, the
baselines' residual quantiles), its training on every framework, and `dl forecast
--quantiles / --likelihood`."""

import csv
import importlib
import importlib.util
import json
import math
from statistics import NormalDist

import numpy as np
import pytest

from dl import checkpoint, intervals, lm
from dl import forecast as fc
from dl.baselines import NaiveForecaster
from dl.cli import main
from dl.data.series import Series
from dl.errors import InputError
from dl.optim import OptimizerConfig

FRAMEWORKS = {"torch": ("torch",), "tensorflow": ("tensorflow", "tf_keras"), "jax": ("jax",)}
INSTALLED = [
    name
    for name, needs in FRAMEWORKS.items()
    if all(importlib.util.find_spec(package) for package in needs)
]
needs_a_framework = pytest.mark.skipif(not INSTALLED, reason="no deep-learning framework")
LEVELS = (0.1, 0.5, 0.9)


def config_of(quantiles=LEVELS, likelihood=None, **shape):
    shape = {"num_inputs": 2, "num_hiddens": 6, "num_outputs": 2, **shape}
    return fc.ForecastConfig("lstm", quantiles=quantiles, likelihood=likelihood, **shape)


# ---------------------------------------------------------------- scores by hand


def test_pinball_crps_and_coverage_are_the_hand_computations():
    truth = np.array([[10.0], [20.0]])  # two origins, one step
    quantiles = np.array([[[8.0, 11.0, 13.0]], [[8.0, 11.0, 13.0]]])  # (N, Q, L)
    got = intervals.scores(truth, quantiles, LEVELS)
    # errors y - q: 2, -1, -3 -> 0.1*2, 0.5*1, 0.1*3; and 12, 9, 7 -> 0.1*12, 0.5*9, 0.9*7
    by_level = [(0.2 + 1.2) / 2, (0.5 + 4.5) / 2, (0.3 + 6.3) / 2]
    assert got["pinball_by_level"] == pytest.approx(dict(zip(["0.1", "0.5", "0.9"], by_level)))
    assert got["pinball"] == pytest.approx(6.5 / 3)
    # CRPS: 2 * (0.3, 0.4, 0.3) . by_level, the cells (0, .3), (.3, .7), (.7, 1)
    assert got["crps"] == pytest.approx(2 * (0.3 * 0.7 + 0.4 * 2.5 + 0.3 * 3.3))
    (interval,) = got["intervals"]
    assert interval == {"lower": 0.1, "upper": 0.9, "nominal": 0.8, "coverage": 0.5, "width": 5.0}
    # the training objective is the same mean pinball loss, on the block layout (N, L * Q):
    # the median, then the raw offsets down to 8 and up to 13 (softplus 3 and 2)
    outputs = np.tile([inverse_softplus(3.0), 11.0, inverse_softplus(2.0)], (2, 1))
    config = config_of(num_outputs=1)
    np.testing.assert_allclose(intervals.quantile_forecasts(outputs, config), quantiles)
    loss = intervals.objective(lm.NUMPY_OPS, outputs, truth, config)
    assert loss == pytest.approx(6.5 / 3)


def inverse_softplus(y):
    return math.log(math.expm1(y))


def test_the_offsets_head_never_crosses_and_every_level_moves_the_median():
    levels = (0.05, 0.25, 0.5, 0.75, 0.95)
    config = config_of(quantiles=levels, num_outputs=2)
    outputs = np.random.default_rng(0).normal(0, 5, (50, 5 * 2))  # any raw outputs
    quantiles = intervals.quantile_forecasts(outputs, config)
    assert quantiles.shape == (50, 2, 5) and (np.diff(quantiles, axis=-1) > 0).all()
    np.testing.assert_array_equal(quantiles[..., 2], outputs[:, 4:6])  # block 2: the median
    np.testing.assert_allclose(
        quantiles[..., 3] - quantiles[..., 2], np.logaddexp(0, outputs[:, 6:8])
    )
    np.testing.assert_allclose(
        quantiles[..., 1] - quantiles[..., 0], np.logaddexp(0, outputs[:, 0:2])
    )
    np.testing.assert_array_equal(intervals.point_forecasts(outputs, config), outputs[:, 4:6])
    # a truth far above every quantile: the loss falls as the median rises, at the rate of
    # all five levels (mean 0.5), not of the 0.5 level's alone (0.5 / 5)
    config1, truth = config_of(quantiles=levels, num_outputs=1), np.array([[100.0]])
    raw = np.zeros((1, 5))
    up = raw + np.eye(5)[2] * 1e-3
    slope = (
        intervals.objective(lm.NUMPY_OPS, raw, truth, config1)
        - intervals.objective(lm.NUMPY_OPS, up, truth, config1)
    ) / 1e-3
    assert slope == pytest.approx(np.mean(levels))


def test_crps_weights_and_the_cases_they_must_get_right():
    np.testing.assert_allclose(intervals.crps_weights(LEVELS), [0.3, 0.4, 0.3])
    np.testing.assert_allclose(intervals.crps_weights([0.25, 0.5, 0.75]), [0.375, 0.25, 0.375])
    # one level 0.5: the CRPS of a point forecast, the absolute error
    truth, point = np.array([[3.0, -1.0]]), np.array([[[1.0], [2.0]]])
    assert intervals.scores(truth, point, (0.5,))["crps"] == pytest.approx((2 + 3) / 2)
    # many levels of a Gaussian: its closed form, sigma (z (2 Phi(z) - 1) + 2 phi(z) - 1/sqrt pi)
    levels = tuple(np.arange(1, 200) / 200)
    sigma, y = 2.0, 1.5
    z = y / sigma
    exact = sigma * (
        z * (2 * NormalDist().cdf(z) - 1) + 2 * NormalDist().pdf(z) - 1 / math.sqrt(math.pi)
    )
    grid = np.array([[[sigma * NormalDist().inv_cdf(q) for q in levels]]])
    assert intervals.scores(np.array([[y]]), grid, levels)["crps"] == pytest.approx(exact, rel=0.01)


def test_central_intervals_pair_the_outer_levels_first():
    assert intervals.central_intervals((0.05, 0.1, 0.5, 0.9, 0.95)) == [(0, 4), (1, 3)]
    got = intervals.scores(np.zeros((1, 1)), np.array([[[-1.0, 1.0, 2.0]]]), (0.05, 0.5, 0.8))
    assert [(i["lower"], i["upper"], i["nominal"]) for i in got["intervals"]] == [(0.05, 0.8, 0.75)]


def test_the_gaussian_likelihood_and_its_quantiles_by_hand():
    config = config_of(likelihood="gaussian", num_outputs=1)
    raw_scale = math.log(math.e**2 - 1)  # softplus = 2: sigma = 2 + MIN_SCALE
    outputs, truth = np.array([[1.0, raw_scale]]), np.array([[4.0]])
    sigma = 2 + intervals.MIN_SCALE
    nll = 0.5 * math.log(2 * math.pi) + math.log(sigma) + 0.5 * (3 / sigma) ** 2
    assert intervals.objective(lm.NUMPY_OPS, outputs, truth, config) == pytest.approx(nll)
    assert config.quantiles == intervals.DEFAULT_QUANTILES  # the levels reported by default
    z = NormalDist().inv_cdf(0.9)
    np.testing.assert_allclose(
        intervals.quantile_forecasts(outputs, config), [[[1 - sigma * z, 1, 1 + sigma * z]]]
    )
    np.testing.assert_allclose(intervals.point_forecasts(outputs, config), [[1.0]])  # the mean


def test_an_independent_head_is_sorted_where_it_crosses_and_the_point_is_the_median():
    config = config_of(num_outputs=2, quantile_head="independent")  # 0.1 | 0.5 | 0.9 blocks
    outputs = np.array([[5.0, 0.0, 1.0, 1.0, 0.0, 2.0]])  # step 1 crosses: 5, 1, 0
    np.testing.assert_array_equal(
        intervals.quantile_forecasts(outputs, config), [[[0.0, 1.0, 5.0], [0.0, 1.0, 2.0]]]
    )
    np.testing.assert_array_equal(intervals.point_forecasts(outputs, config), [[1.0, 1.0]])
    # sorting lowers the summed pinball loss
    truth, crossed = np.array([[3.0, 1.0]]), outputs.reshape(1, 3, 2).transpose(0, 2, 1)
    assert (
        intervals.scores(truth, intervals.quantile_forecasts(outputs, config), LEVELS)["pinball"]
        < intervals.scores(truth, crossed, LEVELS)["pinball"]
    )


def test_baseline_residual_quantiles_per_step_by_hand():
    train = np.array([0.0, 1.0, 3.0, 2.0, 5.0])[:, None]
    naive = NaiveForecaster(horizon=2).fit(train)
    # windows of one step: forecasts 0, 1, 3; truths (1, 3), (3, 2), (2, 5)
    # residuals step 1: 1, 2, -1; step 2: 3, 1, 2
    got = intervals.residual_quantiles(naive, train, 1, (0.25, 0.5))
    np.testing.assert_allclose(got, [[0.0, 1.0], [1.5, 2.0]])
    with pytest.raises(InputError, match="too few for the residuals of naive"):
        intervals.residual_quantiles(naive, train[:2], 1, (0.5,))


def test_evaluate_adds_the_residual_quantiles_to_each_baseline_forecast():
    rng = np.random.default_rng(0)
    values = np.cumsum(rng.standard_normal(120))[:, None]
    data = fc.prepare(Series(values, ("y",)), window=6, horizon=2, period=4)
    config = config_of(num_inputs=1, quantile_head="independent")  # outputs: the quantiles
    exact = lambda X: np.tile(np.zeros((len(X), 2)), 3)  # every quantile 0, scaled
    got = intervals.evaluate(exact, data, config)
    X, truth = data.test_windows(6)
    np.testing.assert_array_equal(got.truth, truth)
    naive = NaiveForecaster(2).fit(data.train)
    spread = intervals.residual_quantiles(naive, data.train, 1, LEVELS)
    np.testing.assert_allclose(got.quantiles["naive"], naive.predict(X)[..., None] + spread)
    model = got.quantiles["model"]  # scaled 0 is the training mean, in original units
    np.testing.assert_allclose(model, np.full(model.shape, data.scaler.mean[0]))
    assert set(got.scores) == {"model", "naive", "seasonal_naive"}


# ---------------------------------------------------------------- bad input


def test_config_keeps_its_levels_and_head_through_json():
    config = config_of(likelihood="gaussian", quantiles=[0.05, 0.5, 0.95])
    assert config.quantiles == (0.05, 0.5, 0.95) and config.output_units == 2 * 2
    assert fc.ForecastConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config_of().param_shapes()["W_hq"] == (6, 3 * 2)
    for head in intervals.QUANTILE_HEADS:
        config = config_of(quantile_head=head)
        assert fc.ForecastConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # a checkpoint written before the offsets head: its outputs are the quantiles themselves
    old = {k: v for k, v in config_of().to_dict().items() if k != "quantile_head"}
    assert fc.ForecastConfig.from_dict(old).quantile_head == "independent"
    with pytest.raises(InputError, match="quantile_head must be one of offsets, independent"):
        config_of(quantile_head="sorted")


@pytest.mark.parametrize(
    "levels, message",
    [
        ((0.0, 0.5), "strictly between 0 and 1, got 0.0"),
        ((0.5, 1.0), "strictly between 0 and 1, got 1.0"),
        ((-0.1, 0.5), "strictly between 0 and 1, got -0.1"),
        ((math.nan, 0.5), "strictly between 0 and 1, got nan"),
        ((True, 0.5), "strictly between 0 and 1, got True"),
        (("0.1", 0.5), "strictly between 0 and 1, got '0.1'"),
        ((0.9, 0.5, 0.1), "increasing order, each once; 0.5 follows 0.9"),
        ((0.1, 0.5, 0.5), "increasing order, each once; 0.5 follows 0.5"),
        ((0.1, 0.9), "lack 0.5: the model's point forecast is its median"),
    ],
)
def test_bad_quantiles_are_refused(levels, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        config_of(quantiles=levels)


def test_unknown_likelihood_and_autoregressive_quantiles_are_refused():
    with pytest.raises(InputError, match="likelihood must be one of gaussian, got 'laplace'"):
        config_of(likelihood="laplace")
    config_of(quantiles=(0.1, 0.9), likelihood="gaussian")  # the Gaussian's mean is the point
    with pytest.raises(InputError, match="use mode direct"):
        intervals.check_mode(config_of(num_outputs=1), "autoregressive")


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `dl forecast ARGV`, option errors included."""
    try:
        status = main(["forecast", *map(str, argv)])
    except SystemExit as exit:  # argparse's errors
        status = exit.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quantiles", "0,0.5"], "argument --quantiles: quantiles must be numbers strictly"),
        (["--quantiles", "0.5,1.2"], "strictly between 0 and 1, got 1.2"),
        (["--quantiles", "0.9,0.5"], "increasing order, each once; 0.5 follows 0.9"),
        (["--quantiles", "0.5,0.5"], "increasing order, each once"),
        (["--quantiles", "0.1,ten"], "argument --quantiles: 'ten' is not a number"),
        (["--quantiles", "0.1,,0.5"], "has an empty item"),
        (["--quantiles", "0.1,0.9"], "--quantiles 0.1,0.9 lack 0.5"),
        (["--likelihood", "laplace"], "argument --likelihood: 'laplace' is not one of gaussian"),
        (
            ["--quantiles", "0.1,0.5,0.9", "--mode", "autoregressive"],
            "--quantiles forecasts the whole horizon at once; --mode autoregressive",
        ),
        (["--likelihood", "gaussian", "--mode", "autoregressive"], "use --mode direct"),
        (["--from", "nowhere", "--quantiles", "0.5"], "leave out --quantiles or train a new"),
    ],
)
def test_bad_interval_flags_give_one_line_and_status_2(tmp_path, capsys, argv, message):
    status, _, err = run(capsys, "--series", "sine", *argv, "--out", tmp_path / "run")
    assert status == 2 and err.startswith("dl") and err.count("\n") == 1, err
    assert message in err, err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- every framework


def forecaster(backend, config, params):
    module = importlib.import_module(f"dl.{backend}.forecast")
    return module.Forecaster(config, params, device="cpu")


@needs_a_framework
@pytest.mark.parametrize(
    "likelihood, head", [(None, "offsets"), (None, "independent"), ("gaussian", "offsets")]
)
def test_every_framework_trains_on_the_numpy_objective(likelihood, head):
    config = config_of(likelihood=likelihood, quantile_head=head)
    params = lm.init_params(config, 2, scale=0.5)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((5, 4, 2)).astype(np.float32)
    Y = rng.standard_normal((5, 2)).astype(np.float32)
    expected = intervals.objective(
        lm.NUMPY_OPS, fc.forecast_forward(lm.NUMPY_OPS, params, X, config), Y, config
    )
    moved = {}
    for backend in INSTALLED:
        model = forecaster(backend, config, params)
        step = model.make_step(OptimizerConfig("sgd", 0.1), clip=1e6)
        assert float(step(X, Y)) == pytest.approx(float(expected), rel=1e-5)
        moved[backend] = model.numpy_params()
        assert model.predict(X).shape == (5, config.output_units)
    first, *others = INSTALLED
    for name, value in moved[first].items():
        assert not np.allclose(value, params[name]), f"{name} did not move on {first}"
        for backend in others:  # one SGD step: the same gradients
            np.testing.assert_allclose(moved[backend][name], value, atol=2e-6, err_msg=backend)


def noisy_sine(n=400, sigma=0.3, seed=0):
    t = np.arange(n)
    noise = np.random.default_rng(seed).standard_normal(n)
    return Series((np.sin(2 * np.pi * t / 20) + sigma * noise)[:, None], ("y",)), sigma


@needs_a_framework
@pytest.mark.parametrize("likelihood", [None, "gaussian"])
def test_a_small_fit_covers_about_its_nominal_share(likelihood):
    series, sigma = noisy_sine()
    data = fc.prepare(series, window=20, horizon=2)
    config = fc.ForecastConfig(
        num_hiddens=8, num_outputs=2, quantiles=LEVELS, likelihood=likelihood
    )
    settings = fc.FitSettings(epochs=60, batch_size=32, lr=0.01, patience=60)
    model, _ = fc.train(lambda c, p: forecaster(INSTALLED[-1], c, p), data, config, settings)
    got = intervals.evaluate(model.predict, data, config)
    (interval,) = got.scores["model"]["intervals"]
    # the noise is Gaussian: the 80% interval is 2 * 1.28 sigma wide, and covers about 80%
    assert 0.65 <= interval["coverage"] <= 0.95, interval
    assert interval["width"] == pytest.approx(2 * NormalDist().inv_cdf(0.9) * sigma, rel=0.35)
    assert got.scores["model"]["crps"] < got.scores["naive"]["crps"]


# ---------------------------------------------------------------- the command line


@needs_a_framework
@pytest.mark.parametrize(
    "flags, levels, per_step",
    [
        (["--quantiles", "0.1,0.5,0.9"], [0.1, 0.5, 0.9], 3),
        (["--likelihood", "gaussian", "--quantiles", "0.05,0.5,0.95"], [0.05, 0.5, 0.95], 2),
    ],
)
def test_a_run_reports_intervals_draws_bands_and_reproduces_from_its_checkpoint(
    tmp_path, capsys, monkeypatch, flags, levels, per_step
):
    figure = pytest.importorskip("matplotlib.figure")
    drawn, save = [], figure.Figure.savefig
    monkeypatch.setattr(
        figure.Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k))
    )
    backend, out = INSTALLED[-1], tmp_path / "run"
    common = ["--hidden", "8", "--epochs", "3", "--horizon", "2", "--backend", backend]
    status, text, err = run(capsys, "--series", "sine", *flags, *common, "--out", out)
    assert status == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    scores = metrics["intervals"]["scores"]
    assert set(scores) == {"model", "naive", "seasonal_naive"}
    assert metrics["intervals"]["quantiles"] == levels
    nominal = round(100 * (levels[-1] - levels[0]))
    assert f"{nominal}% cover" in text and "pinball" in text and "CRPS approximated" in text
    assert set(metrics["forecast"]["quantiles"]) == {f"{q:g}" for q in levels}
    median = metrics["forecast"]["quantiles"]["0.5"]
    np.testing.assert_allclose(metrics["forecast"]["values"], median)  # the point: the median
    _, meta = checkpoint.load(out, "forecast")
    assert meta["model"]["quantiles"] == levels
    params, _ = checkpoint.load(out, "forecast")
    assert params["W_hq"].shape == (8, 2 * per_step)
    assert (out / "forecast.png").read_bytes()[:4] == b"\x89PNG"
    check_forecasts_csv(out, metrics, levels)
    test_band, future_band = drawn[-1].axes[0].collections  # fill_between the outer levels
    assert len(test_band.get_paths()[0].vertices) > 2 * 10  # one point per test origin, twice
    band = future_band.get_paths()[0].vertices[:, 1]
    for level in (levels[0], levels[-1]):
        assert np.isin(
            np.float32(metrics["forecast"]["quantiles"][f"{level:g}"]), np.float32(band)
        ).all()

    again_out = tmp_path / "again"
    status, again, err = run(capsys, "--from", out, "--backend", backend, "--out", again_out)
    assert status == 0, err
    reloaded = json.loads((again_out / "metrics.json").read_text())
    assert reloaded["intervals"] == metrics["intervals"]
    assert reloaded["forecast"]["quantiles"] == metrics["forecast"]["quantiles"]


def check_forecasts_csv(out, metrics, levels):
    """test_forecasts.csv carries ``<name>_q<level>`` columns after the point forecasts, and
    scored by dl.intervals.scores they give metrics.json's interval scores."""
    with open(out / "test_forecasts.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = ["model", "naive", "seasonal_naive"]
    quantile_columns = [f"{name}_q{q:g}" for name in names for q in levels]
    assert list(rows[0]) == ["origin", "step", "time", "truth", *names, "mean", *quantile_columns]
    horizon = metrics["horizon"]
    column = lambda name: np.array([float(r[name]) for r in rows]).reshape(-1, horizon)
    for name in names:
        quantiles = np.stack([column(f"{name}_q{q:g}") for q in levels], axis=-1)
        got = intervals.scores(column("truth"), quantiles, levels)
        want = metrics["intervals"]["scores"][name]
        assert got["pinball"] == pytest.approx(want["pinball"], rel=1e-9)
        assert got["crps"] == pytest.approx(want["crps"], rel=1e-9)
        for mine, theirs in zip(got["intervals"], want["intervals"], strict=True):
            assert mine == pytest.approx(theirs, rel=1e-9)
    if metrics["intervals"]["point_forecast"] == "median":
        np.testing.assert_array_equal(column("model_q0.5"), column("model"))


@needs_a_framework
def test_a_backtest_scores_the_median_of_a_quantile_model(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--series", "sine", "--quantiles", "0.1,0.5,0.9", "--hidden", "4", "--epochs", "2"]
    status, text, err = run(
        capsys, *argv, "--backtest", 2, "--backend", INSTALLED[-1], "--out", out
    )
    assert status == 0, err
    record = json.loads((out / "backtest.json").read_text())
    for origin in record["per_origin"]:
        assert len(origin["forecasts"]["model"]) == 4  # the horizon's medians, not 3 * 4 outputs
