"""How many full-batch epochs a model needs to reach the least-squares optimum.

`epochs_to_optimum` measures it on a real `LinearRegression`; the command line's
convergence table (`keras-linreg demo --table`) prints it beside a float64
NumPy reference of the same algorithm.
"""

from __future__ import annotations

import keras
import numpy as np

from keras_linreg.regularization import model_optimum

__all__ = ["epochs_to_optimum"]


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
