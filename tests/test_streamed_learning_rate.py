"""The Hessian and `learning_rate="auto"` over batches and files (issue 14).

`keras_linreg.closed_form.hessian_eigenvalues` / `max_stable_learning_rate` on a finite iterable
of batches and on `dataset_from_files` datasets, against the in-memory functions on
the same float32 values and against NumPy's `eigvalsh` of `(2/n) Zᵀ W Z` in float64;
`LinearRegression(learning_rate="auto")` fitting on files, against the same model
fitting on the arrays; and `keras-linreg train` streaming with the default
`--learning-rate auto`.
"""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

import keras_linreg
from keras_linreg import closed_form, divergence
from keras_linreg.data import dataset_from_files
from keras_linreg_cli import main

_NAMES = ["a", "b", "c", "y", "w"]


def _values(n=1500, seed=0):
    """Rows a, b, c, y, w as float32 values (held as float64): a feature of mean 50
    (an uncentred Hessian) and two correlated ones."""
    rng = np.random.default_rng(seed)
    a = rng.normal(50.0, 3.0, n)
    b = rng.normal(size=n)
    c = b + 0.1 * rng.normal(size=n)
    y = 0.5 * a - 2.0 * b + 3.0 * c + 1.0 + rng.normal(0, 0.1, n)
    w = rng.uniform(0.5, 2.0, n)
    return np.column_stack([a, b, c, y, w]).astype(np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same 1500 rows as a CSV file and as a Parquet file (row groups of 400)."""
    folder = tmp_path_factory.mktemp("rate")
    values = _values()
    csv = folder / "data.csv"
    lines = [",".join(_NAMES)] + [",".join(repr(float(v)) for v in row) for row in values]
    csv.write_text("\n".join(lines) + "\n")
    parquet = folder / "data.parquet"
    pq.write_table(pa.table({n: values[:, j] for j, n in enumerate(_NAMES)}), parquet,
                   row_group_size=400)  # fmt: skip
    return {"csv": str(csv), "parquet": str(parquet)}, values


def _numpy_row_curvature(x, w=None, *, fit_intercept=True, l2=0.0):
    """NumPy's max_i 2·w_i·|z_i|² + 2·l2."""
    z = np.column_stack([x, np.ones(len(x))]) if fit_intercept else x
    w = np.ones(len(x)) if w is None else w
    return float(np.max(2.0 * w * np.sum(z * z, axis=1)) + 2.0 * l2)


def _numpy_auto_rate(eigenvalue, row_curvature, b, n):
    """learning_rate="auto"'s rule: 1/λ full batch, b / (c + (b - 1)·λ) for mini-batches."""
    if b >= n:
        return 1.0 / eigenvalue
    return b / (max(row_curvature, eigenvalue) + (b - 1) * eigenvalue)


def _numpy_eigenvalues(x, w=None, *, fit_intercept=True, l2=0.0):
    """NumPy's reference: eigvalsh of (2/n) Zᵀ W Z (+ 2·l2 on the slope) in float64."""
    z = np.column_stack([x, np.ones(len(x))]) if fit_intercept else x
    w = np.ones(len(x)) if w is None else w
    hessian = (2.0 / len(x)) * z.T @ (w[:, None] * z)
    k = x.shape[1]
    hessian[np.arange(k), np.arange(k)] += 2.0 * l2
    return np.linalg.eigvalsh(hessian)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("weighted, fit_intercept, l2", [
    (False, True, 0.0), (True, True, 0.0), (True, False, 0.25),
])  # fmt: skip
def test_the_hessian_of_a_file_dataset_equals_the_in_memory_one(
    files, kind, weighted, fit_intercept, l2
):
    paths, values = files
    x, w = values[:, :3], values[:, 4] if weighted else None
    data = dataset_from_files(paths[kind], target="y", features=["a", "b", "c"],
                              sample_weight="w" if weighted else None, batch_size=256)  # fmt: skip
    streamed = closed_form.hessian_eigenvalues(data, fit_intercept=fit_intercept, l2=l2)
    in_memory = closed_form.hessian_eigenvalues(
        x.astype(np.float32), None if w is None else w.astype(np.float32),
        fit_intercept=fit_intercept, l2=l2,
    )  # fmt: skip
    np.testing.assert_allclose(streamed, in_memory, rtol=1e-10)
    np.testing.assert_allclose(
        streamed, _numpy_eigenvalues(x, w, fit_intercept=fit_intercept, l2=l2), rtol=1e-9
    )
    rate = keras_linreg.max_stable_learning_rate(data, fit_intercept=fit_intercept, l2=l2)
    assert rate == pytest.approx(2.0 / in_memory[-1], rel=1e-10)
    row = closed_form.max_row_curvature(data, fit_intercept=fit_intercept, l2=l2)
    assert row == pytest.approx(closed_form.max_row_curvature(
        x.astype(np.float32), None if w is None else w.astype(np.float32),
        fit_intercept=fit_intercept, l2=l2,
    ), rel=1e-12)  # fmt: skip
    assert row == pytest.approx(_numpy_row_curvature(x, w, fit_intercept=fit_intercept, l2=l2),
                                rel=1e-12)  # fmt: skip


def test_the_hessian_of_batches_and_its_arguments(files):
    _, values = files
    x, y, w = (values[:, :3].astype(np.float32), values[:, 3].astype(np.float32),
               values[:, 4].astype(np.float32))  # fmt: skip
    expected = _numpy_eigenvalues(values[:, :3], values[:, 4])

    def batches():  # a generator of uneven (x, y, w) batches
        for start, stop in [(0, 100), (100, 1100), (1100, 1500)]:
            yield x[start:stop], y[start:stop], w[start:stop]

    np.testing.assert_allclose(closed_form.hessian_eigenvalues(batches()), expected,
                               rtol=1e-9)  # fmt: skip
    dataset = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(512)
    np.testing.assert_allclose(closed_form.hessian_eigenvalues(dataset), expected, rtol=1e-9)
    # `design` applies per batch: here Z = 2·[x, 1], so H is 4 times the default's.
    scaled = closed_form.hessian_eigenvalues(
        batches(), design=lambda rows: 2.0 * np.column_stack([rows, np.ones(len(rows))])
    )
    np.testing.assert_allclose(scaled, 4.0 * expected, rtol=1e-9)
    # A list is rows, as before (not batches).
    rows = [list(map(float, row)) for row in x[:50]]
    expected = _numpy_eigenvalues(x[:50].astype(np.float64))
    np.testing.assert_allclose(closed_form.hessian_eigenvalues(rows), expected, rtol=1e-9)
    with pytest.raises(ValueError, match="weights inside the batches"):
        closed_form.hessian_eigenvalues(batches(), sample_weight=w)
    with pytest.raises(ValueError, match="empty iterable"):
        keras_linreg.max_stable_learning_rate(iter([]))


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("batch_size", [500, 4096])  # mini-batches, full batch
def test_auto_learning_rate_on_files_equals_the_in_memory_rate(files, kind, batch_size):
    paths, values = files
    data = dataset_from_files(paths[kind], target="y", features=["a", "b", "c"],
                              sample_weight="w", batch_size=batch_size)  # fmt: skip
    x, y, w = (values[:, :3].astype(np.float32), values[:, 3].astype(np.float32),
               values[:, 4].astype(np.float32))  # fmt: skip
    on_files = keras_linreg.LinearRegression(learning_rate="auto")
    on_files.compile()
    on_files.fit(data, epochs=1, verbose=0)
    on_arrays = keras_linreg.LinearRegression(learning_rate="auto")
    on_arrays.compile()
    on_arrays.fit(x, y, sample_weight=w, batch_size=batch_size, epochs=1, verbose=0)
    # The float64 rates (the optimizer holds the rate in float32).
    from_files = divergence.auto_learning_rate(on_files, data, {})
    from_arrays = divergence.auto_learning_rate(
        on_arrays, x, {"sample_weight": w, "batch_size": batch_size}
    )
    assert from_files == pytest.approx(from_arrays, rel=1e-10)
    x64, w64 = values[:, :3], values[:, 4]
    top, row = _numpy_eigenvalues(x64, w64)[-1], _numpy_row_curvature(x64, w64)
    expected = _numpy_auto_rate(top, row, batch_size, len(values))
    assert from_files == pytest.approx(expected, rel=1e-9)
    assert on_files.learning_rate == pytest.approx(from_files, rel=1e-6)
    assert on_files.learning_rate == pytest.approx(on_arrays.learning_rate, rel=1e-6)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_auto_learning_rate_on_files_standardized_uses_the_standardized_design(files, kind):
    """The statistics are adapted first, then the rate is the standardized design's."""
    paths, values = files
    data = dataset_from_files(paths[kind], target="y", features=["a", "b", "c"], batch_size=256)
    x, y = values[:, :3].astype(np.float32), values[:, 3].astype(np.float32)
    on_files = keras_linreg.LinearRegression(learning_rate="auto", standardize=True)
    on_files.compile()
    on_files.fit(data, epochs=1, verbose=0)  # adapts on the files, then the rate
    # The same statistics (adapted on the same files), then the in-memory rate.
    on_arrays = keras_linreg.LinearRegression(learning_rate="auto", standardize=True)
    on_arrays.adapt(data)
    on_arrays.compile()
    on_arrays.fit(x, y, batch_size=256, epochs=1, verbose=0)
    from_files = divergence.auto_learning_rate(on_files, data, {})
    assert from_files == pytest.approx(
        divergence.auto_learning_rate(on_arrays, x, {"batch_size": 256}), rel=1e-10
    )
    assert on_files.learning_rate == pytest.approx(from_files, rel=1e-6)
    # NumPy's standardized design (float64 statistics of the same rows): 1e-5, the
    # model standardizing in float32.
    x64 = values[:, :3]
    z = (x64 - x64.mean(axis=0)) / x64.std(axis=0)
    expected = _numpy_auto_rate(_numpy_eigenvalues(z)[-1], _numpy_row_curvature(z), 256,
                                len(values))  # fmt: skip
    assert on_files.learning_rate == pytest.approx(expected, rel=1e-5)


def test_auto_learning_rate_on_more_rows_than_a_chunk(tmp_path):
    """100 000 rows, standardized: the Jacobian's chunks of 65 536 rows (forward mode,
    linear in the rows), in memory and from a file, against NumPy's rule."""
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(100_000, 3)) * [1.0, 5.0, 0.2] + [3.0, -1.0, 0.0]).astype(np.float32)
    y = (x @ np.float32([1.0, 2.0, -3.0]) + 0.5).astype(np.float32)
    path = tmp_path / "big.parquet"
    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y}), path,
                   row_group_size=30_000)  # fmt: skip
    x64 = x.astype(np.float64)
    z = (x64 - x64.mean(axis=0)) / x64.std(axis=0)
    expected = 1.0 / _numpy_eigenvalues(z)[-1]  # full batch
    in_memory = keras_linreg.LinearRegression(learning_rate="auto", standardize=True)
    in_memory.compile()
    in_memory.fit(x, y, batch_size=len(y), epochs=1, verbose=0)
    assert in_memory.learning_rate == pytest.approx(expected, rel=1e-5)
    on_file = keras_linreg.LinearRegression(learning_rate="auto", standardize=True)
    on_file.compile()
    on_file.fit(dataset_from_files(str(path), target="y", batch_size=len(y)), epochs=1,
                verbose=0)  # fmt: skip
    assert on_file.learning_rate == pytest.approx(expected, rel=1e-5)


def test_streamed_train_with_the_default_auto_rate(files, tmp_path, capfd):
    paths, values = files
    capfd.readouterr()
    status = main(["train", paths["parquet"], "--target", "y", "--features", "a,b",
                   "--memory-budget", "0", "--standardize", "--epochs", "200",
                   "--no-log", "--quiet"])  # fmt: skip
    out, err = capfd.readouterr()
    assert status == 0, err
    assert "Traceback" not in err
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line}
    design = np.column_stack([values[:, :2], np.ones(len(values))])
    reference = np.linalg.lstsq(design, values[:, 3], rcond=None)[0]
    labels = ["slope[a]", "slope[b]", "intercept"]
    for label, expected in zip(labels, reference, strict=True):
        fitted = float(table[label][0])
        assert fitted == pytest.approx(expected, rel=1e-2, abs=1e-2)
