"""The `emr` deployment: Spark assets run as steps on an existing EMR cluster (EMR 7.x,
Spark 3.5), through the step launcher of fruits_assets.emr.

Per account, read by Dagster as EnvVars in the environment of the Dagster host AND in the
cluster's spark-env (bootstrap.aws.emr_cluster puts every FRUITS_* variable there):
FRUITS_REGION, FRUITS_BUCKET, FRUITS_STAGING_BUCKET, FRUITS_WEIGHTS (an s3:// URI: the cluster
never downloads weights from the internet). No cluster id: each step's launch finds the
newest cluster tagged project=fruits that is up (fruits_assets.emr); FRUITS_EMR_CLUSTER_ID, on
the host only, pins one (the nodes read their cluster's id from job-flow.json). Real
credentials come from the default chain (instance profile on the cluster, SSO or a profile on
the host).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from fruits_assets.deployments.environment import fruits_config, variable
from fruits_assets.emr import emr_step_launcher
from fruits_assets.resources import STEP_LAUNCHER, FruitsConfig, pipeline_resources

PER_ACCOUNT = ("region", "bucket", "staging_bucket", "weights")
DEFAULTS = {field: dg.EnvVar(variable(field)) for field in PER_ACCOUNT} | {"catalog_type": "glue"}


def config(environ: Mapping[str, str]) -> FruitsConfig:
    return fruits_config("emr", DEFAULTS, environ)


def resources(environ: Mapping[str, str]) -> dict[str, Any]:
    fruits = config(environ)
    return pipeline_resources(fruits) | {STEP_LAUNCHER: emr_step_launcher(fruits, environ)}
