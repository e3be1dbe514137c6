"""Standardization: the layer, and LinearRegression(standardize=True) built on it.

References are independent float64 NumPy computations: `numpy.linalg.lstsq`
(through `keras_linreg.least_squares`), hand-written gradient-descent loops,
`numpy.mean`/`numpy.std` and `numpy.linalg.eigvalsh`.
"""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from _serialization import check_class_serialization

import keras_linreg
from keras_linreg import standardization
from keras_linreg.convergence import epochs_to_optimum
from keras_linreg.standardization import Standardization
from keras_linreg_cli.convergence_table import gradient_descent_epochs


def _model(**kwargs):
    model = keras_linreg.LinearRegression(**kwargs)
    model.compile()
    return model


def _fit(model, x, y, epochs, **kwargs):
    return model.fit(x, y, batch_size=len(x), epochs=epochs, shuffle=False, verbose=0, **kwargs)


def _stable_rate(x):
    """2 / λmax of the MSE Hessian (2/n) XᵀX, X = [x, 1], in float64."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    design = np.hstack([x, np.ones((len(x), 1))])
    eigenvalues = np.linalg.eigvalsh(2.0 / len(x) * design.T @ design)
    return 2.0 / eigenvalues[-1], eigenvalues


def _distance(parameters, optimum):
    return max(np.max(np.abs(parameters[0] - optimum[0])), abs(parameters[1] - optimum[1]))


def _multiscale_data(n=200):
    """Two features, of scales 1e-3 and 1e3, both mattering for y."""
    rng = np.random.default_rng(7)
    x = np.stack([rng.uniform(0, 2e-3, n), rng.uniform(0, 2e3, n)], axis=1)
    y = 500.0 * x[:, 0] + 0.002 * x[:, 1] + 1.0 + rng.normal(0, 0.1, n)
    return x.astype("float32"), y.astype("float32")


# ----------------------------------------------------------------- convergence
def test_tutorial_data_reaches_least_squares_within_5_epochs(tutorial_data):
    x, y = tutorial_data
    optimum = keras_linreg.least_squares(x, y)

    model = _model(learning_rate=0.5, standardize=True)
    epochs = epochs_to_optimum(model, x, y, tolerance=1e-4, max_epochs=5)
    assert epochs is not None and epochs <= 5
    assert _distance(model.get_parameters(), optimum) <= 1e-4

    # The same 5 epochs on raw features at the tutorial's rate are far off.
    raw = _model(learning_rate=0.01)
    _fit(raw, x, y, epochs=5)
    assert _distance(raw.get_parameters(), optimum) > 0.1


def test_standardized_steps_match_hand_written_float64_loop(tutorial_data):
    x, y = tutorial_data
    model = _model(learning_rate=0.1, standardize=True)
    history = _fit(model, x, y, epochs=4)

    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    mean, std = x64.mean(), x64.std()
    z = (x64 - mean) / std
    w = b = 0.0
    losses = []
    for _ in range(4):
        r = z * w + b - y64
        losses.append(np.mean(r**2))
        w, b = w - 0.1 * 2 * np.mean(r * z), b - 0.1 * 2 * np.mean(r)
    slope, intercept = model.get_parameters()
    np.testing.assert_allclose(slope, [w / std], rtol=1e-5)
    np.testing.assert_allclose(intercept, b - w * mean / std, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(history.history["loss"], losses, rtol=1e-5)


def test_epochs_to_optimum_matches_float64_reference(tutorial_data):
    x, y = tutorial_data
    reference = gradient_descent_epochs(x, y, 0.3, standardize=True)
    assert reference is not None and 5 < reference < 50
    assert epochs_to_optimum(_model(learning_rate=0.3, standardize=True), x, y) == reference
    # The raw tutorial rate needs far more epochs, and max_epochs is honoured.
    assert gradient_descent_epochs(x, y, 0.01) > 10 * reference
    model = _model(learning_rate=0.01)
    assert epochs_to_optimum(model, x, y, max_epochs=3) is None
    assert model.optimizer.iterations.numpy() == 3


def test_features_of_very_different_scales_converge_only_standardized():
    x, y = _multiscale_data()
    optimum = keras_linreg.least_squares(x, y)
    scale = x.astype(np.float64).std(axis=0)
    rate, eigenvalues = _stable_rate(x)
    # Raw features, ANY stable rate lr < 2/λmax: the error along the slowest
    # eigenvector shrinks by at most a factor 1 - lr·λmin per epoch.
    slowest_factor = 1.0 - rate * eigenvalues[0]
    assert slowest_factor**1000 > 0.99  # after 1000 epochs, >99% of it left

    raw = _model(learning_rate=0.99 * rate)
    _fit(raw, x, y, epochs=20)
    raw_slope, _ = raw.get_parameters()
    assert np.all(np.isfinite(raw_slope))
    # The 1e-3-scale feature's slope has barely left 0 (optimum ≈ 500).
    assert abs(raw_slope[0]) < 0.01 * abs(optimum[0][0])

    # The float64 reference of the same algorithm gets within 1e-4 in raw units.
    assert gradient_descent_epochs(x, y, 0.5, standardize=True, max_epochs=10) is not None

    model = _model(learning_rate=0.5, standardize=True)
    _fit(model, x, y, epochs=10)
    slope, intercept = model.get_parameters()
    # In standardized units (slope · std): within 1e-4 of least squares.
    np.testing.assert_allclose(slope * scale, optimum[0] * scale, atol=1e-4)
    np.testing.assert_allclose(intercept, optimum[1], atol=1e-3)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(
        x64 @ slope + intercept, x64 @ optimum[0] + optimum[1], atol=1e-4
    )


# ------------------------------------------------------------------ statistics
def test_fit_on_arrays_adapts_with_population_statistics(rng):
    x = rng.normal([3.0, -200.0], [0.5, 40.0], size=(50, 2)).astype("float32")
    y = rng.normal(size=50).astype("float32")
    model = _model(standardize=True)
    _fit(model, x, y, epochs=1)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(model.feature_mean.numpy(), x64.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(model.feature_std.numpy(), x64.std(axis=0, ddof=0), rtol=1e-6)
    assert int(model.adapted_rows.numpy()) == 50
    # A second fit on other data keeps the statistics.
    _fit(model, x * 10, y, epochs=1)
    np.testing.assert_allclose(model.feature_mean.numpy(), x64.mean(axis=0), rtol=1e-6)


def test_fit_adapts_on_training_rows_only_with_validation_split(rng):
    x = rng.normal(size=(40, 1)).astype("float32")
    x[20:] += 100.0
    y = rng.normal(size=40).astype("float32")
    model = _model(standardize=True)
    model.fit(x, y, batch_size=40, epochs=1, validation_split=0.5, verbose=0)
    np.testing.assert_allclose(
        model.feature_mean.numpy(), x[:20].astype(np.float64).mean(axis=0), rtol=1e-6
    )
    assert int(model.adapted_rows.numpy()) == 20


@pytest.mark.parametrize("element", ["x", "xy", "xyw"])
def test_adapt_on_dataset_with_uneven_batches(rng, element):
    x = rng.normal([1.0, 50.0, -3.0], [2.0, 0.01, 7.0], size=(101, 3)).astype("float32")
    y = rng.normal(size=101).astype("float32")
    w = rng.uniform(size=101).astype("float32")
    slices = {"x": x, "xy": (x, y), "xyw": (x, y, w)}[element]
    dataset = tf.data.Dataset.from_tensor_slices(slices).batch(16)  # last batch: 5 rows
    model = _model(standardize=True)
    model.adapt(dataset)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(model.feature_mean.numpy(), x64.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(model.feature_std.numpy(), x64.std(axis=0), rtol=1e-5)
    assert model.n_features == 3 and int(model.adapted_rows.numpy()) == 101


def test_adapt_steps_reads_part_of_a_repeating_dataset(rng):
    x = rng.normal(size=(30,)).astype("float32")
    model = _model(standardize=True)
    model.adapt(tf.data.Dataset.from_tensor_slices(x).batch(10).repeat(), steps=2)
    np.testing.assert_allclose(
        model.feature_mean.numpy(), [x[:20].astype(np.float64).mean()], rtol=1e-6
    )
    assert int(model.adapted_rows.numpy()) == 20


def test_fit_on_unadapted_dataset_raises_clear_error_then_adapt_works(tutorial_data):
    x, y = tutorial_data
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(100)
    model = _model(learning_rate=0.5, standardize=True, n_features=1)
    with pytest.raises(ValueError, match=r"model\.adapt\(dataset\)"):
        model.fit(dataset, epochs=1, shuffle=False, verbose=0)
    assert int(model.adapted_rows.numpy()) == 0
    assert model.optimizer.iterations.numpy() == 0  # nothing trained

    model.adapt(dataset)
    model.fit(dataset, epochs=3, shuffle=False, verbose=0)
    assert _distance(model.get_parameters(), keras_linreg.least_squares(x, y)) <= 1e-4


def test_constant_feature_does_not_divide_by_zero(rng):
    x = np.stack([np.linspace(0, 10, 60), np.full(60, 3.3)], axis=1).astype("float32")
    y = (2.0 * x[:, 0] - 1.0 + rng.normal(0, 0.5, 60)).astype("float32")
    model = _model(learning_rate=0.5, standardize=True)
    history = _fit(model, x, y, epochs=10)
    assert np.all(np.isfinite(history.history["loss"]))
    np.testing.assert_array_equal(model.feature_std.numpy()[1], 1.0)
    np.testing.assert_array_equal(model.feature_mean.numpy()[1], np.float32(3.3))
    slope, intercept = model.get_parameters()
    assert slope[1] == 0.0  # z is exactly 0 for it: no gradient, initial value kept
    # Rank-deficient: compare predictions with the minimum-norm lstsq solution.
    ls_slope, ls_intercept = keras_linreg.least_squares(x, y)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(
        x64 @ slope + intercept, x64 @ ls_slope + ls_intercept, atol=1e-4
    )


def test_only_constant_feature_learns_the_mean(rng):
    x = np.full(20, -4.0, dtype="float32")
    y = rng.normal(5.0, 1.0, 20).astype("float32")
    model = _model(learning_rate=0.5, standardize=True)
    _fit(model, x, y, epochs=1)
    slope, intercept = model.get_parameters()
    assert slope[0] == 0.0
    np.testing.assert_allclose(intercept, y.astype(np.float64).mean(), rtol=1e-6)


def test_adapt_keeps_predictions_and_raw_parameters(tutorial_data, rng):
    x, y = tutorial_data
    model = _model(learning_rate=0.1, standardize=True)
    _fit(model, x, y, epochs=5)
    before = model.get_parameters()
    predictions = model.predict(x, verbose=0)
    model.adapt(rng.normal(100.0, 30.0, size=500))
    np.testing.assert_allclose(model.feature_mean.numpy(), [100.0], rtol=0.05)
    after = model.get_parameters()
    np.testing.assert_allclose(after[0], before[0], rtol=1e-5)
    np.testing.assert_allclose(after[1], before[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.predict(x, verbose=0), predictions, rtol=1e-5, atol=1e-5)


def test_initializers_set_the_raw_starting_point(tutorial_data):
    x, y = tutorial_data
    model = _model(
        standardize=True,
        slope_initializer=keras.initializers.Constant(2.0),
        intercept_initializer=keras.initializers.Constant(-1.0),
    )
    model.adapt(x)
    slope, intercept = model.get_parameters()
    np.testing.assert_allclose(slope, [2.0], rtol=1e-6)
    np.testing.assert_allclose(intercept, -1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: keras_linreg.LinearRegression(standardize="yes"), "standardize"),
        (lambda: _model(n_features=1).adapt(np.ones(3)), "standardize=False"),
        (lambda: _model(standardize=True).adapt(np.array([1.0, np.nan])), "non-finite"),
        (lambda: _model(standardize=True).adapt(np.zeros((0, 2))), "empty"),
        (lambda: _model(standardize=True, n_features=2).adapt(np.ones((4, 3))), "3 features"),
        (
            lambda: _model(standardize=True).adapt(
                tf.data.Dataset.from_tensor_slices(np.ones(4))
            ),
            "batched",
        ),
        (lambda: _model(standardize=True).adapt(np.ones(4), steps=0), "steps"),
    ],
)
def test_invalid_uses_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_failed_adapt_changes_nothing(rng):
    model = _model(standardize=True)
    model.adapt(rng.normal(size=(10, 2)))
    weights = [v.numpy().copy() for v in model.weights]
    with pytest.raises(ValueError, match="non-finite"):
        model.adapt(np.array([[1.0, 2.0], [np.inf, 0.0]]))
    for before, variable in zip(weights, model.weights, strict=True):
        np.testing.assert_array_equal(variable.numpy(), before)


# --------------------------------------------------- raw units everywhere
def test_weights_names_and_read_only_raw_parameters(tutorial_data):
    x, y = tutorial_data
    raw = _model(n_features=1)
    assert raw.slope is raw.trainable_variables[0]
    assert [v.name for v in raw.weights] == ["slope", "intercept"]

    model = _model(learning_rate=0.1, standardize=True)
    _fit(model, x, y, epochs=3)
    assert [v.name for v in model.trainable_variables] == [
        "standardized_slope",
        "standardized_intercept",
    ]
    assert [v.name for v in model.non_trainable_variables] == [
        "feature_mean",
        "feature_std",
        "adapted_rows",
    ]
    slope, intercept = model.get_parameters()
    np.testing.assert_allclose(model.slope.numpy(), slope, rtol=1e-6)
    np.testing.assert_allclose(model.intercept.numpy(), intercept, rtol=1e-5, atol=1e-6)
    with pytest.raises(AttributeError):
        model.slope.assign([1.0])


def test_predictions_keras_file_and_export_agree_in_raw_units(tutorial_data, tmp_path):
    x, y = tutorial_data
    model = _model(learning_rate=0.1, standardize=True, feature_names=["x"])
    _fit(model, x, y, epochs=5)
    slope, intercept = model.get_parameters()
    predictions = model.predict(x, verbose=0)
    np.testing.assert_allclose(
        predictions, x.astype(np.float64) * slope[0] + intercept, rtol=1e-5, atol=1e-5
    )

    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.standardize is True
    assert int(loaded.adapted_rows.numpy()) == 100
    for a, b in zip(loaded.get_parameters(), (slope, intercept), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), predictions)
    # A loaded model is adapted: fitting on a dataset needs no adapt.
    loaded.compile()
    loaded.fit(
        tf.data.Dataset.from_tensor_slices((x, y)).batch(100), epochs=1, shuffle=False, verbose=0
    )

    export_dir = str(tmp_path / "export")
    model.export(export_dir, verbose=False)
    reloaded = tf.saved_model.load(export_dir)  # keep a reference: it owns the variables
    served = reloaded.serve(tf.constant(x[:, None]))
    np.testing.assert_allclose(served.numpy(), predictions, rtol=1e-6, atol=1e-6)


def test_get_config_round_trip():
    model = keras_linreg.LinearRegression(n_features=2, standardize=True, learning_rate=0.3)
    config = model.get_config()
    assert config["standardize"] is True
    json.dumps(config)
    clone = keras_linreg.LinearRegression.from_config(config)
    assert clone.standardize is True
    assert clone.get_config() == config
    assert keras_linreg.LinearRegression().get_config()["standardize"] is False


def test_backup_and_restore_restores_statistics(tutorial_data, tmp_path, rng):
    x, y = tutorial_data
    backup_dir = str(tmp_path / "backup")

    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    first = _model(learning_rate=0.1, standardize=True, n_features=1)
    with pytest.raises(RuntimeError, match="interrupted"):
        _fit(first, x, y, epochs=5, callbacks=[keras.callbacks.BackupAndRestore(backup_dir),
                                               Interrupt()])
    saved_mean = first.feature_mean.numpy().copy()

    # Resume with a model adapted on other data: the backup's statistics win.
    second = _model(learning_rate=0.1, standardize=True, n_features=1)
    second.adapt(rng.normal(-50.0, 3.0, 30))
    _fit(second, x, y, epochs=5, callbacks=[keras.callbacks.BackupAndRestore(backup_dir)])
    np.testing.assert_array_equal(second.feature_mean.numpy(), saved_mean)

    uninterrupted = _model(learning_rate=0.1, standardize=True)
    _fit(uninterrupted, x, y, epochs=5)
    np.testing.assert_allclose(
        second.get_parameters()[0], uninterrupted.get_parameters()[0], rtol=1e-6
    )


def test_default_model_is_unchanged_by_standardization_module(tutorial_data):
    """standardize=False: the trainable variables are slope and intercept."""
    x, y = tutorial_data
    model = _model(learning_rate=0.01)
    _fit(model, x, y, epochs=2)
    assert not hasattr(model, "feature_mean")
    slope, intercept = model.get_parameters()
    np.testing.assert_array_equal(slope, model.slope.numpy().astype(np.float64))
    assert standardization.trainable_weight_names(False) == ("slope", "intercept")


# ---------------------------------------------------------------- distribution
_DISTRIBUTED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras_linreg
    from keras_linreg_cli.demo import tutorial_data

    x, y = tutorial_data(seed=0)
    x = np.stack([x, x**2 / 10 + 3], axis=1).astype("float32")
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = keras_linreg.LinearRegression(learning_rate=0.1, standardize=True)
        model.compile()
    # batch 100 over 2 replicas: each replica sees 50 rows
    model.fit(x, y, batch_size=100, epochs=3, shuffle=False, verbose=0)
    with strategy.scope():
        on_dataset = keras_linreg.LinearRegression(standardize=True, n_features=2)
    on_dataset.adapt(tf.data.Dataset.from_tensor_slices(x).batch(30))
    out = {
        "replicas": strategy.num_replicas_in_sync,
        "mean": [v.numpy().tolist() for v in model.feature_mean.value.values],
        "std": [v.numpy().tolist() for v in model.feature_std.value.values],
        "dataset_mean": [v.numpy().tolist() for v in on_dataset.feature_mean.value.values],
        "slope": model.get_parameters()[0].tolist(),
        "intercept": model.get_parameters()[1],
    }
    print(json.dumps(out))
    """
)


def test_statistics_are_global_under_mirrored_strategy(tutorial_data):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [sys.executable, "-c", _DISTRIBUTED_SCRIPT],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2

    x, y = tutorial_data
    x = np.stack([x, x**2 / 10 + 3], axis=1).astype("float32")
    x64 = x.astype(np.float64)
    for replica_mean, replica_std, dataset_mean in zip(
        out["mean"], out["std"], out["dataset_mean"], strict=True
    ):
        # Every replica holds the statistics of all 100 rows, not its 50.
        np.testing.assert_allclose(replica_mean, x64.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(replica_std, x64.std(axis=0), rtol=1e-6)
        np.testing.assert_allclose(dataset_mean, x64.mean(axis=0), rtol=1e-6)

    # Same three updates as on one device, in float64 NumPy.
    mean, std = x64.mean(axis=0), x64.std(axis=0)
    z = (x64 - mean) / std
    w, b = np.zeros(2), 0.0
    for _ in range(3):
        r = z @ w + b - y.astype(np.float64)
        w, b = w - 0.1 * 2 * z.T @ r / 100, b - 0.1 * 2 * r.mean()
    np.testing.assert_allclose(out["slope"], w / std, rtol=1e-5)
    np.testing.assert_allclose(out["intercept"], b - np.sum(w * mean / std), rtol=1e-5)


def test_raw_parameters_before_build_raise_attribute_error():
    for standardize in (False, True):
        model = keras_linreg.LinearRegression(standardize=standardize)
        assert not hasattr(model, "slope")
        with pytest.raises(AttributeError, match="n_features="):
            model.intercept  # noqa: B018


def test_raw_mapping_reproduces_predictions_with_several_features(rng):
    x = rng.normal([5.0, -300.0, 0.02], [2.0, 50.0, 0.001], size=(64, 3)).astype("float32")
    model = _model(standardize=True)
    model.adapt(x)
    w = np.array([0.7, -1.3, 2.1])
    b = 0.4
    model._trainable_slope.assign(w.astype("float32"))
    model._trainable_intercept.assign(np.float32(b))
    mean, std = x.astype(np.float64).mean(axis=0), x.astype(np.float64).std(axis=0)
    slope, intercept = model.get_parameters()
    np.testing.assert_allclose(slope, w / std, rtol=1e-6)
    np.testing.assert_allclose(intercept, b - np.sum(w * mean / std), rtol=1e-6)
    x64 = x.astype(np.float64)
    expected = ((x64 - mean) / std) @ w + b
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x64 @ slope + intercept, expected, rtol=1e-5, atol=1e-5)


def test_adapt_refuses_a_distributed_dataset():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices(np.arange(8.0)).batch(4)
    )
    model = _model(standardize=True, n_features=1)
    with pytest.raises(ValueError, match="undistributed"):
        model.adapt(dataset)
    assert int(model.adapted_rows.numpy()) == 0


# ------------------------------------------------------------- the layer itself
def test_layer_standardizes_with_float64_statistics(rng):
    x = rng.normal([2.0, -40.0, 7.0], [0.1, 30.0, 1.0], size=(57, 3)).astype("float32")
    x[:, 2] = 7.25  # a constant feature
    layer = Standardization()
    assert not layer.is_adapted
    layer.adapt(x)
    assert layer.is_adapted and layer.n_features == 3 and int(layer.adapted_rows.numpy()) == 57

    x64 = x.astype(np.float64)
    mean, std = x64.mean(axis=0), x64.std(axis=0, ddof=0)
    std[2] = 1.0  # constant: std 1, mean its value
    np.testing.assert_allclose(layer.feature_mean.numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(layer.feature_std.numpy(), std, rtol=1e-6)
    stored_mean, stored_std = layer.statistics()
    assert stored_mean.dtype == stored_std.dtype == np.float64
    np.testing.assert_array_equal(stored_mean, layer.feature_mean.numpy().astype(np.float64))

    z = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(z, (x64 - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(z[:, 2], 0.0)
    # One feature given as (n,) is a column.
    single = Standardization()
    single.adapt(x[:, 0])
    assert keras.ops.convert_to_numpy(single(x[:, 0])).shape == (57, 1)


def test_unadapted_layer_is_the_identity(rng):
    x = rng.normal(size=(6, 2)).astype("float32")
    layer = Standardization()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)), x)  # built by the call
    assert layer.n_features == 2 and not layer.is_adapted


def test_layer_statistics_do_not_depend_on_chunking_or_batching(rng, monkeypatch):
    x = rng.normal([1e4, -3.0], [1.0, 100.0], size=(103, 2))
    x64 = np.asarray(x, np.float64)
    whole = standardization.feature_statistics(x)
    monkeypatch.setattr(standardization, "_CHUNK_ROWS", 10)  # 11 chunks, the last of 3 rows
    chunked = standardization.feature_statistics(x)
    batched = standardization.feature_statistics(tf.data.Dataset.from_tensor_slices(x).batch(7))
    for mean, std, rows in (whole, chunked, batched):
        assert rows == 103
        np.testing.assert_allclose(mean, x64.mean(axis=0), rtol=1e-12)
        np.testing.assert_allclose(std, x64.std(axis=0), rtol=1e-10)


def test_layer_rejects_statistics_of_another_width_and_changes_nothing(rng):
    layer = Standardization()
    layer.adapt(rng.normal(size=(10, 2)))
    before = [v.numpy().copy() for v in layer.weights]
    with pytest.raises(ValueError, match="3 features, but this layer has n_features=2"):
        layer.adapt(rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        layer.adapt(np.array([[1.0, np.nan]]))
    with pytest.raises(ValueError, match="`std`, expected finite values > 0"):
        layer.set_statistics([0.0, 0.0], [1.0, 0.0], 5)
    with pytest.raises(ValueError, match="`mean`"):
        layer.set_statistics([np.inf, 0.0], [1.0, 1.0], 5)
    with pytest.raises(ValueError, match="`rows`"):
        layer.set_statistics([0.0, 0.0], [1.0, 1.0], 0)
    for value, variable in zip(before, layer.weights, strict=True):
        np.testing.assert_array_equal(variable.numpy(), value)
    with pytest.raises(ValueError, match="not been built"):
        Standardization().statistics()


def test_layer_config_and_serialization_round_trip():
    layer = Standardization(name="scaler", dtype="float32")
    revived = check_class_serialization(layer)
    assert revived.name == "scaler"


def test_layer_keras_file_round_trip(rng, tmp_path):
    """Registered serializable, with its own weights: usable in any Keras model."""
    x = rng.normal([10.0, -5.0], [3.0, 0.5], size=(40, 2)).astype("float32")
    layer = Standardization()
    layer.adapt(x)
    model = keras.Sequential([keras.Input((2,)), layer])
    path = str(tmp_path / "scaler.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.layers[0]) is Standardization
    for a, b in zip(loaded.layers[0].weights, layer.weights, strict=True):
        assert a.name == b.name
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_model_owns_its_layer(tutorial_data):
    x, y = tutorial_data
    raw = _model(n_features=1)
    assert raw.standardization is None and raw.layers == []

    model = _model(learning_rate=0.1, standardize=True)
    assert model.standardization is None  # created in build
    _fit(model, x, y, epochs=1)
    layer = model.standardization
    assert isinstance(layer, Standardization) and model.layers == [layer]
    assert layer.is_adapted
    # The model's statistics are the layer's variables, not copies.
    assert model.feature_mean is layer.feature_mean
    assert model.feature_std is layer.feature_std
    assert model.adapted_rows is layer.adapted_rows
    # The model predicts on the layer's output: z · w + b.
    z = keras.ops.convert_to_numpy(layer(x))
    w, b = model._trainable_slope.numpy(), model._trainable_intercept.numpy()
    np.testing.assert_allclose(model.predict(x, verbose=0), z @ w + b, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------ without an intercept
def test_uncentered_statistics_are_the_root_mean_square(rng, monkeypatch):
    """`center=False` (a model without an intercept): mean 0, std sqrt(mean(x²)),
    chunked or batched alike; an all-zero feature gets 1, a constant one its |value|."""
    x = rng.normal([1e3, -3.0, 0.0, 0.0], [1.0, 2.0, 1.0, 0.0], size=(103, 4))
    x[:, 2] = -2.5  # constant but not zero: a real regressor through the origin
    monkeypatch.setattr(standardization, "_CHUNK_ROWS", 10)
    mean, std, rows = standardization.feature_statistics(x, center=False)
    expected = np.sqrt(np.mean(x**2, axis=0))
    expected[3] = 1.0
    assert rows == 103
    np.testing.assert_array_equal(mean, 0.0)
    np.testing.assert_allclose(std, expected, rtol=1e-12)
    batches = tf.data.Dataset.from_tensor_slices(x).batch(17)
    np.testing.assert_allclose(
        standardization.feature_statistics(batches, center=False)[1], expected, rtol=1e-12
    )


def test_an_uncentered_layer_only_scales(rng):
    x = rng.normal(5.0, 1.0, size=(40, 2)).astype("float32")
    layer = Standardization(center=False)
    layer.adapt(x)
    x64 = x.astype(np.float64)
    rms = np.sqrt(np.mean(x64**2, axis=0))
    np.testing.assert_array_equal(layer.feature_mean.numpy(), 0.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), x64 / rms, rtol=1e-6)
    # Even a mean set by hand is not subtracted: centering would be an intercept.
    layer.set_statistics([1.0, 2.0], rms, 40)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x)), x64 / rms, rtol=1e-6)
    assert Standardization.from_config(layer.get_config()).center is False
    with pytest.raises(ValueError, match="expected a bool. Received: center=0"):
        Standardization(center=0)


def test_a_model_without_intercept_adapts_uncentered_and_keeps_its_raw_parameters(rng):
    x = rng.normal([2.0, -4.0], [1.0, 3.0], size=(64, 2)).astype("float32")
    model = keras_linreg.LinearRegression(
        n_features=2, fit_intercept=False, standardize=True, slope_initializer="ones"
    )
    before = model.predict(x, verbose=0)
    model.adapt(x)
    assert model.standardization.center is False
    np.testing.assert_allclose(
        model.feature_std.numpy(), np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=0)),
        rtol=1e-6,
    )
    slope, intercept = model.get_parameters()
    np.testing.assert_allclose(slope, [1.0, 1.0], rtol=1e-6)  # raw slope kept by adapt
    assert intercept == 0.0
    np.testing.assert_allclose(model.predict(x, verbose=0), before, rtol=1e-5, atol=1e-5)
