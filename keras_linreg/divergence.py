"""Divergence guard: a learning rate too large is caught, not trained through.

Two collaborators of the training loop. `DivergenceGuard`, owned by the model, runs in
the graph at every step (phase 3 of `train_step`): it applies an update only when the
loss and the new weights are finite, and otherwise keeps the last finite weights and
latches a flag. `DivergenceMonitor`, a callback `fit` puts first, runs on the host once
per epoch: it stops a run that went non-finite or whose loss grew past
`DIVERGENCE_FACTOR` times the first epoch's, restores the best weights, and has `fit`
raise `DivergenceError` quoting a stable rate. Design notes: docs/design/divergence.md.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from keras_linreg import closed_form, inputs, learning_rate, regularization

__all__ = [
    "DIVERGENCE_FACTOR",
    "DivergenceError",
    "DivergenceGuard",
    "DivergenceMonitor",
    "create_guard",
    "rearm",
]

#: An epoch's loss above this multiple of the first epoch's loss means divergence.
DIVERGENCE_FACTOR = 1e4

# Values of the guard's state flag.
_FRESH, _RUNNING, _DIVERGED = 0.0, 1.0, 2.0


class DivergenceError(RuntimeError):
    """Training diverged: the loss became non-finite or grew past the threshold.

    Raised by `LinearRegression.fit` after training stopped and the last good
    weights were restored.

    Attributes:
        learning_rate: The learning rate in use when training diverged.
        max_stable_learning_rate: `2 / lambda_max` of the loss's Hessian on the
            training data when it could be computed (in-memory data), else None.
        epoch: The epoch (0-based) at which divergence was detected.
        history: The `keras.callbacks.History` of the stopped run.
    """

    def __init__(self, message, learning_rate, max_stable_learning_rate, epoch, history):
        super().__init__(message)
        self.learning_rate = learning_rate
        self.max_stable_learning_rate = max_stable_learning_rate
        self.epoch = epoch
        self.history = history


def fit_diverged(model):
    """Whether the latest `fit` on `model` diverged (False before any `fit`).

    For callbacks: the `DivergenceMonitor` runs first at every epoch end, so
    this is up to date in any other callback's `on_epoch_end` and in
    `on_train_end`, before `fit` raises the `DivergenceError`.
    """
    guard = model._divergence_guard
    return guard.stopped or guard.diverged


# ----------------------------------------------------------- in the graph
class DivergenceGuard:
    """The in-graph half: a copy of the last finite weights and a flag.

    Each `LinearRegression` owns one (`model._divergence_guard`, a plain object, so
    Keras neither tracks nor saves its variables: they are not in `model.weights`,
    `.keras` files or checkpoints). Its variables are created by `create` (at the
    start of `fit`, under the model's strategy) or, failing that, at the first step.
    The flag is cleared by `rearm`, at the start of every `fit` and `train_on_batch`.
    """

    def __init__(self):
        self._backups = None  # {variable.path: its last finite value}
        self._state = None  # _FRESH, _RUNNING or _DIVERGED
        self.stopped = False  # the monitor stopped the current fit (host side)

    def create(self, model):
        """Creates the variables for a built `model`'s weights, under its strategy's scope."""
        if self._state is None:
            with model.distribute_strategy.scope():
                self._create(model.trainable_variables)

    def rearm(self):
        """Clears the flag (what `fit` does at its start), once the variables exist."""
        if self._state is not None:
            self._state.assign(_FRESH)

    @property
    def diverged(self) -> bool:
        """Whether a step since the last `rearm` was non-finite (a host read)."""
        return self._state is not None and float(self._state.numpy()) == _DIVERGED

    def update(self, variables, new_values, loss, iterations):
        """Assigns `new_values` to `variables` unless the step is non-finite.

        Phase 3 of `train_step`, in the graph, with no host synchronisation:

        ```
        ok      = not diverged and isfinite(loss) and all(isfinite(new_values))
        backup  = w             if not diverged and (isfinite(loss) or first step)
        w       = new_values    if ok  else backup      # the last finite weights
        diverged = not ok
        iterations += 1 if ok, -1 if an update was undone, else 0
        ```

        Args:
            variables: The weights, `[slope, intercept]`.
            new_values: Their updated values, `w - learning_rate * gradient`.
            loss: The global batch's loss (all-reduced), a scalar.
            iterations: The step counter (`model.optimizer.iterations`).
        """
        self._create_in_step(variables)
        state = tf.convert_to_tensor(self._state)
        fresh = tf.equal(state, _FRESH)
        active = tf.less(state, _DIVERGED)
        loss_ok = tf.math.is_finite(loss)
        update_ok = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in new_values])
        ok = active & loss_ok & update_ok
        keep_current = active & (loss_ok | fresh)
        for variable, new_value in zip(variables, new_values, strict=True):
            backup = self._backups[variable.path]
            restore_to = tf.where(
                keep_current, tf.convert_to_tensor(variable), tf.convert_to_tensor(backup)
            )
            backup.assign(restore_to)
            variable.assign(tf.where(ok, new_value, restore_to))
        undone = active & ~loss_ok & ~fresh  # restored to before the previous update
        step = tf.where(ok, 1, tf.where(undone, -1, 0))
        iterations.assign_add(tf.cast(step, iterations.dtype))
        self._state.assign(tf.where(ok, _RUNNING, _DIVERGED))

    def hold(self, variables, values):
        """Sets `variables` and their backups to `values` and latches the flag."""
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)
            if self._backups is not None:
                self._backups[variable.path].assign(value)
        if self._state is not None:
            self._state.assign(_DIVERGED)

    def _create_in_step(self, variables):
        if self._state is not None:
            return
        if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context() is False:
            raise RuntimeError(
                "The divergence guard of this LinearRegression has no state yet, and "
                "it cannot be created inside a tf.distribute replica function. Run "
                "`model.fit` once, or build the model under the strategy's scope "
                "and call `keras_linreg.divergence.create_guard(model)`."
            )
        with tf.init_scope():  # created eagerly, also when first needed in a trace
            self._create(variables)

    def _create(self, variables):
        # One backup per trainable weight, by its path (`train_step` and the
        # monitor may list the weights in different containers).
        self._backups = {
            v.path: keras.Variable(
                np.zeros(v.shape, dtype=v.dtype),
                dtype=v.dtype,
                trainable=False,
                aggregation="only_first_replica",
                name=f"divergence_backup_{v.name}",
            )
            for v in variables
        }
        self._state = keras.Variable(
            _FRESH,
            dtype="float32",
            trainable=False,
            aggregation="only_first_replica",
            name="divergence_state",
        )


def create_guard(model):
    """Creates the guard's variables of a built `model` (under its strategy's scope)."""
    guard = model._divergence_guard
    guard.create(model)
    return guard


def rearm(model):
    """Clears the guard's flag (what `fit` does at its start), if the guard exists."""
    model._divergence_guard.rearm()


# ---------------------------------------------------------------- on host
def stable_learning_rate(model, x, fit_kwargs):
    """`2 / λ_max` of the loss's Hessian on `fit`'s training rows of in-memory `x`.

    In the model's trainable weights (standardized ones for `standardize=True`),
    with the L2 penalty's curvature; `inf` when the Hessian is zero.

    Raises:
        ValueError: the rate cannot be computed for this data.
    """
    rate = _TrainingData.from_fit_arguments(x, fit_kwargs).max_stable_learning_rate(model)
    if rate is None:
        raise ValueError(
            "Received an invalid value for `x`: the largest stable learning rate "
            "could not be computed from it. Received: x of type "
            f"{type(x).__name__}"
        )
    return rate


def auto_learning_rate(model, x, fit_kwargs):
    """`learning_rate="auto"`'s rate for `fit`'s training rows (in memory, or files).

    The training rows are those of in-memory `x`, or all the rows of a
    `keras_linreg.data.dataset_from_files` dataset. The rate is
    `learning_rate.auto_learning_rate` of the loss's Hessian and the sharpest row,
    in the model's trainable weights, for `fit`'s batch size (Keras' default 32;
    a file dataset's own `batch_size`). A file dataset is read once more for both
    (`closed_form.loss_curvature`: `Z^T W Z` summed over its batches).

    Raises:
        ValueError: the curvature cannot be computed for this data.
    """
    if inputs.is_file_dataset(x):  # finite and re-readable: one pass over its files
        _, l2 = regularization.coefficients(model.slope_regularizer)
        eigenvalues, row_curvature, n = closed_form.loss_curvature(
            x, design=_jacobian(model), l2=l2
        )
        batch_size = getattr(x, inputs.FILE_READER_ATTRIBUTE).batch_size
        return learning_rate.auto_learning_rate(
            float(eigenvalues[-1]), row_curvature, batch_size, n
        )
    data = _TrainingData.from_fit_arguments(x, fit_kwargs)
    curvature = data.curvature(model)
    if curvature is None:
        raise ValueError(
            "Received an invalid value for `x`: the loss's curvature could not be "
            f"computed from it. Received: x of type {type(x).__name__}"
        )
    largest, row_curvature = curvature
    return learning_rate.auto_learning_rate(
        largest, row_curvature, data.batch_size, data.x[1]
    )


class _TrainingData:
    """What the error message needs to know about `fit`'s training data."""

    def __init__(self, x=None, sample_weight=None, full_batch=False, checked=False):
        self.batch_size = None
        self.x = x
        self.sample_weight = sample_weight
        self.full_batch = full_batch
        self.checked = checked  # in-memory arrays, checked for NaN/inf beforehand

    @classmethod
    def from_fit_arguments(cls, x, kwargs):
        if not inputs.is_in_memory(x):
            return cls()
        n = int(np.shape(x)[0])
        if kwargs.get("validation_data") is None:
            n = inputs.split_point(n, kwargs.get("validation_split") or 0.0)
        batch_size = kwargs.get("batch_size") or 32  # Keras' default
        data = cls(
            x=(x, n),
            sample_weight=kwargs.get("sample_weight"),
            full_batch=batch_size >= n,
            checked=True,
        )
        data.batch_size = batch_size
        return data

    def _rows_and_weights(self):
        x, n = self.x
        weights = self.sample_weight
        if weights is not None:
            weights = inputs.to_numpy(weights).reshape(-1)[:n]
        return inputs.to_numpy(x)[:n], weights

    def max_stable_learning_rate(self, model):
        if self.x is None:
            return None
        try:
            _, l2 = regularization.coefficients(model.slope_regularizer)
            rows, weights = self._rows_and_weights()
            return closed_form.max_stable_learning_rate(
                rows, weights, design=_jacobian(model), l2=l2
            )
        except (ValueError, np.linalg.LinAlgError, tf.errors.OpError):
            return None  # only a hint for the message: fall back to "a tenth"

    def curvature(self, model):
        """`(λ_max(H), max row curvature)` in the trainable weights, or None."""
        if self.x is None:
            return None
        try:
            _, l2 = regularization.coefficients(model.slope_regularizer)
            rows, weights = self._rows_and_weights()
            eigenvalues, sharpest, _ = closed_form.loss_curvature(
                rows, weights, design=_jacobian(model), l2=l2
            )
        except (ValueError, np.linalg.LinAlgError, tf.errors.OpError):
            return None
        return float(eigenvalues[-1]), sharpest


    def standardize_hint(self):
        """Advice to standardize when that would condition the problem much better."""
        if self.x is None:
            return ""
        x, n = self.x
        try:
            x = inputs.to_numpy(x)[:n].astype(np.float64).reshape(n, -1)
            weights = self.sample_weight
            if weights is not None:
                weights = inputs.to_numpy(weights).reshape(-1)[:n]
            raw = closed_form.hessian_eigenvalues(x, weights)
            std = x.std(axis=0)
            std[std == 0] = 1.0
            z = (x - x.mean(axis=0)) / std
            scaled = closed_form.hessian_eigenvalues(z, weights)
        except (ValueError, np.linalg.LinAlgError):
            return ""
        raw_condition, scaled_condition = _condition(raw), _condition(scaled)
        if not raw_condition > 10.0 * scaled_condition:
            return ""
        return (
            " The features are badly scaled for gradient descent: the loss's Hessian "
            f"has condition number {raw_condition:.3g} on them and {scaled_condition:.3g} "
            "on standardized features. Try LinearRegression(standardize=True) "
            "(`keras-linreg train --standardize`), whose stable rate is near 1 and "
            "which needs far fewer epochs; parameters are still reported in raw units."
        )


def _condition(eigenvalues):
    largest, smallest = float(eigenvalues[-1]), float(eigenvalues[0])
    return largest / smallest if smallest > 0 else float("inf")


def _jacobian(model):
    """The prediction's Jacobian in the model's trainable weights, for rows of `x`.

    For the plain model it is `[x, 1]`, and `x` alone with `fit_intercept=False` (the
    Jacobian is taken in `model.trainable_variables`, which then hold no intercept); a
    model that transforms its features before the weights (standardization) is
    accounted for as it trains.

    Column `j` of the Jacobian is the forward-mode derivative (a JVP) of the
    prediction along weight `j`: one forward pass per weight, O(rows · weights).
    (`GradientTape.jacobian` vectorizes one backward pass per row over all the rows,
    O(rows²) time and memory: minutes and gigabytes for a chunk of 32 768 rows, and
    past 46 340 rows its index arithmetic overflows.)
    """
    variables = _weights(model)

    def design(rows):
        x = tf.convert_to_tensor(rows)
        columns = []
        for variable in variables:
            primal = getattr(variable, "value", variable)  # the tf.Variable of a Keras one
            size = int(np.prod(variable.shape))
            for j in range(size):
                tangent = tf.reshape(tf.one_hot(j, size, dtype=variable.dtype), variable.shape)
                with tf.autodiff.ForwardAccumulator(primal, tangent) as accumulator:
                    prediction = model(x, training=False)
                jvp = accumulator.jvp(prediction, unconnected_gradients="zero")
                columns.append(np.reshape(jvp.numpy(), (-1,)))
        return np.stack(columns, axis=1)

    return design


class DivergenceMonitor(keras.callbacks.Callback):
    """The host half: reads the guard once per epoch, stops training when it diverged.

    Created by `fit` for its data, first among the callbacks (so the restored weights
    are what `BackupAndRestore`, `ModelCheckpoint` or a logger see); after training,
    `raise_if_diverged(history)` raises the `DivergenceError`.
    """

    def __init__(self, x=None, fit_arguments=None):
        super().__init__()
        self.data = _TrainingData.from_fit_arguments(x, fit_arguments or {})
        self.error = None
        self._reference = None  # the first epoch's loss
        self._best = None  # (loss, weights, iterations) at the start of the best epoch
        self._start = None

    def raise_if_diverged(self, history):
        """Raises `DivergenceError` if training diverged."""
        if self.error is not None:
            message, rate, stable, epoch = self.error
            raise DivergenceError(message, rate, stable, epoch, history)

    def on_train_begin(self, logs=None):
        guard = self.model._divergence_guard
        existed = guard._state is not None
        if self.model.built:
            create_guard(self.model)
        if existed:  # a guard created just now is fresh: no assign (an op) needed
            rearm(self.model)
        guard.stopped = False

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._snapshot() if self.model.built else None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        nonfinite = self.model._divergence_guard.diverged
        if nonfinite or (loss is not None and not math.isfinite(loss)):
            self._stop(epoch, self._nonfinite_message(epoch, loss))
            return
        if loss is None:
            return
        if not self._reference:  # the first epoch (or a first loss of exactly 0)
            self._reference = loss
        elif loss > DIVERGENCE_FACTOR * self._reference:
            restored = self._best
            if restored is not None:
                self._restore(*restored[1:])
            self._stop(epoch, self._threshold_message(epoch, loss, restored))
            return
        if self._start is not None and (self._best is None or loss < self._best[0]):
            self._best = (loss, *self._start)

    # -------------------------------------------------------------- helpers
    def _snapshot(self):
        weights = [np.array(v.numpy()) for v in _weights(self.model)]
        return weights, int(self.model.optimizer.iterations.numpy())

    def _restore(self, weights, iterations):
        self.model._divergence_guard.hold(_weights(self.model), weights)
        self.model.optimizer.iterations.assign(iterations)

    def _stop(self, epoch, what):
        self.model.stop_training = True
        self.model._divergence_guard.stopped = True
        rate = self.model.learning_rate
        stable = self.data.max_stable_learning_rate(self.model)
        message = _message(what, rate, stable, self.data)
        if not getattr(self.model, "standardize", True):
            message += self.data.standardize_hint()
        self.error = (message, rate, stable, epoch)

    def _nonfinite_message(self, epoch, loss):
        shown = "non-finite" if loss is None or math.isfinite(loss) else f"{loss}"
        return (
            f"the loss became {shown} in epoch {epoch}. The weights were restored to "
            "the last finite ones (those of the last step with a finite loss)"
        )

    def _threshold_message(self, epoch, loss, restored):
        where = (
            f"those at the start of the epoch with the lowest loss ({restored[0]:.6g})"
            if restored is not None
            else "their values at the end of the epoch (no better epoch was seen)"
        )
        return (
            f"the loss grew to {loss:.6g} in epoch {epoch}, more than "
            f"{DIVERGENCE_FACTOR:g} times the first epoch's loss {self._reference:.6g} "
            f"(the divergence threshold). The weights were restored to {where}"
        )


def _weights(model):
    """The weights training updates (`slope`, and `intercept` when the model has one)."""
    return list(model.trainable_variables)


def _message(what, rate, stable, data):
    text = f"Training diverged with learning_rate={rate:.6g}: {what}, and training stopped. "
    if stable is not None and math.isfinite(stable):
        kind = (
            "full-batch gradient descent"
            if data.full_batch
            else "full-batch gradient descent (mini-batches usually need less)"
        )
        # Half the full-batch limit, unless that is no smaller than the rate that
        # just diverged (mini-batches are sharper than the full batch).
        suggestion = stable / 2 if stable / 2 < rate else rate / 10
        text += (
            f"The largest stable learning rate for {kind} on this data is "
            f"{stable:.6g} (2 / the largest eigenvalue of the loss's Hessian, see "
            "keras_linreg.max_stable_learning_rate); use a smaller learning rate, e.g. "
            f"learning_rate={suggestion:.3g}"
        )
        text += (
            "." if data.full_batch
            else ', or learning_rate="auto", which accounts for the batch size.'
        )
    else:
        text += f"Use a smaller learning rate, e.g. learning_rate={rate / 10:.3g}."
    if not data.checked:
        text += (
            " (tf.data and generator inputs are not checked in advance: non-finite "
            "values in a batch also make the loss non-finite.)"
        )
    return text
