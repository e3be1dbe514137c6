"""A training process killed with SIGKILL and started again loses nothing.

`tests/_training_child.py` trains with `keras.callbacks.BackupAndRestore`, a
learning-rate schedule of the step counter and 4 mini-batches per epoch. It is
killed (SIGKILL, a real signal to a real process) after the backup of epoch 3
was written, then started again with the same command. The two runs together
must print each epoch exactly once, with the losses, learning rates, step
counters and weights of an uninterrupted run, and end with its weights.
"""

import importlib.util
import json
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading

import h5py
import keras
import numpy as np
import pytest

CHILD = pathlib.Path(__file__).with_name("_training_child.py")
KILL_AFTER_EPOCH = 3
TIMEOUT = 180  # seconds for one child run (TensorFlow import included)


def _child_module():
    spec = importlib.util.spec_from_file_location("_training_child", CHILD)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def _start(backup_dir):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    command = [
        sys.executable, str(CHILD),
        "--backup-dir", str(backup_dir),
        "--pause-after-epoch", str(KILL_AFTER_EPOCH),
    ]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def _lines(process):
    """A queue of the child's stdout lines (None at EOF), filled by a thread."""
    lines = queue.Queue()

    def pump():
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


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


def test_sigkilled_training_resumes_with_nothing_lost_or_repeated(tmp_path, processes):
    backup_dir = tmp_path / "backup"

    # 1. Start, wait for the end of epoch KILL_AFTER_EPOCH, SIGKILL.
    first = _start(backup_dir)
    processes.append(first)
    lines, seen = _lines(first), []
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
    second = _start(backup_dir)
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
