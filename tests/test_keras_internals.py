"""Fails loudly when Keras changes what `keras_linreg/_keras_internals.py` relies on.

`LinearRegression` works around two failures of Keras 3.15's TensorFlow
trainer under tf.distribute (keras-team/keras#20585) with private Keras APIs,
all in `_keras_internals.py`. If a test here fails after a Keras upgrade, do
not just update the expectation: re-read the Keras source it points to,
re-check the workaround (and whether it is still needed), run
`tests/test_distribute.py`, then update `pyproject.toml`'s Keras range.
The behaviour itself is tested end to end in `tests/test_distribute.py`.
"""

from __future__ import annotations

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer

import keras_linreg
from keras_linreg import _keras_internals


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
