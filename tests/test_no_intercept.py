"""`LinearRegression(fit_intercept=False)`: `y = x · slope`, no intercept at all.

The model then has no intercept variable: nothing trains, saves or exports one,
and `intercept` reads as exactly 0.0. References are independent of the code
under test: `numpy.linalg.lstsq(x, y)` on `x` alone (no column of ones), the
same on `sqrt(w)`-scaled rows for sample weights, scikit-learn's
`Ridge(fit_intercept=False)` for an L2 penalty, NumPy eigenvalues for the stable
rate, and the NIST StRD certified values for NoInt1 and NoInt2.

Tolerances: float32 training on well-conditioned data run to convergence
reaches the float64 optimum to rtol 2e-5 (float32 rounding of the gradient
sums); exports run the same float32 graph as `predict`, to 1e-6.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_linreg
from keras_linreg import closed_form, divergence
from keras_linreg_cli import main

RTOL_CONVERGED = 2e-5
RTOL_SAME_GRAPH = 1e-6


# ------------------------------------------------------------------ helpers
def _lstsq(x, y, w=None):
    """The weighted least-squares slope through the origin, in float64."""
    x = np.asarray(x, np.float64).reshape(len(y), -1)
    y = np.asarray(y, np.float64)
    root = np.ones(len(y)) if w is None else np.sqrt(np.asarray(w, np.float64))
    return np.linalg.lstsq(x * root[:, None], y * root, rcond=None)[0]


def _epochs_to_converge(z, lr, w=None, l2=0.0, reduction=1e-7):
    """Full-batch epochs for gradient descent at `lr` to shrink the error `reduction`-fold.

    The loss's Hessian in the trainable weights is `H = (2/n) Zᵀ W Z + 2·l2·I`
    (NumPy here); the error along its eigenvector of eigenvalue `lam` is
    multiplied by `|1 - lr · lam|` per step, and the slowest direction sets
    the count.
    """
    z = np.asarray(z, np.float64)
    w = np.ones(len(z)) if w is None else np.asarray(w, np.float64)
    hessian = 2.0 / len(z) * (z.T * w) @ z + 2.0 * l2 * np.eye(z.shape[1])
    eigenvalues = np.linalg.eigvalsh(hessian)
    factor = max(abs(1 - lr * eigenvalues[0]), abs(1 - lr * eigenvalues[-1]))
    return max(1, math.ceil(math.log(reduction) / math.log(factor)))


@pytest.fixture
def data(rng):
    """Three well-conditioned features off zero and y with an offset the model cannot fit."""
    x = (rng.normal(size=(256, 3)) + [1.0, -0.5, 2.0]).astype("float32")
    y = (x @ np.array([1.5, -2.0, 0.5]) + 0.7 + rng.normal(0, 0.1, 256)).astype("float32")
    w = rng.uniform(0.5, 1.5, 256).astype("float32")
    return x, y, w


def _fitted(x, y, w=None, **kwargs):
    model = keras_linreg.LinearRegression(fit_intercept=False, **kwargs)
    model.compile()
    model.fit(x, y, sample_weight=w, batch_size=len(x), epochs=20, shuffle=False, verbose=0)
    return model


# ------------------------------------------------------------ the parameter
def test_the_default_fits_an_intercept_and_a_bad_value_is_refused():
    assert keras_linreg.LinearRegression().fit_intercept is True
    with pytest.raises(ValueError, match=r"expected a bool. Received: fit_intercept='no'"):
        keras_linreg.LinearRegression(fit_intercept="no")


@pytest.mark.parametrize("standardize", [False, True])
def test_there_is_no_intercept_variable(standardize):
    model = keras_linreg.LinearRegression(
        n_features=2, fit_intercept=False, standardize=standardize,
        intercept_initializer="ones",  # ignored, as Dense(use_bias=False) ignores bias_initializer
    )  # fmt: skip
    slope_name = "standardized_slope" if standardize else "slope"
    assert [v.name for v in model.trainable_variables] == [slope_name]
    assert not any("intercept" in v.name for v in model.weights)
    assert float(model.intercept) == 0.0
    assert model.get_parameters()[1] == 0.0
    # The prediction at the origin is exactly 0: there is nothing to add.
    assert np.all(model.predict(np.zeros((3, 2), "float32"), verbose=0) == 0.0)


def test_config_round_trip_and_old_configs_mean_an_intercept():
    model = keras_linreg.LinearRegression(n_features=2, fit_intercept=False, standardize=True)
    config = model.get_config()
    assert config["fit_intercept"] is False
    assert config["name"] == model.name  # the base config is kept
    clone = keras_linreg.LinearRegression.from_config(config)
    assert clone.fit_intercept is False and clone.get_config() == config
    # A config written before the option (every existing `.keras` file) has no key.
    old = {key: value for key, value in config.items() if key != "fit_intercept"}
    assert keras_linreg.LinearRegression.from_config(old).fit_intercept is True


@pytest.mark.parametrize("standardize", [False, True])
def test_keras_file_round_trip(tmp_path, data, standardize):
    x, y, _ = data
    model = _fitted(x, y, standardize=standardize, learning_rate=0.05)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.fit_intercept is False and loaded.standardize is standardize
    assert [v.name for v in loaded.weights] == [v.name for v in model.weights]
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert loaded.get_parameters()[1] == 0.0
    np.testing.assert_array_equal(loaded.get_parameters()[0], model.get_parameters()[0])


# ------------------------------------------------------------------ training
def _l2_reference(x, y, w, l2):
    """scikit-learn's ridge through the origin for Σ w r² / n + l2 Σ slope²."""
    from sklearn.linear_model import Ridge

    ridge = Ridge(alpha=len(y) * l2, fit_intercept=False, solver="svd", tol=1e-12)
    ridge.fit(x.astype(np.float64), y.astype(np.float64), sample_weight=w)
    return ridge.coef_


@pytest.mark.parametrize("path", ["fast", "keras"])
@pytest.mark.parametrize(
    "case", ["plain", "sample_weight", "standardize", "l2", "standardize+sample_weight"]
)
def test_the_intercept_stays_exactly_zero_and_the_slope_is_least_squares(
    data, keras_fit_calls, path, case
):
    x, y, w = data
    weights = w if "sample_weight" in case else None
    standardize = "standardize" in case
    l2 = 0.05 if case == "l2" else 0.0
    kwargs = {"standardize": standardize}
    if l2:
        kwargs["slope_regularizer"] = keras.regularizers.L2(l2)
    # Full batch at 1 / lambda_max of the Hessian the model trains on (half the largest
    # stable rate), for as many epochs as its slowest direction needs.
    probe = keras_linreg.LinearRegression(fit_intercept=False, **kwargs)
    probe.build((None, 3))
    if standardize:
        probe.adapt(x)
    design = divergence._jacobian(probe)
    rate = 0.5 * closed_form.max_stable_learning_rate(x, weights, design=design, l2=l2)
    epochs = _epochs_to_converge(design(x), rate, weights, l2) + 5
    assert epochs < 300
    model = keras_linreg.LinearRegression(fit_intercept=False, learning_rate=rate, **kwargs)
    model.compile()
    if path == "fast":
        model.fit(x, y, sample_weight=weights, batch_size=len(x), epochs=epochs,
                  shuffle=False, verbose=0)  # fmt: skip
        assert not any(called is model for called in keras_fit_calls)
    else:
        if standardize:
            model.adapt(x)
        parts = (x, y) if weights is None else (x, y, weights)
        dataset = tf.data.Dataset.from_tensor_slices(parts).batch(len(x))
        model.fit(dataset, epochs=epochs, verbose=0)
        assert any(called is model for called in keras_fit_calls)

    slope, intercept = model.get_parameters()
    assert intercept == 0.0 and float(model.intercept) == 0.0
    assert np.all(model.predict(np.zeros((2, 3), "float32"), verbose=0) == 0.0)
    reference = _l2_reference(x, y, weights, l2) if l2 else _lstsq(x, y, weights)
    np.testing.assert_allclose(slope, reference, rtol=RTOL_CONVERGED)
    # The offset in y matters: the through-origin slope is not the usual one.
    with_intercept = keras_linreg.least_squares(x, y, weights)[0]
    assert np.max(np.abs(with_intercept - reference)) > 0.05


def test_mini_batches_shuffled_keep_the_intercept_at_zero(data):
    x, y, w = data
    model = keras_linreg.LinearRegression(fit_intercept=False, learning_rate=0.02)
    model.compile()
    model.fit(x, y, sample_weight=w, batch_size=32, epochs=3, verbose=0)
    assert model.get_parameters()[1] == 0.0
    np.testing.assert_array_equal(model.predict(x, verbose=0), model(x).numpy())
    slope = model.slope.numpy().astype(np.float64)
    np.testing.assert_allclose(model.predict(x, verbose=0), x @ slope, rtol=1e-5, atol=1e-5)


def test_standardize_scales_by_the_root_mean_square_without_centering(data):
    x, y, _ = data
    model = _fitted(x, y, standardize=True, learning_rate=0.3)
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(model.feature_mean.numpy(), 0.0)
    np.testing.assert_allclose(model.feature_std.numpy(), np.sqrt(np.mean(x64**2, axis=0)),
                               rtol=1e-6)  # fmt: skip
    (w,) = (v.numpy().astype(np.float64) for v in model.trainable_variables)
    np.testing.assert_allclose(model.get_parameters()[0],
                               w / model.feature_std.numpy().astype(np.float64))  # fmt: skip
    # Centering is what an intercept absorbs: z = x / rms keeps the offsets.
    z = model.standardization(x).numpy()
    np.testing.assert_allclose(z, x64 / np.sqrt(np.mean(x64**2, axis=0)), rtol=1e-6)
    assert np.all(np.abs(z.mean(axis=0)) > 0.2)


def test_the_stable_rate_has_no_intercept_row(data):
    x, _, w = data
    x64 = x.astype(np.float64)
    hessian = 2.0 / len(x) * (x64.T * w) @ x64
    expected = 2.0 / np.linalg.eigvalsh(hessian)[-1]
    assert closed_form.max_stable_learning_rate(x, w, fit_intercept=False) == pytest.approx(
        expected, rel=1e-10
    )
    model = keras_linreg.LinearRegression(n_features=3, fit_intercept=False)
    np.testing.assert_array_equal(divergence._jacobian(model)(x), x)  # the design is x itself
    assert closed_form.max_stable_learning_rate(x, w) != pytest.approx(expected, rel=1e-3)


def test_a_diverging_fit_quotes_the_rate_through_the_origin(data):
    x, y, _ = data
    x64 = x.astype(np.float64)
    stable = 2.0 / np.linalg.eigvalsh(2.0 / len(x) * x64.T @ x64)[-1]
    model = keras_linreg.LinearRegression(fit_intercept=False, learning_rate=3 * stable)
    model.compile()
    with pytest.raises(keras_linreg.DivergenceError) as info:
        model.fit(x, y, batch_size=len(x), epochs=200, shuffle=False, verbose=0)
    assert info.value.max_stable_learning_rate == pytest.approx(stable, rel=1e-6)
    assert model.get_parameters()[1] == 0.0


def test_epochs_to_optimum_aims_at_the_optimum_through_the_origin(data):
    x, y, _ = data
    rate = 0.5 * closed_form.max_stable_learning_rate(x, fit_intercept=False)
    model = keras_linreg.LinearRegression(fit_intercept=False, learning_rate=rate)
    epochs = keras_linreg.epochs_to_optimum(model, x, y, tolerance=1e-4, max_epochs=500)
    assert epochs is not None
    np.testing.assert_allclose(model.get_parameters()[0], _lstsq(x, y), atol=1e-4)


# ------------------------------------------------------------ tf.distribute
_MIRRORED_SCRIPT = r"""
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np, keras_linreg

rng = np.random.default_rng(3)
x = (rng.normal(size=(184, 2)) + [1.0, -2.0]).astype("float32")
y = (x @ np.array([0.5, -1.5]) + 0.3 + rng.normal(0, 0.1, 184)).astype("float32")
w = rng.uniform(0.5, 1.5, 184).astype("float32")
dataset = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(61)  # 61, 61, 61, 1 rows
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
results = {"x": x.tolist(), "y": y.tolist(), "w": w.tolist()}
for name, scope in [("one", tf.distribute.get_strategy()), ("mirrored", strategy)]:
    with scope.scope():
        model = keras_linreg.LinearRegression(n_features=2, fit_intercept=False,
                                              learning_rate=0.05)
        model.compile()
    history = model.fit(dataset, epochs=3, verbose=0)
    slope, intercept = model.get_parameters()
    results[name] = {
        "slope": slope.tolist(), "intercept": intercept, "loss": history.history["loss"],
        "variables": [v.name for v in model.trainable_variables],
    }
print(json.dumps(results))
"""


@pytest.mark.slow
def test_mirrored_over_two_devices_trains_no_intercept_like_a_hand_loop():
    """Two replicas (logical CPUs, a fresh process), uneven splits (31/30 and a 1-row
    batch): the same slope as one device and as hand-written float64 SGD, intercept 0."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    done = subprocess.run(
        [sys.executable, "-c", _MIRRORED_SCRIPT],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    x, y, w = (np.asarray(results[k], np.float64) for k in ("x", "y", "w"))
    slope = np.zeros(2)
    for _ in range(3):
        for start in range(0, len(y), 61):
            rows = slice(start, start + 61)
            residual = x[rows] @ slope - y[rows]
            slope = slope - 0.05 * 2 * (w[rows] * residual) @ x[rows] / len(residual)
    for name in ("one", "mirrored"):
        run = results[name]
        assert run["variables"] == ["slope"] and run["intercept"] == 0.0
        np.testing.assert_allclose(run["slope"], slope, rtol=1e-5)
    np.testing.assert_allclose(results["mirrored"]["loss"], results["one"]["loss"], rtol=1e-5)


# ------------------------------------------------------------------- exports
def test_saved_model_serves_x_to_y_like_predict(tmp_path, data):
    x, y, _ = data
    model = _fitted(x, y, standardize=True, learning_rate=0.3)
    keras_linreg.export_saved_model(model, tmp_path / "1")
    signature = tf.saved_model.load(str(tmp_path / "1")).signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["x"]
    served = signature(x=tf.constant(x))["y"].numpy()
    expected = model.predict(x, verbose=0)
    assert served.shape == (len(x),)
    np.testing.assert_allclose(served, expected, rtol=RTOL_SAME_GRAPH,
                               atol=RTOL_SAME_GRAPH * np.abs(expected).max())  # fmt: skip
    zero = signature(x=tf.zeros((1, 3)))["y"].numpy()
    assert zero.tolist() == [0.0]


@pytest.mark.parametrize("standardize", [False, True])
def test_onnx_serves_x_to_y_like_predict(tmp_path, data, standardize):
    ort = pytest.importorskip("onnxruntime")
    x, y, _ = data
    model = _fitted(x, y, standardize=standardize, learning_rate=0.3 if standardize else 0.05)
    path = tmp_path / "linreg.onnx"
    keras_linreg.export_onnx(model, path)
    session = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("x", "tensor(float)", ["n", 3])
    assert (out.name, out.shape) == ("y", ["n"])
    (served,) = session.run(["y"], {"x": x})
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(served, expected, rtol=RTOL_SAME_GRAPH,
                               atol=RTOL_SAME_GRAPH * np.abs(expected).max())  # fmt: skip
    (zero,) = session.run(["y"], {"x": np.zeros((1, 3), "float32")})
    assert zero.tolist() == [0.0]


# ------------------------------------------------------------------------ CLI
def test_cli_train_no_intercept_reports_the_optimum_through_the_origin(tmp_path, data, capfd):
    x, y, _ = data
    path = tmp_path / "data.csv"
    rows = "\n".join(",".join(f"{v:.9g}" for v in (*row, target)) for row, target in zip(
        x, y, strict=True))  # fmt: skip
    path.write_text("a,b,c,y\n" + rows + "\n")
    saved = tmp_path / "model.keras"
    capfd.readouterr()
    status = main([
        "train", str(path), "--target", "y", "--no-intercept", "--standardize", "--epochs",
        "200", "--learning-rate", "0.5", "--log-dir", str(tmp_path / "logs"), "--save",
        str(saved), "--quiet",
    ])  # fmt: skip
    out, err = capfd.readouterr()
    assert status == 0, err
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line}
    x64 = np.loadtxt(path, delimiter=",", skiprows=1)
    reference = _lstsq(x64[:, :3], x64[:, 3])
    for i, name in enumerate("abc"):
        model_value, optimum, gap = map(float, table[f"slope[{name}]"][:3])
        assert optimum == pytest.approx(reference[i], rel=1e-5)
        assert model_value == pytest.approx(reference[i], rel=1e-4)
    assert table["intercept"][0] == "none"  # no fake row of zeros
    # R² is uncentered without an intercept (statsmodels' and NIST's definition).
    residual = x64[:, :3] @ reference - x64[:, 3]
    r2 = 1 - residual @ residual / (x64[:, 3] @ x64[:, 3])
    assert float(table["epochs"][table["epochs"].index("R²") + 1]) == pytest.approx(r2, abs=2e-6)
    assert keras.saving.load_model(saved).fit_intercept is False


# ---------------------------------------------------------------------- NIST
def _nist_file():
    candidates = [
        Path(__file__).resolve().parents[2] / "shared" / "data" / "nist-strd-linear.json",
        Path("/work/shared/data/nist-strd-linear.json"),
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    pytest.skip(
        "NIST StRD reference data not found (looked for "
        + ", ".join(map(str, candidates))
        + "): it lives in ../shared/data beside the repository, not in the project"
    )


def _nist(name):
    datasets = json.loads(_nist_file().read_text())["datasets"]
    return next(d for d in datasets if d["name"] == name)


def _lre(estimate, certified):
    """McCullough's log relative error: the number of correct significant digits."""
    error = abs(estimate - certified)
    return 15.0 if error == 0 else -math.log10(error / abs(certified))


@pytest.mark.parametrize("name", ["NoInt1", "NoInt2"])
@pytest.mark.parametrize("standardize", [False, True])
def test_float32_model_reaches_the_certified_slope_of_nist_noint(name, standardize):
    dataset = _nist(name)
    assert dataset["model"]["intercept"] is False
    x = np.asarray(dataset["x"], "float32")
    y = np.asarray(dataset["y"], "float32")
    (certified,) = dataset["certified_params"]
    probe = keras_linreg.LinearRegression(fit_intercept=False, standardize=standardize)
    probe.build((None, 1))
    if standardize:
        probe.adapt(x)
    # Half the largest stable rate: with one feature that is 1 / lambda, gradient
    # descent's Newton step, so a few epochs reach float32's fixed point.
    rate = 0.5 * closed_form.max_stable_learning_rate(x, design=divergence._jacobian(probe))
    model = keras_linreg.LinearRegression(
        fit_intercept=False, standardize=standardize, learning_rate=rate
    )
    model.compile()
    model.fit(x, y, batch_size=len(x), epochs=50, shuffle=False, verbose=0)
    slope, intercept = model.get_parameters()
    assert intercept == 0.0
    assert _lre(float(slope[0]), certified) >= 6.0, (slope[0], certified)
    # And float64 least squares through the origin gets (nearly) all 15 digits.
    assert _lre(float(keras_linreg.least_squares(x.astype(np.float64), y.astype(np.float64),
                                                 fit_intercept=False)[0][0]), certified) >= 13
