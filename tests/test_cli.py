"""`keras-linreg`'s commands, in-process through `keras_linreg_cli.main(argv)`.

Two tests run the installed console script in a real process: one for `--help`
(exit 0, TensorFlow never imported) and one for a bad input found after
TensorFlow started (exit 2, one line on stderr, no traceback).
"""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_linreg
from keras_linreg import plotting
from keras_linreg_cli import main
from keras_linreg_cli.convergence_table import gradient_descent_epochs
from keras_linreg_cli.demo import tutorial_data

_SCRIPT = os.path.join(os.path.dirname(sys.executable), "keras-linreg")


def _run(capfd, *args):
    """`main(args)` in this process: (exit status, stdout, stderr), file descriptors included."""
    capfd.readouterr()
    status = main([str(arg) for arg in args])
    out, err = capfd.readouterr()
    return status, out, err


def _run_script(*args, env=None, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow", **(env or {})}
    return subprocess.run(
        [_SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env
    )


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _report(out):
    """The report's rows by their first word: `slope[a]`, `intercept`, `epochs`, ..."""
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line}


@pytest.fixture(scope="module")
def relation_csv(tmp_path_factory):
    """y = 2a - 3b + 1 + N(0, 0.01), with a text column the CLI must pass through."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=200), rng.normal(2.0, 0.5, size=200)
    y = 2 * a - 3 * b + 1 + rng.normal(0, 0.01, 200)
    path = tmp_path_factory.mktemp("data") / "relation.csv"
    rows = [[f"r{i}", a[i], b[i], y[i]] for i in range(200)]
    return _write_csv(path, ["id", "a", "b", "y"], rows), np.c_[a, b], y


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A small `.keras` model trained on feature names `a` and `b` (in-process)."""
    model = keras_linreg.LinearRegression(feature_names=["a", "b"])
    model.compile()
    path = tmp_path_factory.mktemp("model") / "ab.keras"
    model.save(path)
    return path


# ------------------------------------------------------------------ --help
def test_help_lists_examples(capfd):
    status, out, err = _run(capfd, "train", "--help")
    assert status == 0
    assert "examples:" in out and "--target COL" in out
    assert "tensorflow" not in (out + err).lower()
    status, out, _ = _run(capfd, "demo", "--help")
    assert status == 0 and "--table" in out and "keras-linreg demo --table" in out


def test_help_is_instant_in_a_real_process():
    """The console script answers `--help` with exit 0 and never imports TensorFlow."""
    result = _run_script("train", "--help", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr
    assert "examples:" in result.stdout and "--target COL" in result.stdout
    assert "tensorflow" not in result.stdout.lower()
    # PYTHONPROFILEIMPORTTIME lists every imported module on stderr, one a line.
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "keras_linreg_cli" in imported and "argparse" in imported  # the listing works
    assert not {name for name in imported if name.split(".")[0] in ("tensorflow", "keras")}
    assert "keras_linreg" not in imported


# ------------------------------------------------------------------- train
def test_train_export_predict_round_trip(relation_csv, tmp_path, capfd):
    path, x, y = relation_csv
    export, saved, plot = tmp_path / "model" / "1", tmp_path / "model.keras", tmp_path / "fit.png"
    status, out, err = _run(
        capfd, "train", path, "--target", "y", "--epochs", 60, "--learning-rate", 0.5,
        "--standardize", "--log-dir", tmp_path / "logs", "--export", export, "--save", saved,
        "--plot", plot, "--quiet",
    )  # fmt: skip
    assert status == 0, err
    # The summary names each slope by its column, beside least squares.
    slope, intercept = keras_linreg.least_squares(x, y)
    table = _report(out)
    np.testing.assert_allclose(float(table["slope[a]"][0]), slope[0], rtol=1e-5)
    np.testing.assert_allclose(float(table["slope[b]"][1]), slope[1], rtol=1e-5)
    np.testing.assert_allclose(float(table["intercept"][1]), intercept, rtol=1e-5)
    assert "R²" in out
    assert export.is_dir() and saved.is_file() and plot.stat().st_size > 10_000
    assert any((tmp_path / "logs").rglob("events.out.tfevents.*"))

    new_rows = [["p0", 0.5, 1.0, 0.0], ["p1", -1.0, 2.5, 0.0]]
    inputs = _write_csv(tmp_path / "new.csv", ["id", "b", "a", "y"], new_rows)  # columns moved
    expected = [2 * 1.0 - 3 * 0.5 + 1, 2 * 2.5 - 3 * -1.0 + 1]
    for model_path in (export, saved):
        status, out, err = _run(capfd, "predict", model_path, inputs)
        assert status == 0, err
        rows = list(csv.reader(out.splitlines()))
        assert rows[0] == ["id", "b", "a", "y", "prediction"]
        assert [row[0] for row in rows[1:]] == ["p0", "p1"]
        np.testing.assert_allclose([float(row[-1]) for row in rows[1:]], expected, atol=0.02)

    output = tmp_path / "predictions.csv"
    assert _run(capfd, "predict", saved, inputs, "--output", output)[0] == 0
    assert output.read_text().splitlines()[0] == "id,b,a,y,prediction"


def test_a_fractional_validation_split_reports_on_the_rows_keras_trained_on(
    tmp_path, capfd, monkeypatch
):
    """10 rows, --validation-split 0.25: Keras trains on floor(10 · 0.75) = 7 rows.

    Row 8 (the first validation row) is an outlier: a report that counted it
    (10 - int(2.5) = 8 rows) would put least squares far from the model.
    """
    x = np.arange(10.0)
    y = 2.0 * x + 1.0 + np.array([0.1, -0.2, 0.15, 0.0, -0.1, 0.2, -0.05, 0.0, 0.1, -0.1])
    y[7] += 40.0
    path = _write_csv(tmp_path / "d.csv", ["x", "y"], np.c_[x, y].tolist())
    plotted = []

    def recording_plot_fit(path, x, y, y_pred, *args, **kwargs):
        plotted.append((np.array(x), np.array(y), np.array(y_pred)))
        return real_plot_fit(path, x, y, y_pred, *args, **kwargs)

    real_plot_fit = plotting.plot_fit
    monkeypatch.setattr(plotting, "plot_fit", recording_plot_fit)
    status, out, err = _run(
        capfd, "train", path, "--target", "y", "--validation-split", 0.25, "--standardize",
        "--learning-rate", 0.5, "--epochs", 30, "--quiet", "--log-dir", tmp_path / "logs",
        "--plot", tmp_path / "fit.png",
    )  # fmt: skip
    assert status == 0, err

    design = np.c_[x, np.ones(10)]
    (slope7, intercept7), *_ = np.linalg.lstsq(design[:7], y[:7], rcond=None)
    (slope8, intercept8), *_ = np.linalg.lstsq(design[:8], y[:8], rcond=None)
    table = _report(out)
    model_slope, optimum_slope, slope_gap = map(float, table["slope[x]"][:3])
    model_intercept, optimum_intercept, intercept_gap = map(float, table["intercept"][:3])
    np.testing.assert_allclose([optimum_slope, optimum_intercept], [slope7, intercept7], rtol=1e-5)
    assert abs(optimum_slope - slope8) > 1.0  # the 8-row optimum is far away: the test can fail
    # A converged model: the gap to the 7-row optimum is ~0 (float32 training).
    assert slope_gap < 1e-3 and intercept_gap < 1e-3
    np.testing.assert_allclose([model_slope, model_intercept], [slope7, intercept7], atol=1e-3)
    residual = x[:7] * slope7 + intercept7 - y[:7]
    r2 = 1 - np.sum(residual**2) / np.sum((y[:7] - y[:7].mean()) ** 2)
    assert float(table["epochs"][table["epochs"].index("R²") + 1]) == pytest.approx(r2, abs=1e-5)
    assert "val_loss" in out
    # The plot shows the same 7 rows, and the model's predictions on them.
    ((plot_x, plot_y, plot_pred),) = plotted
    np.testing.assert_array_equal(plot_x.reshape(-1), x[:7])
    np.testing.assert_array_equal(plot_y, y[:7].astype(np.float32))  # the values trained on
    np.testing.assert_allclose(plot_pred.reshape(-1), x[:7] * slope7 + intercept7, atol=1e-3)
    assert (tmp_path / "fit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -------------------------------------------------------------------- demo
def test_demo_reproduces_the_tutorial(tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, out, err = _run(capfd, "demo", "--epochs", 5, "--out", "out", "--log-dir", "logs/run")
    assert status == 0, err
    losses = [
        float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if line.startswith("Epoch count")
    ]
    # Independent check: the tutorial's float64 loop on the same draw.
    x, y = (v.astype("float64") for v in tutorial_data(seed=0))
    weight = bias = 0.0
    expected = []
    for _ in range(5):
        residual = weight * x + bias - y
        expected.append(np.mean(residual**2))
        weight -= 0.01 * 2 * np.mean(residual * x)
        bias -= 0.01 * 2 * np.mean(residual)
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    assert "least squares" in out
    # Beside each parameter, statsmodels' statistics of least squares on the same rows.
    import statsmodels.api as sm

    reference = sm.OLS(y, sm.add_constant(x, prepend=False)).fit()
    lines = {line.split()[0]: line for line in out.splitlines() if line}
    for i, label in enumerate(("slope", "intercept")):
        fields = lines[label].replace(",", " ").replace("[", " ").replace("]", " ").split()
        se = float(fields[fields.index("se") + 1])
        low, high = map(float, fields[fields.index("CI") + 1 : fields.index("CI") + 3])
        assert se == pytest.approx(reference.bse[i], rel=1e-3)
        np.testing.assert_allclose([low, high], reference.conf_int()[i], rtol=1e-5)
    fit_line = lines["least"].split()
    assert float(fit_line[fit_line.index("R²") + 1]) == pytest.approx(reference.rsquared, abs=1e-6)
    assert float(fit_line[fit_line.index("F") + 1]) == pytest.approx(reference.fvalue, rel=1e-5)
    # Side by side: standardized features reach the optimum in a few epochs.
    raw, standardized = (line.split()[-2] for line in out.splitlines() if "learning_rate=" in line)
    assert int(raw) > 1000 and int(standardized) <= 5
    assert (tmp_path / "out" / "fit.png").is_file()
    assert (tmp_path / "out" / "saved_model" / "1" / "saved_model.pb").is_file()
    assert any((tmp_path / "logs" / "run").rglob("events.out.tfevents.*"))


def _table(out):
    """`demo --table`'s rows: {(features, learning rate): (numpy, model)}."""
    rows = {}
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] in ("raw", "standardized"):
            rows[(fields[0], float(fields[1]))] = (fields[2], fields[3])
    return rows


def test_demo_table_prints_model_beside_numpy(tmp_path, capfd, monkeypatch):
    """The float32 model needs the same epochs as the float64 NumPy reference."""
    monkeypatch.chdir(tmp_path)
    status, out, err = _run(capfd, "demo", "--table", "--max-epochs", 60, "--seed", 3)
    assert status == 0, err
    assert out.startswith("tutorial data (seed 3): raw Hessian condition number")
    rows = _table(out)
    assert len(rows) == 9
    x, y = tutorial_data(seed=3)
    for (features, rate), (numpy_epochs, model_epochs) in rows.items():
        reference = gradient_descent_epochs(x, y, rate, features == "standardized", max_epochs=60)
        assert numpy_epochs == str(reference), (features, rate)
        assert model_epochs == numpy_epochs, (features, rate)
    # Within 60 epochs only standardized features get there (0.5 is Newton's step).
    assert rows[("standardized", 0.5)] == ("1", "1")
    assert {rows[key] for key in rows if key[0] == "raw"} == {("None", "None")}
    assert os.listdir(tmp_path) == []  # the table writes nothing


def test_demo_table_without_the_model(capfd):
    status, out, err = _run(capfd, "demo", "--table", "--no-model", "--tolerance", 1e-2)
    assert status == 0, err
    x, y = tutorial_data(seed=0)
    rows = _table(out)
    assert len(rows) == 9 and {model for _, model in rows.values()} == {"-"}
    for (features, rate), (numpy_epochs, _) in rows.items():
        standardize = features == "standardized"
        assert numpy_epochs == str(gradient_descent_epochs(x, y, rate, standardize, tolerance=1e-2))


# --------------------------------------------------------------- bad input
def _bad(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize(
    "case, args, message",
    [
        ("missing file", ["train", "{tmp}/nope.csv", "--target", "y"], "no such file"),
        ("directory", ["train", "{tmp}", "--target", "y"], "is a directory"),
        ("binary file", ["train", "{binary}", "--target", "y"], "'a' (binary)"),
        ("empty file", ["train", "{empty}", "--target", "y"], "empty CSV file"),
        ("text cell", ["train", "{text}", "--target", "y"], "row 3, column 'a'"),
        ("nan cell", ["train", "{nan}", "--target", "y"], "row 2, column 'y'"),
        ("inf cell", ["train", "{inf}", "--target", "y"], "row 3, column 'a': expected a finite"),
        ("unknown target", ["train", "{good}", "--target", "z"], "no --target column 'z'"),
        ("unknown feature", ["train", "{good}", "--target", "y", "--features", "a,q"], "'q'"),
        ("one row", ["train", "{one}", "--target", "y"], "at least 2 data rows, received 1"),
        ("learning rate 0", ["train", "{good}", "--target", "y", "--learning-rate", "0"], "> 0"),
        ("learning rate < 0", ["train", "{good}", "--target", "y", "--learning-rate", "-1"], "> 0"),
        ("epochs 0", ["train", "{good}", "--target", "y", "--epochs", "0"], "integer >= 1"),
        ("batch size 0", ["train", "{good}", "--target", "y", "--batch-size", "0"], ">= 1"),
        ("diverging", ["train", "{good}", "--target", "y", "--learning-rate", "5"], "diverged"),
        (
            "split leaves 1 row",
            ["train", "{three}", "--target", "y", "--validation-split", "0.5"],
            "--validation-split 0.5 leaves 1 of 3 rows for training; expected at least 2",
        ),
        ("not a model", ["predict", "{good}", "{good}"], "expected a SavedModel directory"),
        (
            "missing column",
            ["predict", "{model}", "{only_a}"],
            "a feature the model was trained on",
        ),
        ("table option", ["demo", "--no-model"], "--no-model only applies with --table"),
        ("demo option", ["demo", "--table", "--epochs", "3"], "--epochs is for the demo, not"),
        ("tolerance 0", ["demo", "--table", "--tolerance", "0"], "expected a number > 0"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path, relation_csv, trained_model, capfd, case, args, message
):
    files = {
        "tmp": tmp_path,
        "binary": _bad(tmp_path, "binary.csv", b"a,y\n\xff\xfe,1\n"),
        "empty": _bad(tmp_path, "empty.csv", ""),
        "text": _bad(tmp_path, "text.csv", "a,y\n1,2\nfoo,3\n"),
        "nan": _bad(tmp_path, "nan.csv", "a,y\n1,nan\n2,3\n"),
        "inf": _bad(tmp_path, "inf.csv", "a,y\n1,2\ninf,3\n"),
        "one": _bad(tmp_path, "one.csv", "a,y\n1,2\n"),
        "three": _bad(tmp_path, "three.csv", "a,y\n1,2\n2,3\n3,5\n"),
        "only_a": _bad(tmp_path, "only_a.csv", "a\n1\n"),
        "good": relation_csv[0],
        "model": trained_model,
    }
    args = [arg.format(**{k: str(v) for k, v in files.items()}) for arg in args]
    export, saved = tmp_path / "export", tmp_path / "m.keras"
    if args[0] == "train":
        args += ["--export", str(export), "--save", str(saved), "--log-dir", str(tmp_path / "l")]
    before = sorted(os.listdir(tmp_path))
    status, out, err = _run(capfd, *args)
    assert status == 2, (case, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, (case, err)
    assert message in lines[0], (case, lines[0])
    assert "Traceback" not in err
    assert not export.exists() and not saved.exists()
    if case != "diverging":  # a run that trained and diverged keeps its TensorBoard logs
        assert not (tmp_path / "l").exists()
        assert sorted(os.listdir(tmp_path)) == before


def test_a_directory_that_is_not_a_model_in_a_real_process(tmp_path, relation_csv):
    """The console script's exit status and stderr, TensorFlow started: one line, no traceback."""
    empty_dir = tmp_path / "not_a_model"
    empty_dir.mkdir()
    result = _run_script("predict", empty_dir, relation_csv[0])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a model" in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_train_with_l1_and_l2_reports_the_penalized_optimum(relation_csv, tmp_path, capfd):
    # y = 2a - 3b + 1 with a strong L1 on the standardized slopes: the report
    # compares with the elastic-net optimum (checked here against scikit-learn),
    # not with least squares.
    from sklearn.linear_model import ElasticNet

    path, x, y = relation_csv
    l1, l2 = 1.0, 0.2
    status, out, err = _run(
        capfd, "train", path, "--target", "y", "--epochs", 300, "--learning-rate", 0.5,
        "--standardize", "--l1", l1, "--l2", l2, "--log-dir", tmp_path / "logs", "--quiet",
    )  # fmt: skip
    assert status == 0, err
    header = out.splitlines()[0]
    assert "optimum" in header and "least squares" not in header
    # Least squares' standard errors would describe another estimate: not shown.
    assert header.split()[-1] == "gap" and "no standard errors beside a penalized fit" in out
    std = x.std(axis=0)
    alpha = l1 / 2 + l2
    reference = ElasticNet(alpha=alpha, l1_ratio=(l1 / 2) / alpha, tol=1e-12, max_iter=100_000)
    reference.fit(x / std, y)
    optimum = reference.coef_ / std
    assert np.max(np.abs(optimum - keras_linreg.least_squares(x, y)[0])) > 0.1  # it matters
    table = _report(out)
    for i, name in enumerate(("a", "b")):
        model_value, optimum_value, gap = map(float, table[f"slope[{name}]"][:3])
        assert optimum_value == pytest.approx(optimum[i], rel=1e-5)
        assert model_value == pytest.approx(optimum[i], rel=1e-4)
        assert gap < 1e-4


@pytest.mark.parametrize("flag", ["--l1", "--l2"])
def test_a_negative_penalty_is_a_usage_error(relation_csv, capfd, flag):
    path, _, _ = relation_csv
    status, _, err = _run(capfd, "train", path, "--target", "y", flag, "-1")
    assert status == 2
    assert f"argument {flag}: expected a number >= 0, received '-1'" in err


def test_train_report_json_on_the_training_rows(relation_csv, tmp_path, capfd):
    import json

    import statsmodels.api as sm

    path, x, y = relation_csv
    report = tmp_path / "report.json"
    status, out, err = _run(
        capfd, "train", path, "--target", "y", "--epochs", 60, "--learning-rate", 0.5,
        "--standardize", "--validation-split", 0.2, "--log-dir", tmp_path / "logs", "--quiet",
        "--report", report,
    )  # fmt: skip
    assert status == 0, err
    assert f"Report: {report}" in out
    written = json.loads(report.read_text())
    # The optimum and the statistics are those of the 160 training rows, as the
    # model sees them: the command line reads the file's numbers as float32.
    x32, y32 = x[:160].astype("float32").astype("float64"), y[:160].astype("float32")
    reference = sm.OLS(y32.astype("float64"), sm.add_constant(x32, prepend=False)).fit()
    assert written["nobs"] == 160
    assert [p["name"] for p in written["parameters"]] == ["slope[a]", "slope[b]", "intercept"]
    for i, entry in enumerate(written["parameters"]):
        assert entry["optimum"] == pytest.approx(reference.params[i], rel=1e-9)
        assert entry["se"] == pytest.approx(reference.bse[i], rel=1e-8)
        assert entry["t"] == pytest.approx(reference.tvalues[i], rel=1e-8)
        assert [entry["ci_low"], entry["ci_high"]] == pytest.approx(reference.conf_int()[i],
                                                                    rel=1e-8)
        assert entry["gap"] < 1e-3
    for name in ("rsquared", "rsquared_adj", "fvalue"):
        assert written[name] == pytest.approx(getattr(reference, name), rel=1e-8)
    table = _report(out)
    assert float(table["slope[a]"][3]) == pytest.approx(reference.bse[0], rel=1e-3)  # se column


def test_an_existing_report_path_is_refused_before_training(relation_csv, tmp_path, capfd):
    path, _, _ = relation_csv
    old = tmp_path / "old.json"
    old.write_text("{}")
    status, out, err = _run(
        capfd, "train", path, "--target", "y", "--report", old, "--log-dir", tmp_path / "logs",
    )  # fmt: skip
    assert status == 2
    assert f"--report {old} already exists" in err and "epochs" not in out
    assert old.read_text() == "{}" and not (tmp_path / "logs").exists()


def test_a_sweep_refuses_report(relation_csv, tmp_path, capfd):
    path, _, _ = relation_csv
    status, _, err = _run(
        capfd, "train", path, "--target", "y", "--learning-rate", "0.1,0.2",
        "--report", tmp_path / "r.json",
    )  # fmt: skip
    assert status == 2 and "--report" in err


def test_train_no_intercept_reports_and_exports_the_fit_through_the_origin(
    relation_csv, tmp_path, capfd
):
    # y = 2a - 3b + 1: through the origin the optimum is lstsq on [a, b] alone.
    path, x, y = relation_csv
    export = tmp_path / "model" / "1"
    status, out, err = _run(
        capfd, "train", path, "--target", "y", "--no-intercept", "--epochs", 150,
        "--learning-rate", 0.1, "--no-standardize", "--tol", 0,
        "--log-dir", tmp_path / "logs", "--export", export, "--quiet",
    )  # fmt: skip
    assert status == 0, err
    reference = np.linalg.lstsq(x, y, rcond=None)[0]
    assert np.max(np.abs(reference - keras_linreg.least_squares(x, y)[0])) > 0.1  # it matters
    table = _report(out)
    for i, name in enumerate(("a", "b")):
        model_value, optimum, gap = map(float, table[f"slope[{name}]"][:3])
        assert optimum == pytest.approx(reference[i], rel=5e-6)  # printed to 6 digits
        # 1e-4: also holds if training stops early at a relative gap of 1e-5.
        assert model_value == pytest.approx(reference[i], rel=1e-4)
        assert gap < 2e-4
    assert table["intercept"][:2] == ["none", "(fit"]
    assert "(uncentered)" in out
    # The SavedModel serves x · slope: at the origin, exactly 0.
    inputs = _write_csv(tmp_path / "new.csv", ["a", "b"], [[0.0, 0.0], [1.0, 2.0]])
    status, out, err = _run(capfd, "predict", export, inputs)
    assert status == 0, err
    predictions = [float(row[-1]) for row in list(csv.reader(out.splitlines()))[1:]]
    assert predictions[0] == 0.0
    assert predictions[1] == pytest.approx(reference[0] + 2 * reference[1], rel=1e-4)
