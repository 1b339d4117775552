"""Waiting on a real dagster-daemon in tests: poll a condition, fail with the daemon's log."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest


def wait_for(what: str, condition, timeout: float, daemon: subprocess.Popen, log: Path):
    """The condition's first truthy value within `timeout` seconds; fails the test (with the
    daemon log's tail) when the daemon exits first or time runs out."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        if daemon.poll() is not None:
            pytest.fail(
                f"dagster-daemon exited while waiting for {what}:\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.5)
    pytest.fail(f"gave up waiting for {what} after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def stop_daemon(daemon: subprocess.Popen) -> None:
    """SIGTERM the daemon's process group; SIGKILL it if it has not exited within 30 s."""
    os.killpg(daemon.pid, signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(daemon.pid, signal.SIGKILL)
