"""`keras_linreg.convergence.epochs_to_optimum`, against the float64 NumPy reference."""

import numpy as np

import keras_linreg
from keras_linreg_cli.convergence_table import gradient_descent_epochs


def test_an_uncompiled_model_is_compiled_and_stops_at_the_optimum(tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.1, standardize=True)
    epochs = keras_linreg.epochs_to_optimum(model, x, y)
    assert model.compiled and epochs == gradient_descent_epochs(x, y, 0.1, standardize=True)
    assert int(model.optimizer.iterations.numpy()) == epochs  # it stopped there
    slope, intercept = keras_linreg.least_squares(x, y)
    np.testing.assert_allclose(model.get_parameters()[0], slope, atol=1e-4)
    # Already there: 0 epochs, no further update.
    assert keras_linreg.epochs_to_optimum(model, x, y) == 0
    assert int(model.optimizer.iterations.numpy()) == epochs


def test_sample_weights_count_in_the_fit_and_the_optimum(rng):
    x = rng.normal(3.0, 2.0, size=(60, 2)).astype("float32")
    y = (x @ [1.5, -0.5] + 2.0 + rng.normal(0, 0.3, 60)).astype("float32")
    weights = rng.uniform(0.2, 3.0, 60)
    model = keras_linreg.LinearRegression(learning_rate=0.3, standardize=True)
    epochs = keras_linreg.epochs_to_optimum(model, x, y, sample_weight=weights)
    reference = gradient_descent_epochs(x, y, 0.3, standardize=True, sample_weight=weights)
    assert epochs is not None and abs(epochs - reference) <= 1  # float32 vs float64
    slope, intercept = keras_linreg.least_squares(x, y, weights)
    np.testing.assert_allclose(model.get_parameters()[0], slope, atol=1e-4)
    assert abs(model.get_parameters()[1] - intercept) <= 1e-4


# ------------------------------------------------ relative gap, warning, stopping
import warnings  # noqa: E402

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_linreg import convergence  # noqa: E402


def _problem(rng, n=200):
    x = rng.normal(size=(n, 3)) * np.array([1.0, 100.0, 0.01]) + np.array([0.0, 500.0, 3.0])
    y = x @ np.array([2.0, -0.03, 50.0]) + 4.0 + rng.normal(size=n)
    return x.astype("float32"), y.astype("float32")


def test_relative_gap_by_hand_and_invariant_to_units(rng):
    x, y = _problem(rng)
    model = keras_linreg.LinearRegression(n_features=3)
    slope, intercept = keras_linreg.least_squares(x, y)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    scale = np.append(y64.std() / x64.std(axis=0), y64.std())
    optimum = np.append(slope, intercept)
    # The model sits at 0: the gap is max |θ*| / (|θ*| + scale).
    expected = np.max(np.abs(optimum) / (np.abs(optimum) + scale))
    assert convergence.relative_gap(model, x, y) == pytest.approx(expected, rel=1e-9)
    model.slope.assign(slope.astype("float32"))
    model.intercept.assign(np.float32(intercept))
    at_optimum = convergence.relative_gap(model, x, y)
    assert at_optimum < 1e-6  # float32 rounding of the parameters only
    # Rescaling x and y changes no relative gap.
    model.slope.assign((slope * 0.5).astype("float32"))
    gap = convergence.relative_gap(model, x, y)
    rescaled = keras_linreg.LinearRegression(n_features=3)
    rescaled.slope.assign((slope * 0.5 * 10.0 / 7.0).astype("float32"))
    rescaled.intercept.assign(np.float32(intercept * 10.0))
    assert convergence.relative_gap(rescaled, x * 7.0, y * 10.0) == pytest.approx(gap, rel=1e-5)


def test_check_convergence_warns_only_when_far(rng):
    x, y = _problem(rng)
    model = keras_linreg.LinearRegression(n_features=3, learning_rate="auto", standardize=True)
    model.compile()
    model.fit(x, y, batch_size=len(y), epochs=2, shuffle=False, verbose=0)
    with pytest.warns(keras_linreg.ConvergenceWarning, match="has not converged.*more epochs"):
        gap = keras_linreg.check_convergence(model, x, y)
    assert gap > convergence.DEFAULT_TOLERANCE
    stop = convergence.OptimumStopping(x, y)
    model.fit(x, y, batch_size=len(y), epochs=5000, shuffle=False, verbose=0, callbacks=[stop])
    assert stop.reached_epoch is not None and stop.gap <= convergence.DEFAULT_TOLERANCE
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert keras_linreg.check_convergence(model, x, y) <= convergence.DEFAULT_TOLERANCE
    with pytest.raises(ValueError, match="`tolerance`.*Received: tolerance=0"):
        keras_linreg.check_convergence(model, x, y, tolerance=0)


def test_optimum_stopping_stops_at_the_first_epoch_within_tolerance(tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.02)
    model.compile()
    stop = convergence.OptimumStopping(x, y, tolerance=1e-4)
    gaps = []
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: gaps.append(convergence.relative_gap(model, x, y))
    )
    history = model.fit(x, y, batch_size=100, epochs=20_000, shuffle=False, verbose=0,
                        callbacks=[recorder, stop])  # fmt: skip
    assert stop.reached_epoch == len(history.history["loss"]) == len(gaps)
    assert gaps[-1] <= 1e-4 < gaps[-2]


def test_convergence_stopping_on_the_loss():
    # A loss that improves by halves, then stays flat: stops n_iter_no_change later.
    stop = keras_linreg.ConvergenceStopping(tol=1e-3, n_iter_no_change=3)
    model = keras_linreg.LinearRegression(n_features=1)
    model.stop_training = False  # what `fit` sets before its first epoch
    stop.set_model(model)
    stop.on_train_begin()
    losses = [1.0, 0.5, 0.25, 0.2499999, 0.2499999, 0.2499998, 0.1]
    for epoch, loss in enumerate(losses):
        stop.on_epoch_end(epoch, {"loss": loss})
        if model.stop_training:
            break
    assert stop.stopped_epoch == 6  # epochs 4, 5, 6 improved by < 1e-3 relative
    for bad in (dict(tol=-1.0), dict(tol=float("nan")), dict(n_iter_no_change=0)):
        with pytest.raises(ValueError, match="Received an invalid value"):
            keras_linreg.ConvergenceStopping(**bad)


def test_convergence_stopping_ends_a_real_fit(tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate="auto", standardize=True)
    model.compile()
    stop = keras_linreg.ConvergenceStopping(tol=1e-9, n_iter_no_change=5)
    history = model.fit(x, y, batch_size=100, epochs=1000, shuffle=False, verbose=0,
                        callbacks=[stop])  # fmt: skip
    assert stop.stopped_epoch == len(history.history["loss"]) < 1000
    slope, intercept = model.get_parameters()
    np.testing.assert_allclose(np.append(slope, intercept),
                               np.append(*keras_linreg.least_squares(x, y)), rtol=1e-5)  # fmt: skip


# ------------------------------------------------------------ learning_rate="auto"
def _hessian_top(z, w=None):
    design = np.hstack([z, np.ones((len(z), 1))])
    w = np.ones(len(z)) if w is None else w
    return np.linalg.eigvalsh((2.0 / len(z)) * design.T @ (w[:, None] * design))[-1]


def test_auto_learning_rate_is_one_over_the_top_eigenvalue(rng):
    x, y = _problem(rng)
    w = rng.uniform(0.5, 2.0, len(y))
    model = keras_linreg.LinearRegression(learning_rate="auto")
    model.compile()
    assert model.learning_rate == "auto"
    model.fit(x, y, sample_weight=w, batch_size=150, epochs=1, validation_split=0.25, verbose=0)
    train = 150  # Keras' cut of 200 rows at 0.25: one full batch
    expected = 1.0 / _hessian_top(x[:train].astype(np.float64), w[:train])
    assert model.learning_rate == pytest.approx(expected, rel=1e-5)
    assert model.get_config()["learning_rate"] == "auto"
    clone = keras_linreg.LinearRegression.from_config(model.get_config())
    assert clone.learning_rate_config == "auto"


def test_auto_learning_rate_for_mini_batches_is_ma_bassily_belkin(rng):
    x, y = _problem(rng)
    w = rng.uniform(0.5, 2.0, len(y))
    model = keras_linreg.LinearRegression(learning_rate="auto")
    model.compile()
    model.fit(x, y, sample_weight=w, batch_size=10, epochs=1, verbose=0)
    x64 = x.astype(np.float64)
    design = np.hstack([x64, np.ones((len(x64), 1))])
    largest = _hessian_top(x64, w)
    sharpest = np.max(2.0 * w * np.sum(design**2, axis=1))  # one row's curvature
    expected = 10 / (sharpest + 9 * largest)
    assert model.learning_rate == pytest.approx(expected, rel=1e-5)
    assert model.learning_rate < 0.9 / largest  # less than the full-batch rate


def test_auto_learning_rate_trains_wide_data_on_small_batches(rng):
    """100 standardized features, Keras' default batch of 32: the full-batch rate
    1/λmax diverges there (each batch's Hessian is far sharper); the auto rate trains."""
    x = rng.normal(size=(3000, 100)).astype("float32")
    y = (x @ rng.normal(size=100) + 1.0 + rng.normal(0, 0.1, 3000)).astype("float32")
    full_batch_rate = 1.0 / _hessian_top(x.astype(np.float64))
    too_fast = keras_linreg.LinearRegression(learning_rate=full_batch_rate)
    too_fast.compile()
    with pytest.raises(keras_linreg.DivergenceError, match='or learning_rate="auto"'):
        too_fast.fit(x, y, epochs=3, verbose=0)
    model = keras_linreg.LinearRegression(learning_rate="auto")
    model.compile()
    history = model.fit(x, y, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.05 * losses[0]
    slope, _ = keras_linreg.least_squares(x, y)
    np.testing.assert_allclose(model.get_parameters()[0], slope, atol=0.1)


def test_an_auto_rate_is_saved_once_computed(rng, tmp_path):
    x, y = _problem(rng)
    model = keras_linreg.LinearRegression(n_features=3, learning_rate="auto", standardize=True)
    model.compile()
    model.save(tmp_path / "before.keras")  # saved before any fit: still to compute
    model.fit(x, y, batch_size=len(y), epochs=1, verbose=0)
    rate = model.learning_rate
    model.save(tmp_path / "after.keras")
    loaded = keras.models.load_model(tmp_path / "after.keras")
    assert loaded.learning_rate == pytest.approx(rate, rel=1e-7)
    loaded.fit(x * 10.0, y, batch_size=len(y), epochs=1, verbose=0)  # other data: kept
    assert loaded.learning_rate == pytest.approx(rate, rel=1e-7)
    pending = keras.models.load_model(tmp_path / "before.keras")
    assert pending.learning_rate == "auto"
    pending.fit(x, y, batch_size=len(y), epochs=1, verbose=0)
    assert pending.learning_rate == pytest.approx(rate, rel=1e-6)


def test_auto_learning_rate_standardized_and_penalized(rng):
    x, y = _problem(rng)
    model = keras_linreg.LinearRegression(
        learning_rate="auto", standardize=True, slope_regularizer=keras.regularizers.L2(0.5)
    )
    model.compile()
    model.fit(x, y, batch_size=len(y), epochs=1, verbose=0)
    x64 = x.astype(np.float64)
    z = (x64 - x64.mean(axis=0)) / x64.std(axis=0)
    design = np.hstack([z, np.ones((len(z), 1))])
    hessian = (2.0 / len(z)) * design.T @ design
    hessian[np.arange(3), np.arange(3)] += 2.0 * 0.5
    assert model.learning_rate == pytest.approx(1.0 / np.linalg.eigvalsh(hessian)[-1], rel=1e-5)


def test_auto_learning_rate_needs_in_memory_data(rng):
    x, y = _problem(rng)
    model = keras_linreg.LinearRegression(n_features=3, learning_rate="auto")
    model.compile()
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(50)
    with pytest.raises(ValueError, match='learning_rate="auto".*Received: x of type'):
        model.fit(dataset, epochs=1, verbose=0)
    with pytest.raises(ValueError, match='or "auto". Received: learning_rate=\'fast\''):
        keras_linreg.LinearRegression(learning_rate="fast")


# ------------------------------------------------------ divergence: standardize hint
def test_a_badly_scaled_divergence_suggests_standardizing(rng):
    x, y = _problem(rng)
    model = keras_linreg.LinearRegression(learning_rate=1.0)
    model.compile()
    with pytest.raises(keras_linreg.DivergenceError, match="badly scaled.*standardize=True"):
        model.fit(x, y, batch_size=len(y), epochs=50, shuffle=False, verbose=0)
    well_scaled = rng.normal(size=(200, 2)).astype("float32")
    model = keras_linreg.LinearRegression(learning_rate=5.0)
    model.compile()
    with pytest.raises(keras_linreg.DivergenceError) as info:
        model.fit(well_scaled, well_scaled @ np.ones(2), batch_size=200, epochs=50,
                  shuffle=False, verbose=0)  # fmt: skip
    assert "badly scaled" not in str(info.value)
