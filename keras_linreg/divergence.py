"""Divergence guard: a learning rate too large is caught, not trained through.

Plain gradient descent on the mean squared error diverges when the learning
rate exceeds `2 / lambda_max` of the loss's Hessian (see
`closed_form.max_stable_learning_rate`): the error along the top eigenvector is
multiplied by `|1 - lr * lambda_max| > 1` at every step, the loss grows
geometrically, overflows to inf and then turns into NaN, and the weights with
it. `LinearRegression.fit` guards against that in two places:

1. **In the graph, at every step** (`apply_update`, phase 3 of `train_step`),
   with no host synchronisation: the update `w <- w - lr * g` is applied only
   when the step's loss and the updated weights are all finite. Otherwise the
   weights go back to the *last finite weights* (those of the last step whose
   loss was finite), a `diverged` flag is set, and every later step of the
   epoch leaves the weights alone. The decision uses the all-reduced loss and
   gradients, so under `tf.distribute` every replica takes the same branch;
   the guard's variables use `aggregation="only_first_replica"` like the
   weights. The step counter `optimizer.iterations` counts the updates that
   stand (an update undone by the restore is taken back).
2. **On the host, once per epoch** (`_DivergenceMonitor`, a callback `fit`
   puts first in the callback list, so the restored weights are what
   `BackupAndRestore`, `ModelCheckpoint` or a logger see): it reads the flag,
   and it compares the epoch's loss with the first epoch's loss of this `fit`.
   Training *diverged* when

   - the loss became non-finite (NaN or ±inf) at some step (the flag), or
   - the epoch's loss exceeds `DIVERGENCE_FACTOR` (1e4) times the first
     epoch's loss of this `fit` call. Stable gradient descent never raises the
     full-batch loss, and a diverging one multiplies it by
     `(1 - lr * lambda_max) ** 2` per step, so the threshold costs only a few
     steps while leaving ample room for mini-batch noise. The weights then go
     back to those at the start of the epoch with the lowest loss so far (the
     last weights known to be good), step counter included.

   It then stops training (`model.stop_training`), the other callbacks finish
   normally (`on_train_end` runs, so logs are flushed), and `fit` raises a
   `DivergenceError` naming the learning rate and suggesting a smaller one:
   for in-memory data it quotes the largest stable rate, `2 / lambda_max` of
   the loss's Hessian in the model's own weights (for the plain model,
   `max_stable_learning_rate(x, sample_weight)`; exact for full-batch
   training, an upper guide for mini-batches) and suggests half of it;
   otherwise a tenth of the current rate.

For `tf.data` and generator inputs, which cannot be checked in advance, the
flag also catches non-finite data: training stops at the first non-finite
loss, with the last finite weights.

The guard's state (a copy of the weights and the flag) is deliberately not a
weight of the model: it is not in `model.weights`, `.keras` files or
checkpoints, and it is reset at the start of every `fit` and every
`train_on_batch` (which so returns the non-finite loss of a skipped batch, with
the last finite weights kept). In custom loops calling `train_step` directly,
nothing resets the flag: after a non-finite step, later steps are skipped
until `fit`, `train_on_batch` or `keras_linreg.divergence.rearm(model)`.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from keras_linreg import validation

#: An epoch's loss above this multiple of the first epoch's loss means divergence.
DIVERGENCE_FACTOR = 1e4

_GUARD_ATTRIBUTE = "_keras_linreg_divergence_guard"
_MONITOR_ATTRIBUTE = "_keras_linreg_divergence_monitor"

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


# ------------------------------------------------------------- fit wiring
def prepare_fit(model, x, y, args, kwargs):
    """Checks `fit`'s data and adds the divergence monitor.

    Returns `(x, y, kwargs)` for `keras.Model.fit(x, y, **kwargs)`: see
    `validation.prepare_fit`; `callbacks` gets the monitor first.
    """
    x, y, kwargs = validation.prepare_fit(model, x, y, args, kwargs)
    _build_from_data(model, x)
    monitor = _DivergenceMonitor(_TrainingData.from_fit_arguments(x, kwargs))
    callbacks = kwargs.get("callbacks")
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks.callbacks.insert(0, monitor)
        monitor.set_model(model)
    else:
        kwargs["callbacks"] = [monitor, *(callbacks or [])]
    setattr(model, _MONITOR_ATTRIBUTE, monitor)
    return x, y, kwargs


def check_history(model, history):
    """Returns `history`, or raises `DivergenceError` if `fit` diverged."""
    monitor = model.__dict__.pop(_MONITOR_ATTRIBUTE, None)
    if monitor is not None and monitor.error is not None:
        message, rate, stable, epoch = monitor.error
        raise DivergenceError(message, rate, stable, epoch, history)
    return history


def fit_diverged(model):
    """Whether the `fit` running on `model` has diverged (False outside `fit`).

    For callbacks: the monitor runs first at every epoch end, so this is up
    to date in any other callback's `on_epoch_end` and in `on_train_end`,
    before `fit` raises the `DivergenceError`.
    """
    monitor = model.__dict__.get(_MONITOR_ATTRIBUTE)
    return monitor is not None and monitor.error is not None


def _build_from_data(model, x):
    """Builds an unbuilt `model` from the shape of `x` (an array or a tf.data.Dataset).

    What the first training step would do anyway; done before training so the
    monitor can snapshot the starting weights (and `BackupAndRestore` finds a
    built model). Other inputs (generators, PyDatasets) build at the first step.
    """
    if model.built or x is None:
        return
    if validation._is_in_memory(x):
        shape = np.shape(x)
    elif isinstance(x, tf.data.Dataset):
        spec = x.element_spec
        spec = spec[0] if isinstance(spec, tuple) else spec
        shape = tuple(getattr(spec, "shape", ()))
    else:
        return
    if len(shape) == 1:
        model.build((None,))
    elif len(shape) == 2 and shape[1] is not None:
        with model.distribute_strategy.scope():
            model.build((None, shape[1]))


# ----------------------------------------------------------- in the graph
class _Guard:
    """The guard's variables. A plain object, so Keras does not track them."""

    def __init__(self, model, variables):
        # One backup per trainable weight, by its path (`train_step` and the
        # monitor may list the weights in different containers).
        self.backups = {
            v.path: keras.Variable(
                np.zeros(v.shape, dtype=v.dtype),
                dtype=v.dtype,
                trainable=False,
                aggregation="only_first_replica",
                name=f"divergence_backup_{v.name}",
            )
            for v in variables
        }
        self.state = keras.Variable(
            _FRESH,
            dtype=model.dtype,
            trainable=False,
            aggregation="only_first_replica",
            name="divergence_state",
        )


def _guard_for(model, variables):
    guard = model.__dict__.get(_GUARD_ATTRIBUTE)
    if guard is None:
        if tf.distribute.has_strategy() and tf.distribute.in_cross_replica_context() is False:
            raise RuntimeError(
                "The divergence guard of this LinearRegression has no state yet, and "
                "it cannot be created inside a tf.distribute replica function. Run "
                "`model.fit` once, or build the model under the strategy's scope "
                "and call `keras_linreg.divergence.create_guard(model)`."
            )
        with tf.init_scope():  # created eagerly, also when first needed in a trace
            guard = _Guard(model, variables)
        model.__dict__[_GUARD_ATTRIBUTE] = guard
    return guard


def create_guard(model):
    """Creates the guard's variables of a built `model` (under its strategy's scope)."""
    guard = model.__dict__.get(_GUARD_ATTRIBUTE)
    if guard is None:
        with model.distribute_strategy.scope():
            guard = _guard_for(model, _weights(model))
    return guard


def rearm(model):
    """Clears the guard's flag (what `fit` does at its start), if the guard exists."""
    guard = model.__dict__.get(_GUARD_ATTRIBUTE)
    if guard is not None:
        guard.state.assign(_FRESH)


def apply_update(model, variables, new_values, loss):
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
        model: The `LinearRegression` (for its guard and step counter).
        variables: The weights, `[slope, intercept]`.
        new_values: Their updated values, `w - learning_rate * gradient`.
        loss: The global batch's loss (all-reduced), a scalar.
    """
    guard = _guard_for(model, variables)
    state = tf.convert_to_tensor(guard.state)
    fresh = tf.equal(state, _FRESH)
    active = tf.less(state, _DIVERGED)
    loss_ok = tf.math.is_finite(loss)
    update_ok = tf.reduce_all([tf.reduce_all(tf.math.is_finite(v)) for v in new_values])
    ok = active & loss_ok & update_ok
    keep_current = active & (loss_ok | fresh)
    for variable, new_value in zip(variables, new_values, strict=True):
        backup = guard.backups[variable.path]
        restore_to = tf.where(
            keep_current, tf.convert_to_tensor(variable), tf.convert_to_tensor(backup)
        )
        backup.assign(restore_to)
        variable.assign(tf.where(ok, new_value, restore_to))
    undone = active & ~loss_ok & ~fresh  # restored to before the previous update
    iterations = model.optimizer.iterations
    step = tf.where(ok, 1, tf.where(undone, -1, 0))
    iterations.assign_add(tf.cast(step, iterations.dtype))
    guard.state.assign(tf.where(ok, _RUNNING, _DIVERGED))


# ---------------------------------------------------------------- on host
class _TrainingData:
    """What the error message needs to know about `fit`'s training data."""

    def __init__(self, x=None, sample_weight=None, full_batch=False, checked=False):
        self.x = x
        self.sample_weight = sample_weight
        self.full_batch = full_batch
        self.checked = checked  # in-memory arrays, checked for NaN/inf beforehand

    @classmethod
    def from_fit_arguments(cls, x, kwargs):
        if x is None or not validation._is_in_memory(x):
            return cls()
        n = len(x)
        split = kwargs.get("validation_split") or 0.0
        if split and kwargs.get("validation_data") is None:
            n = int(math.floor(n * (1.0 - split)))  # Keras trains on the first rows
        batch_size = kwargs.get("batch_size") or 32  # Keras' default
        weights = kwargs.get("sample_weight")
        return cls(
            x=(x, n),
            sample_weight=weights,
            full_batch=batch_size >= n,
            checked=True,
        )

    def max_stable_learning_rate(self, model):
        if self.x is None:
            return None
        x, n = self.x
        weights = self.sample_weight
        if weights is not None:
            weights = np.asarray(weights, dtype=np.float64).reshape(-1)[:n]
        try:
            return _stable_rate_for(model, np.asarray(x)[:n], weights)
        except (ValueError, np.linalg.LinAlgError, tf.errors.OpError):
            return None  # only a hint for the message: fall back to "a tenth"


def _stable_rate_for(model, x, weights, chunk=65536):
    """`2 / lambda_max` of the loss's Hessian in the model's own trainable weights.

    The prediction is affine in the trainable weights `theta`, so its Jacobian
    `J` (`n x p`) is constant and the Hessian of `sum(w * (pred - y)**2) / n` is
    `(2 / n) J^T W J`. `J` is taken with `tf.GradientTape.jacobian`, in chunks of
    rows. For the plain model `J = [x, 1]` and this is
    `max_stable_learning_rate(x, w)`; a model that transforms its features
    before the weights (standardization) is accounted for as it trains.
    """
    variables = _weights(model)
    n = len(x)
    gram = 0.0
    for start in range(0, n, chunk):
        rows = tf.convert_to_tensor(x[start : start + chunk])
        with tf.GradientTape() as tape:
            prediction = model(rows, training=False)
        jacobians = tape.jacobian(prediction, variables)
        m = int(prediction.shape[0])
        jacobian = np.concatenate(
            [np.reshape(keras.ops.convert_to_numpy(j), (m, -1)) for j in jacobians], axis=1
        ).astype(np.float64)
        w = np.ones(m) if weights is None else weights[start : start + chunk]
        gram = gram + jacobian.T @ (jacobian * w[:, None])
    largest = float(np.linalg.eigvalsh((2.0 / n) * gram)[-1])
    return 2.0 / largest if largest > 0 else math.inf


class _DivergenceMonitor(keras.callbacks.Callback):
    """Reads the guard once per epoch; stops training when it diverged."""

    def __init__(self, data):
        super().__init__()
        self.data = data
        self.error = None
        self._reference = None  # the first epoch's loss
        self._best = None  # (loss, weights, iterations) at the start of the best epoch
        self._start = None

    def on_train_begin(self, logs=None):
        if self.model.built:
            create_guard(self.model)
        rearm(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        self._start = self._snapshot() if self.model.built else None

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        guard = self.model.__dict__.get(_GUARD_ATTRIBUTE)
        nonfinite = guard is not None and float(guard.state.numpy()) == _DIVERGED
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
        return weights, int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _restore(self, weights, iterations):
        for variable, value in zip(_weights(self.model), weights, strict=True):
            variable.assign(value)
        self.model.optimizer.iterations.assign(iterations)
        guard = self.model.__dict__.get(_GUARD_ATTRIBUTE)
        if guard is not None:
            for variable, value in zip(_weights(self.model), weights, strict=True):
                guard.backups[variable.path].assign(value)
            guard.state.assign(_DIVERGED)

    def _stop(self, epoch, what):
        self.model.stop_training = True
        rate = self.model.learning_rate
        stable = self.data.max_stable_learning_rate(self.model)
        self.error = (_message(what, rate, stable, self.data), rate, stable, epoch)

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
    """The weights training updates (`slope` and `intercept`)."""
    return list(model.trainable_variables)


def _message(what, rate, stable, data):
    text = f"Training diverged with learning_rate={rate:.6g}: {what}, and training stopped. "
    if stable is not None and math.isfinite(stable):
        kind = (
            "full-batch gradient descent"
            if data.full_batch
            else "full-batch gradient descent (mini-batches usually need less)"
        )
        text += (
            f"The largest stable learning rate for {kind} on this data is "
            f"{stable:.6g} (2 / the largest eigenvalue of the loss's Hessian, see "
            "keras_linreg.max_stable_learning_rate); use a smaller learning rate, e.g. "
            f"learning_rate={stable / 2:.3g}."
        )
    else:
        text += f"Use a smaller learning rate, e.g. learning_rate={rate / 10:.3g}."
    if not data.checked:
        text += (
            " (tf.data and generator inputs are not checked in advance: non-finite "
            "values in a batch also make the loss non-finite.)"
        )
    return text
