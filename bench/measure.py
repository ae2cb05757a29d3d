"""CPU and memory of the run's processes, by role, read from the OS (psutil) while it runs.

Roles: the driver (this process), the JVM (Spark's executor threads live in it, local mode),
the Python workers (the PySpark daemon and the workers it forks), and apart from them the S3
server and the latency proxy, which stand in for AWS and are not the pipeline's cost.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psutil

DRIVER, JVM, WORKERS = "driver", "jvm", "python_workers"


def listening_pid(port: int) -> int | None:
    """The process serving a loopback port (the local S3 server, wherever it was started)."""
    for connection in psutil.net_connections(kind="tcp"):
        if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port:
            return connection.pid
    return None


def cpu_s(process: psutil.Process, with_children: bool) -> float:
    """CPU seconds so far; with the children it has reaped (workers Spark ended meanwhile)."""
    times = process.cpu_times()
    own = times.user + times.system
    return own + (times.children_user + times.children_system if with_children else 0.0)


@dataclass
class Roles:
    """Which process plays which role; `apart` are measured alone (S3 server, proxy)."""

    apart: dict[str, int] = field(default_factory=dict)

    def pipeline(self) -> dict[int, str]:
        """pid -> role of the driver and its descendants, the processes set apart left out."""
        root = psutil.Process(os.getpid())
        excluded = set(self.apart.values())
        roles = {root.pid: DRIVER}
        for child in root.children(recursive=True):
            try:
                if child.pid in excluded or excluded & {p.pid for p in child.parents()}:
                    continue
                java = child.name() == "java"
                roles[child.pid] = JVM if java else WORKERS if _under_java(child) else DRIVER
            except psutil.NoSuchProcess:
                continue
        return roles


def _under_java(process: psutil.Process) -> bool:
    return any(parent.name() == "java" for parent in process.parents())


def snapshot(roles: Roles) -> dict[tuple[str, int], float]:
    """CPU seconds per (role, pid), the pipeline's processes and those set apart."""
    seen: dict[tuple[str, int], float] = {}
    pids = roles.pipeline() | {pid: name for name, pid in roles.apart.items()}
    for pid, role in pids.items():
        try:
            process = psutil.Process(pid)
            # The driver's own only: its reaped children are the model-alone processes.
            seen[(role, pid)] = cpu_s(process, with_children=role != DRIVER)
        except psutil.NoSuchProcess:
            continue
    return seen


class Window:
    """A timed window: wall seconds, CPU seconds by role, peak memory, sampled every
    `interval` s. The sampler's own CPU is taken off the driver's: it is the benchmark's."""

    def __init__(self, roles: Roles, interval: float = 0.5) -> None:
        self.roles, self.interval = roles, interval
        self.cpu_s: dict[str, float] = {}
        self.worker_peak_rss_mb = 0.0
        self.run_peak_rss_mb = 0.0
        self.workers_seen: set[int] = set()
        self.seconds = 0.0
        self._stop = threading.Event()
        self._sampler_cpu_s = 0.0
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def _sample(self) -> None:
        total = 0.0
        for pid, role in self.roles.pipeline().items():
            try:
                rss_mb = psutil.Process(pid).memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
            total += rss_mb
            if role == WORKERS:
                self.workers_seen.add(pid)
                self.worker_peak_rss_mb = max(self.worker_peak_rss_mb, rss_mb)
        self.run_peak_rss_mb = max(self.run_peak_rss_mb, total)

    def _sample_until_stopped(self) -> None:
        started = time.thread_time()
        while not self._stop.wait(self.interval):
            self._sample()
        self._sampler_cpu_s = time.thread_time() - started

    def __enter__(self) -> Window:
        self._before = snapshot(self.roles)
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._started
        self._stop.set()
        self._thread.join()
        self._sample()
        after = snapshot(self.roles)
        spent: Counter[str] = Counter()
        for (role, pid), seconds in after.items():
            spent[role] += seconds - self._before.get((role, pid), 0.0)
        spent[DRIVER] -= self._sampler_cpu_s
        self.cpu_s = dict(spent)

    def pipeline_cpu_s(self) -> float:
        return sum(self.cpu_s.get(role, 0.0) for role in (DRIVER, JVM, WORKERS))
