"""`keras_linreg_cli.report`: `keras-linreg train`'s fit and its report, against least squares."""

import numpy as np
import pytest

import keras_linreg
from keras_linreg_cli.report import fit_regression, format_report, summarize


def test_fit_and_report_against_least_squares(rng):
    x = rng.normal(size=(300, 2)).astype("float32")
    y = (x @ [3.0, -1.0] + 2.0 + rng.normal(0, 0.1, 300)).astype("float32")
    model, history = fit_regression(
        x, y, feature_names=["u", "v"], learning_rate=0.2, epochs=200, validation_split=0.1
    )
    report = summarize(model, history, x[:270], y[:270])
    slope, intercept = keras_linreg.least_squares(x[:270], y[:270])
    np.testing.assert_allclose(report.optimum_slope, slope, rtol=1e-12)
    assert report.gap < 1e-4
    residual = x[:270].astype("float64") @ report.slope + report.intercept - y[:270]
    r2 = 1 - np.sum(residual**2) / np.sum((y[:270] - y[:270].mean()) ** 2)
    assert report.r2 == pytest.approx(r2, rel=1e-9)
    assert report.val_loss is not None and report.epochs == 200
    text = format_report(report)
    assert "slope[u]" in text and "slope[v]" in text and "val_loss" in text
    # Given the whole data and the split, summarize cuts where Keras did.
    cut = summarize(model, history, x, y, validation_split=0.1)
    np.testing.assert_array_equal(cut.optimum_slope, report.optimum_slope)
    assert (cut.optimum_intercept, cut.r2, cut.gap) == (
        report.optimum_intercept,
        report.r2,
        report.gap,
    )


def test_a_fractional_split_is_cut_where_keras_cuts(rng):
    """n · split = 2.5: Keras trains on floor(10 · 0.75) = 7 rows, the report too."""
    x = np.arange(10.0, dtype="float32")
    y = (2.0 * x + 1.0 + rng.normal(0, 0.1, 10)).astype("float32")
    y[7] += 40.0  # the first validation row, an outlier
    model, history = fit_regression(
        x, y, learning_rate=0.5, epochs=30, validation_split=0.25, standardize=True
    )
    assert int(model.optimizer.iterations.numpy()) == 30  # full batch: one step per epoch
    report = summarize(model, history, x, y, validation_split=0.25)
    design = np.c_[x, np.ones(10)].astype("float64")
    (slope, intercept), *_ = np.linalg.lstsq(design[:7], y[:7].astype("float64"), rcond=None)
    np.testing.assert_allclose(report.optimum_slope, [slope], rtol=1e-9)
    assert report.optimum_intercept == pytest.approx(intercept, rel=1e-9)
    assert report.gap < 1e-3  # converged on the 7 rows it trained on
    residual = x[:7] * report.slope[0] + report.intercept - y[:7].astype("float64")
    r2 = 1 - np.sum(residual**2) / np.sum((y[:7] - y[:7].mean()) ** 2)
    assert report.r2 == pytest.approx(r2, rel=1e-9)
    # Keras' own validation loss is the mean squared error on the last 3 rows.
    val_residual = x[7:] * report.slope[0] + report.intercept - y[7:].astype("float64")
    assert report.val_loss == pytest.approx(np.mean(val_residual**2), rel=1e-4)


def test_format_report_lists_every_parameter_beside_least_squares():
    from keras_linreg_cli.report import TrainingReport

    report = TrainingReport(
        feature_names=["area", "rooms"],
        slope=np.array([2.0, -1.5]),
        intercept=0.25,
        loss=0.5,
        val_loss=None,
        r2=0.875,
        optimum_slope=np.array([2.5, -1.5]),
        optimum_intercept=0.0,
        epochs=7,
    )
    assert report.gap == 0.5
    lines = format_report(report).splitlines()
    assert lines[0].split() == ["parameter", "model", "least", "squares", "gap"]
    assert lines[1].split() == ["slope[area]", "2", "2.5", "0.5"]
    assert lines[2].split() == ["slope[rooms]", "-1.5", "-1.5", "0"]
    assert lines[3].split() == ["intercept", "0.25", "0", "0.25"]
    assert lines[5] == "epochs 7   final loss 0.5   R² 0.875000"
