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
