"""`keras_linreg.closed_form`: least squares and the Hessian's stable learning rate.

`least_squares` against hand-worked cases and an independent closed form;
`max_stable_learning_rate` / `hessian_eigenvalues` against the numeric experiment they
predict (float64 gradient descent just below and just above the limit) and against a
direct, unchunked eigendecomposition.
"""

import _nist
import numpy as np
import pytest
import tensorflow as tf
from _reference import design as _design
from _reference import numpy_gd as _numpy_gd

import keras_linreg
from keras_linreg import closed_form


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
    # x constant: centred, its column is zero, so it explains nothing; the rank
    # rule drops it (slope 0) and the intercept is the mean, 4 (scikit-learn's
    # LinearRegression answers the same). Before centring, lstsq on [x, 1] split
    # the mean: slope 8/5, intercept 4/5.
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


# ------------------------------------------- accuracy: NIST StRD, large offsets
NIST_NAMES = ["Norris", "Pontius", "NoInt1", "NoInt2", "Filip", "Longley",
              "Wampler1", "Wampler2", "Wampler3", "Wampler4", "Wampler5"]  # fmt: skip


@pytest.mark.parametrize("name", NIST_NAMES)
def test_nist_certified_parameters(name):
    """≥ 7 correct digits on every StRD dataset (Wampler5 ≥ 6), Filip included.

    Filip (degree-10 polynomial) is full rank: a rank rule on raw singular values
    (lstsq's) drops a direction and answers 0 digits.
    """
    dataset = _nist.load_or_skip()[name]
    x, y, fit_intercept = _nist.design(dataset)
    slope, intercept = keras_linreg.least_squares(x, y, fit_intercept=fit_intercept)
    estimate = np.r_[slope, intercept] if fit_intercept else slope
    digits = _nist.digits(estimate, _nist.certified_in_our_order(dataset, "certified_params"))
    print(f"{name}: {digits:.1f} digits")
    assert digits >= (6 if name == "Wampler5" else 7)


def test_timestamps_solve_to_ten_digits_in_memory_and_streamed():
    x = 1.7e9 + 60.0 * np.arange(2000)
    y = 1e-3 * (x - 1.7e9)
    batches = [(x[i : i + 300], y[i : i + 300]) for i in range(0, 2000, 300)]
    for slope, intercept in (keras_linreg.least_squares(x, y),
                             keras_linreg.least_squares(batches)):
        assert slope[0] == pytest.approx(1e-3, rel=1e-10)
        assert intercept == pytest.approx(-1.7e6, rel=1e-10)


# ---------------------------------------------------------------- streaming
@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "origin"])
@pytest.mark.parametrize("l2", [0.0, 0.05])
def test_batches_equal_the_arrays(rng, fit_intercept, l2):
    x = rng.normal(size=(101, 3)) * [1.0, 30.0, 0.01] + [5.0, -300.0, 2.0]
    y = x @ [0.5, 0.02, 40.0] + 3.0 + rng.normal(size=101)
    w = rng.uniform(0.0, 2.0, size=101)
    expected = keras_linreg.least_squares(x, y, w, fit_intercept=fit_intercept, l2=l2)
    lists = [(x[i : i + 10], y[i : i + 10], w[i : i + 10]) for i in range(0, 101, 10)]
    dataset = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(13)
    generator = ((tf.constant(a), tf.constant(b), c) for a, b, c in lists)
    for batches in (lists, dataset, generator):
        slope, intercept = keras_linreg.least_squares(batches, fit_intercept=fit_intercept, l2=l2)
        np.testing.assert_allclose(slope, expected[0], rtol=1e-10)
        assert intercept == pytest.approx(expected[1], rel=1e-10, abs=1e-12)


def test_a_first_batch_far_from_the_mean_still_centres_exactly():
    """The shift comes from the first batch; the ones column in the QR removes the rest."""
    x = np.r_[np.full(5, 1e6), 1e6 + 1e3 * np.arange(1, 996)]
    y = 2.5 * (x - 1e6) + 7.0
    slope, intercept = keras_linreg.least_squares([(x[:5], y[:5]), (x[5:], y[5:])])
    assert slope[0] == pytest.approx(2.5, rel=1e-12)
    assert intercept == pytest.approx(7.0 - 2.5e6, rel=1e-12)


def test_large_arrays_are_solved_in_chunks(rng, monkeypatch):
    x = rng.normal(size=(500, 2)) + [1e4, 0.0]
    y = x @ [1.0, 2.0] + rng.normal(size=500)
    expected = keras_linreg.least_squares(x, y)
    monkeypatch.setattr(closed_form, "_REFINE_MAX_ENTRIES", 100)
    monkeypatch.setattr(closed_form, "_CHUNK_ROWS", 64)
    slope, intercept = keras_linreg.least_squares(x, y)
    np.testing.assert_allclose(slope, expected[0], rtol=1e-10)
    assert intercept == pytest.approx(expected[1], rel=1e-10)


@pytest.mark.parametrize(
    "batches, match",
    [
        ([], "empty iterable"),
        ([(np.ones(3), np.ones(3)), (np.ones((3, 2)), np.ones(3))], "batch 1 .* 2 features"),
        ([np.ones(3)], "batch 0 .*`\\(x, y\\)`"),
        ([(np.ones(3), np.ones(2))], "batch 0 .*`y` with 2 rows"),
    ],
)
def test_invalid_batches_name_the_batch(batches, match):
    with pytest.raises(ValueError, match=match):
        keras_linreg.least_squares(batches)


# -------------------------------------------------------- rank deficiency
def test_an_exactly_collinear_column_gets_slope_zero(rng):
    """The documented answer: a dependent column is dropped (slope 0), the rest fitted."""
    x = rng.normal(size=(40, 2))
    x3 = np.column_stack([x, x[:, 0] - 3.0 * x[:, 1]])
    y = x @ [1.0, 2.0] + 0.5 + rng.normal(0, 0.1, 40)
    slope, intercept = keras_linreg.least_squares(x3, y)
    reduced = np.linalg.lstsq(np.column_stack([x, np.ones(40)]), y, rcond=None)[0]
    np.testing.assert_allclose(slope, [*reduced[:2], 0.0], rtol=1e-10, atol=1e-14)
    assert intercept == pytest.approx(reduced[2], rel=1e-10)


def test_fewer_rows_than_features_still_fits_the_rows(rng):
    # 3 rows, 5 features: the basic solution interpolates, as lstsq's does.
    x = rng.normal(size=(3, 5))
    y = rng.normal(size=3)
    slope, intercept = keras_linreg.least_squares(x, y)
    np.testing.assert_allclose(x @ slope + intercept, y, atol=1e-12)
    assert np.count_nonzero(slope) == 2  # intercept + 2 slopes span the 3 rows


def test_all_zero_weights_give_zero():
    slope, intercept = keras_linreg.least_squares(np.arange(4.0), np.arange(4.0), np.zeros(4))
    np.testing.assert_array_equal(slope, [0.0])
    assert intercept == 0.0


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
