"""Child process of tests/test_mirrored_files.py: file datasets under a MirroredStrategy.

Splits the CPU into 2 logical devices (before TensorFlow initialises, hence a
fresh process), then fits, evaluates and predicts on `dataset_from_files`
datasets over the files named in argv (JSON: `{"paths": [...], "bad": path}`),
once on one device and once under `MirroredStrategy(["/cpu:0", "/cpu:1"])`,
and prints one JSON line with everything it measured. The parent computes the
references (hand-written float64 loops, `numpy.linalg.lstsq`) itself.
"""

import json
import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.get_logger().setLevel("ERROR")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_linreg  # noqa: E402
from keras_linreg import data, inputs  # noqa: E402

spec = json.loads(sys.argv[1])
paths, bad = spec["paths"], spec["bad"]
rows = spec["rows"]
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
one = tf.distribute.get_strategy()
out = {"replicas": mirrored.num_replicas_in_sync}


def files(**kwargs):
    kwargs.setdefault("sample_weight", "w")
    kwargs.setdefault("target", "y")
    kwargs.setdefault("features", ["x0", "x1", "x2"])
    return data.dataset_from_files(paths, **kwargs)


def model_in(strategy, **kwargs):
    kwargs.setdefault("learning_rate", 0.1)
    with strategy.scope():
        model = keras_linreg.LinearRegression(**kwargs)
        model.compile(weighted_metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
    return model


def run(strategy, batch_size, epochs, *, shuffle=False, distributed=False, full=True,
        **model_kwargs):
    """fit (`full`: with validation data, then evaluate and predict); what they returned."""
    model = model_in(strategy, n_features=3, **model_kwargs)
    if distributed:
        train = data.distributed_dataset_from_files(
            paths, target="y", sample_weight="w", strategy=strategy, batch_size=batch_size)
    else:
        train = files(batch_size=batch_size, shuffle=shuffle, seed=3)
    validation = files(batch_size=batch_size) if full else None
    history = model.fit(train, epochs=epochs, validation_data=validation, verbose=0)
    slope, intercept = model.get_parameters()
    result = {
        "history": {key: list(map(float, values)) for key, values in history.history.items()},
        "weights": [*map(float, slope), float(intercept)],
        "steps": int(model.optimizer.iterations.numpy()),
        "rate": float(model.learning_rate),
        # Passes read over the training files (one per epoch; not for the distributed).
        "passes": None if distributed else getattr(train, inputs.FILE_READER_ATTRIBUTE).passes,
    }
    if not full:
        return result
    return {
        **result,
        "evaluate": list(map(float, model.evaluate(files(batch_size=batch_size), verbose=0))),
        "predict": model.predict(files(batch_size=batch_size, target=None, sample_weight=None),
                                 verbose=0).ravel().tolist(),
    }


for name, strategy in (("one", one), ("mirrored", mirrored)):
    result = out[name] = {}
    result["full"] = run(strategy, rows, 3)           # one full-batch step per epoch
    result["mini"] = run(strategy, 24, 2)             # 5 batches of 24 and one of 1 row
    result["shuffled"] = run(strategy, 24, 2, shuffle=True, full=False)
    result["distributed"] = run(strategy, 24, 1, distributed=True, full=False)
    result["auto"] = run(strategy, rows, 1, learning_rate="auto", full=False)
    # standardize=True: statistics from one streaming pass (adapt), then fit.
    model = model_in(strategy, n_features=3, standardize=True)
    model.adapt(files(batch_size=24, sample_weight=None))
    history = model.fit(files(batch_size=24), epochs=1, verbose=0)
    result["standardized"] = {
        "mean": np.asarray(model.feature_mean).tolist(),
        "std": np.asarray(model.feature_std).tolist(),
        "history": list(map(float, history.history["loss"])),
        "weights": [*map(float, model.get_parameters()[0]), float(model.get_parameters()[1])],
    }
    # Exact least squares over the files, with the strategy current.
    with strategy.scope():
        slope, intercept = keras_linreg.least_squares(files(batch_size=24))
        sharded = data.sharded_least_squares(paths, target="y", sample_weight="w",
                                             strategy=strategy, batch_size=24)
    result["least_squares"] = [*map(float, slope), float(intercept)]
    result["sharded_least_squares"] = [*map(float, sharded[0]), float(sharded[1])]
    # Bad data: the error names file, row and column, before any update.
    model = model_in(strategy, n_features=3)
    try:
        model.fit(data.dataset_from_files(bad, target="y", batch_size=8), epochs=1, verbose=0)
        result["bad"] = None
    except data.DataFileError as error:
        result["bad"] = {
            "type": type(error).__name__, "message": str(error), "row": error.row,
            "column": error.column, "steps": int(model.optimizer.iterations.numpy()),
            "weights": [*map(float, model.get_parameters()[0]),
                        float(model.get_parameters()[1])],
        }

# How Keras hands a file dataset's batches to the replicas.
distributed = mirrored.experimental_distribute_dataset(files(batch_size=24))
out["split"] = [[int(t.shape[0]) for t in mirrored.experimental_local_results(batch[0])]
                for batch in distributed]
print(json.dumps(out))
