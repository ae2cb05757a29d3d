"""The pipeline's steps, S3 to S3: features (+ rejects), PCA model, reduced features.

Each step writes its new version out of readers' sight (stage_*), the caller audits it
(spark.quality), and only then publishes it (publish_staged, publish_pca): a version that
fails its checks never reaches readers. The Dagster assets (fruits_assets) drive the three
phases; extract_features and write_reduced stage and publish at once, for scripts and tests.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark import pca
from spark.featurize import broadcast_model, featurize
from spark.fetch import ImageSource
from spark.images import manifest_images, tombstoned, without_erased
from spark.layout import FEATURES, PARTITION_COLUMN, REDUCED, REJECTS, Layout
from spark.locks import date_locks
from spark.model import TFLITE, ModelWeights
from spark.progress import Report, watch
from spark.publish import (
    Staged,
    publish,
    published_versions,
    read_published,
    read_staged,
    restage,
    rows_per_date,
    stage,
)

FEATURE_COLUMNS = [
    "path",
    PARTITION_COLUMN,
    "label",
    "size_bytes",
    "features",
    "weights_source",
    "weights_sha256",
]
REJECT_COLUMNS = ["path", PARTITION_COLUMN, "label", "size_bytes", "reason"]
# Reject reasons listed in a run's report; the rest are counted (rejects/ has them all).
REPORTED_REJECTS = 100


@dataclass(frozen=True)
class FeatureRun:
    staged: Staged
    rejects: list[dict[str, Any]]  # path, reason: the first REPORTED_REJECTS, for reports
    model_builds: int
    weights_source: str
    weights_sha256: str
    worker_peak_rss_mb: float = 0.0

    @property
    def features_per_date(self) -> dict[str, int]:
        return self.staged.rows(FEATURES)

    @property
    def rejects_per_date(self) -> dict[str, int]:
        return self.staged.rows(REJECTS)

    @property
    def feature_rows(self) -> int:
        return sum(self.features_per_date.values())


@dataclass(frozen=True)
class PcaRun:
    version: str
    uri: str
    rows: int
    explained_variance: list[float] = field(repr=False)
    rows_per_date: dict[str, int] = field(default_factory=dict)
    feature_versions: dict[str, str] = field(default_factory=dict)


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
    expected: Mapping[str, int] | None = None,
) -> FeatureRun:
    """The manifest entries of `dates` -> staged features and rejects, one row per entry.

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
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        with watch(spark, progress, "featurize", model.images_done, expected):
            # Every image fetched and scored once, in small tasks; what follows reads the
            # cache. Few files per date: each staged file costs S3 requests to commit and to
            # publish, made one after another, each paying S3's latency.
            scored.count()
            files = spark.sparkContext.defaultParallelism
            ok = scored.where(F.col("error").isNull()).select(FEATURE_COLUMNS).coalesce(files)
            bad = scored.where(F.col("error").isNotNull()).withColumn("reason", F.col("error"))
            bad = bad.select(REJECT_COLUMNS).coalesce(files)
            staged = stage(
                spark, {layout.dataset(FEATURES): ok, layout.dataset(REJECTS): bad}, dates
            )
            reject_list = [
                r.asDict()
                for r in bad.select("path", "reason")
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
        round(model.worker_peak_rss_mb.value, 1),
    )


def publish_staged(
    spark: SparkSession, layout: Layout, s3: Any, staged: Staged, keep_previous: bool = True
) -> None:
    """Publish a staged write under its dates' locks, without the images erased meanwhile."""
    with date_locks(s3, layout, staged.dates, owner=f"publish {staged.attempt}"):
        drop_erased(spark, layout, s3, staged)
        publish(spark, staged, keep_previous)


def drop_erased(spark: SparkSession, layout: Layout, s3: Any, staged: Staged) -> None:
    """An erasure that ran while this write was staged must not be undone by publishing it."""
    erased = tombstoned(s3, layout, staged.dates)
    if not erased:
        return
    for name in staged.datasets:
        rows = read_staged(spark, staged, name)
        if rows.count() != without_erased(rows, erased).count():
            restage(spark, staged, name, lambda r: without_erased(r, erased))
        else:  # the erasure may have rewritten the staged rows itself (spark.erasure)
            staged.counts[name] = rows_per_date(rows)


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


def read_dataset(
    spark: SparkSession, layout: Layout, name: str, dates: Sequence[str] | None = None
) -> DataFrame:
    """The published rows of one dataset for `dates` (every date when None)."""
    return read_published(spark, layout.dataset(name), dates)


def read_features(
    spark: SparkSession, layout: Layout, dates: Sequence[str] | None = None
) -> DataFrame:
    return read_dataset(spark, layout, FEATURES, dates)


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
    """Fit PCA on every published feature row of the current weights and save it under a new
    version, unpublished: LATEST moves only through pca.publish_pca. With `variance_target`,
    k is the fewest components reaching it instead (pca.fit_pca)."""
    versions = published_versions(spark, layout.dataset(FEATURES))
    features = read_features(spark, layout, sorted(versions)).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with watch(spark, progress, "pca"):
            pca.require_one_digest(features, weights_sha256)
            per_date = rows_per_date(features)
            rows = sum(per_date.values())
            if rows == 0:
                raise ValueError(f"no features under {layout.features_uri()} to fit PCA on")
            model = pca.fit_pca(features, k, variance_target)
    finally:
        features.unpersist()
    version = pca.new_version()
    details = {
        "rows": rows,
        "rows_per_date": per_date,
        "feature_versions": versions,
        "weights_sha256": weights_sha256,
        "features_uri": layout.features_uri(),
        "variance_target": variance_target,
    }
    uri = pca.save_pca(model, layout, s3, version, details)
    return PcaRun(version, uri, rows, pca.explained_variance(model), per_date, versions)


def fit_and_save_pca(
    spark: SparkSession,
    layout: Layout,
    s3: Any,
    *,
    k: int,
    weights_sha256: str,
    progress: Report | None = None,
) -> PcaRun:
    """fit_pca_version, then publish without an audit (scripts, tests, benchmarks)."""
    run = fit_pca_version(spark, layout, s3, k=k, weights_sha256=weights_sha256, progress=progress)
    pca.publish_pca(layout, s3, run.version)
    return run


def stage_reduced(
    spark: SparkSession,
    layout: Layout,
    s3: Any,
    dates: Sequence[str],
    version: str,
    *,
    progress: Report | None = None,
) -> Staged:
    """features of `dates` -> staged reduced rows with the PCA model `version`, refused when
    the features come from other weights than the model was fitted on."""
    features = read_features(spark, layout, dates)
    pca.require_one_digest(features, pca.read_pca_metadata(layout, s3, version)["weights_sha256"])
    reduced = pca.reduce_features(pca.load_pca(layout, version), features, version)
    with watch(spark, progress, "reduce"):
        return stage(spark, {layout.dataset(REDUCED): reduced}, dates)


def write_reduced(
    spark: SparkSession,
    layout: Layout,
    s3: Any,
    dates: Sequence[str],
    version: str,
    *,
    progress: Report | None = None,
) -> dict[str, int]:
    """stage_reduced, then publish without an audit; rows per date."""
    staged = stage_reduced(spark, layout, s3, dates, version, progress=progress)
    publish_staged(spark, layout, s3, staged)
    return staged.rows(REDUCED)


def cumulative(variance: Sequence[float], at: Sequence[int] = (10, 50, 100)) -> dict[int, float]:
    running = pca.cumulative_variance(variance)
    return {n: round(running[min(n, len(running)) - 1], 6) for n in at if running}
