"""Write, audit, publish: readers see one whole version of a partition, whatever fails."""

import threading
import time
from urllib.parse import unquote

import pytest
from py4j.protocol import Py4JJavaError
from pyspark.sql import functions as F

from spark import fs
from spark import publish as publish_module
from spark.layout import FEATURES, PARTITION_COLUMN, PUBLISHED_POINTER, REDUCED, REJECTS
from spark.locks import holder
from spark.pipeline import publish_staged, read_dataset
from spark.publish import (
    discard,
    publish,
    published_versions,
    read_pointer,
    read_published,
    read_staged,
    restage,
    stage,
)

pytestmark = pytest.mark.slow
DATE, OTHER = "2026-03-01", "2026-03-02"


def version(spark, tag: str, n: int = 40, dates=(DATE, OTHER)):
    """n rows over the dates, in two files per date: every row names its version."""
    rows = [(f"img-{i}", dates[i % len(dates)], tag) for i in range(n)]
    return spark.createDataFrame(rows, ["path", PARTITION_COLUMN, "version"]).repartition(2)


def rejected(spark, tag: str, n: int = 8):
    return version(spark, tag, n).withColumn("reason", F.lit(f"broken in {tag}"))


def write(spark, frames, dates=(DATE, OTHER)):
    """Stage then publish at once (no audit, no locks): frames by Dataset."""
    staged = stage(spark, frames, list(dates))
    publish(spark, staged)
    return staged


def contents(spark, dataset, dates=None) -> list[tuple[str, str, str]]:
    rows = read_published(spark, dataset, dates).select("path", "version", PARTITION_COLUMN)
    return sorted(tuple(r) for r in rows.collect())


def versions_in(spark, dataset, dates=None) -> set[str]:
    return {r[1] for r in contents(spark, dataset, dates)}


def listed(spark, dataset, date):
    """What a plain folder listing of the partition holds (as a naive reader would read it)."""
    return spark.read.parquet(f"{dataset.uri}/{PARTITION_COLUMN}={date}").select("version")


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


def never(*request) -> bool:
    return False


def test_s3_failing_mid_publish_leaves_the_old_version_whole(
    spark, through_proxy, fault_proxy
) -> None:
    features = through_proxy.dataset(FEATURES)
    write(spark, {features: version(spark, "v1")})
    v1 = contents(spark, features)
    assert len(v1) == 40

    fault_proxy.fail_when = copies_into_partitions_after(1)
    with pytest.raises((Py4JJavaError, OSError)):
        write(spark, {features: version(spark, "v2")})
    assert fault_proxy.failed

    # One v2 file did land in a partition folder: a plain folder listing would mix versions.
    assert {r.version for r in listed(spark, features, DATE).distinct().collect()} == {"v1", "v2"}
    # Readers of the published version see v1, whole.
    assert contents(spark, features) == v1

    fault_proxy.fail_when = never
    write(spark, {features: version(spark, "v2")})
    assert versions_in(spark, features) == {"v2"}
    assert len(contents(spark, features)) == 40
    # The failed attempt's stray file is cleaned up; v1 stays one version for slow readers.
    folder = listed(spark, features, DATE)
    assert sorted({r.version for r in folder.collect()}) == ["v1", "v2"]
    assert folder.count() == 40  # 20 rows of v1 and 20 of v2, none of the failed attempt


def test_a_rerun_after_a_failure_equals_a_clean_run(
    spark, s3, through_proxy, fault_proxy, fresh_layout, upload_sample, weights, extract
) -> None:
    upload_sample(through_proxy, [DATE], per_date=6, broken=True)
    upload_sample(fresh_layout, [DATE], per_date=6, broken=True)
    clean = extract(fresh_layout, [DATE], weights)

    fault_proxy.fail_when = copies_into_partitions_after(0)
    with pytest.raises((Py4JJavaError, OSError)):
        extract(through_proxy, [DATE], weights)
    assert fault_proxy.failed
    assert read_pointer(spark, through_proxy.features_uri(), DATE) is None
    assert holder(s3, through_proxy, DATE) is None  # the failed publish let its lock go

    fault_proxy.fail_when = never
    rerun = extract(through_proxy, [DATE], weights)
    assert rerun.features_per_date == clean.features_per_date == {DATE: 6}
    assert rerun.rejects_per_date == clean.rejects_per_date

    def rows(layout):
        features = read_dataset(spark, layout, FEATURES).collect()
        return sorted((r.path.rsplit("/", 1)[-1], r.label, tuple(r.features)) for r in features)

    def rejects(layout):
        rejects = read_dataset(spark, layout, REJECTS).collect()
        return sorted((r.path.rsplit("/", 1)[-1], r.reason) for r in rejects)

    assert rows(through_proxy) == rows(fresh_layout)
    assert rejects(through_proxy) == rejects(fresh_layout) != []
    assert [r["path"].rsplit("/", 1)[-1] for r in rerun.rejects] == [
        r["path"].rsplit("/", 1)[-1] for r in clean.rejects
    ]


def test_concurrent_writes_of_one_partition_leave_one_whole_version(
    spark, s3, fresh_layout
) -> None:
    features = fresh_layout.dataset(FEATURES)
    errors: list[BaseException] = []

    def write_locked(tag: str) -> None:
        try:
            staged = stage(spark, {features: version(spark, tag)}, [DATE, OTHER])
            publish_staged(spark, fresh_layout, s3, staged)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    writers = [threading.Thread(target=write_locked, args=(tag,)) for tag in ("a", "b")]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()

    assert errors == []
    for date in (DATE, OTHER):
        published = contents(spark, features, [date])
        assert len(published) == 20
        assert len({r[1] for r in published}) == 1  # one version, not a mix


def test_an_older_attempt_never_replaces_a_newer_one(spark, fresh_layout, monkeypatch) -> None:
    features = fresh_layout.dataset(FEATURES)
    newer = write(spark, {features: version(spark, "new")})
    monkeypatch.setattr(publish_module, "new_attempt", lambda: "19700101T000000000000Zdeadbeef")
    write(spark, {features: version(spark, "old")})
    assert versions_in(spark, features) == {"new"}
    assert published_versions(spark, features) == {DATE: newer.attempt, OTHER: newer.attempt}


def test_an_emptied_partition_keeps_its_columns(spark, fresh_layout) -> None:
    rejects = fresh_layout.dataset(REJECTS)
    write(spark, {rejects: version(spark, "v1")})
    none = version(spark, "v2").where("false")
    assert write(spark, {rejects: none}, [DATE]).rows(REJECTS) == {DATE: 0}
    emptied = read_published(spark, rejects, [DATE])
    assert emptied.count() == 0
    assert emptied.columns == ["path", "version", PARTITION_COLUMN]
    assert read_published(spark, rejects, [OTHER]).count() == 20
    assert read_published(spark, rejects).count() == 20


def test_nothing_published_is_a_clear_error(spark, fresh_layout) -> None:
    with pytest.raises(FileNotFoundError, match="no partition is published"):
        read_published(spark, fresh_layout.dataset(REDUCED))
    with pytest.raises(FileNotFoundError, match="no partition is published"):
        read_dataset(spark, fresh_layout, FEATURES, [DATE])


def test_staged_rows_are_invisible_until_published(spark, fresh_layout) -> None:
    features = fresh_layout.dataset(FEATURES)
    write(spark, {features: version(spark, "v1")})
    v1 = contents(spark, features)

    staged = stage(spark, {features: version(spark, "v2", n=30)}, [DATE, OTHER])
    assert staged.rows(FEATURES) == {DATE: 15, OTHER: 15}
    assert contents(spark, features) == v1
    assert published_versions(spark, features) != {DATE: staged.attempt, OTHER: staged.attempt}
    pending = read_staged(spark, staged, FEATURES)
    assert pending.count() == 30
    assert {r.version for r in pending.select("version").distinct().collect()} == {"v2"}

    publish(spark, staged)
    assert versions_in(spark, features) == {"v2"}
    assert len(contents(spark, features)) == 30
    assert published_versions(spark, features) == {DATE: staged.attempt, OTHER: staged.attempt}


def pointer_put(method: str, path: str, headers: dict[str, str]) -> bool:
    """The PUT of a pointer: the moment of publication."""
    copy = any(k.lower() == "x-amz-copy-source" for k in headers)
    return method == "PUT" and not copy and unquote(path).endswith(f"/{PUBLISHED_POINTER}")


def pointer_read(method: str, path: str, headers: dict[str, str]) -> bool:
    """Any request about a pointer but its PUT: publish reads the old pointer after moving
    every dataset's files (rejects' last) and before writing the new one."""
    return PUBLISHED_POINTER in unquote(path) and not pointer_put(method, path, headers)


@pytest.mark.parametrize("rule", [pointer_put, pointer_read], ids=["at-put", "before-put"])
def test_features_and_rejects_are_published_as_one_unit(
    spark, through_proxy, fault_proxy, rule
) -> None:
    features, rejects = through_proxy.dataset(FEATURES), through_proxy.dataset(REJECTS)
    assert rejects.unit_uri == features.uri
    write(spark, {features: version(spark, "v1"), rejects: rejected(spark, "v1")})
    old_pair = (contents(spark, features), contents(spark, rejects))
    assert (len(old_pair[0]), len(old_pair[1])) == (40, 8)

    staged = stage(
        spark, {features: version(spark, "v2"), rejects: rejected(spark, "v2")}, [DATE, OTHER]
    )
    fault_proxy.fail_when = rule
    with pytest.raises((Py4JJavaError, OSError)):
        publish(spark, staged)
    assert fault_proxy.failed
    fault_proxy.fail_when = never

    # Both datasets' new files had moved in, rejects' too: the crash came after them.
    assert {r.version for r in listed(spark, rejects, DATE).distinct().collect()} == {"v1", "v2"}
    assert {r.version for r in listed(spark, features, DATE).distinct().collect()} == {"v1", "v2"}
    # Readers of either dataset still get the old pair, whole.
    assert (contents(spark, features), contents(spark, rejects)) == old_pair

    publish(spark, staged)
    assert versions_in(spark, features) == versions_in(spark, rejects) == {"v2"}
    assert (len(contents(spark, features)), len(contents(spark, rejects))) == (40, 8)
    for date in (DATE, OTHER):
        # One pointer, in the features' folder, names both datasets' files.
        pointer = read_pointer(spark, features.unit_uri, date)
        assert pointer.attempt == staged.attempt
        assert sorted(pointer.datasets) == [FEATURES, REJECTS]
        assert read_pointer(spark, rejects.uri, date) is None
    assert published_versions(spark, rejects) == published_versions(spark, features)


def test_publishing_one_dataset_of_a_unit_keeps_the_others(spark, fresh_layout) -> None:
    features, rejects = fresh_layout.dataset(FEATURES), fresh_layout.dataset(REJECTS)
    write(spark, {features: version(spark, "v1"), rejects: rejected(spark, "v1")})
    write(spark, {rejects: rejected(spark, "v2")})
    assert versions_in(spark, rejects) == {"v2"}
    assert versions_in(spark, features) == {"v1"}
    assert len(contents(spark, features)) == 40
    for date in (DATE, OTHER):
        assert sorted(read_pointer(spark, features.unit_uri, date).datasets) == [FEATURES, REJECTS]


def test_an_unpublished_version_stays_for_inspection_until_discarded(spark, fresh_layout) -> None:
    features, rejects = fresh_layout.dataset(FEATURES), fresh_layout.dataset(REJECTS)
    staged = stage(
        spark, {features: version(spark, "v1"), rejects: rejected(spark, "v1")}, [DATE, OTHER]
    )
    assert staged.locations() == {
        FEATURES: f"{features.uri}/_staging/{staged.attempt}",
        REJECTS: f"{rejects.uri}/_staging/{staged.attempt}",
    }
    for name, uri in staged.locations().items():
        for date in (DATE, OTHER):
            names = fs.list_names(spark, f"{uri}/{PARTITION_COLUMN}={date}")
            assert any(n.endswith(".parquet") for n in names), (name, date, names)
    # Not published: nothing for readers, not even a partition folder.
    with pytest.raises(FileNotFoundError):
        read_published(spark, features)
    assert fs.list_names(spark, features.uri) == ["_staging"]

    discard(spark, staged)
    for uri in staged.locations().values():
        assert not fs.exists(spark, uri)
    with pytest.raises(FileNotFoundError):
        read_published(spark, rejects)


def test_restage_drops_rows_and_updates_counts(spark, fresh_layout) -> None:
    features = fresh_layout.dataset(FEATURES)
    staged = stage(spark, {features: version(spark, "v1")}, [DATE, OTHER])
    assert staged.rows(FEATURES) == {DATE: 20, OTHER: 20}
    gone = ["img-0", "img-1", "img-3"]  # img-0 is in DATE; img-1 and img-3 in OTHER

    restage(spark, staged, FEATURES, lambda rows: rows.where(~F.col("path").isin(gone)))
    assert staged.rows(FEATURES) == {DATE: 19, OTHER: 18}
    kept = {r.path for r in read_staged(spark, staged, FEATURES).collect()}
    assert len(kept) == 37 and not kept & set(gone)
    # The scratch folder went; the staged version is where it was.
    assert fs.list_names(spark, f"{features.uri}/_staging") == [staged.attempt]

    publish(spark, staged)
    published = contents(spark, features)
    assert len(published) == 37 and not {r[0] for r in published} & set(gone)
    assert rows_by_date(published) == {DATE: 19, OTHER: 18}

    everything = stage(spark, {features: version(spark, "v2")}, [DATE, OTHER])
    restage(spark, everything, FEATURES, lambda rows: rows.where("false"))
    assert everything.rows(FEATURES) == {DATE: 0, OTHER: 0}
    assert read_staged(spark, everything, FEATURES).count() == 0
    publish(spark, everything)
    assert read_published(spark, features).count() == 0
    assert read_published(spark, features).columns == ["path", "version", PARTITION_COLUMN]


def rows_by_date(rows) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _path, _version, date in rows:
        counts[date] = counts.get(date, 0) + 1
    return counts


def test_publications_over_overlapping_dates_never_interleave(
    spark, s3, fresh_layout, monkeypatch
) -> None:
    d1, d2, d3, d4 = "2026-03-11", "2026-03-12", "2026-03-13", "2026-03-14"
    features = fresh_layout.dataset(FEATURES)
    # 'b' is staged first, so 'a' is the newer attempt: unlocked, 'b' would still write
    # the shared dates' pointers after 'a' (its old-pointer check sees none yet).
    b = stage(spark, {features: version(spark, "b", 30, (d2, d3, d4))}, [d2, d3, d4])
    a = stage(spark, {features: version(spark, "a", 30, (d1, d2, d3))}, [d1, d2, d3])
    assert a.attempt > b.attempt

    pointer_writes: list[tuple[str, str]] = []
    write_text = fs.write_text

    def recorded(spark, uri: str, text: str) -> None:
        write_text(spark, uri, text)
        pointer_writes.append((threading.current_thread().name, uri))
        time.sleep(0.5)  # a slow publication: room for the other one to step in

    monkeypatch.setattr(publish_module.fs, "write_text", recorded)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(staged) -> None:
        try:
            start.wait()
            publish_staged(spark, fresh_layout, s3, staged)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(s,), name=n) for n, s in (("a", a), ("b", b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    shared = [name for name, uri in pointer_writes if d2 in uri or d3 in uri]
    runs = [name for i, name in enumerate(shared) if i == 0 or shared[i - 1] != name]
    assert len(runs) == len(set(runs)), f"publications interleaved: {pointer_writes}"
    assert {name for name, uri in pointer_writes if d1 in uri} == {"a"}
    assert {name for name, uri in pointer_writes if d4 in uri} == {"b"}

    # Each date holds exactly one version; the shared ones the newer attempt's.
    tags = {d: {r[1] for r in contents(spark, features, [d])} for d in (d1, d2, d3, d4)}
    assert tags == {d1: {"a"}, d2: {"a"}, d3: {"a"}, d4: {"b"}}
    assert {d: len(contents(spark, features, [d])) for d in (d1, d2, d3, d4)} == {
        d1: 10,
        d2: 10,
        d3: 10,
        d4: 10,
    }
    assert published_versions(spark, features) == {
        d1: a.attempt,
        d2: a.attempt,
        d3: a.attempt,
        d4: b.attempt,
    }
