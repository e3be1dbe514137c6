"""Divergence is caught: training stops, the last good weights come back, the error helps.

References are independent: NumPy float64 gradient descent for full-batch runs,
and a hand-written float32 `tf.GradientTape` loop for the step-by-step ones.
"""

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from _reference import design as _design
from _reference import numpy_gd as _numpy_gd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_linreg
from keras_linreg.divergence import DIVERGENCE_FACTOR


def _tape_steps(x, y, learning_rate, batch_size, max_steps):
    """Hand-written float32 GradientTape mini-batch loop (no shuffling).

    Returns the weights before each step and that step's loss, stopping after
    the first non-finite loss or update.
    """
    slope = tf.Variable(tf.zeros((x.shape[1],)))
    intercept = tf.Variable(0.0)
    weights, losses = [], []
    for step in range(max_steps):
        start = (step * batch_size) % len(x)
        xb, yb = x[start : start + batch_size], y[start : start + batch_size]
        weights.append((slope.numpy().copy(), float(intercept.numpy())))
        with tf.GradientTape() as tape:
            residual = tf.linalg.matvec(xb, slope) + intercept - yb
            loss = tf.reduce_sum(tf.square(residual)) / len(xb)
        g_slope, g_intercept = tape.gradient(loss, [slope, intercept])
        losses.append(float(loss))
        new_slope = slope - learning_rate * g_slope
        new_intercept = intercept - learning_rate * g_intercept
        if not (np.isfinite(float(loss)) and np.isfinite(new_slope.numpy()).all()
                and np.isfinite(float(new_intercept))):
            break
        slope.assign(new_slope)
        intercept.assign(new_intercept)
    return weights, losses


# ----------------------------------------------------------- stable training
def test_the_guard_leaves_stable_training_exact(tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    history = model.fit(x, y, batch_size=100, epochs=30, shuffle=False, verbose=0)
    weights, losses = _tape_steps(x[:, None], y, 0.01, 100, 31)
    np.testing.assert_allclose(history.history["loss"], losses[:30], rtol=1e-5)
    slope, intercept = model.get_parameters()
    np.testing.assert_allclose(slope, weights[30][0], rtol=1e-5)
    assert intercept == pytest.approx(weights[30][1], rel=1e-5)
    assert int(model.optimizer.iterations.numpy()) == 30
    # The guard's state is not a weight of the model (nor saved with it).
    assert [v.name for v in model.weights] == ["slope", "intercept"]


def test_the_guards_state_is_invisible_to_keras_and_tensorflow_tracking(tutorial_data, tmp_path):
    """The guard is a plain object owned by the model: its variables exist, but no
    tracker sees them (not weights, not in `.keras` files, checkpoints or exports)."""
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=1.0)
    model.compile()
    with pytest.raises(keras_linreg.DivergenceError):
        model.fit(x, y, batch_size=10, epochs=3, shuffle=False, verbose=0)
    guard = keras_linreg.divergence.create_guard(model)
    assert guard.diverged  # the state exists and was used
    assert "divergence" in guard._state.name  # (so the searches below can find it)
    names = ["slope", "intercept"]
    assert [v.name for v in model.variables if v.trainable] == names
    assert not any("divergence" in v.name for v in model.variables)

    keras_file = tmp_path / "m.keras"
    model.save(keras_file)
    loaded = keras.saving.load_model(keras_file)
    assert [v.name for v in loaded.weights] == names
    np.testing.assert_array_equal(loaded.get_parameters()[0], model.get_parameters()[0])

    checkpoint = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(checkpoint)]
    assert saved and not any("divergence" in name for name in saved)

    keras_linreg.export_saved_model(model, tmp_path / "export")
    exported = tf.saved_model.load(str(tmp_path / "export"))
    assert not any("divergence" in v.name for v in exported.variables)


def test_a_standardizing_model_quotes_the_rate_in_its_own_coordinates(tutorial_data):
    """The message's stable rate comes from the prediction's Jacobian in the trainable
    weights: for `standardize=True` that is `[z, 1]`, z the standardized features."""
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=3.0, standardize=True)
    model.compile()
    with pytest.raises(keras_linreg.DivergenceError) as info:
        model.fit(x, y, batch_size=100, epochs=50, shuffle=False, verbose=0)
    x64 = x.astype(np.float64)
    z = (x64 - x64.mean()) / x64.std()
    expected = keras_linreg.max_stable_learning_rate(z)
    assert expected == pytest.approx(1.0, rel=1e-9)  # z has mean 0, variance 1: H = 2I
    assert info.value.max_stable_learning_rate == pytest.approx(expected, rel=1e-5)
    assert info.value.max_stable_learning_rate != pytest.approx(
        keras_linreg.max_stable_learning_rate(x), rel=0.5
    )


# --------------------------------------------------------------- full batch
def test_full_batch_divergence_stops_restores_and_explains(tutorial_data):
    x, y = tutorial_data
    rate = 0.06  # about twice the largest stable rate, 0.0292
    seen = []
    model = keras_linreg.LinearRegression(learning_rate=rate)
    model.compile()
    recorder = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(model.get_parameters())
    )
    with pytest.raises(keras_linreg.DivergenceError) as info:
        model.fit(x, y, batch_size=100, epochs=200, shuffle=False, verbose=0,
                  callbacks=[recorder])
    error = info.value

    # The NumPy reference: the first epoch whose loss passes the threshold,
    # and the start of the best epoch before it.
    thetas, losses = _numpy_gd(x, y, rate, 200)
    stop = next(i for i, loss in enumerate(losses) if loss > DIVERGENCE_FACTOR * losses[0])
    best = int(np.argmin(losses[:stop]))
    assert error.epoch == stop
    assert len(error.history.history["loss"]) == stop + 1
    slope, intercept = model.get_parameters()
    np.testing.assert_allclose(np.append(slope, intercept), thetas[best], rtol=1e-4, atol=1e-6)
    assert int(model.optimizer.iterations.numpy()) == best
    # Callbacks after the guard saw the restored weights at the last epoch's end.
    np.testing.assert_allclose(np.append(*seen[-1]), np.append(slope, intercept))

    message = str(error)
    assert "learning_rate=0.06" in message
    assert "largest stable learning rate for full-batch gradient descent on this data is " \
        "0.0291941" in message
    assert "learning_rate=0.0146" in message
    assert error.learning_rate == pytest.approx(0.06)
    assert error.max_stable_learning_rate == pytest.approx(
        keras_linreg.max_stable_learning_rate(x)
    )


def test_after_a_divergence_the_next_fit_trains_normally(tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=1.0)
    model.compile()
    with pytest.raises(keras_linreg.DivergenceError):
        model.fit(x, y, batch_size=10, epochs=20, shuffle=False, verbose=0)
    assert np.isfinite(model.get_parameters()[0]).all()
    # The last finite weights of a blown-up run are huge: start again from zero.
    model.slope.assign([0.0])
    model.intercept.assign(0.0)
    model.optimizer.learning_rate.assign(0.01)
    history = model.fit(x, y, batch_size=100, epochs=10, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert all(b <= a for a, b in zip(losses, losses[1:], strict=False))
    assert np.isfinite(model.get_parameters()[0]).all()


# ------------------------------------------------------- within an epoch
def test_non_finite_loss_within_an_epoch_restores_the_last_finite_weights(tutorial_data):
    x, y = tutorial_data
    x = x[:, None]
    rate, batch = 5.0, 10  # overflows to inf after a few mini-batch steps
    model = keras_linreg.LinearRegression(learning_rate=rate)
    model.compile()
    with pytest.raises(keras_linreg.DivergenceError) as info:
        model.fit(x, y, batch_size=batch, epochs=3, shuffle=False, verbose=0)
    weights, losses = _tape_steps(x, y, rate, batch, 30)
    bad = len(losses) - 1  # the step whose loss or update was not finite
    assert bad < 10, "the reference should blow up within the first epoch"
    if math.isfinite(losses[bad]):  # the update overflowed: stay at this step's weights
        expected, steps = weights[bad], bad
    else:  # the loss overflowed: back to the weights before the previous update
        expected, steps = weights[bad - 1], bad - 1
    slope, intercept = model.get_parameters()
    np.testing.assert_allclose(slope, expected[0], rtol=1e-5)
    assert intercept == pytest.approx(expected[1], rel=1e-5)
    assert int(model.optimizer.iterations.numpy()) == steps
    assert info.value.epoch == 0
    message = str(info.value)
    assert "became inf" in message or "became nan" in message
    assert "learning_rate=5" in message and "mini-batches usually need less" in message


def _bad_data(tutorial_data):
    x, y = tutorial_data
    x = x[:, None].copy()
    x[35, 0] = np.nan  # in the fourth batch of 10
    return x, y


def test_tf_data_with_nan_stops_at_the_first_non_finite_loss(tutorial_data):
    x, y = _bad_data(tutorial_data)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    with pytest.raises(keras_linreg.DivergenceError) as info:
        model.fit(dataset, epochs=5, shuffle=False, verbose=0)
    weights, losses = _tape_steps(x, y, 0.01, 10, 10)
    assert len(losses) == 4 and math.isnan(losses[3])
    slope, intercept = model.get_parameters()
    # Step 3's loss is NaN: back to the weights of step 2, the last finite loss.
    np.testing.assert_allclose(slope, weights[2][0], rtol=1e-6)
    assert intercept == pytest.approx(weights[2][1], rel=1e-6)
    assert int(model.optimizer.iterations.numpy()) == 2
    assert "became nan in epoch 0" in str(info.value)
    assert "tf.data and generator inputs are not checked" in str(info.value)


def test_generator_with_nan_stops_too(tutorial_data):
    x, y = _bad_data(tutorial_data)

    def batches():
        while True:
            for start in range(0, 100, 10):
                yield x[start : start + 10], y[start : start + 10]

    model = keras_linreg.LinearRegression(n_features=1, learning_rate=0.01)
    model.compile()
    with pytest.raises(keras_linreg.DivergenceError, match="became nan"):
        model.fit(batches(), steps_per_epoch=10, epochs=3, shuffle=False, verbose=0)
    assert np.isfinite(model.get_parameters()[0]).all()
    assert int(model.optimizer.iterations.numpy()) == 2


# ------------------------------------------------------------ property test
_MODELS = {}


def _reusable_model(n_features, learning_rate):
    """One compiled model per feature count, reset: reuses its traced train function."""
    if n_features not in _MODELS:
        model = keras_linreg.LinearRegression(n_features=n_features, learning_rate=1.0)
        model.compile()
        _MODELS[n_features] = model
    model = _MODELS[n_features]
    model.slope.assign(np.zeros(n_features))
    model.intercept.assign(0.0)
    model.optimizer.iterations.assign(0)
    model.optimizer.learning_rate.assign(learning_rate)
    return model


@st.composite
def _problems(draw):
    n_features = draw(st.integers(1, 3))
    n = draw(st.integers(n_features + 3, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scales = 10.0 ** rng.uniform(-1, 1, size=n_features)
    offsets = rng.normal(size=n_features) * scales
    x = (rng.normal(size=(n, n_features)) * scales + offsets).astype("float32")
    y = (x @ rng.normal(size=n_features) + rng.normal() + rng.normal(size=n)).astype(
        "float32"
    )
    weights = None
    if draw(st.booleans()):
        weights = rng.uniform(0.1, 3.0, size=n).astype("float32")
    fraction = draw(st.floats(0.2, 0.9))
    factor = draw(st.floats(2.05, 4.0))
    return x, y, weights, fraction, factor


@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(_problems())
def test_property_stable_below_the_limit_and_stopped_above_twice_it(problem):
    x, y, weights, fraction, factor = problem
    limit = keras_linreg.max_stable_learning_rate(x, weights)
    n, n_features = x.shape
    optimum = np.append(*keras_linreg.least_squares(x, y, weights))
    design = _design(x)
    w = np.ones(n) if weights is None else weights.astype(np.float64)

    def loss_at(theta):
        return float(np.sum(w * (design @ theta - y) ** 2) / n)

    # Below the limit: the loss never rises, and the weights approach least squares.
    model = _reusable_model(n_features, fraction * limit)
    history = model.fit(
        x, y, sample_weight=weights, batch_size=n, epochs=12, shuffle=False, verbose=0
    )
    losses = np.array(history.history["loss"])
    assert np.isfinite(losses).all()
    floor = loss_at(optimum)
    assert (np.diff(losses) <= 1e-5 * losses[:-1] + 1e-6 * floor + 1e-30).all()
    theta = np.append(*model.get_parameters())
    assert np.isfinite(theta).all()
    start = np.zeros(n_features + 1)
    tolerance = 1e-4 * (np.linalg.norm(optimum) + 1)
    assert np.linalg.norm(theta - optimum) <= np.linalg.norm(start - optimum) + tolerance
    assert loss_at(theta) <= loss_at(start) + 1e-6 * loss_at(start)

    # Above twice the limit: the divergence error, finite weights.
    model = _reusable_model(n_features, factor * limit)
    with pytest.raises(keras_linreg.DivergenceError) as info:
        model.fit(
            x, y, sample_weight=weights, batch_size=n, epochs=80, shuffle=False, verbose=0
        )
    assert np.isfinite(np.append(*model.get_parameters())).all()
    assert info.value.max_stable_learning_rate == pytest.approx(limit, rel=1e-9)
    assert f"learning_rate={factor * limit:.6g}" in str(info.value)


# ------------------------------------------------------------- tf.distribute
_MIRRORED_SCRIPT = r"""
import json, os
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np, keras_linreg
from keras_linreg_cli.demo import tutorial_data

x, y = tutorial_data(0)
bad_x = x.copy()
bad_x[35] = np.nan
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
results = {}
for name, scope in [("one", tf.distribute.get_strategy()), ("mirrored", strategy)]:
    for case, rate in [("overflow", 5.0), ("nan_data", 0.01)]:
        with scope.scope():
            model = keras_linreg.LinearRegression(learning_rate=rate)
            model.compile()
        if case == "overflow":
            data = dict(x=x, y=y, batch_size=10)
        else:
            data = dict(x=tf.data.Dataset.from_tensor_slices((bad_x, y)).batch(10))
        try:
            model.fit(**data, epochs=3, shuffle=False, verbose=0)
            error = None
        except keras_linreg.DivergenceError as e:
            error = str(e)
        slope, intercept = model.get_parameters()
        results[f"{name}/{case}"] = {
            "weights": [*map(float, slope), intercept],
            "iterations": int(model.optimizer.iterations.numpy()),
            "error": error,
        }
print(json.dumps(results))
"""


@pytest.mark.slow
def test_the_guard_under_a_mirrored_strategy_matches_one_device():
    """Two replicas (logical CPUs, a fresh process) stop and restore like one device."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    done = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for case in ("overflow", "nan_data"):
        one, mirrored = results[f"one/{case}"], results[f"mirrored/{case}"]
        assert one["error"] and mirrored["error"]
        assert "became" in mirrored["error"]
        assert mirrored["iterations"] == one["iterations"]
        np.testing.assert_allclose(mirrored["weights"], one["weights"], rtol=1e-6)
        assert np.isfinite(mirrored["weights"]).all()


def test_train_on_batch_skips_a_non_finite_batch_and_carries_on(tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(n_features=1, learning_rate=0.01)
    model.compile()
    model.train_on_batch(x[:50, None], y[:50])
    before = model.get_parameters()
    bad = x[:50, None].copy()
    bad[3] = np.inf
    logs = model.train_on_batch(bad, y[:50], return_dict=True)
    assert not math.isfinite(logs["loss"])
    after = model.get_parameters()
    np.testing.assert_array_equal(after[0], before[0])  # the first step's weights kept
    assert int(model.optimizer.iterations.numpy()) == 1
    model.train_on_batch(x[50:, None], y[50:])  # re-armed: this one is applied
    assert int(model.optimizer.iterations.numpy()) == 2
    assert not np.array_equal(model.get_parameters()[0], before[0])
