"""Exact least squares in one pass over CSV and Parquet files (issue 14, part 3).

`keras_linreg.least_squares(dataset_from_files(...))` and `ols(...)` on real files in
tmp_path, against the in-memory solver and `numpy.linalg.lstsq` / statsmodels on the
same float32 values (read back independently with `np.loadtxt` and pyarrow); and, in
child processes, peak RSS of the streamed solve as the file grows 8x.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keras_linreg
from keras_linreg.data import DataFileError, dataset_from_files
from keras_linreg.statistics import ols

_NAMES = ["a", "b", "c", "y", "w"]


def _values(n, seed=0):
    """`n` rows a, b, c, y, w as float32 values (held as float64): a feature of mean
    1e4 (the centring matters) and two correlated ones."""
    rng = np.random.default_rng(seed)
    a = rng.normal(1e4, 3.0, n)
    b = rng.normal(size=n)
    c = b + 0.01 * rng.normal(size=n)  # correlated with b: condition ~1e3
    x = np.column_stack([a, b, c])
    y = x @ [0.5, -2.0, 3.0] - 4e3 + rng.normal(0, 0.1, n)
    w = rng.uniform(0.5, 2.0, n)
    return np.column_stack([x, y, w]).astype(np.float32).astype(np.float64)


def _write_csv(path, values):
    lines = [",".join(_NAMES)] + [",".join(repr(float(v)) for v in row) for row in values]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _write_parquet(path, values, row_group_size=700):
    pq.write_table(
        pa.table({name: values[:, j] for j, name in enumerate(_NAMES)}), path,
        row_group_size=row_group_size,
    )
    return str(path)


def _lstsq(x, y, w=None):
    """NumPy's reference: lstsq on `sqrt(w)·[1, x]` in float64."""
    root = np.ones(len(y)) if w is None else np.sqrt(w)
    design = root[:, None] * np.column_stack([np.ones(len(y)), x])
    theta = np.linalg.lstsq(design, root * y, rcond=None)[0]
    return theta[1:], theta[0]


def _assert_relative(actual, expected, rtol):
    slope, intercept = actual
    reference = np.append(expected[0], expected[1])
    error = np.abs(np.append(slope, intercept) - reference) / np.abs(reference)
    assert error.max() < rtol, error


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same 5000 rows as two CSV files and as two Parquet files (700-row groups)."""
    folder = tmp_path_factory.mktemp("out_of_core")
    values = _values(5000)
    csv = [_write_csv(folder / f"part-{i}.csv", half)
           for i, half in enumerate(np.array_split(values, 2))]  # fmt: skip
    parquet = [_write_parquet(folder / f"part-{i}.parquet", half)
               for i, half in enumerate(np.array_split(values, 2))]  # fmt: skip
    # Independent read-back of the values the files hold.
    read_csv = np.vstack([np.loadtxt(p, delimiter=",", skiprows=1) for p in csv])
    read_parquet = np.vstack([
        np.column_stack([pq.read_table(p).column(n).to_numpy() for n in _NAMES])
        for p in parquet
    ])
    np.testing.assert_array_equal(read_csv, values)
    np.testing.assert_array_equal(read_parquet, values)
    return {"csv": csv, "parquet": parquet, "values": values}


@pytest.mark.parametrize("kind", ["csv", "parquet"])
@pytest.mark.parametrize("weighted", [False, True])
def test_least_squares_over_files_equals_the_in_memory_answer(files, kind, weighted):
    values = files["values"]
    x, y, w = values[:, :3], values[:, 3], values[:, 4] if weighted else None
    dataset = dataset_from_files(
        files[kind], target="y", features=["a", "b", "c"],
        sample_weight="w" if weighted else None, batch_size=512,
    )  # fmt: skip
    streamed = keras_linreg.least_squares(dataset)
    _assert_relative(streamed, keras_linreg.least_squares(x, y, w), 1e-10)
    _assert_relative(streamed, _lstsq(x, y, w), 1e-9)
    # Read in one pass, straight from the files (not through tf.data).
    assert dataset._keras_linreg_files.passes == 1
    # No intercept: the fit through the origin, against lstsq on x alone.
    slope, intercept = keras_linreg.least_squares(dataset, fit_intercept=False)
    root = np.ones(len(y)) if w is None else np.sqrt(w)
    reference = np.linalg.lstsq(root[:, None] * x, root * y, rcond=None)[0]
    assert intercept == 0.0
    np.testing.assert_allclose(slope, reference, rtol=1e-9)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_ols_over_files_equals_statsmodels(files, kind):
    import statsmodels.api as sm

    values = files["values"]
    x, y, w = values[:, :3], values[:, 3], values[:, 4]
    dataset = dataset_from_files(
        files[kind], target="y", features=["a", "b", "c"], sample_weight="w", batch_size=1000
    )
    result = ols(dataset)
    reference = sm.WLS(y, sm.add_constant(x), weights=w).fit()
    in_memory = ols(x, y, sample_weight=w)
    assert result.feature_names == ("a", "b", "c")  # the files' columns
    assert result.nobs == len(y)
    # The slopes, then the intercept (statsmodels' add_constant puts it first).
    order = [1, 2, 3, 0]
    np.testing.assert_allclose(result.params, in_memory.params, rtol=1e-10)
    np.testing.assert_allclose(result.params, reference.params[order], rtol=1e-8)
    np.testing.assert_allclose(result.bse, reference.bse[order], rtol=1e-7)
    assert result.rsquared == pytest.approx(reference.rsquared, rel=1e-9)
    assert result.ssr == pytest.approx(reference.ssr, rel=1e-7)


def test_bad_value_in_a_file_is_a_data_file_error(tmp_path):
    values = _values(300)
    path = tmp_path / "bad.csv"
    _write_csv(path, values)
    lines = path.read_text().splitlines()
    lines[201] = lines[201].replace(lines[201].split(",")[1], "oops", 1)  # data row 201
    path.write_text("\n".join(lines) + "\n")
    dataset = dataset_from_files(str(path), target="y", features=["a", "b", "c"], batch_size=64)
    with pytest.raises(DataFileError, match="data row 201") as raised:
        keras_linreg.least_squares(dataset)
    assert (raised.value.row, raised.value.column, raised.value.value) == (201, "b", "oops")
    assert raised.value.problem == "is not a number"


# --------------------------------------------------------------- memory
# The child only imports keras_linreg and streams the solve: its peak RSS is the
# import's or the solve's, whichever is larger. The files are written here, in the
# test's own process, so writing them counts in no child's peak. The peak is the
# child's own, VmHWM, which starts anew at `exec`; `ru_maxrss` does not (it keeps
# the RSS the forked child shared with this process before `exec`, so a test
# process grown large by earlier tests or by writing the files would set both peaks).
_PEAK = textwrap.dedent(
    """
    def peak_kib():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmHWM in /proc/self/status")
    """
)

_CHILD = _PEAK + textwrap.dedent(
    """
    import json, sys
    import keras_linreg
    from keras_linreg.data import dataset_from_files

    slope, intercept = keras_linreg.least_squares(dataset_from_files(sys.argv[1], target="y"))
    print(json.dumps({"peak_kib": peak_kib(), "slope": list(slope), "intercept": intercept}))
    """
)

# The same for one epoch of `fit`, batch by batch (batches of 65 536 rows).
_FIT_CHILD = _PEAK + textwrap.dedent(
    """
    import json, sys
    import keras_linreg
    from keras_linreg.data import dataset_from_files

    model = keras_linreg.LinearRegression(learning_rate=0.05)
    model.compile()
    history = model.fit(dataset_from_files(sys.argv[1], target="y"), epochs=1, verbose=0)
    print(json.dumps({"peak_kib": peak_kib(), "steps": int(model.optimizer.iterations.numpy()),
                      "loss": history.history["loss"][-1]}))
    """
)


def _write_big_parquet(path, rows):
    """`rows` rows of y = x·[1, -2, 0.5, 3] + 1 + N(0, 0.1), float32, in row groups."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.float32()) for name in "abcdy"])
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(path, schema) as writer:  # written in chunks: bounded too
        for start in range(0, rows, 262_144):
            m = min(262_144, rows - start)
            x = rng.normal(size=(m, 4)).astype(np.float32)
            y = x @ np.float32([1.0, -2.0, 0.5, 3.0]) + 1.0 + rng.normal(0, 0.1, m)
            columns = [*x.T, y.astype(np.float32)]
            table = pa.table(dict(zip("abcdy", columns, strict=True)), schema=schema)
            writer.write_table(table, row_group_size=65536)


def _child_peaks(tmp_path, sizes, child=_CHILD):
    """Writes a file per row count, then streams each in its own child, concurrently."""
    paths = [tmp_path / f"rows-{rows}.parquet" for rows in sizes]
    for path, rows in zip(paths, sizes, strict=True):
        _write_big_parquet(path, rows)
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", child, str(path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        for path in paths
    ]
    reports = []
    for child in children:
        out, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


@pytest.mark.slow
def test_streamed_least_squares_peak_rss_grows_under_20_percent_for_8x_rows(tmp_path):
    rows = 16_000_000
    small, large = _child_peaks(tmp_path, [rows // 8, rows])
    for report in (small, large):  # the solve is right, on noise of 0.1
        np.testing.assert_allclose(report["slope"], [1.0, -2.0, 0.5, 3.0], atol=0.01)
        assert report["intercept"] == pytest.approx(1.0, abs=0.01)
    # The test can fail: the large file's 5 columns as float64 (what a solver holding
    # the design would copy, at least once) are more than 20% of the small peak.
    assert rows * 5 * 8 / 1024 > 0.2 * small["peak_kib"], small
    growth = large["peak_kib"] / small["peak_kib"] - 1
    assert growth < 0.20, (small, large)


@pytest.mark.slow
def test_streamed_fit_peak_rss_grows_under_20_percent_for_8x_rows(tmp_path):
    rows = 12_000_000
    small, large = _child_peaks(tmp_path, [rows // 8, rows], child=_FIT_CHILD)
    for report, n in ((small, rows // 8), (large, rows)):
        assert report["steps"] == -(-n // 65536)  # one whole epoch, batch by batch
        assert np.isfinite(report["loss"])
    # The test can fail: the large file's 5 columns as float32 (what a fit holding the
    # data in memory, e.g. as tensors, would keep at least once) are more than 20% of
    # the small peak.
    assert rows * 5 * 4 / 1024 > 0.2 * small["peak_kib"], small
    growth = large["peak_kib"] / small["peak_kib"] - 1
    assert growth < 0.20, (small, large)
