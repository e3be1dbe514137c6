"""Importing keras_linreg refuses Keras 2 and non-TensorFlow backends (real subprocesses)."""

import os
import subprocess
import sys

import pytest


def _import_in_child(**env):
    child_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    return subprocess.run(
        [sys.executable, "-c", "import keras_linreg"],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("value", ["1", "true"])
def test_legacy_keras_is_refused(value):
    result = _import_in_child(TF_USE_LEGACY_KERAS=value)
    assert result.returncode != 0
    assert "ImportError: keras_linreg needs Keras 3" in result.stderr
    assert "Unset TF_USE_LEGACY_KERAS" in result.stderr


def test_another_backend_is_refused():
    # Keras' "numpy" backend ships with Keras itself (inference only).
    result = _import_in_child(KERAS_BACKEND="numpy")
    assert result.returncode != 0
    assert "needs the TensorFlow backend" in result.stderr
    assert "Received: KERAS_BACKEND='numpy'" in result.stderr
