"""The `local` deployment: local Spark and the local S3 server (moto) on loopback, every asset
in-process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from fruits_assets.deployments.environment import fruits_config
from fruits_assets.resources import STEP_LAUNCHER, FruitsConfig, pipeline_resources

DEFAULTS = {
    "region": "eu-west-3",
    "bucket": "fruits-local",
    "s3_endpoint": "http://127.0.0.1:9070",
    # 2 cores; a task may run 3 times, so a crashed Python worker is retried as on a cluster.
    "spark_master": "local[2,3]",
    "weights": "random",
    "catalog_type": "jdbc",
    "catalog_uri": "jdbc:postgresql://127.0.0.1:9071/fruits?user=fruits",
}
# The local S3 server accepts any credentials. On AWS none are set: the default credential
# chain (instance profile, SSO, ...) finds real ones.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "local-dummy-key",
    "AWS_SECRET_ACCESS_KEY": "local-dummy-secret",
}


def config(environ: Mapping[str, str]) -> FruitsConfig:
    # Into the environment, not a field: boto3 and the JVM that Spark starts read them there.
    for key, value in DUMMY_CREDENTIALS.items():
        os.environ.setdefault(key, value)
    return fruits_config("local", DEFAULTS, environ)


def resources(environ: Mapping[str, str]) -> dict[str, Any]:
    return resources_with(config(environ))


def resources_with(fruits: FruitsConfig) -> dict[str, Any]:
    """No step launcher: the Spark assets run in the Dagster run's own process."""
    return pipeline_resources(fruits) | {STEP_LAUNCHER: dg.ResourceDefinition.none_resource()}
