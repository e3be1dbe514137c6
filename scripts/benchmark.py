"""Benchmark: `LinearRegression.fit` against stock Keras fit, the in-graph floor and scikit-learn.

Run with the project's venv (scikit-learn comes with the `bench` extra):

    .venv/bin/python -m pip install -e ".[bench]"
    .venv/bin/python scripts/benchmark.py                # about 3-5 minutes
    .venv/bin/python scripts/benchmark.py --sizes 1e5 --repeats 2 --no-memory   # quick

What it measures, side by side in one process (so ratios hold on a noisy machine):

- Throughput, for N = 1e5, 1e6, 4e6 rows of d = 16 float32 features, batch 65536,
  `shuffle=False` and `shuffle=True`: seconds per epoch and rows/s of
  * `stock`: `keras.Model.fit(model, x, y, ...)` on the same `LinearRegression` (Keras'
    own NumPy input path; this package's fast path bypassed),
  * `keras_linreg`: `model.fit(x, y, ...)`, what users write,
  * `floor`: a `tf.function` loop that slices the batches from tensors in-graph and applies
    the same SGD update (no metrics, no callbacks): the memory-bandwidth floor,
  * `sklearn_sgd`: `SGDRegressor` one pass (`max_iter=1`, plain SGD, one row at a time),
  * `sklearn_lstsq`: `LinearRegression` (closed form), for scale.
  Seconds per epoch are the median over `--repeats` epochs, timed by a callback from
  `on_epoch_begin` to `on_epoch_end`, after one untimed epoch (tracing, warm-up).
- The tutorial workload: a fresh model, `compile()` and `fit(x, y, batch_size=100,
  epochs=100, verbose=0)` on the tutorial's 100 rows, against the tutorial's eager
  GradientTape loop (median of `--repeats` alternating runs).
- The TensorBoard logger (`--sections logger`): seconds per epoch of a 442 × 10 fit (the
  shape of scikit-learn's diabetes data) compiled as `keras-linreg train` compiles it, full
  batch (the command's default) and batch 32, without a logger, with `ParameterLogger`, and
  with a copy of the logger before issue 17 (`tf.summary` ops per tag, flushed per epoch),
  side by side (median epoch of `--repeats` interleaved fits of each).
- Peak memory added by `fit` on N = 4e6 (256 MB of features), one child process per
  measurement: the child makes its data, runs a tiny fit of 4 batches (so TensorFlow's
  one-time allocations, e.g. its runtime and XLA's compiler, are not counted), resets the
  kernel's peak-RSS counter (`/proc/self/clear_refs`), runs `fit` for two epochs and
  reports `VmHWM - VmRSS` from `/proc/self/status`. RSS is what TensorFlow's allocator
  really takes from the OS; `tracemalloc` only sees Python's allocations.

Writes everything as JSON to `--output` (default `docs/benchmark.json`) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402

D = 16
BATCH = 65536
SECTIONS = ("throughput", "fit_calls", "tutorial", "memory", "logger")
LEARNING_RATE = 1e-3


def make_data(n, seed=0):
    """`n` rows of `D` float32 features and targets, made in float32 chunks (no float64
    temporaries, so the memory measurement starts from the data itself)."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, D), np.float32)
    y = np.empty((n,), np.float32)
    slope = rng.normal(size=D).astype(np.float32)
    for start in range(0, n, 1 << 20):
        stop = min(start + (1 << 20), n)
        rng.standard_normal(out=x[start:stop], dtype=np.float32)
        y[start:stop] = x[start:stop] @ slope + 0.5 + rng.standard_normal(
            stop - start, dtype=np.float32
        )
    return x, y


# ------------------------------------------------------------------- throughput
def epoch_seconds(fit, repeats):
    """Median seconds per epoch of `fit(epochs, callbacks)`, first epoch not counted."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    timer = EpochTimer()
    fit(repeats + 1, [timer])
    return statistics.median(timer.seconds[1:])


class Floor:
    """The in-graph floor: batches sliced from tensors, the same SGD update, nothing else.

    With `shuffle=True` the rows of each batch are gathered through a fresh permutation
    (`tf.random.shuffle` of the row indices, outside the timing), so this is the cost of
    the gather itself.
    """

    def __init__(self, x, y, shuffle):
        import tensorflow as tf

        self.tf = tf
        self.shuffle = shuffle
        self.n = n = x.shape[0]
        xt, yt = tf.constant(x), tf.constant(y)
        slope = tf.Variable(tf.zeros([D]))
        intercept = tf.Variable(0.0)

        @tf.function
        def epoch(index):
            steps = (n + BATCH - 1) // BATCH
            loss = tf.constant(0.0)
            for i in tf.range(steps):
                start = i * BATCH
                stop = tf.minimum(start + BATCH, n)
                if shuffle:
                    rows = index[start:stop]
                    xb, yb = tf.gather(xt, rows), tf.gather(yt, rows)
                else:
                    xb, yb = xt[start:stop], yt[start:stop]
                with tf.GradientTape() as tape:
                    residual = tf.linalg.matvec(xb, slope) + intercept - yb
                    loss = tf.reduce_mean(tf.square(residual))
                g_slope, g_intercept = tape.gradient(loss, [slope, intercept])
                slope.assign_sub(LEARNING_RATE * g_slope)
                intercept.assign_sub(LEARNING_RATE * g_intercept)
            return loss

        self.function = epoch
        self.seconds()  # traced and warmed up

    def seconds(self):
        """Seconds of one epoch."""
        tf = self.tf
        index = tf.random.shuffle(tf.range(self.n)) if self.shuffle else tf.range(self.n)
        start = time.perf_counter()
        self.function(index).numpy()
        return time.perf_counter() - start


def floor_seconds(x, y, shuffle, repeats):
    """Median seconds per epoch of the floor (`Floor`), after a warm-up epoch."""
    floor = Floor(x, y, shuffle)
    return statistics.median(floor.seconds() for _ in range(repeats))


def sklearn_seconds(x, y, shuffle):
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LinearRegression, SGDRegressor
    except ImportError:
        return None, None
    sgd = SGDRegressor(
        max_iter=1, tol=None, shuffle=shuffle, learning_rate="constant", eta0=LEARNING_RATE
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # one pass is the point
        start = time.perf_counter()
        sgd.fit(x, y)
        sgd_seconds = time.perf_counter() - start
    start = time.perf_counter()
    LinearRegression().fit(x, y)
    return sgd_seconds, time.perf_counter() - start


def throughput(sizes, repeats):
    import keras

    import keras_linreg

    rows = []
    for n in sizes:
        x, y = make_data(n)
        for shuffle in (False, True):
            keras.utils.set_random_seed(0)
            results = {}

            def stock(epochs, callbacks, x=x, y=y, shuffle=shuffle):
                model = keras_linreg.LinearRegression(n_features=D, learning_rate=LEARNING_RATE)
                model.compile()
                keras.Model.fit(
                    model, x, y, batch_size=BATCH, epochs=epochs, shuffle=shuffle,
                    callbacks=callbacks, verbose=0,
                )

            def ours(epochs, callbacks, x=x, y=y, shuffle=shuffle):
                model = keras_linreg.LinearRegression(n_features=D, learning_rate=LEARNING_RATE)
                model.compile()
                model.fit(
                    x, y, batch_size=BATCH, epochs=epochs, shuffle=shuffle,
                    callbacks=callbacks, verbose=0,
                )

            results["floor"] = floor_seconds(x, y, False, repeats)
            if shuffle:
                results["floor_gather"] = floor_seconds(x, y, True, repeats)
            results["keras_linreg"] = epoch_seconds(ours, repeats)
            results["stock"] = epoch_seconds(stock, repeats)
            results["sklearn_sgd"], results["sklearn_lstsq"] = sklearn_seconds(x, y, shuffle)
            for method, seconds in results.items():
                if seconds is None:
                    continue
                rows.append(
                    {
                        "n": n,
                        "shuffle": shuffle,
                        "method": method,
                        "seconds_per_epoch": seconds,
                        "rows_per_second": n / seconds,
                        "fraction_of_floor": results["floor"] / seconds,
                    }
                )
            print_rows([r for r in rows if r["n"] == n and r["shuffle"] == shuffle])
        del x, y
    return rows


# -------------------------------------------------------------------- fit calls
def fit_calls(sizes, repeats, epochs=3):
    """A user's call, `model.fit(x, y, epochs=3)` on NumPy arrays, against its honest
    reference: 3 floor epochs plus one copy of the arrays (`x.copy(), y.copy()`, the
    cheapest conversion there is). Per N and `shuffle`: the medians over `repeats`
    interleaved runs of the floor epoch, the copy, the whole call on a fresh compiled
    model (construction and `compile()` not timed; traces of an earlier model of the
    same configuration are reused, as in any process that fits more than one model),
    its epochs and the rest of the call, the setup (a callback timer, in separate runs).
    """
    import keras

    import keras_linreg

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    rows = []
    for n in sizes:
        x, y = make_data(n)
        floor = Floor(x, y, False)
        floors, copies, measured = [], [], []
        for shuffle in (False, True):

            def call(callbacks=None, x=x, y=y, shuffle=shuffle):
                model = keras_linreg.LinearRegression(n_features=D, learning_rate=LEARNING_RATE)
                model.compile()
                start = time.perf_counter()
                model.fit(x, y, batch_size=BATCH, epochs=epochs, shuffle=shuffle, verbose=0,
                          callbacks=callbacks)
                return time.perf_counter() - start

            call()  # the first model of this configuration traces
            calls, per_epoch, setups = [], [], []
            for _ in range(repeats):
                floors.append(floor.seconds())
                start = time.perf_counter()
                copy = (x.copy(), y.copy())
                copies.append(time.perf_counter() - start)
                del copy
                calls.append(call())
                timer = EpochTimer()
                seconds = call([timer])
                per_epoch.append(statistics.median(timer.seconds))
                setups.append(seconds - sum(timer.seconds))
            measured.append((shuffle, calls, per_epoch, setups))
        # One reference per N (the same arrays, the unshuffled floor, as in issue 17),
        # from the runs interleaved with both rows'.
        floor_epoch, copy_seconds = statistics.median(floors), statistics.median(copies)
        for shuffle, calls, per_epoch, setups in measured:
            row = {
                "n": n,
                "shuffle": shuffle,
                "epochs": epochs,
                "floor_seconds_per_epoch": floor_epoch,
                "copy_seconds": copy_seconds,
                "fit_seconds": statistics.median(calls),
                "fit_seconds_per_epoch": statistics.median(per_epoch),
                "setup_seconds": statistics.median(setups),
                "runs": repeats,
            }
            row["reference_seconds"] = epochs * floor_epoch + copy_seconds
            row["ratio"] = row["reference_seconds"] / row["fit_seconds"]
            rows.append(row)
            print(
                f"  N={n:>9,d} shuffle={shuffle!s:5s} fit {row['fit_seconds']:.4f} s "
                f"(epoch {row['fit_seconds_per_epoch']:.4f} s, setup {row['setup_seconds']:.4f} s)"
                f" vs {epochs} x floor epoch {floor_epoch:.4f} s + copy "
                f"{copy_seconds:.4f} s = {row['reference_seconds']:.4f} s: "
                f"ratio {row['ratio']:.2f}"
            )
        del x, y, floor
    return rows


# --------------------------------------------------------------------- tutorial
def tutorial(repeats):
    import keras
    import tensorflow as tf

    import keras_linreg
    from keras_linreg_cli.demo import tutorial_data

    x, y = tutorial_data(0)

    def eager_loop():
        slope, intercept = tf.Variable(0.0), tf.Variable(0.0)
        for _ in range(100):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(x * slope + intercept - y))
            g_slope, g_intercept = tape.gradient(loss, [slope, intercept])
            slope.assign_sub(0.01 * g_slope)
            intercept.assign_sub(0.01 * g_intercept)

    def fit():
        model = keras_linreg.LinearRegression(learning_rate=0.01)
        model.compile()
        model.fit(x, y, batch_size=100, epochs=100, verbose=0)

    def stock_fit():
        model = keras_linreg.LinearRegression(learning_rate=0.01)
        model.compile()
        keras.Model.fit(model, x, y, batch_size=100, epochs=100, verbose=0)

    def seconds(function):
        start = time.perf_counter()
        function()
        return time.perf_counter() - start

    seconds(eager_loop)  # warm up TensorFlow itself
    timings = {"eager_loop": [], "keras_linreg": []}
    for _ in range(repeats):
        timings["eager_loop"].append(seconds(eager_loop))
        timings["keras_linreg"].append(seconds(fit))
    result = {name: statistics.median(values) for name, values in timings.items()}
    result["stock"] = seconds(stock_fit)
    result["keras_linreg_over_eager"] = result["keras_linreg"] / result["eager_loop"]
    result["stock_over_eager"] = result["stock"] / result["eager_loop"]
    return result


# ----------------------------------------------------------------------- logger
LOGGER_ROWS, LOGGER_FEATURES = 442, 10  # scikit-learn's diabetes data


def _previous_logger_class():
    """`ParameterLogger` as it was before issue 17, for the before/after: every tag an
    eager `tf.summary.scalar` (the histogram `tf.summary.histogram`) on a
    `tf.summary.create_file_writer`, flushed after every epoch. Scalars, learning rate and
    histogram only (no images, no hparams), which is all the benchmark asks of it."""
    import numpy as np
    import tensorflow as tf

    from keras_linreg import callbacks

    class PreviousParameterLogger(callbacks.ParameterLogger):
        def on_epoch_end(self, epoch, logs=None):
            step = int(epoch)
            logs = dict(logs or {})
            slope, intercept = self.model.get_parameters()
            slope = np.asarray(slope, dtype=np.float64).reshape(-1)
            names = callbacks._slope_tags(slope.size, getattr(self.model, "feature_names", None))
            own = {*callbacks._OWN_TAGS, *names}
            learning_rate = callbacks._applied_learning_rate(self.model, logs)
            if self._writer is None:
                self._writer = tf.summary.create_file_writer(self.run_dir)
            with self._writer.as_default():
                for name, value in logs.items():
                    if name not in own:
                        tf.summary.scalar(name, float(value), step=step)
                if getattr(self.model, "fit_intercept", True):
                    tf.summary.scalar("intercept", intercept, step=step)
                for name, value in zip(names, slope, strict=True):
                    tf.summary.scalar(name, value, step=step)
                if learning_rate is not None:
                    tf.summary.scalar("learning_rate", learning_rate, step=step)
                if slope.size >= self.histogram_min_features:
                    tf.summary.histogram("slopes", slope, step=step)
            self._writer.flush()

        def on_train_end(self, logs=None):
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    return PreviousParameterLogger


def logger(repeats, epochs=300):
    """Seconds per epoch with and without a TensorBoard logger, 442 × 10, side by side.

    Per configuration (full batch, unshuffled, as `keras-linreg train` runs in-memory data;
    batch 32, shuffled), `repeats` rounds of one fit per method, interleaved: `none`, the
    current `ParameterLogger` and the previous one. An epoch is timed from one
    `on_epoch_begin` to the next (a timer that runs first), so it includes every callback's
    `on_epoch_end`; the median over all epochs but the first of each fit is reported.
    """
    import tempfile

    import keras

    import keras_linreg

    at_start = machine()  # with the load average before the measurement
    rng = np.random.default_rng(0)
    x = rng.normal(size=(LOGGER_ROWS, LOGGER_FEATURES)).astype(np.float32)
    y = x @ rng.normal(size=LOGGER_FEATURES) + 1.0 + rng.normal(0, 0.1, LOGGER_ROWS)
    y = y.astype(np.float32)
    previous = _previous_logger_class()

    class EpochPeriod(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self._start = [], None

        def on_epoch_begin(self, epoch, logs=None):
            now = time.perf_counter()
            if self._start is not None:
                self.seconds.append(now - self._start)
            self._start = now

        def on_train_end(self, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    loggers = {
        "none": lambda log_dir: [],
        "parameter_logger": lambda log_dir: [keras_linreg.ParameterLogger(log_dir)],
        "previous_parameter_logger": lambda log_dir: [previous(log_dir)],
    }
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for batch in ("full", 32):
            batch_size = LOGGER_ROWS if batch == "full" else batch
            fit_epochs = epochs if batch == "full" else max(epochs // 6, 20)

            def run(method, fit_epochs, batch_size=batch_size, batch=batch):
                keras.utils.set_random_seed(0)
                model = keras_linreg.LinearRegression(
                    n_features=LOGGER_FEATURES, learning_rate=0.01
                )
                model.compile(metrics=[keras.metrics.R2Score()])  # as keras-linreg train
                timer = EpochPeriod()
                log_dir = tempfile.mkdtemp(dir=root)
                model.fit(
                    x, y, batch_size=batch_size, epochs=fit_epochs, shuffle=batch != "full",
                    verbose=0, callbacks=[timer, *loggers[method](log_dir)],
                )  # fmt: skip
                return timer.seconds[1:]

            for method in loggers:
                run(method, 3)  # traces, warm-up
            seconds = {method: [] for method in loggers}
            for _ in range(repeats):
                for method in loggers:
                    seconds[method].extend(run(method, fit_epochs))
            medians = {method: statistics.median(values) for method, values in seconds.items()}
            for method, median in medians.items():
                rows.append(
                    {
                        "n": LOGGER_ROWS,
                        "d": LOGGER_FEATURES,
                        "batch": batch,
                        "method": method,
                        "epochs_per_fit": fit_epochs,
                        "fits": repeats,
                        "seconds_per_epoch": median,
                        "over_none": median / medians["none"],
                    }
                )
                print(
                    f"  batch={batch!s:4s} {method:26s} {median * 1e3:7.3f} ms/epoch "
                    f"({median / medians['none']:.2f} x no logger)"
                )
    return {"machine": at_start, "rows": rows}


# ----------------------------------------------------------------------- memory
_MEMORY_CHILD = r"""
import os, sys, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
os.environ["KERAS_BACKEND"] = "tensorflow"
sys.path.insert(0, sys.argv[1])
import keras, keras_linreg
from benchmark import make_data, D, BATCH, LEARNING_RATE

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

method, n, shuffle = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
x, y = make_data(n)
def fit(x, y, epochs, batch_size):
    model = keras_linreg.LinearRegression(n_features=D, learning_rate=LEARNING_RATE)
    model.compile()
    f = keras.Model.fit if method == "stock" else type(model).fit
    f(model, x, y, batch_size=batch_size, epochs=epochs, shuffle=shuffle, verbose=0)
# TensorFlow's one-time allocations (runtime, tf.data, XLA's compiler), not fit's.
fit(x[:4000], y[:4000], 1, 1000)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM (peak RSS) to the current RSS
before = status("VmRSS")
fit(x, y, 2, BATCH)
print(json.dumps({"before": before, "peak": status("VmHWM"), "data": x.nbytes + y.nbytes}))
"""


def memory(n):
    rows = []
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    for method in ("stock", "keras_linreg"):
        for shuffle in (False, True):
            out = subprocess.run(
                [sys.executable, "-c", _MEMORY_CHILD, here, method, str(n), str(int(shuffle))],
                capture_output=True, text=True, timeout=600, env=env, check=False,
            )
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                continue
            m = json.loads(out.stdout.strip().splitlines()[-1])
            added = m["peak"] - m["before"]
            rows.append(
                {
                    "n": n,
                    "method": method,
                    "shuffle": shuffle,
                    "data_bytes": m["data"],
                    "added_peak_bytes": added,
                    "added_over_data": added / m["data"],
                }
            )
            print(
                f"  memory {method:13s} shuffle={shuffle!s:5s} added peak "
                f"{added / 2**20:8.1f} MiB = {added / m['data']:.2f} x data "
                f"({m['data'] / 2**20:.0f} MiB)"
            )
    return rows


# ------------------------------------------------------------------------ report
def machine():
    import keras
    import tensorflow as tf

    info = {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
    }
    try:
        import sklearn

        info["scikit_learn"] = sklearn.__version__
    except ImportError:
        pass
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in lscpu.splitlines():
            if line.startswith("Model name:"):
                info["cpu"] = line.split(":", 1)[1].strip()
        with open("/proc/meminfo") as f:
            info["ram_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def print_rows(rows):
    for r in rows:
        print(
            f"  N={r['n']:>9,d} shuffle={r['shuffle']!s:5s} {r['method']:13s} "
            f"{r['seconds_per_epoch']:9.4f} s/epoch {r['rows_per_second'] / 1e6:8.2f} M rows/s "
            f"{r['fraction_of_floor']:7.1%} of floor"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=float, default=[1e5, 1e6, 4e6])
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs / runs")
    parser.add_argument("--memory-n", type=float, default=4e6)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=list(SECTIONS),
        help="what to measure; the other sections of an existing --output are kept",
    )
    parser.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(__file__), "..", "docs", "benchmark.json"),
    )
    args = parser.parse_args(argv)
    sections = [s for s in args.sections if not (s == "memory" and args.no_memory)]
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print(
            "note: scikit-learn is missing, its rows are skipped; "
            'install it with: .venv/bin/python -m pip install -e ".[bench]"',
            file=sys.stderr,
        )
    output = os.path.abspath(args.output)
    report = {}
    if set(sections) != set(SECTIONS) and os.path.exists(output):
        with open(output) as f:
            report = json.load(f)
    report.update({"machine": machine(), "d": D, "batch_size": BATCH})
    report["sections_last_run"] = sections
    print("machine:", json.dumps(report["machine"]))
    start = time.perf_counter()
    sizes = [int(s) for s in args.sizes]
    if "throughput" in sections:
        print("throughput (median s/epoch; fraction_of_floor = floor s/epoch / s/epoch):")
        report["throughput"] = throughput(sizes, args.repeats)
    if "fit_calls" in sections:
        print("fit(x, y, epochs=3) calls against 3 floor epochs + one copy (medians):")
        report["fit_calls"] = fit_calls(sizes, args.repeats)
    if "tutorial" in sections:
        print("tutorial workload (fresh model, compile + fit 100 epochs of 100 rows):")
        report["tutorial"] = tutorial(max(args.repeats, 3))
        t = report["tutorial"]
        print(
            f"  eager loop {t['eager_loop']:.3f} s, keras_linreg fit {t['keras_linreg']:.3f} s "
            f"({t['keras_linreg_over_eager']:.2f} x eager), stock fit {t['stock']:.3f} s "
            f"({t['stock_over_eager']:.2f} x eager)"
        )
    if "logger" in sections:
        print(f"TensorBoard logger ({LOGGER_ROWS} x {LOGGER_FEATURES}, median s/epoch):")
        report["logger"] = logger(max(args.repeats, 3))
    if "memory" in sections:
        print(f"peak memory added by fit (N={int(args.memory_n):,d}, child processes):")
        report["memory"] = memory(int(args.memory_n))
    report["seconds_total"] = time.perf_counter() - start
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with open(output, "w") as f:
        json.dump(report, f, indent=2)
    print(f"wrote {output} ({report['seconds_total']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
