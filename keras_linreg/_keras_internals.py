"""Every use of a private Keras API in keras_linreg, in one place.

Keras 3.15's TensorFlow trainer fails under `tf.distribute` in two places
(keras-team/keras#20585). `LinearRegression` works around both with the two
adapters below; nothing else in the package touches Keras internals. They
were written against Keras 3.15 (hence `keras>=3.15,<3.16` in
`pyproject.toml`), and `tests/test_keras_internals.py` fails loudly if a
Keras upgrade changes what they rely on.

1. `TensorFlowTrainer._maybe_symbolic_build(iterator=None, data_batch=None)`
   runs at the start of `fit`/`evaluate` for a model created under a
   strategy's scope. It takes the first distributed batch and calls
   `strategy.reduce("MEAN", batch, axis=None)` on the *input data* only to
   learn its shapes and dtypes. That all-reduce fails under
   `MultiWorkerMirroredStrategy` ("Attempt to convert a value (PerReplica...)
   with an unsupported type") and, under `MirroredStrategy`, whenever the
   first global batch does not split evenly over the replicas (`AddN` of a
   `(31, k)` and a `(30, k)` tensor). `maybe_symbolic_build` hands Keras'
   own method the first replica's part of that batch instead: same shapes
   and dtypes up to the batch dimension, no communication.

2. After each step, `reduce_per_replica(logs, strategy, "auto")` reduces the
   step's logs. In multi-worker mode (Keras' own predicate
   `_collective_all_reduce_multi_worker`) it calls
   `strategy.reduce("MEAN", v, axis=0)`, which fails for the scalar logs
   every Keras model returns ("Invalid reduction dimension 0 for input with
   0 dimensions"). `reducible_logs` reshapes the logs to `(1,)` exactly in
   that case, so that reduction averages them over the replicas and yields
   scalars again; everywhere else the logs stay as they are.

The first adapter also refuses, with a clear error before any step, the two
`compile()` options Keras 3.15 cannot run with more than one replica
(`steps_per_execution > 1`, `jit_compile=True`), which otherwise fail deep in
a graph execution.

Neither adapter changes the numbers: the global-batch loss and update are
computed in `LinearRegression.train_step` with public `tf.distribute` APIs,
and the epoch logs Keras reports come from the metrics' cross-replica values.
"""

from __future__ import annotations

import tensorflow as tf

# Private Keras API (2): the predicate Keras' `reduce_per_replica` uses to
# choose `strategy.reduce("MEAN", v, axis=0)`. Using Keras' own function, not
# a copy, keeps our reshape in step with Keras' choice.
from keras.src.backend.tensorflow.trainer import _collective_all_reduce_multi_worker


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
