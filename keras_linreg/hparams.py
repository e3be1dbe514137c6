"""Sweeps in TensorBoard's HParams dashboard: the experiment and per-run sessions.

`write_hparams_experiment` declares a sweep's hyperparameters and metrics;
`ParameterLogger(..., hparams=...)` writes each run's session (see
docs/hparams.md). Summaries are TensorBoard's `hparams` plugin's own
(`tensorboard.plugins.hparams.api`).
"""

from __future__ import annotations

import numbers
import os
import time

import numpy as np
import tensorflow as tf

from keras_linreg.closed_form import least_squares

#: The hyperparameters of plain gradient descent a sweep usually varies.
HPARAMS = ("learning_rate", "standardize", "batch_size")

#: The session metrics: scalar tags in each run's `parameters` directory.
#: `loss` and `val_loss` are the per-epoch series (the dashboard shows their
#: last value); the other three are written once, when training ends.
METRICS = ("loss", "val_loss", "gap_to_least_squares", "epochs_run", "diverged")

#: The metrics written once per run, at the end of training.
SESSION_END_TAGS = ("gap_to_least_squares", "epochs_run", "diverged")

_METRIC_DESCRIPTIONS = {
    "loss": ("final loss", "Training loss (mean squared error) of the last epoch."),
    "val_loss": ("final val_loss", "Validation loss of the last epoch."),
    "gap_to_least_squares": (
        "gap to least squares",
        "MSE of the final weights on the logger's `data` minus the least-squares "
        "MSE on the same rows: 0 at the optimum.",
    ),
    "epochs_run": ("epochs run", "Epochs completed (the divergence guard stops early)."),
    "diverged": ("diverged", "1 if the divergence guard stopped the run, else 0."),
}


def write_hparams_experiment(log_dir, hparams, metrics=METRICS):
    """Writes the HParams experiment of a sweep into `log_dir`.

    The experiment tells TensorBoard's HParams dashboard which
    hyperparameters the runs under `log_dir` vary (with their domains, for
    the dashboard's filters) and which metrics to show as columns. Each run
    is a subdirectory `log_dir/<run>` logged by
    `ParameterLogger(log_dir/<run>, hparams={...})`, whose session lives in
    `log_dir/<run>/parameters`.

    Args:
        log_dir: The sweep's directory, the `--logdir` TensorBoard is given;
            created if missing. The experiment is an event file directly in
            it (TensorBoard's run `.`).
        hparams: Mapping from a hyperparameter's name (e.g. `HPARAMS`) to
            the values the sweep tries, a non-empty sequence of bools, ints,
            floats or strings (a discrete domain), or to a domain from
            `tensorboard.plugins.hparams.api` (`RealInterval`, `IntInterval`,
            `Discrete`).
        metrics: Metric tags (default `METRICS`) or `hp.Metric` objects.

    Returns:
        The path of the experiment's event file directory, `log_dir`.

    Example:

    ```python
    import tempfile
    from keras_linreg.callbacks import write_hparams_experiment

    log_dir = tempfile.mkdtemp()
    write_hparams_experiment(
        log_dir, {"learning_rate": [0.001, 0.01, 0.1], "standardize": [False], "batch_size": [32]}
    )
    ```
    """
    from tensorboard.plugins.hparams import api as hp

    log_dir = _check_log_dir(log_dir)
    if not hasattr(hparams, "items") or not hparams:
        raise ValueError(
            "Received an invalid value for `hparams`, expected a non-empty mapping from "
            f"names to the values tried or to a domain. Received: hparams={hparams!r}"
        )
    declared = [
        hp.HParam(_check_name(name), _domain(name, values)) for name, values in hparams.items()
    ]
    if isinstance(metrics, str) or not metrics:
        raise ValueError(
            "Received an invalid value for `metrics`, expected a non-empty sequence of "
            f"metric tags or `hp.Metric` objects. Received: metrics={metrics!r}"
        )
    declared_metrics = [_metric(hp, metric) for metric in metrics]
    os.makedirs(log_dir, exist_ok=True)
    writer = tf.summary.create_file_writer(log_dir)
    try:
        with writer.as_default():
            hp.hparams_config(hparams=declared, metrics=declared_metrics)
        writer.flush()
    finally:
        writer.close()
    return log_dir


# ------------------------------------------------ for ParameterLogger
def check_session_hparams(hparams):
    """Validates one run's `hparams={name: value}`; returns plain Python values."""
    if not hasattr(hparams, "items") or not hparams:
        raise ValueError(
            "Received an invalid value for `hparams`, expected a non-empty mapping from "
            "names to this run's values (bool, int, float or str). "
            f"Received: hparams={hparams!r}"
        )
    return {_check_name(name): _scalar(name, value) for name, value in hparams.items()}


def session_start_summary(hparams, trial_id):
    """The session's hyperparameters: the `Summary` proto `hp.hparams` writes (at step 0)."""
    from tensorboard.plugins.hparams import api as hp

    return hp.hparams_pb(hparams, trial_id=trial_id, start_time_secs=time.time())


def least_squares_gap(slope, intercept, data, *, fit_intercept=True):
    """`mse(slope, intercept) - mse(least squares)` on `data = (x, y)`, float64.

    `x` is `(n, n_features)` and `y` `(n,)`. Non-negative up to rounding;
    inf or NaN when the weights are (diverged ones). With
    `fit_intercept=False` the optimum is the one through the origin.
    """
    x, y = data
    optimum_slope, optimum_intercept = least_squares(x, y, fit_intercept=fit_intercept)
    with np.errstate(over="ignore", invalid="ignore"):
        mse = np.mean((x @ np.asarray(slope, np.float64) + intercept - y) ** 2)
        optimum = np.mean((x @ optimum_slope + optimum_intercept - y) ** 2)
        return float(mse - optimum)


# ---------------------------------------------------------------- helpers
def _check_log_dir(log_dir):
    if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
        raise ValueError(
            "Received an invalid value for `log_dir`, expected a non-empty path. "
            f"Received: log_dir={log_dir!r}"
        )
    return os.fspath(log_dir)


def _check_name(name):
    if not isinstance(name, str) or not name:
        raise ValueError(
            "Received an invalid hyperparameter name, expected a non-empty string. "
            f"Received: {name!r}"
        )
    return name


def _scalar(name, value):
    """A bool, int, float or str as the plain Python value the plugin stores."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise ValueError(
        f"Received an invalid value for hyperparameter `{name}`, expected a bool, int, "
        f"float or str. Received: {name}={value!r}"
    )


def _domain(name, values):
    """A declared domain, or a discrete one holding `values`."""
    from tensorboard.plugins.hparams import api as hp

    if isinstance(values, hp.Domain):
        return values
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(
            f"Received an invalid domain for hyperparameter `{name}`, expected a sequence "
            f"of the values tried or a `tensorboard.plugins.hparams.api` domain. "
            f"Received: {name}={values!r}"
        )
    values = [_scalar(name, value) for value in values]
    if not values:
        raise ValueError(
            f"Received an empty domain for hyperparameter `{name}`, expected at least "
            f"one value. Received: {name}=[]"
        )
    kinds = {type(value) for value in values}
    if kinds == {int, float}:  # e.g. learning rates 1 and 0.1
        values, kinds = [float(value) for value in values], {float}
    if len(kinds) != 1:
        raise ValueError(
            f"Received mixed types for hyperparameter `{name}`, expected values of one "
            f"type (bool, int/float or str). Received: {name}={values!r}"
        )
    return hp.Discrete(sorted(set(values)))


def _metric(hp, metric):
    if isinstance(metric, hp.Metric):
        return metric
    if not isinstance(metric, str) or not metric:
        raise ValueError(
            "Received an invalid metric, expected a scalar tag (str) or an `hp.Metric`. "
            f"Received: {metric!r}"
        )
    display_name, description = _METRIC_DESCRIPTIONS.get(metric, (None, None))
    return hp.Metric(metric, display_name=display_name, description=description)
