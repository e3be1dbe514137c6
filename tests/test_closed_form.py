"""least_squares against hand-worked cases and an independent closed form."""

import numpy as np
import pytest

import keras_linreg


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


def test_degenerate_constant_feature_gives_minimum_norm_solution():
    # x constant: slope and intercept are not identified; lstsq's minimum-norm
    # solution splits the mean 4 between them: slope*2 + intercept = 4, min
    # slope**2 + intercept**2 -> slope = 8/5, intercept = 4/5.
    slope, intercept = keras_linreg.least_squares([2.0, 2.0, 2.0], [3.0, 4.0, 5.0])
    np.testing.assert_allclose(slope, [1.6], atol=1e-12)
    assert intercept == pytest.approx(0.8, abs=1e-12)


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
