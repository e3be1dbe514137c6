"""`keras-linreg demo --table`: epochs to the least-squares optimum, raw vs standardized.

Each row is measured twice: by a float32 `LinearRegression`
(`keras_linreg.epochs_to_optimum`) and by the same algorithm written out in
float64 NumPy (`gradient_descent_epochs`), an independent reference.
"""

from __future__ import annotations

import keras
import numpy as np

import keras_linreg

__all__ = ["RUNS", "gradient_descent_epochs", "model_epochs", "print_table"]

# (standardize, learning rate); None is the fastest fixed raw rate 2 / (λmin + λmax).
RUNS = (
    (False, 0.01),
    (False, 0.02),
    (False, None),
    (False, 0.029),
    (True, 0.01),
    (True, 0.1),
    (True, 0.3),
    (True, 0.5),
    (True, 0.9),
)


def gradient_descent_epochs(
    x, y, learning_rate, standardize=False, sample_weight=None, tolerance=1e-4, max_epochs=10_000
) -> int | None:
    """`keras_linreg.epochs_to_optimum` for the same algorithm in float64 NumPy.

    Starting from zero weights, each epoch applies one update on the whole
    data, with `z = (x - mean) / std` if `standardize` (population std of the
    unweighted rows, 1 for a constant feature) and `z = x` otherwise:

    ```
    r  = z · w + b - y
    w -= learning_rate * (2/n) zᵀ (s * r)     # s: sample weights, 1 if None
    b -= learning_rate * (2/n) Σ s * r
    ```

    and compares the raw-unit `slope = w / std`,
    `intercept = b - Σ w · mean / std` with `least_squares`.

    Returns:
        The number of epochs, or None if `max_epochs` were not enough (or the
        iteration diverged).
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    s = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, np.float64)
    mean, std = _statistics(x, standardize)
    z = (x - mean) / std
    optimum = keras_linreg.least_squares(x, y, sample_weight)
    n = len(y)
    w = np.zeros(x.shape[1])
    b = 0.0
    for epoch in range(1, max_epochs + 1):
        r = s * (z @ w + b - y)
        w = w - learning_rate * (2.0 / n) * (z.T @ r)
        b = b - learning_rate * (2.0 / n) * r.sum()
        parameters = (w / std, b - np.sum(w * mean / std))
        distance = _distance(parameters, optimum)
        if distance <= tolerance:
            return epoch
        if not np.isfinite(distance):
            return None
    return None


def model_epochs(
    x, y, learning_rate, standardize=False, tolerance=1e-4, max_epochs=10_000
) -> int | None:
    """`epochs_to_optimum` of a fresh `LinearRegression(learning_rate, standardize)`."""
    model = keras_linreg.LinearRegression(learning_rate=learning_rate, standardize=standardize)
    return keras_linreg.epochs_to_optimum(model, x, y, tolerance=tolerance, max_epochs=max_epochs)


def print_table(
    x, y, *, label="", seed=0, tolerance=1e-4, max_epochs=10_000, with_model=True
) -> list[tuple[str, float, int | None, int | None]]:
    """Prints the epochs each of `RUNS` needs on `(x, y)`, NumPy and model.

    The header gives the raw Hessian's condition number `κ = cond([x, 1])²`
    and the stable limits `keras_linreg.max_stable_learning_rate` of the raw
    and the standardized features; the raw run at `None` uses the fastest
    fixed rate `2 / (λmin + λmax) = limit · κ / (κ + 1)`, rounded to 5 digits.

    Returns:
        One `(features, learning_rate, numpy_epochs, model_epochs)` per run;
        `model_epochs` is None without `with_model` (printed as "-").
    """
    x64 = np.asarray(x, dtype=np.float64)
    x64 = x64[:, None] if x64.ndim == 1 else x64
    mean, std = _statistics(x64, standardize=True)
    condition = np.linalg.cond(np.hstack([x64, np.ones((len(x64), 1))])) ** 2
    raw_limit = keras_linreg.max_stable_learning_rate(x64)
    std_limit = keras_linreg.max_stable_learning_rate((x64 - mean) / std)
    print(
        f"{label}: raw Hessian condition number "
        f"{condition:.1f}, stable for lr < {raw_limit:.5f}; "
        f"standardized: stable for lr < {std_limit:.5f}"
    )
    print(f"{'features':<13}{'lr':>9}{'float64 NumPy':>15}{'model (float32)':>17}")
    rows = []
    for standardize, rate in RUNS:
        if rate is None:
            rate = round(raw_limit * condition / (condition + 1), 5)
        reference = gradient_descent_epochs(
            x, y, rate, standardize, tolerance=tolerance, max_epochs=max_epochs
        )
        measured = None
        if with_model:
            keras.utils.set_random_seed(seed)
            measured = model_epochs(x, y, rate, standardize, tolerance, max_epochs)
        name = "standardized" if standardize else "raw"
        shown = str(measured) if with_model else "-"
        print(f"{name:<13}{rate:>9}{str(reference):>15}{shown:>17}")
        rows.append((name, rate, reference, measured))
    return rows


def _distance(parameters, optimum):
    slope, intercept = parameters
    return max(float(np.max(np.abs(slope - optimum[0]))), abs(intercept - optimum[1]))


def _statistics(x, standardize):
    """`(mean, std)` as `standardize=True` uses them; `(0, 1)` otherwise."""
    if not standardize:
        return np.zeros(x.shape[1]), np.ones(x.shape[1])
    constant = x.min(axis=0) == x.max(axis=0)
    return np.where(constant, x.min(axis=0), x.mean(axis=0)), np.where(constant, 1.0, x.std(axis=0))
