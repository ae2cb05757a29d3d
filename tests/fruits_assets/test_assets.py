"""Materializing the assets on local Spark and the local S3 server, good data and doctored."""

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import boto3
import dagster as dg
import numpy as np
import pytest

from fruits_assets import names
from fruits_assets.assets import image_features, raw_images
from spark import tables
from spark.pipeline import read_features, read_table, reject_rows
from spark.storage import list_keys
from spark.tables import FEATURES, REDUCED

pytestmark = pytest.mark.slow
D1, D2, D3 = "2026-11-02", "2026-11-03", "2026-11-04"
ALL_CHECKS_PASSED = {
    names.STORAGE_IN_EU: True,
    names.EVERY_IMAGE_ACCOUNTED: True,
    names.VECTORS_FINITE: True,
    names.REJECT_RATE: True,
    names.EXPLAINED_VARIANCE: True,
    names.MATCHES_FEATURES: True,
}


@pytest.fixture
def asset_config(asset_config, fresh_layout) -> dict:
    """The runs' tables in this test's own Iceberg namespace (as `asset_layout` reads them)."""
    asset_config["namespace"] = fresh_layout.namespace
    return asset_config


def materialized(result, asset: dg.AssetKey) -> list:
    return [m for m in result.get_asset_materialization_events() if m.asset_key == asset]


def test_one_date_materializes_and_passes_every_check(
    asset_layout, upload_sample, run_assets, check_outcomes, spark
) -> None:
    upload_sample(asset_layout, [D1], per_date=40)  # + 2 broken: a 4.8% reject rate, under 5%
    instance = dg.DagsterInstance.ephemeral()
    result = run_assets([D1], instance=instance)
    assert result.success
    assert check_outcomes(result) == ALL_CHECKS_PASSED
    features = materialized(result, names.IMAGE_FEATURES)
    assert [m.partition for m in features] == [D1]
    metadata = features[0].materialization.metadata
    assert metadata[names.ROW_COUNT].value == 40
    assert metadata[names.REJECT_COUNT].value == 2  # the sample's two broken files
    assert metadata[names.WEIGHTS_SHA256].value and metadata[names.IMAGES_PER_S].value > 0
    assert metadata[names.SPARK_APPLICATION_ID].value.startswith("local-")
    pca = materialized(result, names.PCA_MODEL)[0].materialization.metadata
    assert pca[names.EXPLAINED_VARIANCE_PLOT].value.startswith(
        "![explained variance](data:image/png;base64,"
    )
    reduced = materialized(result, names.REDUCED_FEATURES)[0].materialization.metadata
    assert reduced[names.PCA_VERSION].value == pca[names.VERSION].value
    # The numbers a user watches are numeric metadata: the UI plots them over time.
    assert metadata[names.REJECT_SHARE].value == pytest.approx(2 / 42)
    assert isinstance(pca[names.EXPLAINED_VARIANCE_AT_K], dg.FloatMetadataValue)
    assert pca[names.PCA_K].value == reduced[names.PCA_K].value == 100  # the default pca_k
    checks = {e.check_name: e.metadata for e in result.get_asset_check_evaluations()}
    assert checks[names.REJECT_RATE.name]["rate"].value == pytest.approx(2 / 42)
    assert checks[names.REJECT_RATE.name]["limit"].value == 0.05
    assert checks[names.EVERY_IMAGE_ACCOUNTED.name]["expected"].value == 42
    assert checks[names.EXPLAINED_VARIANCE.name]["explained"].value >= 0.7
    assert metadata[names.SPARK_UI].value.startswith("http://127.0.0.1:")
    # Lineage: each table's materialization names the snapshot of `main` it published (also
    # its data version); the PCA and the reduced rows name the features snapshot they read.
    features_table = tables.table(asset_layout, FEATURES)
    reduced_table = tables.table(asset_layout, REDUCED)
    features_main = tables.current_snapshot(spark, features_table)
    assert metadata[names.TABLE].value == features_table.qualified
    assert metadata[names.TABLE_LOCATION].value == features_table.location
    assert metadata[names.SNAPSHOT_ID].value == features_main
    assert features[0].materialization.tags["dagster/data_version"] == str(features_main)
    assert pca[names.FEATURES_SNAPSHOT].value == features_main
    assert reduced[names.FEATURES_SNAPSHOT].value == features_main
    assert reduced[names.TABLE].value == reduced_table.qualified
    assert reduced[names.SNAPSHOT_ID].value == tables.current_snapshot(spark, reduced_table)
    assert reduced[names.SWITCHED_DATES].value == []
    assert reduced[names.ROW_COUNT].value == 40

    # Progress in the run log, one grep-able logfmt line per partition and stage.
    logged = [e.user_message for e in instance.all_logs(result.run_id)]
    done = f"run_id={result.run_id} asset=image_features stage=featurize partition={D1} done=42"
    assert any(m.startswith(done) and "to_go=0" in m for m in logged)
    assert any("asset=reduced_features stage=reduce event=done" in m for m in logged)


def test_a_range_of_dates_is_one_run_and_one_spark_job(
    asset_layout, upload_sample, run_assets, spark
) -> None:
    upload_sample(asset_layout, [D1, D2, D3], per_date=6, broken=False)
    instance = dg.DagsterInstance.ephemeral()
    result = run_assets([D1, D2, D3], instance=instance)
    assert result.success
    assert len(instance.get_run_records()) == 1
    for asset in (names.RAW_IMAGES, names.IMAGE_FEATURES, names.REDUCED_FEATURES):
        assert sorted(m.partition for m in materialized(result, asset)) == [D1, D2, D3]
    features = materialized(result, names.IMAGE_FEATURES)
    metadata = features[0].materialization.metadata
    # One extract_features call covered the three dates: one model per Python worker.
    assert metadata[names.MODEL_BUILDS].value <= 2
    assert metadata[names.ROW_COUNT].value == 18
    assert {r.data[names.UPLOAD_DATE] for r in metadata[names.PER_DATE].value.records} == {
        D1,
        D2,
        D3,
    }
    # ...and one commit: every date's materialization names the same snapshot.
    snapshots = {m.materialization.metadata[names.SNAPSHOT_ID].value for m in features}
    assert snapshots == {tables.current_snapshot(spark, tables.table(asset_layout, FEATURES))}


def test_rematerializing_a_date_is_idempotent(
    asset_layout, upload_sample, run_assets, spark
) -> None:
    upload_sample(asset_layout, [D1], per_date=6, broken=False)
    assert run_assets([D1]).success
    first = sorted(
        (r.path, tuple(r.features)) for r in read_features(spark, asset_layout).collect()
    )
    assert run_assets([D1]).success
    second = sorted(
        (r.path, tuple(r.features)) for r in read_features(spark, asset_layout).collect()
    )
    assert first == second and len(second) == 6


def test_an_image_deleted_after_the_manifest_ends_as_a_reject(
    asset_layout, upload_sample, run_assets, check_outcomes, s3, settings, spark, asset_config
) -> None:
    from fruits_assets.assets import image_features, raw_images

    asset_config["max_reject_rate"] = 0.5  # 1 of 6
    upload_sample(asset_layout, [D1], per_date=6, broken=False)
    assert run_assets([D1], assets=[raw_images]).success
    # An image disappears between the manifest and the features: it is accounted for.
    gone = list_keys(s3, settings.bucket, asset_layout.raw_date_key(D1))[0]
    s3.delete_object(Bucket=settings.bucket, Key=gone)
    result = run_assets([D1], assets=[image_features])
    assert result.success
    assert check_outcomes(result)[names.EVERY_IMAGE_ACCOUNTED] is True
    [reject] = reject_rows(read_table(spark, asset_layout, FEATURES)).collect()
    assert reject.path == f"s3://{settings.bucket}/{gone}"
    assert "no longer in S3" in reject.reject_reason and reject.features is None


def test_a_bucket_outside_the_eu_fails_before_anything_is_written(
    asset_layout, run_assets, check_outcomes, settings, asset_config
) -> None:
    us = boto3.client("s3", region_name="us-east-1", endpoint_url=settings.s3_endpoint)
    us.create_bucket(Bucket="fruits-us-doctored")
    us.put_object(
        Bucket="fruits-us-doctored", Key=f"{asset_layout.raw_date_key(D1)}kiwi/a.jpg", Body=b"x"
    )
    asset_config["bucket"] = "fruits-us-doctored"
    result = run_assets([D1], assets=[raw_images])
    assert not result.success
    assert check_outcomes(result) == {names.STORAGE_IN_EU: False}
    keys = list_keys(us, "fruits-us-doctored", "")
    assert not any("manifests/" in k for k in keys)


def test_nan_features_fail_the_blocking_check(
    asset_layout,
    upload_sample,
    run_assets,
    check_outcomes,
    weights,
    tmp_path,
    asset_config,
    save_legacy_h5,
) -> None:
    from fruits_assets.assets import image_features, raw_images

    nan_first = [np.full_like(a, np.nan) if i == 0 else a for i, a in enumerate(weights.arrays)]
    save_legacy_h5(tmp_path / "nan.h5", nan_first)
    asset_config["weights"] = str(tmp_path / "nan.h5")
    upload_sample(asset_layout, [D1], per_date=4, broken=False)
    result = run_assets([D1], assets=[raw_images, image_features])
    assert not result.success
    outcomes = check_outcomes(result)
    assert outcomes[names.VECTORS_FINITE] is False
    assert outcomes[names.EVERY_IMAGE_ACCOUNTED] is True


def test_sample_labels_reach_the_manifest(asset_layout, upload_sample, run_assets) -> None:
    from fruits_assets.assets import raw_images

    upload_sample(asset_layout, [D2], per_date=8, broken=False)
    result = run_assets([D2], assets=[raw_images])
    labels = (
        materialized(result, names.RAW_IMAGES)[0]
        .materialization.metadata[names.IMAGES_PER_LABEL]
        .value
    )
    assert (
        Counter({r.data[names.LABEL]: r.data[names.N_IMAGES] for r in labels.records}).total() == 8
    )


def test_s3_down_at_start_fails_in_one_line_naming_the_endpoint(
    asset_layout, upload_sample, run_assets, s3, settings, unused_port, asset_config, spark
) -> None:
    upload_sample(asset_layout, [D1], per_date=2)
    down = f"http://127.0.0.1:{unused_port}"
    asset_config["s3_endpoint"] = down
    result = run_assets([D1], assets=[raw_images, image_features])
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.event_specific_data.error
    message = error.cause.message if error.cause else error.message
    assert f"cannot reach S3 at {down}" in message and "\n" not in message.strip()
    written = list_keys(s3, settings.bucket, asset_layout.key(""))
    assert [k for k in written if "/raw/" not in k] == []  # nothing published
    assert not tables.exists(spark, tables.table(asset_layout, FEATURES))  # nor any table


def test_two_runs_of_one_date_at_once_are_harmless(
    asset_layout, upload_sample, run_assets, check_outcomes, spark
) -> None:
    """bootstrap/local/dagster.yaml queues the second run of a date; even without it, both runs
    succeed and the date ends with one whole version (spark.tables: the second cherry-pick is
    refused and staged again on the first's `main`)."""
    upload_sample(asset_layout, [D1], per_date=12, broken=False)
    assets = [raw_images, image_features]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: run_assets([D1], assets=assets), range(2)))
    assert [r.success for r in results] == [True, True]
    assert all(all(check_outcomes(r).values()) for r in results)
    paths = [r.path for r in read_features(spark, asset_layout, [D1]).collect()]
    assert len(paths) == len(set(paths)) == 12
