"""Independent float64 references the tests compare the model with (NumPy only)."""

from __future__ import annotations

import numpy as np


def design(x):
    """`[x, 1]` in float64, for `x` of shape `(n,)` or `(n, k)`."""
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    return np.hstack([x, np.ones((len(x), 1))])


def numpy_gd(x, y, learning_rate, steps, sample_weight=None):
    """Full-batch gradient descent in float64; returns thetas[0..steps] and losses."""
    z = design(x)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    theta = np.zeros(z.shape[1])
    thetas, losses = [theta.copy()], []
    for _ in range(steps):
        residual = z @ theta - y
        losses.append(np.sum(w * residual**2) / len(y))
        theta = theta - learning_rate * (2.0 / len(y)) * z.T @ (w * residual)
        thetas.append(theta.copy())
    return thetas, losses
