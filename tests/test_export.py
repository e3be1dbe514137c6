"""Tests for `keras_linreg.export`: SavedModel export, atomic writes, reloading.

Predictions are checked against an independent float64 computation,
`y = x @ slope + intercept` with the model's parameters from
`get_parameters()`, to a relative tolerance of 1e-5 (float32 serving), and
against `model.predict` to 1e-6 (the same float32 graph).
"""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_linreg
from keras_linreg import export as export_module

try:
    import resource
except ImportError:  # Windows
    resource = None

RTOL_REFERENCE = 1e-5
RTOL_SAME_GRAPH = 1e-6


def _trained(n_features, feature_names=None, seed=0, epochs=20):
    """A LinearRegression fitted a little on y = x @ w + 0.5 (non-trivial weights)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(64, n_features)).astype("float32")
    y = (x @ np.arange(1, n_features + 1) + 0.5).astype("float32")
    model = keras_linreg.LinearRegression(learning_rate=0.05, feature_names=feature_names)
    model.compile()
    model.fit(x, y, batch_size=64, epochs=epochs, shuffle=False, verbose=0)
    return model


def _reference(model, x):
    slope, intercept = model.get_parameters()
    return np.asarray(x, "float64") @ slope + intercept


def _listing(directory):
    return sorted(os.listdir(directory))


@pytest.fixture(scope="module")
def model_1d():
    return _trained(1)


@pytest.fixture(scope="module")
def model_3d():
    return _trained(3, feature_names=["age", "height", "weight"], seed=1)


# ------------------------------------------------------ TensorFlow's own CLI
def _saved_model_cli(*args):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if not os.path.exists(cli):
        pytest.fail(f"saved_model_cli not found next to {sys.executable}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [cli, *args], capture_output=True, text=True, timeout=180, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
def test_saved_model_cli_shows_and_runs_the_named_signature(model_1d, tmp_path):
    path = tmp_path / "models" / "linreg" / "1"
    model_1d.export(path, verbose=False)

    shown = _saved_model_cli("show", "--dir", str(path), "--all")
    block = re.search(
        r"signature_def\['serving_default'\]:(.*?)Method name is: (\S+)", shown, re.S
    )
    assert block, shown
    body = re.sub(r"\s+", " ", block.group(1))
    assert re.search(r"inputs\['x'\] tensor_info: dtype: DT_FLOAT shape: \(-1, 1\)", body), body
    assert re.search(r"outputs\['y'\] tensor_info: dtype: DT_FLOAT shape: \(-1\)", body), body
    assert "inputs['args_0']" not in body and "outputs['output_0']" not in body
    assert block.group(2) == "tensorflow/serving/predict"
    assert "signature_def['serve']:" in shown

    ran = _saved_model_cli(
        "run", "--dir", str(path), "--tag_set", "serve",
        "--signature_def", "serving_default", "--input_exprs", "x=[[1.0],[2.0]]",
    )
    match = re.search(r"Result for output key y:\s*\[([^\]]*)\]", ran)
    assert match, ran
    served = np.array(match.group(1).split(), dtype="float64")
    x = np.array([[1.0], [2.0]])
    np.testing.assert_allclose(served, _reference(model_1d, x), rtol=RTOL_REFERENCE)
    np.testing.assert_allclose(
        served, model_1d.predict(x.astype("float32"), verbose=0), rtol=RTOL_SAME_GRAPH
    )


# -------------------------------------------------- in-process reload paths
@pytest.mark.parametrize("which", ["model_1d", "model_3d"])
def test_signature_load_and_tfsmlayer_give_the_models_predictions(which, request, tmp_path):
    model = request.getfixturevalue(which)
    k = model.n_features
    path = str(tmp_path / "export")
    keras_linreg.export_saved_model(model, path)
    x = np.random.default_rng(7).normal(size=(9, k)).astype("float32")
    expected = model.predict(x, verbose=0)

    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    (inputs,) = [signature.structured_input_signature[1]]
    assert list(inputs) == ["x"]
    assert inputs["x"].dtype == tf.float32 and inputs["x"].shape.as_list() == [None, k]
    assert list(signature.structured_outputs) == ["y"]
    assert signature.structured_outputs["y"].shape.as_list() == [None]
    assert signature.structured_outputs["y"].dtype == tf.float32

    y = signature(x=tf.constant(x))["y"].numpy()
    np.testing.assert_allclose(y, _reference(model, x), rtol=RTOL_REFERENCE, atol=1e-6)
    np.testing.assert_allclose(y, expected, rtol=RTOL_SAME_GRAPH)
    np.testing.assert_allclose(loaded.serve(x).numpy(), expected, rtol=RTOL_SAME_GRAPH)

    layer = keras.layers.TFSMLayer(path, call_endpoint="serving_default")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x)["y"]), expected, rtol=RTOL_SAME_GRAPH
    )
    stock_layer = keras.layers.TFSMLayer(path)  # call_endpoint="serve"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(stock_layer(x)), expected, rtol=RTOL_SAME_GRAPH
    )

    predict_fn, _ = keras_linreg.load_predictor(path)
    np.testing.assert_allclose(predict_fn(x), expected, rtol=RTOL_SAME_GRAPH)


def test_feature_names_round_trip(model_3d, model_1d, tmp_path):
    keras_linreg.export_saved_model(model_3d, tmp_path / "named")
    keras_linreg.export_saved_model(model_1d, tmp_path / "unnamed")

    loaded = tf.saved_model.load(str(tmp_path / "named"))
    assert [n.decode() for n in loaded.feature_names[0].numpy()] == ["age", "height", "weight"]
    assert keras_linreg.load_predictor(tmp_path / "named")[1] == ("age", "height", "weight")

    assert tf.saved_model.load(str(tmp_path / "unnamed")).feature_names[0].shape == (0,)
    assert keras_linreg.load_predictor(tmp_path / "unnamed")[1] is None


def test_export_goes_through_the_models_call(tmp_path):
    """Whatever `call` computes is served (e.g. standardization's raw-unit output)."""

    class Doubled(keras_linreg.LinearRegression):
        def call(self, x):
            return 2.0 * super().call(x)

    model = Doubled(n_features=2, slope_initializer="ones", intercept_initializer="ones")
    model.export(tmp_path / "m", verbose=False)
    x = np.array([[1.0, 2.0], [3.0, -1.0]], "float32")
    predict_fn, _ = keras_linreg.load_predictor(tmp_path / "m")
    np.testing.assert_allclose(predict_fn(x), 2.0 * (x.sum(axis=1) + 1.0), rtol=1e-6)


def test_float64_model_still_serves_float32(tmp_path):
    model = keras_linreg.LinearRegression(
        n_features=2, dtype="float64", slope_initializer="ones", intercept_initializer="ones"
    )
    keras_linreg.export_saved_model(model, tmp_path / "m")
    signature = tf.saved_model.load(str(tmp_path / "m")).signatures["serving_default"]
    assert signature.structured_input_signature[1]["x"].dtype == tf.float32
    x = np.array([[0.25, 0.5], [1.0, -2.0]], "float32")
    y = signature(x=tf.constant(x))["y"]
    assert y.dtype == tf.float32
    np.testing.assert_allclose(y.numpy(), x.sum(axis=1) + 1.0, rtol=1e-6)


def test_model_export_is_verbose_by_default_like_keras(model_1d, tmp_path, capsys):
    model_1d.export(tmp_path / "m")
    out = capsys.readouterr().out
    assert "Saved artifact at" in out and "x: float32 [None, 1] -> y: float32 [None]" in out


def test_model_export_rejects_an_input_signature(model_1d, tmp_path):
    with pytest.raises(ValueError, match="input_signature"):
        model_1d.export(tmp_path / "m", input_signature=[tf.TensorSpec([None, 1])])
    assert _listing(tmp_path) == []


def test_export_after_loading_from_keras_file(model_3d, tmp_path):
    model_3d.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    reloaded.export(tmp_path / "export", verbose=False)
    x = np.random.default_rng(3).normal(size=(5, 3)).astype("float32")

    for path in (tmp_path / "model.keras", tmp_path / "export"):
        predict_fn, names = keras_linreg.load_predictor(path)
        assert names == ("age", "height", "weight")
        np.testing.assert_allclose(predict_fn(x), _reference(model_3d, x), rtol=RTOL_REFERENCE)
        np.testing.assert_allclose(
            predict_fn(x), model_3d.predict(x, verbose=0), rtol=RTOL_SAME_GRAPH
        )


# ------------------------------------------------------- errors, atomicity
def test_unbuilt_model_raises_and_leaves_nothing_on_disk(tmp_path):
    model = keras_linreg.LinearRegression()
    with pytest.raises(ValueError, match="fit or build it first"):
        model.export(tmp_path / "models" / "linreg" / "1")
    with pytest.raises(ValueError, match="fit or build it first"):
        keras_linreg.export_saved_model(model, tmp_path / "other")
    assert _listing(tmp_path) == []


def test_existing_target_is_refused_unless_overwrite(model_1d, tmp_path):
    base = tmp_path / "linreg"
    other = keras_linreg.LinearRegression(
        n_features=1, slope_initializer="ones", intercept_initializer="zeros"
    )
    keras_linreg.export_saved_model(model_1d, base / "1")
    x = np.array([[1.0], [2.0]], "float32")
    before = keras_linreg.load_predictor(base / "1")[0](x)

    with pytest.raises(FileExistsError, match="overwrite=True"):
        keras_linreg.export_saved_model(other, base / "1")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        other.export(base / "1")
    np.testing.assert_array_equal(keras_linreg.load_predictor(base / "1")[0](x), before)

    keras_linreg.export_saved_model(other, base / "1", overwrite=True)
    np.testing.assert_allclose(keras_linreg.load_predictor(base / "1")[0](x), [1.0, 2.0])
    assert _listing(base) == ["1"]  # no temporary or moved-aside directory left


def test_overwrite_never_deletes_a_directory_that_is_not_a_saved_model(model_1d, tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a SavedModel|expected a SavedModel"):
        keras_linreg.export_saved_model(model_1d, target, overwrite=True)
    assert (target / "notes.txt").read_text() == "keep me"
    assert _listing(tmp_path) == ["precious"]


def test_export_respects_the_umask(model_1d, tmp_path):
    """Temporary dirs are private (0700) by default; the export must not be."""
    keras_linreg.export_saved_model(model_1d, tmp_path / "m")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "m").st_mode & 0o777 == 0o777 & ~umask


class _FileSizeLimit:
    """A real I/O failure: writes past `limit` bytes fail with EFBIG.

    (CPython ignores SIGXFSZ, so the write raises instead of killing us.)
    """

    def __init__(self, limit):
        self.limit = limit

    def __enter__(self):
        self.saved = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.limit, self.saved[1]))

    def __exit__(self, *exc):
        resource.setrlimit(resource.RLIMIT_FSIZE, self.saved)


@pytest.mark.skipif(resource is None, reason="needs POSIX RLIMIT_FSIZE")
def test_failure_mid_export_keeps_the_previous_export_and_no_temporaries(model_1d, tmp_path):
    base = tmp_path / "linreg"
    keras_linreg.export_saved_model(model_1d, base / "1")
    x = np.array([[1.0], [2.0]], "float32")
    before = keras_linreg.load_predictor(base / "1")[0](x)
    other = keras_linreg.LinearRegression(n_features=1, slope_initializer="ones")

    # Control: under this limit, a plain Keras export is cut off mid-write
    # (variables written, saved_model.pb not), so the condition is real.
    other(x)  # stock export needs a model that has been called
    with _FileSizeLimit(4096), pytest.raises(Exception, match="File too large"):
        keras.Model.export(other, str(tmp_path / "stock"), verbose=False)
    assert (tmp_path / "stock" / "variables").is_dir()
    assert not (tmp_path / "stock" / "saved_model.pb").exists()

    with _FileSizeLimit(4096), pytest.raises(Exception, match="File too large"):
        keras_linreg.export_saved_model(other, base / "1", overwrite=True)
    with _FileSizeLimit(4096), pytest.raises(Exception, match="File too large"):
        keras_linreg.export_saved_model(other, base / "2")
    assert _listing(base) == ["1"]
    np.testing.assert_array_equal(keras_linreg.load_predictor(base / "1")[0](x), before)

    # Parents created for the export are removed again too.
    with _FileSizeLimit(4096), pytest.raises(Exception, match="File too large"):
        keras_linreg.export_saved_model(other, tmp_path / "new" / "linreg" / "1")
    assert not (tmp_path / "new").exists()


@pytest.mark.skipif(resource is None, reason="needs POSIX RLIMIT_FSIZE")
def test_failure_mid_keras_save_keeps_the_previous_file(model_1d, tmp_path):
    path = tmp_path / "model.keras"
    model_1d.save(path)
    x = np.array([[1.0], [2.0]], "float32")
    before = keras_linreg.load_predictor(path)[0](x)
    size = path.stat().st_size
    other = keras_linreg.LinearRegression(n_features=1, slope_initializer="ones")

    # Control: Keras' own save truncates the file it writes.
    with _FileSizeLimit(1000), pytest.raises(OSError, match="File too large"):
        keras.saving.save_model(other, tmp_path / "stock.keras")
    assert (tmp_path / "stock.keras").stat().st_size == 1000
    os.unlink(tmp_path / "stock.keras")

    with _FileSizeLimit(1000), pytest.raises(OSError, match="File too large"):
        other.save(path)  # Keras' default overwrite=True, routed through save_model
    assert _listing(tmp_path) == ["model.keras"]
    assert path.stat().st_size == size
    np.testing.assert_array_equal(keras_linreg.load_predictor(path)[0](x), before)


def test_save_model_overwrite_semantics(model_1d, tmp_path):
    path = tmp_path / "sub" / "model.keras"
    other = keras_linreg.LinearRegression(n_features=1, slope_initializer="ones")
    keras_linreg.save_model(model_1d, path)  # creates the parent
    with pytest.raises(FileExistsError, match="overwrite=True"):
        keras_linreg.save_model(other, path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        other.save(path, overwrite=False)
    assert keras.saving.load_model(path).get_parameters()[0][0] == pytest.approx(
        model_1d.get_parameters()[0][0]
    )
    other.save(path)  # Keras' default: overwrite=True
    assert keras.saving.load_model(path).get_parameters()[0][0] == 1.0
    assert _listing(path.parent) == ["model.keras"]
    # The file keeps the umask's permissions, not a temporary file's 0600.
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask

    with pytest.raises(ValueError, match="`.keras`"):
        keras_linreg.save_model(other, tmp_path / "model.h5")
    (tmp_path / "dir.keras").mkdir()
    with pytest.raises(ValueError, match="expected a file"):
        keras_linreg.save_model(other, tmp_path / "dir.keras", overwrite=True)


def test_model_checkpoint_still_works_with_the_overridden_save(tmp_path):
    x = np.linspace(0, 1, 16, dtype="float32")
    model = keras_linreg.LinearRegression(learning_rate=0.1)
    model.compile()
    path = tmp_path / "ckpt.keras"
    model.fit(
        x, 2 * x, batch_size=16, epochs=3, verbose=0,
        callbacks=[keras.callbacks.ModelCheckpoint(path)],
    )
    assert _listing(tmp_path) == ["ckpt.keras"]
    np.testing.assert_allclose(
        keras.saving.load_model(path).get_parameters()[0], model.get_parameters()[0]
    )


def test_model_save_keeps_keras_paths_it_does_not_handle(model_1d, tmp_path):
    assert export_module._saves_atomically(tmp_path / "m.keras")
    assert not export_module._saves_atomically(tmp_path / "m.keras", zipped=False)
    assert not export_module._saves_atomically("hf://user/model.keras")
    assert not export_module._saves_atomically(tmp_path / "m.h5")


# ----------------------------------------------------------- load_predictor
def test_load_predictor_errors(model_3d, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing exists"):
        keras_linreg.load_predictor(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a SavedModel"):
        keras_linreg.load_predictor(tmp_path / "empty")
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(ValueError, match="SavedModel directory or a `.keras` file"):
        keras_linreg.load_predictor(tmp_path / "data.csv")
    (tmp_path / "fake.keras").write_text("not a zip")
    with pytest.raises(ValueError, match="SavedModel directory or a `.keras` file"):
        keras_linreg.load_predictor(tmp_path / "fake.keras")

    keras_linreg.export_saved_model(model_3d, tmp_path / "m")
    predict_fn, _ = keras_linreg.load_predictor(tmp_path / "m")
    with pytest.raises(ValueError, match=r"n_features=3.*x.shape=\(2, 2\)"):
        predict_fn(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n_features=3"):
        predict_fn(np.zeros(3))


def test_load_predictor_accepts_one_dimensional_x_for_one_feature(model_1d, tmp_path):
    keras_linreg.export_saved_model(model_1d, tmp_path / "m")
    model_1d.save(tmp_path / "m.keras")
    x = np.array([0.5, 1.5, -3.0])
    for path in (tmp_path / "m", tmp_path / "m.keras"):
        predict_fn, _ = keras_linreg.load_predictor(path)
        y = predict_fn(x)
        assert y.shape == (3,) and y.dtype == np.float32
        np.testing.assert_allclose(y, _reference(model_1d, x[:, None]), rtol=RTOL_REFERENCE)


def test_load_predictor_reads_a_stock_keras_export(model_1d, tmp_path):
    """A plain `keras.Model.export` (anonymous input/output) still loads."""
    keras.Model.export(model_1d, str(tmp_path / "stock"), verbose=False)
    predict_fn, names = keras_linreg.load_predictor(tmp_path / "stock")
    x = np.array([[1.0], [2.0]], "float32")
    np.testing.assert_allclose(predict_fn(x), model_1d.predict(x, verbose=0), rtol=1e-6)
    assert names is None
