"""A training process killed with SIGKILL and started again loses nothing.

`tests/_training_child.py` trains with `keras.callbacks.BackupAndRestore`, a
learning-rate schedule of the step counter and 4 mini-batches per epoch. It is
killed (SIGKILL, a real signal to a real process) after the backup of epoch 3
was written, then started again with the same command. The two runs together
must print each epoch exactly once, with the losses, learning rates, step
counters and weights of an uninterrupted run, and end with its weights. The
`keras_linreg.ParameterLogger` series the two runs wrote to TensorBoard event
files, read back with TensorBoard's own reader, must hold every epoch exactly
once (no gap, no duplicate) with the same values, the learning rate being the
schedule at each epoch's last step.
"""

import glob
import importlib.util
import json
import os
import pathlib
import queue
import signal
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest
from _processes import stdout_lines

CHILD = pathlib.Path(__file__).with_name("_training_child.py")
TEST_CALLBACKS = pathlib.Path(__file__).with_name("test_callbacks.py")
KILL_AFTER_EPOCH = 3
TIMEOUT = 180  # seconds for one child run (TensorFlow import included)


def _load(path):
    """Imports a sibling file by path (tests/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"_fault_tolerance_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child_module():
    return _load(CHILD)


def _read_run(path):
    """`{tag: (plugin, [(step, value), ...])}` of a run dir or one event file.

    `read_run` of tests/test_callbacks.py: TensorBoard's `EventAccumulator`,
    every tensor event kept (`size_guidance` 0), values via `tf.make_ndarray`.
    """
    return _load(TEST_CALLBACKS).read_run(str(path))


def _reference_run():
    """The same training, uninterrupted, in this process."""
    child = _child_module()
    records = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            slope, intercept = self.model.get_parameters()
            records.append(
                {
                    "epoch": epoch,
                    "loss": float(logs["loss"]),
                    "iterations": int(self.model.optimizer.iterations.numpy()),
                    "learning_rate": self.model.learning_rate,
                    "weights": [*map(float, slope), intercept],
                }
            )

    x, y = child.data()
    model = child.build_model()
    model.fit(
        x, y, batch_size=child.BATCH_SIZE, epochs=child.EPOCHS, shuffle=False, verbose=0,
        callbacks=[Record()],
    )
    return child, records, np.append(*model.get_parameters())


def _start(backup_dir, log_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    command = [
        sys.executable, str(CHILD),
        "--backup-dir", str(backup_dir),
        "--log-dir", str(log_dir),
        "--pause-after-epoch", str(KILL_AFTER_EPOCH),
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _records(lines):
    return [json.loads(line) for line in lines if line.startswith("{\"epoch\"")]


@pytest.fixture
def processes():
    started = []
    yield started
    for process in started:  # always clean up, whatever happened
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        for stream in (process.stdout, process.stderr):
            if stream:
                stream.close()


@pytest.mark.slow
def test_sigkilled_training_resumes_with_nothing_lost_or_repeated(tmp_path, processes):
    backup_dir = tmp_path / "backup"
    log_dir = tmp_path / "logs"

    # 1. Start, wait for the end of epoch KILL_AFTER_EPOCH, SIGKILL.
    first = _start(backup_dir, log_dir)
    processes.append(first)
    lines, seen = stdout_lines(first), []
    while True:
        try:
            line = lines.get(timeout=TIMEOUT)
        except queue.Empty:
            pytest.fail(f"the child printed nothing for {TIMEOUT}s; output: {seen}")
        if line is None:
            pytest.fail(f"the child ended before being killed: {seen}\n{first.stderr.read()}")
        seen.append(line)
        if line == f"epoch {KILL_AFTER_EPOCH} done":
            break
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    killed_records = _records(seen)
    # The backup of the last finished epoch is on disk, nothing later.
    metadata = json.loads((backup_dir / "training_metadata.json").read_text())
    assert metadata["epoch"] == KILL_AFTER_EPOCH + 1
    # Keras saves the optimizer's variables with the weights: the step counter
    # (what the schedule reads) is in the backup.
    with h5py.File(backup_dir / "latest.weights.h5", "r") as backup:
        saved_step = int(backup["optimizer/vars/0"][()])
    assert saved_step == (KILL_AFTER_EPOCH + 1) * (100 // 25)

    # 2. The same command again: it resumes and finishes.
    second = _start(backup_dir, log_dir)
    processes.append(second)
    out, err = second.communicate(timeout=TIMEOUT)
    assert second.returncode == 0, err
    resumed_records = _records(out.splitlines())
    final = json.loads(out.splitlines()[-1])["done"]

    # 3. Compare with an uninterrupted run.
    child, reference, reference_final = _reference_run()
    steps_per_epoch = child.N_ROWS // child.BATCH_SIZE
    epochs = [r["epoch"] for r in killed_records + resumed_records]
    assert epochs == list(range(child.EPOCHS)), "each epoch exactly once, in order"
    assert [r["epoch"] for r in killed_records] == list(range(KILL_AFTER_EPOCH + 1))
    assert {r["pid"] for r in killed_records}.isdisjoint(r["pid"] for r in resumed_records)
    schedule = child.schedule()
    for got, want in zip(killed_records + resumed_records, reference, strict=True):
        assert got["iterations"] == want["iterations"] == (got["epoch"] + 1) * steps_per_epoch
        # The schedule's step was restored: the rate is the schedule at the step counter.
        assert got["learning_rate"] == pytest.approx(want["learning_rate"], rel=1e-7)
        assert got["learning_rate"] == pytest.approx(
            float(schedule(got["iterations"])), rel=1e-6
        )
        assert got["loss"] == pytest.approx(want["loss"], rel=1e-6)
        np.testing.assert_allclose(got["weights"], want["weights"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(final, reference_final, rtol=0, atol=1e-6)
    # A finished run removes its backup, so the next run starts afresh.
    assert not backup_dir.exists()

    # 4. The TensorBoard series: each epoch exactly once, the values of the
    # uninterrupted run. Every process writes an event file of its own.
    run_dir = log_dir / "parameters"
    files = sorted(glob.glob(str(run_dir / "events.out.tfevents.*")))
    assert len(files) == 2, files
    per_process = [
        {step for _, events in _read_run(path).values() for step, _ in events}
        for path in files
    ]
    killed_epochs = set(range(KILL_AFTER_EPOCH + 1))
    assert per_process in (
        [killed_epochs, set(range(KILL_AFTER_EPOCH + 1, child.EPOCHS))],
        [set(range(KILL_AFTER_EPOCH + 1, child.EPOCHS)), killed_epochs],
    ), "the killed run logged epochs 0..k, the restarted one the rest"
    series = _read_run(run_dir)  # both files, as TensorBoard shows the run
    assert set(series) == {"loss", "intercept", "slope/0", "slope/1", "learning_rate"}
    expected = {
        "loss": [r["loss"] for r in reference],
        "slope/0": [r["weights"][0] for r in reference],
        "slope/1": [r["weights"][1] for r in reference],
        "intercept": [r["weights"][2] for r in reference],
        # The rate applied at the epoch's last step, iterations - 1.
        "learning_rate": [float(schedule(r["iterations"] - 1)) for r in reference],
    }
    for tag, (plugin, events) in series.items():
        assert plugin == "scalars", tag
        steps = [step for step, _ in events]
        assert sorted(steps) == list(range(child.EPOCHS)), f"{tag}: each epoch once, {steps}"
        logged = dict(events)  # stored as float32
        got = [float(logged[epoch]) for epoch in range(child.EPOCHS)]
        np.testing.assert_allclose(got, expected[tag], rtol=1e-6, atol=1e-6, err_msg=tag)
    # The rates differ from epoch to epoch: a restored step counter is visible.
    assert len(set(expected["learning_rate"])) == child.EPOCHS
