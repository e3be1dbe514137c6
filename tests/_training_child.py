"""A training run for tests/test_fault_tolerance.py, meant to be killed and restarted.

Trains a `LinearRegression` with `keras.callbacks.BackupAndRestore` and a
learning-rate schedule of the step counter, printing one JSON line per
finished epoch (after the backup of that epoch was written) and a final
`{"done": ...}` line. With `--log-dir` a `keras_linreg.ParameterLogger` also
writes the epoch's TensorBoard scalars to `log_dir/parameters`. With
`--pause-after-epoch k` it stops, alive, after printing epoch k, so the test can
SIGKILL it there; started again with the same command it resumes after epoch k
and never reaches that pause again.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_linreg  # noqa: E402

EPOCHS = 8
BATCH_SIZE = 25
N_ROWS = 100


def data():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(N_ROWS, 2)).astype("float32") * np.float32([1.0, 3.0])
    y = (x @ np.float32([2.0, -0.5]) + 1.0 + rng.normal(size=N_ROWS)).astype("float32")
    return x, y


def schedule():
    return keras.optimizers.schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.8)


def build_model():
    keras.utils.set_random_seed(0)
    model = keras_linreg.LinearRegression(n_features=2, learning_rate=schedule())
    model.compile()
    return model


class Progress(keras.callbacks.Callback):
    """Prints each finished epoch as a JSON line; may pause after one of them."""

    def __init__(self, pause_after_epoch=None):
        super().__init__()
        self.pause_after_epoch = pause_after_epoch

    def on_epoch_end(self, epoch, logs=None):
        slope, intercept = self.model.get_parameters()
        record = {
            "epoch": epoch,
            "loss": float(logs["loss"]),
            "iterations": int(self.model.optimizer.iterations.numpy()),
            "learning_rate": self.model.learning_rate,
            "weights": [*map(float, slope), intercept],
            "pid": os.getpid(),
        }
        print(json.dumps(record), flush=True)
        if epoch == self.pause_after_epoch:
            print(f"epoch {epoch} done", flush=True)
            time.sleep(600)  # the test kills us here, mid-run


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--backup-dir", required=True)
    parser.add_argument("--log-dir", default=None)
    parser.add_argument("--pause-after-epoch", type=int, default=None)
    args = parser.parse_args(argv)
    x, y = data()
    model = build_model()
    # Keras runs the callbacks' `on_epoch_end` in this order, one after the
    # other. BackupAndRestore writes the epoch's weights, then its number;
    # only then does ParameterLogger write and flush the epoch's scalars.
    # So every logged epoch is in the backup, and a restart (which resumes
    # after the last backed-up epoch) never logs it a second time: no
    # duplicate. A kill before the backup's epoch number is written repeats the
    # epoch, which was not logged yet: logged once, by the restart. The only
    # kill that would leave a gap falls between the backup and the logger's
    # flush (in the other order a kill between the flush and the backup would
    # log the epoch twice). Progress comes last, so when the test kills the
    # child after "epoch k done", epoch k is both backed up and logged.
    callbacks = [keras.callbacks.BackupAndRestore(args.backup_dir)]
    if args.log_dir is not None:
        callbacks.append(keras_linreg.ParameterLogger(args.log_dir))
    callbacks.append(Progress(args.pause_after_epoch))  # its epoch is saved and logged
    model.fit(
        x, y, batch_size=BATCH_SIZE, epochs=EPOCHS, shuffle=False, verbose=0,
        callbacks=callbacks,
    )
    slope, intercept = model.get_parameters()
    print(json.dumps({"done": [*map(float, slope), intercept]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
