"""`keras-linreg export MODEL.keras OUT`, in-process through `keras_linreg_cli.main(argv)`.

Every ONNX file is run with onnxruntime and compared with `model.predict` (1e-6,
relative to the largest prediction) and with `x @ slope + intercept` in float64
from `get_parameters()` (1e-5); every SavedModel is loaded by TensorFlow and
compared the same way, and one is read with TensorFlow's `saved_model_cli`. One
test runs the installed console script for the real exit status and stderr.
"""

import json
import os
import re
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_linreg
from keras_linreg_cli import main

ort = pytest.importorskip("onnxruntime")

_SCRIPT = os.path.join(os.path.dirname(sys.executable), "keras-linreg")
RTOL_SAME_GRAPH = 1e-6
RTOL_REFERENCE = 1e-5


def _run(capfd, *args):
    """`main(args)` in this process: (exit status, stdout, stderr), file descriptors included."""
    capfd.readouterr()
    status = main([str(arg) for arg in args])
    out, err = capfd.readouterr()
    return status, out, err


def _fit(n_features, standardize, feature_names, seed):
    rng = np.random.default_rng(seed)
    scales = np.geomspace(1.0, 20.0, n_features)
    x = (rng.normal(size=(60, n_features)) * scales + 2.0).astype("float32")
    y = (x @ np.arange(1, n_features + 1) - 0.5).astype("float32")
    model = keras_linreg.LinearRegression(
        learning_rate=0.3 if standardize else 1e-3,
        standardize=standardize,
        feature_names=feature_names,
    )
    model.compile()
    model.fit(x, y, batch_size=60, epochs=10, shuffle=False, verbose=0)
    return model, x


def _saved(kind, tmp_path_factory):
    """`(path of a .keras file, the fitted model, its inputs)`."""
    if kind == "standardized_named":
        model, x = _fit(2, True, ["a", "b"], seed=0)
    else:
        model, x = _fit(1, False, None, seed=1)
    path = tmp_path_factory.mktemp("model") / f"{kind}.keras"
    keras_linreg.save_model(model, path)
    return path, model, x


@pytest.fixture(scope="module", params=["standardized_named", "plain_unnamed"])
def saved(request, tmp_path_factory):
    return _saved(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def saved_named(tmp_path_factory):
    """One model for the tests that start processes."""
    return _saved("standardized_named", tmp_path_factory)


def _check_predictions(y, model, x):
    expected = model.predict(x, verbose=0)
    np.testing.assert_allclose(
        y, expected, rtol=RTOL_SAME_GRAPH, atol=RTOL_SAME_GRAPH * np.abs(expected).max()
    )
    slope, intercept = model.get_parameters()
    reference = x.astype("float64") @ slope + intercept
    np.testing.assert_allclose(y, reference, rtol=RTOL_REFERENCE, atol=1e-5)


def _one_line(out):
    lines = out.strip().splitlines()
    assert len(lines) == 1, out
    return lines[0]


# ------------------------------------------------------------------- ONNX
def test_export_onnx_runs_in_onnxruntime_like_predict(saved, tmp_path, capfd):
    path, model, x = saved
    out = tmp_path / "served" / "linreg.onnx"  # a missing parent is created
    status, stdout, err = _run(capfd, "export", path, out)
    assert status == 0, err
    assert err == ""  # no Keras FutureWarning, no tf2onnx log lines
    k = model.n_features
    line = _one_line(stdout)
    assert line.startswith(f"ONNX model: {out} ")
    assert f"x: float32 [None, {k}] -> y: float32 [None]" in line
    names = list(model.feature_names or [])
    assert line.endswith(f"feature names: {', '.join(names) or 'none'}")

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (inp,), (outp,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("x", "tensor(float)", ["n", k])
    assert (outp.name, outp.type, outp.shape) == ("y", "tensor(float)", ["n"])
    (y,) = session.run(["y"], {"x": x})
    _check_predictions(y, model, x)
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["feature_names"]) == names
    assert sorted(os.listdir(out.parent)) == ["linreg.onnx"]  # no temporary left behind


def test_format_onnx_is_used_whatever_the_extension(saved, tmp_path, capfd):
    path, model, x = saved
    out = tmp_path / "linreg.bin"
    status, stdout, err = _run(capfd, "export", path, out, "--format", "onnx")
    assert status == 0, err
    assert _one_line(stdout).startswith("ONNX model:")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    _check_predictions(session.run(["y"], {"x": x})[0], model, x)


# ------------------------------------------------------------- SavedModel
def test_export_defaults_to_a_saved_model_for_other_paths(saved, tmp_path, capfd):
    path, model, x = saved
    out = tmp_path / "models" / "linreg" / "1"
    status, stdout, err = _run(capfd, "export", path, out)
    assert status == 0, err
    assert err == ""
    line = _one_line(stdout)
    assert line.startswith(f"SavedModel: {out} ")
    assert f"'serving_default' x: float32 [None, {model.n_features}] -> y: float32" in line
    signature = tf.saved_model.load(str(out)).signatures["serving_default"]
    (input_spec,) = signature.structured_input_signature[1].values()
    assert input_spec.name == "x" and input_spec.shape.as_list() == [None, model.n_features]
    y = signature(x=tf.constant(x))["y"].numpy()
    _check_predictions(y, model, x)


@pytest.mark.slow
def test_saved_model_cli_shows_the_exported_signature(saved_named, tmp_path, capfd):
    path, model, _ = saved_named
    out = tmp_path / "export"
    assert _run(capfd, "export", path, out, "--format", "saved_model")[0] == 0
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    result = subprocess.run(
        [cli, "show", "--dir", str(out), "--tag_set", "serve", "--signature_def",
         "serving_default"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    body = re.sub(r"\s+", " ", result.stdout)
    k = model.n_features
    assert re.search(rf"inputs\['x'\] tensor_info: dtype: DT_FLOAT shape: \(-1, {k}\)", body)
    assert re.search(r"outputs\['y'\] tensor_info: dtype: DT_FLOAT shape: \(-1\)", body), body


# -------------------------------------------------------------- overwrite
@pytest.mark.parametrize("name", ["linreg.onnx", "saved/1"])
def test_an_existing_out_is_refused_unless_overwrite(saved, tmp_path, capfd, name):
    path, _, x = saved
    out = tmp_path / name
    assert _run(capfd, "export", path, out)[0] == 0
    before = _snapshot(out)
    status, stdout, err = _run(capfd, "export", path, out)
    assert status == 2 and stdout == ""
    assert _one_line(err) == (
        f"keras-linreg export: error: {out} already exists; pass --overwrite to replace it"
    )
    assert _snapshot(out) == before

    # --overwrite replaces it with another model's export.
    other, _ = _fit(x.shape[1], False, None, seed=7)
    other_path = tmp_path / "other.keras"
    keras_linreg.save_model(other, other_path)
    status, _, err = _run(capfd, "export", other_path, out, "--overwrite")
    assert status == 0, err
    if name.endswith(".onnx"):
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        y = session.run(["y"], {"x": x})[0]
    else:
        y = tf.saved_model.load(str(out)).signatures["serving_default"](x=tf.constant(x))["y"]
    _check_predictions(np.asarray(y), other, x)
    assert sorted(os.listdir(tmp_path)) == sorted({name.split("/")[0], "other.keras"})


def _snapshot(path):
    if path.is_file():
        return path.read_bytes()
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


# --------------------------------------------------------------- bad input
@pytest.fixture
def bad_files(tmp_path):
    (tmp_path / "data.csv").write_text("a,y\n1,2\n")
    (tmp_path / "junk.keras").write_bytes(b"not a zip archive\n")
    with zipfile.ZipFile(tmp_path / "zip.keras", "w") as archive:
        archive.writestr("hello.txt", "a zip, but not a Keras model")
    sequential = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    sequential.save(tmp_path / "dense.keras")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("not a SavedModel")
    return tmp_path


@pytest.mark.parametrize(
    "case, args, message",
    [
        ("missing model", ["{tmp}/nope.keras", "{tmp}/o.onnx"], "{tmp}/nope.keras: no such file"),
        ("not .keras", ["{tmp}/data.csv", "{tmp}/o.onnx"], "data.csv: expected a .keras file"),
        ("not a zip", ["{tmp}/junk.keras", "{tmp}/o.onnx"], "junk.keras: not a .keras file"),
        ("zip, no model", ["{tmp}/zip.keras", "{tmp}/o.onnx"], "zip.keras: not a Keras model"),
        (
            "another model",
            ["{tmp}/dense.keras", "{tmp}/o.onnx"],
            "dense.keras: expected a keras_linreg.LinearRegression, received a Sequential",
        ),
        (
            "saved_model to .onnx",
            ["{model}", "{tmp}/o.onnx", "--format", "saved_model"],
            "--format saved_model writes a directory",
        ),
        (
            "overwrite other files",
            ["{model}", "{tmp}/full", "--overwrite"],
            "expected a SavedModel directory (or an empty directory) there",
        ),
        ("bad format", ["{model}", "{tmp}/o.onnx", "--format", "tflite"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    saved, bad_files, capfd, case, args, message
):
    files = {"tmp": str(bad_files), "model": str(saved[0])}
    args = [arg.format(**files) for arg in args]
    before = _snapshot(bad_files)
    status, out, err = _run(capfd, "export", *args)
    assert status == 2, (case, out, err)
    line = _one_line(err)
    assert line.startswith("keras-linreg export: error: "), line
    assert message.format(**files) in line, (case, line)
    assert "Traceback" not in err and out == ""
    assert _snapshot(bad_files) == before


def test_onnx_without_tf2onnx_names_the_extra(saved, tmp_path, capfd, monkeypatch):
    """A `None` entry in `sys.modules` is Python's own way to make a package unimportable."""
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    status, out, err = _run(capfd, "export", saved[0], tmp_path / "o.onnx")
    assert status == 2 and out == ""
    line = _one_line(err)
    assert "--format onnx needs tf2onnx, which is not installed" in line
    assert "pip install 'keras_linreg[onnx]'" in line
    assert os.listdir(tmp_path) == []
    # A SavedModel needs no tf2onnx.
    assert _run(capfd, "export", saved[0], tmp_path / "sm")[0] == 0


def test_help_shows_the_default_format(capfd):
    status, out, _ = _run(capfd, "export", "--help")
    assert status == 0
    assert "onnx if OUT ends in .onnx, else saved_model" in re.sub(r"\s+", " ", out)
    assert "keras-linreg export houses.keras houses.onnx" in out


# ----------------------------------------------------------- real process
@pytest.mark.slow
def test_the_console_script_exports_quietly_and_refuses_an_existing_out(saved_named, tmp_path):
    """Exit 0 with one line on stdout and nothing on stderr (no FutureWarning, no
    TensorFlow start-up lines), then exit 2 with one line for the same OUT."""
    path, model, x = saved_named
    out = tmp_path / "linreg.onnx"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.pop("PYTHONWARNINGS", None)  # the user's default warning filters
    env["KERAS_BACKEND"] = "tensorflow"

    def script(*args):
        return subprocess.run(
            [_SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=120, env=env
        )

    result = script("export", path, out)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert _one_line(result.stdout).startswith(f"ONNX model: {out} ")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    _check_predictions(session.run(["y"], {"x": x})[0], model, x)

    again = script("export", path, out)
    assert again.returncode == 2 and again.stdout == ""
    assert _one_line(again.stderr).endswith("already exists; pass --overwrite to replace it")
    assert "Traceback" not in again.stderr
