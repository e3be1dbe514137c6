"""Tests for `keras_linreg.export_onnx` and `model.export(path, format="onnx")`.

Every exported file is run with onnxruntime (a separate inference engine) and
compared with `model.predict` to 1e-6 (both float32; relative to the largest
prediction) and with an independent float64 computation
`x @ slope + intercept` from `get_parameters()` to 1e-5.
"""

import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

import keras_linreg

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

try:
    import resource
except ImportError:  # Windows
    resource = None

RTOL_SAME_GRAPH = 1e-6
RTOL_REFERENCE = 1e-5


def _trained(n_features, standardize=False, feature_names=None, seed=0):
    """A model fitted a little on y = x @ (1..k) + 0.5, features on different scales."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(1.0, 50.0, n_features)
    x = (rng.normal(size=(80, n_features)) * scales + 3.0).astype("float32")
    y = (x @ np.arange(1, n_features + 1) + 0.5).astype("float32")
    rate = 0.3 if standardize else 1e-4
    model = keras_linreg.LinearRegression(
        learning_rate=rate, standardize=standardize, feature_names=feature_names
    )
    model.compile()
    model.fit(x, y, batch_size=80, epochs=15, shuffle=False, verbose=0)
    return model, x


def _session(path):
    return ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])


def _assert_matches_predict(y, model, x):
    """`y` equals `model.predict(x)` to 1e-6 relative to the largest |y|: the
    two float32 graphs only round differently (e.g. tf2onnx folds a division
    by std into a multiplication)."""
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(
        y, expected, rtol=RTOL_SAME_GRAPH, atol=RTOL_SAME_GRAPH * np.abs(expected).max()
    )


def _reference(model, x):
    slope, intercept = model.get_parameters()
    return np.asarray(x, "float64") @ slope + intercept


@pytest.mark.parametrize(
    "n_features, standardize, names",
    [(1, False, None), (3, False, ["age", "height", "weight"]), (3, True, None), (1, True, ["x"])],
)
def test_onnxruntime_matches_predict_with_the_named_contract(
    tmp_path, n_features, standardize, names
):
    model, x = _trained(n_features, standardize, names)
    path = tmp_path / "linreg.onnx"
    keras_linreg.export_onnx(model, path)

    session = _session(path)
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("x", "tensor(float)", ["n", n_features])
    assert (out.name, out.type, out.shape) == ("y", "tensor(float)", ["n"])

    for rows in (x, x[:1], x[:7]):  # any batch size
        (y,) = session.run(["y"], {"x": rows})
        assert y.dtype == np.float32 and y.shape == (len(rows),)
        _assert_matches_predict(y, model, rows)
        np.testing.assert_allclose(y, _reference(model, rows), rtol=RTOL_REFERENCE)

    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["feature_names"]) == (names or [])
    onnx.checker.check_model(onnx.load(os.fspath(path)))


def test_standardized_parameters_are_not_trivial(tmp_path):
    """Control for the standardized case: the statistics really change the
    computation (mean and std far from 0 and 1), so a graph that skipped
    standardization would not match."""
    model, x = _trained(3, standardize=True)
    mean = keras.ops.convert_to_numpy(model.feature_mean)
    std = keras.ops.convert_to_numpy(model.feature_std)
    assert np.abs(mean).min() > 1.0 and np.abs(std - 1.0).min() > 0.1
    keras_linreg.export_onnx(model, tmp_path / "m.onnx")
    (y,) = _session(tmp_path / "m.onnx").run(["y"], {"x": x})
    # The trainable weights act on standardized features: (n_features,) and ().
    (w,) = [v.numpy() for v in model.trainable_weights if v.shape == (3,)]
    (b,) = [v.numpy() for v in model.trainable_weights if v.shape == ()]
    wrong = x.astype("float64") @ w + b  # standardization skipped
    assert np.abs(y - wrong).max() > 1.0


def test_model_export_format_onnx(tmp_path, capsys):
    model, x = _trained(2, feature_names=["a", "b"])
    model.export(tmp_path / "m.onnx", format="onnx")  # verbose by default, like Keras
    out = capsys.readouterr().out
    assert "Saved artifact at" in out and "x: float32 [None, 2] -> y: float32 [None]" in out
    (y,) = _session(tmp_path / "m.onnx").run(None, {"x": x})
    _assert_matches_predict(y, model, x)

    model.export(tmp_path / "m15.onnx", format="onnx", verbose=False, opset_version=15)
    assert capsys.readouterr().out == ""
    opsets = {o.domain: o.version for o in onnx.load(tmp_path / "m15.onnx").opset_import}
    assert opsets[""] == 15


def test_model_export_onnx_rejects_other_options(tmp_path):
    model, _ = _trained(1)
    with pytest.raises(ValueError, match="input_signature"):
        model.export(tmp_path / "m.onnx", format="onnx", input_signature=[None])
    with pytest.raises(ValueError, match="kwargs=\\['large_model'\\]"):
        model.export(tmp_path / "m.onnx", format="onnx", large_model=True)
    with pytest.raises(ValueError, match="`opset_version`"):
        keras_linreg.export_onnx(model, tmp_path / "m.onnx", opset_version=0)
    assert os.listdir(tmp_path) == []


def test_export_after_loading_from_keras_file(tmp_path):
    model, x = _trained(3, standardize=True, feature_names=["p", "q", "r"])
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras")
    reloaded.export(tmp_path / "m.onnx", format="onnx", verbose=False)
    session = _session(tmp_path / "m.onnx")
    (y,) = session.run(["y"], {"x": x})
    _assert_matches_predict(y, model, x)
    assert json.loads(session.get_modelmeta().custom_metadata_map["feature_names"]) == [
        "p",
        "q",
        "r",
    ]


def test_float64_model_still_serves_float32(tmp_path):
    model = keras_linreg.LinearRegression(
        n_features=2, dtype="float64", slope_initializer="ones", intercept_initializer="ones"
    )
    keras_linreg.export_onnx(model, tmp_path / "m.onnx")
    session = _session(tmp_path / "m.onnx")
    assert session.get_inputs()[0].type == session.get_outputs()[0].type == "tensor(float)"
    x = np.array([[0.25, 0.5], [1.0, -2.0]], "float32")
    np.testing.assert_allclose(session.run(["y"], {"x": x})[0], x.sum(axis=1) + 1.0, rtol=1e-6)


# ------------------------------------------------------------ quiet export
def test_no_warning_or_output_reaches_the_console(tmp_path, capfd):
    """Keras' own ONNX path (keras.src.export.tf2onnx_lib) emits a FutureWarning
    about `np.object` once per process; ours emits nothing: no warning of any
    category, nothing on stdout or stderr (file descriptors included)."""
    model, _ = _trained(2)
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        keras_linreg.export_onnx(model, tmp_path / "m.onnx")
        model.export(tmp_path / "n.onnx", format="onnx", verbose=False)
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert capfd.readouterr() == ("", "")


def test_the_caller_environment_is_left_alone(tmp_path, monkeypatch):
    """tf2onnx.convert sets TF_CPP_MIN_LOG_LEVEL when imported; it is put back."""
    code = (
        "import os, numpy as np, keras_linreg\n"
        "before = os.environ.get('TF_CPP_MIN_LOG_LEVEL')\n"
        "m = keras_linreg.LinearRegression(n_features=1)\n"
        f"keras_linreg.export_onnx(m, {str(tmp_path / 'm.onnx')!r})\n"
        "import tf2onnx.convert\n"  # really imported by now
        "print(before, os.environ.get('TF_CPP_MIN_LOG_LEVEL'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["KERAS_BACKEND"] = "tensorflow"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["None", "None"]


# ------------------------------------------------- atomic, refuse-or-overwrite
def test_existing_target_is_refused_unless_overwrite(tmp_path):
    model, x = _trained(1)
    other = keras_linreg.LinearRegression(n_features=1, slope_initializer="ones")
    path = tmp_path / "m.onnx"
    keras_linreg.export_onnx(model, path)
    before = path.read_bytes()

    with pytest.raises(FileExistsError, match="overwrite=True"):
        keras_linreg.export_onnx(other, path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        other.export(path, format="onnx")
    assert path.read_bytes() == before

    keras_linreg.export_onnx(other, path, overwrite=True)
    (y,) = _session(path).run(["y"], {"x": x})
    np.testing.assert_allclose(y, x[:, 0], rtol=1e-6)
    assert os.listdir(tmp_path) == ["m.onnx"]  # no temporary left


def test_overwrite_refuses_a_directory(tmp_path):
    model, _ = _trained(1)
    target = tmp_path / "models"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="expected a file"):
        keras_linreg.export_onnx(model, target, overwrite=True)
    assert (target / "notes.txt").read_text() == "keep me"


def test_unbuilt_model_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="fit or build it first"):
        keras_linreg.export_onnx(keras_linreg.LinearRegression(), tmp_path / "a" / "m.onnx")
    with pytest.raises(ValueError, match="local filesystem path"):
        keras_linreg.export_onnx(keras_linreg.LinearRegression(n_features=1), "gs://bucket/m.onnx")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(resource is None, reason="needs POSIX RLIMIT_FSIZE")
def test_failure_mid_write_keeps_the_previous_file_and_no_temporaries(tmp_path):
    """A real I/O failure (RLIMIT_FSIZE: writes past the limit fail with EFBIG)."""
    model, x = _trained(3)
    path = tmp_path / "m.onnx"
    keras_linreg.export_onnx(model, path)
    before = path.read_bytes()
    limit = 64
    assert len(before) > limit  # the condition is real: the file cannot be written whole
    saved = resource.getrlimit(resource.RLIMIT_FSIZE)
    other = keras_linreg.LinearRegression(n_features=3, slope_initializer="ones")
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, saved[1]))
    try:
        with pytest.raises(OSError, match="File too large"):
            keras_linreg.export_onnx(other, path, overwrite=True)
        with pytest.raises(OSError, match="File too large"):
            keras_linreg.export_onnx(other, tmp_path / "new" / "m.onnx")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, saved)
    assert os.listdir(tmp_path) == ["m.onnx"]  # no temporary, no created parent
    assert path.read_bytes() == before
