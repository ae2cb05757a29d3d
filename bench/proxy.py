"""A latency proxy for the benchmark: in front of the local S3 server, on 127.0.0.1.

    python -m bench.proxy --upstream http://127.0.0.1:9000 --port 9100

Every S3 request that passes waits a fixed delay (as a real S3's 10-100 ms per request would
make it), then goes to the upstream server; the proxy counts the requests by type where they
happen, whoever sends them (the JVM's S3A client, boto3 in the driver or in Python workers).
Its own control paths, under /__proxy__/, are neither delayed nor counted:
  GET  /__proxy__/counts          {"HEAD": n, "GET": n, "LIST": n, ...}
  POST /__proxy__/reset           counts back to zero
  POST /__proxy__/delay?ms=30     the delay of every later request
With --log FILE (FRUITS_BENCH_PROXY_LOG for the benchmark's proxy), one line per request:
its type, method and path, to see which code makes them.

Hand-written (about 100 lines of the standard library) because the benchmark needs the count
and the delay in one place it controls; no maintained package does both for S3.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from bootstrap import cli

CONTROL = "/__proxy__/"
# Hop-by-hop headers (RFC 9110), and the 100-continue handshake this proxy answers itself.
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-connection", "expect"}  # fmt: skip


def request_type(method: str, path: str, headers: http.client.HTTPMessage) -> str:
    """S3's operation, from the method, the path (path-style: /bucket/key) and the query."""
    parts = urlsplit(path)
    query = parse_qs(parts.query, keep_blank_values=True)
    has_key = "/" in parts.path.strip("/")
    if method == "GET":
        return "GET" if has_key else "LIST"
    if method == "PUT":
        if "x-amz-copy-source" in headers:
            return "COPY"
        return "PUT_PART" if "partNumber" in query else "PUT"
    if method == "POST":
        if "uploads" in query:
            return "MULTIPART_START"
        if "uploadId" in query:
            return "MULTIPART_COMPLETE"
        return "DELETE_MANY" if "delete" in query else "POST"
    return method  # HEAD, DELETE


class Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, upstream: str, log: str | None = None) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.log = open(log, "a", buffering=1) if log else None  # noqa: SIM115 (server-long)
        target = urlsplit(upstream)
        self.upstream = (target.hostname or "127.0.0.1", target.port or 80)
        self.delay_s = 0.0
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        # A client that stops reading hangs up (S3FileIO aborts a GET it read enough of):
        # nothing went wrong here. Anything else is printed, as the base class does.
        if not isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as S3 clients expect
    disable_nagle_algorithm = True  # headers and body leave at once, not 40 ms apart
    server: Proxy
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def _reply(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] = ()) -> None:
        self.send_response_only(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.command != "HEAD" or not any(n.lower() == "content-length" for n, _ in headers):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _control(self, body: bytes) -> None:
        action = urlsplit(self.path)
        with self.server.lock:
            if action.path.endswith("/delay"):
                self.server.delay_s = float(parse_qs(action.query)["ms"][0]) / 1000
            elif action.path.endswith("/reset"):
                self.server.counts.clear()
            answer = json.dumps(dict(self.server.counts)).encode()
        self._reply(200, answer, [("Content-Type", "application/json")])

    def _forward(self) -> None:
        body = self._body()
        if self.path.startswith(CONTROL):
            self._control(body)
            return
        kind = request_type(self.command, self.path, self.headers)
        with self.server.lock:
            self.server.counts[kind] += 1
            delay = self.server.delay_s
            if self.server.log:
                self.server.log.write(f"{kind} {self.command} {self.path}\n")
        if delay:
            time.sleep(delay)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed
            if self._upstream is None:
                self._upstream = http.client.HTTPConnection(*self.server.upstream, timeout=300)
            try:
                self._upstream.request(self.command, self.path, body, headers)
                response = self._upstream.getresponse()
                content = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self._upstream.close()
                self._upstream = None
                if attempt == 2:
                    raise
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_HEADERS]
        if self.command != "HEAD":
            kept = [(k, v) for k, v in kept if k.lower() != "content-length"]
        self._reply(response.status, content, kept)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward  # noqa: N815 (the base's names)


class LatencyProxy:
    """The proxy as a process of its own (its CPU is measured apart), driven over HTTP."""

    def __init__(self, upstream: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        command = [sys.executable, "-m", "bench.proxy", "--upstream", upstream,
                   "--port", str(self.port)]  # fmt: skip
        if log := os.environ.get("FRUITS_BENCH_PROXY_LOG"):
            command += ["--log", log]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout and self.process.stdout.readline().strip() == "ready"
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def _call(self, method: str, action: str) -> dict[str, int]:
        request = urllib.request.Request(f"{self.url}{CONTROL}{action}", method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def set_delay(self, ms: float) -> None:
        self._call("POST", f"delay?ms={ms}")

    def reset(self) -> None:
        self._call("POST", "reset")

    def counts(self) -> dict[str, int]:
        return self._call("GET", "counts")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:  # SIGTERM ignored (inherited): it must still go
            self.process.kill()
            self.process.wait(timeout=30)


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bench.proxy", __doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", help="a file to append one line per request to")
    args = parser.parse_args(argv)
    server = Proxy(args.port, args.upstream, args.log)
    print("ready", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
