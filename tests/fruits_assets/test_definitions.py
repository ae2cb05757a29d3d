import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from fruits_assets.definitions import defs
from fruits_assets.resources import FruitsConfig, SparkResource

ASSETS = ["raw_images", "image_features", "pca_model", "reduced_features"]


def asset_graph():
    return defs.get_repository_def().asset_graph


def test_the_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    assert {k.to_user_string() for k in asset_graph().get_all_asset_keys()} == {
        *ASSETS,
        "feature_quality",  # tests/fruits_assets/test_feature_quality.py
    }


def test_lineage_and_group() -> None:
    graph = asset_graph()
    parents = {
        a: {p.to_user_string() for p in graph.get(dg.AssetKey(a)).parent_keys} for a in ASSETS
    }
    assert parents == {
        "raw_images": set(),
        "image_features": {"raw_images"},
        "pca_model": {"image_features"},
        "reduced_features": {"image_features", "pca_model"},
    }
    assert {graph.get(dg.AssetKey(a)).group_name for a in ASSETS} == {"fruits"}


def test_partitions_and_single_run_backfills() -> None:
    graph = asset_graph()
    for name in ASSETS:
        node = graph.get(dg.AssetKey(name))
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
        if name != "pca_model":
            assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
            assert node.partitions_def.start.strftime("%Y-%m-%d") == "2026-11-01"
    assert graph.get(dg.AssetKey("pca_model")).partitions_def is None


def test_checks_are_blocking_and_cover_every_asset() -> None:
    specs = [spec for a in ASSETS for spec in defs.get_assets_def(a).check_specs]
    assert all(spec.blocking for spec in specs)
    checks = {(spec.asset_key.to_user_string(), spec.name) for spec in specs}
    assert checks == {
        ("raw_images", "storage_in_eu"),
        ("image_features", "every_image_accounted"),
        ("image_features", "vectors_finite"),
        ("image_features", "reject_rate"),
        ("pca_model", "explained_variance"),
        ("reduced_features", "matches_features"),
    }


def test_column_schemas_are_the_outputs_columns_each_described() -> None:
    """The UI's column schemas are the manifest's and the tables' own columns (so they cannot
    drift from what is written), each with a description."""
    from spark import tables
    from spark.manifest import MANIFEST_SCHEMA

    written = {
        "raw_images": MANIFEST_SCHEMA.names,
        "image_features": [c for c, _ in tables.column_types(tables.FEATURES)],
        "reduced_features": [c for c, _ in tables.column_types(tables.REDUCED)],
    }
    for name, columns in written.items():
        schema = asset_graph().get(dg.AssetKey(name)).metadata["dagster/column_schema"]
        assert [c.name for c in schema.columns] == columns
        assert all(c.description for c in schema.columns)


def test_local_resources_and_in_process_executor() -> None:
    resources = defs.resources
    assert isinstance(resources["fruits"], FruitsConfig)
    assert isinstance(resources["pyspark"], SparkResource)
    assert defs.executor is dg.in_process_executor


def test_loading_the_definitions_starts_no_spark() -> None:
    code = (
        "import fruits_assets.definitions, pyspark;"
        "from pyspark import SparkContext;"
        "assert SparkContext._active_spark_context is None;"
        "import sys; assert 'tensorflow' not in sys.modules; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "ok"


def test_every_asset_declares_its_kinds() -> None:
    graph = asset_graph()
    kinds = {a: graph.get(dg.AssetKey(a)).kinds for a in ASSETS}
    assert all(kinds.values()) and all("s3" in k for k in kinds.values())
    assert kinds["image_features"] == kinds["reduced_features"] == {"spark", "s3", "parquet"}


def test_dg_check_defs_finds_the_project(repo_root, tmp_path) -> None:
    """pyproject.toml's [tool.dg] points `dg` at fruits_assets.definitions."""
    dg_cli = Path(sys.executable).with_name("dg")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}  # no telemetry notice in a user's home
    done = subprocess.run(
        [str(dg_cli), "check", "defs"], cwd=repo_root, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "All definitions loaded successfully" in done.stdout + done.stderr
