"""The local S3 server: moto in server mode on loopback, as a background process.

    python -m bootstrap.local.local_s3 start|stop|status
    python -m bootstrap.local.local_s3 ls [SUB/PREFIX]   the keys and sizes under the project prefix

The endpoint is the local deployment's `s3_endpoint` (fruits_assets/deployments/local.py).
moto keeps objects in memory: they are gone once the server stops.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from bootstrap import cli
from bootstrap.local.processes import BackgroundServer
from fruits_assets.deployments import current_settings
from spark.layout import Layout
from spark.settings import PROJECT_ROOT, ConfigError, Settings
from spark.storage import s3_client

STATE_DIR = PROJECT_ROOT / ".fruits"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True)
class LocalS3:
    endpoint: str
    state_dir: Path = STATE_DIR

    def __post_init__(self) -> None:
        if urlparse(self.endpoint).hostname not in LOOPBACK:
            raise ConfigError(f"the local S3 server binds to loopback only, not {self.endpoint}")

    @property
    def host(self) -> str:
        return urlparse(self.endpoint).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlparse(self.endpoint).port or 80

    @property
    def server(self) -> BackgroundServer:
        return BackgroundServer(f"local_s3_{self.port}", self.state_dir)

    def pid(self) -> int | None:
        return self.server.pid()

    def responds(self) -> bool:
        """Whether anything answers HTTP there (cheaply: not moto's full state dump)."""
        try:
            with urllib.request.urlopen(f"{self.endpoint}/", timeout=5):
                return True
        except urllib.error.HTTPError:
            return True  # an HTTP answer, even an error, means the port is served
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def start(self, timeout_s: float = 30) -> int:
        """Start the server unless it runs already; returns its PID."""
        if (pid := self.pid()) and self.responds():
            return pid
        if self.responds():
            raise ConfigError(f"something else already serves {self.endpoint}")
        moto_server = Path(sys.executable).with_name("moto_server")
        command = [str(moto_server), "-H", self.host, "-p", str(self.port)]
        return self.server.spawn(command, self.responds, timeout_s)

    def stop(self) -> bool:
        """Stop the server's whole process group; False when it was not running."""
        return self.server.stop()


def from_settings(settings: Settings, state_dir: Path = STATE_DIR) -> LocalS3:
    if not settings.s3_endpoint:
        raise ConfigError(
            "FRUITS_S3_ENDPOINT is not set: this deployment uses AWS S3, not a local server"
        )
    return LocalS3(settings.s3_endpoint, state_dir)


def list_objects(settings: Settings, under: str) -> int:
    """What the pipeline stored, without the AWS CLI: one line per object, key and size."""
    client, layout = s3_client(settings), Layout.of(settings)
    prefix = layout.key(under)
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=settings.bucket, Prefix=prefix
    ):
        for obj in page.get("Contents", []):
            print(f"{obj['Size']:>10}  s3://{settings.bucket}/{obj['Key']}")
    return 0


@cli.command
def main(argv: list[str] | None = None, state_dir: Path = STATE_DIR) -> int:
    parser = cli.parser("bootstrap.local.local_s3", __doc__)
    parser.add_argument("command", choices=["start", "stop", "status", "ls"])
    parser.add_argument("under", nargs="?", default="", help="ls: a folder under the prefix")
    args = parser.parse_args(argv)
    settings = current_settings()
    server = from_settings(settings, state_dir)
    if args.command == "ls":
        return list_objects(settings, args.under)
    if args.command == "start":
        print(f"local S3 server on {server.endpoint} (pid {server.start()})")
    elif args.command == "stop":
        print("stopped" if server.stop() else "not running")
    else:
        running = server.pid() is not None and server.responds()
        print(f"{'running' if running else 'not running'} on {server.endpoint}")
        return 0 if running else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
