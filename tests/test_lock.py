"""The one lock stays true to pyproject.toml: `make lock` on it changes nothing."""

import shutil
import subprocess
from pathlib import Path

import pytest


@pytest.mark.slow
def test_make_lock_reproduces_the_committed_lock(repo_root: Path, tmp_path: Path) -> None:
    committed = repo_root / "requirements.lock"
    scratch = tmp_path / "requirements.lock"
    shutil.copy(committed, scratch)
    cluster_scratch = tmp_path / "requirements-emr.lock"
    done = subprocess.run(
        ["make", "lock", f"LOCK={scratch}", f"CLUSTER_LOCK={cluster_scratch}"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]

    def pins(text: str) -> list[str]:  # comments name the lock paths: compare the pins
        return [line for line in text.splitlines() if not line.strip().startswith("#")]

    assert pins(scratch.read_text()) == pins(committed.read_text()), (
        "requirements.lock is stale: run `make lock` and commit it"
    )
    assert pins(cluster_scratch.read_text()) == pins(
        (repo_root / "requirements-emr.lock").read_text()
    ), "requirements-emr.lock is stale: run `make lock` and commit it"


def locked_pins(lock: Path) -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (version, hashes) of a uv-compiled lock."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    name = ""
    for line in lock.read_text().splitlines():
        if line[:1].isalnum():
            name, version = line.split()[0].lower().split("==")
            pins[name] = (version, frozenset())
        elif "--hash=" in line:
            version, hashes = pins[name]
            pins[name] = (version, hashes | {line.split("--hash=")[1].split()[0]})
    return pins


def test_the_cluster_lock_is_the_runtime_part_of_the_main_lock(repo_root: Path) -> None:
    main = locked_pins(repo_root / "requirements.lock")
    cluster = locked_pins(repo_root / "requirements-emr.lock")
    assert {name: main[name] for name in cluster} == cluster  # same versions, same hashes
    assert {"dagster", "dagster-aws", "dagster-pyspark", "tensorflow-cpu", "boto3"} <= set(cluster)
    # dev-only packages stay home; the cluster's Spark brings pyspark and py4j
    left_out = {"moto", "pytest", "ruff", "playwright", "dagster-webserver", "dagster-dg-cli", "uv"}
    assert left_out <= set(main) and not left_out & set(cluster)
    assert "pyspark" in main and not {"pyspark", "py4j"} & set(cluster)
