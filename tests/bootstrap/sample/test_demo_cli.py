"""The main command's path, `dg launch` over the sample's dates, when a blocking check fails
(its success is `make demo`'s, tests/test_readme.py)."""

import os
import subprocess
from pathlib import Path

import pytest

from bootstrap.local.dagster_home import prepare_dagster_home
from bootstrap.sample.demo import launch_command

pytestmark = pytest.mark.slow
DATES = ["2026-11-10", "2026-11-11", "2026-11-12"]


def dagster_materialize(env: dict[str, str], repo_root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        launch_command(DATES),
        env=env,
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def cli_env(fresh_layout, tmp_path, spark) -> dict[str, str]:
    home = prepare_dagster_home(tmp_path / "dagster_home")
    return {
        **os.environ,
        "FRUITS_PREFIX": fresh_layout.prefix,
        "FRUITS_NAMESPACE": fresh_layout.namespace,  # tables of its own in the tests' catalog
        "DAGSTER_HOME": str(home),
    }


def test_the_cli_fails_when_a_blocking_check_fails(
    cli_env, fresh_layout, upload_sample, repo_root, last_run_messages
) -> None:
    upload_sample(fresh_layout, DATES, per_date=4)
    result = dagster_materialize({**cli_env, "FRUITS_MAX_REJECT_RATE": "0"}, repo_root)
    assert result.returncode != 0
    messages = last_run_messages(cli_env["DAGSTER_HOME"])
    assert "Asset check 'reject_rate' on 'image_features' did not pass" in messages
    assert "Dependencies for step pca_model failed" in messages
