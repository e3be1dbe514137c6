"""`keras-linreg train --learning-rate A,B,...`: a learning-rate sweep for TensorBoard's HParams.

The sweep runs in-process through `keras_linreg_cli.main(argv)` on the
tutorial's data (full batch, 80 training rows, 20 validation rows). Its table,
its event files and a real TensorBoard server's hparams API are compared with
an independent float64 NumPy loop of full-batch gradient descent and with
`numpy.linalg.lstsq`; which rates diverge is predicted from the Hessian's
largest eigenvalue (`numpy.linalg.eigvalsh`) and the divergence rule of
docs/design/divergence.md (loss above 1e4 times the first epoch's).
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from _tensorboard import post_json, session_groups_request, tensorboard
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from keras_linreg import hparams as hparams_module
from keras_linreg_cli import main
from keras_linreg_cli.demo import tutorial_data

RATES = ("0.001", "0.01", "0.05")
EPOCHS = 30
N_TRAIN = 80  # --validation-split 0.2 of 100 rows
RUNS = [f"lr={float(rate)!r}" for rate in RATES]
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "keras-linreg")


def _main(*args):
    """`main(args)` in this process: (exit status, stdout, stderr) of its prints."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(arg) for arg in args])
    return status, out.getvalue(), err.getvalue()


def _write_csv(path, x, y):
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["x", "y"])
        writer.writerows([[repr(float(a)), repr(float(b))] for a, b in zip(x, y, strict=True)])
    return path


def _gradient_descent(x, y, rate, epochs, x_val=None, y_val=None):
    """Full-batch gradient descent on the MSE in float64 from slope = intercept = 0.

    Returns `(losses, slope, intercept, val_loss)`: the loss at each epoch's
    weights before its step (what Keras reports), the final weights, and the
    last epoch's validation MSE, after its step. Stops after the epoch whose
    loss exceeds 1e4 times the first (the divergence rule); the final weights
    are then those of the best epoch (the monitor restores them).
    """
    w = b = 0.0
    losses, best = [], (np.inf, 0.0, 0.0)
    for _ in range(epochs):
        residual = w * x + b - y
        loss = float(np.mean(residual**2))
        losses.append(loss)
        best = min(best, (loss, w, b))
        w, b = w - rate * 2 * np.mean(residual * x), b - rate * 2 * np.mean(residual)
        val = None if x_val is None else float(np.mean((w * x_val + b - y_val) ** 2))
        if loss > 1e4 * losses[0]:
            _, w, b = best
            break
    return losses, w, b, val


def _table(out):
    """The sweep's table rows: {learning rate text: [loss, val_loss, gap, epochs, diverged]}."""
    rows = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) == 6 and fields[-1] in ("yes", "no"):
            rows[fields[0]] = fields[1:]
    return rows


def _accumulator(run_dir):
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return accumulator


def _session(run_dir):
    """`(hparams, {tag: last value})` of one run's `parameters` session."""
    accumulator = _accumulator(run_dir / "parameters")
    content = accumulator.SummaryMetadata(hparams_metadata.SESSION_START_INFO_TAG)
    start = hparams_metadata.parse_session_start_info_plugin_data(content.plugin_data.content)
    hparams = {name: getattr(v, v.WhichOneof("kind")) for name, v in start.hparams.items()}
    values = {}
    for tag in accumulator.Tags()["tensors"]:
        if accumulator.SummaryMetadata(tag).plugin_data.plugin_name == "scalars":
            values[tag] = float(tf.make_ndarray(accumulator.Tensors(tag)[-1].tensor_proto))
    return start.group_name, hparams, values


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One sweep in-process; returns `(log_dir, status, stdout, stderr, expected)`."""
    tmp = tmp_path_factory.mktemp("sweep")
    x, y = tutorial_data(seed=0)
    path = _write_csv(tmp / "tutorial.csv", x, y)
    log_dir = tmp / "logs"
    status, out, err = _main(
        "train", path, "--target", "y", "--learning-rate", ",".join(RATES), "--epochs", EPOCHS,
        "--no-standardize", "--tol", 0, "--validation-split", 0.2, "--log-dir", log_dir,
    )  # fmt: skip
    x, y = x.astype("float64"), y.astype("float64")
    xt, yt, xv, yv = x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]
    (slope, intercept), *_ = np.linalg.lstsq(np.c_[xt, np.ones(N_TRAIN)], yt, rcond=None)
    optimum_mse = np.mean((xt * slope + intercept - yt) ** 2)
    design = np.c_[xt, np.ones(N_TRAIN)]
    stable = 2 / np.linalg.eigvalsh(2 / N_TRAIN * design.T @ design).max()
    expected = {}
    for rate, run in zip(RATES, RUNS, strict=True):
        losses, w, b, val = _gradient_descent(xt, yt, float(rate), EPOCHS, xv, yv)
        expected[rate] = {
            "run": run,
            "loss": losses[-1],
            "val_loss": val,
            "gap": np.mean((w * xt + b - yt) ** 2) - optimum_mse,
            "mse": np.mean((w * xt + b - yt) ** 2),
            "epochs": len(losses),
            "diverged": float(rate) > stable,
        }
    # The sweep is what it claims: the two small rates converge, 0.05 > 2 / lambda_max diverges.
    assert [e["diverged"] for e in expected.values()] == [False, False, True]
    assert expected["0.05"]["epochs"] < EPOCHS
    return log_dir, status, out, err, expected


def test_the_table_lists_every_rate_beside_an_independent_loop(sweep):
    _, status, out, err, expected = sweep
    assert status == 0, err
    assert err == ""
    rows = _table(out)
    assert list(rows) == list(RATES)
    for rate, (loss, val_loss, gap, epochs, diverged) in rows.items():
        e = expected[rate]
        assert diverged == ("yes" if e["diverged"] else "no"), rate
        assert int(epochs) == e["epochs"], rate
        # float32 training vs float64; the table prints 6 (gap: 4) significant digits.
        np.testing.assert_allclose(float(loss), e["loss"], rtol=1e-4, err_msg=rate)
        np.testing.assert_allclose(float(val_loss), e["val_loss"], rtol=1e-4, err_msg=rate)
        np.testing.assert_allclose(float(gap), e["gap"], rtol=1e-3, atol=1e-5, err_msg=rate)
    best = min(
        (rate for rate in RATES if not expected[rate]["diverged"]),
        key=lambda rate: expected[rate]["val_loss"],
    )
    assert best == "0.01"  # 30 epochs: 0.001 is still far from the optimum (no tie)
    assert expected["0.001"]["val_loss"] > 1.01 * expected["0.01"]["val_loss"]
    assert f"Best: learning_rate={best} (lowest final val_loss of the 2 runs" in out
    assert f"TensorBoard logs: {sweep[0]}" in out


def test_each_rate_is_a_session_with_its_hparams_and_metrics(sweep):
    log_dir, _, _, _, expected = sweep
    assert sorted(p.name for p in log_dir.iterdir() if p.is_dir()) == sorted(RUNS)
    experiment = hparams_metadata.parse_experiment_plugin_data(
        _accumulator(log_dir)
        .SummaryMetadata(hparams_metadata.EXPERIMENT_TAG)
        .plugin_data.content
    )
    domains = {
        info.name: [getattr(v, v.WhichOneof("kind")) for v in info.domain_discrete.values]
        for info in experiment.hparam_infos
    }
    assert domains == {
        "learning_rate": [float(rate) for rate in RATES],
        "standardize": [False],
        "batch_size": [N_TRAIN],
    }
    assert [m.name.tag for m in experiment.metric_infos] == list(hparams_module.METRICS)
    for rate, e in expected.items():
        trial, hparams, values = _session(log_dir / e["run"])
        assert trial == e["run"]
        assert hparams == {"learning_rate": float(rate), "standardize": False, "batch_size": 80}
        assert values["diverged"] == float(e["diverged"])
        assert values["epochs_run"] == e["epochs"]
        np.testing.assert_allclose(values["loss"], e["loss"], rtol=1e-4)
        np.testing.assert_allclose(values["val_loss"], e["val_loss"], rtol=1e-4)
        np.testing.assert_allclose(
            values["gap_to_least_squares"], e["gap"], rtol=2e-3, atol=1e-5 * e["mse"]
        )


@pytest.mark.slow
def test_real_tensorboard_serves_every_run_with_its_metrics_and_diverged_flag(sweep):
    log_dir, _, _, _, expected = sweep
    with tensorboard(log_dir, len(RATES), log_dir.parent / "tensorboard.log") as base:
        experiment = post_json(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        groups = post_json(f"{base}/data/plugin/hparams/session_groups", session_groups_request())
    assert {info["name"] for info in experiment["hparamInfos"]} == set(hparams_module.HPARAMS)
    assert groups["totalSize"] == len(RATES)
    by_name = {group["name"]: group for group in groups["sessionGroups"]}
    assert set(by_name) == set(RUNS)
    for rate, e in expected.items():
        group = by_name[e["run"]]
        assert group["hparams"] == {
            "learning_rate": float(rate),
            "standardize": False,
            "batch_size": N_TRAIN,
        }
        (session,) = group["sessions"]
        values = {m["name"]["tag"]: m["value"] for m in session["metricValues"]}
        assert set(values) == set(hparams_module.METRICS)
        assert values["diverged"] == float(e["diverged"]), rate
        assert values["epochs_run"] == e["epochs"], rate
        np.testing.assert_allclose(values["loss"], e["loss"], rtol=1e-4)
        np.testing.assert_allclose(values["val_loss"], e["val_loss"], rtol=1e-4)
        np.testing.assert_allclose(values["gap_to_least_squares"], e["gap"], rtol=2e-3, atol=1e-6)


# ------------------------------------------------------------ every run diverges
@pytest.fixture
def tutorial_csv(tmp_path):
    return _write_csv(tmp_path / "tutorial.csv", *tutorial_data(seed=0))


def test_when_every_rate_diverges_the_exit_status_is_1(tutorial_csv, tmp_path):
    """Standardized features: the Hessian is 2·I, so rates above 2 / 2 = 1 diverge."""
    log_dir = tmp_path / "logs"
    status, out, err = _main(
        "train", tutorial_csv, "--target", "y", "--standardize", "--learning-rate", "2.5,3",
        "--epochs", 10, "--log-dir", log_dir,
    )  # fmt: skip
    assert status == 1
    (line,) = err.strip().splitlines()
    assert line.startswith("keras-linreg train: error: every learning rate diverged (2.5, 3)")
    x = tutorial_data(seed=0)[0].astype("float64")
    z = (x - x.mean()) / x.std()
    design = np.c_[z, np.ones(100)]
    stable = 2 / np.linalg.eigvalsh(2 / 100 * design.T @ design).max()  # Hessian 2·I: 1
    assert line.endswith(f"try rates below {stable:.3g} (2 / λmax)")
    rows = _table(out)
    assert list(rows) == ["2.5", "3"] and {row[-1] for row in rows.values()} == {"yes"}
    assert {row[1] for row in rows.values()} == {"-"}  # no validation
    assert "Best:" not in out
    for rate in ("2.5", "3.0"):
        _, hparams, values = _session(log_dir / f"lr={rate}")
        assert hparams["standardize"] is True and values["diverged"] == 1.0
        assert "val_loss" not in values
    experiment = hparams_metadata.parse_experiment_plugin_data(
        _accumulator(log_dir).SummaryMetadata(hparams_metadata.EXPERIMENT_TAG).plugin_data.content
    )
    assert "val_loss" not in [m.name.tag for m in experiment.metric_infos]


# -------------------------------------------------------------- bad command lines
@pytest.mark.parametrize(
    "value, what",
    [
        ("0.1,abc", "'abc' is not"),
        ("0", "'0' is not"),
        ("0.1,0", "'0' is not"),
        ("0.1,-1", "'-1' is not"),
        ("0.1,,0.2", "an empty item is not"),
        ("0.1,nan", "'nan' is not"),
        ("0.1,inf", "'inf' is not"),
        ("0.1,0.10", "'0.10' repeats '0.1'"),
        ("1,1e0", "'1e0' repeats '1'"),
        ("auto,0.1", "'auto' is not"),
    ],
)
def test_invalid_rates_are_exit_2_naming_the_argument_and_value(
    tutorial_csv, tmp_path, value, what
):
    log_dir = tmp_path / "l"
    status, out, err = _main(
        "train", tutorial_csv, "--target", "y", "--learning-rate", value, "--log-dir", log_dir
    )
    assert status == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith(
        "keras-linreg train: error: argument --learning-rate: expected auto, a number > 0, "
        "or distinct numbers > 0 separated by commas (a sweep); "
    ), line
    assert what in line and line.endswith(f"Received: --learning-rate={value}"), line
    assert not (tmp_path / "l").exists()


@pytest.mark.parametrize("option, path", [("--export", "m/1"), ("--save", "m.keras"),
                                          ("--plot", "fit.png")])  # fmt: skip
def test_a_sweep_refuses_options_that_write_one_model(tutorial_csv, tmp_path, option, path):
    status, out, err = _main(
        "train", tutorial_csv, "--target", "y", "--learning-rate", "0.01,0.1",
        option, tmp_path / path, "--log-dir", tmp_path / "l",
    )  # fmt: skip
    assert status == 2 and out == ""
    assert err.strip() == (
        f"keras-linreg train: error: {option} writes one model, but --learning-rate 0.01,0.1 "
        f"trains 2; sweep first, then train the rate you pick with {option}"
    )
    assert sorted(os.listdir(tmp_path)) == ["tutorial.csv"]


def test_a_sweep_refuses_a_log_dir_that_is_not_empty(tutorial_csv, tmp_path):
    (tmp_path / "l").mkdir()
    (tmp_path / "l" / "old-run").mkdir()
    status, _, err = _main(
        "train", tutorial_csv, "--target", "y", "--learning-rate", "0.01,0.1", "--log-dir",
        tmp_path / "l",
    )  # fmt: skip
    assert status == 2
    assert f"--log-dir {tmp_path / 'l'} is not an empty directory" in err
    assert os.listdir(tmp_path / "l") == ["old-run"]


# ----------------------------------------------------------------- real process
@pytest.mark.slow
def test_the_console_script_exits_1_when_every_run_diverges_and_2_for_a_bad_list(
    tutorial_csv, tmp_path
):
    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the command's own default

    def script(*args):
        return subprocess.run(
            [_SCRIPT, *map(str, args)], capture_output=True, text=True, timeout=120, env=env
        )

    result = script(
        "train", tutorial_csv, "--target", "y", "--learning-rate", "0.5,1", "--epochs", 5,
        "--no-standardize", "--log-dir", tmp_path / "logs",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()  # no TensorFlow start-up lines, no traceback
    assert "every learning rate diverged (0.5, 1)" in line
    assert list(_table(result.stdout)) == ["0.5", "1"]

    bad = script("train", tutorial_csv, "--target", "y", "--learning-rate", "0.1,abc")
    assert bad.returncode == 2 and bad.stdout == ""
    (line,) = bad.stderr.strip().splitlines()
    assert "argument --learning-rate" in line and "Received: --learning-rate=0.1,abc" in line


def test_the_best_run_skips_diverged_and_non_finite_runs_and_prefers_fewer_epochs():
    from keras_linreg_cli.sweep import SweepRun, best_run

    def run(rate, loss, gap, epochs=10, diverged=False, val_loss=None):
        return SweepRun(rate, loss, val_loss, gap, epochs, diverged)

    runs = [run(0.1, 1.0, 0.2), run(0.5, 1.0, 0.1), run(1.0, 0.5, 9.0, diverged=True)]
    assert best_run(runs).learning_rate == 0.5  # equal loss and epochs: the smaller gap
    assert best_run([run(0.1, float("nan"), 0.0), run(0.2, 3.0, 1.0)]).learning_rate == 0.2
    # Losses equal to 1e-4 (relative): the fewest epochs wins; further apart, the lower loss.
    assert best_run([run(0.01, 1.0, 0.0, 500), run(0.1, 1.00005, 0.0, 49)]).learning_rate == 0.1
    assert best_run([run(0.01, 1.0, 0.0, 500), run(0.1, 1.001, 0.0, 49)]).learning_rate == 0.01
    # With validation, the val_loss decides, not the training loss.
    runs = [run(0.1, 1.0, 0.0, val_loss=2.0), run(0.2, 2.0, 1.0, val_loss=1.5)]
    assert best_run(runs).learning_rate == 0.2
    assert best_run([run(1.0, 9.0, 9.0, diverged=True)]) is None
