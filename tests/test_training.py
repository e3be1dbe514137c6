"""The library behind `keras-linreg train`: fit, report, plot (in-process)."""


import numpy as np
import pytest

import keras_linreg
from keras_linreg.training import fit_regression, format_report, summarize
from keras_linreg_cli.csv_table import DataError, read_table


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


def test_csv_table_reads_numbers_and_names_bad_cells(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("name,a,y\nfirst,1.5,2\n\nsecond,-3,4e1\n")
    table = read_table(str(path))
    assert table.numeric_columns() == ["a", "y"]
    np.testing.assert_array_equal(table.numbers(["y", "a"]), [[2.0, 1.5], [40.0, -3.0]])
    with pytest.raises(
        DataError, match=r"row 2, column 'name': expected a number, received 'fir"
    ):
        table.numbers(["name"])
    path.write_text("a,a\n1,2\n")
    with pytest.raises(DataError, match="unique"):
        read_table(str(path))
    path.write_text("a,y\n1,2\n3\n")
    with pytest.raises(DataError, match="row 3: expected 2 cells, received 1"):
        read_table(str(path))
