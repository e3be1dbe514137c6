"""`keras-linreg train`/`predict` on CSV, CSV.GZ and Parquet files (issue 14, part 4).

In-process through `keras_linreg_cli.main(argv)`, on real files in tmp_path. References
are independent: `numpy.linalg.lstsq` for the optimum, `csv`/pyarrow to read outputs
back, NumPy float32 for predictions.
"""

import csv
import gzip
import io
import os
import re

import keras
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import keras_linreg
from keras_linreg_cli import main
from keras_linreg_cli.files import DataError, expand, parse_byte_size


def _run(capfd, *args):
    capfd.readouterr()
    status = main([str(arg) for arg in args])
    out, err = capfd.readouterr()
    return status, out, err


def _report(out):
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line}


def _rows(n, seed):
    """y = 2a - 3b + 1 + N(0, 0.01) as float32 values, and a text column."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(2.0, 0.5, size=n)
    y = 2 * a - 3 * b + 1 + rng.normal(0, 0.01, n)
    values = np.c_[a, b, y].astype(np.float32).astype(np.float64)
    return [f"r{seed}-{i}" for i in range(n)], values


def _write_csv(path, ids, values, gz=False):
    lines = ["id,a,b,y"] + [
        f"{i}," + ",".join(repr(float(v)) for v in row)
        for i, row in zip(ids, values, strict=True)
    ]
    text = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt") as stream:
            stream.write(text)
    else:
        path.write_text(text)
    return path


def _write_parquet(path, ids, values):
    table = pa.table({"id": ids, "a": values[:, 0], "b": values[:, 1], "y": values[:, 2]})
    pq.write_table(table, path, row_group_size=64)
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """300 rows in three files: CSV, CSV.GZ and Parquet."""
    folder = tmp_path_factory.mktemp("files")
    parts = [_rows(100, seed) for seed in range(3)]
    paths = [
        _write_csv(folder / "part-0.csv", *parts[0]),
        _write_csv(folder / "part-1.csv.gz", *parts[1], gz=True),
        _write_parquet(folder / "part-2.parquet", *parts[2]),
    ]
    values = np.vstack([values for _, values in parts])
    return folder, paths, values


def _lstsq(values):
    design = np.c_[values[:, :2], np.ones(len(values))]
    return np.linalg.lstsq(design, values[:, 2], rcond=None)[0]


# ------------------------------------------------------------ arguments
def test_expand_and_byte_sizes(shards, tmp_path):
    folder, paths, _ = shards
    assert expand([str(folder / "part-*")]) == [str(p) for p in paths]  # sorted glob
    assert expand([str(paths[2]), str(paths[0])]) == [str(paths[2]), str(paths[0])]
    (tmp_path / "notes.txt").write_text("x")
    for items, message in [
        ([str(folder / "nope-*.csv")], "no file matches"),
        ([str(folder / "nope.csv")], "no such file"),
        ([str(folder)], "is a directory"),
        ([str(tmp_path / "notes.txt")], "expected a .csv, .csv.gz or .parquet file"),
    ]:
        with pytest.raises(DataError, match=message):
            expand(items)
    assert parse_byte_size("1GB") == 10**9
    assert parse_byte_size("2GiB") == 2 * 2**30
    assert parse_byte_size("1.5 mb") == 1_500_000
    assert parse_byte_size("0") == 0


def test_a_bad_memory_budget_is_a_usage_error(shards, capfd):
    _, paths, _ = shards
    status, _, err = _run(capfd, "train", paths[0], "--target", "y", "--memory-budget", "lots")
    assert status == 2 and "expected a size such as 1GB" in err


# ---------------------------------------------------------------- train
@pytest.mark.parametrize("budget", ["1GB", "0"])  # in memory, and streamed
def test_train_on_mixed_files_reports_least_squares(shards, tmp_path, capfd, budget):
    folder, paths, values = shards
    saved = tmp_path / "m.keras"
    status, out, err = _run(
        capfd, "train", folder / "part-*", "--target", "y", "--learning-rate", 0.5,
        "--epochs", 300, "--batch-size", 300,  # full batch, both ways
        "--no-log", "--quiet", "--save", saved,
        "--memory-budget", budget,
    )  # fmt: skip
    assert status == 0, err
    reference = _lstsq(values)
    table = _report(out)
    for label, expected in zip(["slope[a]", "slope[b]", "intercept"], reference, strict=True):
        model, optimum, gap = map(float, table[label][:3])
        assert optimum == pytest.approx(expected, rel=5e-6)  # printed to 6 digits
        assert model == pytest.approx(expected, abs=2e-3)
    assert float(table["epochs"][0]) < 300  # --tol stopped it at the optimum
    model = keras.saving.load_model(saved)
    assert list(model.feature_names) == ["a", "b"]  # the text column is no feature


def test_streamed_train_refuses_in_memory_options(shards, tmp_path, capfd):
    _, paths, _ = shards
    saved = tmp_path / "m.keras"
    for extra, message in [
        (["--learning-rate", "0.1", "--validation-split", "0.2"], "--validation-split"),
        (["--learning-rate", "0.1", "--plot", tmp_path / "p.png"], "--plot"),
        (["--learning-rate", "0.1", "--l2", "0.1"], "--l1/--l2"),
    ]:
        status, _, err = _run(
            capfd, "train", paths[0], "--target", "y", "--memory-budget", "0", "--no-log",
            "--save", saved, *extra,
        )  # fmt: skip
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1 and message in lines[0], err
        assert "over --memory-budget" in lines[0] and "Traceback" not in err
    assert os.listdir(tmp_path) == []


def _bad_csv(tmp_path, cell):
    ids, values = _rows(200, 7)
    path = _write_csv(tmp_path / "bad.csv", ids, values)
    lines = path.read_text().splitlines()
    fields = lines[150].split(",")
    fields[2] = cell  # column b of data row 150: line (row) 151 of the file
    lines[150] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("budget", ["1GB", "0"])
@pytest.mark.parametrize("cell, message", [
    ("oops", "expected a number, received 'oops'"),
    ("inf", "expected a finite number"),
    ("", "expected a number, received a missing value"),
    ("1e39", "expected a number within float32's finite range"),
])  # fmt: skip
def test_a_bad_value_is_one_line_naming_file_row_and_column(
    tmp_path, capfd, budget, cell, message
):
    path = _bad_csv(tmp_path, cell)
    saved = tmp_path / "m.keras"
    status, out, err = _run(
        capfd, "train", path, "--target", "y", "--learning-rate", 0.1, "--epochs", 2,
        "--no-log", "--quiet", "--save", saved, "--memory-budget", budget,
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert f"{path}, row 151, column 'b': {message}" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["bad.csv"]


def test_a_ragged_row_is_named(tmp_path, capfd):
    path = tmp_path / "ragged.csv"
    path.write_text("a,y\n1,2\n3\n4,5\n")
    status, _, err = _run(capfd, "train", path, "--target", "y", "--no-log")
    assert status == 2
    assert "ragged row" in err and "data row 2" in err and "expected 2 fields, found 1" in err


# -------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    model = keras_linreg.LinearRegression(feature_names=["a", "b"])
    model.compile()
    model.slope.assign([2.0, -3.0])
    model.intercept.assign(1.0)
    path = tmp_path_factory.mktemp("model") / "m.keras"
    model.save(path)
    return path


def _expected(values):
    a, b = values[:, 0].astype(np.float32), values[:, 1].astype(np.float32)
    return np.float32(2) * a + np.float32(-3) * b + np.float32(1)


def test_predict_passes_text_through_and_replaces_prediction(tmp_path, model_path, capfd):
    path = tmp_path / "in.csv"
    path.write_text(
        'note,a,b,prediction\n"has, comma",1.50,2,old\n"say ""hi""",-1,0.25,old\n'
        "plain,0,0,old\n"
    )
    status, out, err = _run(capfd, "predict", model_path, path)
    assert status == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["note", "a", "b", "prediction"]
    assert [row[:3] for row in rows[1:]] == [
        ["has, comma", "1.50", "2"], ['say "hi"', "-1", "0.25"], ["plain", "0", "0"]
    ]  # the input's text, as written
    expected = _expected(np.array([[1.5, 2], [-1, 0.25], [0, 0]]))
    assert [row[3] for row in rows[1:]] == [str(v) for v in expected]  # shortest float32


@pytest.mark.parametrize("budget", ["1GB", "0"])
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet"])
def test_predict_on_files_to_each_format(shards, model_path, tmp_path, capfd, budget, suffix):
    folder, paths, values = shards
    output = tmp_path / f"out{suffix}"
    status, _, err = _run(
        capfd, "predict", model_path, folder / "part-*", "--output", output,
        "--memory-budget", budget,
    )  # fmt: skip
    assert status == 0, err
    if suffix == ".parquet":
        table = pq.read_table(output)
        assert table.column_names == ["id", "a", "b", "y", "prediction"]
        assert table.schema.field("prediction").type == pa.float32()
        predictions = table.column("prediction").to_numpy()
        ids = table.column("id").to_pylist()
    else:
        opener = gzip.open if suffix == ".csv.gz" else open
        with opener(output, "rt", newline="") as stream:
            rows = list(csv.reader(stream))
        assert rows[0] == ["id", "a", "b", "y", "prediction"]
        predictions = np.array([row[-1] for row in rows[1:]]).astype(np.float32)
        ids = [row[0] for row in rows[1:]]
    assert ids == [f"r{seed}-{i}" for seed in range(3) for i in range(100)]
    np.testing.assert_array_equal(predictions, _expected(values))


def test_predict_streamed_to_stdout_equals_in_memory(shards, model_path, capfd):
    _, paths, _ = shards
    outputs = [_run(capfd, "predict", model_path, *paths, "--memory-budget", budget)
               for budget in ("1GB", "0")]  # fmt: skip
    assert outputs[0][0] == outputs[1][0] == 0
    assert outputs[0][1] == outputs[1][1]


def test_predict_bad_value_leaves_no_output(tmp_path, model_path, capfd):
    path = _bad_csv(tmp_path, "oops")
    output = tmp_path / "out.parquet"
    status, out, err = _run(capfd, "predict", model_path, path, "--output", output)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "Traceback" not in err
    assert f"{path}, row 151, column 'b': expected a number, received 'oops'" in lines[0]
    assert sorted(os.listdir(tmp_path)) == ["bad.csv"]


@pytest.mark.parametrize("budget", ["1GB", "0"])  # in memory, and streamed
def test_the_json_report_is_written_both_ways(shards, tmp_path, capfd, budget):
    import json

    import statsmodels.api as sm

    folder, _, values = shards
    report, saved = tmp_path / "report.json", tmp_path / "m.keras"
    status, out, err = _run(
        capfd, "train", folder / "part-*", "--target", "y", "--learning-rate", 0.5,
        "--batch-size", 300, "--no-log", "--quiet", "--memory-budget", budget,
        "--report", report, "--save", saved,
    )  # fmt: skip
    assert status == 0, err
    assert f"Report: {report}" in out
    written = json.loads(report.read_text())
    reference = sm.OLS(values[:, 2], sm.add_constant(values[:, :2], prepend=False)).fit()
    assert written["nobs"] == 300
    for i, entry in enumerate(written["parameters"]):
        assert entry["optimum"] == pytest.approx(reference.params[i], rel=1e-9)
        assert entry["se"] == pytest.approx(reference.bse[i], rel=1e-8)
        assert entry["p"] == pytest.approx(reference.pvalues[i], rel=1e-6, abs=1e-300)
    assert written["rsquared"] == pytest.approx(reference.rsquared, rel=1e-10)
    # `loss` is the MSE at the final parameters (not the last epoch's, before its update).
    slope, intercept = keras.saving.load_model(saved).get_parameters()
    residual = values[:, :2] @ slope + intercept - values[:, 2]
    assert written["loss"] == pytest.approx(np.mean(residual**2), rel=1e-9)


def test_a_one_row_file_is_refused_when_streamed_too(tmp_path, capfd):
    one = tmp_path / "one.csv"
    one.write_text("a,y\n1,2\n")
    status, out, err = _run(capfd, "train", one, "--target", "y", "--no-log", "--quiet",
                            "--memory-budget", "0", "--learning-rate", "0.1")  # fmt: skip
    assert status == 2, out
    assert "expected at least 2 data rows, received 1" in err and "Traceback" not in err


def test_streamed_train_piped_prints_rows_per_second_per_epoch(shards, capfd):
    folder, _, values = shards
    status, out, err = _run(
        capfd, "train", folder / "part-*", "--target", "y", "--learning-rate", 0.1,
        "--epochs", 3, "--tol", 0, "--batch-size", 64, "--no-log", "--memory-budget", 0,
    )  # fmt: skip
    assert status == 0, err
    lines = [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]  # as Keras' lines
    for line in lines:  # e.g. "Epoch 1/3 - 300 rows in 0.0512 s (5.86k rows/s) - loss: 0.52"
        match = re.fullmatch(
            r"Epoch \d/3 - (\d+) rows in ([\d.]+) s \(([\d.]+)([kMG]?) rows/s\) - loss: (\S+)",
            line,
        )
        assert match, line
        assert int(match[1]) == len(values)  # every row of the three files, each epoch
        rate = float(match[3]) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}[match[4]]
        assert rate == pytest.approx(len(values) / float(match[2]), rel=0.02)  # 3 digits
        assert np.isfinite(float(match[5]))
    assert "\r" not in out and "\x1b[" not in out  # no progress bar on a pipe
