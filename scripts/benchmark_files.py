"""Benchmark: reading CSV and Parquet files with `keras_linreg.data.dataset_from_files`.

Run with the project's venv (writes ~200 MB of files to a temporary directory):

    .venv/bin/python scripts/benchmark_files.py             # 2M rows x 5 columns
    .venv/bin/python scripts/benchmark_files.py --rows 2e5  # quick
    .venv/bin/python scripts/benchmark_files.py --formats parquet

Side by side in one process, in `--repeats` rounds (after one untimed pass of each)
that measure every path once, rows/s (best round; median) of:

- `pyarrow`: pyarrow alone to NumPy batches, `pyarrow.csv.open_csv` with `column_types` (CSV)
  or `ParquetFile.read_row_group` (Parquet), each column to a float32 NumPy array;
- `dataset`: iterating `dataset_from_files(..., batch_size=65536)` (what `fit` consumes);
- `fit`: one `LinearRegression.fit(dataset, epochs=1)` call (its wall time, with
  Keras' set-up of the call: callbacks, iterator, first step);
- `fit_epoch`: one epoch inside a longer `fit` on that dataset (the second epoch of a
  two-epoch `fit`, timed by a callback from `on_epoch_begin` to `on_epoch_end`): the
  rate of a long training run (each epoch one graph call);
- `fit_epoch_1step`: the same with a callback that watches single batches, so Keras'
  loop runs one step per call (as every `fit` on files did before);
- `fit_arrays`: one epoch of `fit` on the same rows already in memory (the fast path), for scale.

With `--profile`, instead, where one Parquet epoch's time goes: wall and CPU time
(`time.process_time`, all threads) of pyarrow alone, of the dataset's NumPy reader alone
(the pyarrow reads, the checks, the batching), of the `tf.data` dataset consumed inside a
`tf.function` (the reader plus the hand-over to tensors, no Python per batch), of a
`fit` epoch (all that plus the model's steps; the epoch in one graph call), and of a `fit`
epoch with a callback that watches single batches (Keras' loop, one step per call),
medians over `--repeats` rounds.

Prints a table and the medians of the rounds' ratios to pyarrow alone (each round's
paths ran within seconds of each other, so its ratios share the machine's load); writes
nothing; docs/data.md reports runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

NAMES = ["x0", "x1", "x2", "x3", "y"]
BATCH = 65536


def write_files(directory, rows):
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 3.0], np.float32) + 1.0).astype(np.float32)
    table = pa.table({**{n: x[:, j] for j, n in enumerate(NAMES[:4])}, "y": y})
    csv = os.path.join(directory, "data.csv")
    parquet = os.path.join(directory, "data.parquet")
    pa_csv.write_csv(table, csv)
    pq.write_table(table, parquet, row_group_size=BATCH * 4)
    return csv, parquet, x, y


def pyarrow_pass(path):
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    rows = 0
    if path.endswith(".csv"):
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(block_size=4 << 20),
            convert_options=pa_csv.ConvertOptions(column_types=dict.fromkeys(NAMES, pa.float64())),
        )
        for batch in reader:
            arrays = [batch.column(n).to_numpy().astype(np.float32) for n in NAMES]
            rows += len(arrays[0])
        return rows
    parquet = pq.ParquetFile(path)
    for i in range(parquet.num_row_groups):
        table = parquet.read_row_group(i, columns=NAMES)
        arrays = [table.column(n).to_numpy() for n in NAMES]
        rows += len(arrays[0])
    return rows


def dataset_pass(dataset):
    rows = 0
    for x, _ in dataset:
        rows += int(x.shape[0])
    return rows


class _EpochTimer:
    """A Keras callback (made lazily: Keras is imported late) timing each epoch."""

    def __new__(cls):
        import keras

        class Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self.start)

        return Timer()


def _every_batch():
    """A callback that watches single batches: `fit` then runs Keras' loop, one step
    per call (the path before epochs ran in one graph call)."""
    import keras

    class EveryBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass

    return EveryBatch()


def epoch_seconds(model, dataset, *callbacks):
    """The second epoch of a two-epoch `fit`: an epoch of a longer run."""
    timer = _EpochTimer()
    model.fit(dataset, epochs=2, verbose=0, callbacks=[timer, *callbacks])
    return timer.seconds[1]


def profile(parquet, rows, repeats):
    import keras
    import tensorflow as tf

    import keras_linreg
    from keras_linreg.data import dataset_from_files
    from keras_linreg.inputs import FILE_READER_ATTRIBUTE

    dataset = dataset_from_files(parquet, target="y", batch_size=BATCH)
    reader = getattr(dataset, FILE_READER_ATTRIBUTE)
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()

    @tf.function
    def consume(data):
        count = tf.constant(0)
        for x, _ in data:
            count += tf.shape(x)[0]
        return count

    def timed(function):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        return [(time.perf_counter() - wall, time.process_time() - cpu)]

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch, logs=None):
            self.times.append((time.perf_counter() - self.start[0],
                               time.process_time() - self.start[1]))

    class EveryBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            pass  # watching single batches: Keras' loop, one step per call

    def fit_epochs(*watch):
        timer = Timer()
        timer.times = []
        model.fit(dataset, epochs=3, verbose=0, callbacks=[timer, *watch])
        return timer.times[1:]

    parts = {
        "pyarrow alone": lambda: timed(lambda: pyarrow_pass(parquet)),
        "reader (NumPy)": lambda: timed(lambda: sum(len(b[0]) for b in reader())),
        "tf.data dataset": lambda: timed(lambda: int(consume(dataset))),
        "fit epoch": fit_epochs,
        "fit epoch, 1 step/call": lambda: fit_epochs(EveryBatch()),
    }
    for function in parts.values():
        function()  # untimed: tracing, caches
    times = {name: [] for name in parts}
    for _ in range(repeats):
        for name, function in parts.items():
            times[name] += function()
    print(f"{'Parquet, one pass':22s} {'wall ms':>8s} {'CPU ms':>8s} {'M rows/s':>9s}")
    for name, values in times.items():
        wall, cpu = np.median(np.array(values), axis=0)
        print(f"{name:22s} {wall * 1e3:8.1f} {cpu * 1e3:8.1f} {rows / wall / 1e6:9.1f}")


def seconds(function):
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=2e6)
    parser.add_argument("--repeats", type=int, default=5, help="rounds (default: 5)")
    parser.add_argument("--formats", default="csv,parquet",
                        help="comma-separated formats to measure (default: csv,parquet)")
    parser.add_argument("--profile", action="store_true",
                        help="where one Parquet epoch's time goes, instead of the table")
    arguments = parser.parse_args()
    rows = int(arguments.rows)

    import keras_linreg
    from keras_linreg.data import dataset_from_files

    with tempfile.TemporaryDirectory() as directory:
        csv, parquet, x, y = write_files(directory, rows)
        if arguments.profile:
            return profile(parquet, rows, max(arguments.repeats, 5))
        print(f"{rows} rows x 5 columns; CSV {os.path.getsize(csv) / 1e6:.0f} MB, "
              f"Parquet {os.path.getsize(parquet) / 1e6:.0f} MB; batch {BATCH}; "
              f"{os.cpu_count()} CPUs")
        model = keras_linreg.LinearRegression(learning_rate=0.01)
        model.compile()

        formats = arguments.formats.split(",")
        # One callable per path, each returning the seconds of one measurement.
        paths = {"fit_arrays": lambda: seconds(lambda: model.fit(
            x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0))}
        for name, path in (("csv", csv), ("parquet", parquet)):
            if name not in formats:
                continue
            dataset = dataset_from_files(path, target="y", batch_size=BATCH)
            paths[f"{name}_pyarrow"] = lambda p=path: seconds(lambda: pyarrow_pass(p))
            paths[f"{name}_dataset"] = lambda d=dataset: seconds(lambda: dataset_pass(d))
            paths[f"{name}_fit"] = lambda d=dataset: seconds(
                lambda: model.fit(d, epochs=1, verbose=0))
            paths[f"{name}_fit_epoch"] = lambda d=dataset: epoch_seconds(model, d)
            paths[f"{name}_fit_epoch_1step"] = lambda d=dataset: epoch_seconds(
                model, d, _every_batch())
        for function in paths.values():
            function()  # untimed: tracing, caches
        # Rounds: every path once per round, so each round's ratios compare moments of
        # the same load (the machine is shared).
        times = {name: [] for name in paths}
        for _ in range(arguments.repeats):
            for name, function in paths.items():
                times[name].append(function())
        for name, values in times.items():
            print(f"{name:22s} {rows / min(values) / 1e6:7.2f} M rows/s (best of "
                  f"{len(values)}; median {rows / np.median(values) / 1e6:.2f})")
        for name in formats:
            base = np.array(times[f"{name}_pyarrow"])
            ratios = ", ".join(
                f"{path}/pyarrow {np.median(base / np.array(times[f'{name}_{path}'])):.2f}"
                for path in ("dataset", "fit", "fit_epoch", "fit_epoch_1step")
            )
            print(f"{name} (medians of the rounds' ratios): {ratios}")

if __name__ == "__main__":
    main()
