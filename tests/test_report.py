"""`keras_linreg_cli.report`: `keras-linreg train`'s fit and its report, against least squares."""

import numpy as np
import pytest

from keras_linreg_cli.report import fit_regression, format_report, summarize


def test_fit_and_report_against_least_squares(rng):
    x = rng.normal(size=(300, 2)).astype("float32")
    y = (x @ [3.0, -1.0] + 2.0 + rng.normal(0, 0.1, 300)).astype("float32")
    model, history = fit_regression(
        x, y, feature_names=["u", "v"], learning_rate=0.2, epochs=200, validation_split=0.1
    )
    report = summarize(model, history, x[:270], y[:270])
    design = np.c_[x[:270].astype("float64"), np.ones(270)]
    expected, *_ = np.linalg.lstsq(design, y[:270].astype("float64"), rcond=None)
    np.testing.assert_allclose(report.optimum_slope, expected[:2], rtol=1e-10)
    assert report.optimum_intercept == pytest.approx(expected[2], rel=1e-10)
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
    assert lines[5] == "epochs 7   MSE 0.5   R² 0.875000"


# ------------------------------------------------------- statistics in the report
def _statsmodels(x, y):
    import statsmodels.api as sm

    return sm.OLS(y, sm.add_constant(x, prepend=False)).fit()


def test_the_report_gives_statsmodels_statistics_on_the_training_rows(rng):
    x = rng.normal(size=(200, 2)).astype("float32")
    y = (x @ [1.0, 0.05] + 0.5 + rng.normal(0, 1.0, 200)).astype("float32")
    model, history = fit_regression(
        x, y, feature_names=["u", "v"], learning_rate=0.2, epochs=100, validation_split=0.25
    )
    report = summarize(model, history, x, y, validation_split=0.25)
    reference = _statsmodels(x[:150].astype("float64"), y[:150].astype("float64"))
    stats = report.statistics
    assert stats.nobs == 150  # exactly the rows Keras trained on
    for name in ("params", "bse", "tvalues", "pvalues"):
        np.testing.assert_allclose(getattr(stats, name), getattr(reference, name), rtol=1e-8)
    np.testing.assert_allclose(stats.conf_int(), reference.conf_int(), rtol=1e-8)
    for name in ("rsquared", "rsquared_adj", "fvalue", "f_pvalue"):
        assert getattr(stats, name) == pytest.approx(getattr(reference, name), rel=1e-8)
    np.testing.assert_allclose(stats.params, np.r_[report.optimum_slope, report.optimum_intercept],
                               rtol=1e-12)
    lines = format_report(report).splitlines()
    assert lines[0].split()[-5:] == ["se", "t", "p", "[0.025", "0.975]"]
    cells = lines[1].split()
    assert cells[0] == "slope[u]"
    np.testing.assert_allclose([float(c) for c in cells[4:]],
                               [reference.bse[0], reference.tvalues[0], reference.pvalues[0],
                                *reference.conf_int()[0]], rtol=5e-3)  # printed to 3-6 digits
    assert lines[-1].startswith("OLS on the 150 training rows: R² ")
    assert f"F {reference.fvalue:.6g}" in lines[-1]


def test_report_dict_and_write_report(rng, tmp_path):
    import json

    from keras_linreg_cli.report import report_dict, write_report

    x = rng.normal(size=(60, 1)).astype("float32")
    y = (2.0 * x[:, 0] - 1.0 + rng.normal(0, 0.5, 60)).astype("float32")
    model, history = fit_regression(x, y, feature_names=["z"], learning_rate=0.3, epochs=50)
    report = summarize(model, history, x, y)
    path = write_report(tmp_path / "out" / "report.json", report)
    with open(path, encoding="utf-8") as stream:
        written = json.load(stream)
    assert written == json.loads(json.dumps(report_dict(report)))
    assert [p["name"] for p in written["parameters"]] == ["slope[z]", "intercept"]
    reference = _statsmodels(x.astype("float64"), y.astype("float64"))
    for i, entry in enumerate(written["parameters"]):
        assert entry["se"] == float(report.statistics.bse[i])  # full precision survives JSON
        assert entry["se"] == pytest.approx(reference.bse[i], rel=1e-8)
        assert [entry["ci_low"], entry["ci_high"]] == pytest.approx(reference.conf_int()[i],
                                                                    rel=1e-8)
        assert entry["gap"] == abs(entry["model"] - entry["optimum"])
    assert written["rsquared"] == pytest.approx(reference.rsquared, rel=1e-8)
    assert written["nobs"] == 60 and written["statistics"]["model"] == "OLS"
    # Replaced atomically: no temporary left beside it.
    with pytest.raises(FileExistsError):
        write_report(path, report)
    write_report(path, report, overwrite=True)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["report.json"]


def test_undefined_statistics_are_explained_not_raised(rng):
    x = np.c_[rng.normal(size=30), np.full(30, 2.0)].astype("float32")  # a constant column
    y = (x[:, 0] + rng.normal(0, 0.1, 30)).astype("float32")
    model, history = fit_regression(x, y, learning_rate=0.1, epochs=5)
    report = summarize(model, history, x, y)
    assert report.statistics is None and "column 1 ('x1')" in report.statistics_error
    assert format_report(report).splitlines()[-1].startswith("no standard errors: ")


def test_a_fit_through_the_origin_reports_uncentered_statistics(rng):
    import statsmodels.api as sm

    x = rng.normal(1.0, 1.0, size=(80, 2)).astype("float32")
    y = (x @ [1.5, -0.5] + rng.normal(0, 0.3, 80)).astype("float32")
    model, history = fit_regression(x, y, learning_rate=0.1, epochs=50, fit_intercept=False)
    report = summarize(model, history, x, y)
    reference = sm.OLS(y.astype("float64"), x.astype("float64")).fit()  # no constant
    stats = report.statistics
    assert not stats.fit_intercept and stats.df_model == 2
    for name in ("params", "bse", "pvalues"):
        np.testing.assert_allclose(getattr(stats, name), getattr(reference, name), rtol=1e-8)
    assert stats.rsquared == pytest.approx(reference.rsquared, rel=1e-8)  # uncentered
    lines = format_report(report).splitlines()
    assert len([line for line in lines if line.startswith("slope[")]) == 2
    assert "(uncentered)" in lines[-1] and lines[-1].startswith("OLS on the 80 training rows")
