"""The emr deployment without a cluster: resources, the code package, the bootstrap action."""

import json
import os
import subprocess
import sys
import zipfile

import dagster as dg
import pytest

from fruits_assets.emr import EmrStepLauncherResource, build_code_package, code_files
from fruits_assets.resources import resources_for
from spark.settings import Settings


def test_the_code_package_holds_only_the_project_code(tmp_path, repo_root) -> None:
    first = build_code_package(tmp_path / "code.zip")
    names = zipfile.ZipFile(tmp_path / "code.zip").namelist()
    assert {n.split("/")[0] for n in names} == {"fruits_assets", "spark"}
    assert "fruits_assets/definitions.py" in names and "spark/conf/emr.env" in names
    assert all(n.endswith((".py", ".env")) for n in names)
    assert not any(
        part in n
        for n in names
        for part in (".venv", ".git", "__pycache__", "node_modules", "tests/")
    )
    assert sum(os.path.getsize(p) for p in code_files()) < 1_000_000
    # Same code, same bytes, same content address.
    assert build_code_package(tmp_path / "again.zip") == first
    assert (tmp_path / "code.zip").read_bytes() == (tmp_path / "again.zip").read_bytes()


def test_the_packaged_code_imports_from_the_zip_alone(tmp_path, repo_root) -> None:
    build_code_package(tmp_path / "code.zip")
    code = "import fruits_assets.definitions as d, spark.settings as s; print(s.__file__)"
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "code.zip"), "FRUITS_DEPLOYMENT": "local"}
    result = subprocess.run(
        [sys.executable,
         "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path / 'code.zip')!r}); {code}"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "code.zip/spark/settings.py" in result.stdout


def test_emr_resources_use_env_vars_and_refuse_non_eu(monkeypatch) -> None:
    resources = resources_for("emr")
    launcher = resources["pyspark_step_launcher"]
    assert isinstance(launcher, EmrStepLauncherResource)
    monkeypatch.setenv("FRUITS_EMR_CLUSTER_ID", "j-1")
    monkeypatch.setenv("FRUITS_REGION", "us-east-1")
    monkeypatch.setenv("FRUITS_STAGING_BUCKET", "staging")
    monkeypatch.setenv("FRUITS_STAGING_PREFIX", "emr_staging")
    with pytest.raises(dg.DagsterResourceFunctionError) as error:
        dg.build_resources({"launcher": launcher}).__enter__()
    assert "outside the EU" in str(error.value.__cause__)
    monkeypatch.setenv("FRUITS_REGION", "eu-west-3")
    with dg.build_resources({"launcher": launcher}) as built:
        assert built.launcher.cluster_id == "j-1" and built.launcher.staging_bucket == "staging"


def test_the_bootstrap_action_passes_shellcheck(repo_root) -> None:
    scripts = [
        repo_root / "bootstrap" / "emr" / "install_python_deps.sh",
        repo_root / "bootstrap" / "setup.sh",
    ]
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_on_a_node_the_launcher_s_cluster_is_the_one_of_job_flow_json(
    monkeypatch, tmp_path
) -> None:
    """Dagster builds the resources again on the cluster, where FRUITS_EMR_CLUSTER_ID is not
    set (the host's pin never travels): the node's job-flow.json names the cluster."""
    job_flow = tmp_path / "job-flow.json"
    job_flow.write_text(json.dumps({"jobFlowId": "j-FROMNODE", "instanceCount": 3}))
    monkeypatch.setenv("FRUITS_JOB_FLOW_FILE", str(job_flow))
    monkeypatch.delenv("FRUITS_EMR_CLUSTER_ID", raising=False)
    monkeypatch.setenv("FRUITS_REGION", "eu-west-3")
    monkeypatch.setenv("FRUITS_STAGING_BUCKET", "staging")
    monkeypatch.setenv("FRUITS_STAGING_PREFIX", "emr_staging")
    with dg.build_resources({"launcher": resources_for("emr")["pyspark_step_launcher"]}) as built:
        assert built.launcher.cluster_id == "j-FROMNODE"
    assert Settings.from_env({**os.environ, "FRUITS_BUCKET": "b"}).emr_cluster_id == "j-FROMNODE"
