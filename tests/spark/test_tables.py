"""Write, audit, publish on Iceberg tables: readers see `main` only, one commit per run, and a
staged write that lost a race is staged again, never published over what it did not see."""

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import pytest
from pyspark.sql import functions as F

from spark import tables
from spark.images import without_erased
from spark.layout import PARTITION_COLUMN, path_digest, upload_digest

pytestmark = pytest.mark.slow
DATE, OTHER = "2026-03-01", "2026-03-02"


def rows(spark, tag: str, n: int = 12, dates=(DATE, OTHER)):
    """n feature-table rows over the dates, each naming its version in `weights_source`."""
    data = [
        (f"s3://b/raw/img-{i}.jpg", dates[i % len(dates)], "apple", f"etag{i}", "t0", 10,
         [float(i)] * 4, tag, "sha", None)
        for i in range(n)
    ]  # fmt: skip
    return spark.createDataFrame(data, tables.SCHEMAS[tables.FEATURES])


def keep_all(frame):
    return frame


def published(spark, table, dates=None) -> list[tuple[str, str, str]]:
    frame = tables.read(spark, table, dates).select("path", PARTITION_COLUMN, "weights_source")
    return sorted(tuple(r) for r in frame.collect())


def versions(spark, table, dates=None) -> set[str]:
    return {r[2] for r in published(spark, table, dates)}


@pytest.fixture
def features(spark, fresh_layout):
    return tables.table(fresh_layout, tables.FEATURES)


def test_staged_rows_are_invisible_until_published_in_one_commit(spark, features) -> None:
    staged = tables.stage(spark, features, rows(spark, "v1"), [DATE, OTHER])
    assert tables.current_snapshot(spark, features) is None
    assert staged.counts == {DATE: 6, OTHER: 6}
    assert tables.read_staged(spark, staged).count() == 12
    assert tables.read(spark, features).count() == 0  # readers see `main`: nothing yet

    published_staged, snapshot = tables.publish(spark, staged, keep_all)
    assert snapshot == tables.current_snapshot(spark, features)
    assert versions(spark, features) == {"v1"}
    history = tables.snapshots(spark, features)
    assert [s.snapshot_id for s in history if s.on_main] == [snapshot]  # one commit, two dates
    assert published_staged.counts == staged.counts


def test_a_discarded_stage_leaves_main_and_its_files_go(spark, features, s3, fresh_layout) -> None:
    tables.publish(spark, tables.stage(spark, features, rows(spark, "v1"), [DATE]), keep_all)
    before = data_files(s3, fresh_layout)
    staged = tables.stage(spark, features, rows(spark, "bad"), [DATE, OTHER])
    assert data_files(s3, fresh_layout) > before
    tables.discard(spark, staged)
    assert versions(spark, features) == {"v1"}
    assert not tables.snapshot_exists(spark, features, staged.snapshot_id)
    assert data_files(s3, fresh_layout) == before


def test_other_dates_published_meanwhile_are_kept(spark, features) -> None:
    first = tables.stage(spark, features, rows(spark, "v1", dates=(DATE,)), [DATE])
    other = tables.stage(spark, features, rows(spark, "v2", dates=(OTHER,)), [OTHER])
    tables.publish(spark, other, keep_all)
    tables.publish(spark, first, keep_all)
    assert versions(spark, features, [DATE]) == {"v1"}
    assert versions(spark, features, [OTHER]) == {"v2"}


def test_a_stage_that_lost_the_race_is_staged_again_on_main(spark, features) -> None:
    """Two runs over the same date: Iceberg refuses the second cherry-pick (the date changed
    since it was staged); it is staged again on the current main, whole, and published."""
    slow = tables.stage(spark, features, rows(spark, "slow"), [DATE, OTHER])
    fast = tables.stage(spark, features, rows(spark, "fast", dates=(DATE,)), [DATE])
    tables.publish(spark, fast, keep_all)
    republished, snapshot = tables.publish(spark, slow, keep_all)
    assert republished.snapshot_id != slow.snapshot_id
    assert not tables.snapshot_exists(spark, features, slow.snapshot_id)
    assert versions(spark, features) == {"slow"}
    assert tables.read(spark, features).count() == 12  # no row twice, none lost


def test_an_upload_erased_after_staging_is_never_published(spark, features) -> None:
    """An erasure lands between stage and publish: its DELETE changes the date, the publish
    is refused, and the rows are staged again without the erased upload."""
    tables.publish(spark, tables.stage(spark, features, rows(spark, "v1"), [DATE]), keep_all)
    staged = tables.stage(spark, features, rows(spark, "v2"), [DATE, OTHER])
    erased_path = "s3://b/raw/img-0.jpg"
    tables.delete_where(spark, features, f"path = '{erased_path}'")
    erased = {(path_digest(erased_path), upload_digest("etag0", "t0"))}
    _, snapshot = tables.publish(spark, staged, lambda frame: without_erased(frame, erased))
    paths = {r[0] for r in published(spark, features)}
    assert erased_path not in paths and len(paths) == 11
    assert versions(spark, features) == {"v2"}
    assert snapshot == tables.current_snapshot(spark, features)


def test_erasure_leaves_no_copy_in_data_or_metadata(spark, features, s3, fresh_layout) -> None:
    """After DELETE, expiry and orphan removal, no object under the table holds the path:
    neither a data file's rows nor Iceberg's own metadata (manifests keep no path bounds)."""
    erased_path = "s3://b/raw/img-3.jpg"
    for tag in ("v1", "v2"):
        tables.publish(spark, tables.stage(spark, features, rows(spark, tag), [DATE]), keep_all)
    tables.stage(spark, features, rows(spark, "abandoned"), [DATE])  # a run that died
    tables.delete_where(spark, features, f"path = '{erased_path}'")
    now = dt.datetime.now(dt.UTC)
    tables.expire_unreferenced(spark, features, older_than=now, keep_staged_after=now)
    tables.remove_orphan_files(spark, features, now)
    assert len(tables.snapshots(spark, features)) == 1
    # Metadata JSON is plain text; manifests (compressed Avro) are read through Iceberg.
    holders = [key for key, body in objects(s3, fresh_layout) if erased_path.encode() in body]
    assert holders == []
    bounds = spark.sql(
        f"SELECT lower_bounds, upper_bounds FROM {features.qualified}.all_files"
    ).collect()
    assert bounds
    for row in bounds:
        for values in (row["lower_bounds"] or {}, row["upper_bounds"] or {}):
            assert not any(erased_path.encode() in bytes(v) for v in values.values())
    parquet = [key for key, _ in objects(s3, fresh_layout) if key.endswith(".parquet")]
    read = spark.read.parquet(*[f"s3://{fresh_layout.bucket}/{k}" for k in parquet])
    assert read.where(F.col("path") == erased_path).count() == 0
    assert read.count() == 11


def test_maintenance_keeps_what_runs_in_flight_write(spark, features) -> None:
    staged = tables.stage(spark, features, rows(spark, "in-flight"), [DATE])
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    tables.expire_unreferenced(
        spark, features, older_than=dt.datetime.now(dt.UTC), keep_staged_after=long_ago
    )
    tables.remove_orphan_files(spark, features, long_ago)
    _, snapshot = tables.publish(spark, staged, keep_all)
    assert versions(spark, features) == {"in-flight"}


def objects(s3, layout) -> list[tuple[str, bytes]]:
    prefix = layout.key("warehouse") + "/"
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=layout.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=layout.bucket, Key=obj["Key"])["Body"].read()
            found.append((obj["Key"], body))
    return found


def data_files(s3, layout) -> int:
    return sum(1 for key, _ in objects(s3, layout) if key.endswith(".parquet"))


def test_runs_creating_the_same_table_at_once_all_go_on(spark, fresh_layout) -> None:
    """The first backfill of a deployment runs its partitions at once: each creates the tables
    it writes; the catalog refuses all but one, and the others must go on with that table."""
    for name in (tables.FEATURES, tables.REDUCED):
        target = tables.table(fresh_layout, name)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(tables.ensure_table, [spark] * 4, [target] * 4, [64] * 4))
        assert tables.exists(spark, target)
    # A create refused for another reason than a race is not swallowed.
    missing = tables.table(fresh_layout, tables.REDUCED)
    with pytest.raises(Exception, match="(?i)parse|syntax"):
        tables._create_unless_raced(spark, "CREATE TABLE nonsense (", lambda: False)
    # One refused because the object now exists is.
    tables._create_unless_raced(
        spark, f"CREATE TABLE {missing.qualified} (x int) USING iceberg", lambda: True
    )


def test_a_table_made_by_an_older_release_gets_todays_properties(spark, features) -> None:
    """Properties reach existing tables: a deployment's tables outlive the release that made
    them (one without the clustered writer opens a Parquet writer per date of a backfill)."""
    older = {k: v for k, v in tables.PROPERTIES.items() if k != "write.spark.fanout.enabled"}
    tables._create(spark, features, tables.SCHEMAS[tables.FEATURES], older)
    tables.ensure_table(spark, features, target_file_mb=32)
    properties = tables.properties(spark, features)
    assert properties["write.spark.fanout.enabled"] == "false"
    assert properties[tables.FILE_SIZE] == str(32 << 20)
    assert properties.items() >= tables.PROPERTIES.items()
