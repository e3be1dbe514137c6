"""`keras_linreg.closed_form`: least squares and the Hessian's stable learning rate.

`least_squares` against hand-worked cases and an independent closed form;
`max_stable_learning_rate` / `hessian_eigenvalues` against the numeric experiment they
predict (float64 gradient descent just below and just above the limit) and against a
direct, unchunked eigendecomposition.
"""

import numpy as np
import pytest

import keras_linreg
from keras_linreg import closed_form


def _design(x):
    x = np.asarray(x, dtype=np.float64)
    x = x[:, None] if x.ndim == 1 else x
    return np.hstack([x, np.ones((len(x), 1))])


def _numpy_gd(x, y, learning_rate, steps, sample_weight=None):
    """Full-batch gradient descent in float64; returns thetas[0..steps] and losses."""
    design = _design(x)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    theta = np.zeros(design.shape[1])
    thetas, losses = [theta.copy()], []
    for _ in range(steps):
        residual = design @ theta - y
        losses.append(np.sum(w * residual**2) / len(y))
        theta = theta - learning_rate * (2.0 / len(y)) * design.T @ (w * residual)
        thetas.append(theta.copy())
    return thetas, losses


def test_exact_line_worked_out_by_hand():
    # y = 2x + 1 through (0, 1), (1, 3), (2, 5): the optimum is exact.
    slope, intercept = keras_linreg.least_squares([0.0, 1.0, 2.0], [1.0, 3.0, 5.0])
    np.testing.assert_allclose(slope, [2.0], atol=1e-12)
    assert intercept == pytest.approx(1.0, abs=1e-12)


def test_two_points_per_x_average():
    # (0, 0), (0, 2), (1, 1), (1, 3): the line through the means (0, 1) and (1, 2).
    slope, intercept = keras_linreg.least_squares([0, 0, 1, 1], [0, 2, 1, 3])
    np.testing.assert_allclose(slope, [1.0], atol=1e-12)
    assert intercept == pytest.approx(1.0, abs=1e-12)


def test_weighted_matches_normal_equations(rng):
    # Independent closed form: theta = (X^T W X)^-1 X^T W y, in float64.
    x = rng.normal(size=(50, 3))
    y = x @ [1.0, -1.0, 2.0] + 0.5 + rng.normal(0, 0.2, 50)
    w = rng.uniform(0.1, 5.0, 50)
    design = np.hstack([x, np.ones((50, 1))])
    theta = np.linalg.solve(design.T @ (w[:, None] * design), design.T @ (w * y))
    slope, intercept = keras_linreg.least_squares(x, y, sample_weight=w)
    np.testing.assert_allclose(slope, theta[:3], rtol=1e-10)
    assert intercept == pytest.approx(theta[3], rel=1e-10)


def test_zero_weight_rows_are_ignored(rng):
    x = rng.normal(size=20)
    y = 3 * x - 1
    y_bad = y.copy()
    y_bad[:5] = 100.0  # outliers with weight 0
    w = np.r_[np.zeros(5), np.ones(15)]
    slope, intercept = keras_linreg.least_squares(x, y_bad, sample_weight=w)
    np.testing.assert_allclose(slope, [3.0], atol=1e-10)
    assert intercept == pytest.approx(-1.0, abs=1e-10)


def test_degenerate_constant_feature_leaves_the_mean_to_the_intercept():
    # x constant: centred, its column is zero, so it explains nothing and the
    # minimum-norm solution in centred coordinates gives it slope 0 and the
    # intercept the mean, 4 (scikit-learn's LinearRegression answers the same).
    # Before centring, lstsq on [x, 1] split the mean: slope 8/5, intercept 4/5.
    slope, intercept = keras_linreg.least_squares([2.0, 2.0, 2.0], [3.0, 4.0, 5.0])
    np.testing.assert_allclose(slope, [0.0], atol=1e-12)
    assert intercept == pytest.approx(4.0, abs=1e-12)


@pytest.mark.parametrize(
    "x, y, w",
    [
        (np.zeros((3, 2)), np.zeros(4), None),
        (np.zeros((0, 2)), np.zeros(0), None),
        (np.zeros(3), np.zeros(3), -np.ones(3)),
    ],
)
def test_invalid_inputs(x, y, w):
    with pytest.raises(ValueError, match="Received"):
        keras_linreg.least_squares(x, y, sample_weight=w)


# ------------------------------------------------------- max_stable_learning_rate
def test_max_stable_learning_rate_on_the_tutorial_data(tutorial_data):
    x, y = tutorial_data
    rate = keras_linreg.max_stable_learning_rate(x)
    assert rate == pytest.approx(0.0292, abs=5e-5)
    optimum = np.append(*keras_linreg.least_squares(x, y))
    # The numeric experiment the formula predicts: just below, GD converges;
    # just above, it runs away.
    below, _ = _numpy_gd(x, y, 0.98 * rate, 3000)
    above, _ = _numpy_gd(x, y, 1.02 * rate, 3000)
    assert np.linalg.norm(below[-1] - optimum) < 1e-3 * np.linalg.norm(optimum)
    assert np.linalg.norm(above[-1] - optimum) > 1e3 * np.linalg.norm(optimum)


def test_max_stable_learning_rate_with_weights_and_features(rng):
    x = rng.normal(size=(50, 3)) * np.array([1.0, 5.0, 0.2]) + 2.0
    y = x @ np.array([1.0, -1.0, 3.0]) + rng.normal(size=50)
    weights = rng.uniform(0.0, 3.0, size=50)
    rate = keras_linreg.max_stable_learning_rate(x, sample_weight=weights)
    optimum = np.append(*keras_linreg.least_squares(x, y, sample_weight=weights))
    below, _ = _numpy_gd(x, y, 0.97 * rate, 20000, weights)
    above, _ = _numpy_gd(x, y, 1.03 * rate, 2000, weights)
    assert np.linalg.norm(below[-1] - below[0]) > 0
    # Converging (slowly along the flat directions) below, exploding above.
    assert np.linalg.norm(below[-1] - optimum) < 0.5 * np.linalg.norm(below[0] - optimum)
    assert np.linalg.norm(above[-1] - optimum) > 1e6 * np.linalg.norm(optimum)
    # Unit weights and no weights agree.
    assert keras_linreg.max_stable_learning_rate(x, np.ones(50)) == pytest.approx(
        keras_linreg.max_stable_learning_rate(x), rel=1e-12
    )


def test_max_stable_learning_rate_refuses_bad_input():
    with pytest.raises(ValueError, match="x.shape=\\(0, 1\\)"):
        keras_linreg.max_stable_learning_rate(np.zeros((0, 1)))
    with pytest.raises(ValueError, match="finite"):
        keras_linreg.max_stable_learning_rate(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="non-negative"):
        keras_linreg.max_stable_learning_rate(np.ones(3), sample_weight=[1, -1, 1])


def test_hessian_eigenvalues_in_chunks_equal_one_direct_decomposition(rng, monkeypatch):
    x = (rng.normal(size=(1003, 3)) * [1.0, 10.0, 0.1] + 5.0).astype("float32")
    w = rng.uniform(0.0, 2.0, size=1003)
    design = _design(x)
    direct = np.linalg.eigvalsh((2.0 / 1003) * design.T @ (w[:, None] * design))
    monkeypatch.setattr(closed_form, "_CHUNK_ROWS", 100)  # 11 chunks, the last one short
    np.testing.assert_allclose(closed_form.hessian_eigenvalues(x, w), direct, rtol=1e-10)
    assert keras_linreg.max_stable_learning_rate(x, w) == pytest.approx(
        2.0 / direct[-1], rel=1e-10
    )


def test_hessian_eigenvalues_of_another_design(rng):
    """`design` maps rows to the prediction's Jacobian, e.g. standardized features."""
    x = rng.normal(3.0, 2.0, size=(50, 2))
    mean, std = x.mean(axis=0), x.std(axis=0)
    eigenvalues = closed_form.hessian_eigenvalues(
        x, design=lambda rows: _design((rows - mean) / std)
    )
    np.testing.assert_allclose(
        eigenvalues, closed_form.hessian_eigenvalues((x - mean) / std), rtol=1e-12
    )
    assert keras_linreg.max_stable_learning_rate(np.zeros(4), np.zeros(4)) == float("inf")


def test_hessian_eigenvalues_without_an_intercept_drop_the_ones_column(rng, monkeypatch):
    """`fit_intercept=False`: `H = (2/n) xᵀ W x`, no row or column for an intercept."""
    x = (rng.normal(size=(1003, 3)) * [1.0, 10.0, 0.1] + 5.0).astype("float32")
    w = rng.uniform(0.0, 2.0, size=1003)
    x64 = x.astype(np.float64)
    direct = np.linalg.eigvalsh((2.0 / 1003) * x64.T @ (w[:, None] * x64))
    monkeypatch.setattr(closed_form, "_CHUNK_ROWS", 100)
    eigenvalues = closed_form.hessian_eigenvalues(x, w, fit_intercept=False)
    assert eigenvalues.shape == (3,)
    np.testing.assert_allclose(eigenvalues, direct, rtol=1e-10)
    assert keras_linreg.max_stable_learning_rate(x, w, fit_intercept=False) == pytest.approx(
        2.0 / direct[-1], rel=1e-10
    )
    # The L2 curvature joins every slope entry (all of H here).
    np.testing.assert_allclose(
        closed_form.hessian_eigenvalues(x, w, fit_intercept=False, l2=0.3), direct + 0.6,
        rtol=1e-10,
    )
