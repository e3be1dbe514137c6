"""`slope_regularizer`: exact ridge, lasso and elastic-net optima, the Keras way.

The references are independent of the model: scikit-learn's `Ridge`, `Lasso`
and `ElasticNet` on the converted `alpha` (our objective is twice theirs, see
docs/regularization.md), and `regularization.penalized_optimum` (float64
closed form / coordinate descent), which is itself checked against
scikit-learn here.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from sklearn.linear_model import ElasticNet, Lasso, Ridge

import keras_linreg
from keras_linreg import regularization

FIXTURES = Path(__file__).with_name("fixtures")
N, K = 200, 6
TRUE_SLOPE = np.array([1.5, 0.0, 0.0, -2.0, 0.0, 0.3])  # several true zeros


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, K)).astype("float32")
    y = (x @ TRUE_SLOPE + 0.7 + 0.5 * rng.normal(size=N)).astype("float32")
    return x, y


def full_batch_fit(x, y, regularizer, epochs=2000, learning_rate=0.2, **kwargs):
    model = keras_linreg.LinearRegression(
        learning_rate=learning_rate, slope_regularizer=regularizer, **kwargs
    )
    model.compile()
    history = model.fit(x, y, batch_size=len(y), epochs=epochs, shuffle=False, verbose=0)
    return model, history


def sklearn_reference(x, y, l1, l2):
    """scikit-learn's fit of `Σr²/n + l1 Σ|s| + l2 Σs²` (their objective is half of it)."""
    x, y = x.astype("float64"), y.astype("float64")
    if l1 == 0:
        fitted = Ridge(alpha=len(y) * l2).fit(x, y)
    elif l2 == 0:
        fitted = Lasso(alpha=l1 / 2, tol=1e-12, max_iter=100_000).fit(x, y)
    else:
        alpha = l1 / 2 + l2
        fitted = ElasticNet(alpha=alpha, l1_ratio=(l1 / 2) / alpha, tol=1e-12, max_iter=100_000)
        fitted = fitted.fit(x, y)
    return fitted.coef_, float(fitted.intercept_)


def test_one_step_by_hand():
    # x = [1, 2], y = [3, 5], w = 0, b = 0, lr = 0.1, L1L2(l1=0.5, l2=0.25):
    # data gradient d/ds = 2 Σ x r / n = 2 (1·(-3) + 2·(-5)) / 2 = -13, d/db = -8,
    # penalty gradient 2·l2·s = 0, so v = 0 + 1.3 = 1.3, then the soft-threshold
    # 1.3 - lr·l1 = 1.25; b = 0.8. Loss = data 17 + penalty 0 at the start.
    model = keras_linreg.LinearRegression(
        learning_rate=0.1, slope_regularizer=keras.regularizers.L1L2(l1=0.5, l2=0.25)
    )
    model.compile()
    history = model.fit(
        np.array([1.0, 2.0]), np.array([3.0, 5.0]), batch_size=2, epochs=1, verbose=0
    )
    np.testing.assert_allclose(model.slope.numpy(), [1.25], rtol=1e-6)
    np.testing.assert_allclose(model.intercept.numpy(), 0.8, rtol=1e-6)
    assert history.history["data_loss"] == pytest.approx([17.0])
    assert history.history["penalty"] == pytest.approx([0.0])
    assert history.history["loss"] == pytest.approx([17.0])
    # The penalty at the new slope, in `model.losses` and in `evaluate`:
    # 0.5·1.25 + 0.25·1.25² = 1.015625.
    assert [float(v) for v in model.losses] == pytest.approx([1.015625])
    logs = model.evaluate(np.array([1.0, 2.0]), np.array([3.0, 5.0]), verbose=0, return_dict=True)
    residual = np.array([1.25 * 1 + 0.8 - 3, 1.25 * 2 + 0.8 - 5])
    assert logs["data_loss"] == pytest.approx(np.mean(residual**2), rel=1e-6)
    assert logs["penalty"] == pytest.approx(1.015625, rel=1e-6)
    assert logs["loss"] == pytest.approx(np.mean(residual**2) + 1.015625, rel=1e-6)


@pytest.mark.parametrize("l1, l2", [(0.0, 0.05), (0.1, 0.0), (0.1, 0.05)])
def test_reference_optimum_equals_scikit_learn(problem, l1, l2):
    x, y = problem
    slope, intercept = regularization.penalized_optimum(x, y, l1=l1, l2=l2)
    sk_slope, sk_intercept = sklearn_reference(x, y, l1, l2)
    np.testing.assert_allclose(slope, sk_slope, rtol=1e-8, atol=1e-10)
    assert intercept == pytest.approx(sk_intercept, rel=1e-8)


def test_ridge_reaches_the_closed_form(problem):
    x, y = problem
    model, _ = full_batch_fit(x, y, keras.regularizers.L2(0.05))
    slope, intercept = model.get_parameters()
    optimum_slope, optimum_intercept = regularization.penalized_optimum(x, y, l2=0.05)
    np.testing.assert_allclose(slope, optimum_slope, atol=1e-4)
    assert intercept == pytest.approx(optimum_intercept, abs=1e-4)
    # The optimum really is penalized: ridge shrinks the slope's norm.
    ols_slope, _ = keras_linreg.least_squares(x, y)
    assert np.linalg.norm(optimum_slope) < 0.97 * np.linalg.norm(ols_slope)


@pytest.mark.parametrize(
    "regularizer, l1, l2",
    [
        (keras.regularizers.L1(0.1), 0.1, 0.0),
        (keras.regularizers.L1L2(l1=0.1, l2=0.05), 0.1, 0.05),
    ],
    ids=["lasso", "elastic-net"],
)
def test_lasso_and_elastic_net_reach_the_optimum_with_its_exact_zeros(problem, regularizer, l1, l2):
    x, y = problem
    model, history = full_batch_fit(x, y, regularizer)
    slope, intercept = model.get_parameters()
    sk_slope, sk_intercept = sklearn_reference(x, y, l1, l2)
    achieved = regularization.objective(x, y, slope, intercept, l1=l1, l2=l2)
    best = regularization.objective(x, y, sk_slope, sk_intercept, l1=l1, l2=l2)
    assert abs(achieved - best) <= 1e-4 * best
    # Coefficients the lasso sets to zero are exactly zero, and only those.
    np.testing.assert_array_equal(slope == 0.0, sk_slope == 0.0)
    assert np.count_nonzero(sk_slope == 0.0) >= 2
    np.testing.assert_allclose(slope, sk_slope, atol=1e-4)
    # The epoch log is the objective at the weights before the last update.
    assert history.history["loss"][-1] == pytest.approx(best, rel=1e-4)
    assert history.history["loss"][-1] == pytest.approx(
        history.history["data_loss"][-1] + history.history["penalty"][-1], rel=1e-6
    )


def test_standardized_penalty_is_on_standardized_slopes(problem):
    # glmnet's convention: the penalty applies to w = slope · std, and the
    # parameters are reported in raw units.
    x, y = problem
    x = x * np.array([1, 10, 0.1, 5, 1, 0.5], "float32") + 3.0
    std = x.astype("float64").std(axis=0)
    model, _ = full_batch_fit(
        x, y, keras.regularizers.L2(0.05), epochs=300, learning_rate=0.5, standardize=True
    )
    slope, intercept = model.get_parameters()
    optimum_slope, optimum_intercept = regularization.penalized_optimum(x, y, l2=0.05, scale=std)
    # In standardized units (where the penalty and the learning happen).
    np.testing.assert_allclose(slope * std, optimum_slope * std, atol=1e-4)
    assert intercept == pytest.approx(optimum_intercept, abs=1e-3)
    # Raw-unit penalty gives a different optimum: the choice matters.
    raw_slope, _ = regularization.penalized_optimum(x, y, l2=0.05)
    assert np.max(np.abs(raw_slope - optimum_slope)) > 1e-2
    # The penalty the model reports is l2 · Σ (slope · std)².
    penalty = float(model.losses[0])
    assert penalty == pytest.approx(0.05 * np.sum((slope * std) ** 2), rel=1e-4)


def test_standardized_lasso_zero_pattern(problem):
    x, y = problem
    x = x * np.array([1, 10, 0.1, 5, 1, 0.5], "float32")
    std = x.astype("float64").std(axis=0)
    model, _ = full_batch_fit(
        x, y, keras.regularizers.L1(0.1), epochs=300, learning_rate=0.5, standardize=True
    )
    slope, _ = model.get_parameters()
    optimum_slope, _ = regularization.penalized_optimum(x, y, l1=0.1, scale=std)
    np.testing.assert_array_equal(slope == 0.0, optimum_slope == 0.0)
    assert np.count_nonzero(optimum_slope == 0.0) >= 2


def test_weighted_ridge_matches_scikit_learn(problem):
    x, y = problem
    w = np.random.default_rng(5).uniform(0.2, 3.0, N).astype("float32")
    model = keras_linreg.LinearRegression(learning_rate=0.1, slope_regularizer="l2")
    model.compile()
    model.fit(x, y, sample_weight=w, batch_size=N, epochs=3000, shuffle=False, verbose=0)
    slope, intercept = model.get_parameters()
    # Keras' "l2" is L2(0.01). Our objective Σ w r² / n + l2 Σ s²; scikit-learn's
    # Ridge minimises Σ w r² + alpha Σ s², so alpha = n · l2.
    fitted = Ridge(alpha=N * 0.01).fit(x.astype("float64"), y, sample_weight=w.astype("float64"))
    np.testing.assert_allclose(slope, fitted.coef_, atol=1e-4)
    assert intercept == pytest.approx(fitted.intercept_, abs=1e-4)
    ours, ours_b = regularization.penalized_optimum(x, y, w, l2=0.01)
    np.testing.assert_allclose(ours, fitted.coef_, rtol=1e-8)


@pytest.mark.parametrize(
    "identifier, kind, l1, l2",
    [
        ("l1", keras.regularizers.L1, 0.01, 0.0),
        ("l2", keras.regularizers.L2, 0.0, 0.01),
        ("l1_l2", keras.regularizers.L1L2, 0.01, 0.01),
    ],
)
def test_string_identifiers_are_keras_defaults(identifier, kind, l1, l2):
    model = keras_linreg.LinearRegression(n_features=2, slope_regularizer=identifier)
    assert type(model.slope_regularizer) is kind
    assert regularization.coefficients(model.slope_regularizer) == pytest.approx((l1, l2))


@keras.saving.register_keras_serializable(package="keras_linreg_tests")
class SquaredNorm(keras.regularizers.Regularizer):
    """A custom smooth penalty, `strength · Σ slope²` written by hand."""

    def __init__(self, strength):
        self.strength = strength

    def __call__(self, x):
        return self.strength * keras.ops.sum(x * x)

    def get_config(self):
        return {"strength": self.strength}


def test_a_custom_regularizer_is_differentiated_and_saved(problem, tmp_path):
    x, y = problem
    model, _ = full_batch_fit(x, y, SquaredNorm(0.05))
    slope, _ = model.get_parameters()
    np.testing.assert_allclose(slope, regularization.penalized_optimum(x, y, l2=0.05)[0], atol=1e-4)
    path = tmp_path / "custom.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.slope_regularizer, SquaredNorm)
    assert loaded.slope_regularizer.strength == 0.05


def test_config_keras_file_and_export_keep_the_penalty(problem, tmp_path):
    x, y = problem
    model, _ = full_batch_fit(x, y, keras.regularizers.L1L2(l1=0.1, l2=0.05), epochs=50)
    config = model.get_config()
    assert config["slope_regularizer"]["config"] == {"l1": 0.1, "l2": 0.05}
    clone = keras_linreg.LinearRegression.from_config(config)
    assert clone.get_config() == config
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config() == config
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # Training resumes with the penalty: the next epoch equals the original's.
    for m in (model, loaded):
        m.fit(x, y, batch_size=N, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(loaded.get_parameters()[0], model.get_parameters()[0], rtol=1e-6)
    keras_linreg.export_saved_model(model, tmp_path / "export")
    predict, _ = keras_linreg.load_predictor(tmp_path / "export")
    np.testing.assert_allclose(predict(x), model.predict(x, verbose=0), rtol=1e-6)


def test_invalid_regularizer_names_the_argument():
    with pytest.raises(ValueError, match="`slope_regularizer`.*Received: slope_regularizer='l3'"):
        keras_linreg.LinearRegression(slope_regularizer="l3")


def test_without_a_regularizer_the_fits_are_bit_identical():
    # Written by the code before `slope_regularizer` existed (see the fixture).
    spec = importlib.util.spec_from_file_location("fits", FIXTURES / "unregularized_fits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fits = module.fits
    expected = json.loads((FIXTURES / "unregularized_fits.json").read_text())
    assert fits() == expected


def test_without_a_regularizer_the_logs_are_unchanged(problem):
    x, y = problem
    model = keras_linreg.LinearRegression()
    model.compile()
    history = model.fit(x, y, epochs=1, verbose=0)
    assert sorted(history.history) == ["loss"]
    assert model.losses == []


def test_tensorboard_gets_loss_data_loss_and_penalty(problem, tmp_path):
    from test_callbacks import read_run, scalars

    x, y = problem
    model = keras_linreg.LinearRegression(
        learning_rate=0.2, slope_regularizer=keras.regularizers.L1L2(l1=0.1, l2=0.05)
    )
    model.compile()
    history = model.fit(
        x,
        y,
        batch_size=N,
        epochs=4,
        shuffle=False,
        verbose=0,
        callbacks=[keras_linreg.ParameterLogger(str(tmp_path))],
    )
    series = read_run(str(tmp_path / "parameters"))
    for tag in ("loss", "data_loss", "penalty"):
        steps, values = scalars(series, tag)
        assert steps == [0, 1, 2, 3]
        np.testing.assert_allclose(values, history.history[tag], rtol=1e-6)


def test_epochs_to_optimum_and_model_optimum_use_the_penalized_optimum(problem):
    x, y = problem
    model = keras_linreg.LinearRegression(
        learning_rate=0.2, slope_regularizer=keras.regularizers.L1(0.1)
    )
    expected = regularization.penalized_optimum(x, y, l1=0.1)
    # (Keras keeps l1 as float32, 0.1 to 8 digits.)
    np.testing.assert_allclose(regularization.model_optimum(model, x, y)[0], expected[0], rtol=1e-7)
    epochs = keras_linreg.epochs_to_optimum(model, x, y, tolerance=1e-4, max_epochs=3000)
    assert epochs is not None and epochs > 1
    np.testing.assert_allclose(model.get_parameters()[0], expected[0], atol=1e-4)
    # Least squares is further away than the tolerance: the target was the penalized one.
    assert np.max(np.abs(keras_linreg.least_squares(x, y)[0] - expected[0])) > 1e-2


def test_a_custom_regularizer_has_no_reference_optimum(problem):
    x, y = problem
    model = keras_linreg.LinearRegression(slope_regularizer=SquaredNorm(0.1))
    with pytest.raises(ValueError, match="custom regularizer.*Received: slope_regularizer="):
        regularization.model_optimum(model, x, y)


# ------------------------------------------------- least_squares(l2=) and L2 curvature
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "origin"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_least_squares_ridge_equals_scikit_learn(problem, fit_intercept, weighted):
    x, y = problem
    w = np.random.default_rng(8).uniform(0.2, 3.0, N) if weighted else None
    slope, intercept = keras_linreg.least_squares(
        x, y, w, fit_intercept=fit_intercept, l2=0.05
    )
    # Σ w r² / n + l2 Σ s² is scikit-learn's Σ w r² + alpha Σ s² divided by n.
    fitted = Ridge(alpha=N * 0.05, fit_intercept=fit_intercept, solver="cholesky", tol=1e-12)
    fitted = fitted.fit(x.astype("float64"), y.astype("float64"), sample_weight=w)
    np.testing.assert_allclose(slope, fitted.coef_, rtol=1e-8, atol=1e-12)
    assert intercept == pytest.approx(float(fitted.intercept_), rel=1e-8, abs=1e-12)
    if not fit_intercept:
        assert intercept == 0.0


def test_least_squares_through_the_origin_equals_lstsq(problem):
    x, y = problem
    slope, intercept = keras_linreg.least_squares(x, y, fit_intercept=False)
    expected, *_ = np.linalg.lstsq(x.astype("float64"), y.astype("float64"), rcond=None)
    np.testing.assert_allclose(slope, expected, rtol=1e-10)
    assert intercept == 0.0


def test_least_squares_refuses_a_negative_l2(problem):
    x, y = problem
    with pytest.raises(ValueError, match="`l2`.*Received: l2=-0.1"):
        keras_linreg.least_squares(x, y, l2=-0.1)


def test_large_feature_offsets_solve_to_full_precision():
    """Unix timestamps: centring before the solve keeps every digit of the slope."""
    x = 1.7e9 + 60.0 * np.arange(2000)
    y = 1e-3 * (x - 1.7e9)
    slope, intercept = keras_linreg.least_squares(x, y)
    assert slope[0] == pytest.approx(1e-3, rel=1e-10)
    assert intercept == pytest.approx(-1.7e6, rel=1e-10)


def _penalized_gd(x, y, learning_rate, l2, steps):
    """Full-batch gradient descent on Σr²/n + l2 Σs², float64, by hand."""
    design = np.hstack([x.astype(np.float64), np.ones((len(x), 1))])
    y = y.astype(np.float64)
    theta = np.zeros(design.shape[1])
    for _ in range(steps):
        gradient = (2.0 / len(y)) * design.T @ (design @ theta - y)
        gradient[:-1] += 2.0 * l2 * theta[:-1]
        theta = theta - learning_rate * gradient
    return theta


def test_the_stable_rate_counts_the_l2_curvature(problem):
    x, y = problem
    l2 = 2.0  # large enough to move the top eigenvalue visibly
    design = np.hstack([x.astype(np.float64), np.ones((N, 1))])
    hessian = (2.0 / N) * design.T @ design
    hessian[np.arange(K), np.arange(K)] += 2.0 * l2
    expected = 2.0 / np.linalg.eigvalsh(hessian)[-1]
    rate = keras_linreg.max_stable_learning_rate(x, l2=l2)
    assert rate == pytest.approx(expected, rel=1e-10)
    assert rate < 0.8 * keras_linreg.max_stable_learning_rate(x)
    # Just below it gradient descent reaches the ridge optimum; just above, it runs away.
    optimum = np.append(*keras_linreg.least_squares(x, y, l2=l2))
    below = _penalized_gd(x, y, 0.98 * rate, l2, 3000)
    above = _penalized_gd(x, y, 1.02 * rate, l2, 3000)
    assert np.linalg.norm(below - optimum) < 1e-6 * np.linalg.norm(optimum)
    assert np.linalg.norm(above - optimum) > 1e3 * np.linalg.norm(optimum)


def test_a_diverging_ridge_fit_quotes_the_penalized_stable_rate(problem):
    x, y = problem
    l2 = 2.0
    stable = keras_linreg.max_stable_learning_rate(x, l2=l2)
    model = keras_linreg.LinearRegression(
        learning_rate=2.0 * stable, slope_regularizer=keras.regularizers.L2(l2)
    )
    model.compile()
    with pytest.raises(keras_linreg.DivergenceError) as info:
        model.fit(x, y, batch_size=N, epochs=200, shuffle=False, verbose=0)
    # (Keras keeps l2 as float32.)
    assert info.value.max_stable_learning_rate == pytest.approx(stable, rel=1e-6)
    assert f"{stable:.6g}" in str(info.value)


# ------------------------------------------------------ without an intercept
@pytest.mark.parametrize("l1, l2", [(0.0, 0.05), (0.1, 0.0), (0.1, 0.05)])
def test_without_an_intercept_the_optimum_is_scikit_learns_through_the_origin(problem, l1, l2):
    """`fit_intercept=False`: the reference is scikit-learn's `fit_intercept=False` fit
    of `Σr²/n + l1 Σ|s| + l2 Σs²`; the model reaches it with the lasso's exact zeros and
    an intercept of exactly 0."""
    x, y = problem
    x64, y64 = x.astype("float64"), y.astype("float64")
    if l1 == 0:
        reference = Ridge(alpha=len(y) * l2, fit_intercept=False).fit(x64, y64)
    elif l2 == 0:
        reference = Lasso(alpha=l1 / 2, fit_intercept=False, tol=1e-12, max_iter=100_000)
        reference = reference.fit(x64, y64)
    else:
        alpha = l1 / 2 + l2
        reference = ElasticNet(alpha=alpha, l1_ratio=(l1 / 2) / alpha, fit_intercept=False,
                               tol=1e-12, max_iter=100_000).fit(x64, y64)  # fmt: skip
    regularizer = keras.regularizers.L1L2(l1=l1, l2=l2)
    model, _ = full_batch_fit(x, y, regularizer, epochs=300, fit_intercept=False)
    optimum, intercept = regularization.model_optimum(model, x, y)
    assert intercept == 0.0
    np.testing.assert_allclose(optimum, reference.coef_, rtol=1e-6, atol=1e-7)
    slope, intercept = model.get_parameters()
    assert intercept == 0.0
    np.testing.assert_allclose(slope, reference.coef_, atol=1e-4)
    if l1:
        np.testing.assert_array_equal(slope == 0.0, reference.coef_ == 0.0)
    # The data's offset 0.7 matters: with an intercept the optimum differs.
    assert np.max(np.abs(regularization.penalized_optimum(x, y, l1=l1, l2=l2)[0] - optimum)) > 1e-3
