"""How many epochs gradient descent needs to reach the least-squares optimum.

Two measurements of the same quantity, full batch (one update per epoch):

- `epochs_to_optimum(model, x, y)`: fits a `LinearRegression` until its
  raw-unit parameters (`model.get_parameters()`) are within `tolerance` of
  `least_squares(x, y)`;
- `gradient_descent_epochs(x, y, learning_rate, standardize)`: the same
  algorithm as `LinearRegression.train_step`, written out in float64 NumPy,
  as an independent reference.

`python -m keras_linreg.convergence` prints both on the tutorial's data, raw
and standardized, at several learning rates (the README's table).
"""

from __future__ import annotations

import argparse

import keras
import numpy as np

from keras_linreg.closed_form import (
    hessian_eigenvalues,
    least_squares,
    max_stable_learning_rate,
)


def epochs_to_optimum(
    model, x, y, sample_weight=None, tolerance=1e-4, max_epochs=10_000
) -> int | None:
    """Full-batch epochs until `model` is within `tolerance` of least squares.

    Fits `model` (compiled here if it is not) on all of `x`, `y` as one batch
    per epoch, without shuffling, and after each epoch compares its raw-unit
    parameters with the float64 optimum `least_squares(x, y, sample_weight)`:

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
    optimum = least_squares(x, y, sample_weight)
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


def gradient_descent_epochs(
    x, y, learning_rate, standardize=False, sample_weight=None, tolerance=1e-4, max_epochs=10_000
) -> int | None:
    """`epochs_to_optimum` for the same algorithm in float64 NumPy.

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
    optimum = least_squares(x, y, sample_weight)
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


def _largest_stable_learning_rate(x, standardize=False, sample_weight=None) -> float:
    """`2 / λmax` of the loss Hessian: full-batch GD diverges at or above it.

    The Hessian of `sum(s * (z · w + b - y)**2) / n` in `(w, b)` is
    `H = (2/n) Zᵀ S Z` for `Z = [z, 1]`; gradient descent multiplies the
    error along each eigenvector by `1 - learning_rate · λ`, so it converges
    only for `learning_rate < 2 / λmax`, and its slowest direction shrinks by
    `1 - learning_rate · λmin` per epoch.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    mean, std = _statistics(x, standardize)
    return max_stable_learning_rate((x - mean) / std, sample_weight)


def _hessian_eigenvalues(x, standardize=False, sample_weight=None):
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    mean, std = _statistics(x, standardize)
    return hessian_eigenvalues((x - mean) / std, sample_weight)


def _statistics(x, standardize):
    if not standardize:
        return np.zeros(x.shape[1]), np.ones(x.shape[1])
    constant = x.min(axis=0) == x.max(axis=0)
    return np.where(constant, x.min(axis=0), x.mean(axis=0)), np.where(
        constant, 1.0, x.std(axis=0)
    )


def _distance(parameters, optimum):
    slope, intercept = parameters
    return max(
        float(np.max(np.abs(np.asarray(slope) - optimum[0]))), abs(intercept - optimum[1])
    )


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


def main(argv=None) -> int:
    """Prints epochs to within `--tolerance` of least squares, raw vs standardized."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--max-epochs", type=int, default=10_000)
    parser.add_argument("--no-model", action="store_true", help="NumPy reference only")
    args = parser.parse_args(argv)

    from keras_linreg.demo import tutorial_data
    from keras_linreg.model import LinearRegression

    x, y = tutorial_data(args.seed)
    raw_eigenvalues = _hessian_eigenvalues(x)
    raw_limit = 2.0 / raw_eigenvalues[-1]
    raw_best = 2.0 / raw_eigenvalues.sum()  # 2 / (λmin + λmax): fastest fixed rate
    std_limit = _largest_stable_learning_rate(x, standardize=True)
    print(
        f"tutorial data (seed {args.seed}): raw Hessian condition number "
        f"{raw_eigenvalues[-1] / raw_eigenvalues[0]:.1f}, stable for lr < {raw_limit:.5f}; "
        f"standardized: stable for lr < {std_limit:.5f}"
    )
    runs = [(False, 0.01), (False, 0.02), (False, round(raw_best, 5)), (False, 0.029)]
    runs += [(True, 0.01), (True, 0.1), (True, 0.3), (True, 0.5), (True, 0.9)]
    print(f"{'features':<13}{'lr':>9}{'float64 NumPy':>15}{'model (float32)':>17}")
    for standardize, rate in runs:
        reference = gradient_descent_epochs(
            x, y, rate, standardize, tolerance=args.tolerance, max_epochs=args.max_epochs
        )
        measured = "-"
        if not args.no_model:
            keras.utils.set_random_seed(args.seed)
            model = LinearRegression(learning_rate=rate, standardize=standardize)
            measured = epochs_to_optimum(
                model, x, y, tolerance=args.tolerance, max_epochs=args.max_epochs
            )
        name = "standardized" if standardize else "raw"
        print(f"{name:<13}{rate:>9}{str(reference):>15}{str(measured):>17}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
