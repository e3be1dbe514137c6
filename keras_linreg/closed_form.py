"""Closed-form references for linear regression, in float64 NumPy."""

from __future__ import annotations

import numpy as np

from keras_linreg import inputs

__all__ = ["hessian_eigenvalues", "least_squares", "max_stable_learning_rate"]

# Rows per chunk of the Hessian's accumulation (bounds its float64 temporaries).
_CHUNK_ROWS = 65536


def least_squares(
    x, y, sample_weight=None, *, fit_intercept=True, l2=0.0
) -> tuple[np.ndarray, float]:
    """The (weighted, optionally ridge) least-squares optimum of `y ≈ x · slope + intercept`.

    Minimises, over the slope and the intercept, the objective `LinearRegression`
    trains on (its weighted mean squared error plus Keras' `L2(l2)` penalty):

    ```
    F(slope, b) = Σ w·(x·slope + b − y)² / n + l2·Σ slope²
    ```

    with `n` the number of rows and `w` the sample weights (default 1); the
    intercept is never penalized, and is 0 with `fit_intercept=False`. Solved
    in float64 without forming `X^T W X`: the columns are centred on their
    weighted means (when an intercept is fitted) and scaled to unit norm, the
    rows scaled by `sqrt(w)`, `sqrt(n·l2)·I` stacked under them for the
    penalty, and `numpy.linalg.lstsq` (an SVD) solves the stacked system.
    Rank-deficient problems (a constant feature, fewer rows than unknowns)
    get the minimum-norm solution in those scaled coordinates.

    Args:
        x: Array of shape `(n,)` (one feature) or `(n, n_features)`.
        y: Array of shape `(n,)` or `(n, 1)`.
        sample_weight: Optional non-negative array of shape `(n,)`.
        fit_intercept: If False, the fit goes through the origin.
        l2: The L2 (ridge) coefficient, a finite number ≥ 0.

    Returns:
        `(slope, intercept)`: a float64 array of shape `(n_features,)` and a
        float.
    """
    x, y, sample_weight = inputs.check_arrays(x, y, sample_weight)
    if not (np.isfinite(l2) and l2 >= 0):
        raise ValueError(
            "Received an invalid value for `l2`, expected a finite number >= 0. "
            f"Received: l2={l2!r}"
        )
    x, y = x.astype(np.float64), y.astype(np.float64)
    n, k = x.shape
    w = np.ones(n) if sample_weight is None else sample_weight.astype(np.float64)
    total = w.sum()
    if fit_intercept and total > 0:
        x_mean, y_mean = (w @ x) / total, float(w @ y) / total
    else:
        x_mean, y_mean = np.zeros(k), 0.0
    root = np.sqrt(w)
    design = (x - x_mean) * root[:, None]
    target = (y - y_mean) * root
    if l2:
        design = np.vstack([design, np.sqrt(n * l2) * np.eye(k)])
        target = np.concatenate([target, np.zeros(k)])
    norms = np.linalg.norm(design, axis=0)
    norms[norms == 0] = 1.0
    scaled, *_ = np.linalg.lstsq(design / norms, target, rcond=None)
    slope = scaled / norms
    intercept = y_mean - float(x_mean @ slope) if fit_intercept else 0.0
    return slope, intercept


def max_stable_learning_rate(x, sample_weight=None, *, design=None, l2=0.0) -> float:
    """The largest learning rate at which full-batch gradient descent converges.

    `LinearRegression` minimises, over `theta = (slope, intercept)`,

    ```
    loss(theta) = sum(w * (X theta - y) ** 2) / n,    X = [x, 1],  W = diag(w)
    ```

    a quadratic with the constant Hessian `H = (2 / n) X^T W X` (`2·E[w [x,1][x,1]^T]`
    for unit weights). One full-batch step `theta <- theta - lr * grad` multiplies
    the error `theta - theta*` along each eigenvector of `H` (eigenvalue `lambda`)
    by `1 - lr * lambda`, so it converges, and the loss decreases at every step,
    exactly when `|1 - lr * lambda| < 1` for every eigenvalue, that is when

    ```
    lr < 2 / lambda_max(H)
    ```

    and diverges (the error along the top eigenvector grows by
    `|1 - lr * lambda_max| > 1` per step) above it. This function returns
    `2 / lambda_max(H)`, from `hessian_eigenvalues` (float64, in chunks of rows).
    Half of it, `1 / lambda_max`, is a safe choice. Mini-batch SGD sees one batch's
    Hessian per step, so its stable rate is usually somewhat lower.

    For the tutorial's data (`x = linspace(0, 10, 100)`) it is about 0.0292.

    Args:
        x: Array of shape `(n,)` (one feature) or `(n, n_features)`, the
            features the model is trained on.
        sample_weight: Optional non-negative array of shape `(n,)`.
        design: Optional function of a chunk of rows of `x` returning the
            prediction's Jacobian in the trainable weights, for a model that
            transforms its features first (see `hessian_eigenvalues`).
        l2: The coefficient of an L2 slope penalty `l2 · Σ slope²`, whose
            curvature `2·l2` joins the slope block of `H`.

    Returns:
        A float > 0 (`inf` when `H` is zero, e.g. all weights zero).
    """
    largest = float(hessian_eigenvalues(x, sample_weight, design=design, l2=l2)[-1])
    if largest <= 0:
        return float("inf")
    return 2.0 / largest


def hessian_eigenvalues(x, sample_weight=None, *, design=None, l2=0.0) -> np.ndarray:
    """Eigenvalues (ascending) of the loss's Hessian `H = (2 / n) Z^T W Z`, in float64.

    `Z` is the Jacobian of the prediction in the trainable weights, `[x, 1]` for
    `y = x · slope + intercept` (the prediction is affine in the weights, so `Z` and
    `H` are constant). `Z^T W Z` is accumulated over chunks of rows, so a large
    float32 `x` is never copied whole to float64.

    Args:
        x: Features, `(n,)` or `(n, n_features)`.
        sample_weight: Optional non-negative array of shape `(n,)`.
        design: Optional function mapping a chunk of rows of `x` (shape `(m, k)`)
            to its rows of `Z` (shape `(m, p)`). Defaults to `[x, 1]`.
        l2: An L2 slope penalty's coefficient: `H` gains `2·l2` on the diagonal
            of its first `n_features` entries (the slope's; `Z`'s columns start
            with the slope's).

    Returns:
        A float64 array of the `p` eigenvalues, ascending.
    """
    x, _, sample_weight = inputs.check_arrays(x, None, sample_weight, require_y=False)
    n = len(x)
    gram = 0.0
    for start in range(0, n, _CHUNK_ROWS):
        rows = x[start : start + _CHUNK_ROWS]
        if design is None:
            z = np.hstack([rows.astype(np.float64), np.ones((len(rows), 1))])
        else:
            z = np.asarray(design(rows), dtype=np.float64)
        weighted = z
        if sample_weight is not None:
            weighted = z * sample_weight[start : start + _CHUNK_ROWS, None].astype(np.float64)
        gram = gram + z.T @ weighted
    hessian = (2.0 / n) * gram
    if l2:
        k = x.shape[1] if x.ndim == 2 else 1
        hessian[np.arange(k), np.arange(k)] += 2.0 * l2
    return np.linalg.eigvalsh(hessian)
