"""`keras-linreg train`'s fit and its report: the model beside least squares.

The report is computed on exactly the rows the model trained on: the first
`keras_linreg.inputs.split_point(n, validation_split)`, Keras' own cut. Beside each
parameter it gives the optimum, the gap and the least-squares fit's statistics
(`keras_linreg.ols`: standard error, t, p, 95% interval), plus R², adjusted R² and
the F test; `write_report` writes it all as JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np

from keras_linreg import LinearRegression, OLSResult, ols
from keras_linreg._atomic import write_atomically
from keras_linreg.convergence import OptimumStopping
from keras_linreg.inputs import split_point
from keras_linreg.regularization import model_optimum

__all__ = [
    "TrainingReport",
    "fit_regression",
    "format_report",
    "report_dict",
    "summarize",
    "write_report",
]


@dataclass
class TrainingReport:
    """A fitted model's parameters beside the optimum it trains towards.

    The optimum is least squares, or the penalized optimum when the model
    has a `slope_regularizer` (`penalized` is then True); through the origin
    when the model has no intercept (`fit_intercept` False; `intercept` and
    `optimum_intercept` are then 0). `r2` is the coefficient of determination
    on the training data, `1 - sum((y_pred - y)**2) / sum((y - mean(y))**2)`,
    in float64; without an intercept it is uncentered,
    `1 - sum((y_pred - y)**2) / sum(y**2)`, as statsmodels and NIST define it.
    `statistics` is `keras_linreg.ols` on the same rows (the least-squares
    fit's standard errors, tests and intervals; for a penalized model they
    describe least squares, not the penalized optimum), or None with the
    reason in `statistics_error` when they are undefined (e.g. a constant
    column, as many rows as parameters). `loss` is the mean squared error at
    the final parameters (an epoch's logged loss is the one before its update).
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
    fit_intercept: bool = True
    statistics: OLSResult | None = None
    statistics_error: str | None = None

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
    fit_intercept: bool = True,
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
    otherwise. `l1` and `l2` set `slope_regularizer=keras.regularizers.L1L2(l1, l2)`;
    `fit_intercept=False` fits through the origin. `learning_rate` may be
    `"auto"`; `tol > 0` stops training at the first epoch whose parameters are
    within `tol` of the optimum on the training rows
    (`keras_linreg.convergence.OptimumStopping`, relative to their scale).
    """
    if seed is not None:
        keras.utils.set_random_seed(seed)
    x = np.asarray(x)
    n_features = 1 if x.ndim == 1 else x.shape[1]
    kwargs = {"standardize": True} if standardize else {}
    if not fit_intercept:
        kwargs["fit_intercept"] = False
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


def fit_from_arguments(args, x, y, features, *, learning_rate, callbacks, verbose):
    """`fit_regression` with `keras-linreg train`'s options (`args`), at `learning_rate`."""
    return fit_regression(
        x,
        y,
        feature_names=features,
        learning_rate=learning_rate,
        epochs=args.epochs,
        tol=args.tol,
        batch_size=args.batch_size,
        validation_split=args.validation_split,
        standardize=args.standardize,
        fit_intercept=not getattr(args, "no_intercept", False),
        l1=args.l1,
        l2=args.l2,
        seed=args.seed,
        callbacks=callbacks,
        verbose=verbose,
    )


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
    fit_intercept = getattr(model, "fit_intercept", True)
    total = np.sum((y64 - y64.mean()) ** 2) if fit_intercept else np.sum(y64**2)
    r2 = float(1 - np.sum(residual**2) / total) if total > 0 else float("nan")
    names = list(model.feature_names or [f"x{i}" for i in range(len(slope))])
    statistics, statistics_error = None, None
    try:
        statistics = ols(x64, y64, fit_intercept=fit_intercept, feature_names=names)
    except ValueError as error:
        statistics_error = str(error)
    logs = history.history
    return TrainingReport(
        feature_names=names,
        slope=slope,
        intercept=intercept,
        loss=float(np.mean(residual**2)),
        val_loss=float(logs["val_loss"][-1]) if "val_loss" in logs else None,
        r2=r2,
        optimum_slope=optimum_slope,
        optimum_intercept=optimum_intercept,
        epochs=len(logs["loss"]),
        penalized=model.slope_regularizer is not None,
        fit_intercept=fit_intercept,
        statistics=statistics,
        statistics_error=statistics_error,
    )


def _rows(report):
    """`(label, model value, optimum)` per parameter, slopes first."""
    rows = [
        (f"slope[{name}]", float(value), float(optimum))
        for name, value, optimum in zip(
            report.feature_names, report.slope, report.optimum_slope, strict=True
        )
    ]
    if report.fit_intercept:
        rows.append(("intercept", float(report.intercept), float(report.optimum_intercept)))
    return rows


def format_report(report: TrainingReport) -> str:
    """The report as a fixed-width table, one parameter a row.

    With `statistics`, each row adds the least-squares standard error, t, p and
    95% interval, and a last line gives R², adjusted R², F and its p-value.
    """
    width = max(12, *(len(f"slope[{name}]") for name in report.feature_names))
    # Beside a penalized model, least squares' standard errors would describe
    # another estimate: they are left out (the JSON report keeps them, labelled).
    stats = None if report.penalized else report.statistics
    header = (
        f"{'parameter':<{width}}  {'model':>14}  "
        f"{'optimum' if report.penalized else 'least squares':>14}  {'gap':>10}"
    )
    if stats is not None:
        header += f"  {'se':>10}  {'t':>9}  {'p':>9}  {'[0.025':>11}  {'0.975]':>11}"
    lines = [header]
    interval = stats.conf_int() if stats is not None else None
    for i, (label, value, optimum) in enumerate(_rows(report)):
        line = f"{label:<{width}}  {value:>14.6g}  {optimum:>14.6g}  {abs(value - optimum):>10.3g}"
        if stats is not None:
            line += (
                f"  {stats.bse[i]:>10.4g}  {stats.tvalues[i]:>9.4g}  {stats.pvalues[i]:>9.3g}"
                f"  {interval[i, 0]:>11.6g}  {interval[i, 1]:>11.6g}"
            )
        lines.append(line)
    if not report.fit_intercept:
        lines.append(f"{'intercept':<{width}}  {'none (fit through the origin)':>14}")
    lines.append("")
    lines.append(f"epochs {report.epochs}   MSE {report.loss:.6g}")
    if report.val_loss is not None:
        lines[-1] += f"   val_loss {report.val_loss:.6g}"
    lines[-1] += f"   R² {report.r2:.6f}" + ("" if report.fit_intercept else " (uncentered)")
    if stats is not None:
        lines.append(
            f"OLS on the {stats.nobs} training rows: R² {stats.rsquared:.6f}"
            + ("" if report.fit_intercept else " (uncentered)")
            + f"   adj. R² {stats.rsquared_adj:.6f}   F {stats.fvalue:.6g}   "
            f"p(F) {stats.f_pvalue:.3g}"
        )
    elif report.penalized:
        lines.append(
            "no standard errors beside a penalized fit (those of unpenalized least squares "
            "are in --report's `statistics`)"
        )
    elif report.statistics_error:
        lines.append(f"no standard errors: {report.statistics_error}")
    return "\n".join(lines)


def report_dict(report: TrainingReport) -> dict:
    """The report as a JSON-safe dict (full-precision floats; non-finite values as None).

    `parameters` lists, per parameter (slopes, then the intercept when fitted): `name`, the
    `model`'s value, the `optimum`, the `gap` and, when defined, the
    least-squares `se`, `t`, `p`, `ci_low` and `ci_high` (95%). The fit's
    `rsquared`, `rsquared_adj`, `fvalue`, `f_pvalue` are those of least squares
    on the training rows; `r2` is the model's; `statistics` is
    `OLSResult.to_dict()` (or None, with `statistics_error`). For a penalized
    model the per-parameter statistics are left out (they would describe least
    squares, not the penalized optimum beside them) and `statistics_of` says
    "unpenalized least squares". `loss` is the MSE at the final parameters.
    """
    stats = report.statistics
    beside = None if report.penalized else stats  # see format_report
    interval = beside.conf_int() if beside is not None else None
    parameters = []
    for i, (label, value, optimum) in enumerate(_rows(report)):
        entry = {"name": label, "model": value, "optimum": optimum, "gap": abs(value - optimum)}
        if beside is not None:
            entry.update(
                se=beside.bse[i], t=beside.tvalues[i], p=beside.pvalues[i],
                ci_low=interval[i, 0], ci_high=interval[i, 1],
            )  # fmt: skip
        parameters.append({k: _json_value(v) for k, v in entry.items()})
    summary = {
        "optimum": "penalized" if report.penalized else "least squares",
        "fit_intercept": report.fit_intercept,
        "parameters": parameters,
        "gap": _json_value(report.gap),
        "epochs": report.epochs,
        "loss": _json_value(report.loss),
        "val_loss": _json_value(report.val_loss),
        "r2": _json_value(report.r2),
    }
    for name in ("rsquared", "rsquared_adj", "fvalue", "f_pvalue", "resid_std", "nobs",
                 "df_model", "df_resid"):
        summary[name] = _json_value(getattr(stats, name)) if stats is not None else None
    summary["statistics"] = stats.to_dict() if stats is not None else None
    summary["statistics_of"] = "unpenalized least squares" if report.penalized else "the optimum"
    summary["statistics_error"] = report.statistics_error
    return summary


def write_report(path, report: TrainingReport, *, overwrite=False, argument="--report") -> str:
    """Writes `report_dict(report)` as JSON to `path`, atomically.

    An existing `path` is refused unless `overwrite` (then replaced in one rename).
    """
    text = json.dumps(report_dict(report), indent=2, allow_nan=False) + "\n"

    def write(temporary):
        with open(temporary, "w", encoding="utf-8") as stream:
            stream.write(text)

    return write_atomically(path, write, overwrite=overwrite, argument=argument)


def _json_value(value):
    if value is None or isinstance(value, (bool, int, str)):
        return value
    value = float(value)
    return value if math.isfinite(value) else None
