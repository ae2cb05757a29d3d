"""The `emr` deployment: Spark assets run as EMR steps through Dagster's EMR PySpark step launcher.

The launcher is dagster_aws's EmrPySparkStepLauncher, unchanged but for what it ships: a zip
of this project's packages only (never .venv, .git or data), uploaded to the staging prefix
under its content hash before each step.
"""

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import boto3
import dagster as dg
from dagster._config.pythonic_config.resource import ConfigurableResourceFactory
from dagster._core.definitions.step_launcher import StepLauncher
from dagster_aws.emr.pyspark_step_launcher import EmrPySparkStepLauncher

from spark.layout import split_uri, staging_uri
from spark.settings import PROJECT_ROOT, cluster_id_on_node, require_eu_region
from spark.storage import SSE

# What the cluster needs to import: the Dagster definitions and the library, with its conf/.
CODE_PACKAGES = ("fruits_assets", "spark")
CODE_SUFFIXES = (".py", ".env")


def code_files(root: Path = PROJECT_ROOT) -> list[Path]:
    return sorted(
        path
        for package in CODE_PACKAGES
        for path in (root / package).rglob("*")
        if path.suffix in CODE_SUFFIXES and "__pycache__" not in path.parts
    )


def build_code_package(target: Path, root: Path = PROJECT_ROOT) -> str:
    """Zip the project's packages into `target`; returns the SHA-256 of their contents.

    Entries get a fixed timestamp, so the same code gives the same zip and the same key.
    """
    digest = hashlib.sha256()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in code_files(root):
            name = path.relative_to(root).as_posix()
            data = path.read_bytes()
            digest.update(name.encode() + b"\0" + data)
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return digest.hexdigest()


class ProjectPackageStepLauncher(EmrPySparkStepLauncher):
    """Uploads the project's code package, then launches the step as dagster_aws does."""

    def launch_step(self, step_context):  # noqa: ANN001, ANN201 (the base class's signature)
        with tempfile.TemporaryDirectory() as tmp:
            package = Path(tmp) / "code.zip"
            sha = build_code_package(package)
            uri = staging_uri(self.staging_bucket, self.staging_prefix, "code", f"{sha[:16]}.zip")
            bucket, key = split_uri(uri)
            boto3.client("s3", region_name=self.region_name).upload_file(
                str(package), bucket, key, ExtraArgs=SSE
            )
        self.s3_job_package_path = uri
        step_context.log.info(f"code package {self.s3_job_package_path}")
        yield from super().launch_step(step_context)


class EmrStepLauncherResource(ConfigurableResourceFactory[StepLauncher]):
    """The step launcher, configured from the environment through EnvVar.

    EnvVars are resolved again on the cluster when the step starts there, so the same
    variables must be set in the cluster's environment (bootstrap.emr_cluster does it).
    """

    cluster_id: str
    region_name: str
    staging_bucket: str
    staging_prefix: str = "emr_staging"
    # Fetch the step's stdout/stderr from the cluster's LogUri into the Dagster logs.
    wait_for_logs: bool = True

    def create_resource(self, context: dg.InitResourceContext) -> StepLauncher:
        require_eu_region(self.region_name)
        return ProjectPackageStepLauncher(
            region_name=self.region_name,
            staging_bucket=self.staging_bucket,
            staging_prefix=self.staging_prefix,
            wait_for_logs=self.wait_for_logs,
            # A failed step must not cancel the other steps of a shared cluster.
            action_on_failure="CONTINUE",
            cluster_id=self.cluster_id,
            spark_config={},
            local_job_package_path=str(PROJECT_ROOT),
            deploy_local_job_package=False,
        )


def emr_step_launcher() -> EmrStepLauncherResource:
    # On a cluster node (where Dagster builds the resources again) the cluster is the node's
    # own, from job-flow.json; on the host, the one FRUITS_EMR_CLUSTER_ID names.
    return EmrStepLauncherResource(
        cluster_id=cluster_id_on_node(os.environ) or dg.EnvVar("FRUITS_EMR_CLUSTER_ID"),
        region_name=dg.EnvVar("FRUITS_REGION"),
        staging_bucket=dg.EnvVar("FRUITS_STAGING_BUCKET"),
        staging_prefix=dg.EnvVar("FRUITS_STAGING_PREFIX"),
    )
