"""Has a fit converged? Measured against the exact optimum, and detected in training.

`relative_gap` / `check_convergence` compare a model with the optimum it trains
towards (and warn with `ConvergenceWarning`, like scikit-learn's);
`OptimumStopping` stops `fit` there (in-memory data, whose optimum is known) and
`ConvergenceStopping` once the loss stops improving (scikit-learn's
`tol`/`n_iter_no_change`, for any data); `epochs_to_optimum` counts full-batch epochs to the
optimum (`keras-linreg demo --table` prints it).
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np

from keras_linreg import inputs
from keras_linreg.regularization import model_optimum

__all__ = [
    "DEFAULT_TOLERANCE",
    "ConvergenceStopping",
    "ConvergenceWarning",
    "OptimumStopping",
    "check_convergence",
    "epochs_to_optimum",
    "relative_gap",
]

# The default of `check_convergence` and `OptimumStopping`: every parameter within
# 1e-5 of its scale (at least 4 significant digits where the optimum is not near 0).
DEFAULT_TOLERANCE = 1e-5


class ConvergenceWarning(UserWarning):
    """A fit ended far from the optimum it trains towards (like scikit-learn's)."""


def relative_gap(model, x, y, sample_weight=None) -> float:
    """How far `model`'s parameters are from their optimum, relative to their scale.

    With `theta*` the optimum `model` trains towards (least squares, or the
    penalized optimum: `regularization.model_optimum`), `s_y` the (weighted)
    standard deviation of `y` and `s_j` that of feature `j`:

    ```
    gap = max_i |theta_i - theta*_i| / (|theta*_i| + scale_i)
    scale = s_y / s_j for slope j,  s_y for the intercept
    ```

    a relative error where the optimum is large and an error in units of "one
    standard deviation of x moves y by one standard deviation of y" where it is
    near 0. It does not change when x or y are rescaled, and, unlike the loss,
    it sees errors along flat (collinear) directions. Constant features and a
    constant `y` use scale 1.

    Returns:
        A float >= 0 (0 exactly at the optimum).
    """
    return _GapTo(model, x, y, sample_weight)(model)


def check_convergence(
    model, x, y, sample_weight=None, *, tolerance=DEFAULT_TOLERANCE, warn=True
) -> float:
    """`relative_gap(model, x, y, sample_weight)`, warning when it exceeds `tolerance`.

    Call it on the training rows after `fit`. The warning says how far the fit
    is and what to try (more epochs, `standardize=True`, `learning_rate="auto"`).

    Returns:
        The relative gap.
    """
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise ValueError(
            "Received an invalid value for `tolerance`, expected a number > 0. "
            f"Received: tolerance={tolerance!r}"
        )
    gap = relative_gap(model, x, y, sample_weight)
    if warn and not gap <= tolerance:
        advice = "train for more epochs"
        if not model.standardize:
            advice += ", standardize the features (standardize=True)"
        if model.learning_rate_config != "auto":
            advice += ', or use learning_rate="auto"'
        warnings.warn(
            f"The fit has not converged: its parameters are {gap:.3g} from the optimum "
            f"(relative to their scale; tolerance {tolerance:g}). Try: {advice}.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return gap


class ConvergenceStopping(keras.callbacks.Callback):
    """Stops `fit` when the loss has stopped improving: a relative tolerance.

    After each epoch, with `best` the lowest loss so far, the epoch counts as
    no improvement when

    ```
    loss > best - tol · |best|
    ```

    and training stops after `n_iter_no_change` such epochs in a row
    (scikit-learn's `tol`/`n_iter_no_change`; Keras' `EarlyStopping` has an
    absolute `min_delta` instead, which depends on the units of `y`). In float32
    a relative change below about 1e-7 is invisible, so a small `tol` means
    "until the loss stops changing". `stopped_epoch` is the 1-based epoch
    training stopped after, or None.

    Args:
        tol: Relative improvement that counts, a number >= 0.
        n_iter_no_change: Epochs without improvement before stopping, >= 1.
        monitor: The log to watch (default `"loss"`).
    """

    def __init__(self, tol=1e-9, n_iter_no_change=10, monitor="loss"):
        super().__init__()
        if not (math.isfinite(tol) and tol >= 0):
            raise ValueError(
                "Received an invalid value for `tol`, expected a number >= 0. "
                f"Received: tol={tol!r}"
            )
        if isinstance(n_iter_no_change, bool) or not (
            isinstance(n_iter_no_change, int) and n_iter_no_change >= 1
        ):
            raise ValueError(
                "Received an invalid value for `n_iter_no_change`, expected an integer "
                f">= 1. Received: n_iter_no_change={n_iter_no_change!r}"
            )
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.monitor = monitor
        self.stopped_epoch = None
        self._best = math.inf
        self._without = 0

    def on_train_begin(self, logs=None):
        self.stopped_epoch, self._best, self._without = None, math.inf, 0

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get(self.monitor)
        if loss is None or not math.isfinite(loss):
            return
        if math.isinf(self._best) or loss <= self._best - self.tol * abs(self._best):
            self._without = 0
        else:
            self._without += 1
        self._best = min(self._best, loss)
        if self._without >= self.n_iter_no_change:
            self.model.stop_training = True
            self.stopped_epoch = epoch + 1


def epochs_to_optimum(
    model, x, y, sample_weight=None, tolerance=1e-4, max_epochs=10_000
) -> int | None:
    """Full-batch epochs until `model` is within `tolerance` of its optimum.

    Fits `model` (compiled here if it is not) on all of `x`, `y` as one batch
    per epoch, without shuffling, and after each epoch compares its raw-unit
    parameters with the float64 optimum `least_squares(x, y, sample_weight)`,
    or, for a model with a `slope_regularizer`, the penalized optimum
    (`keras_linreg.regularization.model_optimum`):

    ```
    max(|slope - slope*|_inf, |intercept - intercept*|) <= tolerance
    ```

    Training stops at the first epoch that satisfies it. The model keeps the
    state it reached. A standardizing model adapts at the first epoch as in
    any `fit` (unless already adapted).

    Args:
        model: A `LinearRegression`, usually fresh.
        x: Features, `(n,)` or `(n, n_features)`.
        y: Targets, `(n,)`.
        sample_weight: Optional `(n,)` weights, for both the fit and the
            optimum.
        tolerance: Largest allowed absolute difference of any parameter.
        max_epochs: Give up after this many epochs.

    Returns:
        The number of epochs (updates), 0 if the model starts there, or None
        if `max_epochs` were not enough.
    """
    optimum = model_optimum(model, x, y, sample_weight)
    if model.built and _distance(model.get_parameters(), optimum) <= tolerance:
        return 0
    if not model.compiled:
        model.compile()
    stop = _StopAtOptimum(optimum, tolerance)
    model.fit(
        x,
        y,
        sample_weight=sample_weight,
        batch_size=len(x),
        epochs=max_epochs,
        shuffle=False,
        verbose=0,
        callbacks=[stop],
    )
    return stop.reached_at


def _distance(parameters, optimum):
    slope, intercept = parameters
    return max(float(np.max(np.abs(np.asarray(slope) - optimum[0]))), abs(intercept - optimum[1]))


class _StopAtOptimum(keras.callbacks.Callback):
    def __init__(self, optimum, tolerance):
        super().__init__()
        self.optimum = optimum
        self.tolerance = tolerance
        self.reached_at = None

    def on_epoch_end(self, epoch, logs=None):
        if _distance(self.model.get_parameters(), self.optimum) <= self.tolerance:
            self.reached_at = epoch + 1
            self.model.stop_training = True


class OptimumStopping(keras.callbacks.Callback):
    """Stops `fit` once the parameters are within `tolerance` of their optimum.

    The optimum of in-memory training data is known exactly (float64, see
    `relative_gap`), so this stops at the first epoch with
    `relative_gap <= tolerance`: no guessing from the loss, whose float32
    value cannot resolve a parameter error below about `sqrt(1e-7)` relative.
    The optimum is computed once; each epoch costs `O(n_features)`.
    `reached_epoch` is the 1-based epoch it stopped after, or None; `gap` the
    last relative gap.

    Args:
        x, y, sample_weight: The training rows (e.g. without a validation split).
        tolerance: The relative gap to reach, a number > 0.
    """

    def __init__(self, x, y, sample_weight=None, tolerance=DEFAULT_TOLERANCE):
        super().__init__()
        if not (math.isfinite(tolerance) and tolerance > 0):
            raise ValueError(
                "Received an invalid value for `tolerance`, expected a number > 0. "
                f"Received: tolerance={tolerance!r}"
            )
        self.tolerance = tolerance
        self._data = (x, y, sample_weight)
        self._gap = None
        self.reached_epoch = None
        self.gap = None

    def on_train_begin(self, logs=None):
        self._gap = _GapTo(self.model, *self._data)
        self.reached_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        self.gap = self._gap(self.model)
        if self.gap <= self.tolerance:
            self.reached_epoch = epoch + 1
            self.model.stop_training = True


class _GapTo:
    """`relative_gap` with the optimum and scales computed once."""

    def __init__(self, model, x, y, sample_weight=None):
        x_array, y_array, weights = inputs.check_arrays(x, y, sample_weight)
        x64, y64 = x_array.astype(np.float64), y_array.astype(np.float64)
        w = np.ones(len(y64)) if weights is None else weights.astype(np.float64)
        total = float(w.sum())
        if total <= 0:
            raise ValueError(
                "Received an invalid `sample_weight`: all weights are 0, so no optimum "
                "is defined. Received: sample_weight with sum 0"
            )

        def std(values):
            mean = (w @ values) / total
            return np.sqrt((w @ (values - mean) ** 2) / total)

        s_y = float(std(y64)) or 1.0
        s_x = np.atleast_1d(std(x64))
        s_x[s_x == 0] = 1.0
        optimum = np.append(*model_optimum(model, x, y, sample_weight))
        self._optimum = optimum
        self._scale = np.abs(optimum) + np.append(s_y / s_x, s_y)

    def __call__(self, model):
        slope, intercept = model.get_parameters()
        errors = np.abs(np.append(slope, intercept) - self._optimum)
        return float(np.max(errors / self._scale))
