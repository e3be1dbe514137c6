"""Tests for the HParams summaries: `write_hparams_experiment` and
`ParameterLogger(..., hparams=...)`.

A learning-rate sweep of three runs on the tutorial's data (one rate above
`2 / lambda_max`, so the divergence guard stops it) is read back twice: from
the event files with TensorBoard's own reader and the hparams plugin's proto
parsers, and from a real `tensorboard` server through the hparams plugin's
HTTP endpoints (`/experiment`, `/session_groups`). The metrics are compared
with independent values: `history`, `model.evaluate` (the float32 MSE of the
final weights) minus the least-squares MSE from scikit-learn.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from _tensorboard import post_json, session_groups_request, tensorboard
from sklearn.linear_model import LinearRegression as SklearnLinearRegression
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import api as hp
from tensorboard.plugins.hparams import metadata as hparams_metadata

import keras_linreg
from keras_linreg import hparams as hparams_module
from keras_linreg.callbacks import ParameterLogger, write_hparams_experiment
from keras_linreg_cli.demo import tutorial_data

# Full batch on the tutorial's data: 2 / lambda_max is about 0.029, so 0.05 diverges.
RATES = (0.001, 0.01, 0.05)
EPOCHS = 30
VALIDATION_SPLIT = 0.2
N_TRAIN = 80  # Keras validates on the last 20% of the 100 rows


def _accumulator(run_dir):
    accumulator = event_accumulator.EventAccumulator(
        str(run_dir), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return accumulator


def _last_scalars(accumulator):
    """`{tag: (step, value)}` of the last event of every scalar tag."""
    result = {}
    for tag in accumulator.Tags()["tensors"]:
        if accumulator.SummaryMetadata(tag).plugin_data.plugin_name == "scalars":
            event = accumulator.Tensors(tag)[-1]
            result[tag] = (event.step, float(tf.make_ndarray(event.tensor_proto)))
    return result


def _hparams_content(accumulator, tag):
    return accumulator.SummaryMetadata(tag).plugin_data.content


def _run_name(rate):
    return f"lr-{rate:g}"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Three runs under one log dir; returns `(log_dir, {run: expected})`."""
    log_dir = tmp_path_factory.mktemp("sweep") / "logs"
    x, y = tutorial_data(seed=0)
    x_train, y_train = x[:N_TRAIN], y[:N_TRAIN]
    write_hparams_experiment(
        log_dir, {"learning_rate": list(RATES), "standardize": [False], "batch_size": [N_TRAIN]}
    )
    optimum = SklearnLinearRegression().fit(x_train[:, None], y_train)
    optimum_mse = float(np.mean((optimum.predict(x_train[:, None]) - y_train) ** 2))
    expected = {}
    for rate in RATES:
        run = _run_name(rate)
        model = keras_linreg.LinearRegression(learning_rate=rate)
        model.compile()
        hparams = {"learning_rate": rate, "standardize": False, "batch_size": N_TRAIN}
        logger = ParameterLogger(log_dir / run, data=(x_train, y_train), hparams=hparams)
        try:
            history = model.fit(
                x,
                y,
                batch_size=N_TRAIN,
                epochs=EPOCHS,
                shuffle=False,
                verbose=0,
                validation_split=VALIDATION_SPLIT,
                callbacks=[logger],
            ).history
            diverged = False
        except keras_linreg.DivergenceError as error:
            history = error.history.history
            diverged = True
        mse = model.evaluate(x_train, y_train, batch_size=N_TRAIN, verbose=0)
        expected[run] = {
            "hparams": hparams,
            "loss": history["loss"][-1],
            "val_loss": history["val_loss"][-1],
            "epochs_run": len(history["loss"]),
            "diverged": float(diverged),
            "gap_to_least_squares": mse - optimum_mse,
            "mse": mse,
        }
    # The sweep is what it claims: two runs converge, the largest rate diverges.
    assert [e["diverged"] for e in expected.values()] == [0.0, 0.0, 1.0]
    assert [e["epochs_run"] for e in expected.values()][:2] == [EPOCHS, EPOCHS]
    assert expected[_run_name(RATES[-1])]["epochs_run"] < EPOCHS
    gaps = [e["gap_to_least_squares"] for e in expected.values()]
    assert gaps[0] > gaps[1] > 1e-3  # a slower rate is further from the optimum
    return log_dir, expected


def _check_metrics(run, values, expected):
    """`values`: {tag: value} for one session; compared with `expected[run]`."""
    e = expected[run]
    f32 = np.float32
    assert values["loss"] == f32(e["loss"]), run
    assert values["val_loss"] == f32(e["val_loss"]), run
    assert values["epochs_run"] == e["epochs_run"], run
    assert values["diverged"] == e["diverged"], run
    # float32 evaluate vs the float64 gap: rounding of an MSE of order 1.
    np.testing.assert_allclose(
        values["gap_to_least_squares"], e["gap_to_least_squares"], atol=1e-5 * e["mse"]
    )
    assert values["gap_to_least_squares"] >= -1e-6 * e["mse"]


# ------------------------------------------------------- from the files
def test_each_run_is_a_session_with_its_hparams_and_metrics(sweep):
    log_dir, expected = sweep
    assert sorted(os.listdir(log_dir / _run_name(RATES[0]))) == ["parameters"]
    for run in expected:
        accumulator = _accumulator(log_dir / run / "parameters")
        start = hparams_metadata.parse_session_start_info_plugin_data(
            _hparams_content(accumulator, hparams_metadata.SESSION_START_INFO_TAG)
        )
        assert start.group_name == run  # the trial ID is the run's name
        got = {name: value for name, value in start.hparams.items()}
        assert got["learning_rate"].number_value == expected[run]["hparams"]["learning_rate"]
        assert got["standardize"].bool_value is False
        assert got["batch_size"].number_value == N_TRAIN
        scalars = _last_scalars(accumulator)
        _check_metrics(run, {tag: value for tag, (_, value) in scalars.items()}, expected)
        last_epoch = expected[run]["epochs_run"] - 1
        assert {scalars[tag][0] for tag in hparams_module.SESSION_END_TAGS} == {last_epoch}


def test_the_experiment_declares_the_domains_and_metrics(sweep):
    log_dir, _ = sweep
    accumulator = _accumulator(log_dir)
    experiment = hparams_metadata.parse_experiment_plugin_data(
        _hparams_content(accumulator, hparams_metadata.EXPERIMENT_TAG)
    )
    domains = {
        info.name: [getattr(v, v.WhichOneof("kind")) for v in info.domain_discrete.values]
        for info in experiment.hparam_infos
    }
    assert domains == {
        "learning_rate": list(RATES),
        "standardize": [False],
        "batch_size": [N_TRAIN],
    }
    assert [m.name.tag for m in experiment.metric_infos] == list(hparams_module.METRICS)
    assert {m.name.group for m in experiment.metric_infos} == {""}
    display = {m.name.tag: m.display_name for m in experiment.metric_infos}
    assert display["gap_to_least_squares"] == "gap to least squares"


def test_without_hparams_no_session_is_written(tmp_path, tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression()
    model.compile()
    model.fit(x, y, batch_size=100, epochs=2, verbose=0, callbacks=[ParameterLogger(tmp_path)])
    accumulator = _accumulator(tmp_path / "parameters")
    tags = set(accumulator.Tags()["tensors"])
    assert tags == {"loss", "intercept", "slope", "learning_rate"}


def test_hparams_without_data_writes_no_gap(tmp_path, tutorial_data):
    x, y = tutorial_data
    model = keras_linreg.LinearRegression()
    model.compile()
    logger = ParameterLogger(tmp_path / "run", hparams={"learning_rate": 0.01})
    model.fit(x, y, batch_size=100, epochs=3, verbose=0, callbacks=[logger])
    scalars = _last_scalars(_accumulator(tmp_path / "run" / "parameters"))
    assert "gap_to_least_squares" not in scalars
    assert scalars["epochs_run"] == (2, 3.0) and scalars["diverged"] == (2, 0.0)


def test_a_keras_log_named_like_a_session_metric_does_not_clash(tmp_path, tutorial_data):
    """With hparams, `epochs_run`/`diverged` are the logger's own tags: a Keras
    log of the same name is not also written per epoch."""
    import keras

    x, y = tutorial_data

    class Diverged(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["diverged"] = 42.0

    model = keras_linreg.LinearRegression()
    model.compile()
    logger = ParameterLogger(tmp_path, hparams={"learning_rate": 0.01})
    model.fit(x, y, batch_size=100, epochs=2, verbose=0, callbacks=[Diverged(), logger])
    events = _accumulator(tmp_path / "parameters").Tensors("diverged")
    assert [float(tf.make_ndarray(e.tensor_proto)) for e in events] == [0.0]


@pytest.mark.parametrize(
    "hparams, message",
    [
        ({}, "`hparams`"),
        ([("learning_rate", 0.1)], "`hparams`"),
        ({"learning_rate": [0.1]}, "hyperparameter `learning_rate`"),
        ({"": 0.1}, "hyperparameter name"),
        ({"learning_rate": None}, "hyperparameter `learning_rate`"),
    ],
)
def test_invalid_session_hparams_raise(tmp_path, hparams, message):
    with pytest.raises(ValueError, match=message):
        ParameterLogger(tmp_path, hparams=hparams)


@pytest.mark.parametrize(
    "hparams, metrics, message",
    [
        ({}, hparams_module.METRICS, "`hparams`"),
        ({"learning_rate": []}, hparams_module.METRICS, "empty domain"),
        ({"learning_rate": 0.1}, hparams_module.METRICS, "invalid domain"),
        ({"learning_rate": "0.1"}, hparams_module.METRICS, "invalid domain"),
        ({"x": [0.1, "a"]}, hparams_module.METRICS, "mixed types"),
        ({"learning_rate": [0.1]}, [], "`metrics`"),
        ({"learning_rate": [0.1]}, "loss", "`metrics`"),
        ({"learning_rate": [0.1]}, [3], "invalid metric"),
    ],
)
def test_invalid_experiments_raise_and_write_nothing(tmp_path, hparams, metrics, message):
    with pytest.raises(ValueError, match=message):
        write_hparams_experiment(tmp_path / "logs", hparams, metrics)
    assert not (tmp_path / "logs").exists()


def test_experiment_accepts_domains_metrics_and_mixed_numbers(tmp_path):
    write_hparams_experiment(
        tmp_path,
        {
            "learning_rate": [1, 0.1],  # int and float: one float domain
            "momentum": hp.RealInterval(0.0, 0.9),
        },
        metrics=["loss", hp.Metric("epoch_loss", group="validation")],
    )
    experiment = hparams_metadata.parse_experiment_plugin_data(
        _hparams_content(_accumulator(tmp_path), hparams_metadata.EXPERIMENT_TAG)
    )
    infos = {info.name: info for info in experiment.hparam_infos}
    assert [v.number_value for v in infos["learning_rate"].domain_discrete.values] == [0.1, 1.0]
    interval = infos["momentum"].domain_interval
    assert (interval.min_value, interval.max_value) == (0.0, 0.9)
    assert [(m.name.group, m.name.tag) for m in experiment.metric_infos] == [
        ("", "loss"),
        ("validation", "epoch_loss"),
    ]


def test_least_squares_gap_is_zero_at_the_optimum(rng):
    x = rng.normal(size=(40, 3))
    y = x @ [1.0, -2.0, 0.5] + 3.0 + rng.normal(size=40)
    slope, intercept = keras_linreg.least_squares(x, y)
    assert abs(hparams_module.least_squares_gap(slope, intercept, (x, y))) < 1e-12
    # Moving off the optimum by d along the intercept adds exactly d**2 to the MSE.
    gap = hparams_module.least_squares_gap(slope, intercept + 0.1, (x, y))
    np.testing.assert_allclose(gap, 0.01, rtol=1e-9)


# ------------------------------------------------ real TensorBoard server
@pytest.fixture
def tensorboard_server(sweep):
    """Runs `tensorboard --logdir` over the sweep on a free port; always killed afterwards."""
    log_dir, expected = sweep
    with tensorboard(log_dir, len(expected), log_dir.parent / "tensorboard.log") as base:
        yield base


@pytest.mark.slow
def test_real_tensorboard_serves_every_run_with_its_metrics(tensorboard_server, sweep):
    _, expected = sweep
    experiment = post_json(
        f"{tensorboard_server}/data/plugin/hparams/experiment", {"experimentName": ""}
    )
    assert {info["name"] for info in experiment["hparamInfos"]} == set(hparams_module.HPARAMS)
    assert [m["name"]["tag"] for m in experiment["metricInfos"]] == list(hparams_module.METRICS)

    groups = post_json(
        f"{tensorboard_server}/data/plugin/hparams/session_groups", session_groups_request()
    )
    assert groups["totalSize"] == len(expected)
    by_name = {group["name"]: group for group in groups["sessionGroups"]}
    assert set(by_name) == set(expected)  # the trial IDs are the run names
    for run, group in by_name.items():
        assert group["hparams"] == expected[run]["hparams"]
        (session,) = group["sessions"]
        assert session["name"] == f"{run}/parameters"
        values = {m["name"]["tag"]: m["value"] for m in session["metricValues"]}
        assert set(values) == set(hparams_module.METRICS)
        _check_metrics(run, values, expected)


def test_sweep_demo_script_writes_an_experiment_and_one_session_per_rate(tmp_path, capsys):
    """scripts/hparams_sweep_demo.py, which makes docs/tensorboard-hparams.png."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "hparams_sweep_demo.py")
    spec = importlib.util.spec_from_file_location("hparams_sweep_demo", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    parent = tmp_path / "sweep"
    argv = ["--parent", str(parent), "--epochs", "40", "--learning-rates", "0.01,0.05"]
    assert script.main(argv) == 0
    assert sorted(p for p in os.listdir(parent) if not p.startswith("events")) == [
        "lr-0.01",
        "lr-0.05",
    ]
    _accumulator(parent).SummaryMetadata(hparams_metadata.EXPERIMENT_TAG)  # raises if missing
    diverged = {
        run: _last_scalars(_accumulator(parent / run / "parameters"))["diverged"][1]
        for run in ("lr-0.01", "lr-0.05")
    }
    assert diverged == {"lr-0.01": 0.0, "lr-0.05": 1.0}
    out = capsys.readouterr().out
    assert "learning_rate=0.05" in out and "diverged after" in out
    with pytest.raises(SystemExit):  # refuses a non-empty parent
        script.main(argv)
