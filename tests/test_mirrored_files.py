"""File datasets under a `MirroredStrategy` over two local devices equal one device.

A fresh child process (`tests/_mirrored_files_child.py`) splits the CPU into 2
logical devices and trains on `dataset_from_files` over real Parquet, CSV and
CSV.GZ files (121 rows with sample weights), once on one device and once under
`MirroredStrategy(["/cpu:0", "/cpu:1"])`. Keras splits each global batch over
the replicas (24 rows: 12 and 12; the 1-row last batch: 1 and 0). Here, with
the references computed from the files as pyarrow reads them:

- full-batch and mini-batch fits (losses, RMSE, validation, steps, weights)
  equal one device to 1e-5, and a hand-written float64 gradient-descent loop;
- `evaluate` and `predict` stream and equal one device (and the weights' own
  predictions); a shuffled (seeded) fit, `distributed_dataset_from_files`,
  `learning_rate="auto"` and a `standardize=True` model adapted on the files
  equal one device too;
- `least_squares` and `sharded_least_squares` over the files under the
  strategy equal `numpy.linalg.lstsq` to 1e-9 relative;
- bad data raises `DataFileError` naming file, row and column, before any step.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

CHILD = Path(__file__).with_name("_mirrored_files_child.py")
SIZES = (37, 50, 24, 10)  # 121 rows: batches of 24 leave a 1-row last batch
NAMES = ("part0.parquet", "part1.csv", "part2.parquet", "part3.csv.gz")
RTOL = 1e-5


def _write(directory):
    rng = np.random.default_rng(7)
    paths = []
    for name, rows in zip(NAMES, SIZES, strict=True):
        x = rng.normal(0.5, 1.0, (rows, 3)).astype("float32")
        y = (x @ [1.0, -2.0, 0.5] + 3.0 + rng.normal(size=rows)).astype("float32")
        w = rng.uniform(0.2, 3.0, rows).astype("float32")
        table = pa.table({"x0": x[:, 0], "x1": x[:, 1], "x2": x[:, 2], "y": y, "w": w})
        path = directory / name
        if name.endswith(".parquet"):
            pq.write_table(table, path, row_group_size=20)
        elif name.endswith(".gz"):
            with pa.CompressedOutputStream(str(path), "gzip") as stream:
                pa_csv.write_csv(table, stream)
        else:
            pa_csv.write_csv(table, path)
        paths.append(str(path))
    bad = directory / "bad.csv"
    bad.write_text("x0,x1,x2,y\n" + "1,2,3,4\n" * 12 + "1,inf,3,4\n" + "1,2,3,4\n" * 5)
    return paths, str(bad)


def _read(paths):
    """All rows in file order as pyarrow reads them: float64 x (n, 3), y, w."""
    tables = [pq.read_table(p) if p.endswith(".parquet") else pa_csv.read_csv(p) for p in paths]
    table = pa.concat_tables([t.cast(tables[0].schema) for t in tables])
    columns = [table.column(c).to_numpy().astype(np.float32).astype(np.float64)
               for c in ("x0", "x1", "x2", "y", "w")]
    return np.stack(columns[:3], axis=1), columns[3], columns[4]


def _gradient_descent(x, y, w, *, batch_size, epochs, rate):
    """Hand-written float64 mini-batch gradient descent on Σ w (x·a + b − y)² / n_batch,
    batches in file order; per epoch, the row-weighted mean of the batches' losses."""
    theta = np.zeros(x.shape[1] + 1)
    losses = []
    for _ in range(epochs):
        sse_sum = 0.0
        for start in range(0, len(x), batch_size):
            xb, yb, wb = (a[start : start + batch_size] for a in (x, y, w))
            residual = xb @ theta[:-1] + theta[-1] - yb
            sse_sum += float(wb @ residual**2)
            gradient = 2 * np.append(xb.T @ (wb * residual), wb @ residual) / len(xb)
            theta = theta - rate * gradient
        losses.append(sse_sum / len(x))
    return theta, np.array(losses)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mirrored_files")
    paths, bad = _write(directory)
    spec = {"paths": paths, "bad": bad, "rows": sum(SIZES)}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    done = subprocess.run(
        [sys.executable, "-W", "error", str(CHILD), json.dumps(spec)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Traceback" not in done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result, _read(paths), bad


pytestmark = pytest.mark.slow


def test_keras_splits_each_global_batch_over_the_replicas(measured):
    result, (x, _, _), _ = measured
    assert result["replicas"] == 2
    assert result["split"] == [[12, 12]] * 5 + [[1, 0]]


@pytest.mark.parametrize("case, batch_size, epochs", [("full", 121, 3), ("mini", 24, 2)])
def test_fit_equals_one_device_and_float64_gradient_descent(measured, case, batch_size, epochs):
    result, (x, y, w), _ = measured
    one, mirrored = result["one"][case], result["mirrored"][case]
    theta, losses = _gradient_descent(x, y, w, batch_size=batch_size, epochs=epochs, rate=0.1)
    np.testing.assert_allclose(one["weights"], theta, rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(one["history"]["loss"], losses, rtol=RTOL)
    np.testing.assert_allclose(mirrored["weights"], one["weights"], rtol=RTOL, atol=1e-6)
    assert mirrored["steps"] == one["steps"] == epochs * -(-len(x) // batch_size)
    assert mirrored["history"].keys() == one["history"].keys() >= {"loss", "rmse", "val_loss"}
    for key, values in one["history"].items():
        np.testing.assert_allclose(mirrored["history"][key], values, rtol=RTOL, err_msg=key)


@pytest.mark.parametrize("case", ["full", "mini"])
def test_evaluate_and_predict_stream_and_equal_one_device(measured, case):
    result, (x, y, w), _ = measured
    one, mirrored = result["one"][case], result["mirrored"][case]
    theta = np.array(mirrored["weights"])
    residual = x @ theta[:-1] + theta[-1] - y
    loss, rmse = float(w @ residual**2) / len(x), np.sqrt(w @ residual**2 / w.sum())
    np.testing.assert_allclose(mirrored["evaluate"], [loss, rmse], rtol=RTOL)
    np.testing.assert_allclose(mirrored["evaluate"], one["evaluate"], rtol=RTOL)
    assert len(mirrored["predict"]) == len(x)  # every row, in file order
    np.testing.assert_allclose(mirrored["predict"], x @ theta[:-1] + theta[-1],
                               rtol=RTOL, atol=1e-5)
    np.testing.assert_allclose(mirrored["predict"], one["predict"], rtol=RTOL, atol=1e-6)


@pytest.mark.parametrize("case", ["shuffled", "distributed", "auto"])
def test_other_file_fits_equal_one_device(measured, case):
    result, (x, y, w), _ = measured
    one, mirrored = result["one"][case], result["mirrored"][case]
    np.testing.assert_allclose(mirrored["weights"], one["weights"], rtol=RTOL, atol=1e-6)
    np.testing.assert_allclose(mirrored["rate"], one["rate"], rtol=1e-6)
    for key, values in one["history"].items():
        np.testing.assert_allclose(mirrored["history"][key], values, rtol=RTOL, err_msg=key)
    if case == "distributed":  # one input pipeline: the batches of dataset_from_files
        theta, losses = _gradient_descent(x, y, w, batch_size=24, epochs=1, rate=0.1)
        np.testing.assert_allclose(mirrored["weights"], theta, rtol=RTOL, atol=1e-6)
        np.testing.assert_allclose(mirrored["history"]["loss"], losses, rtol=RTOL)
    if case == "shuffled":  # the seeded shuffle changed the batches
        # Epoch k reads pass k (Keras' build under a strategy reads no pass).
        assert mirrored["passes"] == one["passes"] == 2
        assert not np.allclose(one["weights"], result["one"]["mini"]["weights"], rtol=1e-3)


def test_standardization_adapted_on_the_files_equals_one_device(measured):
    result, (x, _, _), _ = measured
    one, mirrored = result["one"]["standardized"], result["mirrored"]["standardized"]
    np.testing.assert_allclose(mirrored["mean"], x.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mirrored["std"], x.std(axis=0), rtol=1e-4)
    for key in ("mean", "std", "history", "weights"):
        np.testing.assert_allclose(mirrored[key], one[key], rtol=RTOL, atol=1e-6, err_msg=key)


def test_least_squares_over_the_files_under_the_strategy_is_exact(measured):
    result, (x, y, w), _ = measured
    root = np.sqrt(w)
    design = root[:, None] * np.hstack([x, np.ones((len(x), 1))])
    expected = np.linalg.lstsq(design, root * y, rcond=None)[0]
    for name in ("one", "mirrored"):
        for key in ("least_squares", "sharded_least_squares"):
            np.testing.assert_allclose(result[name][key], expected, rtol=1e-9, err_msg=key)


def test_bad_data_raises_naming_file_row_and_column_before_any_step(measured):
    result, _, bad = measured
    for name in ("one", "mirrored"):
        error = result[name]["bad"]
        assert error is not None, name
        assert error["type"] == "DataFileError"
        assert (error["row"], error["column"]) == (13, "x1")
        assert bad in error["message"] and "'x1'" in error["message"]
        assert error["steps"] == 0 and error["weights"] == [0.0] * 4
