"""Where the learning rate of a `LinearRegression` lives.

Keras' learning-rate callbacks (`LearningRateScheduler`, `ReduceLROnPlateau`)
and `keras.callbacks.TensorBoard` read and set `model.optimizer.learning_rate`.
`learning_rate="auto"` is resolved from the training data and the batch size at
the first `fit` (`auto_learning_rate`).
`LinearRegression` applies plain SGD itself, so its "optimizer" is only a
holder: it owns the learning rate (a variable, or a schedule) and the step
counter the schedule is evaluated on, both saved and restored with the model,
and it never updates a weight.
"""

from __future__ import annotations

import math
import numbers

import keras


@keras.saving.register_keras_serializable(package="keras_linreg")
class LearningRateState(keras.optimizers.Optimizer):
    """Holds the learning rate and step counter of a `LinearRegression`.

    `LinearRegression.compile()` creates one and Keras exposes it as
    `model.optimizer`, so everything that reads or sets
    `model.optimizer.learning_rate` sees the rate the model really applies.
    The update itself happens in `LinearRegression.train_step`:

    ```
    lr = learning_rate(iterations)   # a float, or a schedule of the step
    w = w - lr * g                   # for w in (slope, intercept)
    iterations = iterations + 1
    ```

    Args:
        learning_rate: A float > 0 or a
            `keras.optimizers.schedules.LearningRateSchedule`.
        name: Optional name.
        auto_pending: True while a `learning_rate="auto"` model has not yet
            computed its rate from data (saved with the model, so a loaded model
            knows whether its rate is real).
    """

    def __init__(self, learning_rate=0.01, name=None, auto_pending=False, **kwargs):
        # The base class accepts clipping, EMA, weight decay, ...: none of them
        # would be applied by `train_step`, so refuse them instead of ignoring.
        unsupported = {k: v for k, v in kwargs.items() if v not in (None, False)}
        if unsupported:
            raise ValueError(
                "LearningRateState only holds a learning rate; "
                "`LinearRegression.train_step` applies plain SGD and no "
                "clipping, EMA, weight decay or loss scaling. "
                f"Received: {unsupported}"
            )
        super().__init__(learning_rate=learning_rate, name=name)
        # `learning_rate="auto"` not yet resolved from data: the rate is a placeholder.
        self.auto_pending = bool(auto_pending)

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError(
            "LearningRateState does not update weights: "
            "`LinearRegression.train_step` applies "
            "`variable.assign_sub(learning_rate * gradient)` itself."
        )

    def get_config(self):
        config = super().get_config()
        own = {"name": config["name"], "learning_rate": config["learning_rate"]}
        return {**own, "auto_pending": True} if self.auto_pending else own


AUTO = "auto"


def validate_learning_rate(learning_rate):
    """Returns `learning_rate` as a finite float > 0, the schedule given, or `"auto"`.

    Raises:
        ValueError: for anything else (bool, other strings, 0, negative, NaN, inf).
    """
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return learning_rate
    if learning_rate == AUTO:
        return AUTO
    if isinstance(learning_rate, numbers.Real) and not isinstance(learning_rate, bool):
        value = float(learning_rate)
        if math.isfinite(value) and value > 0:
            return value
    raise ValueError(
        "Received an invalid value for `learning_rate`, expected a finite float "
        "> 0, a keras.optimizers.schedules.LearningRateSchedule or \"auto\". "
        f"Received: learning_rate={learning_rate!r}"
    )


def auto_learning_rate(largest_eigenvalue, row_curvature, batch_size, n):
    """The rate `learning_rate="auto"` picks, from the data's curvature and the batch size.

    With `H` the loss's Hessian on the `n` training rows in the trainable weights
    (`[x, 1]`, or `[z, 1]` for standardized features `z`; `2·l2` added on the slope
    for an L2 penalty), `λ = λ_max(H)`, and `c = max_i 2·w_i·|z_i|² + 2·l2` the
    sharpest single row's curvature (`closed_form.max_row_curvature`):

    ```
    full batch (batch_size >= n):  lr = 1 / λ                       (half of 2 / λ)
    mini-batches of b rows:        lr = b / (c + (b - 1) · λ)
    ```

    Full batch, that removes the error along the top eigenvector in one step and
    shrinks the others by `1 - λ_i / λ`. A mini-batch's Hessian is sharper than `H`
    (one row alone has curvature up to `c`); the mini-batch rule is the step size
    of Ma, Bassily and Belkin (2018, "The Power of Interpolation") for SGD on least
    squares, half the largest rate at which it converges, moving from `1 / c` at
    `b = 1` towards `1 / λ` as `b` grows.

    Raises:
        ValueError: `H` is zero (no curvature to size a step by).
    """
    if not (math.isfinite(largest_eigenvalue) and largest_eigenvalue > 0):
        raise ValueError(
            "learning_rate=\"auto\" found no curvature in the training data (the "
            "loss's Hessian is zero, e.g. all sample weights are 0); pass a number. "
            f"Received: largest Hessian eigenvalue {largest_eigenvalue!r}"
        )
    if batch_size >= n:
        return 1.0 / largest_eigenvalue
    b = float(batch_size)
    return b / (max(row_curvature, largest_eigenvalue) + (b - 1.0) * largest_eigenvalue)
