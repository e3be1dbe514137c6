"""Helpers for tests that drive child processes."""

from __future__ import annotations

import queue
import threading


def stdout_lines(process):
    """A queue of the child's stdout lines (None at EOF), filled by a thread."""
    lines = queue.Queue()

    def pump():
        for line in process.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines
