"""Where the learning rate of a `LinearRegression` lives.

Keras' learning-rate callbacks (`LearningRateScheduler`, `ReduceLROnPlateau`)
and `keras.callbacks.TensorBoard` read and set `model.optimizer.learning_rate`.
`learning_rate="auto"` is resolved from the training data at the first `fit`
(`auto_learning_rate`).
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
    """

    def __init__(self, learning_rate=0.01, name=None, **kwargs):
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

    def update_step(self, gradient, variable, learning_rate):
        raise NotImplementedError(
            "LearningRateState does not update weights: "
            "`LinearRegression.train_step` applies "
            "`variable.assign_sub(learning_rate * gradient)` itself."
        )

    def get_config(self):
        config = super().get_config()
        return {"name": config["name"], "learning_rate": config["learning_rate"]}


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


def auto_learning_rate(stable_rate):
    """The rate `learning_rate="auto"` picks: half the largest stable rate.

    With `H` the loss's Hessian on the training rows in the trainable weights
    (`[x, 1]`, or `[z, 1]` for standardized features `z`; plus `2·l2` on the
    slope for an L2 penalty), full-batch gradient descent is stable below
    `2 / λ_max(H)` (`keras_linreg.max_stable_learning_rate`), and

    ```
    lr = 1 / λ_max(H)
    ```

    is half of it: each step shrinks the error along the top eigenvector
    to 0 in one step, along the others by `1 − λ / λ_max`, and leaves a factor
    2 of margin for mini-batches, whose Hessians vary around `H`.
    """
    if not (math.isfinite(stable_rate) and stable_rate > 0):
        raise ValueError(
            "learning_rate=\"auto\" found no curvature in the training data (the "
            "loss's Hessian is zero, e.g. all sample weights are 0); pass a number. "
            f"Received: max stable learning rate {stable_rate!r}"
        )
    return stable_rate / 2.0
