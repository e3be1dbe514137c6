"""Benchmark: `keras-linreg train` on a CSV file beside a Python script doing the same fit.

Run with the project's venv (writes a ~95 MB CSV to a temporary directory; needs
GNU time at /usr/bin/time):

    .venv/bin/python scripts/benchmark_cli.py              # 2M rows x 5 columns, 3 runs each
    .venv/bin/python scripts/benchmark_cli.py --rows 2e5   # quick

Each run is its own process under `/usr/bin/time -v` (wall time and peak RSS), the
two alternating:

- `cli`: `keras-linreg train FILE --target y --epochs 3 --tol 0 --learning-rate 0.1
  --no-log --quiet` (the whole command: import, read, fit, report);
- `script`: `import keras_linreg`, `pyarrow.csv.read_csv(FILE)`, the columns to
  float32 NumPy, and `LinearRegression(standardize=True, learning_rate=0.1).fit(x, y,
  epochs=3, batch_size=len(x))`, the command's defaults.

Prints the medians and the ratios cli / script (issue 14's targets: <= 1.5 each);
docs/data.md reports a run.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile

import numpy as np

_SCRIPT = """
import sys
import numpy as np
import pyarrow.csv
import keras_linreg
table = pyarrow.csv.read_csv(sys.argv[1])
x = np.column_stack([table.column(n).to_numpy() for n in ("x0", "x1", "x2", "x3")])
x = x.astype(np.float32)
y = table.column("y").to_numpy().astype(np.float32)
model = keras_linreg.LinearRegression(standardize=True, learning_rate=0.1)
model.compile()
model.fit(x, y, epochs=3, batch_size=len(x), shuffle=False, verbose=0)
"""


def write_csv(path, rows):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    y = (x @ np.float32([1.0, -2.0, 0.5, 3.0]) + 1 + rng.normal(0, 0.1, rows)).astype(np.float32)
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    names = ["x0", "x1", "x2", "x3", "y"]
    pa_csv.write_csv(pa.table(dict(zip(names, [*x.T, y], strict=True))), path)


def timed(command, env):
    result = subprocess.run(
        ["/usr/bin/time", "-v", *command], capture_output=True, text=True, env=env
    )
    if result.returncode != 0:
        raise SystemExit(f"{command[:3]} failed:\n{result.stderr[-2000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", result.stderr)
    hours, minutes, seconds = wall.groups()
    elapsed = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)[1])
    return elapsed, rss_kib / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=2e6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "data.csv")
        write_csv(path, int(args.rows))
        print(f"{int(args.rows)} rows x 5 columns, {os.path.getsize(path) / 1e6:.0f} MB CSV")
        commands = {
            "cli": [sys.executable, "-m", "keras_linreg_cli", "train", path, "--target", "y",
                    "--epochs", "3", "--tol", "0", "--learning-rate", "0.1", "--no-log",
                    "--quiet"],  # fmt: skip
            "script": [sys.executable, "-c", _SCRIPT, path],
        }
        runs = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                runs[name].append(timed(command, env))
    medians = {
        name: (statistics.median(w for w, _ in values), statistics.median(r for _, r in values))
        for name, values in runs.items()
    }
    for name, (wall, rss) in medians.items():
        print(f"{name:<7} wall {wall:6.2f} s   peak RSS {rss:7.0f} MiB   runs {runs[name]}")
    (cli_wall, cli_rss), (script_wall, script_rss) = medians["cli"], medians["script"]
    print(f"ratio   wall {cli_wall / script_wall:.2f}x   peak RSS {cli_rss / script_rss:.2f}x")


if __name__ == "__main__":
    main()
