"""`fit` on a `dataset_from_files` dataset: each epoch in one graph call.

Keras' `fit` on a dataset calls its traced step once per batch from Python; for a
model this small, that loop (the call, the callbacks around it) costs about as much
as the step. When nothing watches single batches, `fit` here runs Keras' own loop with
`steps_per_execution` equal to the batches per epoch: the epoch's batches are read by
the `tf.data` iterator inside one `tf.function` call. Batches, their order, the
updates and the epoch-level callbacks are Keras' own. Design notes:
docs/data.md, "Speed".
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

from keras_linreg import _keras_internals, inputs

__all__ = ["compiled_steps", "whole_epochs"]

# Hooks that see single batches: a callback overriding one keeps Keras' execution.
_BATCH_HOOKS = (
    "on_batch_begin",
    "on_batch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_test_batch_begin",
    "on_test_batch_end",
)

# Callbacks whose batch hook does nothing when they save once per epoch.
_EPOCH_SAVERS = (keras.callbacks.BackupAndRestore, keras.callbacks.ModelCheckpoint)


def _steps_per_epoch(x, fit_arguments):
    """The batches in one pass of `x`, or None when unknown (CSV files, dropped rows,
    a shard) or when `fit` runs another number of steps per epoch."""
    if fit_arguments.get("steps_per_epoch") is not None:
        return None
    steps = int(x.cardinality())
    return steps if steps > 0 else None


def _watches_batches(callbacks):
    """Whether a callback (other than History and the progress bar, which also run when
    those hooks are called once per execution, and `BackupAndRestore` and
    `ModelCheckpoint` saving per epoch, whose batch hook then returns at once)
    overrides a batch hook."""
    if isinstance(callbacks, keras.callbacks.CallbackList):
        callbacks = callbacks.callbacks
    for callback in callbacks or ():
        if isinstance(callback, (keras.callbacks.History, keras.callbacks.ProgbarLogger)):
            continue
        if isinstance(callback, _EPOCH_SAVERS) and callback.save_freq == "epoch":
            continue
        if any(_keras_internals.overrides_hook(callback, hook) for hook in _BATCH_HOOKS):
            return True
    return False


def _applies(model, x, fit_arguments):
    """The steps per execution for `fit(x, **fit_arguments)`, or None for Keras' own."""
    if not inputs.is_file_dataset(x) or model.run_eagerly:
        return None
    if tf.distribute.has_strategy() or _keras_internals.has_own_strategy(model):
        return None  # Keras runs one step per execution under tf.distribute
    if keras.config.max_epochs() or keras.config.max_steps_per_epoch():
        return None
    if _watches_batches(fit_arguments.get("callbacks")):
        return None
    if fit_arguments.get("validation_steps") is not None:
        return None  # Keras' loop would validate on whole executions, not that many steps
    return _steps_per_epoch(x, fit_arguments)


@contextlib.contextmanager
def whole_epochs(model, x, fit_arguments):
    """Within it, Keras' `fit(x, **fit_arguments)` runs each epoch in one graph call.

    For a `dataset_from_files` dataset `x` of known length `n` batches, with no
    callback watching single batches, no `steps_per_epoch`, on the default strategy:
    the model's `steps_per_execution` is `n` for the call (Keras' while loop over the
    iterator inside one `tf.function`, validation too), and its Keras train and test
    functions are the ones traced for `n` (cached). Else it changes nothing.
    Afterwards the model's own `steps_per_execution` and functions are back.
    """
    steps = _applies(model, x, fit_arguments)
    if steps is None or steps <= model.steps_per_execution:
        yield
        return
    cache = model._whole_epoch_functions.functions(model)
    saved = (model.steps_per_execution, model.train_function, model.test_function)
    model.steps_per_execution = steps
    model.train_function, model.test_function = cache.get(steps, (None, None))
    object.__setattr__(model, _SAVED, saved)  # not a tracked attribute
    try:
        yield
    finally:
        object.__setattr__(model, _SAVED, None)
        cache[steps] = (model.train_function, model.test_function)
        model.steps_per_execution, model.train_function, model.test_function = saved


@contextlib.contextmanager
def compiled_steps(model):
    """Within it, the model's compiled `steps_per_execution` and functions, also inside
    a whole-epoch `fit`: for an `evaluate` or `predict` a callback calls during it
    (with `steps=` Keras would otherwise run whole executions of the epoch's length,
    and a predict function traced then would outlive the `fit`)."""
    saved = model.__dict__.get(_SAVED)
    if saved is None:
        yield
        return
    whole = (model.steps_per_execution, model.train_function, model.test_function)
    predict = model.predict_function
    model.steps_per_execution, model.train_function, model.test_function = saved
    try:
        yield
    finally:
        model.steps_per_execution, model.train_function, model.test_function = whole
        model.predict_function = predict


_SAVED = "_whole_epochs_saved"  # the compiled (steps_per_execution, train, test) during fit
