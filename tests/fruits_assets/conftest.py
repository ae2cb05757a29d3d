import dagster as dg
import pytest

from fruits_assets.definitions import PIPELINE_ASSETS
from fruits_assets.deployments import local

# The pipeline's assets; feature_quality, a report on their output, has its own tests.
ALL_ASSETS = PIPELINE_ASSETS


@pytest.fixture
def asset_layout(fresh_layout, spark):
    """This test's own prefix (the runs' `fruits` resource points there: asset_config).

    Depends on `spark` so that the assets' SparkResource gets the test session back.
    """
    return fresh_layout


@pytest.fixture
def asset_config(fresh_layout) -> dict:
    """Fields of the `fruits` resource of this test's runs; a test changes them in place."""
    return {"prefix": fresh_layout.prefix, "namespace": fresh_layout.namespace}


@pytest.fixture
def asset_resources(asset_config, fruits_config):
    """The local deployment's resources with this test's configuration, as they are now."""
    return lambda: local.resources_with(fruits_config(**asset_config))


@pytest.fixture
def run_assets(asset_resources):
    def _run(dates, assets=ALL_ASSETS, instance=None, raise_on_error=False, **kw):
        tags = {
            "dagster/asset_partition_range_start": min(dates),
            "dagster/asset_partition_range_end": max(dates),
        }
        return dg.materialize(
            assets,
            instance=instance or dg.DagsterInstance.ephemeral(),
            resources=asset_resources(),
            tags=tags if len(dates) > 1 else None,
            partition_key=dates[0] if len(dates) == 1 else None,
            raise_on_error=raise_on_error,
            **kw,
        )

    return _run


@pytest.fixture
def check_outcomes():
    """check key (fruits_assets.names) -> passed, for every check evaluated in a run."""

    def _outcomes(result) -> dict[dg.AssetCheckKey, bool]:
        return {e.asset_check_key: e.passed for e in result.get_asset_check_evaluations()}

    return _outcomes
