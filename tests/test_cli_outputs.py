"""`keras-linreg`'s outputs: checked before training, all or nothing, no tracebacks.

In-process through `keras_linreg_cli.main(argv)`, except where the behaviour is the
process's own (a closed pipe, output that is not a terminal): those run the console
script in a real process.
"""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

import keras_linreg
from keras_linreg_cli import main
from keras_linreg_cli.commands import OutputError, _Outputs

_SCRIPT = os.path.join(os.path.dirname(sys.executable), "keras-linreg")
_ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}


def _run(capfd, *args):
    capfd.readouterr()
    status = main([str(arg) for arg in args])
    out, err = capfd.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """y = 2x + 1 on 40 rows, and a 1-feature model fitted to it."""
    folder = tmp_path_factory.mktemp("outputs")
    x = np.linspace(0.0, 2.0, 40)
    path = folder / "line.csv"
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["x", "y"])
        writer.writerows(zip(x, 2 * x + 1, strict=True))
    model = keras_linreg.LinearRegression(feature_names=["x"])
    model.compile()
    model.slope.assign([2.0])
    model.intercept.assign(1.0)
    model_path = folder / "line.keras"
    model.save(model_path)
    return path, model_path


def _usage_error(capfd, *args):
    status, out, err = _run(capfd, *args)
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--save", "{file}/m.keras", "is a file, not a directory"),
        ("--export", "{file}/sub/export", "is a file, not a directory"),
        ("--plot", "{file}/p.png", "is a file, not a directory"),
        ("--plot", "{tmp}/p.jpg", "--plot expects a file ending in .png, .pdf or .svg"),
        ("--log-dir", "{file}", "--log-dir {file} is a file; expected a directory"),
        ("--save", "{tmp}/line.csv.keras", None),  # fine: reported only if it exists
    ],
)
def test_outputs_are_checked_before_training(data, tmp_path, capfd, option, value, message):
    path, _ = data
    plain = tmp_path / "afile"
    plain.write_text("not a directory")
    value = value.format(file=plain, tmp=tmp_path)
    args = ["train", path, "--target", "y", "--epochs", 1, "--no-log" if option != "--log-dir"
            else "--quiet", option, value, "--quiet"]  # fmt: skip
    if message is None:
        assert _run(capfd, *args)[0] == 0
        return
    before = sorted(os.listdir(tmp_path))
    assert message.format(file=plain) in _usage_error(capfd, *args)
    assert sorted(os.listdir(tmp_path)) == before


def test_a_path_named_twice_and_no_log_with_log_dir_are_usage_errors(data, tmp_path, capfd):
    path, _ = data
    same = tmp_path / "out.keras"
    line = _usage_error(capfd, "train", path, "--target", "y", "--save", same, "--plot", same)
    assert "--plot expects" in line  # .keras is no figure format: refused first
    line = _usage_error(
        capfd, "train", path, "--target", "y", "--export", same, "--save", same
    )
    assert "--export and --save name the same path" in line
    line = _usage_error(capfd, "train", path, "--target", "y", "--no-log", "--log-dir", tmp_path)
    assert "--no-log and --log-dir exclude each other" in line


def test_values_beyond_float32_are_refused_with_file_row_and_column(data, tmp_path, capfd):
    _, model_path = data
    big = tmp_path / "big.csv"
    big.write_text("x,y\n1,3\n2,5\n1e39,7\n")
    for command in (["train", big, "--target", "y", "--no-log"], ["predict", model_path, big]):
        line = _usage_error(capfd, *command)
        assert f"{big}, row 4, column 'x': expected a number within float32's" in line
    assert sorted(os.listdir(tmp_path)) == ["big.csv"]


def test_predict_output_checks_and_missing_parents(data, tmp_path, capfd):
    path, model_path = data
    line = _usage_error(capfd, "predict", model_path, path, "--output", tmp_path)
    assert "is a directory; expected a file path" in line
    nested = tmp_path / "new" / "sub" / "p.csv"
    status, _, err = _run(capfd, "predict", model_path, path, "--output", nested)
    assert status == 0, err
    assert nested.read_text().splitlines()[0] == "x,y,prediction"


def test_predictions_are_shortest_float32_text_and_replace_an_old_column(data, tmp_path, capfd):
    path, model_path = data
    first = tmp_path / "first.csv"
    assert _run(capfd, "predict", model_path, path, "--output", first)[0] == 0
    rows = list(csv.reader(first.read_text().splitlines()))
    predictions = np.array([row[2] for row in rows[1:]])
    x = np.array([float(row[0]) for row in rows[1:]], dtype=np.float32)
    values = predictions.astype(np.float32)
    np.testing.assert_allclose(values, 2 * x + 1, rtol=1e-6)  # the model is y = 2x + 1
    # Each text is the shortest that reads back as the same float32.
    assert all(str(np.float32(text)) == text for text in predictions)
    assert max(len(text) for text in predictions) <= 10
    # Predicting on that output replaces its `prediction` column instead of adding one.
    status, out, _ = _run(capfd, "predict", model_path, first)
    assert status == 0
    again = list(csv.reader(out.splitlines()))
    assert again[0] == ["x", "y", "prediction"]
    assert [row[2] for row in again[1:]] == list(predictions)


@pytest.mark.parametrize("extension, magic", [("png", b"\x89PNG"), ("pdf", b"%PDF"),
                                              ("svg", b"<?xml")])  # fmt: skip
def test_plot_writes_the_format_its_extension_names(data, tmp_path, capfd, extension, magic):
    path, _ = data
    plot = tmp_path / f"fit.{extension}"
    status, _, err = _run(
        capfd, "train", path, "--target", "y", "--epochs", 2, "--no-log", "--plot", plot, "--quiet"
    )
    assert status == 0, err
    assert plot.read_bytes().startswith(magic)


def test_no_log_writes_no_logs(data, tmp_path, capfd, monkeypatch):
    path, _ = data
    monkeypatch.chdir(tmp_path)
    status, out, err = _run(capfd, "train", path, "--target", "y", "--epochs", 2, "--no-log",
                            "--quiet")  # fmt: skip
    assert status == 0, err
    assert "TensorBoard logs" not in out
    assert os.listdir(tmp_path) == []
    status, out, _ = _run(capfd, "train", path, "--target", "y", "--epochs", 2, "--quiet")
    assert status == 0 and "TensorBoard logs: logs/train/" in out
    assert os.listdir(tmp_path) == ["logs"]


def test_a_failed_output_removes_the_ones_already_written(tmp_path):
    """`_Outputs` with real writes: the second fails, the first is removed again."""
    outputs = _Outputs()
    export, plot = tmp_path / "export", tmp_path / "plot.png"

    def write_directory():
        export.mkdir()
        (export / "saved_model.pb").write_bytes(b"x")

    outputs.write("the SavedModel", export, write_directory)
    assert export.is_dir()

    def fail():
        open(tmp_path / "missing" / "parent" / "plot.png", "w")  # FileNotFoundError

    with pytest.raises(OutputError, match=r"could not write the plot .*; no output was kept"):
        outputs.write("the plot", plot, fail)
    assert os.listdir(tmp_path) == []


def test_piped_output_gets_one_plain_line_per_epoch(data):
    path, _ = data
    result = subprocess.run(
        [_SCRIPT, "train", str(path), "--target", "y", "--epochs", "3", "--tol", "0", "--no-log"],
        capture_output=True, text=True, timeout=120, env=_ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("Epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/3", "2/3", "3/3"]
    assert "\x1b[" not in result.stdout and "\r" not in result.stdout
    assert result.stderr == ""


def test_a_closed_pipe_ends_quietly(data, tmp_path):
    path, model_path = data
    many = tmp_path / "many.csv"
    many.write_text("x\n" + "\n".join(str(i) for i in range(200_000)) + "\n")
    command = f"'{_SCRIPT}' predict '{model_path}' '{many}' | head -n 2"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True, text=True, timeout=120, env=_ENV,
    )  # fmt: skip
    assert result.stdout.splitlines() == ["x,prediction", "0,1.0"]
    assert result.stderr == ""
    assert result.returncode == 141  # 128 + SIGPIPE, as `yes | head` reports it
