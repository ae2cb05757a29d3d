"""GDPR erasure: one image leaves raw, features and reduced; only its date is rewritten."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from spark.erasure import erase_image
from spark.manifest import list_manifest, read_manifest, write_manifest
from spark.pipeline import (
    extract_features,
    fit_and_save_pca,
    read_dataset,
    rows_per_date,
    write_reduced,
)
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
    spark, s3, settings, fresh_layout, upload_sample, weights, monkeypatch
) -> None:
    layout = fresh_layout
    upload_sample(layout, [D1, D2], per_date=5, broken=False)
    for date in (D1, D2):  # what raw_images does
        write_manifest(s3, layout, date, list_manifest(s3, layout, date))
    extract_features(spark, layout, [D1, D2], weights, tf_threads=1)
    version = fit_and_save_pca(spark, layout, s3, k=3).version
    write_reduced(spark, layout, [D1, D2], version)
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
        "bootstrap.erase",
        "--sha256",
        hashlib.sha256(body).hexdigest(),
    ]
    env = {**os.environ, "FRUITS_PREFIX": layout.prefix}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["path"] == f"s3://{settings.bucket}/{raw[1]}"

    for key in raw[:2]:
        assert key not in list_keys(s3, settings.bucket, layout.raw_date_key(D1))
    features = read_dataset(spark, layout.features_uri())
    reduced = read_dataset(spark, layout.reduced_uri())
    assert not {r.path for r in features.collect()} & {
        f"s3://{settings.bucket}/{k}" for k in raw[:2]
    }
    assert rows_per_date(features) == {D1: 3, D2: 5}
    assert etags(s3, settings.bucket, layout.key("features", f"upload_date={D2}")) == untouched

    # The checks still pass afterwards.
    manifest = {d: read_manifest(s3, layout, d).num_rows for d in (D1, D2)}
    assert every_image_accounted(manifest, rows_per_date(features), {}).passed
    assert reduced_matches_features(rows_per_date(features), reduced, 3, version).passed

    records = list_keys(s3, settings.bucket, layout.key("audit/erasures"))
    assert len(records) == 2
    audit = get_json(s3, settings.bucket, records[0])
    assert audit["upload_date"] == D1 and len(audit["sha256"]) == 64


def test_erasure_refuses_paths_outside_raw(spark, s3, fresh_layout) -> None:
    with pytest.raises(ValueError, match="not a raw image"):
        erase_image(spark, fresh_layout, s3, f"s3://{fresh_layout.bucket}/elsewhere/x.jpg")
