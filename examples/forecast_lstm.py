"""Exercise 5 of the LSTM chapter: an LSTM for time-series prediction rather than characters.

The same cells, now reading a window of real values and predicting the next ``horizon``
values at once, trained with MSE on standardised values, on yearly sunspot numbers and weekly
Mauna Loa CO2 (both ship with statsmodels). Each model is scored on the last 20 % of its series
beside the forecasts it has to beat: naive (the last value), seasonal naive (the value one
season back) and the training mean. MASE below 1 beats the in-sample seasonal naive forecast.

    python examples/forecast_lstm.py                 # JAX (the fastest here on a CPU)
    python examples/forecast_lstm.py --backend torch # or tensorflow
"""

import argparse
import importlib
import time

from dl import forecast as fc
from dl.data.series import load_series

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--backend", choices=("jax", "tensorflow", "torch"), default="jax")
parser.add_argument("--epochs", type=int, default=100, help="at most; early stopping ends sooner")
args = parser.parse_args()
Forecaster = importlib.import_module(f"dl.{args.backend}.forecast").Forecaster

# (series, window, horizon): the window holds two seasons (sunspots' 11-year cycle is inferred)
for name, window, horizon in (("sunspots", 22, 4), ("co2", 104, 4)):
    series = load_series(name)
    data = fc.prepare(series, window, horizon)  # 70 % train, 10 % validation, 20 % test
    config = fc.ForecastConfig("lstm", num_inputs=1, num_hiddens=32, num_outputs=horizon)
    settings = fc.FitSettings(epochs=args.epochs, batch_size=32, lr=0.01, patience=20)
    started = time.perf_counter()
    model, fit = fc.train(lambda config, params: Forecaster(config, params), data, config, settings)
    print(
        f"{name}: {len(series)} steps, window {window}, horizon {horizon}, season "
        f"{data.period}; trained {len(fit.history)} epochs in "
        f"{time.perf_counter() - started:.0f} s, best epoch {fit.best_epoch}"
    )
    evaluation = fc.evaluate(model.predict, data)
    print(f"  {'':16}{'MAE':>9}{'RMSE':>9}{'MASE':>9}{'sMAPE %':>9}")
    for forecaster, scores in evaluation.scores.items():
        label = "lstm" if forecaster == "model" else forecaster
        print(f"  {label:16}" + "".join(f"{value:9.3f}" for value in scores.values()))
    verdict = "beats" if evaluation.beats() else "does not beat"
    print(f"  the LSTM {verdict} seasonal naive on test MASE")
    print(
        f"  next {horizon} values: "
        + " ".join(f"{v:.1f}" for v in fc.forecast_future(model.predict, data))
    )
