"""`keras-linreg train`'s fit and its report: the model beside least squares.

The report is computed on exactly the rows the model trained on: the first
`keras_linreg.inputs.split_point(n, validation_split)`, Keras' own cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

from keras_linreg import LinearRegression
from keras_linreg.convergence import OptimumStopping
from keras_linreg.inputs import split_point
from keras_linreg.regularization import model_optimum

__all__ = ["TrainingReport", "fit_regression", "format_report", "summarize"]


@dataclass
class TrainingReport:
    """A fitted model's parameters beside the optimum it trains towards.

    The optimum is least squares, or the penalized optimum when the model
    has a `slope_regularizer` (`penalized` is then True). `r2` is the
    coefficient of determination on the training data,
    `1 - sum((y_pred - y)**2) / sum((y - mean(y))**2)`, in float64.
    """

    feature_names: list[str]
    slope: np.ndarray
    intercept: float
    loss: float
    val_loss: float | None
    r2: float
    optimum_slope: np.ndarray
    optimum_intercept: float
    epochs: int
    penalized: bool = False

    @property
    def gap(self) -> float:
        """The largest absolute difference from least squares, over all parameters."""
        return float(
            max(
                np.max(np.abs(self.slope - self.optimum_slope)),
                abs(self.intercept - self.optimum_intercept),
            )
        )


def fit_regression(
    x: np.ndarray,
    y: np.ndarray,
    *,
    feature_names: Sequence[str] | None = None,
    learning_rate: float | str = 0.01,
    epochs: int = 100,
    tol: float = 0.0,
    batch_size: int | None = None,
    validation_split: float = 0.0,
    standardize: bool = False,
    l1: float = 0.0,
    l2: float = 0.0,
    seed: int | None = 0,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | str = 0,
) -> tuple[LinearRegression, keras.callbacks.History]:
    """Builds, compiles and fits a `LinearRegression` on in-memory data.

    `batch_size=None` trains full batch (one step per epoch on the
    `split_point(n, validation_split)` training rows); the rows are not
    shuffled when full batch, and shuffled by the seeded Keras generator
    otherwise. `l1` and `l2` set `slope_regularizer=keras.regularizers.L1L2(l1, l2)`.
    `learning_rate` may be `"auto"`; `tol > 0` stops training at the first epoch
    whose parameters are within `tol` of the optimum on the training rows
    (`keras_linreg.convergence.OptimumStopping`, relative to their scale).
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    x = np.asarray(x)
    n_features = 1 if x.ndim == 1 else x.shape[1]
    kwargs = {"standardize": True} if standardize else {}
    if l1 or l2:
        kwargs["slope_regularizer"] = keras.regularizers.L1L2(l1=l1, l2=l2)
    model = LinearRegression(
        n_features=n_features,
        learning_rate=learning_rate,
        feature_names=feature_names,
        **kwargs,
    )
    model.compile(metrics=[keras.metrics.R2Score()])
    train_rows = split_point(len(x), validation_split)
    stopping = [OptimumStopping(x[:train_rows], y[:train_rows], tolerance=tol)] if tol > 0 else []
    history = model.fit(
        x,
        y,
        epochs=epochs,
        batch_size=batch_size or train_rows,
        validation_split=validation_split,
        shuffle=batch_size is not None and batch_size < train_rows,
        callbacks=[*callbacks, *stopping],
        verbose=verbose,
    )
    return model, history


def summarize(
    model: LinearRegression,
    history: keras.callbacks.History,
    x: np.ndarray,
    y: np.ndarray,
    validation_split: float = 0.0,
) -> TrainingReport:
    """Compares a fitted model with the least-squares optimum on its training rows.

    Args:
        model: The fitted model.
        history: What its `fit` returned.
        x: The features given to `fit`.
        y: The targets given to `fit`.
        validation_split: The `validation_split` given to `fit`: the optimum,
            the gap and R² use the first `split_point(n, validation_split)`
            rows, the ones Keras trained on.
    """
    rows = split_point(len(y), validation_split)
    x, y = np.asarray(x)[:rows], np.asarray(y)[:rows]
    slope, intercept = model.get_parameters()
    optimum_slope, optimum_intercept = model_optimum(model, x, y)
    x64 = np.asarray(x, dtype=np.float64).reshape(len(y), -1)
    y64 = np.asarray(y, dtype=np.float64).reshape(-1)
    residual = x64 @ slope + intercept - y64
    total = np.sum((y64 - y64.mean()) ** 2)
    r2 = float(1 - np.sum(residual**2) / total) if total > 0 else float("nan")
    names = list(model.feature_names or [f"x{i}" for i in range(len(slope))])
    logs = history.history
    return TrainingReport(
        feature_names=names,
        slope=slope,
        intercept=intercept,
        loss=float(logs["loss"][-1]),
        val_loss=float(logs["val_loss"][-1]) if "val_loss" in logs else None,
        r2=r2,
        optimum_slope=optimum_slope,
        optimum_intercept=optimum_intercept,
        epochs=len(logs["loss"]),
        penalized=model.slope_regularizer is not None,
    )


def format_report(report: TrainingReport) -> str:
    """The report as a fixed-width table, one parameter a row."""
    width = max(12, *(len(f"slope[{name}]") for name in report.feature_names))
    lines = [
        f"{'parameter':<{width}}  {'model':>14}  "
        f"{'optimum' if report.penalized else 'least squares':>14}  {'gap':>10}",
    ]
    rows = [
        (f"slope[{name}]", value, optimum)
        for name, value, optimum in zip(
            report.feature_names, report.slope, report.optimum_slope, strict=True
        )
    ]
    rows.append(("intercept", report.intercept, report.optimum_intercept))
    for label, value, optimum in rows:
        lines.append(
            f"{label:<{width}}  {value:>14.6g}  {optimum:>14.6g}  {abs(value - optimum):>10.3g}"
        )
    lines.append("")
    lines.append(f"epochs {report.epochs}   final loss {report.loss:.6g}")
    if report.val_loss is not None:
        lines[-1] += f"   val_loss {report.val_loss:.6g}"
    lines[-1] += f"   R² {report.r2:.6f}"
    return "\n".join(lines)
