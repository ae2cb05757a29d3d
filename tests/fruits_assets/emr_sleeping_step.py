"""Definitions for test_emr.py's run-termination test: one asset that the real step launcher
runs on EMR, whose EMR step is a long sleep instead of spark-submit (the test is about the
launcher and the control plane, not Spark)."""

import dagster as dg
from dagster_aws.emr import EmrJobRunner

from fruits_assets.deployments.emr import EmrStepLauncherResource, ProjectPackageStepLauncher


class SleepingStepLauncher(ProjectPackageStepLauncher):
    def _get_emr_step_def(self, run_id, step_key, solid_name):  # noqa: ANN001, ANN202
        return EmrJobRunner.construct_step_dict_for_command(
            f"sleep for {solid_name}", ["bash", "-c", "sleep 60"], action_on_failure="CONTINUE"
        )


class SleepingStepLauncherResource(EmrStepLauncherResource):
    launcher_class = SleepingStepLauncher


@dg.asset(required_resource_keys={"pyspark_step_launcher"})
def sleeping_step() -> None:
    raise AssertionError("runs on EMR, never here")


defs = dg.Definitions(
    assets=[sleeping_step],
    resources={
        "pyspark_step_launcher": SleepingStepLauncherResource(
            cluster_id=dg.EnvVar("FRUITS_EMR_CLUSTER_ID"),
            region_name=dg.EnvVar("FRUITS_REGION"),
            staging_bucket=dg.EnvVar("FRUITS_STAGING_BUCKET"),
            staging_prefix=dg.EnvVar("FRUITS_STAGING_PREFIX"),
            poll_interval_s=0.2,
        )
    },
)
