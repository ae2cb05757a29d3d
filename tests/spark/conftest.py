"""Fault injection for the Spark tests: a fault proxy in front of the local S3 server (S3 failing
mid-write), and this process's tree of processes (to kill a Python worker, to measure the JVM)."""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import psutil
import pytest

# Decides, per request (method, path, headers), whether S3 fails it with a 500.
FaultRule = Callable[[str, str, dict[str, str]], bool]
HOP_BY_HOP = {"connection", "keep-alive", "expect", "transfer-encoding", "proxy-connection"}


class FaultProxy:
    """Forwards S3 requests to `upstream` until `fail_when` says a request must fail."""

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.fail_when: FaultRule = lambda method, path, headers: False
        self.failed: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, as the AWS SDK expects

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if proxy.fail_when(self.command, self.path, headers):
                    proxy.failed.append(f"{self.command} {self.path}")
                    self._reply(500, {"Content-Type": "application/xml"}, INTERNAL_ERROR)
                    return
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=60
                )
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    payload = response.read()
                    kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
                    self._reply(response.status, kept, payload)
                finally:
                    upstream.close()

            def _reply(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    if key.lower() != "content-length":
                        self.send_header(key, value)
                # HEAD replies carry the object's length, not a body.
                length = headers.get("Content-Length", headers.get("content-length"))
                if self.command == "HEAD" and length is not None:
                    self.send_header("Content-Length", length)
                else:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def __enter__(self) -> FaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code>'
    b"<Message>injected by the test's fault proxy</Message></Error>"
)


@pytest.fixture
def fault_proxy(settings, local_s3) -> Iterator[FaultProxy]:
    with FaultProxy(settings.s3_endpoint) as proxy:
        yield proxy


@pytest.fixture
def through_proxy(spark, s3, fault_proxy):
    """A bucket of its own whose S3A traffic goes through the proxy (S3A per-bucket endpoint)."""
    from spark.layout import Layout

    bucket = f"fruits-faults-{fault_proxy.server.server_address[1]}"
    s3.create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": s3.meta.region_name}
    )
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    conf.set(f"fs.s3a.bucket.{bucket}.endpoint", fault_proxy.endpoint)
    yield Layout(bucket, "p")
    conf.unset(f"fs.s3a.bucket.{bucket}.endpoint")


@dataclass(frozen=True)
class Proc:
    pid: int
    parent: int
    state: str  # psutil.STATUS_*
    cpu_s: float
    cmdline: str
    exe: str


def read_proc(process: psutil.Process) -> Proc | None:
    """One process's figures, read at once; None when it has exited meanwhile."""
    try:
        with process.oneshot():
            cpu = process.cpu_times()
            return Proc(
                process.pid, process.ppid(), process.status(), cpu.user + cpu.system,
                " ".join(process.cmdline()), process.exe(),
            )  # fmt: skip
    except psutil.Error:
        return None


def descendants(root: int | None = None) -> list[Proc]:
    """The processes started under `root` (this test process by default), at any depth."""
    try:
        children = psutil.Process(root or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in map(read_proc, children) if p]


@pytest.fixture
def process_tree() -> Callable[[], list[Proc]]:
    """This test process's descendants: the driver JVM, PySpark's daemon and workers."""
    return descendants
