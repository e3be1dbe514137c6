"""Rows and rows/s on a terminal while `keras-linreg train` reads files.

`RowsProgbar` is Keras' own progress bar with the epoch's rows so far and their
rate appended (`- rows: 786432 - rows/s: 1.6M`); `ReadProgress` is a live line
for the passes over the files outside the epochs (the in-memory read, the
least-squares, statistics and R² passes), ending as `Read 2000000 rows in 1.2 s
(1.67M rows/s)`. Both only on a terminal: piped output keeps its one line per
epoch (`streamed._EpochLines`). User guide: docs/data.md ("The command line on
files"), docs/cli.md.
"""

from __future__ import annotations

import sys
import threading
import time

import keras  # imported once TensorFlow has started (commands.train)


def format_rate(rows_per_second: float) -> str:
    """`1.6M rows/s`, `850k rows/s`, `12 rows/s` (3 significant digits)."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if rows_per_second >= scale:
            return f"{rows_per_second / scale:.3g}{suffix} rows/s"
    return f"{rows_per_second:.3g} rows/s"


def format_seconds(seconds: float) -> str:
    return f"{seconds:.3g}" if seconds < 100 else f"{seconds:.0f}"


def on_terminal(args) -> bool:
    """Whether `train` shows live progress: stdout is a terminal and not `--quiet`."""
    return not args.quiet and sys.stdout.isatty()


class _Shown(float):
    """A number that Keras' `Progbar` shows as `text`.

    `Progbar.update` keeps each value as given (the logger's metrics are
    stateful, so not averaged), divides it by its count (1) and formats it with
    `:.4f`; this float keeps its text through both. Were Keras to handle values
    otherwise, it would show the plain number instead.
    """

    def __new__(cls, value, text):
        shown = super().__new__(cls, value)
        shown.text = text
        return shown

    def __truediv__(self, other):
        return _Shown(float(self) / other, self.text)

    def __format__(self, spec):
        return self.text


class RowsProgbar(keras.callbacks.ProgbarLogger):
    """Keras' progress bar, with the epoch's rows so far and rows/s after the metrics.

    `31/31 ━━━━━━━━━━━━━━━━━━━━ 2s 52ms/step - loss: 0.0123 - rows: 2000000 -
    rows/s: 1.6M`. Passed in `fit(callbacks=...)`, it replaces Keras' default
    logger (Keras uses the `ProgbarLogger` it finds). The rows are those trained
    on: the reader's rows since the epoch began (`rows_read`, exact at the end),
    at most `batch_size` per step taken (the reader runs a few batches ahead of
    training). Only the progress bar sees the two values: the logs Keras hands to
    other callbacks and `History` are left as they are.
    """

    def __init__(self, reader, batch_size, on_train_begin=None):
        super().__init__()
        self.reader, self.batch_size = reader, batch_size
        self._on_train_begin = on_train_begin
        self._start, self._rows = time.perf_counter(), reader.rows_read

    def on_train_begin(self, logs=None):
        if self._on_train_begin is not None:
            self._on_train_begin()
        super().on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._rows = time.perf_counter(), self.reader.rows_read
        super().on_epoch_begin(epoch, logs)

    def _with_rows(self, logs, steps=None):
        rows = self.reader.rows_read - self._rows
        if steps is not None:
            rows = min(rows, steps * self.batch_size)
        rate = rows / max(time.perf_counter() - self._start, 1e-9)
        return {
            **(logs or {}),
            "rows": _Shown(rows, str(rows)),
            "rows/s": _Shown(rate, format_rate(rate).removesuffix(" rows/s")),
        }

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, self._with_rows(logs, steps=batch + 1))

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, self._with_rows(logs))


class ReadProgress:
    """A live line on stdout while a pass reads, then `{label} N rows in S s (R rows/s)`.

    `rows()` is the rows read so far (a reader's `rows_read`; `watch` sets it
    when the reader exists only later), `passes()` the passes begun (a reader's
    `passes`; shown when more than one). Every `interval` seconds a thread
    rewrites the line (`\\r`) with the rows and rate so far; `stop()` (or leaving
    the `with` block) ends it with the final line, or clears it when no row was
    read or the pass failed (its error then starts on a clean line).
    """

    def __init__(self, label, rows=None, passes=None, interval=0.25, stream=None):
        self.label, self._rows, self.interval = label, rows, interval
        self._passes, self._first_pass = passes, None
        self.stream = stream or sys.stdout
        self._done = threading.Event()
        self._thread = None
        self._width = 0
        self._start = self._first = None

    def watch(self, rows, passes=None):
        self._rows, self._first = rows, rows()
        if passes is not None:
            self._passes, self._first_pass = passes, passes()

    def _read(self):
        if self._rows is None:
            return 0
        if self._first is None:
            self._first = self._rows()
        return self._rows() - self._first

    def __enter__(self):
        self._start = time.perf_counter()
        if self._rows is not None:
            self._first = self._rows()
        if self._passes is not None:
            self._first_pass = self._passes()
        self._thread = threading.Thread(target=self._run, name="read-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind, error, traceback):
        self.stop(show=kind is None)
        return False

    def _count(self, rows):
        """`N rows`, or `N rows (k passes)` when more than one pass read them."""
        passes = 0 if self._passes is None else self._passes() - self._first_pass
        return f"{rows} rows" + (f" ({passes} passes)" if passes > 1 else "")

    def _line(self, text):
        pad = " " * max(self._width - len(text), 0)
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._width = len(text)

    def _run(self):
        while not self._done.wait(self.interval):
            rows = self._read()
            if rows:
                seconds = time.perf_counter() - self._start
                self._line(f"{self.label} {self._count(rows)}, {seconds:.0f} s "
                           f"({format_rate(rows / seconds)})")  # fmt: skip

    def stop(self, show=True):
        """Ends the live line (idempotent): the final line, or (`show=False`: the
        rows were not used, or the pass failed) nothing."""
        if self._thread is None:
            return
        self._done.set()
        self._thread.join()
        self._thread = None
        rows, seconds = self._read(), max(time.perf_counter() - self._start, 1e-9)
        if rows and show:
            self._line(f"{self.label} {self._count(rows)} in {format_seconds(seconds)} s "
                       f"({format_rate(rows / seconds)})")  # fmt: skip
            self.stream.write("\n")
        elif self._width:
            self._line("")
            self.stream.write("\r")
        self.stream.flush()
