"""Closed-form references for linear regression, in float64 NumPy."""

from __future__ import annotations

import numpy as np


def least_squares(x, y, sample_weight=None) -> tuple[np.ndarray, float]:
    """The (weighted) least-squares optimum of `y ≈ x · slope + intercept`.

    Minimises `sum(w * (x · slope + intercept - y) ** 2)` over the rows, which
    is `theta = (X^T W X)^-1 X^T W y` for `X = [x, 1]` and `W = diag(w)`, but
    solved without forming or inverting `X^T W X`: the rows are scaled by
    `sqrt(w)` and `numpy.linalg.lstsq` (an SVD) solves
    `min ||sqrt(W) (X theta - y)||`, in float64. Rank-deficient problems (a
    constant feature, fewer rows than unknowns) get the minimum-norm solution.

    Args:
        x: Array of shape `(n,)` (one feature) or `(n, n_features)`.
        y: Array of shape `(n,)` or `(n, 1)`.
        sample_weight: Optional non-negative array of shape `(n,)`.

    Returns:
        `(slope, intercept)`: a float64 array of shape `(n_features,)` and a
        float.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise ValueError(
            "Received invalid shapes, expected x of shape (n,) or (n, n_features) "
            f"and y of shape (n,) with n > 0. Received: x.shape={x.shape}, "
            f"y.shape={y.shape}"
        )
    design = np.hstack([x, np.ones((len(x), 1))])
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if w.shape != y.shape or np.any(w < 0):
            raise ValueError(
                "Received an invalid `sample_weight`, expected non-negative "
                f"values of shape {y.shape}. Received: "
                f"sample_weight.shape={w.shape}"
            )
        root = np.sqrt(w)
        design = design * root[:, None]
        y = y * root
    theta, *_ = np.linalg.lstsq(design, y, rcond=None)
    return theta[:-1], float(theta[-1])


def max_stable_learning_rate(x, sample_weight=None) -> float:
    """The largest learning rate at which full-batch gradient descent converges.

    `LinearRegression` minimises, over `theta = (slope, intercept)`,

    ```
    loss(theta) = sum(w * (X theta - y) ** 2) / n,    X = [x, 1],  W = diag(w)
    ```

    a quadratic with the constant Hessian `H = (2 / n) X^T W X` (2·E[w [x,1][x,1]^T]
    for unit weights). One full-batch step `theta <- theta - lr * grad` multiplies
    the error `theta - theta*` along each eigenvector of `H` (eigenvalue `lambda`)
    by `1 - lr * lambda`, so it converges, and the loss decreases at every step,
    exactly when `|1 - lr * lambda| < 1` for every eigenvalue, that is when

    ```
    lr < 2 / lambda_max(H)
    ```

    and diverges (the error along the top eigenvector grows by
    `|1 - lr * lambda_max| > 1` per step) above it. This function returns
    `2 / lambda_max(H)`, computed in float64 from the eigenvalues of the
    `(n_features + 1)`-square matrix `H` (`numpy.linalg.eigvalsh`). Half of it,
    `1 / lambda_max`, is a safe choice. Mini-batch SGD sees one batch's Hessian
    per step, so its stable rate is usually somewhat lower.

    For the tutorial's data (`x = linspace(0, 10, 100)`) it is about 0.0292.

    Args:
        x: Array of shape `(n,)` (one feature) or `(n, n_features)`, the
            features the model is trained on.
        sample_weight: Optional non-negative array of shape `(n,)`.

    Returns:
        A float > 0 (`inf` when `H` is zero, e.g. all weights zero).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(
            "Received an invalid `x`, expected shape (n,) or (n, n_features) with "
            f"n > 0. Received: x.shape={x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("Received an invalid `x`, expected finite values (no NaN or inf).")
    n = len(x)
    design = np.hstack([x, np.ones((n, 1))])
    if sample_weight is not None:
        w = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(
                "Received an invalid `sample_weight`, expected finite non-negative "
                f"values of shape ({n},). Received: sample_weight.shape={w.shape}"
            )
        design_w = design * w[:, None]
    else:
        design_w = design
    hessian = (2.0 / n) * (design.T @ design_w)
    largest = float(np.linalg.eigvalsh(hessian)[-1])
    if largest <= 0:
        return float("inf")
    return 2.0 / largest
