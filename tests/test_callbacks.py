"""Tests for `keras_linreg.callbacks`: ParameterLogger and new_run_dir.

Every series is read back from the event files with TensorBoard's own reader
(`EventAccumulator`) or from a real `tensorboard` server over HTTP, and
compared with `history.history` and with the weights an independent callback
saw at each epoch end. `tf.summary.scalar` stores float32, so a logged value
must equal `float32(expected)` exactly.
"""

from __future__ import annotations

import gc
import glob
import os
import time
import urllib.error
import urllib.parse

import keras
import numpy as np
import pytest
import tensorflow as tf
from _tensorboard import get_json as _get_json
from _tensorboard import serve
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.histogram import summary_v2 as histogram_summary

import keras_linreg
from keras_linreg import callbacks as callbacks_module
from keras_linreg.callbacks import ParameterLogger, new_run_dir


# ----------------------------------------------------------------- helpers
def read_run(run_dir):
    """Returns `{tag: (plugin_name, [(step, value), ...])}` for one run dir."""
    accumulator = event_accumulator.EventAccumulator(
        run_dir, size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    series = {}
    for tag in accumulator.Tags()["tensors"]:
        plugin = accumulator.SummaryMetadata(tag).plugin_data.plugin_name
        events = accumulator.Tensors(tag)
        series[tag] = (plugin, [(e.step, tf.make_ndarray(e.tensor_proto)) for e in events])
    return series


def scalars(series, tag):
    plugin, events = series[tag]
    assert plugin == "scalars", tag
    return [step for step, _ in events], np.array([float(v) for _, v in events])


def f32(values):
    return np.asarray(values, dtype=np.float32).astype(np.float64)


class WeightRecorder(keras.callbacks.Callback):
    """Independently records the weights at each epoch end and the rate of every step.

    `model.learning_rate` read before a step is the rate that step applies
    (`learning_rate(iterations)`), so the last one seen in an epoch is the rate
    of the epoch's last step.
    """

    def __init__(self):
        super().__init__()
        self.slopes, self.intercepts, self.epochs, self.last_rates = [], [], [], []
        self._rate = None

    def on_train_batch_begin(self, batch, logs=None):
        self._rate = self.model.learning_rate

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)
        self.slopes.append(np.array(self.model.slope.numpy(), dtype=np.float64))
        self.intercepts.append(float(self.model.intercept.numpy()))
        self.last_rates.append(self._rate)


def two_feature_data(rng, n=64):
    x = rng.normal(size=(n, 2)).astype("float32")
    y = (x @ np.array([2.0, -3.0]) + 0.5 + rng.normal(0, 0.1, n)).astype("float32")
    return x, y


class LogRecorder(keras.callbacks.Callback):
    """A plain Keras callback: at each epoch end, the logs, `get_parameters()` and the rate."""

    def __init__(self):
        super().__init__()
        self.epochs, self.logs, self.slopes, self.intercepts, self.rates = [], [], [], [], []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)
        self.logs.append(dict(logs))
        slope, intercept = self.model.get_parameters()
        self.slopes.append(np.array(slope, dtype=np.float64))
        self.intercepts.append(intercept)
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))


def assert_matches_recorder(series, recorder, fit_intercept=True, feature_names=None):
    """Every tag of every epoch equals, in float32, what `recorder` saw; the
    histogram equals TensorBoard's own (TensorFlow) bucketing of the slopes."""
    slopes = np.array(recorder.slopes)
    n_features = slopes.shape[1]
    names = feature_names or [str(i) for i in range(n_features)]
    expected = {key: [logs[key] for logs in recorder.logs] for key in recorder.logs[0]}
    expected.update({f"slope/{name}": slopes[:, i] for i, name in enumerate(names)})
    expected["learning_rate"] = recorder.rates
    if fit_intercept:
        expected["intercept"] = recorder.intercepts
    histogram = n_features >= 10
    assert set(series) == set(expected) | ({"slopes"} if histogram else set())
    for tag, values in expected.items():
        steps, logged = scalars(series, tag)
        assert steps == recorder.epochs, tag
        np.testing.assert_array_equal(logged, f32(values), err_msg=tag)
    if histogram:
        plugin, events = series["slopes"]
        assert plugin == "histograms"
        assert [step for step, _ in events] == recorder.epochs
        for (_, buckets), slope in zip(events, slopes, strict=True):
            reference = histogram_summary._buckets(tf.constant(slope)).numpy()
            np.testing.assert_array_equal(buckets, reference)


def diabetes_shaped(rng, n=120, n_features=10):
    """Rows like scikit-learn's diabetes data (10 features), fewer of them."""
    x = rng.normal(size=(n, n_features)).astype("float32")
    y = (x @ rng.normal(size=n_features) + 1.5 + rng.normal(0, 0.1, n)).astype("float32")
    return x, y


@pytest.mark.parametrize(
    "case", ["full_batch", "mini_batch", "validation", "no_intercept", "dataset"]
)
def test_every_epoch_matches_an_independent_recorder(tmp_path, rng, case):
    """The fast in-memory path full batch (as `keras-linreg train`) and with shuffled
    mini-batches, validation data with a metric, a model without intercept, and a
    `tf.data` input (Keras' own loop): the event file, read by TensorBoard's reader,
    holds every epoch exactly as a plain callback recorded it."""
    x, y = diabetes_shaped(rng)
    fit_intercept = case != "no_intercept"
    model = keras_linreg.LinearRegression(learning_rate=0.05, fit_intercept=fit_intercept)
    model.compile(metrics=[keras.metrics.R2Score()] if case == "validation" else [])
    recorder = LogRecorder()
    kwargs = {"batch_size": len(x), "shuffle": False}
    if case == "mini_batch":
        kwargs = {"batch_size": 16, "shuffle": True}
    elif case == "validation":
        kwargs = {"batch_size": 32, "validation_data": (x[:30], y[:30])}
    elif case == "dataset":
        x, y, kwargs = tf.data.Dataset.from_tensor_slices((x, y)).batch(40), None, {}
    model.fit(x, y, epochs=4, verbose=0, callbacks=[recorder, ParameterLogger(tmp_path)], **kwargs)
    if case == "validation":
        assert {"val_loss", "val_r2_score"} <= set(recorder.logs[0])
    series = read_run(str(tmp_path / "parameters"))
    assert_matches_recorder(series, recorder, fit_intercept=fit_intercept)
    assert np.all(np.abs(np.diff(np.array(recorder.slopes), axis=0)) > 0)  # it learned


class _RaiseAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError("interrupted")


def test_a_fit_that_raises_leaves_whole_epochs_and_its_file_is_closed(tmp_path, rng):
    """A callback raises at epoch 2 (after the logger): `on_train_end` never runs, yet
    epochs 0-2 are on disk, whole; the open file is closed by the next `fit` of the
    same logger, or when the logger is collected."""
    x, y = diabetes_shaped(rng)
    model = keras_linreg.LinearRegression(learning_rate=0.05)
    model.compile()
    recorder, logger = LogRecorder(), ParameterLogger(tmp_path)
    try:
        model.fit(x, y, batch_size=len(x), epochs=6, verbose=0,
                  callbacks=[recorder, logger, _RaiseAt(2)])  # fmt: skip
    except RuntimeError as error:
        assert str(error) == "interrupted"
        del error  # its traceback holds the callbacks
    else:
        pytest.fail("fit did not raise")
    assert recorder.epochs == [0, 1, 2]
    assert_matches_recorder(read_run(str(tmp_path / "parameters")), recorder)
    closer = logger._closer
    assert closer.alive  # still open: nothing called on_train_end
    model.fit(x, y, batch_size=len(x), epochs=4, initial_epoch=3, verbose=0, callbacks=[logger])
    assert not closer.alive and logger._writer is None
    # Collected while open: closed by its finalizer.
    logger = ParameterLogger(tmp_path / "second")
    try:
        model.fit(x, y, batch_size=len(x), epochs=3, verbose=0, callbacks=[logger, _RaiseAt(0)])
    except RuntimeError:
        pass
    closer = logger._closer
    del logger
    gc.collect()
    assert not closer.alive
    steps, _ = scalars(read_run(str(tmp_path / "second" / "parameters")), "loss")
    assert steps == [0]


# ------------------------------------------------------------- unit tests
def test_a_model_without_intercept_logs_no_intercept_series(tmp_path, rng):
    """`fit_intercept=False`: the slopes are logged, no constant `intercept` series is
    (there is no such parameter), and the HParams gap is measured against least
    squares through the origin (`numpy.linalg.lstsq` on x alone)."""
    x, y = two_feature_data(rng)
    model = keras_linreg.LinearRegression(learning_rate=0.1, fit_intercept=False)
    model.compile()
    recorder = WeightRecorder()
    logger = ParameterLogger(tmp_path, data=(x, y), hparams={"fit_intercept": False})
    model.fit(x, y, batch_size=64, epochs=4, shuffle=False, verbose=0,
              callbacks=[logger, recorder])  # fmt: skip
    series = read_run(str(tmp_path / "parameters"))
    assert "intercept" not in series
    assert {"loss", "slope/0", "slope/1", "learning_rate", "gap_to_least_squares"} <= set(series)
    slopes = np.array(recorder.slopes)
    np.testing.assert_array_equal(scalars(series, "slope/0")[1], f32(slopes[:, 0]))
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    optimum = np.linalg.lstsq(x64, y64, rcond=None)[0]
    slope = model.get_parameters()[0]
    gap = np.mean((x64 @ slope - y64) ** 2) - np.mean((x64 @ optimum - y64) ** 2)
    _, logged_gap = scalars(series, "gap_to_least_squares")
    np.testing.assert_allclose(logged_gap, [gap], rtol=1e-4)


def test_every_series_matches_history_and_weights(tmp_path, rng):
    """loss, metrics, val_*, slope/<name>, intercept and learning_rate, epoch by epoch."""
    x, y = two_feature_data(rng)
    model = keras_linreg.LinearRegression(learning_rate=0.05, feature_names=["age", "height"])
    model.compile(metrics=[keras.metrics.RootMeanSquaredError()])
    recorder = WeightRecorder()
    logger = ParameterLogger(tmp_path)
    history = model.fit(
        x[:48],
        y[:48],
        batch_size=16,
        epochs=5,
        shuffle=False,
        verbose=0,
        validation_data=(x[48:], y[48:]),
        callbacks=[logger, recorder],
    )
    assert os.listdir(tmp_path) == ["parameters"]
    assert len(glob.glob(str(tmp_path / "parameters" / "events.out.tfevents.*"))) == 1
    series = read_run(str(tmp_path / "parameters"))
    assert set(series) == {
        "loss",
        "root_mean_squared_error",
        "val_loss",
        "val_root_mean_squared_error",
        "intercept",
        "slope/age",
        "slope/height",
        "learning_rate",
    }
    for key, values in history.history.items():
        steps, logged = scalars(series, key)
        assert steps == list(range(5)), key
        np.testing.assert_array_equal(logged, f32(values), err_msg=key)
    slopes = np.array(recorder.slopes)
    np.testing.assert_array_equal(scalars(series, "slope/age")[1], f32(slopes[:, 0]))
    np.testing.assert_array_equal(scalars(series, "slope/height")[1], f32(slopes[:, 1]))
    np.testing.assert_array_equal(scalars(series, "intercept")[1], f32(recorder.intercepts))
    np.testing.assert_array_equal(scalars(series, "learning_rate")[1], f32([0.05] * 5))
    # The parameters really moved (a frozen model would not test anything).
    assert np.all(np.abs(np.diff(slopes[:, 1])) > 0)


def test_one_feature_slope_tag_and_fit_images(tmp_path, tutorial_data):
    """One feature: tag `slope`; images `fit` at epochs 0, K, 2K, ... and the last."""
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    recorder = WeightRecorder()
    logger = ParameterLogger(tmp_path, data=(x, y), image_every=3)
    history = model.fit(
        x, y, batch_size=100, epochs=7, shuffle=False, verbose=0, callbacks=[logger, recorder]
    )
    series = read_run(str(tmp_path / "parameters"))
    assert set(series) == {"loss", "intercept", "slope", "learning_rate", "fit"}
    np.testing.assert_array_equal(scalars(series, "loss")[1], f32(history.history["loss"]))
    np.testing.assert_array_equal(scalars(series, "slope")[1], f32(np.array(recorder.slopes)[:, 0]))
    plugin, images = series["fit"]
    assert plugin == "images"
    assert [step for step, _ in images] == [0, 3, 6]
    for _, value in images:
        width, height, png = value
        pixels = tf.io.decode_png(png).numpy()
        assert pixels.shape == (int(height), int(width), 4)
        assert len(np.unique(pixels.reshape(-1, 4), axis=0)) > 10  # not a blank canvas


def test_many_features_histogram_and_predicted_vs_actual(tmp_path, rng):
    """12 features: `slope/0..11`, a `slopes` histogram of all 12, `predicted_vs_actual`."""
    n_features = 12
    x = rng.normal(size=(80, n_features)).astype("float32")
    y = (x @ np.arange(n_features) + rng.normal(0, 0.1, 80)).astype("float32")
    model = keras_linreg.LinearRegression(learning_rate=0.1)
    model.compile()
    recorder = WeightRecorder()
    logger = ParameterLogger(tmp_path, data=(x, y), image_every=10)
    model.fit(x, y, batch_size=80, epochs=3, verbose=0, callbacks=[logger, recorder])
    series = read_run(str(tmp_path / "parameters"))
    for i in range(n_features):
        np.testing.assert_array_equal(
            scalars(series, f"slope/{i}")[1], f32(np.array(recorder.slopes)[:, i])
        )
    plugin, histograms = series["slopes"]
    assert plugin == "histograms"
    assert [step for step, _ in histograms] == [0, 1, 2]
    for (_, buckets), slope in zip(histograms, recorder.slopes, strict=True):
        # Rows of (left edge, right edge, count): every slope counted once,
        # all inside the edges.
        assert buckets[:, 2].sum() == n_features
        np.testing.assert_allclose(buckets[0, 0], slope.min(), rtol=1e-6)
        np.testing.assert_allclose(buckets[-1, 1], slope.max(), rtol=1e-6)
    plugin, images = series["predicted_vs_actual"]
    assert plugin == "images"
    assert [step for step, _ in images] == [0, 2]  # epoch 0 and the last epoch


def test_few_features_write_no_histogram(tmp_path, rng):
    x, y = two_feature_data(rng)
    model = keras_linreg.LinearRegression()
    model.compile()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[ParameterLogger(tmp_path)])
    assert "slopes" not in read_run(str(tmp_path / "parameters"))


def test_side_by_side_with_keras_tensorboard(tmp_path, rng):
    """Same fit, same log_dir: Keras' train/validation runs and ours are all intact."""
    x, y = two_feature_data(rng)
    model = keras_linreg.LinearRegression(learning_rate=0.05)
    model.compile()
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=4,
        verbose=0,
        validation_split=0.25,
        callbacks=[
            keras.callbacks.TensorBoard(tmp_path),
            ParameterLogger(tmp_path),
            keras.callbacks.TensorBoard(tmp_path / "second"),  # order does not matter
        ],
    )
    assert sorted(os.listdir(tmp_path)) == ["parameters", "second", "train", "validation"]
    for run in ("parameters", "train", "validation"):
        files = glob.glob(str(tmp_path / run / "events.out.tfevents.*"))
        assert len(files) == 1, (run, files)  # one growing event file per run
    ours = read_run(str(tmp_path / "parameters"))
    train = read_run(str(tmp_path / "train"))
    validation = read_run(str(tmp_path / "validation"))
    np.testing.assert_array_equal(scalars(ours, "loss")[1], f32(history.history["loss"]))
    np.testing.assert_array_equal(scalars(ours, "val_loss")[1], f32(history.history["val_loss"]))
    np.testing.assert_array_equal(scalars(train, "epoch_loss")[1], f32(history.history["loss"]))
    np.testing.assert_array_equal(
        scalars(validation, "epoch_loss")[1], f32(history.history["val_loss"])
    )
    assert scalars(train, "epoch_learning_rate")[0] == [0, 1, 2, 3]


def test_learning_rate_under_a_schedule_is_the_last_steps_rate(tmp_path, tutorial_data):
    """ExponentialDecay, 4 steps per epoch: epoch e logs lr(4e + 3) = 0.01 * 0.5**((4e+3)/2)."""
    x, y = tutorial_data
    schedule = keras.optimizers.schedules.ExponentialDecay(0.01, decay_steps=2, decay_rate=0.5)
    model = keras_linreg.LinearRegression(learning_rate=schedule)
    model.compile()
    recorder = WeightRecorder()
    model.fit(
        x,
        y,
        batch_size=25,
        epochs=3,
        shuffle=False,
        verbose=0,
        callbacks=[ParameterLogger(tmp_path), recorder],
    )
    steps, logged = scalars(read_run(str(tmp_path / "parameters")), "learning_rate")
    assert steps == [0, 1, 2]
    last_steps = np.array([3, 7, 11])
    np.testing.assert_allclose(logged, 0.01 * 0.5 ** (last_steps / 2), rtol=1e-6)
    np.testing.assert_array_equal(logged, f32(recorder.last_rates))
    # Not the next epoch's first rate (what `optimizer.learning_rate` reads after the epoch).
    assert not np.allclose(logged, 0.01 * 0.5 ** ((last_steps + 1) / 2), rtol=1e-3)


@pytest.mark.parametrize("logger_first", [True, False])
def test_learning_rate_under_rate_callbacks_in_any_order(tmp_path, tutorial_data, logger_first):
    """LearningRateScheduler sets epoch e's rate; ReduceLROnPlateau halves it after every epoch.

    The logged rate is the one the epoch's steps applied, whichever callback runs first.
    """
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    recorder = WeightRecorder()
    scheduler = keras.callbacks.LearningRateScheduler(
        lambda epoch, rate: 0.01 / (1 + epoch) if epoch < 2 else rate
    )
    plateau = keras.callbacks.ReduceLROnPlateau(
        monitor="loss", factor=0.5, patience=0, min_delta=1e9, min_lr=0
    )
    logger = ParameterLogger(tmp_path)
    others = [scheduler, plateau, recorder]
    model.fit(
        x,
        y,
        batch_size=50,
        epochs=5,
        shuffle=False,
        verbose=0,
        callbacks=[logger, *others] if logger_first else [*others, logger],
    )
    _, logged = scalars(read_run(str(tmp_path / "parameters")), "learning_rate")
    # epoch 0: 0.01, epoch 1: 0.005, then halved by the plateau after each epoch.
    np.testing.assert_allclose(logged, [0.01, 0.005, 0.0025, 0.00125, 0.000625], rtol=1e-6)
    np.testing.assert_array_equal(logged, f32(recorder.last_rates))


def test_initial_epoch_continues_the_series(tmp_path, tutorial_data):
    """A second fit with initial_epoch=3 (a new logger, as in a new process) logs steps 3..5."""
    x, y = tutorial_data
    model = keras_linreg.LinearRegression(learning_rate=0.01)
    model.compile()
    first = model.fit(
        x, y, batch_size=100, epochs=3, verbose=0, callbacks=[ParameterLogger(tmp_path)]
    )
    second = model.fit(
        x,
        y,
        batch_size=100,
        epochs=6,
        initial_epoch=3,
        verbose=0,
        callbacks=[ParameterLogger(tmp_path)],
    )
    assert len(glob.glob(str(tmp_path / "parameters" / "events.out.tfevents.*"))) == 2
    steps, logged = scalars(read_run(str(tmp_path / "parameters")), "loss")
    assert steps == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(logged, f32(first.history["loss"] + second.history["loss"]))


class _Interrupt(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 2:
            raise RuntimeError("interrupted")


def test_backup_and_restore_resume_continues_the_series(tmp_path, tutorial_data):
    """Interrupted after epoch 2, resumed by BackupAndRestore: steps 0..5, each once."""
    x, y = tutorial_data
    log_dir, backup_dir = tmp_path / "run", tmp_path / "backup"

    def fit(callbacks):
        return model.fit(
            x,
            y,
            batch_size=100,
            epochs=6,
            verbose=0,
            callbacks=[keras.callbacks.BackupAndRestore(backup_dir), *callbacks],
        )

    model = keras_linreg.LinearRegression(n_features=1, learning_rate=0.01)
    model.compile()
    recorder = WeightRecorder()
    with pytest.raises(RuntimeError, match="interrupted"):
        fit([ParameterLogger(log_dir), recorder, _Interrupt()])
    model = keras_linreg.LinearRegression(n_features=1, learning_rate=0.01)
    model.compile()
    fit([ParameterLogger(log_dir), recorder])
    assert recorder.epochs == [0, 1, 2, 3, 4, 5]
    series = read_run(str(log_dir / "parameters"))
    steps, logged = scalars(series, "slope")
    assert steps == [0, 1, 2, 3, 4, 5]
    np.testing.assert_array_equal(logged, f32(np.array(recorder.slopes)[:, 0]))
    np.testing.assert_array_equal(scalars(series, "intercept")[1], f32(recorder.intercepts))


def test_writer_is_lazy_and_closed_at_train_end(tmp_path, tutorial_data):
    x, y = tutorial_data
    logger = ParameterLogger(tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing created before an epoch ends
    model = keras_linreg.LinearRegression()
    model.compile()
    model.fit(x, y, epochs=1, verbose=0, callbacks=[logger])
    assert logger._writer is None
    # The same logger in a later fit opens a new writer and continues.
    model.fit(x, y, epochs=2, initial_epoch=1, verbose=0, callbacks=[logger])
    steps, _ = scalars(read_run(str(tmp_path / "run" / "parameters")), "loss")
    assert steps == [0, 1]


class _ReadBack(keras.callbacks.Callback):
    """Reads the run's event files at each epoch end, while the logger's writer is open."""

    def __init__(self, run_dir):
        super().__init__()
        self.run_dir, self.seen = run_dir, []

    def on_epoch_end(self, epoch, logs=None):
        series = read_run(self.run_dir) if os.path.isdir(self.run_dir) else {}
        self.seen.append({tag: [step for step, _ in events] for tag, (_, events) in series.items()})


def test_every_epoch_is_on_disk_when_it_ends(tmp_path, tutorial_data):
    """Flushed each epoch: a reader right after the logger already sees the whole epoch."""
    x, y = tutorial_data
    model = keras_linreg.LinearRegression()
    model.compile()
    reader = _ReadBack(str(tmp_path / "parameters"))
    model.fit(x, y, epochs=3, verbose=0, callbacks=[ParameterLogger(tmp_path), reader])
    tags = {"loss", "intercept", "slope", "learning_rate"}
    assert reader.seen == [{tag: list(range(epoch + 1)) for tag in tags} for epoch in range(3)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"log_dir": ""}, "`log_dir`"),
        ({"log_dir": "d", "image_every": 0}, "`image_every`"),
        ({"log_dir": "d", "image_every": True, "data": ([1.0], [1.0])}, "`image_every`"),
        ({"log_dir": "d", "image_every": 2}, "pass `data=\\(x, y\\)`"),
        ({"log_dir": "d", "data": ([1.0, 2.0], [1.0])}, "`data`"),
        ({"log_dir": "d", "data": np.ones(3)}, "`data`"),
        ({"log_dir": "d", "histogram_min_features": -1}, "`histogram_min_features`"),
    ],
)
def test_invalid_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ParameterLogger(**kwargs)


def test_refuses_a_model_without_parameters(tmp_path):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="get_parameters"):
        model.fit(np.ones((4, 1)), np.ones(4), verbose=0, callbacks=[ParameterLogger(tmp_path)])


@pytest.mark.parametrize("n_features", [None, 2])
def test_data_with_the_wrong_number_of_features_raises(tmp_path, rng, n_features):
    """Built model: refused at train begin; unbuilt: at the first epoch end. Nothing written."""
    x, y = two_feature_data(rng)
    model = keras_linreg.LinearRegression(n_features=n_features)
    model.compile()
    recorder = WeightRecorder()
    logger = ParameterLogger(tmp_path, data=(x[:, :1], y), image_every=1)
    with pytest.raises(ValueError, match="1 features, but the model has 2"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[logger, recorder])
    assert recorder.epochs == []
    assert not (tmp_path / "parameters").exists()


# ------------------------------------------------------------ new_run_dir
def test_new_run_dir_is_fresh_even_within_one_second(tmp_path, monkeypatch):
    monkeypatch.setattr(callbacks_module, "_timestamp", lambda: "20261126-081500")
    parent = tmp_path / "logs" / "demo"
    paths = [new_run_dir(parent, prefix="run") for _ in range(3)]
    assert [os.path.basename(p) for p in paths] == [
        "run-20261126-081500",
        "run-20261126-081500-2",
        "run-20261126-081500-3",
    ]
    assert all(os.path.isdir(p) and not os.listdir(p) for p in paths)
    assert sorted(paths) == paths  # names sort in creation order
    assert os.path.basename(new_run_dir(parent, prefix="")) == "20261126-081500"


def test_new_run_dir_uses_the_clock(tmp_path):
    before = time.strftime("%Y%m%d-%H%M%S")
    path = new_run_dir(tmp_path)
    after = time.strftime("%Y%m%d-%H%M%S")
    stamp = os.path.basename(path).removeprefix("run-")[:15]
    assert before <= stamp <= after
    assert new_run_dir(tmp_path) != path


def test_new_run_dir_refuses_a_prefix_with_a_separator(tmp_path):
    with pytest.raises(ValueError, match="`prefix`"):
        new_run_dir(tmp_path, prefix="a/b")


# ------------------------------------------------- real TensorBoard server
@pytest.fixture
def trained_log_dir(tmp_path, rng):
    """A log dir with ParameterLogger and keras.callbacks.TensorBoard side by side."""
    x, y = two_feature_data(rng)
    model = keras_linreg.LinearRegression(learning_rate=0.05, feature_names=["a", "b"])
    model.compile()
    recorder = WeightRecorder()
    log_dir = tmp_path / "logs"
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=4,
        verbose=0,
        validation_split=0.25,
        callbacks=[ParameterLogger(log_dir), keras.callbacks.TensorBoard(log_dir), recorder],
    )
    return log_dir, history.history, recorder


@pytest.fixture
def tensorboard_server(trained_log_dir):
    """Runs `tensorboard --logdir` on a free port; always killed afterwards."""
    log_dir = trained_log_dir[0]

    def ready(base):
        return {"parameters", "train", "validation"} <= set(
            _get_json(f"{base}/data/plugin/scalars/tags")
        )

    with serve(log_dir, log_dir.parent / "tensorboard.log", ready) as base:
        yield base


@pytest.mark.slow
def test_real_tensorboard_server_serves_the_series(tensorboard_server, trained_log_dir):
    _, history, recorder = trained_log_dir
    tags = _get_json(f"{tensorboard_server}/data/plugin/scalars/tags")
    assert set(tags["parameters"]) == {
        "loss",
        "val_loss",
        "intercept",
        "slope/a",
        "slope/b",
        "learning_rate",
    }
    assert "epoch_loss" in tags["train"] and "epoch_loss" in tags["validation"]

    def served(run, tag):
        query = urllib.parse.urlencode({"run": run, "tag": tag})
        rows = _get_json(f"{tensorboard_server}/data/plugin/scalars/scalars?{query}")
        return [row[1] for row in rows], np.array([row[2] for row in rows])

    expected = {
        "loss": history["loss"],
        "val_loss": history["val_loss"],
        "slope/a": np.array(recorder.slopes)[:, 0],
        "slope/b": np.array(recorder.slopes)[:, 1],
        "intercept": recorder.intercepts,
        "learning_rate": [0.05] * 4,
    }
    for tag, values in expected.items():
        steps, logged = served("parameters", tag)
        assert steps == [0, 1, 2, 3], tag
        np.testing.assert_array_equal(logged, f32(values), err_msg=tag)
    np.testing.assert_array_equal(served("train", "epoch_loss")[1], f32(history["loss"]))


class _WaitForServer(keras.callbacks.Callback):
    """At epoch `epoch`'s end, with `fit` paused, polls a running TensorBoard until it
    serves the `parameters` run's `tag` at steps 0..epoch, and keeps what it served."""

    def __init__(self, base, epoch, tag, timeout=30):
        super().__init__()
        self.base, self.epoch, self.tag, self.timeout = base, epoch, tag, timeout
        self.served = None

    def on_epoch_end(self, epoch, logs=None):
        if epoch != self.epoch:
            return
        query = urllib.parse.urlencode({"run": "parameters", "tag": self.tag})
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            try:
                rows = _get_json(f"{self.base}/data/plugin/scalars/scalars?{query}")
            except urllib.error.HTTPError:  # the run or tag is not loaded yet
                rows = []
            if [row[1] for row in rows] == list(range(epoch + 1)):
                self.served = [row[2] for row in rows]
                return
            time.sleep(0.25)


@pytest.mark.slow
def test_a_running_tensorboard_serves_each_epoch_during_the_fit(tmp_path, rng):
    """TensorBoard started before the fit (the run directory does not exist yet) serves
    epochs 0 and 1 while the fit is still running, equal to what a callback recorded."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    x, y = diabetes_shaped(rng)
    model = keras_linreg.LinearRegression(learning_rate=0.05)
    model.compile()

    def ready(base):
        return isinstance(_get_json(f"{base}/data/runs"), list)

    with serve(log_dir, tmp_path / "tensorboard.log", ready) as base:
        recorder = LogRecorder()
        waits = [_WaitForServer(base, 1, "loss"), _WaitForServer(base, 1, "slope/3")]
        model.fit(x, y, batch_size=len(x), epochs=3, verbose=0,
                  callbacks=[recorder, ParameterLogger(log_dir), *waits])  # fmt: skip
    loss, slope = waits[0].served, waits[1].served
    assert loss is not None and slope is not None, "not served during the fit"
    np.testing.assert_array_equal(loss, f32([logs["loss"] for logs in recorder.logs[:2]]))
    np.testing.assert_array_equal(slope, f32(np.array(recorder.slopes)[:2, 3]))


def test_tensorboard_demo_script_logs_a_fresh_run(tmp_path, capsys):
    """scripts/tensorboard_demo.py: the tutorial's fit into parent/<timestamp>/parameters."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), os.pardir, "scripts", "tensorboard_demo.py")
    spec = importlib.util.spec_from_file_location("tensorboard_demo", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    parent = tmp_path / "demo"
    assert script.main(["--parent", str(parent), "--epochs", "3", "--image-every", "2"]) == 0
    (run,) = os.listdir(parent)
    series = read_run(str(parent / run / "parameters"))
    assert set(series) == {"loss", "intercept", "slope", "learning_rate", "fit"}
    assert scalars(series, "loss")[0] == [0, 1, 2]
    assert [step for step, _ in series["fit"][1]] == [0, 2]
    assert f"--logdir {parent}" in capsys.readouterr().out


@pytest.mark.parametrize("n_features, image_tag", [(1, "fit"), (12, "predicted_vs_actual")])
def test_a_diverging_run_is_logged_not_crashed(tmp_path, rng, n_features, image_tag):
    """learning_rate far above 2/lambda_max: the model's divergence guard stops the
    fit; every epoch that ran, the exploding ones included, is logged whole."""
    x = (rng.normal(size=(50, n_features)) * 100).astype("float32")
    y = x.sum(axis=1)
    model = keras_linreg.LinearRegression(learning_rate=10.0)
    model.compile()
    logger = ParameterLogger(tmp_path, data=(x, y), image_every=1, histogram_min_features=1)
    with pytest.raises(keras_linreg.DivergenceError) as error:
        model.fit(x, y, batch_size=50, epochs=8, verbose=0, callbacks=[logger])
    losses = np.array(error.value.history.history["loss"])
    assert len(losses) >= 2 and losses[-1] > 1e4 * losses[0]  # it really diverged
    series = read_run(str(tmp_path / "parameters"))
    np.testing.assert_array_equal(scalars(series, "loss")[1], f32(losses))
    steps = list(range(len(losses)))
    for tag, (_, events) in series.items():  # every epoch whole: each tag at each step
        assert [step for step, _ in events] == steps, tag
    assert logger._writer is None  # closed: on_train_end runs before the error is raised
    assert [step for step, _ in series["slopes"][1]] == steps
    assert [step for step, _ in series[image_tag][1]] == steps  # huge values drawn too
