"""S3 failing in the middle of a staged write (the fault proxy of tests/spark/conftest.py):
nothing is committed, `main` stays what it was and readable, table maintenance removes what
the failed write left, and the next write publishes whole."""

import datetime as dt
from dataclasses import replace
from urllib.parse import unquote, urlsplit

import pytest
from py4j.protocol import Py4JJavaError

from spark import tables
from spark.layout import PARTITION_COLUMN

pytestmark = pytest.mark.slow
DATE, OTHER = "2026-03-01", "2026-03-02"


def rows(spark, tag: str, n: int = 12):
    """n feature-table rows over two dates, each naming its version in `weights_source`."""
    data = [
        (f"s3://b/raw/img-{i}.jpg", (DATE, OTHER)[i % 2], "apple", f"etag{i}", "t0", 10,
         [float(i)] * 4, tag, "sha", None)
        for i in range(n)
    ]  # fmt: skip
    # Four tasks: the date's rows are spread, so the write makes several data files.
    return spark.createDataFrame(data, tables.SCHEMAS[tables.FEATURES]).repartition(4)


def keep_all(frame):
    return frame


def versions(spark, table) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for r in tables.read(spark, table).select(PARTITION_COLUMN, "weights_source").collect():
        found.setdefault(r[PARTITION_COLUMN], set()).add(r["weights_source"])
    return found


def puts_under(folder: str, suffix: str, after: int, seen: list[str]):
    """S3 fails every PUT of an object under the table's `folder` whose name ends with
    `suffix`, after the first `after` (which are recorded in `seen`, as the failed ones are)."""

    def rule(method: str, path: str, headers: dict[str, str]) -> bool:
        key = unquote(urlsplit(path).path)
        copy = any(k.lower() == "x-amz-copy-source" for k in headers)
        if method == "PUT" and not copy and f"/{folder}/" in key and key.endswith(suffix):
            seen.append(key)
            return len(seen) > after
        return False

    return rule


def data_files(s3, layout) -> set[str]:
    prefix = layout.key("warehouse") + "/"
    return {
        f"s3://{layout.bucket}/{o['Key']}"
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=layout.bucket, Prefix=prefix
        )
        for o in page.get("Contents", [])
        if o["Key"].endswith(".parquet")
    }


@pytest.fixture
def proxied(spark, through_proxy, fresh_layout):
    """The fault proxy's bucket, with this test's own Iceberg namespace.

    Iceberg's catalog opens files with the Hadoop configuration of its first use in the
    session, which may predate this bucket's proxy endpoint (through_proxy); S3A file systems
    are cached per bucket, so one made now, with the endpoint, is the one its writes get too.
    S3A gives a failing request one retry (its defaults take minutes to give up)."""
    bucket = through_proxy.bucket
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    options = {f"fs.s3a.bucket.{bucket}.{k}": "1" for k in ("attempts.maximum", "retry.limit")}
    for key, value in options.items():
        conf.set(key, value)
    jvm = spark.sparkContext._jvm
    for scheme in ("s3", "s3a"):
        jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI(f"{scheme}://{bucket}/"), conf)
    yield replace(through_proxy, namespace=fresh_layout.namespace)
    for key in options:
        conf.unset(key)


@pytest.mark.parametrize(
    ("folder", "suffix", "after"),
    [("data", ".parquet", 1), ("metadata", "", 0)],
    ids=["a-data-file", "the-commit-metadata"],
)
def test_s3_failing_mid_stage_leaves_main_unchanged_and_readable(
    spark, s3, proxied, fault_proxy, folder, suffix, after
) -> None:
    features = tables.table(proxied, tables.FEATURES)
    tables.publish(spark, tables.stage(spark, features, rows(spark, "v1"), [DATE, OTHER]), keep_all)
    main = tables.current_snapshot(spark, features)
    history = [s.snapshot_id for s in tables.snapshots(spark, features)]
    published_files = data_files(s3, proxied)
    assert versions(spark, features) == {DATE: {"v1"}, OTHER: {"v1"}}

    seen: list[str] = []
    fault_proxy.fail_when = puts_under(folder, suffix, after, seen)
    with pytest.raises((Py4JJavaError, OSError)):
        tables.stage(spark, features, rows(spark, "v2"), [DATE, OTHER])
    fault_proxy.fail_when = lambda *request: False
    assert fault_proxy.failed
    assert len(seen) > after  # S3 failed in the middle: the first writes went through

    # Nothing was committed, staged or not: readers of `main` see v1, whole.
    assert tables.current_snapshot(spark, features) == main
    assert [s.snapshot_id for s in tables.snapshots(spark, features)] == history
    assert versions(spark, features) == {DATE: {"v1"}, OTHER: {"v1"}}
    assert tables.read(spark, features).count() == 12

    # What the failed write left on S3 is referenced by no snapshot: maintenance removes it.
    tables.remove_orphan_files(spark, features, dt.datetime.now(dt.UTC))
    assert data_files(s3, proxied) == published_files

    # The next write stages and publishes whole.
    staged, snapshot = tables.publish(
        spark, tables.stage(spark, features, rows(spark, "v2"), [DATE, OTHER]), keep_all
    )
    assert snapshot == tables.current_snapshot(spark, features) != main
    assert staged.counts == {DATE: 6, OTHER: 6}
    assert versions(spark, features) == {DATE: {"v2"}, OTHER: {"v2"}}
    assert tables.read(spark, features).count() == 12
    referenced = {
        r.file_path
        for r in spark.sql(f"SELECT file_path FROM {features.qualified}.all_files").collect()
    }
    assert data_files(s3, proxied) == referenced
