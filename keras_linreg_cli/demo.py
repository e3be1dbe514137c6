"""`keras-linreg demo`: the tutorial, `Y = mX + C` fitted by full-batch gradient descent.

x = linspace(0, 10, 100), y = x + N(0, 1), slope and intercept from 0, learning
rate 0.01, 100 epochs, one batch per epoch. Prints each epoch's loss and the
final parameters beside the least-squares optimum.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = [
    "STANDARDIZED_LEARNING_RATE",
    "DemoResult",
    "compare_standardized",
    "run_demo",
    "tutorial_data",
]

STANDARDIZED_LEARNING_RATE = 0.5


def tutorial_data(seed: int | None = 0, n: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's data: `x = linspace(0, 10, n)`, `y = x + N(0, 1)`, float32."""
    x = np.linspace(0, 10, n)
    y = x + np.random.default_rng(seed).normal(0, 1, n)
    return x.astype(np.float32), y.astype(np.float32)


def compare_standardized(
    x: np.ndarray, y: np.ndarray, learning_rate: float, max_epochs: int = 5000
) -> tuple[int | None, int | None]:
    """Prints and returns the full-batch epochs each model needs to get within
    1e-4 of least squares: raw features at `learning_rate`, then standardized
    features (`standardize=True`) at `STANDARDIZED_LEARNING_RATE`."""
    from keras_linreg_cli.convergence_table import model_epochs

    raw = model_epochs(x, y, learning_rate, max_epochs=max_epochs)
    rate = STANDARDIZED_LEARNING_RATE
    standardized = model_epochs(x, y, rate, standardize=True, max_epochs=max_epochs)

    def said(epochs):
        if epochs is None:
            return f"not within {max_epochs} epochs"
        return f"{epochs} epoch" + ("" if epochs == 1 else "s")

    print("Epochs until slope and intercept are within 1e-4 of least squares:")
    print(f"  raw features,          learning_rate={learning_rate:<6g} {said(raw)}")
    print(f"  standardized features, learning_rate={rate:<6g} {said(standardized)}")
    return raw, standardized


@dataclass
class DemoResult:
    """What `run_demo` measured."""

    losses: list[float]
    slope: float
    intercept: float
    optimum_slope: float
    optimum_intercept: float


def run_demo(
    epochs: int = 100,
    learning_rate: float = 0.01,
    seed: int = 0,
    log_dir: str | None = None,
    out: str = "out/demo",
    quiet: bool = False,
) -> DemoResult:
    """The tutorial with TensorBoard logs, a PNG and a SavedModel.

    Prints each epoch's loss as the tutorial does (unless `quiet`), then the
    final parameters beside the least-squares optimum and `compare_standardized`;
    writes TensorBoard scalars to `log_dir` (default: a new `logs/demo/<timestamp>`),
    and `fit.png` and the SavedModel `saved_model/1` into `out`.
    """
    import keras

    import keras_linreg
    from keras_linreg.callbacks import new_run_dir
    from keras_linreg.plotting import plot_fit

    x, y = tutorial_data(seed)
    keras.utils.set_random_seed(seed)
    log_dir = log_dir or new_run_dir(os.path.join("logs", "demo"))
    model = keras_linreg.LinearRegression(learning_rate=learning_rate, feature_names=["x"])
    model.compile()
    printer = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: print(f"Epoch count {epoch}: Loss value: {logs['loss']}")
    )
    history = model.fit(
        x,
        y,
        batch_size=len(x),
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[keras_linreg.ParameterLogger(log_dir)] + ([] if quiet else [printer]),
    )
    losses = [float(v) for v in history.history["loss"]]
    slope, intercept = model.get_parameters()
    optimum_slope, optimum_intercept = keras_linreg.least_squares(x, y)
    result = DemoResult(
        losses, float(slope[0]), intercept, float(optimum_slope[0]), optimum_intercept
    )
    stats = keras_linreg.ols(x, y, feature_names=["x"])  # the same rows, float64
    interval = stats.conf_int()
    for i, (label, value, optimum) in enumerate(
        (("slope    ", result.slope, result.optimum_slope),
         ("intercept", result.intercept, result.optimum_intercept))
    ):
        print(
            f"{label} {value:.6f}   (least squares {optimum:.6f}, gap {abs(value - optimum):.3g}, "
            f"se {stats.bse[i]:.4g}, t {stats.tvalues[i]:.4g}, p {stats.pvalues[i]:.3g}, "
            f"95% CI [{interval[i, 0]:.6f}, {interval[i, 1]:.6f}])"
        )
    print(
        f"least squares fit: R² {stats.rsquared:.6f}   adj. R² {stats.rsquared_adj:.6f}   "
        f"F {stats.fvalue:.6g}   p(F) {stats.f_pvalue:.3g}"
    )

    os.makedirs(out, exist_ok=True)
    plot_path = os.path.join(out, "fit.png")
    plot_fit(plot_path, x, y, model.predict(x, verbose=0), losses, title="y = x + N(0, 1)")
    export_path = os.path.join(out, "saved_model", "1")
    keras_linreg.export_saved_model(model, export_path, overwrite=True)
    compare_standardized(x, y, learning_rate)
    parent = os.path.dirname(os.path.normpath(log_dir)) or os.curdir
    print(f"TensorBoard logs: {log_dir}   (tensorboard --logdir {parent})")
    print(f"Plot: {plot_path}")
    print(f"SavedModel: {export_path}")
    return result
