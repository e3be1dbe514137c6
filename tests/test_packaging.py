"""The wheel works without the checkout: build, install apart, run from elsewhere.

The wheel is built (`pip wheel --no-deps`, with pip's isolated build, which
fetches setuptools) from a copy holding only what the build may use
(pyproject.toml, README.md, LICENSE and the two packages), installed with
`pip install --no-deps --target TMP`, and run by this interpreter with
`PYTHONPATH=TMP` from a directory outside the checkout: the dependencies
(TensorFlow, Keras, ...) come from this environment's site-packages, the
package itself only from TMP (checked: `__file__` lies in TMP, so neither the
checkout nor an editable install is what runs). Metadata is read back from
the installed dist-info and compared with pyproject.toml.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("keras_linreg", "keras_linreg_cli")
BUILD_FILES = ("pyproject.toml", "README.md", "LICENSE")

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
requirements = pytest.importorskip("packaging.requirements")
specifiers = pytest.importorskip("packaging.specifiers")

pytestmark = pytest.mark.slow


def _run(args, cwd, env, timeout=600):
    result = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (
        f"{args} exited with {result.returncode}\nstdout:\n{result.stdout[-3000:]}\n"
        f"stderr:\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def pyproject():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """`(wheel, target, run_dir, env)`: the wheel installed into `target`."""
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    source.mkdir()
    for name in BUILD_FILES:
        shutil.copy2(os.path.join(ROOT, name), source / name)
    for package in PACKAGES:
        shutil.copytree(
            os.path.join(ROOT, package),
            source / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    dist = base / "dist"
    pip_env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    pip_env.pop("PYTHONPATH", None)
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), "."],
        cwd=source,
        env=pip_env,
    )
    (wheel,) = dist.glob("*.whl")
    target = base / "target"
    _run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        cwd=base,
        env=pip_env,
    )
    run_dir = base / "elsewhere"
    run_dir.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYTHON")},
        "PYTHONPATH": str(target),
        "KERAS_BACKEND": "tensorflow",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
    }
    return wheel, target, run_dir, env


def test_the_wheel_holds_the_packages_and_nothing_else(installed):
    wheel = installed[0]
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    (dist_info,) = [t for t in top if t.endswith(".dist-info")]
    assert top == {*PACKAGES, dist_info}  # no tests/, scripts/, docs/
    for package in PACKAGES:
        modules = {
            f"{package}/{name}"
            for name in os.listdir(os.path.join(ROOT, package))
            if name.endswith(".py")
        }
        assert modules <= set(names), modules - set(names)
    # Not shipped: most of the public API is unannotated, so the package does
    # not claim to be typed (PEP 561).
    assert not any(name.endswith("py.typed") for name in names)
    assert f"{dist_info}/licenses/LICENSE" in names


def test_installed_metadata_is_complete(installed, pyproject):
    _, target, run_dir, env = installed
    code = r"""
import importlib.metadata as md, json
dist = md.distribution("keras_linreg")
meta = dist.metadata
print(json.dumps({
    "location": str(dist.locate_file("")),
    "fields": {key: meta.get_all(key) for key in set(meta.keys())},
    "body": meta.get_payload(),
    "license_text": dist.read_text("licenses/LICENSE"),
    "scripts": [[e.name, e.value] for e in dist.entry_points if e.group == "console_scripts"],
}))
"""
    info = json.loads(_run([sys.executable, "-c", code], cwd=run_dir, env=env).stdout)
    assert os.path.samefile(info["location"], target)
    fields = info["fields"]
    assert fields["Name"] == ["keras_linreg"]
    assert fields["Version"] == [pyproject["version"]]
    assert fields["Summary"] == [pyproject["description"]]
    assert fields["License-Expression"] == ["Apache-2.0"] == [pyproject["license"]]
    assert fields["License-File"] == ["LICENSE"]
    with open(os.path.join(ROOT, "LICENSE"), encoding="utf-8") as f:
        license_text = f.read()
    assert info["license_text"] == license_text
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    (requires_python,) = fields["Requires-Python"]
    assert specifiers.SpecifierSet(requires_python) == specifiers.SpecifierSet(
        pyproject["requires-python"]
    )
    assert fields["Classifier"] == pyproject["classifiers"]
    assert fields["Description-Content-Type"] == ["text/markdown"]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        assert info["body"].strip() == f.read().strip()

    def parsed(strings):
        return {str(requirements.Requirement(s)) for s in strings}

    runtime = [r for r in fields["Requires-Dist"] if "extra ==" not in r]
    assert parsed(runtime) == parsed(pyproject["dependencies"])
    for requirement in map(requirements.Requirement, runtime):
        assert str(requirement.specifier), f"{requirement.name} has no version range"
    assert set(fields["Provides-Extra"]) == set(pyproject["optional-dependencies"])
    assert {"onnx", "test"} <= set(fields["Provides-Extra"])
    # No invented addresses.
    assert not {"Home-page", "Project-URL", "Download-URL"} & set(fields)
    assert info["scripts"] == [["keras-linreg", "keras_linreg_cli:main"]]


def test_import_and_version_come_from_the_installed_copy(installed, pyproject):
    _, target, run_dir, env = installed
    code = r"""
import json, sys, keras_linreg, keras_linreg_cli
print(json.dumps({
    "files": [keras_linreg.__file__, keras_linreg_cli.__file__],
    "version": keras_linreg.__version__,
    "path": sys.path,
    "exports": sorted(keras_linreg.__all__),
}))
"""
    info = json.loads(_run([sys.executable, "-c", code], cwd=run_dir, env=env).stdout)
    for path in info["files"]:
        assert os.path.commonpath([path, str(target)]) == str(target), path
    assert info["version"] == pyproject["version"]
    assert not any(os.path.exists(p) and os.path.samefile(p, ROOT) for p in info["path"] if p), (
        "the checkout is on sys.path"
    )
    assert {"LinearRegression", "export_onnx", "export_saved_model"} <= set(info["exports"])


def test_console_script_and_module_run_outside_the_checkout(installed, tmp_path):
    _, target, run_dir, env = installed
    script = os.path.join(target, "bin", "keras-linreg")
    assert os.access(script, os.X_OK)
    for command in ([script, "--help"], [sys.executable, "-m", "keras_linreg_cli", "--help"]):
        out = _run(command, cwd=run_dir, env=env).stdout
        assert "usage: keras-linreg" in out and "demo" in out and "train" in out

    # The tutorial end to end, as the installed console script.
    demo = _run(
        [script, "demo", "--quiet", "--out", "out", "--log-dir", "logs/demo"], cwd=run_dir, env=env
    ).stdout
    assert "least squares" in demo
    assert (run_dir / "out" / "fit.png").is_file()
    assert (run_dir / "out" / "saved_model" / "1" / "saved_model.pb").is_file()
    assert (run_dir / "logs" / "demo" / "parameters").is_dir()

    # train then predict on a CSV file written here.
    rows = ["a,b,y"] + [f"{i},{i % 3},{2 * i + (i % 3) + 1}" for i in range(20)]
    (run_dir / "data.csv").write_text("\n".join(rows) + "\n")
    _run(
        [
            script,
            "train",
            "data.csv",
            "--target",
            "y",
            "--standardize",
            "--learning-rate",
            "0.3",
            "--epochs",
            "200",
            "--quiet",
            "--log-dir",
            "logs/train",
            "--export",
            "models/1",
        ],
        cwd=run_dir,
        env=env,
    )
    out = _run([script, "predict", "models/1", "data.csv"], cwd=run_dir, env=env).stdout
    lines = out.strip().splitlines()
    assert lines[0].split(",")[-1] == "prediction" and len(lines) == 21
    predictions = [float(line.split(",")[-1]) for line in lines[1:]]
    targets = [float(line.split(",")[2]) for line in lines[1:]]
    # y = 2a + b + 1 exactly: a standardized fit of 200 full-batch epochs at 0.3 gets there.
    assert max(abs(p - t) for p, t in zip(predictions, targets, strict=True)) < 1e-2
