"""`make ui` on a free loopback port with its own DAGSTER_HOME, and a headless Chromium page.

The UI runs over the session's test S3 server and catalog (tests/conftest.py: `local_s3`,
`local_catalog`), never the demo's.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from playwright.sync_api import Page, Route, sync_playwright

from bootstrap.local.processes import group_alive, stop_group
from spark.layout import Layout

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; bootstrap/local/setup.sh installs it
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
# SIGTERM to `make ui`'s process group stops it within this (a run's Spark may be stopping).
STOP_WITHIN_S = 30
ARTIFACTS = Path(__file__).resolve().parents[2] / ".fruits" / "artifacts" / "ui"


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def _wait_until_serving(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{url}/server_info", timeout=2)
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"`make ui` did not serve {url}; see {log}") from None
            time.sleep(0.5)


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def dagster_ui(
    fresh_layout: Layout,
    local_s3,
    local_catalog,
    repo_root: Path,
    tmp_path: Path,
    unused_port: int,
    artifacts: Path,
) -> Iterator[str]:
    """`make ui` as the README runs it, on its own port, DAGSTER_HOME and S3 prefix (so that
    other tests' uploads never show up as upload dates here).

    LOCAL_S3=0 and LOCAL_CATALOG=0: FRUITS_S3_ENDPOINT and FRUITS_CATALOG_URI already point at
    the session's test servers, which `bootstrap.local.local_s3 start` and
    `bootstrap.local.local_catalog start` would not recognize as their own (their pid files are
    elsewhere).
    """
    url = f"http://127.0.0.1:{unused_port}"
    home = tmp_path / "dagster_home"
    log = artifacts / "make-ui.log"
    command = [
        "make", "ui", f"UI_PORT={unused_port}", f"DAGSTER_HOME={home}",
        "LOCAL_S3=0", "LOCAL_CATALOG=0",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=repo_root,
            env={**os.environ, "FRUITS_PREFIX": fresh_layout.prefix},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # As a script's background job gets it (`make ui &`): SIGINT ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        _wait_until_serving(url, process, log, timeout_s=300)
        yield url
    finally:
        last_signal = stop_group(process, timeout_s=STOP_WITHIN_S)
    assert not group_alive(process.pid), "processes of `make ui` outlived it"
    assert last_signal == signal.SIGTERM, f"`make ui` ignored SIGTERM for {STOP_WITHIN_S} s"
    assert not listening(unused_port), f"something still listens on {url}"


def _loopback_only(route: Route) -> None:
    # The UI may reach for fonts or telemetry elsewhere: tests only talk to loopback.
    if urlparse(route.request.url).hostname == "127.0.0.1":
        route.continue_()
    else:
        print(f"blocked {route.request.url}")
        route.abort()


@pytest.fixture
def page() -> Iterator[Page]:
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: run bash bootstrap/local/setup.sh"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        context.route("**/*", _loopback_only)
        page = context.new_page()
        page.set_default_timeout(30_000)
        try:
            yield page
        finally:
            browser.close()
