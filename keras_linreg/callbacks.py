"""Watching a `LinearRegression` learn in TensorBoard.

`ParameterLogger` writes, once per epoch, the loss (and every other training
and validation log), the slope(s), the intercept and the learning rate as
TensorBoard scalars, and optionally a picture of the current fit.
`new_run_dir` picks a fresh timestamped directory for a new training run.
"""

from __future__ import annotations

import datetime
import numbers
import os
import weakref

import keras
import numpy as np

from keras_linreg import _event_file, _keras_internals, divergence
from keras_linreg import hparams as _hparams
from keras_linreg.hparams import write_hparams_experiment
from keras_linreg.plotting import draw_fit

__all__ = ["PARAMETERS_RUN", "ParameterLogger", "new_run_dir", "write_hparams_experiment"]

# `keras.callbacks.TensorBoard(log_dir)` writes its event files to
# `log_dir/train` and `log_dir/validation`, one writer (and one growing event
# file) per directory. TensorBoard treats every directory holding event files
# as one run and follows only its newest event file, so a second writer
# appending to either directory at the same time would hide one of the two
# files from a live dashboard. ParameterLogger therefore writes to a directory
# of its own, `log_dir/parameters`, which TensorBoard shows as a third run.
PARAMETERS_RUN = "parameters"

# Tags this callback writes itself; a Keras log of the same name is skipped.
_OWN_TAGS = ("intercept", "slope", "learning_rate", "slopes", "fit", "predicted_vs_actual")

# At most this many points are drawn in an image (evenly spaced rows).
_MAX_IMAGE_POINTS = 2000


class ParameterLogger(keras.callbacks.Callback):
    """Logs the loss and the parameters of a `LinearRegression` to TensorBoard.

    At the end of every epoch `e` (the 0-based epoch index Keras passes to
    `on_epoch_end`, absolute under `initial_epoch` and a resumed
    `BackupAndRestore` run, so a resumed run continues the same series) it
    writes at `step=e`, to `log_dir/parameters`, the summaries `tf.summary`
    would write:

    - `loss` and every other log of the epoch under its Keras name
      (compiled metrics such as `root_mean_squared_error`, and `val_loss`,
      `val_*` when validating);
    - `intercept`, and `slope` (one feature) or `slope/<name>` for each
      feature (`model.feature_names`, or the column index), as
      `model.get_parameters()` returns them, i.e. in the units of the raw
      data: `y = x · slope + intercept`. A model with `fit_intercept=False`
      has no intercept, and no `intercept` series is written for it (a flat
      line of zeros would look like a learned value);
    - `learning_rate`: the rate applied at the epoch's last step. For a
      `LearningRateSchedule` that is `schedule(iterations - 1)`; for a plain
      rate it is the value in effect during the epoch, also when
      `ReduceLROnPlateau` lowers it in an `on_epoch_end` that runs before
      this one;
    - every `image_every` epochs (and at the last epoch of `fit`) an image
      `fit` (one feature: the data and the line `x · slope + intercept`) or
      `predicted_vs_actual` (several features), drawn from `data` with
      matplotlib's Agg renderer;
    - a histogram `slopes` of the slope vector, when the model has at least
      `histogram_min_features` features.

    The event file is created when the first epoch ends. Each epoch is one
    event record, handed to the operating system when the epoch ends (one
    `write(2)`, no fsync, as `tf.summary`'s `flush()`), so a live TensorBoard
    sees it at once and a killed process keeps every logged epoch, whole. The
    file is closed when training ends, and by the next `fit`, garbage
    collection or interpreter exit when `fit` raised before that. Nothing is
    written inside the compiled `train_step`, and no TensorFlow op runs per
    epoch (the summaries are built as protos, see `_event_file`), except
    PNG encoding for an image.

    With `hparams={name: value}` the run is also a session of TensorBoard's
    HParams dashboard (declare the sweep with `write_hparams_experiment`):
    the hyperparameters are written when training begins (so the event file
    is created then), and when it ends the session metrics
    `epochs_run` (the last epoch index + 1), `diverged` (1 if the divergence
    guard stopped the fit, else 0) and, with `data`,
    `gap_to_least_squares` (see `hparams.METRICS`); `loss` and `val_loss`
    are the last values of their series. The session's trial ID is the
    run's name, `os.path.basename(log_dir)`.

    It works side by side with `keras.callbacks.TensorBoard(log_dir)` in the
    same `fit` and the same `log_dir`: Keras writes to `log_dir/train` and
    `log_dir/validation`, this callback to `log_dir/parameters`.

    Args:
        log_dir: Directory of this training run (e.g. from `new_run_dir()`).
            The callback writes to `log_dir/parameters` and nowhere else.
        data: Optional `(x, y)` for the images: `x` of shape `(n,)` or
            `(n, n_features)` and `y` of shape `(n,)` or `(n, 1)`. At most
            2000 evenly spaced rows are drawn.
        image_every: Optional positive integer `K`: draw an image at epochs
            `0, K, 2K, ...` and at the last epoch. Needs `data`.
        histogram_min_features: Write the `slopes` histogram when the model
            has at least this many features (default 10); `None` never.
        hparams: Optional mapping from hyperparameter names to this run's
            values (bool, int, float or str), e.g.
            `{"learning_rate": 0.01, "standardize": False, "batch_size": 32}`.
            With `data`, every row of it (not only the drawn ones) is used for
            `gap_to_least_squares`: pass the training rows.

    Example:

    ```python
    log_dir = keras_linreg.callbacks.new_run_dir("logs/demo")
    model.fit(x, y, epochs=100, callbacks=[
        keras_linreg.ParameterLogger(log_dir, data=(x, y), image_every=10),
        keras.callbacks.TensorBoard(log_dir),   # optional, side by side
    ])
    ```
    """

    def __init__(
        self, log_dir, data=None, image_every=None, histogram_min_features=10, hparams=None
    ):
        super().__init__()
        if not isinstance(log_dir, (str, os.PathLike)) or not os.fspath(log_dir):
            raise ValueError(
                "Received an invalid value for `log_dir`, expected a non-empty "
                f"path. Received: log_dir={log_dir!r}"
            )
        if image_every is not None and not _is_positive_int(image_every):
            raise ValueError(
                "Received an invalid value for `image_every`, expected a "
                f"positive integer or None. Received: image_every={image_every!r}"
            )
        if histogram_min_features is not None and not _is_positive_int(histogram_min_features):
            raise ValueError(
                "Received an invalid value for `histogram_min_features`, expected "
                "a positive integer or None. Received: "
                f"histogram_min_features={histogram_min_features!r}"
            )
        if image_every is not None and data is None:
            raise ValueError(
                "`image_every` needs the data to draw: pass `data=(x, y)`. "
                f"Received: image_every={image_every!r}, data=None"
            )
        self.log_dir = os.fspath(log_dir)
        self.run_dir = os.path.join(self.log_dir, PARAMETERS_RUN)
        self.image_every = image_every
        self.histogram_min_features = histogram_min_features
        self._data = None if data is None else _image_data(data)
        self.hparams = None if hparams is None else _hparams.check_session_hparams(hparams)
        # Every row, for the least-squares gap at the end of a session.
        self._gap_data = None if data is None or hparams is None else _checked_data(data)
        self._writer = None
        self._closer = None
        self._last_epoch = None
        self._tags = None  # (n_features, slope tags, tags a Keras log may not use)

    # ------------------------------------------------------------- callbacks
    def on_train_begin(self, logs=None):
        if not callable(getattr(self.model, "get_parameters", None)):
            raise ValueError(
                "ParameterLogger logs the slope and intercept of a "
                "keras_linreg.LinearRegression and needs its `get_parameters()`. "
                f"Received: model={type(self.model).__name__}"
            )
        n_features = getattr(self.model, "n_features", None)
        if self._data is not None and n_features is not None:
            _check_features(self._data[0], n_features)
        self._last_epoch = None
        self._tags = None
        self._close()  # a file a raising `fit` left open; its epochs are on disk
        if self.hparams is not None:
            trial_id = os.path.basename(os.path.normpath(os.path.abspath(self.log_dir)))
            summary = _hparams.session_start_summary(self.hparams, trial_id)
            self._get_writer().write_summary(0, summary)

    def on_epoch_end(self, epoch, logs=None):
        # What this costs (442 x 10 features, full batch, a quiet machine): the
        # reads of the weights (`get_parameters`) and of the rate, ~0.065 ms;
        # building and writing the epoch's one record, ~0.02 ms. The eager
        # `tf.summary.scalar` per tag, `tf.summary.histogram` and flush it
        # replaces took 5-9 ms (docs/performance.md). The flush stays per epoch:
        # it is one write(2), ~2 us, and keeps every ended epoch safe from a kill.
        step = int(epoch)
        slope, intercept = self.model.get_parameters()
        slope = np.asarray(slope, dtype=np.float64).reshape(-1)
        names, own = self._slope_tags(slope.size)
        learning_rate = _applied_learning_rate(self.model, logs or {})
        tags, values = [], []
        for name, value in (logs or {}).items():
            if name not in own:
                _log_scalars(name, value, tags, values)
        if getattr(self.model, "fit_intercept", True):
            tags.append("intercept")
            values.append(intercept)
        tags.extend(names)
        values.extend(slope)
        if learning_rate is not None:
            tags.append("learning_rate")
            values.append(learning_rate)
        summary = _event_file.scalars(tags, values)
        if self.histogram_min_features is not None and slope.size >= self.histogram_min_features:
            summary.append(_event_file.histogram("slopes", slope))
        if self._image_due(step):
            tag = "fit" if slope.size == 1 else "predicted_vs_actual"
            summary.append(_event_file.image(tag, _draw(self._data, slope, intercept, step)))
        # Everything that can fail runs before the write, and the epoch is one
        # record: it is logged whole or not at all.
        self._get_writer().write(step, summary)
        self._last_epoch = step

    def on_train_end(self, logs=None):
        try:
            if self.hparams is not None:
                self._write_session_end()
        finally:
            self._close()

    # ---------------------------------------------------------------- helpers
    def _write_session_end(self):
        """The session metrics known only when training ends (`hparams.METRICS`)."""
        step = 0 if self._last_epoch is None else self._last_epoch
        metrics = {
            "epochs_run": 0 if self._last_epoch is None else self._last_epoch + 1,
            "diverged": 1.0 if divergence.fit_diverged(self.model) else 0.0,
        }
        if self._gap_data is not None and getattr(self.model, "built", False):
            _check_features(self._gap_data[0], self.model.n_features)
            slope, intercept = self.model.get_parameters()
            metrics["gap_to_least_squares"] = _hparams.least_squares_gap(
                slope,
                intercept,
                self._gap_data,
                fit_intercept=getattr(self.model, "fit_intercept", True),
            )
        self._get_writer().write(step, _event_file.scalars(list(metrics), list(metrics.values())))

    def _slope_tags(self, n_features):
        """The slope tags and the tags no Keras log is written under, once per fit."""
        if self._tags is None or self._tags[0] != n_features:
            names = _slope_tags(n_features, getattr(self.model, "feature_names", None))
            own = {*_OWN_TAGS, *names}
            if self.hparams is not None:
                own.update(_hparams.SESSION_END_TAGS)
            self._tags = (n_features, names, frozenset(own))
        return self._tags[1], self._tags[2]

    def _get_writer(self):
        # Created lazily: a fit that never finishes an epoch leaves no file.
        if self._writer is None:
            self._writer = _event_file.EventFile(self.run_dir)
            # Closes the file if this logger is collected (or Python exits)
            # while it is open, e.g. after a `fit` that raised.
            self._closer = weakref.finalize(self, self._writer.close)
        return self._writer

    def _close(self):
        if self._writer is not None:
            self._closer()  # closes the file once, and detaches
            self._writer = self._closer = None

    def _image_due(self, step):
        if self.image_every is None:
            return False
        last = self.params.get("epochs") if self.params else None
        return step % self.image_every == 0 or (last is not None and step == last - 1)


def new_run_dir(parent="logs", prefix="run") -> str:
    """Creates and returns a fresh directory `parent/<prefix>-<YYYYmmdd-HHMMSS>`.

    The name sorts in creation order. When that directory already exists
    (two runs started in the same second) a counter is appended: `...-2`,
    `...-3`. The directory is created atomically (`os.mkdir`), so two
    processes never receive the same one.

    Args:
        parent: Directory the run goes into; created if missing.
        prefix: Name before the timestamp; `""` for the bare timestamp.

    Returns:
        The path of the new, empty directory.
    """
    if not isinstance(prefix, str) or os.sep in prefix or (os.altsep and os.altsep in prefix):
        raise ValueError(
            "Received an invalid value for `prefix`, expected a string without "
            f"path separators. Received: prefix={prefix!r}"
        )
    parent = os.fspath(parent)
    os.makedirs(parent, exist_ok=True)
    base = f"{prefix}-{_timestamp()}" if prefix else _timestamp()
    for counter in range(1, 10_000):
        path = os.path.join(parent, base if counter == 1 else f"{base}-{counter}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"Could not create a fresh run directory {base!r} in {parent!r}.")


def _timestamp():
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def _is_positive_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0


def _slope_tags(n_features, feature_names):
    if n_features == 1:
        return ["slope"]
    if feature_names is not None and len(feature_names) == n_features:
        return [f"slope/{name}" for name in feature_names]
    return [f"slope/{i}" for i in range(n_features)]


def _applied_learning_rate(model, logs):
    """The learning rate applied at the epoch's last step, or None."""
    optimizer = getattr(model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "learning_rate"):
        return None
    # The public `learning_rate` evaluates a schedule at `iterations`, the *next*
    # step's rate; Keras keeps the schedule itself privately (see _keras_internals).
    schedule = _keras_internals.learning_rate_schedule(optimizer)
    if schedule is not None:
        last_step = max(int(_to_host(optimizer.iterations)) - 1, 0)
        return float(_to_host(schedule(last_step)))
    # `LearningRateScheduler` and `ReduceLROnPlateau` put the rate they saw
    # during the epoch in `logs` when their `on_epoch_end` runs before ours;
    # ReduceLROnPlateau may already have lowered the variable for the next one.
    if "learning_rate" in logs:
        return float(logs["learning_rate"])
    return float(_to_host(optimizer.learning_rate))


def _to_host(value):
    """A variable's or tensor's value as NumPy: `.numpy()`, one read (`np.array` of a
    variable takes a slower path through `__array__`, ~2x here)."""
    return value.numpy() if hasattr(value, "numpy") else keras.ops.convert_to_numpy(value)


def _log_scalars(name, value, tags, values):
    """Appends one Keras log as a scalar (or one scalar per element) to `tags`, `values`."""
    if isinstance(value, float):  # what Keras' logs hold, almost always
        tags.append(name)
        values.append(value)
        return
    try:
        array = np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)
    except (TypeError, ValueError):
        return  # not a number: nothing to plot
    if array.size == 1:
        tags.append(name)
        values.append(float(array.reshape(())))
    else:
        tags.extend(f"{name}/{i}" for i in range(array.size))
        values.extend(array.reshape(-1))


def _image_data(data):
    """Validates `data=(x, y)` and keeps at most `_MAX_IMAGE_POINTS` rows."""
    x, y = _checked_data(data)
    if len(x) > _MAX_IMAGE_POINTS:
        rows = np.linspace(0, len(x) - 1, _MAX_IMAGE_POINTS).round().astype(int)
        x, y = x[rows], y[rows]
    return x, y


def _checked_data(data):
    """`data=(x, y)` as float64 `(n, n_features)` and `(n,)` arrays, validated."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            "Received an invalid value for `data`, expected a tuple `(x, y)`. "
            f"Received: data of type {type(data).__name__}"
        )
    x = np.asarray(data[0], dtype=np.float64)
    y = np.asarray(data[1], dtype=np.float64)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if x.ndim not in (1, 2) or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise ValueError(
            "Received an invalid value for `data`, expected `(x, y)` with x of "
            "shape (n,) or (n, n_features) and y of shape (n,), n > 0. "
            f"Received: x.shape={x.shape}, y.shape={y.shape}"
        )
    if x.ndim == 1:
        x = x[:, np.newaxis]
    return x, y


def _check_features(x, n_features):
    if x.shape[1] != n_features:
        raise ValueError(
            f"Received `data` with {x.shape[1]} features, but the model has "
            f"{n_features}. Received: x.shape={x.shape}"
        )


def _draw(data, slope, intercept, step):
    """Renders the fit at `step` as an RGBA uint8 array `(height, width, 4)`."""
    # The Agg canvas directly: no pyplot, so the user's backend is untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x, y = data
    _check_features(x, slope.size)
    with np.errstate(invalid="ignore", over="ignore"):
        # A diverged fit (inf/nan parameters) is drawn as missing points.
        y_pred = x @ slope + intercept
    figure = Figure(figsize=(6, 4), dpi=80)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    draw_fit(axes, x, y, y_pred)
    if slope.size == 1:
        axes.set_title(f"epoch {step}: y = {slope[0]:.4g} x + {intercept:.4g}")
    else:
        axes.set_title(f"epoch {step}: predicted vs actual")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba(), dtype=np.uint8).copy()
