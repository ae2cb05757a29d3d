"""GDPR erasure: one image leaves raw, features and reduced; only its date is rewritten, and no
Parquet object anywhere under the prefix (previous, staged, or published later) still holds it."""

import hashlib
import io
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from spark.erasure import erase_image
from spark.fetch import ImageSource
from spark.images import manifest_images
from spark.manifest import read_manifest
from spark.pipeline import (
    fit_and_save_pca,
    publish_staged,
    read_dataset,
    stage_features,
    stage_reduced,
    write_reduced,
)
from spark.publish import published_versions, rows_per_date
from spark.quality import every_image_accounted, reduced_matches_features
from spark.storage import get_json, list_keys

pytestmark = pytest.mark.slow
D1, D2 = "2026-03-10", "2026-03-11"


def etags(s3, bucket: str, prefix: str) -> dict[str, str]:
    return {
        o["Key"]: o["ETag"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    }


def test_erasure_by_path_and_by_hash(
    spark, s3, settings, fresh_layout, upload_sample, weights, extract
) -> None:
    layout = fresh_layout
    upload_sample(layout, [D1, D2], per_date=5, broken=False)
    extract(layout, [D1, D2], weights)  # the manifests (what raw_images does), then features
    version = fit_and_save_pca(spark, layout, s3, k=3, weights_sha256=weights.sha256).version
    write_reduced(spark, layout, s3, [D1, D2], version)
    untouched = etags(s3, settings.bucket, layout.key("features", f"upload_date={D2}"))

    raw = sorted(list_keys(s3, settings.bucket, layout.raw_date_key(D1)))
    by_path = f"s3://{settings.bucket}/{raw[0]}"
    record = erase_image(spark, layout, s3, by_path)
    assert record["rows_removed"] == {"features": 1, "rejects": 0, "reduced": 1}

    # By content hash, through the command (its own process: it stops its Spark session).
    body = s3.get_object(Bucket=settings.bucket, Key=raw[1])["Body"].read()
    command = [
        sys.executable,
        "-m",
        "bootstrap.aws.erase",
        "--sha256",
        hashlib.sha256(body).hexdigest(),
    ]
    env = {**os.environ, "FRUITS_PREFIX": layout.prefix}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["path"] == f"s3://{settings.bucket}/{raw[1]}"

    for key in raw[:2]:
        assert key not in list_keys(s3, settings.bucket, layout.raw_date_key(D1))
    features = read_dataset(spark, layout, "features")
    rejects = read_dataset(spark, layout, "rejects")
    reduced = read_dataset(spark, layout, "reduced")
    assert not {r.path for r in features.collect()} & {
        f"s3://{settings.bucket}/{k}" for k in raw[:2]
    }
    assert rows_per_date(features) == {D1: 3, D2: 5}
    assert etags(s3, settings.bucket, layout.key("features", f"upload_date={D2}")) == untouched

    # The checks still pass afterwards.
    manifest = {d: read_manifest(s3, layout, d).num_rows for d in (D1, D2)}
    assert manifest == rows_per_date(features)
    expected = manifest_images(spark, layout, [D1, D2])
    assert every_image_accounted(expected, features, rejects).passed
    assert reduced_matches_features(rows_per_date(features), reduced, 3, version).passed

    records = list_keys(s3, settings.bucket, layout.key("audit/erasures"))
    assert len(records) == 2
    audit = get_json(s3, settings.bucket, records[0])
    assert audit["upload_date"] == D1 and len(audit["sha256"]) == 64


def test_erasure_refuses_paths_outside_raw(spark, s3, fresh_layout) -> None:
    with pytest.raises(ValueError, match="not a raw image"):
        erase_image(spark, fresh_layout, s3, f"s3://{fresh_layout.bucket}/elsewhere/x.jpg")


def parquet_paths(s3, layout) -> dict[str, set[str]]:
    """Every Parquet object under the layout's prefix, whatever wrote it (published, previous or
    staged versions, manifests), read whole: key -> the values of its `path` column."""
    found = {}
    for key in list_keys(s3, layout.bucket, layout.prefix + "/"):
        if not key.endswith(".parquet"):
            continue
        body = s3.get_object(Bucket=layout.bucket, Key=key)["Body"].read()
        table = pq.read_table(io.BytesIO(body))
        found[key] = (
            set(table.column("path").to_pylist()) if "path" in table.column_names else set()
        )
    return found


def first_raw_path(s3, layout, date: str) -> str:
    first = sorted(list_keys(s3, layout.bucket, layout.raw_date_key(date)))[0]
    return f"s3://{layout.bucket}/{first}"


def holding(s3, layout, path: str) -> list[str]:
    return sorted(key for key, paths in parquet_paths(s3, layout).items() if path in paths)


def test_an_erasure_leaves_no_parquet_object_holding_the_image(
    spark, s3, settings, fresh_layout, upload_sample, weights, extract
) -> None:
    layout = fresh_layout
    upload_sample(layout, [D1, D2], per_date=4, broken=False)
    extract(layout, [D1, D2], weights)
    extract(layout, [D1, D2], weights)  # the first version stays, for readers still on it
    version = fit_and_save_pca(spark, layout, s3, k=3, weights_sha256=weights.sha256).version
    write_reduced(spark, layout, s3, [D1, D2], version)
    # Versions that were staged and never published: an audit that failed, say.
    failed = stage_features(
        spark, layout, s3, [D1], weights, source=ImageSource.of(settings), tf_threads=1
    )
    stage_reduced(spark, layout, s3, [D1], version)
    path = first_raw_path(s3, layout, D1)
    before = holding(s3, layout, path)
    staged_prefix = layout.key("features", "_staging", failed.staged.attempt)
    # The scan sees every copy: manifest, two feature versions, reduced, both staged versions.
    assert any(k.startswith(staged_prefix) for k in before)
    assert any(k.startswith(layout.key("reduced", "_staging")) for k in before)
    assert (
        len([k for k in before if k.startswith(layout.key("features", f"upload_date={D1}"))]) >= 2
    )
    assert any(k.startswith(layout.key("manifests")) for k in before)

    record = erase_image(spark, layout, s3, path)

    assert holding(s3, layout, path) == []
    assert path in record["objects_deleted"]

    def listed(uri: str) -> bool:  # an object deleted, or one under a folder deleted
        return any(uri == d or uri.startswith(f"{d}/") for d in record["objects_deleted"])

    # Every object that held the image is listed (the manifest is rewritten, not deleted), and
    # nothing listed is still there.
    held = {f"s3://{settings.bucket}/{k}" for k in before} - {layout.manifest_uri(D1)}
    assert [u for u in held if not listed(u)] == []
    remaining = [
        f"s3://{settings.bucket}/{k}" for k in list_keys(s3, settings.bucket, layout.prefix)
    ]
    assert [u for u in remaining if not u.endswith("/") and listed(u)] == []
    # The other images are all still there, published and accounted for.
    features = read_dataset(spark, layout, "features")
    rejects = read_dataset(spark, layout, "rejects")
    assert rows_per_date(features) == {D1: 3, D2: 4}
    assert every_image_accounted(manifest_images(spark, layout, [D1, D2]), features, rejects).passed
    assert rows_per_date(read_dataset(spark, layout, "reduced")) == {D1: 3, D2: 4}


def test_a_run_staged_before_an_erasure_and_published_after_does_not_bring_it_back(
    spark, s3, settings, fresh_layout, upload_sample, weights, extract
) -> None:
    layout = fresh_layout
    upload_sample(layout, [D1, D2], per_date=4, broken=False)
    extract(layout, [D1, D2], weights)  # a published version, which the erasure rewrites
    run = stage_features(
        spark, layout, s3, [D1, D2], weights, source=ImageSource.of(settings), tf_threads=1
    )
    path = first_raw_path(s3, layout, D1)
    assert any("_staging" in k for k in holding(s3, layout, path))  # the staged run holds it

    record = erase_image(spark, layout, s3, path)
    assert record["rows_removed"]["features"] == 1
    publish_staged(spark, layout, s3, run.staged)

    features = read_dataset(spark, layout, "features")
    rejects = read_dataset(spark, layout, "rejects")
    assert path not in {r.path for r in features.collect()}
    assert path not in read_manifest(s3, layout, D1).column("path").to_pylist()
    assert holding(s3, layout, path) == []
    # Only the erased image is gone: the run's other rows of that date are published, and it is
    # the run's version that is published (the erasure's rewrite is not a newer write).
    assert rows_per_date(features) == {D1: 3, D2: 4}
    assert run.features_per_date == {D1: 3, D2: 4}
    assert published_versions(spark, layout.dataset("features")) == {
        D1: run.staged.attempt,
        D2: run.staged.attempt,
    }
    assert every_image_accounted(manifest_images(spark, layout, [D1, D2]), features, rejects).passed
