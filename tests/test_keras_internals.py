"""Fails loudly when Keras changes what `keras_linreg/_keras_internals.py` relies on.

`LinearRegression` works around two failures of Keras 3.15's TensorFlow
trainer under tf.distribute (keras-team/keras#20585), and its fast fit loop
(`keras_linreg/fast_fit.py`) reuses the private helpers `keras.Model.fit`
calls around its epoch loop; every such private Keras API is in
`_keras_internals.py`. If a test here fails after a Keras upgrade, do
not just update the expectation: re-read the Keras source it points to,
re-check the workaround (and whether it is still needed), run
`tests/test_distribute.py` and `tests/test_fast_fit.py`, then update
`pyproject.toml`'s Keras range. The behaviour itself is tested end to end in
`tests/test_distribute.py` and `tests/test_fast_fit.py` (against stock Keras).
"""

from __future__ import annotations

import inspect
import pathlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer
from keras.src.callbacks import backup_and_restore, callback_list
from keras.src.trainers import epoch_iterator
from keras.src.trainers import trainer as base_trainer
from keras.src.utils import python_utils

import keras_linreg
from keras_linreg import _keras_internals, fast_fit


def test_keras_is_the_tested_version():
    # pyproject.toml pins keras>=3.15,<3.16 because of the private APIs below.
    assert keras.__version__.startswith("3.15."), keras.__version__


def test_maybe_symbolic_build_has_the_signature_we_override():
    method = tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    assert list(inspect.signature(method).parameters) == ["self", "iterator", "data_batch"]
    # Ours is the one Keras calls on a LinearRegression.
    assert (
        keras_linreg.LinearRegression._maybe_symbolic_build
        is not tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    )
    assert issubclass(keras_linreg.LinearRegression, tf_trainer.TensorFlowTrainer)


def test_fit_and_evaluate_call_maybe_symbolic_build_with_the_epoch_iterator():
    for method in (tf_trainer.TensorFlowTrainer.fit, tf_trainer.TensorFlowTrainer.evaluate):
        assert "self._maybe_symbolic_build(iterator=epoch_iterator)" in inspect.getsource(method)


def test_keras_all_reduces_the_first_batch_to_build():
    # The reason for the override: Keras reduces the *input batch*.
    source = inspect.getsource(tf_trainer.TensorFlowTrainer._maybe_symbolic_build)
    assert "self.distribute_strategy.reduce(" in source
    assert "for _, _, it in iterator:" in source


def test_epoch_iterator_yields_steps_and_a_batch_iterator():
    # `_FirstReplicaBatches` wraps this protocol: (begin_step, end_step, iterator).
    x = np.arange(10, dtype="float32")
    epoch_iterator = tf_trainer.TFEpochIterator(
        x=x,
        y=2 * x,
        batch_size=4,
        shuffle=False,
        distribute_strategy=tf.distribute.get_strategy(),
    )
    wrapped = _keras_internals._FirstReplicaBatches(epoch_iterator, tf.distribute.get_strategy())
    begin_step, end_step, batches = next(iter(wrapped))
    batch_x, batch_y = next(batches)
    assert (begin_step, end_step) == (0, 0)
    np.testing.assert_array_equal(batch_x, x[:4])
    np.testing.assert_array_equal(batch_y, 2 * x[:4])


def test_reduce_per_replica_reduces_logs_along_axis_0_in_multi_worker_mode():
    # The reason for `reducible_logs`: scalars cannot be reduced along axis 0.
    source = inspect.getsource(tf_trainer.reduce_per_replica)
    assert "_collective_all_reduce_multi_worker(strategy)" in source
    assert 'strategy.reduce("MEAN", v, axis=0)' in source
    assert 'reduction="auto"' in inspect.getsource(tf_trainer.TensorFlowTrainer._make_function)


def test_multi_worker_predicate_is_false_without_a_cluster():
    assert tf_trainer._collective_all_reduce_multi_worker is (
        _keras_internals._collective_all_reduce_multi_worker
    )
    assert not tf_trainer._collective_all_reduce_multi_worker(tf.distribute.get_strategy())


def test_reducible_logs_leaves_logs_alone_without_multi_worker():
    logs = {"loss": tf.constant(1.5)}
    assert _keras_internals.reducible_logs(logs) is logs


@pytest.mark.parametrize("batch", [(np.ones((3, 2)), np.ones(3)), {"x": np.ones(2)}])
def test_first_replica_batch_leaves_local_batches_alone(batch):
    result = _keras_internals.first_replica_batch(batch, tf.distribute.get_strategy())
    assert tf.nest.flatten(result)[0] is tf.nest.flatten(batch)[0]


def test_step_options_refused_under_strategies_still_work_on_one_device():
    # `_check_step_options` only refuses them with more than one replica.
    x = np.linspace(0, 1, 8, dtype="float32")
    for option in ({"steps_per_execution": 2}, {"jit_compile": True}):
        model = keras_linreg.LinearRegression(learning_rate=0.1)
        model.compile(**option)
        history = model.fit(x, 2 * x, batch_size=4, epochs=2, shuffle=False, verbose=0)
        assert model.optimizer.iterations.numpy() == 4, option
        assert history.history["loss"][1] < history.history["loss"][0], option


# ------------------------------------------------------------- the fast fit loop (3)
def _compiled_model(n_features=None):
    model = keras_linreg.LinearRegression(n_features=n_features, learning_rate=0.1)
    model.compile()
    return model


def test_only_keras_internals_imports_private_keras_modules():
    # The promise of README "Layout": every private Keras API use is in one module.
    package = pathlib.Path(keras_linreg.__file__).parent
    offenders = [
        path.name
        for path in sorted(package.glob("*.py"))
        if path.name != "_keras_internals.py" and "keras.src" in path.read_text()
    ]
    assert offenders == []
    # The model's own private state (set in `LinearRegression.__init__`) is not Keras'.
    own = {"_divergence_guard", "_fast_fit_functions"}
    assert own <= set(vars(keras_linreg.LinearRegression(n_features=1)))
    assert not any(hasattr(keras.Model, name) for name in own)
    modules = (fast_fit, keras_linreg.callbacks, keras_linreg.inputs, keras_linreg.divergence)
    for module in modules:
        source = inspect.getsource(module)
        for private in ("_is_default", "_use_cached_eval_dataset", "_eval_epoch",
                        '"_learning_rate"', "optimizer._"):
            assert private not in source, (module.__name__, private)
        for name in re.findall(r"model\._\w+", source):
            assert name.split(".")[-1] in own, (module.__name__, name)


def test_fit_calls_the_helpers_the_fast_loop_reuses():
    # `fast_fit._FastFit.run` mirrors these calls of Keras' own `fit`.
    source = inspect.getsource(tf_trainer.TensorFlowTrainer.fit)
    for call in (
        'self._assert_compile_called("fit")',
        "initial_epoch = self._initial_epoch or initial_epoch",
        "self._should_eval(",
        "self._eval_epoch_iterator = TFEpochIterator(",
        "_use_cached_eval_dataset=True",
        "del self._eval_epoch_iterator",
    ):
        assert call in source, call


def test_assert_compile_called_raises_keras_error_before_compile():
    params = inspect.signature(base_trainer.Trainer._assert_compile_called).parameters
    assert list(params) == ["self", "method_name"]
    model = keras_linreg.LinearRegression(n_features=1)
    with pytest.raises(ValueError, match=r"You must call `compile\(\)`"):
        _keras_internals.assert_compile_called(model, "fit")
    model.compile()
    _keras_internals.assert_compile_called(model, "fit")  # no error once compiled


def test_has_own_strategy_reads_the_strategy_the_model_was_created_under():
    # `distribute_strategy` falls back to the current strategy; `_distribute_strategy`
    # is None exactly when the model was not created under a strategy's scope.
    assert "self._distribute_strategy or tf.distribute.get_strategy()" in inspect.getsource(
        tf_trainer.TensorFlowTrainer.distribute_strategy.fget
    )
    model = keras_linreg.LinearRegression(n_features=1)
    assert "_distribute_strategy" in vars(model)  # the attribute exists (not renamed)
    assert not _keras_internals.has_own_strategy(model)
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        scoped = keras_linreg.LinearRegression(n_features=1)
    assert _keras_internals.has_own_strategy(scoped)


def test_symbolic_build_creates_every_variable_from_a_batch():
    params = inspect.signature(base_trainer.Trainer._symbolic_build).parameters
    assert list(params) == ["self", "iterator", "data_batch"]
    model = _compiled_model()
    assert not model.built
    x = np.ones((1, 3), "float32")
    _keras_internals.symbolic_build(model, data_batch=(x, np.ones(1, "float32")))
    assert model.built
    assert model.slope.shape == (3,)
    # No step ran: only the variables exist.
    assert model.optimizer.iterations.numpy() == 0


def test_initial_epoch_is_the_one_backup_and_restore_sets():
    # `on_train_begin` -> `_load_model` stores the epoch to resume at.
    source = inspect.getsource(backup_and_restore.BackupAndRestore)
    assert "self.model._initial_epoch = epoch" in source
    model = _compiled_model(n_features=1)
    assert "_initial_epoch" in vars(model) and model._initial_epoch is None
    assert _keras_internals.initial_epoch(model, 3) == 3
    model._initial_epoch = 2
    assert _keras_internals.initial_epoch(model, 0) == 2


def test_should_eval_follows_validation_freq():
    params = inspect.signature(base_trainer.Trainer._should_eval).parameters
    assert list(params) == ["self", "epoch", "validation_freq"]
    model = _compiled_model(n_features=1)
    # 0-based epochs; validation after the 2nd, 4th, ... or the listed 1-based epochs.
    assert [_keras_internals.should_eval(model, e, 2) for e in range(4)] == [
        False, True, False, True,
    ]
    assert [_keras_internals.should_eval(model, e, [1, 3]) for e in range(4)] == [
        True, False, True, False,
    ]
    with pytest.raises(ValueError, match="validation_freq"):
        _keras_internals.should_eval(model, 0, "2")


def test_evaluate_cached_uses_the_cached_iterator_until_cleared():
    # `TFEpochIterator(distribute_strategy, *args, **kwargs)` passes the rest to
    # `EpochIterator`: together, the keyword arguments `evaluate_cached` gives.
    assert list(inspect.signature(tf_trainer.TFEpochIterator.__init__).parameters) == [
        "self", "distribute_strategy", "args", "kwargs",
    ]
    assert issubclass(tf_trainer.TFEpochIterator, epoch_iterator.EpochIterator)
    params = inspect.signature(epoch_iterator.EpochIterator.__init__).parameters
    for name in ("x", "y", "sample_weight", "batch_size", "steps_per_epoch", "shuffle",
                 "steps_per_execution"):
        assert name in params, name
    evaluate = inspect.getsource(tf_trainer.TensorFlowTrainer.evaluate)
    assert 'kwargs.pop("_use_cached_eval_dataset", False)' in evaluate
    assert "epoch_iterator = self._eval_epoch_iterator" in evaluate

    model = _compiled_model(n_features=1)
    model.slope.assign([2.0])
    x = np.arange(8, dtype="float32")[:, None]
    y = np.zeros(8, "float32")
    expected = float(np.mean((2 * x[:, 0]) ** 2))  # MSE of y_pred = 2x against 0
    callbacks = keras.callbacks.CallbackList(model=model)
    logs = _keras_internals.evaluate_cached(model, x, y, None, 3, None, callbacks)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-6)
    assert isinstance(model._eval_epoch_iterator, tf_trainer.TFEpochIterator)
    # While cached, the iterator (not the arrays passed) is what Keras evaluates.
    logs = _keras_internals.evaluate_cached(model, x, 2 * x[:, 0], None, 3, None, callbacks)
    np.testing.assert_allclose(logs["loss"], expected, rtol=1e-6)
    _keras_internals.clear_eval_iterator(model)
    assert getattr(model, "_eval_epoch_iterator", None) is None
    _keras_internals.clear_eval_iterator(model)  # nothing cached: no error
    logs = _keras_internals.evaluate_cached(model, x, 2 * x[:, 0], None, 3, None, callbacks)
    assert logs["loss"] == pytest.approx(0.0, abs=1e-9)
    _keras_internals.clear_eval_iterator(model)


def test_overrides_hook_reads_keras_default_marker():
    assert "utils.is_default(cbk.on_train_batch_end)" in inspect.getsource(
        callback_list.CallbackList
    )
    hooks = fast_fit._TRAIN_BATCH_HOOKS + fast_fit._TEST_BATCH_HOOKS
    for hook in hooks:
        assert python_utils.is_default(getattr(keras.callbacks.Callback, hook)), hook
        assert not _keras_internals.overrides_hook(keras.callbacks.Callback(), hook), hook

    class BatchEnd(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    assert _keras_internals.overrides_hook(BatchEnd(), "on_train_batch_end")
    assert not _keras_internals.overrides_hook(BatchEnd(), "on_train_batch_begin")


def test_public_history_and_progbar_are_what_callback_list_adds():
    model = _compiled_model(n_features=1)
    callbacks = keras.callbacks.CallbackList(
        add_history=True, add_progbar=True, model=model, verbose=1, epochs=1, steps=1
    )
    kinds = {type(c) for c in callbacks.callbacks}
    assert kinds == {keras.callbacks.History, keras.callbacks.ProgbarLogger}
    assert not fast_fit._has_hooks(callbacks, fast_fit._TRAIN_BATCH_HOOKS)


def test_pythonify_logs_flattens_sorts_and_converts_to_floats():
    assert list(inspect.signature(python_utils.pythonify_logs).parameters) == ["logs"]
    logs = {"mse": tf.constant(2.5), "loss": {"inner": np.float32(1.5)}, "name": "text"}
    result = _keras_internals.pythonify_logs(logs)
    assert result == {"inner": 1.5, "mse": 2.5, "name": "text"}
    assert all(type(result[k]) is float for k in ("inner", "mse"))
    assert list(result) == ["inner", "mse", "name"]
    assert _keras_internals.pythonify_logs(None) == {}


# ----------------------------------------------------------------- other reads (4)
def test_fit_validation_pass_is_recognised_by_evaluate_private_flag():
    # `keras_linreg.validation` binds `evaluate`'s arguments by name; `**kwargs`
    # carries the flag `fit` passes (see `test_fit_calls_the_helpers_...`).
    parameters = inspect.signature(keras.Model.evaluate).parameters
    assert "_use_cached_eval_dataset" not in parameters and "kwargs" in parameters
    assert _keras_internals.is_fit_validation_pass({"_use_cached_eval_dataset": True})
    assert not _keras_internals.is_fit_validation_pass({"_use_cached_eval_dataset": False})
    assert not _keras_internals.is_fit_validation_pass({"batch_size": 4})


def test_learning_rate_schedule_is_where_keras_optimizers_keep_it():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    assert _keras_internals.learning_rate_schedule(optimizer) is schedule
    assert _keras_internals.learning_rate_schedule(keras.optimizers.SGD(0.1)) is None
    assert _keras_internals.learning_rate_schedule(None) is None
    # The package's own optimizer state inherits the same slot.
    model = keras_linreg.LinearRegression(n_features=1, learning_rate=schedule)
    model.compile()
    assert _keras_internals.learning_rate_schedule(model.optimizer) is schedule
