"""Deployments: where the pipeline runs. Each is one module here with two functions:
- `config(environ) -> FruitsConfig`: its values of the `fruits` resource (its defaults, each
  overridable by a FRUITS_* variable: see .environment);
- `resources(environ) -> dict`: its resources, its step launcher (`pyspark_step_launcher`)
  included.
Adding a deployment is a module and one line in DEPLOYMENTS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Protocol

from fruits_assets.deployments import emr, local
from fruits_assets.deployments.environment import resolved
from fruits_assets.resources import FruitsConfig
from spark.settings import ConfigError, Settings


class Deployment(Protocol):
    """A module with these two functions (or any object: a test registers one)."""

    def config(self, environ: Mapping[str, str]) -> FruitsConfig: ...

    def resources(self, environ: Mapping[str, str]) -> dict[str, Any]: ...


DEPLOYMENTS: dict[str, Deployment] = {"local": local, "emr": emr}
DEFAULT_DEPLOYMENT = "local"


def current_deployment(environ: Mapping[str, str] | None = None) -> str:
    """FRUITS_DEPLOYMENT (default local): this is its one reader."""
    environ = os.environ if environ is None else environ
    name = environ.get("FRUITS_DEPLOYMENT") or DEFAULT_DEPLOYMENT
    deployment(name)
    return name


def deployment(name: str) -> Deployment:
    try:
        return DEPLOYMENTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown deployment {name!r}: one of {sorted(DEPLOYMENTS)} (fruits_assets.deployments)"
        ) from None


def resources_for(name: str, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    return deployment(name).resources(os.environ if environ is None else environ)


def current_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The current deployment's Settings outside Dagster (command-line tools), its EnvVars
    read from `environ` (default: this process's environment)."""
    environ = os.environ if environ is None else environ
    fruits = deployment(current_deployment(environ)).config(environ)
    return resolved(fruits, environ).settings()
