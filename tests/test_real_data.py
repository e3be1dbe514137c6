"""Real data sets nobody here wrote, through `keras-linreg train` with default flags.

Data sets shipped inside statsmodels (a test dependency), written to CSV as a user
would with pandas; the reference is statsmodels' OLS. The defaults (standardized
features, `--learning-rate auto`, stop at `--tol 1e-5` of the optimum) must reach
its parameters to within 1e-5 of each parameter's scale
(`keras_linreg.convergence.relative_gap`), and to at least 4 significant digits
(relative error <= 1e-4) where the parameter is not near 0.
"""

import keras
import numpy as np
import pytest
import statsmodels.api as sm

from keras_linreg_cli import main

DATASETS = ["stackloss", "cpunish", "statecrime", "spector", "grunfeld", "engel", "ccard"]


def _frame(name):
    data = getattr(sm.datasets, name).load_pandas()
    features = data.exog.select_dtypes("number").astype("float64")
    frame = features.assign(TARGET=np.asarray(data.endog, dtype="float64"))
    return frame, features.to_numpy(), frame["TARGET"].to_numpy()


@pytest.mark.parametrize("name", DATASETS)
def test_defaults_reach_statsmodels_ols(name, tmp_path, capfd):
    frame, x, y = _frame(name)
    path = tmp_path / f"{name}.csv"
    frame.to_csv(path, index=False)
    saved = tmp_path / "m.keras"
    capfd.readouterr()
    status = main(["train", str(path), "--target", "TARGET", "--no-log", "--quiet",
                   "--save", str(saved)])  # fmt: skip
    out, err = capfd.readouterr()
    assert status == 0, err
    assert "warning" not in err, err
    fitted = sm.OLS(y, sm.add_constant(x, prepend=False)).fit()
    model = keras.models.load_model(saved)
    slope, intercept = model.get_parameters()
    ours = np.append(slope, intercept)
    reference = fitted.params
    scale = np.append(y.std() / x.std(axis=0), y.std())
    assert np.max(np.abs(ours - reference) / (np.abs(reference) + scale)) <= 1e-5
    large = np.abs(reference) > 0.1 * scale
    assert large.sum() >= 2
    np.testing.assert_allclose(ours[large], reference[large], rtol=1e-4)
    digits = -np.log10(np.abs(ours - reference) / np.abs(reference))
    epochs = int(out.split("epochs ")[1].split()[0])
    assert 1 <= epochs < 10_000
    print(f"{name}: {epochs} epochs, digits {np.round(digits, 1)}")


def test_longley_needs_more_than_the_cap_and_says_so(tmp_path, capfd):
    """Longley's standardized Hessian has condition number ~1.2e4: the defaults do not
    get there within --epochs 300, and `train` says so in one warning line."""
    frame, _, _ = _frame("longley")
    path = tmp_path / "longley.csv"
    frame.to_csv(path, index=False)
    capfd.readouterr()
    status = main(["train", str(path), "--target", "TARGET", "--no-log", "--quiet",
                   "--epochs", "300"])  # fmt: skip
    _, err = capfd.readouterr()
    assert status == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "warning: the fit has not converged" in lines[0], err
    assert "Try more --epochs" in lines[0]
