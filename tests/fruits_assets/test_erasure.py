"""GDPR erasure as a Dagster job: the run erases the image and records it in the assets' history."""

import dagster as dg
import pytest

from fruits_assets import names
from fruits_assets.assets import image_features, raw_images
from fruits_assets.erasure import ERASE_JOB, erase_image_job
from spark import tables
from spark.layout import split_uri
from spark.pipeline import read_table
from spark.storage import get_json, list_keys

pytestmark = pytest.mark.slow
D1 = "2026-11-05"


@pytest.fixture
def erase_job(asset_resources):
    def _job() -> dg.JobDefinition:
        definitions = dg.Definitions(jobs=[erase_image_job], resources=asset_resources())
        return definitions.get_job_def(ERASE_JOB)

    return _job


def request(**fields: str) -> dict:
    return {"ops": {"erase": {"config": fields}}}


def test_the_job_erases_and_leaves_an_audit_trail(
    asset_layout, upload_sample, run_assets, erase_job, spark, s3
) -> None:
    layout = asset_layout
    upload_sample(layout, [D1], per_date=3, broken=False)
    instance = dg.DagsterInstance.ephemeral()
    assert run_assets([D1], assets=[raw_images, image_features], instance=instance).success
    raw = sorted(list_keys(s3, layout.bucket, layout.raw_date_key(D1)))
    path = f"s3://{layout.bucket}/{raw[0]}"
    features = tables.table(layout, tables.FEATURES)
    snapshot = tables.current_snapshot(spark, features)

    result = erase_job().execute_in_process(run_config=request(path=path), instance=instance)

    assert result.success
    assert list_keys(s3, layout.bucket, raw[0]) == []
    # The run's table (the `fruits` resource's namespace) lost the image on `main`, in a new
    # snapshot, and its history before the erasure is gone (it held the image).
    assert tables.current_snapshot(spark, features) != snapshot
    assert not tables.snapshot_exists(spark, features, snapshot)
    published = read_table(spark, layout, tables.FEATURES, [D1])
    assert path not in {r.path for r in published.select("path").collect()}
    assert published.count() == len(raw) - 1
    observed = {
        o.asset_key.to_user_string(): o for o in result.asset_observations_for_node("erase")
    }
    assert set(observed) == {"raw_images", "image_features", "reduced_features"}
    assert all(o.partition == D1 for o in observed.values())
    assert observed["raw_images"].metadata[names.ROWS_REMOVED].value == 1
    assert observed["image_features"].metadata[names.ROWS_REMOVED].value == 1
    assert observed["reduced_features"].metadata[names.ROWS_REMOVED].value == 0  # no table yet
    assert all(o.metadata[names.ERASED_PATH].value == path for o in observed.values())
    record = observed["raw_images"].metadata[names.AUDIT_RECORD].value
    assert record["path"] == path
    assert record["rows_removed"] == {tables.FEATURES: 1}
    # The resource's write grace: the image was in no run still writing.
    assert record["tables"][tables.FEATURES]["staged_in_flight"] == []
    records = list_keys(s3, layout.bucket, layout.key("audit/erasures"))  # on S3 too
    assert [get_json(s3, layout.bucket, key) for key in records] == [record]
    bucket, tombstone = split_uri(record["tombstone"])  # the audit record names real objects
    assert list_keys(s3, bucket, tombstone) == [tombstone]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"path": "s3://{bucket}/elsewhere/x.jpg"}, "not a raw image of this pipeline"),
        ({"sha256": "0" * 64}, "no raw image has SHA-256"),
        ({"path": "s3://{bucket}/x.jpg", "sha256": "ab"}, "exactly one of `path` and `sha256`"),
        ({}, "exactly one of `path` and `sha256`"),
    ],
)
def test_a_bad_request_fails_the_run_with_the_reason(
    asset_layout, erase_job, fields, reason
) -> None:
    fields = {k: v.format(bucket=asset_layout.bucket) for k, v in fields.items()}
    result = erase_job().execute_in_process(run_config=request(**fields), raise_on_error=False)
    assert not result.success
    assert reason in result.failure_data_for_node("erase").error.message
