"""GDPR erasure: one image leaves raw, the features and the reduced table, their history and
every file under the warehouse (published, previous, staged or abandoned); only its date is
rewritten; a run staged before the erasure cannot bring it back, and a later upload at the
same path is a new image."""

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from collections import defaultdict

import pyarrow.parquet as pq
import pytest
from PIL import Image
from pyiceberg.avro.file import AvroFile
from pyspark.sql import functions as F

from spark import tables
from spark.erasure import erase_image
from spark.fetch import ImageSource
from spark.images import manifest_images, tombstoned
from spark.layout import PARTITION_COLUMN, path_digest
from spark.manifest import read_manifest
from spark.model import load_weights
from spark.pca import publish_pca
from spark.pipeline import (
    fit_pca_version,
    publish_staged,
    read_features,
    read_table,
    reject_rows,
    stage_features,
    stage_reduced,
)
from spark.quality import every_image_accounted, reduced_matches_features
from spark.storage import get_json, list_keys

pytestmark = pytest.mark.slow
D1, D2 = "2026-03-10", "2026-03-11"


def accounting(spark, s3, layout, dates):
    """every_image_accounted on the published table against the manifests less tombstones."""
    rows = read_table(spark, layout, tables.FEATURES, dates)
    expected = manifest_images(spark, layout, dates, tombstoned(s3, layout, dates))
    return every_image_accounted(expected, read_features(spark, layout, dates), reject_rows(rows))


def raw_paths(s3, layout, date: str) -> list[str]:
    return [
        f"s3://{layout.bucket}/{key}"
        for key in sorted(list_keys(s3, layout.bucket, layout.raw_date_key(date)))
    ]


def data_files(spark, layout, name: str, date: str) -> set[str]:
    """The data files of one date that `main` of a table references."""
    table = tables.table(layout, name)
    rows = spark.sql(
        f"SELECT file_path FROM {table.qualified}.files "
        f"WHERE partition.{PARTITION_COLUMN} = '{date}'"
    ).collect()
    return {r.file_path for r in rows}


def etags(s3, layout, uris: set[str]) -> dict[str, str]:
    keys = [uri.split(f"{layout.bucket}/", 1)[1] for uri in uris]
    return {k: s3.head_object(Bucket=layout.bucket, Key=k)["ETag"] for k in keys}


def warehouse_objects(s3, layout) -> list[str]:
    """Every object under the warehouse, whatever references it (or nothing does)."""
    return [
        k
        for k in list_keys(s3, layout.bucket, layout.key("warehouse") + "/")
        if not k.endswith("/")
    ]


def data_files_holding(spark, s3, layout, path: str) -> tuple[list[str], dict[str, int]]:
    """Every Parquet object under the warehouse read with Spark, table by table: the files
    with a row of `path`, and the rows each table's files hold in all."""
    by_table = defaultdict(list)
    for key in warehouse_objects(s3, layout):
        if key.endswith(".parquet"):
            by_table[key.split("/data/", 1)[0].rsplit("/", 1)[-1]].append(
                f"s3://{layout.bucket}/{key}"
            )
    holders, rows = [], {}
    for name, uris in by_table.items():
        if name == tables.STATISTICS:  # per-date sums (spark.pca), no path: recomputed apart
            continue
        read = spark.read.parquet(*uris).select("path", F.input_file_name().alias("file"))
        rows[name] = read.count()
        holders += [
            r.file for r in read.where(F.col("path") == path).select("file").distinct().collect()
        ]
    return sorted(holders), rows


class _InMemory:
    """pyiceberg's InputFile, for bytes already read."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def open(self, seekable: bool = True) -> io.BytesIO:
        return io.BytesIO(self.data)


def readable_text(key: str, body: bytes) -> bytes:
    """What an object says: an Avro file's records decoded (Iceberg deflates its manifests and
    manifest lists, whose raw bytes spell no path), any other object's bytes as they are."""
    if not key.endswith(".avro"):
        return body
    with AvroFile(_InMemory(body)) as records:
        return repr(list(records)).encode()


def metadata_holding(s3, layout, path: str) -> list[str]:
    """The objects under the warehouse other than data files (metadata JSON, manifests,
    manifest lists, referenced or not) that spell `path`."""
    return [
        key
        for key in warehouse_objects(s3, layout)
        if not key.endswith(".parquet")
        and path.encode()
        in readable_text(key, s3.get_object(Bucket=layout.bucket, Key=key)["Body"].read())
    ]


def bounds_holding(spark, layout, path: str) -> list[str]:
    """Tables whose data files, in any snapshot kept, record a column bound that holds `path`."""
    found = []
    for name in (tables.FEATURES, tables.REDUCED):
        table = tables.table(layout, name).qualified
        rows = spark.sql(f"SELECT lower_bounds, upper_bounds FROM {table}.all_files").collect()
        assert rows, name
        if any(
            path.encode() in bytes(value)
            for row in rows
            for bounds in (row["lower_bounds"] or {}, row["upper_bounds"] or {})
            for value in bounds.values()
        ):
            found.append(name)
    return found


def parquet_objects_holding(s3, layout, path: str) -> list[str]:
    """Every Parquet object under the layout's prefix (tables, manifests, models), read whole:
    those whose `path` column holds `path`."""
    found = []
    for key in list_keys(s3, layout.bucket, layout.prefix + "/"):
        if key.endswith(".parquet"):
            body = s3.get_object(Bucket=layout.bucket, Key=key)["Body"].read()
            table = pq.read_table(io.BytesIO(body))
            if "path" in table.column_names and path in table.column("path").to_pylist():
                found.append(key)
    return sorted(found)


def test_erasure_by_path_and_by_hash(
    spark, s3, settings, fresh_layout, upload_sample, weights, extract
) -> None:
    layout = fresh_layout
    upload_sample(layout, [D1, D2], per_date=5, broken=False)
    extract(layout, [D1, D2], weights)  # the manifests (what raw_images does), then features
    version = fit_pca_version(spark, layout, s3, k=3, weights_sha256=weights.sha256).version
    publish_pca(layout, s3, version)
    publish_staged(spark, layout, s3, stage_reduced(spark, layout, s3, [D1, D2], version).staged)
    untouched = {
        name: data_files(spark, layout, name, D2) for name in (tables.FEATURES, tables.REDUCED)
    }
    untouched_etags = {name: etags(s3, layout, files) for name, files in untouched.items()}

    raw = raw_paths(s3, layout, D1)
    record = erase_image(spark, layout, s3, raw[0], write_grace_hours=1)
    assert record["rows_removed"] == {"features": 1, "reduced": 1}
    assert record["tables"]["features"]["rows_removed"] == {"main": 1}

    # By content hash, through the command (its own process: it stops its Spark session).
    body = s3.get_object(Bucket=layout.bucket, Key=raw[1].split(f"{layout.bucket}/", 1)[1])
    command = [
        sys.executable,
        "-m",
        "bootstrap.aws.erase",
        "--sha256",
        hashlib.sha256(body["Body"].read()).hexdigest(),
    ]
    env = {**os.environ, "FRUITS_PREFIX": layout.prefix, "FRUITS_NAMESPACE": layout.namespace}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["path"] == raw[1]
    assert json.loads(result.stdout)["rows_removed"] == {"features": 1, "reduced": 1}

    assert raw_paths(s3, layout, D1) == raw[2:]
    features = read_features(spark, layout)
    assert not {r.path for r in features.collect()} & set(raw[:2])
    assert tables.rows_per_date(features) == {D1: 3, D2: 5}
    # Only the erased images' date was rewritten: the other date's files are the same objects.
    for name, files in untouched.items():
        assert data_files(spark, layout, name, D2) == files
        assert etags(s3, layout, files) == untouched_etags[name]

    # The checks still pass afterwards.
    manifest = {d: read_manifest(s3, layout, d).num_rows for d in (D1, D2)}
    assert manifest == tables.rows_per_date(features)
    accounted = accounting(spark, s3, layout, [D1, D2])
    assert accounted.passed, accounted.details
    reduced = read_table(spark, layout, tables.REDUCED)
    assert reduced_matches_features(tables.rows_per_date(features), reduced, 3, version).passed

    records = list_keys(s3, layout.bucket, layout.key("audit/erasures"))
    assert len(records) == 2
    audits = [get_json(s3, layout.bucket, key) for key in records]
    assert sorted(a["path"] for a in audits) == raw[:2]
    assert all(a["upload_date"] == D1 and len(a["sha256"]) == 64 for a in audits)


def test_erasure_refuses_paths_outside_raw(spark, s3, fresh_layout) -> None:
    with pytest.raises(ValueError, match="not a raw image"):
        erase_image(
            spark, fresh_layout, s3, f"s3://{fresh_layout.bucket}/elsewhere/x.jpg",
            write_grace_hours=0,
        )  # fmt: skip


def test_an_erasure_leaves_no_copy_in_any_file_under_the_warehouse(
    spark, s3, settings, fresh_layout, upload_sample, weights, extract
) -> None:
    """Two published versions of the date, reduced rows, a user's branch, and a run that
    staged the image and died: after the erasure (no write grace), no object under the
    warehouse holds the image, neither in a data file's rows nor in Iceberg's metadata."""
    layout = fresh_layout
    upload_sample(layout, [D1, D2], per_date=4, broken=False)
    extract(layout, [D1, D2], weights)
    extract(layout, [D1, D2], weights)  # a second published version of both dates
    version = fit_pca_version(spark, layout, s3, k=3, weights_sha256=weights.sha256).version
    publish_pca(layout, s3, version)
    publish_staged(spark, layout, s3, stage_reduced(spark, layout, s3, [D1, D2], version).staged)
    features = tables.table(layout, tables.FEATURES)
    spark.sql(f"ALTER TABLE {features.qualified} CREATE BRANCH audit")  # a reader's branch
    path = raw_paths(s3, layout, D1)[0]
    published_copies, _ = data_files_holding(spark, s3, layout, path)
    # A run that staged the image in both tables, then died (an audit that failed, say).
    abandoned = stage_features(
        spark, layout, s3, [D1], weights, source=ImageSource.of(settings), tf_threads=1
    )
    abandoned_reduced = stage_reduced(spark, layout, s3, [D1], version)
    before, _ = data_files_holding(spark, s3, layout, path)
    # The scan sees every copy: two published feature versions, the reduced rows, both
    # staged runs' files.
    assert len(published_copies) >= 3
    assert set(before) > set(published_copies)
    assert any(
        k.startswith(layout.key("manifests")) for k in parquet_objects_holding(s3, layout, path)
    )

    record = erase_image(spark, layout, s3, path, write_grace_hours=0)

    assert record["rows_removed"] == {"features": 2, "reduced": 1}
    assert record["tables"]["features"]["rows_removed"] == {"main": 1, "audit": 1}
    assert record["tables"]["reduced"]["rows_removed"] == {"main": 1}
    assert record["tables"]["features"]["staged_in_flight"] == []  # no grace: none in flight
    assert record["tables"]["features"]["files_deleted"]["deleted_data_files_count"] >= 3
    assert record["raw_object_deleted"] == path and record["tombstone"]
    holders, rows = data_files_holding(spark, s3, layout, path)
    assert holders == []
    # What is left is what `main` and the branch read: the history and the staged runs went.
    # (features: the D2 files both share, and each one's rewrite of D1).
    assert rows == {"features": 4 + 3 + 3, "reduced": 7}
    for staged in (abandoned.staged, abandoned_reduced.staged):
        assert not tables.snapshot_exists(spark, staged.table, staged.snapshot_id)
    assert metadata_holding(s3, layout, path) == []
    assert bounds_holding(spark, layout, path) == []
    # The scans do read what they look in: the metadata names the tables' location (the
    # manifests, decoded, name the data files), the bounds hold the dates.
    assert metadata_holding(s3, layout, layout.table_uri(tables.FEATURES))
    data_folder = f"{layout.table_uri(tables.FEATURES)}/data/"
    assert any(k.endswith("-m0.avro") for k in metadata_holding(s3, layout, data_folder))
    assert bounds_holding(spark, layout, D1) == [tables.FEATURES, tables.REDUCED]
    assert parquet_objects_holding(s3, layout, path) == []  # the manifest was rewritten too
    branch = spark.sql(f"SELECT path FROM {features.qualified} VERSION AS OF 'audit'")
    assert branch.count() == 7 and branch.where(F.col("path") == path).count() == 0

    # The other images are all still there, published and accounted for.
    features_rows = read_features(spark, layout)
    assert tables.rows_per_date(features_rows) == {D1: 3, D2: 4}
    accounted = accounting(spark, s3, layout, [D1, D2])
    assert accounted.passed, accounted.details
    reduced = read_table(spark, layout, tables.REDUCED)
    assert reduced_matches_features({D1: 3, D2: 4}, reduced, 3, version).passed


def jpeg(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), color).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("same_bytes", [False, True], ids=["other-bytes", "same-bytes"])
def test_a_new_upload_at_an_erased_path_is_a_new_image(
    spark, s3, fresh_layout, upload_sample, weights, extract, same_bytes
) -> None:
    layout = fresh_layout
    upload_sample(layout, [D1], per_date=3, broken=False)
    extract(layout, [D1], weights)
    path = raw_paths(s3, layout, D1)[0]
    erased_key = path.split(f"{layout.bucket}/", 1)[1]
    erased_bytes = s3.get_object(Bucket=layout.bucket, Key=erased_key)["Body"].read()
    time.sleep(1.1)  # S3 keeps upload times to the second: the next upload is a later one
    record = erase_image(spark, layout, s3, path, write_grace_hours=0)
    assert record["rows_removed"] == {"features": 1}
    assert {erased for erased, _ in tombstoned(s3, layout, [D1])} == {path_digest(path)}

    # The same path uploaded again after the erasure, even with the same bytes (the same ETag):
    # not the upload the tombstone names.
    key = path.split(f"{layout.bucket}/", 1)[1]
    body = erased_bytes if same_bytes else jpeg("purple")
    s3.put_object(Bucket=layout.bucket, Key=key, Body=body)
    etag = s3.head_object(Bucket=layout.bucket, Key=key)["ETag"].strip('"')
    run = extract(layout, [D1], weights)

    assert run.features_per_date == {D1: 3} and run.rejects_per_date == {D1: 0}
    rows = {r.path: r for r in read_features(spark, layout, [D1]).collect()}
    assert path in rows and rows[path].etag == etag and len(rows[path].features) == 1280
    assert len(tombstoned(s3, layout, [D1])) == 1  # the erased upload's tombstone stays
    accounted = accounting(spark, s3, layout, [D1])
    assert accounted.passed, accounted.details
    assert accounted.details["expected"] == 3


def test_erasing_an_image_whose_raw_file_is_gone_still_removes_its_rows(
    spark, s3, fresh_layout, upload_sample, weights, extract
) -> None:
    layout = fresh_layout
    upload_sample(layout, [D1], per_date=3, broken=False)
    extract(layout, [D1], weights)
    path = raw_paths(s3, layout, D1)[0]
    s3.delete_object(Bucket=layout.bucket, Key=path.split(f"{layout.bucket}/", 1)[1])

    record = erase_image(spark, layout, s3, path, write_grace_hours=0)

    assert record["rows_removed"] == {"features": 1}
    assert record["sha256"] is None  # the bytes were gone; the manifest named the upload
    assert record["tombstone"] and len(tombstoned(s3, layout, [D1])) == 1
    assert path not in {r.path for r in read_features(spark, layout, [D1]).collect()}
    assert path not in read_manifest(s3, layout, D1).column("path").to_pylist()

    # Once more: harmless, nothing left to remove.
    again = erase_image(spark, layout, s3, path, write_grace_hours=0)
    assert again["rows_removed"] == {"features": 0}
    assert read_features(spark, layout, [D1]).count() == 2
    accounted = accounting(spark, s3, layout, [D1])
    assert accounted.passed, accounted.details
    assert len(list_keys(s3, layout.bucket, layout.key("audit/erasures"))) == 2


def test_a_run_staged_before_an_erasure_and_published_after_does_not_bring_it_back(
    spark, s3, settings, fresh_layout, upload_sample, weights, extract
) -> None:
    layout = fresh_layout
    upload_sample(layout, [D1, D2], per_date=4, broken=False)
    extract(layout, [D1, D2], weights)  # a published version, which the erasure rewrites
    newer = load_weights("random", seed=99)  # the staged run's rows are told apart by these
    run = stage_features(
        spark, layout, s3, [D1, D2], newer, source=ImageSource.of(settings), tf_threads=1
    )
    path = raw_paths(s3, layout, D1)[0]
    staged_rows = tables.read_staged(spark, run.staged)
    assert staged_rows.where(F.col("path") == path).count() == 1  # the staged run holds it

    # A run still writing: within the grace its staged snapshot is left to it.
    record = erase_image(spark, layout, s3, path, write_grace_hours=1)
    assert record["rows_removed"] == {"features": 1}
    assert record["tables"]["features"]["staged_in_flight"] == [run.staged.snapshot_id]
    published, snapshot = publish_staged(spark, layout, s3, run.staged)

    features = read_features(spark, layout)
    assert path not in {r.path for r in features.collect()}
    assert path not in read_manifest(s3, layout, D1).column("path").to_pylist()
    # Staged again without the image; the snapshot that held it is gone, its files too.
    assert published.snapshot_id != run.staged.snapshot_id
    assert not tables.snapshot_exists(spark, run.staged.table, run.staged.snapshot_id)
    assert published.counts == {D1: 3, D2: 4}
    assert snapshot == tables.current_snapshot(spark, run.staged.table)
    assert data_files_holding(spark, s3, layout, path)[0] == []
    # Only the erased image is gone: the run's other rows of that date are published, and it
    # is the run's version that is published (the erasure's rewrite is not a newer write).
    assert tables.rows_per_date(features) == {D1: 3, D2: 4}
    assert run.features_per_date == {D1: 4, D2: 4}  # what it staged, before the erasure
    assert {r.weights_sha256 for r in features.select("weights_sha256").distinct().collect()} == {
        newer.sha256
    }
    accounted = accounting(spark, s3, layout, [D1, D2])
    assert accounted.passed, accounted.details
