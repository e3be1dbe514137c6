"""Every use of a private Keras API in keras_linreg, in one place.

The tf.distribute adapters for Keras 3.15's trainer (keras-team/keras#20585),
the wrappers of Keras' own `fit` helpers that the fast loop calls, and two
small reads. `tests/test_keras_internals.py` fails if Keras changes beneath
them (hence `keras>=3.15,<3.16`). Design notes: `docs/design/keras-internals.md`.
"""

from __future__ import annotations

import keras
import tensorflow as tf

# Private Keras API (2): `_collective_all_reduce_multi_worker`, the predicate
# Keras' `reduce_per_replica` uses to choose `strategy.reduce("MEAN", v, axis=0)`.
# Using Keras' own function, not a copy, keeps our reshape in step with Keras'
# choice. Private Keras API (3): `TFEpochIterator` and `python_utils`, which
# `TensorFlowTrainer.fit` uses around its loop (see the end of this module).
from keras.src.backend.tensorflow.trainer import (
    TFEpochIterator,
    _collective_all_reduce_multi_worker,
)
from keras.src.utils import python_utils as _python_utils

# `evaluate`'s private keyword: "use `model._eval_epoch_iterator`" (`fit`'s validation).
_USE_CACHED_EVAL_DATASET = "_use_cached_eval_dataset"


def maybe_symbolic_build(model, keras_maybe_symbolic_build, iterator=None, data_batch=None):
    """Calls Keras' `_maybe_symbolic_build` on one replica's first batch.

    Private Keras API (1): `LinearRegression._maybe_symbolic_build` overrides
    `TensorFlowTrainer._maybe_symbolic_build(iterator=None, data_batch=None)`
    and delegates here with the bound parent method. Keras iterates
    `iterator` (an `EpochIterator` yielding `(begin_step, end_step,
    batch_iterator)`) only when the model has a strategy, takes one batch and
    all-reduces it if every leaf is a `tf.distribute.DistributedValues`. We
    wrap the batch iterator so that each leaf is already the first replica's
    local tensor (public `strategy.experimental_local_results`), so Keras
    uses the batch as it is.

    Args:
        model: The model (its `distribute_strategy`, `steps_per_execution`
            and `jit_compile` are read).
        keras_maybe_symbolic_build: The parent class' bound
            `_maybe_symbolic_build`.
        iterator: As in Keras: the `EpochIterator` of `fit`/`evaluate`.
        data_batch: As in Keras: one batch (`train_on_batch`).

    Returns:
        What Keras' method returns (None).

    Raises:
        ValueError: for `steps_per_execution > 1` or `jit_compile=True` with
            more than one replica, which Keras 3.15 cannot run (see
            `_check_step_options`).
    """
    strategy = model.distribute_strategy
    _check_step_options(model, strategy)
    if iterator is not None:
        iterator = _FirstReplicaBatches(iterator, strategy)
    if data_batch is not None:
        data_batch = first_replica_batch(data_batch, strategy)
    return keras_maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


def _check_step_options(model, strategy):
    """Refuses, before any step runs, what Keras 3.15 fails at under tf.distribute.

    With more than one replica, Keras' `steps_per_execution > 1` loop fails
    for every model (stock `Dense` + SGD included: "You must feed a value for
    placeholder tensor ... while/cond/Placeholder"), and `jit_compile=True`
    compiles the whole `strategy.run` with XLA, which cannot reach the other
    replicas' variables. `jit_compile="auto"` (the default) already turns XLA
    off under a strategy.
    """
    replicas = strategy.num_replicas_in_sync
    if replicas < 2:
        return
    if model.steps_per_execution > 1:
        raise ValueError(
            "Received steps_per_execution="
            f"{model.steps_per_execution} under a tf.distribute strategy with "
            f"{replicas} replicas: Keras 3.15 cannot run several steps per "
            "execution under tf.distribute (for any model). Expected "
            "steps_per_execution=1 (the default) in `compile()`."
        )
    if model.jit_compile:
        raise ValueError(
            f"Received jit_compile=True under a tf.distribute strategy with {replicas} "
            "replicas: XLA cannot compile the distributed step in Keras 3.15. Expected "
            'jit_compile="auto" (the default, which disables XLA under a strategy) or '
            "False in `compile()`."
        )


class _FirstReplicaBatches:
    """An `EpochIterator` view whose batches are the first replica's part."""

    def __init__(self, epoch_iterator, strategy):
        self._epoch_iterator = epoch_iterator
        self._strategy = strategy

    def __iter__(self):
        for begin_step, end_step, batches in self._epoch_iterator:
            yield (
                begin_step,
                end_step,
                (first_replica_batch(batch, self._strategy) for batch in batches),
            )


def first_replica_batch(batch, strategy):
    """Replaces each `DistributedValues` leaf of `batch` by its first local value."""

    def first(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    return tf.nest.map_structure(first, batch, expand_composites=False)


def reducible_logs(logs):
    """Returns the step's logs in a form Keras' `reduce_per_replica` can reduce.

    Call in replica context (`train_step`/`test_step`). In multi-worker mode
    every scalar becomes a `(1,)` tensor, which Keras' `strategy.reduce("MEAN",
    v, axis=0)` turns back into a scalar (the mean over replicas); otherwise
    `logs` is returned unchanged.
    """
    if not _collective_all_reduce_multi_worker(tf.distribute.get_strategy()):
        return logs
    return tf.nest.map_structure(
        lambda v: tf.reshape(v, [1]) if v.shape.rank == 0 else v, logs
    )


# ----------------------------------------------------------- the fast fit loop (3)
# Each function below wraps one private Keras helper that `TensorFlowTrainer.fit`
# (Keras 3.15, keras/src/backend/tensorflow/trainer.py) calls around its epoch loop;
# `keras_linreg/fast_fit.py` calls these at the same points, so it behaves as `fit`.


def assert_compile_called(model, method_name):
    """Raises Keras' own "You must call `compile()`" error if `model` is not compiled.

    Why private: `Trainer._assert_compile_called` is how `fit` refuses an uncompiled
    model; reusing it keeps the fast path's message identical to Keras'.
    """
    model._assert_compile_called(method_name)


def has_own_strategy(model):
    """Whether `model` was created under a `tf.distribute` strategy's scope.

    Why private: the public `model.distribute_strategy` falls back to the current
    (default) strategy, so only `TensorFlowTrainer._distribute_strategy` tells a
    model built under a scope apart when `fit` runs outside it.
    """
    return getattr(model, "_distribute_strategy", None) is not None


def symbolic_build(model, data_batch):
    """Creates the model's, compiled metrics' and optimizer's variables from a batch.

    Why private: `Trainer._symbolic_build(data_batch=...)` is what `fit` runs before
    tracing; a `tf.function` that creates variables on its first call is traced twice.
    """
    model._symbolic_build(data_batch=data_batch)


def initial_epoch(model, default):
    """The epoch `fit` starts at: `BackupAndRestore`'s resume epoch, else `default`.

    Why private: `BackupAndRestore.on_train_begin` (`_load_model`) stores the resume epoch in
    `model._initial_epoch`, and `fit` reads it exactly like this.
    """
    return model._initial_epoch or default


def should_eval(model, epoch, validation_freq):
    """Whether `fit` validates after 0-based `epoch` for `validation_freq` (int or list).

    Why private: `Trainer._should_eval` is Keras' schedule (and error message) for
    `validation_freq`; reusing it keeps the two paths' schedules identical.
    """
    return model._should_eval(epoch, validation_freq)


def evaluate_cached(model, x, y, sample_weight, batch_size, steps, callbacks):
    """Validates as `fit` does: `evaluate` on an epoch iterator cached on the model.

    Why private: `fit` creates a `TFEpochIterator` for the validation data once, in
    `model._eval_epoch_iterator`, and passes `_use_cached_eval_dataset=True` so every
    validation reuses it (one `tf.data` pipeline per `fit`, not per epoch).

    Returns:
        The validation logs as a dict (`evaluate(..., return_dict=True)`).
    """
    if getattr(model, "_eval_epoch_iterator", None) is None:
        model._eval_epoch_iterator = TFEpochIterator(
            x=x,
            y=y,
            sample_weight=sample_weight,
            batch_size=batch_size,
            distribute_strategy=model.distribute_strategy,
            steps_per_execution=model.steps_per_execution,
            steps_per_epoch=steps,
            shuffle=False,
        )
    return model.evaluate(
        x=x,
        y=y,
        sample_weight=sample_weight,
        batch_size=batch_size,
        steps=steps,
        callbacks=callbacks,
        return_dict=True,
        **{_USE_CACHED_EVAL_DATASET: True},
    )


def clear_eval_iterator(model):
    """Drops the validation iterator `evaluate_cached` cached, as `fit` does at its end.

    Why private: `model._eval_epoch_iterator` is Keras' own cache slot (see
    `evaluate_cached`); leaving it set would pin the validation data to the model.
    """
    if getattr(model, "_eval_epoch_iterator", None) is not None:
        del model._eval_epoch_iterator


def overrides_hook(callback, hook):
    """Whether `callback`'s method `hook` (e.g. "on_train_batch_end") is overridden.

    Why private: `keras.callbacks.Callback` marks its no-op hooks with
    `keras.src.utils.default` (attribute `_is_default`), and `CallbackList` reads that
    marker with `is_default` to skip batch hooks nobody defines.
    """
    return not _python_utils.is_default(getattr(callback, hook, None))


def pythonify_logs(logs):
    """Logs as `CallbackList` hands them to callbacks: flattened, sorted, Python floats.

    Why private: `keras.src.utils.python_utils.pythonify_logs` is the conversion Keras
    applies to every step's logs; there is no public equivalent.
    """
    return _python_utils.pythonify_logs(logs)


# ------------------------------------------------------------------ other reads (4)
def is_fit_validation_pass(evaluate_arguments):
    """Whether `evaluate`'s arguments (by name) are `fit`'s own validation call.

    Why private: `fit` validates through `evaluate(..., _use_cached_eval_dataset=True)`
    on data it already holds; only that private flag tells this call apart.
    """
    return bool(evaluate_arguments.get(_USE_CACHED_EVAL_DATASET))


def learning_rate_schedule(optimizer):
    """The `LearningRateSchedule` `optimizer` was given, or None for a fixed rate.

    Why private: Keras' optimizers keep the schedule in `_learning_rate`; the public
    `learning_rate` evaluates it at `iterations` (the *next* step's rate), so only the
    schedule itself gives the rate an earlier step applied.
    """
    schedule = getattr(optimizer, "_learning_rate", None)
    if isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return schedule
    return None
