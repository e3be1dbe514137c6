"""`keras-linreg train` shows rows and rows/s on a real terminal (issue 14, part 4).

The command runs as a child process whose stdout and stderr are the slave side
of a pseudo-terminal (`pty.openpty()`), as in a shell: Keras' progress bar then
redraws in place, and the streamed epochs' bars end with `- rows: N - rows/s: R`;
the passes outside the epochs, and the in-memory read, end with a line `... read
N rows in S s (R rows/s)`. The parent reads the master side until the child
exits (bounded), strips the terminal codes and checks the row counts exactly and
the rates loosely (positive, finite, consistent with the rows and the seconds
shown, at least the rows over the whole run's wall time): no timing assertion.
Piped, the same command prints what it printed before (no bar, no read lines).
"""

from __future__ import annotations

import math
import os
import pty
import re
import select
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow
TIMEOUT = 240  # seconds per child (about 8 s on an idle 2-core machine)
ROWS, BATCH = 3000, 500
_SCALE = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}
_RATE = r"([\d.]+)([kMG]?)"


def _env():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=root + (os.pathsep + path if path else ""),
                TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")  # fmt: skip


def _run_on_a_terminal(args, cwd):
    """`python -m keras_linreg_cli ARGS` with stdout and stderr on a pty: (status,
    everything it wrote, wall seconds)."""
    master, slave = pty.openpty()
    start = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "keras_linreg_cli", *map(str, args)],
        stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd, env=_env(),
    )  # fmt: skip
    os.close(slave)
    chunks, deadline = [], time.monotonic() + TIMEOUT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side (exited)
                break
            if not chunk:
                break
            chunks.append(chunk)
        status = child.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
    return status, b"".join(chunks).decode("utf-8", "replace"), time.perf_counter() - start


def _segments(text):
    """The terminal's successive line states: ANSI codes and backspaces removed,
    split at carriage returns and newlines."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).replace("\b", "")
    return [part.strip() for part in re.split(r"[\r\n]+", text) if part.strip()]


def _rate(number, suffix):
    return float(number) * _SCALE[suffix]


def _check_read_line(segments, label, rows, wall, passes=None):
    """The final line of a read: `LABEL N rows[ (k passes)] in S s (R rows/s)`."""
    counted = rf"{rows} rows" + (rf" \({passes} passes\)" if passes else "")
    pattern = rf"{re.escape(label)} {counted} in ([\d.]+) s \({_RATE} rows/s\)"
    found = [re.fullmatch(pattern, segment) for segment in segments]
    found = [match for match in found if match]
    assert len(found) == 1, (label, segments)
    seconds, rate = float(found[0][1]), _rate(found[0][2], found[0][3])
    assert math.isfinite(rate) and rate > 0
    assert rate == pytest.approx(rows / seconds, rel=0.02)  # both shown to 3 digits
    assert rate >= rows / wall  # the read took less than the whole run


def _write_parquet(directory):
    rng = np.random.default_rng(3)
    paths = []
    for part, rows in enumerate((ROWS // 2, ROWS - ROWS // 2)):
        x = rng.normal(size=(rows, 2))
        y = x @ [2.0, -1.0] + 0.5 + rng.normal(0, 0.1, rows)
        table = pa.table({"a": x[:, 0], "b": x[:, 1], "y": y})
        path = directory / f"part-{part}.parquet"
        pq.write_table(table, path, row_group_size=BATCH)
        paths.append(path.name)
    return paths


_STREAMED = ("train", "part-*.parquet", "--target", "y", "--memory-budget", 0, "--epochs", 2,
             "--batch-size", BATCH, "--tol", 0, "--no-log")  # fmt: skip


def test_streamed_epochs_show_rows_and_rows_per_second_on_a_terminal(tmp_path):
    _write_parquet(tmp_path)
    status, text, wall = _run_on_a_terminal(_STREAMED, tmp_path)
    assert status == 0, text
    assert "Traceback" not in text
    segments = _segments(text)
    bar = re.compile(rf"(\d+)/(\d+) ━+ .* - loss: \S+ - rows: (\d+) - rows/s: {_RATE}")
    epochs = [i for i, segment in enumerate(segments) if re.fullmatch(r"Epoch \d/2", segment)]
    assert [segments[i] for i in epochs] == ["Epoch 1/2", "Epoch 2/2"]
    steps = ROWS // BATCH
    for begin, end in zip(epochs, [*epochs[1:], len(segments)], strict=True):
        bars = [bar.fullmatch(segment) for segment in segments[begin + 1 : end]]
        bars = [match for match in bars if match]
        assert bars, segments[begin:end]
        for match in bars:
            step, target, rows = int(match[1]), int(match[2]), int(match[3])
            assert target == steps
            assert rows == step * BATCH  # the rows trained on so far, exactly
            rate = _rate(match[4], match[5])
            assert math.isfinite(rate) and rate > 0
        last = bars[-1]
        assert (int(last[1]), int(last[3])) == (steps, ROWS)  # the epoch: every row
        assert _rate(last[4], last[5]) >= ROWS / wall
    # The passes outside the epochs: least squares; statistics and learning rate; R².
    _check_read_line(segments, "Least squares: read", ROWS, wall)
    _check_read_line(segments, "Before training: read", 2 * ROWS, wall, passes=2)
    _check_read_line(segments, "Loss and R²: read", ROWS, wall)
    assert re.search(r"^epochs 2 +MSE \S+ +R² \S+$", text.replace("\r", ""), re.M)


def test_the_in_memory_read_shows_rows_per_second_on_a_terminal(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(ROWS, 2))
    y = x @ [1.0, 3.0] - 2.0 + rng.normal(0, 0.1, ROWS)
    pa_csv.write_csv(pa.table({"a": x[:, 0], "b": x[:, 1], "y": y}), tmp_path / "data.csv")
    status, text, wall = _run_on_a_terminal(
        ("train", "data.csv", "--target", "y", "--epochs", 2, "--no-log"), tmp_path
    )
    assert status == 0, text
    assert "Traceback" not in text
    segments = _segments(text)
    _check_read_line(segments, "Read", ROWS, wall)
    assert not any("rows/s:" in segment for segment in segments)  # in memory: Keras' own bar
    assert any(re.fullmatch(r"1/1 ━+ .* - loss: \S+.*", segment) for segment in segments)


def test_piped_output_has_no_bar_and_no_read_lines(tmp_path):
    _write_parquet(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "keras_linreg_cli", *map(str, _STREAMED)],
        capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    out = done.stdout
    assert "\r" not in out and "\x1b[" not in out and "\b" not in out
    assert " read " not in out and "rows: " not in out
    lines = [line for line in out.splitlines() if line.startswith("Epoch ")]
    for number, line in enumerate(lines, 1):
        match = re.fullmatch(
            rf"Epoch {number}/2 - (\d+) rows in [\d.]+ s \({_RATE} rows/s\) - loss: \S+", line
        )
        assert match and int(match[1]) == ROWS, line
    assert len(lines) == 2
