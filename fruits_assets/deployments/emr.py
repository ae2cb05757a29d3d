"""The `emr` deployment: the Spark assets run as steps on an existing EMR cluster (EMR 7.x,
Spark 3.5) through Dagster's EMR PySpark step launcher; everything EMR on the Dagster side.

Per account, read by Dagster as EnvVars in the environment of the Dagster host AND in the
cluster's spark-env (bootstrap.aws.emr_cluster puts every FRUITS_* variable there):
FRUITS_REGION, FRUITS_BUCKET, FRUITS_STAGING_BUCKET, FRUITS_WEIGHTS (an s3:// URI: the cluster
never downloads weights from the internet). Real credentials come from the default chain
(instance profile on the cluster, SSO or a profile on the host).

The launcher is dagster_aws's EmrPySparkStepLauncher, changed only where a real cluster needs it:
- it ships a zip of this project's packages only (never .venv, .git or data), uploaded to the
  staging prefix under its content hash before each step;
- it finds its cluster when each step launches: the newest cluster of the region tagged
  PROJECT_TAG that is up (so a new cluster needs no restart of anything on the Dagster host),
  unless FRUITS_EMR_CLUSTER_ID (on the host only) pins one; on a node, the node's own cluster
  (job-flow.json);
- it refuses, in one line naming the command that starts one, a cluster that has ended
  (auto-termination after an idle hour), does not exist, or is not the project's (untagged:
  the host's policy gets AccessDenied), before any work;
- a step that succeeded is never failed for its logs: EMR pushes them to S3 about every
  5 minutes, so logs that do not come within the wait are a warning; a failed step reports
  EMR's FailureDetails (the error EMR found in its logs) and its stderr when it comes;
- an interrupted Dagster step (run terminated, Ctrl-C) cancels its EMR step, which would
  otherwise go on and hold the cluster's one-step queue.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import boto3
import dagster as dg
from botocore.exceptions import ClientError
from dagster_aws.emr import EmrError, EmrJobRunner
from dagster_aws.emr.pyspark_step_launcher import EmrPySparkStepLauncher
from dagster_aws.utils.mrjob.log4j import parse_hadoop_log4j_records
from pydantic import Field

from fruits_assets.deployments.environment import fruits_config, variable
from fruits_assets.resources import STEP_LAUNCHER, FruitsConfig, pipeline_resources
from spark.layout import split_uri, staging_uri
from spark.settings import PROJECT_ROOT, require_eu_region
from spark.storage import SSE

PER_ACCOUNT = ("region", "bucket", "staging_bucket", "weights")
DEFAULTS = {field: dg.EnvVar(variable(field)) for field in PER_ACCOUNT} | {"catalog_type": "glue"}
# EMR writes the cluster's id (jobFlowId) and layout there on every node; the fake EMR's
# nodes name theirs in JOB_FLOW_ENV.
JOB_FLOW_FILE = "/mnt/var/lib/info/job-flow.json"
JOB_FLOW_ENV = "FRUITS_JOB_FLOW_FILE"


def config(environ: Mapping[str, str]) -> FruitsConfig:
    return fruits_config("emr", DEFAULTS, environ)


def resources(environ: Mapping[str, str]) -> dict[str, Any]:
    fruits = config(environ)
    return pipeline_resources(fruits) | {STEP_LAUNCHER: emr_step_launcher(fruits, environ)}


def cluster_id_on_node(environ: Mapping[str, str]) -> str | None:
    """The id of the EMR cluster this process runs on, None off a cluster."""
    path = Path(environ.get(JOB_FLOW_ENV) or JOB_FLOW_FILE)
    return json.loads(path.read_text())["jobFlowId"] if path.is_file() else None


# What the cluster needs to import: the Dagster definitions and the library.
CODE_PACKAGES = ("fruits_assets", "spark")
CODE_SUFFIXES = (".py",)
# The command that starts a cluster (bootstrap/ is not shipped to the cluster: named, not imported).
START_CLUSTER = "python -m bootstrap.aws.emr_cluster create"
ENDED_STATES = ("TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")
UP_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
# The tag of the project's clusters (bootstrap.aws.iam.PROJECT_TAG: the host may use no other).
PROJECT_TAG = {"Key": "project", "Value": "fruits"}
# What EMR answers for a cluster id it does not know, and IAM for one the host may not use.
UNKNOWN_CLUSTER = ("InvalidRequestException", "ValidationException")
NOT_THE_PROJECTS = ("AccessDeniedException", "AccessDenied")


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


class BoundedLogWaitJobRunner(EmrJobRunner):
    """dagster_aws's job runner, waiting for a step's logs `log_wait_s` at most (not 10 minutes),
    checking every 2 seconds (a HEAD request)."""

    def __init__(self, region: str, log_wait_s: int) -> None:
        super().__init__(region=region)
        self.log_wait_s = log_wait_s

    def wait_for_log(self, log, log_bucket, log_key, waiter_delay=2, waiter_max_attempts=0):  # noqa: ANN001, ANN201
        attempts = waiter_max_attempts or 1 + self.log_wait_s // waiter_delay
        return super().wait_for_log(log, log_bucket, log_key, waiter_delay, attempts)


class ProjectPackageStepLauncher(EmrPySparkStepLauncher):
    """Checks the cluster, uploads the project's code package, launches the step as dagster_aws
    does, and waits for it as dagster_aws does but for failures, late logs and interrupts."""

    def __init__(self, *args, poll_interval_s: float = 15, log_wait_s: int = 360, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.pinned_cluster_id = self.cluster_id  # "": the tagged cluster, found at each launch
        self.poll_interval_s = poll_interval_s  # dagster_aws's interval: EMR throttles DescribeStep
        self.log_wait_s = log_wait_s
        self.emr_job_runner = BoundedLogWaitJobRunner(self.region_name, log_wait_s)

    def launch_step(self, step_context):  # noqa: ANN001, ANN201 (the base class's signature)
        self.cluster_id = self.pinned_cluster_id or self.find_project_cluster()
        step_context.log.info(f"EMR cluster {self.cluster_id}")
        self.require_live_cluster()
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

    def find_project_cluster(self) -> str:
        """The newest cluster of the region that is up and tagged PROJECT_TAG (ListClusters
        answers newest first; clusters the host may not describe are not the project's)."""
        emr = self.emr_job_runner.make_emr_client()
        for page in emr.get_paginator("list_clusters").paginate(ClusterStates=list(UP_STATES)):
            for summary in page["Clusters"]:
                try:
                    cluster = emr.describe_cluster(ClusterId=summary["Id"])["Cluster"]
                except ClientError as error:
                    if error.response["Error"]["Code"] in NOT_THE_PROJECTS:
                        continue
                    raise
                if PROJECT_TAG in cluster.get("Tags", []):
                    return summary["Id"]
        raise dg.Failure(
            description=f"no EMR cluster tagged {PROJECT_TAG['Key']}={PROJECT_TAG['Value']} is "
            f"up in {self.region_name}: start one with `{START_CLUSTER}`",
            allow_retries=False,
        )

    def require_live_cluster(self) -> None:
        """DescribeCluster before anything: an ended, unknown or foreign cluster fails in one
        line."""
        try:
            status = self.emr_job_runner.describe_cluster(self.cluster_id)["Cluster"]["Status"]
        except ClientError as error:
            code = error.response["Error"]["Code"]
            if code in UNKNOWN_CLUSTER:
                state = f"not found in {self.region_name}"
            elif code in NOT_THE_PROJECTS:
                tag = f"{PROJECT_TAG['Key']}={PROJECT_TAG['Value']}"
                state = f"not the project's (not tagged {tag}, or not in {self.region_name})"
            else:
                raise
        else:
            if status["State"] not in ENDED_STATES:
                return
            reason = status.get("StateChangeReason", {}).get("Message")
            state = status["State"] + (f" ({reason})" if reason else "")
        pin = " (FRUITS_EMR_CLUSTER_ID pins it: unset it for the tagged one)"
        raise dg.Failure(
            description=f"EMR cluster {self.cluster_id} is {state}: start one with "
            f"`{START_CLUSTER}`{pin if self.pinned_cluster_id else ''}",
            allow_retries=False,
        )

    def wait_for_completion_and_log(self, run_id, step_key, emr_step_id, step_context):  # noqa: ANN001, ANN201
        log = step_context.log
        s3 = boto3.resource("s3", region_name=self.region_name)
        try:
            yield from self.wait_for_completion(
                step_context, s3, run_id, step_key, emr_step_id, self.poll_interval_s
            )
        except (dg.DagsterExecutionInterruptedError, KeyboardInterrupt):
            self.cancel_step(log, emr_step_id)
            raise
        except EmrError as error:
            if self.wait_for_logs:
                self.log_step_logs(log, emr_step_id)
            raise EmrError(self.failure_line(emr_step_id)) from error
        if self.wait_for_logs:
            self.log_step_logs(log, emr_step_id)

    def cancel_step(self, log, emr_step_id: str) -> None:  # noqa: ANN001
        """CancelSteps with SEND_INTERRUPT, EMR's default: SIGTERM to the step's processes."""
        try:
            answer = self.emr_job_runner.make_emr_client().cancel_steps(
                ClusterId=self.cluster_id,
                StepIds=[emr_step_id],
                StepCancellationOption="SEND_INTERRUPT",
            )
        except ClientError as error:  # the interrupt goes on: say the step may still run
            log.error(f"interrupted, but EMR step {emr_step_id} was not cancelled: {error}")
            return
        info = answer["CancelStepsInfoList"][0]
        outcome = f"{info['Status']} {info.get('Reason') or ''}".strip()
        log.warning(f"interrupted: cancelling EMR step {emr_step_id}: {outcome}")

    def failure_line(self, emr_step_id: str) -> str:
        """The step's end as EMR saw it: its state and FailureDetails (root cause, log file)."""
        status = self.emr_job_runner.describe_step(self.cluster_id, emr_step_id)["Step"]["Status"]
        details = status.get("FailureDetails") or {}
        why = [
            details.get("Reason"),
            details.get("Message"),
            status["StateChangeReason"].get("Message"),
        ]
        where = f" (log: {details['LogFile']})" if details.get("LogFile") else ""
        return f"EMR step {emr_step_id} {status['State']}: {'; '.join(w for w in why if w)}{where}"

    def log_step_logs(self, log, emr_step_id: str) -> None:  # noqa: ANN001
        """The step's driver logs into the Dagster logs when EMR pushed them within the wait,
        else a warning saying where they will be (a succeeded step is never failed for them)."""
        try:
            stdout, stderr = self.emr_job_runner.retrieve_logs_for_step_id(
                log, self.cluster_id, emr_step_id
            )
        except EmrError as late:
            log.warning(
                f"EMR step {emr_step_id}: {late} ({self.log_wait_s} s; EMR pushes step logs "
                f"about every 5 minutes): they will be under the cluster's LogUri, "
                f"{self.cluster_id}/steps/{emr_step_id}/"
            )
            return
        for record in parse_hadoop_log4j_records(stderr):  # YARN's log4j lines, parsed
            if record.level:
                log.log(record.level, f"Spark Driver stderr: {record.logger}: {record.message}")
            else:
                log.debug(f"Spark Driver stderr: {record.message}")
        log.debug(f"Spark Driver stdout:\n{stdout}")


class EmrStepLauncherResource(dg.ConfigurableResource, dg.IAttachDifferentObjectToOpContext):
    """The step launcher; its fields show in the UI's resource view, and steps get the
    launcher it builds (get_object_to_set_on_execution_context).

    EnvVars are resolved again on the cluster when the step starts there, so the same
    variables must be set in the cluster's environment (bootstrap.aws.emr_cluster does it).
    """

    cluster_id: str = Field(
        default="",
        description="The EMR cluster the steps run on; empty: the newest cluster tagged "
        "project=fruits that is up in the region, found when each step launches.",
    )
    region_name: str = Field(description="AWS region of the cluster (EU only: GDPR).")
    staging_bucket: str = Field(description="Bucket of the code packages and step files.")
    staging_prefix: str = Field(description="Key prefix in the staging bucket.")
    wait_for_logs: bool = Field(
        default=True,
        description="Fetch the step's stdout/stderr from the cluster's LogUri into the "
        "Dagster logs.",
    )
    log_wait_s: int = Field(
        default=360,
        description="Seconds to wait for a step's logs (EMR pushes them about every 5 "
        "minutes); late logs are a warning, never a failure.",
    )
    poll_interval_s: float = Field(
        default=15,
        description="Seconds between DescribeStep calls while a step runs (dagster_aws's "
        "interval: EMR throttles DescribeStep).",
    )

    # What it builds; a test's subclass adds a sleeping step instead of spark-submit.
    launcher_class: ClassVar[type[ProjectPackageStepLauncher]] = ProjectPackageStepLauncher

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        require_eu_region(self.region_name)  # before any step: GDPR

    def get_object_to_set_on_execution_context(self) -> dg.StepLauncher:
        return self.launcher_class(
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
            poll_interval_s=self.poll_interval_s,
            log_wait_s=self.log_wait_s,
        )


def emr_step_launcher(fruits: FruitsConfig, environ: Mapping[str, str]) -> EmrStepLauncherResource:
    """The launcher for the `fruits` configuration's region and staging location.

    On a cluster node (where Dagster builds the resources again) the cluster is the node's
    own, from job-flow.json; on the host, the one FRUITS_EMR_CLUSTER_ID pins when set, else
    the project's tagged cluster, found at each step's launch (no EnvVar frozen in the
    Dagster processes' environment: a new cluster needs no restart).
    """
    pinned = dg.EnvVar("FRUITS_EMR_CLUSTER_ID") if environ.get("FRUITS_EMR_CLUSTER_ID") else ""
    return EmrStepLauncherResource(
        cluster_id=cluster_id_on_node(environ) or pinned,
        region_name=fruits.region,
        staging_bucket=fruits.staging_bucket,
        staging_prefix=fruits.staging_prefix,
    )
