"""`keras-linreg train` on data over `--memory-budget`: fit on the files, batch by batch.

The model trains on the `keras_linreg.data.dataset_from_files` dataset (Keras' loop,
a streaming standardization pass first); the least-squares optimum the report and
`--tol` compare with comes from one streaming pass of `keras_linreg.least_squares`,
`--learning-rate auto` from one pass summing the Hessian over the batches (`fit`
does it), R² and the MSE from one more pass under the final parameters, and `--report`'s
statistics from `keras_linreg.ols` in one more. Memory stays a few batches
whatever the files' size. Options that need the rows in memory are refused.
"""

from __future__ import annotations

import contextlib
import os
import time

import keras  # imported once TensorFlow has started (commands.train)
import numpy as np

from keras_linreg_cli.files import STREAM_BATCH_SIZE, file_error, format_bytes
from keras_linreg_cli.progress import (
    ReadProgress,
    RowsProgbar,
    format_rate,
    format_seconds,
    on_terminal,
)


def train_streamed(args, data, outputs, input_error, warn_about_gap) -> int:
    """Trains on `data` (a streamed `files.TrainingData`); returns the exit status.

    Args:
        args: `train`'s parsed arguments.
        data: The files, their features and dataset.
        outputs: The run's `commands._Outputs` (all or none).
        input_error: The exception class for bad input (exit 2).
        warn_about_gap: `commands._warn_about_gap(args, gap)`.
    """
    import keras_linreg
    from keras_linreg.callbacks import new_run_dir
    from keras_linreg.data import DataFileError
    from keras_linreg_cli.report import TrainingReport, format_report

    _refuse_in_memory_options(args, data, input_error)
    keras.utils.set_random_seed(args.seed)
    batch_size = args.batch_size or STREAM_BATCH_SIZE
    if not args.quiet:
        print(
            f"Streaming from {len(data.files)} file(s): the data (at least "
            f"{format_bytes(data.size)} as float32) is over --memory-budget "
            f"{format_bytes(args.memory_budget)}; batches of {batch_size} rows."
        )
    from keras_linreg.inputs import FILE_READER_ATTRIBUTE

    reader = getattr(data.dataset, FILE_READER_ATTRIBUTE)
    terminal = on_terminal(args)

    def reading(label):
        """On a terminal, a live line for one pass over the files (progress.py)."""
        if not terminal:
            return contextlib.nullcontext()
        return ReadProgress(label, lambda: reader.rows_read, lambda: reader.passes)

    fit_intercept = not args.no_intercept
    reference = None
    if args.tol > 0:
        with reading("Least squares: read"):
            reference = _Reference(data, fit_intercept)
    kwargs = {"standardize": True} if args.standardize else {}
    model = keras_linreg.LinearRegression(
        n_features=len(data.features),
        learning_rate=args.learning_rate,
        feature_names=data.features,
        fit_intercept=fit_intercept,
        **kwargs,
    )
    model.compile()
    callbacks, log_dir = [], None
    if not args.no_log:
        log_dir = args.log_dir or new_run_dir(os.path.join("logs", "train"))
        callbacks.append(keras_linreg.ParameterLogger(log_dir))
    if reference is not None:
        callbacks.append(_GapStopping(reference, args.tol))
    verbose = 0 if args.quiet else 1 if _isatty() else 2
    # The passes `fit` makes before its first epoch (statistics, learning rate).
    before = reading("Before training: read")
    if verbose == 2:  # piped: one line per epoch with the rows/s, instead of Keras'
        callbacks.append(_EpochLines(reader, args.epochs))
        verbose = 0
    elif verbose == 1:  # a terminal: Keras' bar, with the rows and rows/s
        callbacks.append(RowsProgbar(reader, batch_size, on_train_begin=getattr(
            before, "stop", None)))  # fmt: skip
    try:
        with before:
            history = model.fit(data.dataset, epochs=args.epochs, callbacks=callbacks,
                                verbose=verbose)  # fmt: skip
    except DataFileError as error:
        raise file_error(error) from None
    except keras_linreg.DivergenceError as error:
        raise input_error(str(error)) from None
    except ValueError as error:
        raise input_error(" ".join(str(error).split())) from None
    if reference is None:
        with reading("Least squares: read"):
            reference = _Reference(data, fit_intercept)
    slope, intercept = model.get_parameters()
    logs = history.history
    with reading("Loss and R²: read"):
        r2, mse = reference.r2_and_mse(data, slope, intercept)
    statistics, statistics_error = None, None
    if args.report:  # one more pass: least squares' standard errors, tests, intervals
        from keras_linreg import ols

        try:
            with reading("Report statistics: read"):
                statistics = ols(_Batches(data), fit_intercept=fit_intercept,
                                 feature_names=list(data.features))  # fmt: skip
        except ValueError as error:
            statistics_error = " ".join(str(error).split())
    report = TrainingReport(
        feature_names=list(data.features),
        slope=slope,
        intercept=intercept,
        loss=mse,
        val_loss=None,
        r2=r2,
        optimum_slope=reference.optimum[:-1],
        optimum_intercept=float(reference.optimum[-1]),
        epochs=len(logs["loss"]),
        fit_intercept=fit_intercept,
        statistics=statistics,
        statistics_error=statistics_error,
    )
    print(format_report(report))
    warn_about_gap(args, reference.gap(model))
    if log_dir is not None:
        print(f"TensorBoard logs: {log_dir}")
    if args.report:
        from keras_linreg_cli.report import write_report

        outputs.write("the report", args.report, lambda: write_report(args.report, report))
    if args.export:
        outputs.write("the SavedModel", args.export,
                      lambda: keras_linreg.export_saved_model(model, args.export))  # fmt: skip
    if args.save:
        outputs.write("the Keras model", args.save,
                      lambda: keras_linreg.save_model(model, args.save))  # fmt: skip
    for label, path in (("Report", args.report), ("SavedModel", args.export),
                        ("Keras model", args.save)):  # fmt: skip
        if path:
            print(f"{label}: {path}")
    return 0


def _isatty():
    import sys

    return sys.stdout.isatty()


def _refuse_in_memory_options(args, data, input_error):
    """Options that need the rows in memory, refused with the way out."""
    need = None
    if len(args.learning_rates) > 1:
        need = "a --learning-rate sweep (several rates)"
    elif args.validation_split:
        need = "--validation-split (give validation files to a script instead)"
    elif args.plot:
        need = "--plot"
    elif args.l1 or args.l2:
        need = "--l1/--l2 (their optimum is computed in memory)"
    if need is not None:
        raise input_error(
            f"the data is over --memory-budget {format_bytes(args.memory_budget)} (at "
            f"least {format_bytes(data.size)} as float32), so it streams from the files, "
            f"which rules out {need} or raise --memory-budget"
        )


class _Reference:
    """The least-squares optimum and the scales of `relative_gap`, in one pass.

    `gap = max_i |θ_i − θ*_i| / (|θ*_i| + scale_i)` with `scale = s_y / s_j` for
    slope `j` and `s_y` for the intercept (`keras_linreg.convergence.relative_gap`'s
    definition), `s` the standard deviations of the training rows.
    """

    def __init__(self, data, fit_intercept):
        import keras_linreg

        moments = _Moments()

        def batches():
            for x, y in data.batches():
                moments.add(x, y)
                yield x, y

        slope, intercept = keras_linreg.least_squares(batches(), fit_intercept=fit_intercept)
        if moments.n < 2:
            from keras_linreg_cli.files import DataError

            where = data.files[0] if len(data.files) == 1 else ", ".join(data.files)
            raise DataError(f"{where}: expected at least 2 data rows, received {moments.n}")
        self.optimum = np.append(slope, intercept)
        s_x, s_y = moments.std()
        s_y = s_y or 1.0
        s_x[s_x == 0] = 1.0
        self._scale = np.abs(self.optimum) + np.append(s_y / s_x, s_y)
        self._moments = moments
        self._fit_intercept = fit_intercept

    def gap(self, model) -> float:
        slope, intercept = model.get_parameters()
        errors = np.abs(np.append(slope, intercept) - self.optimum)
        return float(np.max(errors / self._scale))

    def r2_and_mse(self, data, slope, intercept) -> tuple[float, float]:
        """`1 − SSR / TSS` and `SSR / n` of the final parameters, one more pass (TSS
        uncentered without an intercept)."""
        ssr = 0.0
        for x, y in data.batches():
            residual = x.astype(np.float64) @ slope + intercept - y.astype(np.float64)
            ssr += float(residual @ residual)
        moments = self._moments
        total = moments.tss() if self._fit_intercept else moments.sum_y2
        r2 = float(1 - ssr / total) if total > 0 else float("nan")
        return r2, ssr / moments.n


class _Moments:
    """Means and variances of x's columns and y, merged over batches (Chan et al.)."""

    def __init__(self):
        self.n = 0
        self.mean = None  # (k + 1,): x's columns, then y
        self.m2 = None
        self.sum_y2 = 0.0

    def add(self, x, y):
        values = np.column_stack([x, y]).astype(np.float64)
        m = len(values)
        if not m:
            return
        mean = values.mean(axis=0)
        m2 = ((values - mean) ** 2).sum(axis=0)
        self.sum_y2 += float(values[:, -1] @ values[:, -1])
        if self.mean is None:
            self.n, self.mean, self.m2 = m, mean, m2
            return
        total = self.n + m
        delta = mean - self.mean
        self.mean = self.mean + delta * (m / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.n * m / total)
        self.n = total

    def std(self):
        deviation = np.sqrt(self.m2 / self.n)
        return deviation[:-1].copy(), float(deviation[-1])

    def tss(self):
        return float(self.m2[-1])


class _Batches:
    """The files' `(x, y)` NumPy batches, iterable again and again (for `ols`)."""

    def __init__(self, data):
        self._data = data

    def __iter__(self):
        return iter(self._data.batches())


class _EpochLines(keras.callbacks.Callback):
    """One line per epoch on a pipe: its rows, time, rows/s and logs.

    `Epoch 3/10 - 2000000 rows in 1.25 s (1.6M rows/s) - loss: 0.0123`. The rows
    are those the files' reader yielded during the epoch (`rows_read`); on a
    terminal Keras' own progress bar is kept instead.
    """

    def __init__(self, reader, epochs):
        super().__init__()
        self.reader, self.epochs = reader, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.start, self.rows = time.perf_counter(), self.reader.rows_read

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.start
        rows = self.reader.rows_read - self.rows
        metrics = "".join(f" - {name}: {float(value):.4g}" for name, value in (logs or {}).items())
        print(f"Epoch {epoch + 1}/{self.epochs} - {rows} rows in {format_seconds(seconds)} s "
              f"({format_rate(rows / max(seconds, 1e-9))}){metrics}",
              flush=True)  # fmt: skip


class _GapStopping(keras.callbacks.Callback):
    """Stops `fit` at the first epoch whose relative gap is within `tol`."""

    def __init__(self, reference, tol):
        super().__init__()
        self.reference, self.tol = reference, tol

    def on_epoch_end(self, epoch, logs=None):
        if self.reference.gap(self.model) <= self.tol:
            self.model.stop_training = True
