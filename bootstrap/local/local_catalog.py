"""The local Iceberg catalog's database: PostgreSQL on loopback, as a background process.

    python -m bootstrap.local.local_catalog start|stop|status

Iceberg's JDBC catalog keeps each table's current metadata location in it and commits by a
conditional UPDATE there, so concurrent writers in separate processes commit atomically (a
SQLite file fails them with SQLITE_BUSY instead). The address is the local deployment's
`catalog_uri` (fruits_assets/deployments/local.py); its data folder is under .fruits/ (or the
system's temporary folder, where PostgreSQL's system user cannot reach .fruits/) and is made
anew at every start: like the local S3 server, which keeps objects in memory, it starts
empty (a catalog naming files that are gone would be worse than none). `make stop` stops both.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrap import cli
from bootstrap.local.processes import BackgroundServer
from fruits_assets.deployments import current_settings
from spark.catalog import JdbcAddress
from spark.settings import PROJECT_ROOT, ConfigError

STATE_DIR = PROJECT_ROOT / ".fruits"
LOOPBACK = {"127.0.0.1", "localhost"}
# PostgreSQL refuses to run as root; as root it runs as this system user (Debian's package
# creates it).
SERVER_USER = "postgres"


def server_binaries() -> Path:
    """The folder of `initdb` and `postgres`: Debian keeps them off PATH, per major version."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not versions:
        raise ConfigError("PostgreSQL not found (Debian package postgresql): run `make install`")
    return versions[-1].parent


@dataclass(frozen=True)
class LocalCatalog:
    address: JdbcAddress
    state_dir: Path = STATE_DIR

    def __post_init__(self) -> None:
        if self.address.host not in LOOPBACK:
            raise ConfigError(f"the local catalog binds to loopback only, not {self.address.host}")

    @property
    def data_dir(self) -> Path:
        """Under the state folder, unless the server's system user (under root) cannot enter
        it, as in a clone under root's 0700 home: then in the system's temporary folder."""
        own = self.state_dir / f"catalog_{self.address.port}"
        user = _as_server_user()
        if not user or _enterable(self.state_dir, pwd.getpwnam(user["user"])):
            return own
        digest = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"fruits-{digest}-catalog_{self.address.port}"

    @property
    def server(self) -> BackgroundServer:
        return BackgroundServer(f"catalog_{self.address.port}", self.state_dir)

    def pid(self) -> int | None:
        return self.server.pid()

    def responds(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection((self.address.host, self.address.port), timeout=2),
        ):
            return True
        return False

    def start(self, timeout_s: float = 60) -> int:
        """Start the server unless it runs already, its database created; returns its PID."""
        if (pid := self.pid()) and self.responds():
            return pid
        if self.responds():
            raise ConfigError(f"something else already serves port {self.address.port}")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self._initdb()
        command = [
            str(server_binaries() / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.address.port),
            "-c", f"listen_addresses={self.address.host}",
            "-c", f"unix_socket_directories={self.data_dir}",
            # A catalog of pointers: durability is the local S3 server's, in memory.
            "-c", "fsync=off",
        ]  # fmt: skip
        return self.server.spawn(command, self._create_database, timeout_s, **_as_server_user())

    def stop(self) -> bool:
        """Stop the server and its backends, and remove its data (the next start makes it
        anew); False when it was not running."""
        stopped = self.server.stop(signal.SIGINT)  # PostgreSQL's fast shutdown
        shutil.rmtree(self.data_dir, ignore_errors=True)
        return stopped

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True)
        user = _as_server_user()
        if user:
            os.chown(self.data_dir, pwd.getpwnam(user["user"]).pw_uid, int(user["group"]))
        with self.server.log_file.open("ab") as log:
            subprocess.run(
                [
                    str(server_binaries() / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.address.user,
                    # Loopback only, one user, no secret: the local S3 server takes any key too.
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],  # fmt: skip
                check=True,
                stdout=log,
                stderr=subprocess.STDOUT,
                **user,
            )

    def _create_database(self) -> bool:
        """True once the server accepts connections and the catalog's database exists."""
        psql = [
            str(server_binaries() / "psql"),
            "-h", self.address.host,
            "-p", str(self.address.port),
            "-U", self.address.user,
            "-d", "postgres",
            "-tAc",
        ]  # fmt: skip
        query = f"SELECT 1 FROM pg_database WHERE datname = '{self.address.database}'"
        found = subprocess.run([*psql, query], capture_output=True, text=True)
        if found.returncode != 0:
            return False
        if found.stdout.strip() != "1":
            subprocess.run(
                [*psql, f'CREATE DATABASE "{self.address.database}"'],
                check=True,
                capture_output=True,
            )
        return True


def _as_server_user() -> dict[str, Any]:
    """Popen's user and group: PostgreSQL's system user when this process is root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise ConfigError(
            f"running as root needs the system user {SERVER_USER!r}: run `make install`"
        ) from None
    return {"user": entry.pw_name, "group": entry.pw_gid}


def _enterable(folder: Path, user: pwd.struct_passwd) -> bool:
    """Whether `user` may enter every folder from / down to `folder` (those that exist)."""
    for each in [*reversed(folder.parents), folder]:
        if not each.exists():
            break
        status = each.stat()
        if status.st_uid == user.pw_uid:
            searchable = stat.S_IXUSR
        elif status.st_gid == user.pw_gid:
            searchable = stat.S_IXGRP
        else:
            searchable = stat.S_IXOTH
        if not status.st_mode & searchable:
            return False
    return True


def from_uri(catalog_uri: str | None, state_dir: Path = STATE_DIR) -> LocalCatalog:
    if not catalog_uri:
        raise ConfigError(
            "FRUITS_CATALOG_URI is not set: this deployment's catalog is not a local database"
        )
    return LocalCatalog(JdbcAddress.parse(catalog_uri), state_dir)


@cli.command
def main(argv: list[str] | None = None, state_dir: Path = STATE_DIR) -> int:
    parser = cli.parser("bootstrap.local.local_catalog", __doc__)
    parser.add_argument("command", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    server = from_uri(current_settings().catalog_uri, state_dir)
    if args.command == "start":
        print(f"local catalog on port {server.address.port} (pid {server.start()})")
    elif args.command == "stop":
        print("stopped" if server.stop() else "not running")
    else:
        running = server.pid() is not None and server.responds()
        print(f"{'running' if running else 'not running'} on port {server.address.port}")
        return 0 if running else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
