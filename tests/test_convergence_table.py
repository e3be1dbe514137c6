"""`keras_linreg_cli.convergence_table`: `keras-linreg demo --table` and its NumPy reference."""

import glob
import os

import numpy as np
import pytest

from keras_linreg_cli.convergence_table import RUNS, gradient_descent_epochs, print_table

_ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def _hand_loop(x, y, rate, epochs):
    """Plain full-batch gradient descent on `x · w + b`, float64, one feature."""
    w = b = 0.0
    for _ in range(epochs):
        r = x * w + b - y
        w, b = w - rate * 2 * np.mean(r * x), b - rate * 2 * np.mean(r)
    return w, b


def test_gradient_descent_epochs_counts_the_hand_loop_epochs(tutorial_data):
    x, y = (v.astype(np.float64) for v in tutorial_data)
    epochs = gradient_descent_epochs(x, y, 0.02, tolerance=1e-2)
    (slope, intercept), *_ = np.linalg.lstsq(np.c_[x, np.ones_like(x)], y, rcond=None)

    def distance(epochs):
        w, b = _hand_loop(x, y, 0.02, epochs)
        return max(abs(w - slope), abs(b - intercept))

    assert distance(epochs) <= 1e-2 < distance(epochs - 1)
    assert gradient_descent_epochs(x, y, 0.03) is None  # above 2 / λmax: diverges


def test_header_and_fastest_rate_match_the_hessian_eigenvalues(tutorial_data, capsys):
    x, y = tutorial_data
    rows = print_table(x, y, label="t", with_model=False, max_epochs=10)
    header = capsys.readouterr().out.splitlines()[0]
    design = np.c_[x.astype(np.float64), np.ones(len(x))]
    eigenvalues = np.linalg.eigvalsh(2.0 / len(x) * design.T @ design)
    assert f"condition number {eigenvalues[-1] / eigenvalues[0]:.1f}," in header
    assert f"stable for lr < {2 / eigenvalues[-1]:.5f};" in header
    assert header.endswith("standardized: stable for lr < 1.00000")  # one feature: H = 2·I
    assert [rate for _, rate, _, _ in rows][2] == round(2 / eigenvalues.sum(), 5)
    assert len(rows) == len(RUNS) and all(model is None for *_, model in rows)


def _documented_table():
    """The convergence table's rows in README.md or docs/**/*.md, wherever it lives."""
    paths = [os.path.join(_ROOT, "README.md")]
    paths += glob.glob(os.path.join(_ROOT, "docs", "**", "*.md"), recursive=True)
    for path in paths:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
        rows = [
            line.split("|")
            for line in text.splitlines()
            if line.startswith("| raw ") or line.startswith("| standardized ")
        ]
        if rows:
            return path, rows
    pytest.fail("no convergence table (rows '| raw ' and '| standardized ') in the docs")


def test_the_documented_table_matches_the_numpy_measurement(tutorial_data):
    """The documented float64 column is what `keras-linreg demo --table` prints."""
    x, y = tutorial_data
    printed = {
        (features, rate): str(numpy_epochs)
        for features, rate, numpy_epochs, _ in print_table(x, y, with_model=False)
    }
    path, rows = _documented_table()
    assert len(rows) == len(printed) == 9, path
    for row in rows:
        features, rate, numpy_epochs = row[1].strip(), float(row[2].split()[0]), row[3].strip()
        assert printed[(features, rate)] == numpy_epochs, (path, features, rate)
