"""Atomic publication: readers see one whole version of a partition, whatever fails."""

import threading
from urllib.parse import unquote

import pytest
from py4j.protocol import Py4JJavaError

from spark.layout import PARTITION_COLUMN, dataset_partition_uri
from spark.pipeline import extract_features, read_dataset, read_features, write_partitions
from spark.publish import read_pointer

pytestmark = pytest.mark.slow
DATE, OTHER = "2026-03-01", "2026-03-02"


def version(spark, tag: str, n: int = 40):
    """n rows over two dates, in two files per date: every row names its version."""
    rows = [(f"img-{i}", DATE if i % 2 else OTHER, tag) for i in range(n)]
    return spark.createDataFrame(rows, ["path", PARTITION_COLUMN, "version"]).repartition(2)


def contents(spark, uri: str, dates=None) -> list[tuple[str, str, str]]:
    return sorted(tuple(r) for r in read_dataset(spark, uri, dates).collect())


def copies_into_partitions_after(first: int):
    """S3 fails every copy into a partition folder after the first `first` (S3 renames copy)."""
    seen = []

    def rule(method: str, path: str, headers: dict[str, str]) -> bool:
        copy = method == "PUT" and any(k.lower() == "x-amz-copy-source" for k in headers)
        key = unquote(path)
        if copy and "/upload_date=" in key and "/_staging/" not in key:
            seen.append(path)
            return len(seen) > first
        return False

    return rule


def test_s3_failing_mid_publish_leaves_the_old_version_whole(
    spark, through_proxy, fault_proxy
) -> None:
    uri = through_proxy.features_uri()
    write_partitions(spark, version(spark, "v1"), uri, [DATE, OTHER])
    v1 = contents(spark, uri)

    fault_proxy.fail_when = copies_into_partitions_after(1)
    with pytest.raises((Py4JJavaError, OSError)):
        write_partitions(spark, version(spark, "v2"), uri, [DATE, OTHER])
    assert fault_proxy.failed

    # One v2 file did land in a partition folder: a plain folder listing would mix versions.
    names = spark.read.parquet(dataset_partition_uri(uri, DATE)).select("version").distinct()
    assert {r.version for r in names.collect()} == {"v1", "v2"}
    # Readers of the published version see v1, whole.
    assert contents(spark, uri) == v1

    fault_proxy.fail_when = lambda *request: False
    write_partitions(spark, version(spark, "v2"), uri, [DATE, OTHER])
    assert {r[1] for r in contents(spark, uri)} == {"v2"}
    assert len(contents(spark, uri)) == 40
    # The failed attempt's stray file is cleaned up; v1 stays one version for slow readers.
    listed = spark.read.parquet(dataset_partition_uri(uri, DATE)).select("version")
    assert sorted({r.version for r in listed.collect()}) == ["v1", "v2"]
    assert listed.count() == 40  # 20 rows of v1 and 20 of v2, none of the failed attempt


def test_a_rerun_after_a_failure_equals_a_clean_run(
    spark, through_proxy, fault_proxy, fresh_layout, upload_sample, weights
) -> None:
    upload_sample(through_proxy, [DATE], per_date=6, broken=True)
    upload_sample(fresh_layout, [DATE], per_date=6, broken=True)
    clean = extract_features(spark, fresh_layout, [DATE], weights, tf_threads=1)

    fault_proxy.fail_when = copies_into_partitions_after(0)
    with pytest.raises((Py4JJavaError, OSError)):
        extract_features(spark, through_proxy, [DATE], weights, tf_threads=1)
    assert read_pointer(spark, through_proxy.features_uri(), DATE) is None

    fault_proxy.fail_when = lambda *request: False
    rerun = extract_features(spark, through_proxy, [DATE], weights, tf_threads=1)
    assert rerun.features_per_date == clean.features_per_date == {DATE: 6}

    def rows(layout):
        features = read_features(spark, layout).collect()
        return sorted((r.path.rsplit("/", 1)[-1], r.label, tuple(r.features)) for r in features)

    assert rows(through_proxy) == rows(fresh_layout)
    assert [r["path"].rsplit("/", 1)[-1] for r in rerun.rejects] == [
        r["path"].rsplit("/", 1)[-1] for r in clean.rejects
    ]


def test_concurrent_writes_of_one_partition_leave_one_whole_version(spark, fresh_layout) -> None:
    uri = fresh_layout.features_uri()
    errors: list[BaseException] = []

    def write(tag: str) -> None:
        try:
            write_partitions(spark, version(spark, tag), uri, [DATE, OTHER])
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    writers = [threading.Thread(target=write, args=(tag,)) for tag in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    assert errors == []
    for date in (DATE, OTHER):
        published = contents(spark, uri, [date])
        assert len(published) == 20
        assert len({r[1] for r in published}) == 1  # one version, not a mix


def test_an_older_attempt_never_replaces_a_newer_one(spark, fresh_layout, monkeypatch) -> None:
    from spark import publish

    uri = fresh_layout.features_uri()
    write_partitions(spark, version(spark, "new"), uri, [DATE, OTHER])
    monkeypatch.setattr(publish, "new_attempt", lambda: "19700101T000000000000Zdeadbeef")
    write_partitions(spark, version(spark, "old"), uri, [DATE, OTHER])
    assert {r[1] for r in contents(spark, uri)} == {"new"}


def test_an_emptied_partition_keeps_its_columns(spark, fresh_layout) -> None:
    uri = fresh_layout.rejects_uri()
    write_partitions(spark, version(spark, "v1"), uri, [DATE, OTHER])
    none = version(spark, "v2").where("false")
    assert write_partitions(spark, none, uri, [DATE]) == {DATE: 0}
    emptied = read_dataset(spark, uri, [DATE])
    assert emptied.count() == 0
    assert emptied.columns == ["path", "version", PARTITION_COLUMN]
    assert read_dataset(spark, uri, [OTHER]).count() == 20


def test_nothing_published_is_a_clear_error(spark, fresh_layout) -> None:
    with pytest.raises(FileNotFoundError, match="no partition is published"):
        read_dataset(spark, fresh_layout.reduced_uri())
