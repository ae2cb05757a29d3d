import dagster as dg
import pytest

from fruits_assets.definitions import defs
from fruits_assets.resources import resources_for

ALL_ASSETS = list(defs.assets or ())


@pytest.fixture
def asset_layout(fresh_layout, spark, monkeypatch):
    """Assets read Settings from the environment: point them at this test's own prefix.

    Depends on `spark` so that the assets' SparkResource gets the test session back.
    """
    monkeypatch.setenv("FRUITS_PREFIX", fresh_layout.prefix)
    return fresh_layout


@pytest.fixture
def run_assets():
    def _run(dates, assets=ALL_ASSETS, instance=None, raise_on_error=False, **kw):
        tags = {
            "dagster/asset_partition_range_start": min(dates),
            "dagster/asset_partition_range_end": max(dates),
        }
        return dg.materialize(
            assets,
            instance=instance or dg.DagsterInstance.ephemeral(),
            resources=resources_for("local"),
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
