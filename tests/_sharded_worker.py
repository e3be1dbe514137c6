"""One worker of a cluster reading sharded files, for tests/test_sharding.py; prints JSON.

Run once per worker with `TF_CONFIG` set (`MultiWorkerMirroredStrategy`), or
with `"strategy": "mirrored"` over logical CPU devices of one process::

    python tests/_sharded_worker.py '{"mode": "fit", "files": [...], ...}'

Modes:
    fit: a full-batch fit over `distributed_dataset_from_files`, then
        `sharded_least_squares` (plain, ridge, through the origin). The last
        stdout line is `{"shard": ..., "fit": ..., "least_squares": ...}`.
    resumable: mini-batch training with `keras.callbacks.BackupAndRestore`
        (this worker's own backup directory), printing one JSON line per finished
        epoch; with `pause` `[epoch, batch]` it prints `"paused"` after that
        batch of that epoch and sleeps there (the test SIGKILLs it), unless the
        marker file `pause_marker` exists (so the restarted run never pauses).
        Ends with a `{"done": ...}` line.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

TARGET, WEIGHT = "y", "w"


def build_model(strategy, n_features, learning_rate):
    import keras

    import keras_linreg

    with strategy.scope():
        model = keras_linreg.LinearRegression(n_features=n_features, learning_rate=learning_rate)
        model.compile(metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
    return model


def parameters(model):
    slope, intercept = model.get_parameters()
    return [*map(float, slope), float(intercept)]


def run_fit(strategy, config):
    import keras_linreg

    files = config["files"]
    shard = keras_linreg.data.input_shard(strategy)
    local = keras_linreg.data.dataset_from_files(files, target=TARGET, shard=shard)
    shard_rows = [float(v) for batch in local.as_numpy_iterator() for v in batch[1]]
    model = build_model(strategy, config["n_features"], config["learning_rate"])
    data = keras_linreg.data.distributed_dataset_from_files(
        files, target=TARGET, sample_weight=WEIGHT, strategy=strategy,
        batch_size=config["batch_size"],
    )
    history = model.fit(data, epochs=config["epochs"], verbose=0)
    solutions = {}
    for name, options in {
        "plain": {}, "ridge": {"l2": 0.1}, "origin": {"fit_intercept": False},
    }.items():
        slope, intercept = keras_linreg.data.sharded_least_squares(
            files, target=TARGET, sample_weight=WEIGHT, strategy=strategy, batch_size=16,
            **options,
        )
        solutions[name] = [*map(float, slope), float(intercept)]
    return {
        "shard": list(shard),
        "replicas": strategy.num_replicas_in_sync,
        "shard_targets": shard_rows,
        "fit": {
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
            "parameters": parameters(model),
            "iterations": int(model.optimizer.iterations.numpy()),
        },
        "least_squares": solutions,
    }


def run_resumable(strategy, config):
    import keras

    import keras_linreg

    index = keras_linreg.data.input_shard(strategy)[0]
    model = build_model(strategy, config["n_features"], config["learning_rate"])
    data = keras_linreg.data.distributed_dataset_from_files(
        config["files"], target=TARGET, strategy=strategy, batch_size=config["batch_size"],
    )
    pause, marker = config.get("pause"), config["pause_marker"]

    class Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if pause and [self.epoch, batch] == pause and index == config["pause_worker"] \
                    and not os.path.exists(marker):
                open(marker, "w").close()
                print("paused", flush=True)
                time.sleep(600)  # the test SIGKILLs this worker here, mid-epoch

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            record = {
                "epoch": epoch, "loss": float(logs["loss"]), "pid": os.getpid(),
                "iterations": int(self.model.optimizer.iterations.numpy()),
                "parameters": parameters(self.model),
            }
            print(json.dumps(record), flush=True)

    # Keras 3's BackupAndRestore writes from every worker: each its own directory.
    backup = keras.callbacks.BackupAndRestore(os.path.join(config["backup_dir"], f"worker{index}"))
    model.fit(data, epochs=config["epochs"], verbose=0, callbacks=[backup, Progress()])
    print(json.dumps({"done": parameters(model)}), flush=True)


def main(argv=None):
    config = json.loads((argv or sys.argv[1:])[0])
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    keras.config.disable_traceback_filtering()  # whole tracebacks in the test's report
    devices = int(config.get("devices", 1))
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(devices)]
    )
    if config.get("strategy") == "mirrored":
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(devices)])
    else:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    if config["mode"] == "fit":
        print(json.dumps(run_fit(strategy, config)), flush=True)
    else:
        run_resumable(strategy, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
