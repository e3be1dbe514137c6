"""Files sharded over workers: each reads its own units, and the answers are one process's.

`dataset_from_files(..., shard=(index, count))` reads unit `j` (a CSV file, or
one Parquet row group, in file order) iff `j % count == index`: checked here
against the units read directly with pyarrow. The least-squares merge of
per-shard R factors is checked in this process against `numpy.linalg.lstsq`
and against one-process `least_squares`, on shards with very different means.

The slow tests start two real `MultiWorkerMirroredStrategy` workers on
127.0.0.1 (`tests/_sharded_worker.py`, free ports, `TF_CONFIG`, a timeout, all
children killed at the end), each reading only its shard: a full-batch fit and
`sharded_least_squares` must equal one process (1e-5 and 1e-9 relative); and a
worker SIGKILLed mid-epoch, all workers restarted with `BackupAndRestore`,
must log each epoch once and end equal (1e-6) to an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from _processes import stdout_lines
from test_distribute import child_env, free_ports, run_children

import keras_linreg
from keras_linreg import data
from keras_linreg._sharding import _shard_factor, _solve_merged

WORKER = Path(__file__).with_name("_sharded_worker.py")
TIMEOUT = 240  # seconds per group of worker processes (about 30 s on an idle 2-core machine)


def write_files(directory, sizes, *, features=3, seed=0, mean=0.5, csv=(), row_group=20,
                weights=True):
    """Parquet files (row groups of `row_group` rows) and CSV files (positions `csv`)
    of `y = x · [1, -2, 0.5, ...] + 3 + N(0, 1)`; returns `(paths, tables)`."""
    rng = np.random.default_rng(seed)
    paths, tables = [], []
    for i, rows in enumerate(sizes):
        x = rng.normal(mean, 1.0, (rows, features)).astype("float32")
        slope = np.resize([1.0, -2.0, 0.5], features)
        y = (x @ slope + 3.0 + rng.normal(size=rows)).astype("float32")
        columns = {f"x{j}": x[:, j] for j in range(features)}
        columns["y"] = y
        if weights:
            columns["w"] = rng.uniform(0.2, 3.0, rows).astype("float32")
        table = pa.table(columns)
        if i in csv:
            path = directory / f"part{i}.csv"
            pa_csv.write_csv(table, path)
        else:
            path = directory / f"part{i}.parquet"
            pq.write_table(table, path, row_group_size=row_group)
        paths.append(str(path))
        tables.append(table)
    return paths, tables


def units(paths, tables):
    """Each unit's table, in order: a CSV file whole, a Parquet file per row group."""
    out = []
    for path, table in zip(paths, tables, strict=True):
        if path.endswith(".csv"):
            out.append(table)
        else:
            parquet = pq.ParquetFile(path)
            out.extend(parquet.read_row_group(g) for g in range(parquet.num_row_groups))
    return out


def columns(table_list, names):
    return [
        np.concatenate([t.column(n).to_numpy() for t in table_list]).astype("float64")
        for n in names
    ]


def read(dataset):
    parts = list(zip(*dataset.as_numpy_iterator(), strict=True))
    return [np.concatenate(p).astype("float64") for p in parts] if parts else []


# ------------------------------------------------------------------ the shards
def test_each_shard_reads_exactly_its_units(tmp_path):
    paths, tables = write_files(tmp_path, [50, 70, 37, 5], csv=(1,))
    every = units(paths, tables)  # 3 + 1 + 2 + 1 = 7 units
    assert len(every) == 7
    for count in (1, 2, 3, 8):
        for index in range(count):
            dataset = data.dataset_from_files(
                paths, target="y", sample_weight="w", batch_size=16, shard=(index, count)
            )
            assert dataset.cardinality().numpy() == tf.data.UNKNOWN_CARDINALITY
            mine = [t for j, t in enumerate(every) if j % count == index]
            got = read(dataset)
            if not mine:  # more shards than units: an empty shard
                assert got == []
                continue
            x, y, w = got
            expected = columns(mine, ["x0", "x1", "x2", "y", "w"])
            np.testing.assert_array_equal(x, np.stack(expected[:3], axis=1))
            np.testing.assert_array_equal(y, expected[3])
            np.testing.assert_array_equal(w, expected[4])


def test_a_shuffled_shard_holds_the_same_rows(tmp_path):
    paths, tables = write_files(tmp_path, [60, 40], weights=False)
    plain = read(data.dataset_from_files(paths, target="y", shard=(1, 2), batch_size=7))
    shuffled = read(data.dataset_from_files(
        paths, target="y", shard=(1, 2), batch_size=7, shuffle=True, seed=3
    ))
    assert not np.array_equal(plain[1], shuffled[1])
    np.testing.assert_array_equal(np.sort(plain[1]), np.sort(shuffled[1]))


@pytest.mark.parametrize(
    "shard", [(2, 2), (-1, 2), (0, 0), (0,), (0.0, 1), (True, 2), "0/2", [0, 1, 2]]
)
def test_invalid_shard_is_refused(tmp_path, shard):
    paths, _ = write_files(tmp_path, [10])
    with pytest.raises(ValueError, match=r"invalid value for `shard`, expected None or a pair"):
        data.dataset_from_files(paths, target="y", shard=shard)


def test_distributed_dataset_refuses_shard_and_bad_batch_size(tmp_path):
    paths, _ = write_files(tmp_path, [10])
    with pytest.raises(ValueError, match=r"Received `shard` for `distributed_dataset"):
        data.distributed_dataset_from_files(paths, target="y", shard=(0, 1))
    with pytest.raises(ValueError, match=r"expected a positive multiple .* batch_size=0"):
        data.distributed_dataset_from_files(paths, target="y", batch_size=0)
    with pytest.raises(ValueError, match=r"invalid value for `target`"):
        data.sharded_least_squares(paths, target=None)


def test_input_shard_without_a_strategy_is_the_whole():
    assert data.input_shard() == (0, 1)
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        assert data.input_shard() == (0, 1)


# ------------------------------------------------------- least squares, merged
def weighted_lstsq(x, y, w, *, fit_intercept=True, l2=0.0):
    """numpy.linalg.lstsq of `sqrt(w)·[1, x] θ ≈ sqrt(w)·y`, with `sqrt(n·l2)·I` rows for
    the slope: the minimiser of `Σ w r² / n + l2 Σ slope²`."""
    n, k = x.shape
    design = np.hstack([np.ones((n, 1)), x]) if fit_intercept else x
    root = np.sqrt(w)
    a, b = root[:, None] * design, root * y
    if l2:
        penalty = np.zeros((k, design.shape[1]))
        penalty[:, design.shape[1] - k :] = np.sqrt(n * l2) * np.eye(k)
        a, b = np.vstack([a, penalty]), np.concatenate([b, np.zeros(k)])
    theta = np.linalg.lstsq(a, b, rcond=None)[0]
    return (theta[1:], theta[0]) if fit_intercept else (theta, 0.0)


def assert_close(actual, expected, rtol):
    np.testing.assert_allclose(actual[0], expected[0], rtol=rtol, atol=0)
    np.testing.assert_allclose(actual[1], expected[1], rtol=rtol, atol=1e-12)


@pytest.mark.parametrize("options", [{}, {"l2": 0.1}, {"fit_intercept": False}])
def test_merged_shard_factors_equal_one_process(tmp_path, options):
    # Shards far apart (means 0, 40 and 300 on a unit spread): moving each
    # factor to the common shift must not lose digits.
    paths = []
    for i, mean in enumerate((0.0, 40.0, 300.0)):
        (directory := tmp_path / f"d{i}").mkdir()
        paths += write_files(directory, [45, 31], seed=i, mean=mean, csv=(1,))[0]
    k = 3
    # What each of 3 workers computes on its shard (3 units each here) ...
    parts = np.stack([
        _shard_factor(
            data.dataset_from_files(
                paths, target="y", sample_weight="w", batch_size=8, shard=(i, 3)
            ).as_numpy_iterator(),
            k,
            options.get("fit_intercept", True),
        )
        for i in range(3)
    ])
    merged = _solve_merged(
        parts, k, options.get("fit_intercept", True), options.get("l2", 0.0)
    )
    # ... equals one process reading all files, and numpy on all rows.
    one = keras_linreg.least_squares(
        data.dataset_from_files(paths, target="y", sample_weight="w", batch_size=8), **options
    )
    x, y, w = read(data.dataset_from_files(paths, target="y", sample_weight="w"))
    assert_close(merged, one, rtol=1e-9)
    assert_close(merged, weighted_lstsq(x, y, w, **options), rtol=1e-9)


def test_sharded_least_squares_in_one_process_is_least_squares(tmp_path):
    paths, _ = write_files(tmp_path, [50, 70, 37], csv=(1,))
    got = data.sharded_least_squares(paths, target="y", sample_weight="w", batch_size=16)
    x, y, w = read(data.dataset_from_files(paths, target="y", sample_weight="w"))
    assert_close(got, weighted_lstsq(x, y, w), rtol=1e-9)


def test_zero_weights_give_zero(tmp_path):
    paths, tables = write_files(tmp_path, [10, 12], weights=False)
    for i, table in enumerate(tables):
        pq.write_table(table.append_column("w", pa.array(np.zeros(len(table), "float32"))),
                       paths[i])
    parts = np.stack([
        _shard_factor(data.dataset_from_files(
            paths, target="y", sample_weight="w", shard=(i, 2)
        ).as_numpy_iterator(), 3, True)
        for i in range(2)
    ])
    slope, intercept = _solve_merged(parts, 3, True, 0.0)
    assert slope.tolist() == [0.0, 0.0, 0.0] and intercept == 0.0


def test_distributed_dataset_in_one_process_fits_as_the_files(tmp_path):
    paths, _ = write_files(tmp_path, [30, 25], csv=(1,))

    def fit(dataset):
        model = keras_linreg.LinearRegression(n_features=3, learning_rate=0.05)
        model.compile()
        history = model.fit(dataset, epochs=2, verbose=0)
        return history.history["loss"], np.append(*model.get_parameters())

    kwargs = {"target": "y", "sample_weight": "w", "batch_size": 16}
    loss, weights = fit(data.distributed_dataset_from_files(paths, **kwargs))
    loss_ref, weights_ref = fit(data.dataset_from_files(paths, **kwargs))
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-6)
    np.testing.assert_allclose(weights, weights_ref, rtol=1e-6)


# ------------------------------------------------------ real worker processes
def cluster_env(workers, index):
    config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
    return child_env(TF_CONFIG=json.dumps(config))


def hand_written_full_batch_gd(x, y, w, epochs, learning_rate):
    """Full-batch gradient descent in float64: per epoch the loss `Σ w r² / n` before
    the step, then `slope -= lr·2xᵀ(w r)/n`, `b -= lr·2Σ(w r)/n`, from zeros."""
    n, k = x.shape
    slope, intercept, losses = np.zeros(k), 0.0, []
    for _ in range(epochs):
        residual = x @ slope + intercept - y
        losses.append(float(np.sum(w * residual**2) / n))
        slope = slope - learning_rate * 2 * x.T @ (w * residual) / n
        intercept = intercept - learning_rate * 2 * np.sum(w * residual) / n
    return losses, np.append(slope, intercept)


@pytest.mark.slow
def test_two_workers_on_sharded_files_equal_one_process(tmp_path):
    # 7 units of uneven sizes: worker 0 reads 20+10+20+5 rows, worker 1 20+70+17.
    paths, tables = write_files(tmp_path, [50, 70, 37, 5], csv=(1,))
    config = {
        "mode": "fit", "files": paths, "n_features": 3, "learning_rate": 0.1,
        "batch_size": 1024, "epochs": 4,  # one full-batch step per epoch
    }
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    outputs = run_children(
        [([sys.executable, str(WORKER), json.dumps(config)], cluster_env(workers, i))
         for i in range(2)],
        tmp_path,
        timeout=TIMEOUT,
    )
    # One process, all files: the reference, anchored to a hand-written loop.
    model = keras_linreg.LinearRegression(n_features=3, learning_rate=0.1)
    model.compile(metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
    history = model.fit(
        data.dataset_from_files(paths, target="y", sample_weight="w", batch_size=1024),
        epochs=4, verbose=0,
    )
    reference = np.append(*model.get_parameters())
    x, y, w = read(data.dataset_from_files(paths, target="y", sample_weight="w"))
    losses, weights = hand_written_full_batch_gd(x, y, w, 4, 0.1)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-5)
    np.testing.assert_allclose(reference, weights, rtol=1e-5, atol=1e-6)
    every = units(paths, tables)
    for index, output in enumerate(outputs):
        # Each worker read only its own units.
        assert output["shard"] == [index, 2] and output["replicas"] == 2
        mine = [t for j, t in enumerate(every) if j % 2 == index]
        np.testing.assert_array_equal(output["shard_targets"], columns(mine, ["y"])[0])
        fit = output["fit"]
        assert fit["iterations"] == 4
        for key, values in history.history.items():
            np.testing.assert_allclose(fit["history"][key], values, rtol=1e-5, err_msg=key)
        np.testing.assert_allclose(fit["parameters"], reference, rtol=1e-5, atol=1e-6)
        for name, options in {
            "plain": {}, "ridge": {"l2": 0.1}, "origin": {"fit_intercept": False},
        }.items():
            solution = output["least_squares"][name]
            got = (np.array(solution[:-1]), solution[-1])
            one = keras_linreg.least_squares(
                data.dataset_from_files(paths, target="y", sample_weight="w", batch_size=16),
                **options,
            )
            assert_close(got, one, rtol=1e-9)
            assert_close(got, weighted_lstsq(x, y, w, **options), rtol=1e-9)


@pytest.fixture
def processes():
    started = []
    yield started
    for process in started:  # always clean up, whatever happened
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


def uninterrupted(paths, epochs, per_replica, learning_rate):
    """The run in one process: each step's batch is worker 0's next batch of its
    shard followed by worker 1's (what the two workers' step adds up)."""
    shards = [
        data.dataset_from_files(paths, target="y", batch_size=per_replica, shard=(i, 2))
        for i in range(2)
    ]
    steps = tf.data.Dataset.zip(*shards).map(
        lambda a, b: (tf.concat([a[0], b[0]], 0), tf.concat([a[1], b[1]], 0))
    )
    records = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            records.append({
                "epoch": epoch, "loss": float(logs["loss"]),
                "iterations": int(self.model.optimizer.iterations.numpy()),
                "parameters": np.append(*self.model.get_parameters()).tolist(),
            })

    model = keras_linreg.LinearRegression(n_features=2, learning_rate=learning_rate)
    model.compile()
    with warnings.catch_warnings():  # a zip of datasets of unknown length
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(steps, epochs=epochs, verbose=0, callbacks=[Record()])
    return records


@pytest.mark.slow
def test_sigkilled_worker_resumes_with_backup_and_restore(tmp_path, processes):
    # Worker 0 reads 80 rows, worker 1 72: 5 per-replica batches of 16 each
    # (the last 16 and 8 rows), 5 steps per epoch.
    paths, _ = write_files(tmp_path, [40, 40, 40, 32], features=2, seed=1, weights=False)
    epochs, pause = 6, [3, 2]  # worker 1 stops after batch 2 of epoch 3
    config = {
        "mode": "resumable", "files": paths, "n_features": 2, "learning_rate": 0.05,
        "batch_size": 32, "epochs": epochs, "pause": pause, "pause_worker": 1,
        "pause_marker": str(tmp_path / "paused"), "backup_dir": str(tmp_path / "backup"),
    }
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]

    def start():
        group = []
        for i in range(2):
            process = subprocess.Popen(
                [sys.executable, str(WORKER), json.dumps(config)], env=cluster_env(workers, i),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            processes.append(process)
            group.append(process)
        return group

    # 1. Both workers train; worker 1 stops mid-epoch 3 (worker 0 waits for it
    #    in the step's all-reduce); SIGKILL it, then the other: the cluster is down.
    first = start()
    lines, seen = stdout_lines(first[1]), []
    deadline = time.monotonic() + TIMEOUT
    while "paused" not in seen:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.1))
        except queue.Empty:
            pytest.fail(f"worker 1 did not pause in {TIMEOUT}s; output: {seen}")
        if line is None:
            pytest.fail(f"worker 1 ended before pausing: {seen}\n{first[1].stderr.read()[-3000:]}")
        seen.append(line)
    os.kill(first[1].pid, signal.SIGKILL)
    assert first[1].wait(timeout=30) == -signal.SIGKILL
    assert first[0].poll() is None, "worker 0 waits in the step its peer never joins"
    os.kill(first[0].pid, signal.SIGKILL)
    first[0].wait(timeout=30)
    killed = [
        [json.loads(line) for line in text.splitlines() if line.startswith('{"epoch"')]
        for text in (first[0].stdout.read(), "\n".join(seen))
    ]
    # 2. The same commands again: both resume after the last backed-up epoch.
    second = start()
    outs = []
    for process in second:
        out, err = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, err[-3000:]
        outs.append(out.splitlines())
    resumed = [[json.loads(line) for line in out if line.startswith('{"epoch"')] for out in outs]

    # 3. Each epoch logged once per worker, with the uninterrupted run's values.
    reference = uninterrupted(paths, epochs, 16, 0.05)
    for index in range(2):
        assert [r["epoch"] for r in killed[index]] == list(range(pause[0])), index
        records = killed[index] + resumed[index]
        assert [r["epoch"] for r in records] == list(range(epochs)), index
        assert {r["pid"] for r in killed[index]}.isdisjoint(r["pid"] for r in resumed[index])
        for got, want in zip(records, reference, strict=True):
            assert got["iterations"] == want["iterations"] == (got["epoch"] + 1) * 5
            assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
            np.testing.assert_allclose(got["parameters"], want["parameters"], rtol=0, atol=1e-6)
        final = json.loads(outs[index][-1])["done"]
        np.testing.assert_allclose(final, reference[-1]["parameters"], rtol=0, atol=1e-6)
    assert not (tmp_path / "backup" / "worker0").exists()  # a finished run removes its backup
