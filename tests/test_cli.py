"""`keras-linreg` as users run it: real subprocesses of the installed console script."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_linreg
from keras_linreg.demo import tutorial_data

_SCRIPT = os.path.join(os.path.dirname(sys.executable), "keras-linreg")


def _run(*args, cwd=None, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    return subprocess.run(
        [_SCRIPT, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def relation_csv(tmp_path_factory):
    """y = 2a - 3b + 1 + N(0, 0.01), with a text column the CLI must pass through."""
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=200), rng.normal(2.0, 0.5, size=200)
    y = 2 * a - 3 * b + 1 + rng.normal(0, 0.01, 200)
    path = tmp_path_factory.mktemp("data") / "relation.csv"
    rows = [[f"r{i}", a[i], b[i], y[i]] for i in range(200)]
    return _write_csv(path, ["id", "a", "b", "y"], rows), np.c_[a, b], y


def test_help_is_instant_and_lists_examples():
    result = _run("train", "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and "--target COL" in result.stdout
    assert "tensorflow" not in (result.stdout + result.stderr).lower()


def test_train_export_predict_round_trip(relation_csv, tmp_path):
    path, x, y = relation_csv
    export, saved, plot = tmp_path / "model" / "1", tmp_path / "model.keras", tmp_path / "fit.png"
    result = _run(
        "train", path, "--target", "y", "--epochs", 60, "--learning-rate", 0.5, "--standardize",
        "--log-dir", tmp_path / "logs", "--export", export, "--save", saved, "--plot", plot,
        "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # The summary names each slope by its column, beside least squares.
    slope, intercept = keras_linreg.least_squares(x, y)
    table = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line}
    np.testing.assert_allclose(float(table["slope[a]"][0]), slope[0], rtol=1e-5)
    np.testing.assert_allclose(float(table["slope[b]"][1]), slope[1], rtol=1e-5)
    np.testing.assert_allclose(float(table["intercept"][1]), intercept, rtol=1e-5)
    assert "R²" in result.stdout
    assert export.is_dir() and saved.is_file() and plot.stat().st_size > 10_000
    assert any((tmp_path / "logs").rglob("events.out.tfevents.*"))

    new_rows = [["p0", 0.5, 1.0, 0.0], ["p1", -1.0, 2.5, 0.0]]
    inputs = _write_csv(tmp_path / "new.csv", ["id", "b", "a", "y"], new_rows)  # columns moved
    expected = [2 * 1.0 - 3 * 0.5 + 1, 2 * 2.5 - 3 * -1.0 + 1]
    for model_path in (export, saved):
        result = _run("predict", model_path, inputs)
        assert result.returncode == 0, result.stderr
        rows = list(csv.reader(result.stdout.splitlines()))
        assert rows[0] == ["id", "b", "a", "y", "prediction"]
        assert [row[0] for row in rows[1:]] == ["p0", "p1"]
        np.testing.assert_allclose([float(row[-1]) for row in rows[1:]], expected, atol=0.02)

    output = tmp_path / "predictions.csv"
    assert _run("predict", saved, inputs, "--output", output).returncode == 0
    assert output.read_text().splitlines()[0] == "id,b,a,y,prediction"


def test_demo_reproduces_the_tutorial(tmp_path):
    result = _run("demo", "--epochs", 5, "--out", "out", "--log-dir", "logs/run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    losses = [
        float(line.rsplit(" ", 1)[1])
        for line in result.stdout.splitlines()
        if line.startswith("Epoch count")
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
    assert "least squares" in result.stdout
    # Side by side: standardized features reach the optimum in a few epochs.
    raw, standardized = (
        line.split()[-2] for line in result.stdout.splitlines() if "learning_rate=" in line
    )
    assert int(raw) > 1000 and int(standardized) <= 5
    assert (tmp_path / "out" / "fit.png").is_file()
    assert (tmp_path / "out" / "saved_model" / "1" / "saved_model.pb").is_file()
    assert any((tmp_path / "logs" / "run").rglob("events.out.tfevents.*"))


def _bad(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


@pytest.mark.parametrize(
    "case, args, message",
    [
        ("missing file", ["train", "{tmp}/nope.csv", "--target", "y"], "no such file"),
        ("directory", ["train", "{tmp}", "--target", "y"], "is a directory"),
        ("binary file", ["train", "{binary}", "--target", "y"], "not a readable CSV"),
        ("empty file", ["train", "{empty}", "--target", "y"], "is empty"),
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
        ("not a model", ["predict", "{good}", "{good}"], "expected a SavedModel directory"),
        (
            "missing column",
            ["predict", "{model}", "{only_a}"],
            "a feature the model was trained on",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    tmp_path, relation_csv, trained_model, case, args, message
):
    files = {
        "tmp": tmp_path,
        "binary": _bad(tmp_path, "binary.csv", b"a,y\n\xff\xfe,1\n"),
        "empty": _bad(tmp_path, "empty.csv", ""),
        "text": _bad(tmp_path, "text.csv", "a,y\n1,2\nfoo,3\n"),
        "nan": _bad(tmp_path, "nan.csv", "a,y\n1,nan\n2,3\n"),
        "inf": _bad(tmp_path, "inf.csv", "a,y\n1,2\ninf,3\n"),
        "one": _bad(tmp_path, "one.csv", "a,y\n1,2\n"),
        "only_a": _bad(tmp_path, "only_a.csv", "a\n1\n"),
        "good": relation_csv[0],
        "model": trained_model,
    }
    args = [arg.format(**{k: str(v) for k, v in files.items()}) for arg in args]
    export, saved = tmp_path / "export", tmp_path / "m.keras"
    if args[0] == "train":
        args += ["--export", str(export), "--save", str(saved), "--log-dir", str(tmp_path / "l")]
    result = _run(*args)
    assert result.returncode == 2, (case, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, (case, result.stderr)
    assert message in lines[0], (case, lines[0])
    assert "Traceback" not in result.stderr
    assert not export.exists() and not saved.exists()
    if case != "diverging":  # a run that trained and diverged keeps its TensorBoard logs
        assert not (tmp_path / "l").exists()


def test_a_directory_that_is_not_a_model(tmp_path, relation_csv):
    empty_dir = tmp_path / "not_a_model"
    empty_dir.mkdir()
    result = _run("predict", empty_dir, relation_csv[0])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a model" in lines[0], result.stderr


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A small `.keras` model trained on feature names `a` and `b` (in-process)."""
    model = keras_linreg.LinearRegression(feature_names=["a", "b"])
    model.compile()
    path = tmp_path_factory.mktemp("model") / "ab.keras"
    model.save(path)
    return path
