"""LinearRegression: numerics, shapes, sample weights, metrics, reproducibility."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_linreg


def _fit(model, x, y, **kwargs):
    kwargs.setdefault("verbose", 0)
    kwargs.setdefault("shuffle", False)
    return model.fit(x, y, **kwargs)


def _hand_loop(x, y, learning_rate, epochs, sample_weight=None):
    """The tutorial's hand-written GradientTape loop, in float32 (one feature)."""
    weight, bias = tf.Variable(0.0), tf.Variable(0.0)
    x, y = tf.constant(x), tf.constant(y)
    w = tf.ones_like(y) if sample_weight is None else tf.constant(sample_weight)
    losses = []
    for _ in range(epochs):
        with tf.GradientTape() as tape:
            y_predicted = weight * x + bias
            loss = tf.reduce_mean(w * tf.square(y_predicted - y))
        gradients = tape.gradient(loss, [weight, bias])
        weight.assign_sub(gradients[0] * learning_rate)
        bias.assign_sub(gradients[1] * learning_rate)
        losses.append(float(loss))
    return np.array(losses), float(weight.numpy()), float(bias.numpy())


def test_tutorial_loop_and_fit_agree(tutorial_data):
    x, y = tutorial_data
    losses, weight, bias = _hand_loop(x, y, 0.01, 100)

    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    history = _fit(model, x, y, batch_size=100, epochs=100)

    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-5)
    np.testing.assert_allclose(model.slope.numpy(), [weight], rtol=1e-5)
    np.testing.assert_allclose(model.intercept.numpy(), bias, rtol=1e-5)
    # The tutorial's shape: a steep fall, then a slow crawl of the intercept.
    assert losses[0] > 10 * losses[5]
    assert model.optimizer.iterations.numpy() == 100


def test_one_step_worked_out_by_hand():
    # x = [1, 2], y = [3, 5], slope = intercept = 0, lr = 0.1:
    # residuals r = y_pred - y = [-3, -5]; loss = (9 + 25) / 2 = 17
    # d/dslope = 2/n * sum(r * x) = (-3 - 10) = -13
    # d/dintercept = 2/n * sum(r) = -8
    # slope = 0 - 0.1 * -13 = 1.3; intercept = 0 - 0.1 * -8 = 0.8
    model = keras_linreg.LinearRegression(learning_rate=0.1)
    model.compile()
    history = _fit(model, np.array([1.0, 2.0]), np.array([3.0, 5.0]), batch_size=2, epochs=1)
    assert history.history["loss"] == [pytest.approx(17.0, rel=1e-6)]
    np.testing.assert_allclose(model.slope.numpy(), [1.3], rtol=1e-6)
    np.testing.assert_allclose(model.intercept.numpy(), 0.8, rtol=1e-6)


def test_sample_weights_one_step_by_hand():
    # Same data, weights w = [1, 3]: loss = (1*9 + 3*25) / 2 = 42
    # d/dslope = 2/n * sum(w r x) = (-3 - 30) = -33; d/dintercept = (-3 - 15) = -18
    model = keras_linreg.LinearRegression(learning_rate=0.1)
    model.compile()
    history = _fit(
        model,
        np.array([1.0, 2.0]),
        np.array([3.0, 5.0]),
        sample_weight=np.array([1.0, 3.0]),
        batch_size=2,
        epochs=1,
    )
    assert history.history["loss"] == [pytest.approx(42.0, rel=1e-6)]
    np.testing.assert_allclose(model.slope.numpy(), [3.3], rtol=1e-6)
    np.testing.assert_allclose(model.intercept.numpy(), 1.8, rtol=1e-6)


def test_sample_weights_match_weighted_hand_loop(tutorial_data, rng):
    x, y = tutorial_data
    w = rng.uniform(0.1, 3.0, len(x)).astype("float32")
    losses, weight, bias = _hand_loop(x, y, 0.01, 30, sample_weight=w)
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    history = _fit(model, x, y, sample_weight=w, batch_size=100, epochs=30)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-5)
    np.testing.assert_allclose(model.get_parameters()[0], [weight], rtol=1e-5)
    np.testing.assert_allclose(model.get_parameters()[1], bias, rtol=1e-5)


def test_weighted_fit_reaches_weighted_least_squares(rng):
    x = rng.normal(size=(400, 3)).astype("float32")
    y = (x @ [1.5, -2.0, 0.5] + 0.7 + rng.normal(0, 0.3, 400)).astype("float32")
    w = rng.uniform(0.2, 2.0, 400).astype("float32")
    model = keras_linreg.LinearRegression(learning_rate=0.3)
    model.compile()
    _fit(model, x, y, sample_weight=w, batch_size=400, epochs=300)
    slope, intercept = keras_linreg.least_squares(x, y, sample_weight=w)
    unweighted_slope, _ = keras_linreg.least_squares(x, y)
    assert np.max(np.abs(slope - unweighted_slope)) > 1e-3  # the weights matter here
    np.testing.assert_allclose(model.get_parameters()[0], slope, atol=1e-4)
    np.testing.assert_allclose(model.get_parameters()[1], intercept, atol=1e-4)


def test_several_features_reach_least_squares(rng):
    x = rng.normal(size=(500, 4)).astype("float32")
    y = (x @ [1.0, -2.0, 3.0, 0.5] - 1.0 + rng.normal(0, 0.1, 500)).astype("float32")
    model = keras_linreg.LinearRegression(learning_rate=0.2)
    model.compile()
    _fit(model, x, y, batch_size=500, epochs=300)
    slope, intercept = keras_linreg.least_squares(x, y)
    np.testing.assert_allclose(model.get_parameters()[0], slope, atol=1e-4)
    np.testing.assert_allclose(model.get_parameters()[1], intercept, atol=1e-4)


def test_epoch_loss_is_size_weighted_mean_of_batch_losses(tutorial_data):
    x, y = tutorial_data
    # Batches of 30, 30, 30, 10, against a float64 hand loop over the same batches.
    model = keras_linreg.LinearRegression(learning_rate=0.001)
    model.compile()
    history = _fit(model, x, y, batch_size=30, epochs=1)

    weight, bias, batch_losses, sizes = 0.0, 0.0, [], []
    for start in range(0, 100, 30):
        xb, yb = x[start : start + 30].astype("float64"), y[start : start + 30].astype("float64")
        r = weight * xb + bias - yb
        batch_losses.append(np.mean(r**2))
        sizes.append(len(xb))
        weight -= 0.001 * 2 * np.mean(r * xb)
        bias -= 0.001 * 2 * np.mean(r)
    expected = np.average(batch_losses, weights=sizes)
    assert abs(expected - np.mean(batch_losses)) > 1e-3 * expected  # the weighting matters
    np.testing.assert_allclose(history.history["loss"][0], expected, rtol=1e-5)
    np.testing.assert_allclose(model.slope.numpy(), [weight], rtol=1e-5)


def test_evaluate_is_exact_mse_with_short_last_batch(rng):
    x = rng.normal(size=(103, 2)).astype("float32")
    y = rng.normal(size=103).astype("float32")
    w = rng.uniform(0.5, 2.0, 103).astype("float32")
    model = keras_linreg.LinearRegression(
        n_features=2,
        slope_initializer=keras.initializers.Constant(0.5),
        intercept_initializer=keras.initializers.Constant(-0.25),
    )
    model.compile()
    residual = x.astype("float64") @ [0.5, 0.5] - 0.25 - y
    for batch_size in (103, 10, 50):
        loss = model.evaluate(x, y, batch_size=batch_size, verbose=0)
        np.testing.assert_allclose(loss, np.mean(residual**2), rtol=1e-5)
        weighted = model.evaluate(x, y, sample_weight=w, batch_size=batch_size, verbose=0)
        np.testing.assert_allclose(weighted, np.mean(w * residual**2), rtol=1e-5)


@pytest.mark.parametrize("y_shape", ["flat", "column"])
@pytest.mark.parametrize("x_shape", ["flat", "column"])
def test_input_shapes(tutorial_data, x_shape, y_shape):
    x, y = tutorial_data
    x_in = x if x_shape == "flat" else x[:, None]
    y_in = y if y_shape == "flat" else y[:, None]
    model = keras_linreg.LinearRegression()
    model.compile()
    history = _fit(model, x_in, y_in, batch_size=100, epochs=5)
    reference, *_ = _hand_loop(x, y, 0.01, 5)
    # A (n,) - (n, 1) broadcast to (n, n) would give a very different loss.
    np.testing.assert_allclose(history.history["loss"], reference, rtol=1e-5)
    assert model.slope.shape == (1,) and model.intercept.shape == ()
    assert model.predict(x_in, verbose=0).shape == (100,)
    assert model(x_in).shape == (100,)


def test_predict_matches_parameters(rng):
    x = rng.normal(size=(37, 3)).astype("float32")
    model = keras_linreg.LinearRegression(
        n_features=3,
        slope_initializer=keras.initializers.RandomNormal(seed=1),
        intercept_initializer=keras.initializers.Constant(2.0),
    )
    slope, intercept = model.get_parameters()
    np.testing.assert_allclose(
        model.predict(x, batch_size=10, verbose=0), x @ slope + intercept, rtol=1e-5
    )


def test_integer_and_float64_inputs_are_cast():
    model = keras_linreg.LinearRegression(learning_rate=0.1)
    model.compile()
    history = _fit(model, np.array([1, 2]), np.array([3, 5]), batch_size=2, epochs=1)
    assert history.history["loss"] == [pytest.approx(17.0, rel=1e-6)]
    assert model.slope.dtype == "float32"


def test_n_features_builds_at_construction():
    model = keras_linreg.LinearRegression(n_features=3)
    assert model.built
    assert model.slope.shape == (3,)
    assert [w.name for w in model.trainable_weights] == ["slope", "intercept"]
    np.testing.assert_array_equal(model.slope.numpy(), np.zeros(3))


def test_initializers_by_name_and_object():
    model = keras_linreg.LinearRegression(
        n_features=2, slope_initializer="ones", intercept_initializer=keras.initializers.Constant(3)
    )
    np.testing.assert_array_equal(model.slope.numpy(), [1.0, 1.0])
    assert float(model.intercept.numpy()) == 3.0


def test_compiled_metrics_are_reported(tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile(metrics=[keras.metrics.RootMeanSquaredError(), keras.metrics.R2Score()])
    history = _fit(model, x, y, batch_size=100, epochs=3)
    logs = model.evaluate(x, y, batch_size=100, verbose=0, return_dict=True)
    residual = model.predict(x, verbose=0).astype("float64") - y
    np.testing.assert_allclose(logs["loss"], np.mean(residual**2), rtol=1e-5)
    np.testing.assert_allclose(
        logs["root_mean_squared_error"], np.sqrt(np.mean(residual**2)), rtol=1e-5
    )
    r2 = 1 - np.sum(residual**2) / np.sum((y - y.mean()) ** 2)
    np.testing.assert_allclose(logs["r2_score"], r2, rtol=1e-5)
    # Training metrics are computed on the predictions before each update.
    np.testing.assert_allclose(
        history.history["root_mean_squared_error"], np.sqrt(history.history["loss"]), rtol=1e-5
    )


def test_validation_split_and_data_report_val_loss(tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    history = _fit(model, x, y, batch_size=80, epochs=2, validation_split=0.2)
    assert len(history.history["val_loss"]) == 2
    residual = model.predict(x[80:], verbose=0).astype("float64") - y[80:]
    np.testing.assert_allclose(history.history["val_loss"][-1], np.mean(residual**2), rtol=1e-5)

    history = _fit(model, x, y, batch_size=100, epochs=1, validation_data=(x[:10], y[:10]))
    residual = model.predict(x[:10], verbose=0).astype("float64") - y[:10]
    np.testing.assert_allclose(history.history["val_loss"][-1], np.mean(residual**2), rtol=1e-5)


def test_seeded_runs_are_identical_with_shuffling(rng):
    x = rng.normal(size=(200, 2)).astype("float32")
    y = (x @ [1.0, 2.0] + rng.normal(0, 0.1, 200)).astype("float32")

    def run(seed):
        keras.utils.set_random_seed(seed)
        model = keras_linreg.LinearRegression(learning_rate=0.05)
        model.compile()
        history = model.fit(x, y, batch_size=32, epochs=3, shuffle=True, verbose=0)
        return history.history["loss"], model.slope.numpy()

    first, second, other = run(7), run(7), run(8)
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
    assert first[0] != other[0]  # shuffling happened, and depends on the seed


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"learning_rate": 0}, "Received: learning_rate=0"),
        ({"learning_rate": -0.1}, "Received: learning_rate=-0.1"),
        ({"learning_rate": "fast"}, "Received: learning_rate='fast'"),
        ({"learning_rate": float("nan")}, "learning_rate=nan"),
        ({"n_features": 0}, "Received: n_features=0"),
        ({"n_features": 2.5}, "Received: n_features=2.5"),
        ({"n_features": 2, "feature_names": ["a"]}, "expected 2 names"),
        ({"feature_names": ["a", "a"]}, "expected unique names"),
    ],
)
def test_invalid_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match="Received an invalid value for") as error:
        keras_linreg.LinearRegression(**kwargs)
    assert message in str(error.value)


def test_feature_names_set_n_features():
    model = keras_linreg.LinearRegression(feature_names=["a", "b"])
    assert model.n_features == 2 and model.built
    assert model.feature_names == ("a", "b")


def test_wrong_feature_count_is_a_clear_error():
    model = keras_linreg.LinearRegression(n_features=3)
    with pytest.raises(ValueError, match=r"2 features, but this model has n_features=3"):
        model(np.zeros((4, 2), "float32"))


def test_y_with_several_columns_is_refused():
    model = keras_linreg.LinearRegression()
    model.compile()
    with pytest.raises(ValueError, match=r"expected shape `\(n,\)` or `\(n, 1\)`"):
        model.fit(np.zeros((4, 1)), np.zeros((4, 2)), verbose=0)


def test_get_parameters_before_build_is_a_clear_error():
    with pytest.raises(ValueError, match="has not been built yet"):
        keras_linreg.LinearRegression().get_parameters()
