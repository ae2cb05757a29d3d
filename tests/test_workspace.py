"""workspace.yaml as `make ui` uses it: the webserver loads the code location and shows lineage."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bootstrap.local.dagster_home import prepare_dagster_home
from bootstrap.local.processes import default_signals, stop_group

pytestmark = pytest.mark.slow

QUERY = """{ assetNodes { assetKey { path } groupName isPartitioned
                         dependencyKeys { path } } }"""


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


@pytest.fixture
def webserver(repo_root: Path, tmp_path: Path, unused_port: int, test_env):
    home = prepare_dagster_home(tmp_path / "dagster_home")
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("dagster-webserver")), "-w", "workspace.yaml",
         "-h", "127.0.0.1", "-p", str(unused_port)],
        cwd=repo_root,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=default_signals,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{unused_port}/server_info", timeout=2)
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("dagster-webserver did not start") from None
                time.sleep(0.5)
        yield unused_port
    finally:
        stop_group(process, timeout_s=30)


def test_the_ui_shows_the_four_assets_and_their_lineage(webserver: int) -> None:
    deadline = time.monotonic() + 60
    while not (nodes := graphql(webserver, QUERY)["assetNodes"]) and time.monotonic() < deadline:
        time.sleep(1)  # the code location is still loading
    by_name = {n["assetKey"]["path"][0]: n for n in nodes}
    lineage = {
        name: sorted(d["path"][0] for d in n["dependencyKeys"]) for name, n in by_name.items()
    }
    assert lineage == {
        "raw_images": [],
        "image_features": ["raw_images"],
        "pca_model": ["image_features"],
        "reduced_features": ["image_features", "pca_model"],
        "feature_quality": ["reduced_features"],
    }
    assert {n["groupName"] for n in nodes} == {"fruits"}
    assert {name for name, n in by_name.items() if n["isPartitioned"]} == {
        "raw_images", "image_features", "reduced_features",
    }  # fmt: skip
