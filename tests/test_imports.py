"""`import keras_linreg` is warning-free, in a fresh interpreter."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_import_under_w_error_passes_and_loads_no_command_line_module():
    """In a fresh process under `-W error`: `import keras_linreg` raises no warning,
    and loads nothing of keras_linreg_cli (the layering rule of tests/test_layering.py;
    one process for both, as each start of TensorFlow costs seconds of the suite)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # conftest sets one
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        KERAS_BACKEND="tensorflow",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    code = (
        "import sys, keras_linreg\n"
        "print(keras_linreg.__name__)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'keras_linreg_cli'))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'keras_linreg'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    name, cli, library = result.stdout.strip().splitlines()[-3:]
    assert name == "keras_linreg"
    assert cli == "[]"
    assert "'keras_linreg.convergence'" in library  # the listing works
