"""The pipeline's Iceberg tables, and write, audit, publish with Iceberg's own mechanism.

Two tables in the layout's namespace, both partitioned by upload_date:
- `features`: one row per manifest entry: its 1280 features, or its `reject_reason` (a date's
  feature rows and rejects are one table, so they become visible in the same commit);
- `reduced`: the features projected on one PCA version.

Write, audit, publish (Iceberg's WAP, `write.wap.enabled`):
1. stage(): the run's rows replace their dates' partitions in a *staged* snapshot (written
   under `spark.wap.id`): committed to the catalog, but not on `main`, which readers read.
2. The caller audits exactly that snapshot (read_staged).
3. publish(): one cherry-pick puts it on `main`: every date of the run becomes visible in one
   commit. Iceberg refuses it when one of its dates changed on `main` since it was staged (a
   concurrent run, an erasure): the rows are staged again on the current `main`, without the
   uploads erased meanwhile, and picked again. discard() expires a staged snapshot that must
   not be published; its files go with it.
   `reduced` is published only as staged (a fast-forward of `main`): its dates must agree
   with each other (one PCA version), which Iceberg's per-partition check cannot see; the
   caller checks the whole staged snapshot, which is then exactly what `main` becomes.
Concurrency is the catalog's atomic commit (with Iceberg's retries): there are no locks.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark import fs
from spark.catalog import CATALOG
from spark.layout import PARTITION_COLUMN, Layout

FEATURES, REDUCED = "features", "reduced"
UPLOAD_COLUMNS = "path string, upload_date string, label string, etag string, last_modified string"
SCHEMAS = {
    FEATURES: f"{UPLOAD_COLUMNS}, size_bytes bigint, features array<float>, "
    "weights_source string, weights_sha256 string, reject_reason string",
    REDUCED: f"{UPLOAD_COLUMNS}, weights_sha256 string, pca_version string, "
    "pca_features array<float>",
}
PROPERTIES = {
    "format-version": "2",
    "write.wap.enabled": "true",
    # An erasure's DELETE rewrites the data files that held the row (copy-on-write), so the
    # row's bytes leave with the old file once its snapshots expire; merge-on-read would keep
    # them in a live file, masked by a delete file.
    "write.delete.mode": "copy-on-write",
    "write.update.mode": "copy-on-write",
    "write.merge.mode": "copy-on-write",
    # Manifests keep each column's lower and upper bounds: for `path` those are paths, and an
    # erased image's path would outlive its rows in the metadata.
    "write.metadata.metrics.column.path": "none",
    # Files by partition and by size, not by the number of tasks.
    "write.distribution-mode": "hash",
    # One open file per task, its rows sorted by date (a sort that spills), not one open
    # Parquet writer per date: a task of a year's backfill holds hundreds of dates.
    "write.spark.fanout.enabled": "false",
    # Concurrent writers: Iceberg retries a commit that lost the race on the metadata.
    "commit.retry.num-retries": "20",
    "commit.retry.min-wait-ms": "100",
}
FILE_SIZE = "write.target-file-size-bytes"
# Tables whose staged snapshot reaches `main` only as it was staged (a fast-forward): a commit
# on `main` since, to any date, refuses the cherry-pick and the rows are staged again.
PUBLISHED_AS_STAGED = frozenset({REDUCED})
# How often publish() stages again after Iceberg refused its cherry-pick.
PUBLISH_ATTEMPTS = 5
# Iceberg's messages for a write that must be redone on the current `main`; the last one is a
# row-level DELETE whose table another process committed to between its scan and its write
# (its runtime filter refuses, before anything is written).
CONFLICTS = (
    "ValidationException",
    "CommitFailedException",
    "Runtime file filtering is not possible",
)


class StagedSnapshotGone(RuntimeError):
    """The run's staged snapshot was expired before it was published (an erasure or table
    maintenance judged it abandoned): nothing of it can be published; run again."""


@dataclass(frozen=True)
class Table:
    name: str
    namespace: str
    location: str

    @property
    def identifier(self) -> str:
        """`<namespace>.<table>`: how Iceberg's procedures name it."""
        return f"{self.namespace}.{self.name}"

    @property
    def qualified(self) -> str:
        """`<catalog>.<namespace>.<table>`: how Spark SQL names it."""
        return f"{CATALOG}.{self.identifier}"

    @property
    def columns(self) -> list[str]:
        return [name for name, _ in column_types(self.name)]


def column_types(name: str) -> list[tuple[str, str]]:
    """A table's columns and their Spark SQL types, in order."""
    return [
        (column.split(" ", 1)[0], column.split(" ", 1)[1]) for column in SCHEMAS[name].split(", ")
    ]


def table(layout: Layout, name: str) -> Table:
    if name not in SCHEMAS:
        raise ValueError(f"not a table of the pipeline: {name!r}")
    return Table(name, layout.namespace, layout.table_uri(name))


def ensure_table(spark: SparkSession, target: Table, target_file_mb: int | None = None) -> None:
    """Create the namespace and the table when missing (idempotent, safe concurrently), and
    set the properties that differ from PROPERTIES; with `target_file_mb`, the size its writes
    aim at, changed in place when the field changed."""
    size = {FILE_SIZE: str(target_file_mb << 20)} if target_file_mb else {}
    _create(spark, target, SCHEMAS[target.name], PROPERTIES | size)
    set_properties(spark, target, PROPERTIES | size)  # a table made by an older release too


def _create(spark: SparkSession, target: Table, schema: str, properties: dict[str, str]) -> None:
    """The namespace and the table, partitioned by upload date, unless they exist."""
    listed = ", ".join(f"'{k}'='{v}'" for k, v in properties.items())
    _create_unless_raced(
        spark,
        f"CREATE NAMESPACE IF NOT EXISTS {CATALOG}.{target.namespace}",
        lambda: bool(spark.catalog.databaseExists(f"{CATALOG}.{target.namespace}")),
    )
    _create_unless_raced(
        spark,
        f"CREATE TABLE IF NOT EXISTS {target.qualified} ({schema}) USING iceberg "
        f"PARTITIONED BY ({PARTITION_COLUMN}) LOCATION '{target.location}' "
        f"TBLPROPERTIES ({listed})",
        lambda: exists(spark, target),
    )


def _create_unless_raced(spark: SparkSession, statement: str, created: Callable[[], bool]) -> None:
    """Run a CREATE ... IF NOT EXISTS; when another run created the same object between its
    check and its commit (two partitions of a first backfill), the catalog refuses the loser
    (a unique-key violation in JDBC, AlreadyExists in Glue): the object exists, which is all
    the caller needs."""
    try:
        spark.sql(statement)
    except (Py4JJavaError, AnalysisException):
        if not created():
            raise


def exists(spark: SparkSession, target: Table) -> bool:
    return bool(spark.catalog.tableExists(target.qualified))


# --- reading -------------------------------------------------------------------------------


def current_snapshot(spark: SparkSession, target: Table) -> int | None:
    """The snapshot readers see (`main`), None for a table never written."""
    if not exists(spark, target):
        return None
    rows = spark.sql(
        f"SELECT snapshot_id FROM {target.qualified}.refs WHERE name = 'main'"
    ).collect()
    return int(rows[0]["snapshot_id"]) if rows else None


def read(
    spark: SparkSession,
    target: Table,
    dates: Sequence[str] | None = None,
    snapshot_id: int | None = None,
) -> DataFrame:
    """The rows of `dates` (all when None) as of a snapshot (default: `main`'s)."""
    if not exists(spark, target):
        raise FileNotFoundError(f"table {target.qualified} does not exist yet")
    at = f" VERSION AS OF {snapshot_id}" if snapshot_id is not None else ""
    rows = spark.sql(f"SELECT * FROM {target.qualified}{at}")
    return rows if dates is None else rows.where(F.col(PARTITION_COLUMN).isin(list(dates)))


def rows_per_date(rows: DataFrame) -> dict[str, int]:
    return {
        r[PARTITION_COLUMN]: r["count"] for r in rows.groupBy(PARTITION_COLUMN).count().collect()
    }


# --- write, audit, publish -----------------------------------------------------------------


@dataclass(frozen=True)
class Staged:
    """A run's rows of `dates`, staged as one snapshot of `table`, not yet on `main`."""

    table: Table
    wap_id: str
    snapshot_id: int
    dates: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)  # rows per date (0 for none)

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    def location(self) -> str:
        """Where to inspect it: SQL that reads exactly the staged rows."""
        dates = ", ".join(f"'{d}'" for d in self.dates)
        return (
            f"SELECT * FROM {self.table.qualified} VERSION AS OF {self.snapshot_id} "
            f"WHERE {PARTITION_COLUMN} IN ({dates})"
        )


# spark.wap.id is a property of the session, which the runs of one process share (Dagster's
# in-process runs, threads): one write at a time while it is set, else another thread's write
# is staged under this WAP id, or committed straight to `main` once this one unsets it.
_SESSION_WRITES = threading.Lock()


@contextlib.contextmanager
def _wap(spark: SparkSession, wap_id: str) -> Iterator[None]:
    with _SESSION_WRITES:
        spark.conf.set("spark.wap.id", wap_id)
        try:
            yield
        finally:
            spark.conf.unset("spark.wap.id")


def new_wap_id() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:12]}"


def stage(
    spark: SparkSession,
    target: Table,
    rows: DataFrame,
    dates: Sequence[str],
    *,
    target_file_mb: int | None = None,
) -> Staged:
    """Stage `rows` as the new content of the partitions of `dates`: one snapshot off `main`,
    named by a WAP id. A requested date with no rows is emptied (its images are gone)."""
    ensure_table(spark, target, target_file_mb)
    wap_id = new_wap_id()
    present = {r[0] for r in rows.select(PARTITION_COLUMN).distinct().collect()}
    with _wap(spark, wap_id):
        writer = rows.select(*target.columns).writeTo(target.qualified)
        if set(dates) <= present and target.name not in PUBLISHED_AS_STAGED:
            # Dynamic overwrite: cherry-picked even where other dates changed on `main`.
            writer.overwritePartitions()
        else:
            # A dynamic overwrite replaces only the partitions it writes (and commits nothing
            # when it writes none): a date without rows would keep its old ones; and a table
            # of PUBLISHED_AS_STAGED must not be cherry-picked over other dates. Overwriting
            # by the dates instead publishes only onto the `main` it was staged on (publish
            # stages it again otherwise).
            writer.overwrite(F.col(PARTITION_COLUMN).isin(sorted(set(dates) | present)))
    found = spark.sql(
        f"SELECT snapshot_id FROM {target.qualified}.snapshots WHERE summary['wap.id'] = '{wap_id}'"
    ).collect()
    if not found:
        raise RuntimeError(f"no snapshot was staged for {target.qualified} (WAP id {wap_id})")
    staged = Staged(target, wap_id, int(found[0]["snapshot_id"]), tuple(sorted(set(dates))))
    counts = _partition_counts(spark, staged)
    return replace(staged, counts={date: counts.get(date, 0) for date in staged.dates})


def _partition_counts(spark: SparkSession, staged: Staged) -> dict[str, int]:
    """Rows per date of the staged snapshot, from Iceberg's metadata (no data file is read)."""
    rows = spark.sql(
        f"SELECT partition.{PARTITION_COLUMN} AS date, record_count "
        f"FROM {staged.table.qualified}.partitions VERSION AS OF {staged.snapshot_id}"
    ).collect()
    return {r["date"]: int(r["record_count"]) for r in rows if r["date"] in staged.dates}


def read_staged(spark: SparkSession, staged: Staged) -> DataFrame:
    """Exactly the staged rows of the run's dates: what the blocking checks read."""
    return read(spark, staged.table, staged.dates, staged.snapshot_id)


def snapshot_exists(spark: SparkSession, target: Table, snapshot_id: int) -> bool:
    return bool(
        spark.sql(
            f"SELECT 1 FROM {target.qualified}.snapshots WHERE snapshot_id = {snapshot_id}"
        ).collect()
    )


def restage(spark: SparkSession, staged: Staged, keep: Callable[[DataFrame], DataFrame]) -> Staged:
    """The same rows less what `keep` drops, staged again on the current `main`; the old
    staged snapshot is expired."""
    if not snapshot_exists(spark, staged.table, staged.snapshot_id):
        raise StagedSnapshotGone(
            f"the staged snapshot {staged.snapshot_id} of {staged.table.qualified} was expired "
            "before it was published (an erasure or table maintenance); nothing was published"
        )
    again = stage(spark, staged.table, keep(read_staged(spark, staged)), staged.dates)
    discard(spark, staged)
    return again


def publish(
    spark: SparkSession,
    staged: Staged,
    keep: Callable[[DataFrame], DataFrame],
    check: Callable[[Staged], None] | None = None,
) -> tuple[Staged, int]:
    """Cherry-pick the staged snapshot onto `main`; returns what was published and `main`'s
    new snapshot id. `keep(rows)` drops the rows that must not be published any more (uploads
    erased meanwhile); it is asked again before each try. `check(staged)`, asked before each
    cherry-pick too, raises when that snapshot must not be published (a table of
    PUBLISHED_AS_STAGED, whose snapshot becomes `main` as it is): it is discarded then."""
    refused = ""
    for _ in range(PUBLISH_ATTEMPTS):
        rows = read_staged(spark, staged).select("path", "etag", "last_modified")
        if keep(rows).count() != rows.count():
            staged = restage(spark, staged, keep)
        _check_or_discard(spark, staged, check)
        try:
            picked = spark.sql(
                f"CALL {CATALOG}.system.cherrypick_snapshot("
                f"'{staged.table.identifier}', {staged.snapshot_id})"
            ).first()
        except Py4JJavaError as error:
            if not _is_conflict(error):
                raise
            refused = str(error.java_exception).splitlines()[0]
            staged = restage(spark, staged, keep)
            continue
        # The procedure's own answer: `main` may have moved again since.
        published = int(picked["current_snapshot_id"]) if picked else staged.snapshot_id
        if published != staged.snapshot_id:  # a copy was committed: the staged one goes
            discard(spark, staged)
        return staged, published
    raise RuntimeError(
        f"{staged.table.qualified}: dates {list(staged.dates)} kept changing on main; "
        f"{PUBLISH_ATTEMPTS} cherry-picks were refused, nothing was published (last: {refused})"
    )


def _check_or_discard(
    spark: SparkSession, staged: Staged, check: Callable[[Staged], None] | None
) -> None:
    """Run the caller's check on the snapshot about to be picked; a snapshot it refuses is
    expired, so that no later publish or reader of staged rows takes it."""
    if check is None:
        return
    try:
        check(staged)
    except Exception:
        discard(spark, staged)
        raise


def _is_conflict(error: Py4JJavaError) -> bool:
    text = str(error.java_exception)
    return any(name in text for name in CONFLICTS)


def discard(spark: SparkSession, staged: Staged) -> None:
    """Expire a staged snapshot (a failed audit, a superseded copy); its own files go too."""
    expire(spark, staged.table, [staged.snapshot_id])


def expire(spark: SparkSession, target: Table, snapshot_ids: Sequence[int]) -> dict[str, int]:
    """Expire these snapshots (those already gone are skipped) and delete the files no
    remaining snapshot references; what was deleted, by kind.

    Iceberg's expiry reads the metadata of every snapshot that left the table between its
    load and its commit: one that a concurrent expiry (another run's discard, an erasure,
    maintenance) removed meanwhile makes it fail, after its own commit. It is asked again on
    the refreshed table; files whose deletion was lost so are orphans (remove_orphan_files)."""
    for attempt in range(PUBLISH_ATTEMPTS):
        present = [s for s in snapshot_ids if snapshot_exists(spark, target, s)]
        if not present:
            return {}
        ids = ", ".join(str(s) for s in present)
        try:
            row = spark.sql(
                f"CALL {CATALOG}.system.expire_snapshots(table => '{target.identifier}', "
                f"snapshot_ids => array({ids}))"
            ).collect()[0]
        except Py4JJavaError as error:
            # Spark may wrap it as a suppressed failure: the whole trace is searched.
            vanished = "NotFoundException" in str(error)
            if vanished and attempt < PUBLISH_ATTEMPTS - 1:
                continue
            raise
        return {k: int(v) for k, v in row.asDict().items()}
    return {}  # not reached: the last attempt returns or raises


# --- history -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: int
    committed_at: dt.datetime
    on_main: bool  # an ancestor of `main` (published history), else staged or abandoned
    summary: dict[str, Any]


def snapshots(spark: SparkSession, target: Table) -> list[Snapshot]:
    """Every snapshot the table keeps, oldest first."""
    ancestors = {
        int(r["snapshot_id"])
        for r in spark.sql(f"SELECT snapshot_id FROM {target.qualified}.history")
        .where("is_current_ancestor")
        .collect()
    }
    rows = spark.sql(
        f"SELECT snapshot_id, unix_millis(committed_at) AS committed_ms, summary "
        f"FROM {target.qualified}.snapshots ORDER BY committed_at"
    ).collect()
    return [
        Snapshot(
            int(r["snapshot_id"]),
            dt.datetime.fromtimestamp(r["committed_ms"] / 1000, dt.UTC),
            int(r["snapshot_id"]) in ancestors,
            dict(r["summary"] or {}),
        )
        for r in rows
    ]


# --- erasure and maintenance ---------------------------------------------------------------


def branches(spark: SparkSession, target: Table) -> list[str]:
    """`main` first, then any other branch (a user's, say): an erasure reaches them all."""
    names = [
        r["name"]
        for r in spark.sql(
            f"SELECT name FROM {target.qualified}.refs WHERE type = 'BRANCH'"
        ).collect()
    ]
    return sorted(names, key=lambda name: (name != "main", name))


def delete_where(spark: SparkSession, target: Table, condition: str) -> dict[str, int]:
    """DELETE the rows matching `condition` on every branch (copy-on-write: the files that
    held them are replaced), retried while concurrent commits conflict; rows removed per
    branch."""
    removed = {}
    for branch in branches(spark, target):
        name = target.qualified + ("" if branch == "main" else f".branch_{branch}")
        for attempt in range(PUBLISH_ATTEMPTS):
            count = spark.sql(f"SELECT count(*) AS n FROM {name} WHERE {condition}").first()
            try:
                if count and count["n"]:
                    with _SESSION_WRITES:  # on `main`, not staged under a run's WAP id
                        spark.sql(f"DELETE FROM {name} WHERE {condition}")
                removed[branch] = int(count["n"]) if count else 0
                break
            except Py4JJavaError as error:
                if not _is_conflict(error) or attempt == PUBLISH_ATTEMPTS - 1:
                    raise
    return removed


def expire_unreferenced(
    spark: SparkSession, target: Table, *, older_than: dt.datetime, keep_staged_after: dt.datetime
) -> dict[str, int]:
    """Expire the published history older than `older_than` (never a branch's head) and the
    staged snapshots older than `keep_staged_after` (abandoned runs: younger ones belong to
    runs still writing); the files only they referenced are deleted."""
    heads = {
        int(r["snapshot_id"])
        for r in spark.sql(f"SELECT snapshot_id FROM {target.qualified}.refs").collect()
    }
    doomed = [
        s.snapshot_id
        for s in snapshots(spark, target)
        if s.snapshot_id not in heads
        and (s.committed_at < older_than if s.on_main else s.committed_at < keep_staged_after)
    ]
    return expire(spark, target, doomed)


def remove_orphan_files(spark: SparkSession, target: Table, older_than: dt.datetime) -> int:
    """Delete the files under the table that no snapshot references and that are older than
    `older_than` (younger ones may belong to a write not committed yet). Through Iceberg's
    action API: its SQL procedure refuses an interval under a day, which an erasure needs."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    iceberg_table = jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(
        spark._jsparkSession, target.qualified
    )
    result = (
        jvm.org.apache.iceberg.spark.actions.SparkActions.get(spark._jsparkSession)
        .deleteOrphanFiles(iceberg_table)
        .olderThan(int(older_than.timestamp() * 1000))
        .execute()
    )
    iterables = jvm.org.apache.iceberg.relocated.com.google.common.collect.Iterables
    return int(iterables.size(result.orphanFileLocations()))


def compact(spark: SparkSession, target: Table, target_file_mb: int) -> dict[str, int]:
    """Rewrite small files of each partition into files of about `target_file_mb`."""
    row = spark.sql(
        f"CALL {CATALOG}.system.rewrite_data_files(table => '{target.identifier}', "
        f"options => map('target-file-size-bytes', '{target_file_mb << 20}'))"
    ).collect()[0]
    return {k: int(v) for k, v in row.asDict().items() if isinstance(v, int)}


def files_holding(
    spark: SparkSession, target: Table, condition: str, candidates: Sequence[Snapshot]
) -> dict[int, set[str]]:
    """Per snapshot among `candidates`, the data files with a row matching `condition` (a
    snapshot expired meanwhile, a run's discarded stage, holds none any more)."""
    found: dict[int, set[str]] = {}
    for s in candidates:
        try:
            rows = spark.sql(
                f"SELECT DISTINCT _file FROM {target.qualified} VERSION AS OF {s.snapshot_id} "
                f"WHERE {condition}"
            ).collect()
        except Exception:  # py4j's or PySpark's own, when the snapshot went meanwhile
            if snapshot_exists(spark, target, s.snapshot_id):
                raise
            continue
        found[s.snapshot_id] = {r["_file"] for r in rows}
    return found


def holding(
    spark: SparkSession, target: Table, condition: str, candidates: Sequence[Snapshot]
) -> list[int]:
    """The snapshots among `candidates` in which some row matches `condition`."""
    return [s for s, files in files_holding(spark, target, condition, candidates).items() if files]


def delete_unreferenced(spark: SparkSession, target: Table, files: set[str]) -> list[str]:
    """Delete those of `files` that no snapshot of the table references any more: copies an
    expiry left behind (its deletions are best effort), whatever their age."""
    referenced = {
        r["file_path"]
        for r in spark.sql(f"SELECT file_path FROM {target.qualified}.all_files").collect()
    }
    gone = sorted(f for f in files - referenced if fs.exists(spark, f))
    for file in gone:
        fs.delete(spark, file)
    return gone


# --- PCA statistics: per-date sums a refit adds up (spark.pca) -----------------------------

# Not in SCHEMAS: no `path` column (the tables there keep none of its metrics), no staging (a
# date's statistics are derived from published features and name the data files they summed,
# `features_files`, a partition_fingerprints digest: a stale or missing row is recomputed).
STATISTICS = "pca_statistics"
STATISTICS_SCHEMA = (
    f"{PARTITION_COLUMN} string, weights_sha256 string, features_files string, rows bigint, "
    "feature_sum binary, gram binary"
)
STATISTICS_PROPERTIES = {
    "format-version": "2",
    "write.delete.mode": "copy-on-write",
    # float64 sums do not compress: no codec to pay for on every refit's read.
    "write.parquet.compression-codec": "uncompressed",
    # Bounds of binary sums say nothing useful.
    "write.metadata.metrics.default": "counts",
    # A row holds a date's 1280 x 1280 sums (megabytes): Parquet's writer measures its pages
    # and row groups only every 100 rows by default, by then past an executor's heap.
    "write.parquet.row-group-check-min-record-count": "1",
    "write.parquet.row-group-check-max-record-count": "1",
    # A year's first refit writes 365 such rows at once: one open file per task, not per date.
    "write.spark.fanout.enabled": "false",
    "commit.retry.num-retries": "20",
    "commit.retry.min-wait-ms": "100",
}


def statistics_table(layout: Layout) -> Table:
    return Table(STATISTICS, layout.namespace, layout.table_uri(STATISTICS))


def ensure_statistics_table(spark: SparkSession, target: Table) -> None:
    _create(spark, target, STATISTICS_SCHEMA, STATISTICS_PROPERTIES)
    set_properties(spark, target, STATISTICS_PROPERTIES)


def overwrite_dates(spark: SparkSession, target: Table, rows: DataFrame, dates: Sequence[str]):
    """Replace the rows of `dates` by `rows` straight on `main` (no staging), retried while
    concurrent commits conflict."""
    columns = [column.split()[0] for column in STATISTICS_SCHEMA.split(", ")]
    for attempt in range(PUBLISH_ATTEMPTS):
        try:
            with _SESSION_WRITES:  # on `main`, not staged under another run's WAP id
                rows.select(*columns).writeTo(target.qualified).overwrite(
                    F.col(PARTITION_COLUMN).isin(sorted(set(dates)))
                )
            return
        except Py4JJavaError as error:
            if not _is_conflict(error) or attempt == PUBLISH_ATTEMPTS - 1:
                raise


def partition_fingerprints(
    spark: SparkSession, target: Table, snapshot_id: int, dates: Sequence[str] | None = None
) -> dict[str, str]:
    """Per date of a snapshot (of `dates` only, when given: the manifests of the others are
    pruned), a digest of its data files' paths: data files never change, so any change of the
    date's rows (a write, a DELETE, a compaction) changes it. From Iceberg's metadata (unlike
    last_updated_snapshot_id, it outlives snapshot expiry); no data file is read. An emptied
    date is absent."""
    only = ""
    if dates is not None:
        listed = ", ".join(f"'{_sql_literal(d)}'" for d in sorted(set(dates)))
        only = f" AND partition.{PARTITION_COLUMN} IN ({listed})" if listed else " AND false"
    rows = spark.sql(
        f"SELECT partition.{PARTITION_COLUMN} AS date, "
        "sha2(concat_ws(',', sort_array(collect_list(file_path))), 256) AS files "
        f"FROM {target.qualified}.files VERSION AS OF {snapshot_id} WHERE content = 0{only} "
        "GROUP BY 1"
    ).collect()
    return {r["date"]: r["files"] for r in rows}


def properties(spark: SparkSession, target: Table) -> dict[str, str]:
    rows = spark.sql(f"SHOW TBLPROPERTIES {target.qualified}").collect()
    return {r["key"]: r["value"] for r in rows}


def set_properties(spark: SparkSession, target: Table, wanted: dict[str, str]) -> None:
    """Set the table properties that differ (one commit, none when all match)."""
    current = properties(spark, target)
    changed = {k: v for k, v in wanted.items() if current.get(k) != v}
    if changed:
        listed = ", ".join(f"'{k}'='{_sql_literal(v)}'" for k, v in changed.items())
        spark.sql(f"ALTER TABLE {target.qualified} SET TBLPROPERTIES ({listed})")


def _sql_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def column_bounds_per_date(
    spark: SparkSession, target: Table, column: str, snapshot_id: int | None = None
) -> dict[str, set[tuple[str | None, str | None]]]:
    """Per date, the (lower, upper) bounds of `column` that the data files' metadata keep:
    Iceberg's `files` metadata table, one entry per file, no data file read."""
    at = f" VERSION AS OF {snapshot_id}" if snapshot_id is not None else ""
    rows = spark.sql(
        f"SELECT DISTINCT partition.{PARTITION_COLUMN} AS date, "
        f"readable_metrics.{column}.lower_bound AS lower, "
        f"readable_metrics.{column}.upper_bound AS upper "
        f"FROM {target.qualified}.files{at} WHERE content = 0"
    ).collect()
    found: dict[str, set[tuple[str | None, str | None]]] = {}
    for r in rows:
        found.setdefault(r["date"], set()).add((r["lower"], r["upper"]))
    return found
