"""get_config/from_config and `.keras` round trips: training resumes exactly."""

import warnings

import keras
import numpy as np
import pytest

import keras_linreg


def test_get_config_round_trip():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.9)
    model = keras_linreg.LinearRegression(
        n_features=2,
        learning_rate=schedule,
        slope_initializer=keras.initializers.Constant(0.5),
        intercept_initializer="ones",
        feature_names=["height", "width"],
        name="linreg",
    )
    config = model.get_config()
    clone = keras_linreg.LinearRegression.from_config(config)
    assert clone.get_config() == config
    assert clone.name == "linreg"
    assert clone.feature_names == ("height", "width")
    assert isinstance(clone.learning_rate_config, keras.optimizers.schedules.ExponentialDecay)
    assert clone.learning_rate_config.get_config() == schedule.get_config()
    np.testing.assert_array_equal(clone.slope.numpy(), [0.5, 0.5])
    assert float(clone.intercept.numpy()) == 1.0


def _load_without_warnings(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return keras.models.load_model(path)


@pytest.mark.parametrize(
    "learning_rate",
    [0.01, keras.optimizers.schedules.ExponentialDecay(0.02, decay_steps=5, decay_rate=0.5)],
    ids=["float", "schedule"],
)
def test_keras_file_round_trip_resumes_exactly(tutorial_data, tmp_path, learning_rate):
    x, y = tutorial_data
    path = tmp_path / "model.keras"

    def new_model():
        model = keras_linreg.LinearRegression(learning_rate=learning_rate, feature_names=["x"])
        model.compile(metrics=[keras.metrics.RootMeanSquaredError()])
        return model

    uninterrupted = new_model()
    reference = uninterrupted.fit(x, y, batch_size=100, epochs=10, shuffle=False, verbose=0)

    first = new_model()
    first.fit(x, y, batch_size=100, epochs=4, shuffle=False, verbose=0)
    first.save(path)
    loaded = _load_without_warnings(path)

    assert type(loaded) is keras_linreg.LinearRegression
    assert isinstance(loaded.optimizer, keras_linreg.LearningRateState)
    assert loaded.optimizer.iterations.numpy() == 4
    assert loaded.feature_names == ("x",)
    assert loaded.learning_rate == pytest.approx(first.learning_rate)
    np.testing.assert_array_equal(loaded.slope.numpy(), first.slope.numpy())
    np.testing.assert_array_equal(loaded.intercept.numpy(), first.intercept.numpy())

    resumed = loaded.fit(x, y, batch_size=100, epochs=6, shuffle=False, verbose=0)
    assert set(resumed.history) == {"loss", "root_mean_squared_error"}
    np.testing.assert_allclose(resumed.history["loss"], reference.history["loss"][4:], rtol=1e-6)
    np.testing.assert_allclose(
        resumed.history["root_mean_squared_error"],
        reference.history["root_mean_squared_error"][4:],
        rtol=1e-6,
    )
    np.testing.assert_allclose(loaded.slope.numpy(), uninterrupted.slope.numpy(), rtol=1e-6)
    np.testing.assert_allclose(loaded.intercept.numpy(), uninterrupted.intercept.numpy(), rtol=1e-6)


def test_a_rate_changed_by_a_callback_is_saved(tutorial_data, tmp_path):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    model.fit(
        x,
        y,
        epochs=1,
        verbose=0,
        callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch: 0.003)],
    )
    model.save(tmp_path / "model.keras")
    loaded = _load_without_warnings(tmp_path / "model.keras")
    assert loaded.learning_rate == pytest.approx(0.003)


def test_uncompiled_model_round_trips(tmp_path):
    model = keras_linreg.LinearRegression(n_features=2, learning_rate=0.5, slope_initializer="ones")
    model.save(tmp_path / "uncompiled.keras")
    loaded = _load_without_warnings(tmp_path / "uncompiled.keras")
    assert loaded.built and not loaded.compiled
    assert loaded.learning_rate == 0.5
    np.testing.assert_array_equal(loaded.slope.numpy(), [1.0, 1.0])
