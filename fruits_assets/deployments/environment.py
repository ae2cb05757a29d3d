"""The one mapping from environment variables to configuration: field `x` of the `fruits`
resource (fruits_assets.resources.FruitsConfig) may be set by the variable FRUITS_X.

Inside a process the configuration is the resources' fields; variables carry it across process
boundaries (the Dagster CLI's subprocesses, the fake EMR's nodes, the real cluster's spark-env,
which bootstrap.aws.emr_cluster writes from FRUITS_*). They are read here, once, when a
deployment builds its resources, except the fields a deployment declares as `dg.EnvVar`
(per-account values): Dagster resolves those when a run starts, on the Dagster host and again
on the EMR cluster, where the step launcher builds the resources from the definitions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, get_args

import dagster as dg

from fruits_assets.resources import FruitsConfig, configured
from spark.settings import ConfigError

# The registry names the deployment itself (FRUITS_DEPLOYMENT, read in __init__).
NOT_FROM_VARIABLES = ("deployment",)


def variable(field: str) -> str:
    return f"FRUITS_{field.upper()}"


def parse(field: str, raw: str) -> Any:
    """A variable's text as the field's type: numbers are checked here, in one line."""
    annotation = FruitsConfig.model_fields[field].annotation
    # An optional number (`float | None`) is parsed as the number.
    kind = next((k for k in (int, float) if k in (annotation, *get_args(annotation))), None)
    if kind is None:
        return raw
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{variable(field)} must be {kind.__name__}, got {raw!r}") from None


def fruits_config(
    deployment: str, defaults: Mapping[str, Any], environ: Mapping[str, str]
) -> FruitsConfig:
    """The deployment's defaults, each overridden by its FRUITS_X when set (not empty),
    but for EnvVar fields, which Dagster reads itself. They become the fields' defaults (see
    resources.configured), so a run that overrides some fields keeps these for the others."""
    values = {"deployment": deployment, **defaults}
    for field in FruitsConfig.model_fields:
        raw = environ.get(variable(field))
        if (
            raw
            and field not in NOT_FROM_VARIABLES
            and not isinstance(defaults.get(field), dg.EnvVar)
        ):
            values[field] = parse(field, raw)
    return configured(values)()


def resolved(fruits: FruitsConfig, environ: Mapping[str, str]) -> FruitsConfig:
    """The same configuration with its EnvVars read from `environ`: what a run would get,
    for command-line tools outside Dagster."""
    values = {}
    for field in FruitsConfig.model_fields:
        value = getattr(fruits, field)
        if isinstance(value, dg.EnvVar):
            value = environ.get(value.env_var_name)
            if not value:
                raise ConfigError(f"{getattr(fruits, field).env_var_name} must be set")
        values[field] = value
    return FruitsConfig(**values)
