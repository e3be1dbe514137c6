"""Runs `LinearRegression` fits under one tf.distribute configuration; prints JSON.

Used by `tests/test_distribute.py` (imported for the single-device reference,
run as a script for the distributed runs: logical devices and `TF_CONFIG` must
be in place before TensorFlow initialises, so each configuration needs its own
process)::

    python tests/distributed_worker.py '{"strategy": "mirrored", "devices": 3,
                                         "runs": [{"rows": 200, "batch_size": 61}]}'

Config keys:
    strategy: "none" (no strategy), "mirrored" (`MirroredStrategy` over all
        logical CPUs) or "multi_worker" (`MultiWorkerMirroredStrategy`; the
        cluster comes from the `TF_CONFIG` environment variable).
    devices: Number of logical CPU devices to split the CPU into (default 1).
    runs: List of runs, each a dict of `run_fit` keyword arguments.
    refusals: If true, also report `refused_compile_options()`.

The last line on stdout is `{"results": [...]}`, one `run_fit` result per run.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def make_data(rows, features=2, seed=0, sample_weight=False):
    """A fixed regression problem: `y = x · [1.5, -2, ...] + 0.5 + N(0, 1)` (float32)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 1.5, size=(rows, features)).astype("float32")
    true_slope = np.linspace(1.5, -2.0, features)
    y = (x @ true_slope + 0.5 + rng.normal(0.0, 1.0, rows)).astype("float32")
    weights = rng.uniform(0.2, 3.0, rows).astype("float32") if sample_weight else None
    return x, y, weights


def run_fit(
    rows=200,
    batch_size=61,
    epochs=3,
    sample_weight=False,
    learning_rate=0.02,
    features=2,
    seed=0,
    shuffle_seed=None,
    evaluate_first=False,
    l1=0.0,
    l2=0.0,
):
    """Fits a fresh model in the current strategy's scope and returns what it did.

    With `shuffle_seed`, `keras.utils.set_random_seed(shuffle_seed)` runs first
    and `fit` shuffles; otherwise it does not shuffle. With `evaluate_first`,
    the unbuilt model is first evaluated (and so built) on the validation data.

    Returns a JSON-able dict: `history` (per-epoch `loss`, `rmse`, `val_loss`,
    `val_rmse`), `slope`, `intercept`, `iterations`, `evaluate` (the dict of
    `model.evaluate` on the training data), `initial_evaluate` (the dict of
    the evaluation before `fit`, or empty) and `predict` (predictions on the
    first 130 rows, 3 batches of at most 61). With `l1` or `l2`, the model has
    `slope_regularizer=keras.regularizers.L1L2(l1, l2)` (and its history
    `data_loss` and `penalty` too).
    """
    import keras

    import keras_linreg

    x, y, weights = make_data(rows, features, seed, sample_weight)
    x_val, y_val, _ = make_data(50, features, seed + 1)
    if shuffle_seed is not None:
        keras.utils.set_random_seed(shuffle_seed)
    strategy = tf_distribute_strategy()
    with strategy.scope():
        regularizer = keras.regularizers.L1L2(l1=l1, l2=l2) if (l1 or l2) else None
        model = keras_linreg.LinearRegression(
            learning_rate=learning_rate, slope_regularizer=regularizer
        )
        model.compile(metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
    initial = {}
    if evaluate_first:
        initial = model.evaluate(x_val, y_val, batch_size=batch_size, verbose=0, return_dict=True)
    history = model.fit(
        x,
        y,
        sample_weight=weights,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=shuffle_seed is not None,
        validation_data=(x_val, y_val),
        verbose=0,
    )
    evaluation = model.evaluate(
        x, y, sample_weight=weights, batch_size=batch_size, verbose=0, return_dict=True
    )
    predictions = model.predict(x[:130], batch_size=batch_size, verbose=0)
    slope, intercept = model.get_parameters()
    return {
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        "slope": slope.tolist(),
        "intercept": intercept,
        "iterations": int(model.optimizer.iterations.numpy()),
        "evaluate": {k: float(v) for k, v in evaluation.items()},
        "initial_evaluate": {k: float(v) for k, v in initial.items()},
        "predict": np.asarray(predictions, dtype="float64").tolist(),
    }


def refused_compile_options():
    """Fits with options Keras cannot run under a strategy; returns the errors.

    Returns:
        `{option: "ExceptionType: message"}` for `steps_per_execution=2` and
        `jit_compile=True` (`"no error"` if `fit` went through).
    """
    import keras_linreg

    x, y, _ = make_data(40)
    errors = {}
    for option in ({"steps_per_execution": 2}, {"jit_compile": True}):
        with tf_distribute_strategy().scope():
            model = keras_linreg.LinearRegression()
            model.compile(**option)
        try:
            model.fit(x, y, batch_size=20, epochs=1, verbose=0)
            errors[next(iter(option))] = "no error"
        except Exception as error:  # reported to the test, which checks it
            errors[next(iter(option))] = f"{type(error).__name__}: {error}"
    return errors


_STRATEGY = None


def tf_distribute_strategy():
    """The strategy `main` created, or TensorFlow's default (no distribution)."""
    import tensorflow as tf

    return _STRATEGY or tf.distribute.get_strategy()


def main(argv=None):
    global _STRATEGY
    config = json.loads((argv or sys.argv[1:])[0])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    devices = int(config.get("devices", 1))
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
    )
    kind = config["strategy"]
    if kind == "mirrored":
        _STRATEGY = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(devices)])
    elif kind == "multi_worker":
        _STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == "one_device":
        _STRATEGY = tf.distribute.OneDeviceStrategy("/cpu:0")
    elif kind != "none":
        raise ValueError(f"Unknown strategy: {kind!r}")
    replicas = _STRATEGY.num_replicas_in_sync if _STRATEGY else 1
    output = {"replicas": replicas, "results": [run_fit(**run) for run in config["runs"]]}
    if config.get("refusals"):
        output["refusals"] = refused_compile_options()
    print(json.dumps(output), flush=True)


if __name__ == "__main__":
    main()
