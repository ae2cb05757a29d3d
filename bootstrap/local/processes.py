"""Servers started in a process group of their own, so that one signal stops all they started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil


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


def stop_group(process: subprocess.Popen, timeout_s: float = 90) -> signal.Signals | None:
    """SIGTERM to the group `process` leads (start_new_session=True), then SIGKILL to whatever
    is left after `timeout_s`. Returns the last signal sent (None: the group had ended)."""
    pgid = process.pid
    sent = None
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 10)):
        if not group_alive(pgid):
            break
        os.killpg(pgid, sig)
        sent = sig
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            process.poll()  # reaps the leader, our own child; init reaps the rest
            if not group_alive(pgid):
                break
            time.sleep(0.2)
    process.wait(timeout=10)
    return sent


def alive(pid: int) -> bool:
    """True while `pid` runs; reaps it first when it is our own exited child."""
    with contextlib.suppress(ChildProcessError):  # not our child: its parent reaps it
        os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass(frozen=True)
class BackgroundServer:
    """A local server in a session of its own, found again by its PID file (the local S3
    server, the local catalog): `make stop` or a later command stops what `make demo` began."""

    name: str  # names its files: <state_dir>/<name>.pid and .log
    state_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if alive(pid) else None

    def spawn(
        self, command: list[str], ready: Callable[[], bool], timeout_s: float, **popen: Any
    ) -> int:
        """Start `command`, logging to the log file, and wait until `ready()`; its PID."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **popen,
            )
        self.pid_file.write_text(str(process.pid))
        deadline = time.monotonic() + timeout_s
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the {self.name} server did not start; see {self.log_file}")
            time.sleep(0.1)
        return process.pid

    def stop(self, signum: int = signal.SIGTERM) -> bool:
        """Stop the server and every process it started (some leave its group: followed by
        parent); False when it was not running."""
        pid = self.pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return False
        children: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(pid).children(recursive=True)
        try:
            os.killpg(pid, signum)
            for _ in range(100):
                if not alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        return True
