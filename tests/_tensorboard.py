"""A real `tensorboard` server for the tests, and its hparams plugin's HTTP data API.

Shared by tests/test_callbacks.py (scalars), tests/test_hparams.py (the library's
summaries) and tests/test_sweep.py (`keras-linreg train --learning-rate A,B,...`).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from keras_linreg import hparams as hparams_module


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_json(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read())


def session_groups_request(metrics=hparams_module.METRICS):
    """The plugin's `ListSessionGroupsRequest` (JSON) for every session and column."""
    return {
        "experimentName": "",
        "allowedStatuses": [
            "STATUS_UNKNOWN",
            "STATUS_SUCCESS",
            "STATUS_FAILURE",
            "STATUS_RUNNING",
        ],
        "colParams": [{"hparam": name} for name in hparams_module.HPARAMS]
        + [{"metric": {"group": "", "tag": tag}} for tag in metrics],
        "startIndex": 0,
        "sliceSize": 100,
    }


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def serve(log_dir, log_path, ready, timeout=90):
    """Serves `log_dir` on a free port until `ready(base_url)` is true.

    Yields the base URL; the server is always killed afterwards. Its output goes
    to `log_path` (shown if it exits early). `ready` may raise `URLError` and the
    like while the server starts.
    """
    binary = os.path.join(os.path.dirname(sys.executable), "tensorboard")
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
    log_file = open(log_path, "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [binary, "--logdir", str(log_dir), "--host", "127.0.0.1", "--port", str(port),
         "--reload_interval", "1"],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        env=env,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            assert process.poll() is None, open(log_path).read()
            try:
                if ready(base):
                    break
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                pass
            assert time.monotonic() < deadline, f"tensorboard did not serve in {timeout} s"
            time.sleep(0.5)
        yield base
    finally:
        process.kill()
        process.wait(timeout=30)
        log_file.close()


def tensorboard(log_dir, n_sessions, log_path, metrics=hparams_module.METRICS, timeout=90):
    """`serve` until the hparams plugin lists `n_sessions` session groups."""

    def ready(base):
        groups = post_json(
            f"{base}/data/plugin/hparams/session_groups", session_groups_request(metrics)
        )
        return len(groups.get("sessionGroups", [])) == n_sessions

    return serve(log_dir, log_path, ready, timeout)
