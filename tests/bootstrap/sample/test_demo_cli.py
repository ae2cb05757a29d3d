"""The main command's path: the sample materialized through `dg launch` in one run."""

import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from bootstrap.local.dagster_home import prepare_dagster_home
from bootstrap.sample.demo import launch_command, summary_from_instance

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


def test_the_cli_materializes_the_sample_in_one_run(
    cli_env, fresh_layout, upload_sample, repo_root, monkeypatch, scan_credentials
) -> None:
    upload_sample(fresh_layout, DATES, per_date=40, phone_per_date=1)
    result = dagster_materialize(cli_env, repo_root)
    assert result.returncode == 0, result.stderr[-3000:]
    # The run's whole log (Dagster, Spark, workers) never shows the credentials.
    assert cli_env["AWS_SECRET_ACCESS_KEY"] not in result.stdout + result.stderr
    assert cli_env["AWS_ACCESS_KEY_ID"] not in result.stdout + result.stderr
    assert scan_credentials(result.stdout + result.stderr) == []
    # Nor do the logs and the event log the run left in DAGSTER_HOME.
    for stored in Path(cli_env["DAGSTER_HOME"]).rglob("*"):
        if stored.is_file():
            text = stored.read_bytes().decode(errors="ignore")
            assert cli_env["AWS_SECRET_ACCESS_KEY"] not in text, stored
            assert scan_credentials(text) == [], stored

    monkeypatch.setenv("DAGSTER_HOME", cli_env["DAGSTER_HOME"])
    with dg.DagsterInstance.get() as instance:
        assert len(instance.get_run_records()) == 1
    summary = summary_from_instance(DATES)
    assert summary["dates"][DATES[0]] == {"images": 43, "features": 41, "rejects": 2, "reduced": 41}
    assert summary["dates"][DATES[2]] == {"images": 41, "features": 41, "rejects": 0, "reduced": 41}
    assert summary["feature_shape"] == [123, 1280]
    assert summary["pca"]["rows"] == 123
    probe = summary["probe"]
    # 123 rows over 12 labels support no verdict on what the PCA keeps: the probe says so.
    assert probe["verdict"] == "inconclusive" and probe["why"] and probe["k"] == 100
    if probe["ratio"] is not None:
        assert probe["ratio"] == pytest.approx(probe["reduced"] / probe["full"])
    assert summary["outputs"]["probe_png"].endswith("feature_quality.png")
    assert sorted(r["path"].rsplit("/", 1)[-1] for r in summary["rejects"]) == [
        "not_an_image.jpg",
        "truncated_upload.jpg",
    ]


def test_the_cli_fails_when_a_blocking_check_fails(
    cli_env, fresh_layout, upload_sample, repo_root
) -> None:
    upload_sample(fresh_layout, DATES, per_date=4)
    result = dagster_materialize({**cli_env, "FRUITS_MAX_REJECT_RATE": "0"}, repo_root)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Asset check 'reject_rate' on 'image_features' did not pass" in output
    assert "Dependencies for step pca_model failed" in output
