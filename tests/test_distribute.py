"""`LinearRegression` under tf.distribute gives the single-device result.

Each step minimises the global batch's loss

```
loss = sum_r sum_i w_ri * (x_ri · slope + intercept - y_ri) ** 2 / sum_r n_r
```

(`r` runs over replicas, `n_r` is replica `r`'s row count), so splitting a
batch over replicas, however unevenly, must not change the loss, the
gradient or the update. The runs below use 61-row batches: the first splits
31/30 over 2 replicas and 21/20/20 over 3, the last batch has 17 rows
(9/8, 6/6/5) in one run and a single row in the other (replicas with no
rows at all).

Distributed runs need their own processes: logical CPU devices and
`TF_CONFIG` must be set before TensorFlow initialises, and one process cannot
host mirrored groups of 2 and then 3 devices. `tests/distributed_worker.py`
runs one configuration per process and prints JSON; the single-device
reference runs in this process. The multi-worker test starts two real worker
processes on 127.0.0.1 (free ports, `TF_CONFIG`), bounded by a timeout and
always killed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import distributed_worker
import numpy as np
import pytest

WORKER = Path(__file__).with_name("distributed_worker.py")
# Uneven splits everywhere; the second run also has sample weights and a
# 1-row last batch (184 = 3 * 61 + 1).
RUNS = (
    {"rows": 200, "batch_size": 61, "epochs": 3, "sample_weight": False, "evaluate_first": True},
    {"rows": 184, "batch_size": 61, "epochs": 3, "sample_weight": True},
    # An elastic-net penalty: counted once per global step, not per replica.
    {"rows": 184, "batch_size": 61, "epochs": 3, "sample_weight": True, "l1": 0.3, "l2": 0.05},
)
# Shuffled: each worker shuffles its own copy of the data, so the workers need
# the same seed to agree on the global batches (and then match one process).
SHUFFLED_RUN = {"rows": 200, "batch_size": 61, "epochs": 3, "shuffle_seed": 7}
TIMEOUT = 420  # seconds per group of child processes; 30-150 s on a busy 2-core machine
RTOL = 1e-5
# Predictions and the intercept can be close to 0, where a relative tolerance
# alone would demand more than float32 rounding can give.
ATOL = 1e-6


@pytest.fixture(scope="module")
def reference():
    """The single-device runs of RUNS (no strategy), in this process."""
    return [distributed_worker.run_fit(**run) for run in RUNS]


def hand_written_sgd(
    rows, batch_size, epochs, sample_weight, learning_rate=0.02, features=2, l1=0.0, l2=0.0
):
    """Mini-batch SGD in float64 NumPy, the model's maths written out.

    For each batch `b` of `n_b` rows: `r = x_b · slope + intercept - y_b`,
    `loss_b = sum(w_b * r**2) / n_b + l1 Σ|slope| + l2 Σ slope²`,
    `d/d slope = 2 x_bᵀ (w_b r) / n_b + 2 l2 slope`,
    `d/d intercept = 2 sum(w_b r) / n_b`, then the L1 soft-threshold
    `slope = sign(v) max(|v| - lr l1, 0)`; the epoch loss is
    `sum_b(loss_b * n_b) / rows`.

    Returns:
        (per-epoch losses, slope, intercept)
    """
    x, y, w = distributed_worker.make_data(rows, features, sample_weight=sample_weight)
    x, y = x.astype("float64"), y.astype("float64")
    w = np.ones(rows) if w is None else w.astype("float64")
    slope, intercept = np.zeros(features), 0.0
    losses = []
    for _ in range(epochs):
        sse = 0.0
        for start in range(0, rows, batch_size):
            xb, yb, wb = (a[start : start + batch_size] for a in (x, y, w))
            residual = xb @ slope + intercept - yb
            penalty = l1 * np.abs(slope).sum() + l2 * (slope**2).sum()
            sse += float(np.sum(wb * residual**2)) + penalty * len(yb)
            grad = 2 * xb.T @ (wb * residual) / len(yb) + 2 * l2 * slope
            intercept = intercept - learning_rate * 2 * np.sum(wb * residual) / len(yb)
            v = slope - learning_rate * grad
            slope = np.sign(v) * np.maximum(np.abs(v) - learning_rate * l1, 0.0)
        losses.append(sse / rows)
    return losses, slope, intercept


def test_single_device_reference_matches_hand_written_sgd(reference):
    # Anchors the comparisons below: the reference is the right answer.
    for run, result in zip(RUNS, reference, strict=True):
        losses, slope, intercept = hand_written_sgd(
            run["rows"],
            run["batch_size"],
            run["epochs"],
            run["sample_weight"],
            l1=run.get("l1", 0.0),
            l2=run.get("l2", 0.0),
        )
        np.testing.assert_allclose(result["history"]["loss"], losses, rtol=1e-5)
        np.testing.assert_allclose(result["slope"], slope, rtol=1e-5)
        np.testing.assert_allclose(result["intercept"], intercept, rtol=1e-4)
        assert result["iterations"] == run["epochs"] * -(-run["rows"] // run["batch_size"])


def assert_same_run(actual, expected, what):
    """Per-epoch logs, weights, evaluate and predict agree to float32 rounding."""
    assert actual["history"].keys() == expected["history"].keys(), what
    for key, values in expected["history"].items():
        np.testing.assert_allclose(
            actual["history"][key], values, rtol=RTOL, atol=ATOL, err_msg=f"{what}: {key}"
        )
    for key in ("slope", "intercept", "predict"):
        np.testing.assert_allclose(
            actual[key], expected[key], rtol=RTOL, atol=ATOL, err_msg=f"{what}: {key}"
        )
    for evaluation in ("evaluate", "initial_evaluate"):
        assert actual[evaluation].keys() == expected[evaluation].keys(), what
        for key, value in expected[evaluation].items():
            np.testing.assert_allclose(
                actual[evaluation][key], value, rtol=RTOL, err_msg=f"{what}: {evaluation} {key}"
            )
    assert actual["iterations"] == expected["iterations"], what


def child_env(**extra):
    env = dict(os.environ)
    env.pop("TF_CONFIG", None)
    # PYTHONFAULTHANDLER: a child that dies of a signal (TF 2.21 segfaulted once in
    # a tf_Compute thread of a 2-device MirroredStrategy child on a loaded machine,
    # not reproduced in 6 reruns) leaves the Python stacks of its threads in stderr.
    env.update(
        TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow", PYTHONFAULTHANDLER="1", **extra
    )
    return env


def run_children(commands, tmp_path, timeout=TIMEOUT):
    """Runs `(argv, env)` commands concurrently; returns each one's parsed JSON.

    Output goes to files (no pipe can fill up and stall a child). Every child
    is killed if one fails (its peers could wait for it forever) or the
    deadline passes.
    """
    procs = []
    with contextlib.ExitStack() as files:
        try:
            streams = []
            for i, (argv, env) in enumerate(commands):
                out = files.enter_context(open(tmp_path / f"child{i}.out", "w+"))
                err = files.enter_context(open(tmp_path / f"child{i}.err", "w+"))
                streams.append((out, err))
                procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=err))
            deadline = time.monotonic() + timeout
            while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
                if any(p.poll() not in (None, 0) for p in procs):
                    break
                time.sleep(0.2)
            results = []
            for p, (out, err) in zip(procs, streams, strict=True):
                out.seek(0)
                err.seek(0)
                if p.poll() != 0:
                    status = "timed out" if p.poll() is None else f"exited with {p.returncode}"
                    pytest.fail(f"child {p.args[2:]} {status}; stderr tail:\n{err.read()[-3000:]}")
                results.append(json.loads(out.read().strip().splitlines()[-1]))
            return results
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                p.wait(timeout=30)


def worker_command(config, **env):
    return [sys.executable, str(WORKER), json.dumps(config)], child_env(**env)


@pytest.mark.slow
def test_mirrored_over_2_and_3_cpu_devices_matches_one_device(reference, tmp_path):
    # Every run on 2 devices; on 3 (a 61-row batch split 21/20/20, the 1-row last
    # one 1/0/0) the weighted run only: each run under a strategy costs seconds.
    chosen = {2: list(range(len(RUNS))), 3: [1]}
    configs = [
        {
            "strategy": "mirrored",
            "devices": devices,
            "runs": [RUNS[i] for i in indices],
            "refusals": devices == 2,
        }
        for devices, indices in chosen.items()
    ]
    outputs = run_children([worker_command(c) for c in configs], tmp_path)
    for config, output, indices in zip(configs, outputs, chosen.values(), strict=True):
        assert output["replicas"] == config["devices"]
        for i, actual in zip(indices, output["results"], strict=True):
            assert_same_run(actual, reference[i], f"{config['devices']} replicas, {RUNS[i]}")
    # What Keras 3.15 cannot run under a strategy is refused before any step,
    # naming the argument.
    refusals = outputs[0]["refusals"]
    assert refusals["steps_per_execution"].startswith(
        "ValueError: Received steps_per_execution=2 under a tf.distribute strategy with 2 "
    ), refusals
    assert refusals["jit_compile"].startswith(
        "ValueError: Received jit_compile=True under a tf.distribute strategy with 2 "
    ), refusals


def free_ports(count):
    """`count` distinct free TCP ports on 127.0.0.1 (held open until all are chosen)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.slow
def test_two_worker_processes_match_one_process(reference, tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    runs = [*RUNS, SHUFFLED_RUN]
    config = {"strategy": "multi_worker", "runs": runs}
    # The shuffled run's reference sets the global random seed: it runs in a
    # child process of its own, beside the two workers. Under any strategy,
    # fit shuffles with Keras' own pipeline (the fast path with its own
    # (seed, epoch) order takes no strategy), so the one-process reference
    # runs under OneDeviceStrategy to see the same row order.
    commands = [worker_command({"strategy": "one_device", "runs": [SHUFFLED_RUN]})] + [
        worker_command(
            config,
            TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            ),
        )
        for index in range(2)
    ]
    shuffled_reference, *outputs = run_children(commands, tmp_path)
    expected_results = [*reference, *shuffled_reference["results"]]
    for index, output in enumerate(outputs):
        assert output["replicas"] == 2
        for run, actual, expected in zip(runs, output["results"], expected_results, strict=True):
            assert_same_run(actual, expected, f"worker {index}, {run}")
