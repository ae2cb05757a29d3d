"""The pipeline's steps, S3 to Iceberg: features (with rejects), PCA model, reduced features.

Each step stages its new version out of readers' sight (stage_*: a staged Iceberg snapshot),
the caller audits it (spark.quality), and only then publishes it (publish_staged: one
cherry-pick onto `main`; pca.publish_pca): a version that fails its checks never reaches
readers. The Dagster assets (fruits_assets) drive the three phases; extract_features stages and
publishes at once, for scripts and tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark import pca, tables
from spark.featurize import broadcast_model, featurize
from spark.fetch import ImageSource
from spark.images import manifest_images, tombstoned, without_erased
from spark.layout import PARTITION_COLUMN, Layout
from spark.model import TFLITE, ModelWeights
from spark.progress import Report, watch
from spark.tables import FEATURES, REDUCED, Staged

# Reject reasons listed in a run's report; the rest are counted (the table has them all).
REPORTED_REJECTS = 100
# The reduced table's metadata names its PCA version in full (Iceberg truncates string bounds
# to 16 characters by default; a version has 25): dates_on_other_versions reads it there.
FULL_VERSION_METRICS = {"write.metadata.metrics.column.pca_version": "full"}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureRun:
    staged: Staged
    rejects: list[dict[str, Any]]  # path, reason: the first REPORTED_REJECTS, for reports
    model_builds: int
    weights_source: str
    weights_sha256: str
    features_per_date: dict[str, int]
    rejects_per_date: dict[str, int]
    # The manifest entries the run processed (erased uploads left out): what its rows must
    # account for. A plan, not data: reading it reads the manifests again, not the tombstones.
    expected: DataFrame = field(repr=False, compare=False)
    worker_peak_rss_mb: float = 0.0

    @property
    def feature_rows(self) -> int:
        return sum(self.features_per_date.values())

    def audit_inputs(self, spark: SparkSession) -> tuple[DataFrame, DataFrame, DataFrame]:
        """What the blocking checks read: the expected entries, and the staged snapshot's
        feature rows and rejects."""
        staged = tables.read_staged(spark, self.staged)
        return self.expected, feature_rows(staged), reject_rows(staged)


@dataclass(frozen=True)
class PcaRun:
    version: str
    uri: str
    rows: int
    explained_variance: list[float] = field(repr=False)
    rows_per_date: dict[str, int] = field(default_factory=dict)
    features_snapshot: int | None = None


@dataclass(frozen=True)
class ReducedRun:
    staged: Staged
    version: str
    features_snapshot: int
    features_per_date: dict[str, int]  # feature rows (rejects aside) the reduced rows match
    switched: list[str]  # dates not asked for, moved to this PCA version in the same commit


def feature_rows(rows: DataFrame) -> DataFrame:
    """The rows of the features table that hold features (the others are rejects)."""
    return rows.where(F.col("reject_reason").isNull())


def reject_rows(rows: DataFrame) -> DataFrame:
    return rows.where(F.col("reject_reason").isNotNull())


def stage_features(
    spark: SparkSession,
    layout: Layout,
    s3: Any,
    dates: Sequence[str],
    weights: ModelWeights,
    *,
    source: ImageSource,
    tf_threads: int = 1,
    engine: str = TFLITE,
    progress: Report | None = None,
    expected: dict[str, int] | None = None,
    target_file_mb: int | None = None,
) -> FeatureRun:
    """The manifest entries of `dates` -> one staged snapshot of the features table, one row
    per entry: its features, or its reject reason.

    With `progress`, lines of progress go there while it runs (spark.progress); `expected`
    (images per date, from the manifests) gives the counts to go and the time left.
    """
    model = broadcast_model(spark, weights, threads=tf_threads, engine=engine)
    images = manifest_images(
        spark, layout, dates, tombstoned(s3, layout, dates), sum((expected or {}).values())
    )
    scored = (
        featurize(images, model, source)
        .withColumn("weights_source", F.lit(weights.source))
        .withColumn("weights_sha256", F.lit(weights.sha256))
        .withColumn("reject_reason", F.col("error"))
        .withColumn("features", F.when(F.col("error").isNull(), F.col("features")))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        with watch(spark, progress, "featurize", model.images_done, expected):
            # Every image fetched and scored once, in small tasks; the write reads the cache.
            scored.count()
            staged = tables.stage(
                spark, tables.table(layout, FEATURES), scored, dates, target_file_mb=target_file_mb
            )
            # From the cached rows, not read back from S3 after publication; less the uploads
            # erased since the run began, whose sums must be written nowhere.
            _best_effort(
                lambda: pca.store_staged_statistics(
                    spark, layout, staged, without_erased(scored, tombstoned(s3, layout, dates))
                ),
                f"PCA statistics of {', '.join(dates)} not computed from the run's rows; "
                "they are computed from the table after publication",
            )
            per_kind = scored.groupBy(PARTITION_COLUMN, F.col("error").isNull().alias("ok"))
            counts = {
                (r[PARTITION_COLUMN], r["ok"]): r["count"] for r in per_kind.count().collect()
            }
            reject_list = [
                {"path": r["path"], "reason": r["reject_reason"]}
                for r in reject_rows(scored)
                .select("path", "reject_reason")
                .orderBy("path")
                .limit(REPORTED_REJECTS)
                .collect()
            ]
    finally:
        scored.unpersist()
    return FeatureRun(
        staged,
        reject_list,
        model.builds.value,
        weights.source,
        weights.sha256,
        {d: counts.get((d, True), 0) for d in staged.dates},
        {d: counts.get((d, False), 0) for d in staged.dates},
        expected=images,
        worker_peak_rss_mb=round(model.worker_peak_rss_mb.value, 1),
    )


def publish_staged(
    spark: SparkSession, layout: Layout, s3: Any, staged: Staged
) -> tuple[Staged, int]:
    """Publish a staged write (one commit for all its dates), without the uploads erased since
    it was staged; what was published and `main`'s snapshot id."""

    def keep(rows: DataFrame) -> DataFrame:
        # Asked again before each try: an erasure may land between two.
        return without_erased(rows, tombstoned(s3, layout, staged.dates))

    check = one_pca_version(spark, layout, s3) if staged.table.name == REDUCED else None
    published, snapshot = tables.publish(spark, staged, keep, check)
    # The rows are published: what follows describes them, and its failure must not fail the
    # run (a warning says what is left to do).
    if staged.table.name == FEATURES:
        _best_effort(
            lambda: pca.refresh_statistics(spark, layout, snapshot, published.dates),
            f"PCA statistics of {', '.join(published.dates)} not written; the next PCA fit "
            "computes them (pca.refresh_statistics)",
        )
    elif staged.table.name == REDUCED:
        _best_effort(
            lambda: describe_projection(spark, layout, s3, snapshot),
            f"the properties of {staged.table.qualified} were not updated to its PCA version; "
            "its rows' pca_version names it",
        )
    return published, snapshot


class StalePcaVersion(RuntimeError):
    """Publishing these reduced rows would put on `main` another PCA version than the current
    one (a refit published meanwhile), or two versions at once: nothing was published; run
    again, which reduces with the current version and switches every date."""


def one_pca_version(spark: SparkSession, layout: Layout, s3: Any) -> Callable[[Staged], None]:
    """The check of a staged snapshot of the reduced table before it becomes `main` (it is
    published as staged, tables.PUBLISHED_AS_STAGED): every date on the current PCA version
    (LATEST, read at each try: a refit may publish between two), so no reader mixes two."""

    def check(staged: Staged) -> None:
        current = pca.latest_version(layout, s3)
        if other := dates_on_other_versions(spark, layout, current, staged.snapshot_id):
            raise StalePcaVersion(
                f"{staged.table.qualified}: snapshot {staged.snapshot_id} would publish "
                f"{len(other)} date(s) on another PCA version than the current {current} "
                f"(first: {other[0]}); nothing was published, run again to reduce with the "
                "current version"
            )

    return check


def _best_effort(step: Callable[[], object], consequence: str) -> None:
    """Run a step that describes rows without deciding what is published: its failure is a
    warning that says what is left to do, not the run's."""
    try:
        step()
    except Exception as error:  # any: the published rows stand whatever happens here
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        log.warning("%s (%s)", consequence, first_line)


def extract_features(
    spark: SparkSession,
    layout: Layout,
    s3: Any,
    dates: Sequence[str],
    weights: ModelWeights,
    *,
    source: ImageSource,
    **options: Any,
) -> FeatureRun:
    """stage_features, then publish without an audit (scripts, tests, benchmarks)."""
    run = stage_features(spark, layout, s3, dates, weights, source=source, **options)
    publish_staged(spark, layout, s3, run.staged)
    return run


def read_table(
    spark: SparkSession,
    layout: Layout,
    name: str,
    dates: Sequence[str] | None = None,
    snapshot_id: int | None = None,
) -> DataFrame:
    """The published rows of one table for `dates` (every date when None)."""
    return tables.read(spark, tables.table(layout, name), dates, snapshot_id)


def read_features(
    spark: SparkSession,
    layout: Layout,
    dates: Sequence[str] | None = None,
    snapshot_id: int | None = None,
) -> DataFrame:
    """The published feature rows (rejects aside)."""
    return feature_rows(read_table(spark, layout, FEATURES, dates, snapshot_id))


def features_snapshot(spark: SparkSession, layout: Layout) -> int:
    snapshot = tables.current_snapshot(spark, tables.table(layout, FEATURES))
    if snapshot is None:
        raise ValueError(f"no features published in {layout.namespace}.{FEATURES} yet")
    return snapshot


def fit_pca_version(
    spark: SparkSession,
    layout: Layout,
    s3: Any,
    *,
    k: int,
    weights_sha256: str,
    progress: Report | None = None,
    variance_target: float | None = None,
) -> PcaRun:
    """Fit PCA on every published feature row of one snapshot of the features table (which
    the model's metadata names) and save it under a new version, unpublished: LATEST moves
    only through pca.publish_pca. With `variance_target`, k is the fewest components reaching
    it instead (pca.fit_pca).

    The fit reads per-date statistics (pca.refresh_statistics), not the rows: only the dates
    whose features changed since their statistics were written are read again."""
    snapshot = features_snapshot(spark, layout)
    with watch(spark, progress, "pca"):
        statistics = pca.refresh_statistics(spark, layout, snapshot)
        pca.require_one_digest_in_statistics(statistics, weights_sha256)
        per_date = {
            r[PARTITION_COLUMN]: int(r["rows"])
            for r in statistics.where(F.col("rows") > 0)
            .groupBy(PARTITION_COLUMN)
            .agg(F.sum("rows").alias("rows"))
            .collect()
        }
        rows = sum(per_date.values())
        if rows == 0:
            raise ValueError(f"no feature rows in {layout.namespace}.{FEATURES} to fit on")
        totals = pca.sum_statistics(statistics)
        model = pca.pca_from_totals(spark, totals, k, variance_target)
    version = pca.new_version()
    details = {
        "rows": rows,
        "rows_per_date": per_date,
        "features_table": f"{layout.namespace}.{FEATURES}",
        "features_snapshot": snapshot,
        "weights_sha256": weights_sha256,
        "variance_target": variance_target,
        **pca.projection_details(totals.mean),
    }
    uri = pca.save_pca(model, layout, s3, version, details)
    return PcaRun(version, uri, rows, pca.explained_variance(model), per_date, snapshot)


def pca_versions_per_date(
    spark: SparkSession, layout: Layout, snapshot_id: int | None = None
) -> dict[str, str | None]:
    """The PCA version of each date of the reduced table (`main`, or a snapshot), None where
    its files hold several or do not say: from the data files' metadata (the bounds of
    `pca_version`), whatever the number of rows."""
    bounds = tables.column_bounds_per_date(
        spark, tables.table(layout, REDUCED), "pca_version", snapshot_id
    )
    found: dict[str, str | None] = {}
    for date, pairs in bounds.items():
        (lower, upper), *others = sorted(pairs, key=str)
        found[date] = lower if not others and lower == upper else None
    return found


def dates_on_other_versions(
    spark: SparkSession, layout: Layout, version: str, snapshot_id: int | None = None
) -> list[str]:
    """Dates whose reduced rows (`main`'s, or a snapshot's) come from another PCA version than
    `version` (or whose metadata cannot tell): reads Iceberg's file metadata, not the rows."""
    if not tables.exists(spark, tables.table(layout, REDUCED)):
        return []
    versions = pca_versions_per_date(spark, layout, snapshot_id)
    return sorted(d for d, v in versions.items() if v != version)


def describe_projection(spark: SparkSession, layout: Layout, s3: Any, snapshot_id: int) -> None:
    """Name in the reduced table's properties what a consumer needs to project new features
    as its rows were (pca.projection_properties), once its rows on `main` are all of one
    version; a concurrent publication of another version ends up described by its own run."""
    versions = set(pca_versions_per_date(spark, layout, snapshot_id).values())
    if len(versions) != 1 or None in versions:
        return
    (version,) = versions
    assert version is not None
    metadata = pca.read_pca_metadata(layout, s3, version)
    properties = pca.projection_properties(layout, metadata)
    tables.set_properties(spark, tables.table(layout, REDUCED), properties)


def stage_reduced(
    spark: SparkSession,
    layout: Layout,
    s3: Any,
    dates: Sequence[str],
    version: str,
    *,
    progress: Report | None = None,
    target_file_mb: int | None = None,
) -> ReducedRun:
    """Features of `dates` -> staged reduced rows with the PCA model `version`, refused when
    the features come from other weights than the model was fitted on. The reduced table
    holds one PCA version: dates published with another one are switched in the same
    snapshot, so that no reader ever mixes two (and publish_staged refuses the snapshot if
    a refit published another version meanwhile)."""
    target = tables.table(layout, REDUCED)
    tables.ensure_table(spark, target, target_file_mb)
    tables.set_properties(spark, target, FULL_VERSION_METRICS)
    switched = sorted(set(dates_on_other_versions(spark, layout, version)) - set(dates))
    every = sorted(set(dates) | set(switched))
    snapshot = features_snapshot(spark, layout)
    features = read_features(spark, layout, every, snapshot)
    pca.require_one_digest(features, pca.read_pca_metadata(layout, s3, version)["weights_sha256"])
    reduced = pca.reduce_features(pca.load_pca(layout, version), features, version)
    with watch(spark, progress, "reduce"):
        staged = tables.stage(
            spark, tables.table(layout, REDUCED), reduced, every, target_file_mb=target_file_mb
        )
    per_date = tables.rows_per_date(features)
    return ReducedRun(staged, version, snapshot, {d: per_date.get(d, 0) for d in every}, switched)


def cumulative(variance: Sequence[float], at: Sequence[int] = (10, 50, 100)) -> dict[int, float]:
    """The cumulative explained variance at each of `at` the model has, and at its k."""
    running = pca.cumulative_variance(variance)
    kept = sorted({n for n in at if n <= len(running)} | ({len(running)} if running else set()))
    return {n: round(running[n - 1], 6) for n in kept}
