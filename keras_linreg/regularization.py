"""Slope penalties: Keras regularizers applied as exact (proximal) gradient steps.

`LinearRegression(slope_regularizer=...)` takes what Keras layers take. L2 parts
join the gradient; L1 parts are applied as a soft-threshold after the step, so
the lasso's zeros are exactly zero. `penalized_optimum` is the float64 reference
the tests and reports compare against. Design notes: docs/regularization.md.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from keras_linreg import standardization
from keras_linreg.closed_form import least_squares

# The regularizers whose L1 and L2 coefficients are read off and applied exactly.
# Subclasses may override `__call__`, so only these exact types are decomposed.
_DECOMPOSABLE = (keras.regularizers.L1, keras.regularizers.L2, keras.regularizers.L1L2)


def get(identifier):
    """`keras.regularizers.get`, with this package's error for anything else.

    Args:
        identifier: None, `"l1"` (`L1(0.01)`), `"l2"` (`L2(0.01)`), `"l1_l2"`
            (`L1L2(l1=0.01, l2=0.01)`), any other name or config dict Keras'
            `keras.regularizers.get` takes, or a `keras.regularizers.Regularizer`.

    Returns:
        A `keras.regularizers.Regularizer`, or None.
    """
    if identifier is None:
        return None
    if identifier == "l1_l2":
        # Keras 2's name; Keras 3's string "l1l2" gives L1L2() with both
        # coefficients 0. This one gives the defaults of "l1" and "l2".
        return keras.regularizers.L1L2(l1=0.01, l2=0.01)
    try:
        regularizer = keras.regularizers.get(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(
            "Received an invalid value for `slope_regularizer`, expected None, 'l1', "
            "'l2', 'l1_l2' or a `keras.regularizers.Regularizer`. "
            f"Received: slope_regularizer={identifier!r}"
        ) from error
    if not isinstance(regularizer, keras.regularizers.Regularizer):
        raise ValueError(
            "Received an invalid value for `slope_regularizer`, expected a "
            "`keras.regularizers.Regularizer` (a plain function cannot be saved). "
            f"Received: slope_regularizer={identifier!r}"
        )
    return regularizer


def coefficients(regularizer) -> tuple[float, float]:
    """`(l1, l2)` of an exact `L1`, `L2` or `L1L2`; `(0.0, 0.0)` for anything else.

    The penalty of such a regularizer is `l1 · Σ|slope| + l2 · Σ slope²`.
    Any other regularizer is treated as smooth and differentiated as it is.
    """
    if type(regularizer) not in _DECOMPOSABLE:
        return 0.0, 0.0
    return float(getattr(regularizer, "l1", 0.0)), float(getattr(regularizer, "l2", 0.0))


def is_decomposable(regularizer) -> bool:
    """True when `coefficients(regularizer)` describes the whole penalty."""
    return type(regularizer) in _DECOMPOSABLE


def soft_threshold(v, threshold):
    """The proximal map of `threshold · |·|`: `sign(v) · max(|v| - threshold, 0)`."""
    return tf.sign(v) * tf.maximum(tf.abs(v) - threshold, tf.zeros_like(v))


def penalized_optimum(
    x,
    y,
    sample_weight=None,
    *,
    l1=0.0,
    l2=0.0,
    fit_intercept=True,
    scale=None,
    tol=1e-13,
    max_sweeps=100_000,
) -> tuple[np.ndarray, float]:
    """The float64 minimiser of this package's penalized objective.

    ```
    F(slope, b) = Σ w·(x·slope + b − y)² / n + l1·Σ|scale·slope| + l2·Σ(scale·slope)²
    ```

    with `n` the number of rows (sample weights default to 1) and `scale`
    the per-feature multiplier of the penalized coordinates (1, or the
    features' standard deviations for a `standardize=True` model, which
    penalizes its slope in standardized units). The intercept is never
    penalized. With `l1 = 0` this is ridge regression, solved in closed form
    by `closed_form.least_squares(..., l2=...)` in the coordinates `x / scale`; with
    `l1 > 0`, cyclic coordinate descent on the Gram matrix with exact
    soft-threshold updates (as scikit-learn's and glmnet's), to a change
    below `tol` relative to the largest coefficient.

    Args:
        x: `(n,)` or `(n, n_features)`.
        y: `(n,)`.
        sample_weight: Optional `(n,)`, non-negative.
        l1: The L1 coefficient (Keras' `L1(l1)`), ≥ 0.
        l2: The L2 coefficient (Keras' `L2(l2)`), ≥ 0.
        fit_intercept: If False, the intercept is 0.
        scale: Optional `(n_features,)` positive multipliers of the slope in
            the penalty.
        tol: Coordinate-descent stopping tolerance.
        max_sweeps: Coordinate-descent sweep cap.

    Returns:
        `(slope, intercept)` in raw units: a float64 `(n_features,)` array
        and a float.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    n, k = x.shape
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, np.float64).reshape(-1)
    for name, value in (("l1", l1), ("l2", l2)):
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(
                f"Received an invalid value for `{name}`, expected a finite number >= 0. "
                f"Received: {name}={value!r}"
            )
    scale = np.ones(k) if scale is None else np.asarray(scale, dtype=np.float64).reshape(-1)
    # Penalized coordinates z = x / scale, coefficients beta = scale * slope.
    z = x / scale
    if l1 == 0.0:  # ridge (or none): the closed form
        beta, intercept = least_squares(z, y, w, fit_intercept=fit_intercept, l2=l2)
        return beta / scale, intercept
    if fit_intercept:
        total = w.sum()
        z_mean = (w @ z) / total if total > 0 else np.zeros(k)
        y_mean = float(w @ y / total) if total > 0 else 0.0
    else:
        z_mean, y_mean = np.zeros(k), 0.0
    zc = z - z_mean
    yc = y - y_mean
    gram = (zc.T * w) @ zc / n
    corr = (zc.T * w) @ yc / n
    beta = np.zeros(k)
    diag = np.diag(gram) + l2
    for _ in range(max_sweeps):
        largest_change = 0.0
        for j in range(k):
            if diag[j] == 0.0:
                continue
            residual = corr[j] - gram[j] @ beta + gram[j, j] * beta[j]
            new = np.sign(residual) * max(abs(residual) - l1 / 2.0, 0.0) / diag[j]
            largest_change = max(largest_change, abs(new - beta[j]))
            beta[j] = new
        if largest_change <= tol * max(1.0, np.max(np.abs(beta))):
            break
    slope = beta / scale
    intercept = float(y_mean - z_mean @ beta) if fit_intercept else 0.0
    return slope, intercept


def model_optimum(model, x, y, sample_weight=None) -> tuple[np.ndarray, float]:
    """The optimum a `LinearRegression` trains towards on `(x, y)`, in raw units.

    `least_squares` without a penalty; with Keras' `L1`, `L2` or `L1L2`, the
    penalized optimum, in standardized units for a `standardize=True` model
    (its adapted statistics, or those of `x` when it is not adapted yet, as
    a first full-batch `fit` would adapt). A model with `fit_intercept=False`
    gets the optimum through the origin (intercept 0; its standardized units
    are the root-mean-square scaled ones). This is what reports and
    `epochs_to_optimum` compare the model with.

    Raises:
        ValueError: for a custom regularizer, which has no reference optimum.
    """
    regularizer = model.slope_regularizer
    fit_intercept = getattr(model, "fit_intercept", True)
    if regularizer is None:
        return least_squares(x, y, sample_weight, fit_intercept=fit_intercept)
    if not is_decomposable(regularizer):
        raise ValueError(
            "This model's `slope_regularizer` is a custom regularizer, whose optimum "
            "has no reference here; only keras.regularizers.L1, L2 and L1L2 have one. "
            f"Received: slope_regularizer={regularizer!r}"
        )
    l1, l2 = coefficients(regularizer)
    scale = None
    if model.standardize:
        layer = model.standardization
        if layer is not None and layer.is_adapted:
            _, scale = layer.statistics()
        else:
            _, scale, _ = standardization.feature_statistics(x, center=fit_intercept)
    return penalized_optimum(
        x, y, sample_weight, l1=l1, l2=l2, fit_intercept=fit_intercept, scale=scale
    )


def objective(x, y, slope, intercept, sample_weight=None, *, l1=0.0, l2=0.0, scale=None) -> float:
    """`F(slope, intercept)` of `penalized_optimum`, in float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    slope = np.asarray(slope, dtype=np.float64)
    beta = slope * (1.0 if scale is None else np.asarray(scale, np.float64))
    residual = x @ slope + intercept - y
    return float(w @ residual**2 / len(y) + l1 * np.abs(beta).sum() + l2 * (beta**2).sum())
