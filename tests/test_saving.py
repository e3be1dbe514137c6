"""get_config/from_config and `.keras` round trips: training resumes exactly."""

import warnings

import keras
import numpy as np
import pytest
from _serialization import check_class_serialization

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
    # record=True with "always", not simplefilter("error"): NumPy's
    # `__array__` DeprecationWarning is caught and swallowed by the code that
    # triggers it when it is an error, so only recording sees it.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.models.load_model(path)
    assert [str(w.message) for w in caught] == []
    return model


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


@pytest.mark.parametrize("standardize", [False, True], ids=["raw", "standardized"])
def test_model_config_and_serialization_round_trip(standardize):
    """Keras' `run_class_serialization_test`, for the model (built and not)."""
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.9)
    for n_features in (None, 3):
        model = keras_linreg.LinearRegression(
            n_features=n_features,
            learning_rate=schedule,
            feature_names=None if n_features is None else ["a", "b", "c"],
            standardize=standardize,
            name="linreg",
        )
        revived = check_class_serialization(model)
        assert revived.built is (n_features is not None)
        assert revived.standardize is standardize
        if revived.built:
            assert [v.name for v in revived.weights] == [v.name for v in model.weights]


def test_standardized_keras_file_round_trip_is_quiet_and_exact(tutorial_data, tmp_path, rng):
    x, y = tutorial_data
    x = np.stack([x, rng.normal(50.0, 5.0, len(x))], axis=1).astype("float32")
    model = keras_linreg.LinearRegression(learning_rate=0.2, standardize=True)
    model.compile()
    model.fit(x, y, batch_size=25, epochs=3, shuffle=False, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = _load_without_warnings(tmp_path / "model.keras")
    assert loaded.standardize and loaded.standardization.is_adapted
    for a, b in zip(loaded.weights, model.weights, strict=True):
        assert a.path == b.path
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert loaded.optimizer.iterations.numpy() == 12
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    # Training resumes exactly where the original goes on.
    loaded.fit(x, y, batch_size=25, epochs=2, shuffle=False, verbose=0)
    model.fit(x, y, batch_size=25, epochs=2, shuffle=False, verbose=0)
    for a, b in zip(loaded.get_parameters(), model.get_parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
