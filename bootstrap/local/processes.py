"""Servers started in a process group of their own, so that one signal stops all they started."""

from __future__ import annotations

import os
import signal
import subprocess
import time


def default_signals() -> None:
    """For Popen(preexec_fn=...): a shell that starts jobs in the background makes them ignore
    SIGINT, and Dagster maps SIGTERM onto SIGINT's handler, so `dagster dev` would ignore both."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_group(process: subprocess.Popen, timeout_s: float = 90) -> None:
    """SIGTERM to the group `process` leads (start_new_session=True), then SIGKILL to whatever
    is left after `timeout_s`."""
    pgid = process.pid
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10)):
        if not group_alive(pgid):
            break
        os.killpg(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            process.poll()  # reaps the leader, our own child; init reaps the rest
            if not group_alive(pgid):
                break
            time.sleep(0.2)
    process.wait(timeout=10)
