"""The pipeline's steps, S3 to S3: features (+ rejects), PCA model, reduced features.

Each step takes a SparkSession and a Layout and writes Parquet partitioned by upload_date;
the Dagster assets (fruits_assets) and the demo both call these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark.featurize import broadcast_model, featurize
from spark.images import read_images
from spark.layout import PARTITION_COLUMN, Layout
from spark.model import TFLITE, ModelWeights
from spark.pca import explained_variance, fit_pca, load_pca, new_version, reduce_features, save_pca
from spark.progress import Report, watch
from spark.publish import publish_partitions, read_published

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


@dataclass(frozen=True)
class FeatureRun:
    features_per_date: dict[str, int]
    rejects_per_date: dict[str, int]
    rejects: list[dict[str, Any]]  # path, reason: small by design, for reports
    model_builds: int
    weights_source: str
    weights_sha256: str
    worker_peak_rss_mb: float = 0.0

    @property
    def feature_rows(self) -> int:
        return sum(self.features_per_date.values())


@dataclass(frozen=True)
class PcaRun:
    version: str
    uri: str
    rows: int
    explained_variance: list[float] = field(repr=False)


def rows_per_date(rows: DataFrame) -> dict[str, int]:
    return {
        r[PARTITION_COLUMN]: r["count"] for r in rows.groupBy(PARTITION_COLUMN).count().collect()
    }


def write_partitions(
    spark: SparkSession,
    rows: DataFrame,
    dataset_uri: str,
    dates: Sequence[str],
    keep_previous: bool = True,
) -> dict[str, int]:
    """Replace the given dates' partitions, each atomically (spark.publish); rows per date.

    A requested date with no rows becomes empty, so a re-run never leaves stale rows behind.
    """
    counts = rows_per_date(rows)
    publish_partitions(spark, rows, dataset_uri, dates, counts, keep_previous)
    return {date: counts.get(date, 0) for date in dates}


def extract_features(
    spark: SparkSession,
    layout: Layout,
    dates: Sequence[str],
    weights: ModelWeights,
    tf_threads: int,
    decode_prefetch: bool = False,
    engine: str = TFLITE,
    progress: Report | None = None,
    expected: Mapping[str, int] | None = None,
) -> FeatureRun:
    """raw images of `dates` -> features/ and rejects/ for those dates.

    With `progress`, lines of progress go there while it runs (spark.progress); `expected`
    (images per date, e.g. from the manifests) gives the counts to go and the time left.
    """
    model = broadcast_model(spark, weights, tf_threads, decode_prefetch, engine)
    scored = (
        featurize(read_images(spark, layout, dates), model)
        .withColumn("weights_source", F.lit(weights.source))
        .withColumn("weights_sha256", F.lit(weights.sha256))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    try:
        with watch(spark, progress, "featurize", model.images_done, expected):
            ok = scored.where(F.col("error").isNull()).select(FEATURE_COLUMNS)
            bad = scored.where(F.col("error").isNotNull()).withColumn("reason", F.col("error"))
            bad = bad.select(REJECT_COLUMNS)
            features = write_partitions(spark, ok, layout.features_uri(), dates)
            rejects = write_partitions(spark, bad, layout.rejects_uri(), dates)
            reject_list = [
                r.asDict() for r in bad.select("path", "reason").orderBy("path").collect()
            ]
    finally:
        scored.unpersist()
    return FeatureRun(
        features,
        rejects,
        reject_list,
        model.builds.value,
        weights.source,
        weights.sha256,
        round(model.worker_peak_rss_mb.value, 1),
    )


def read_dataset(spark: SparkSession, uri: str, dates: Sequence[str] | None = None) -> DataFrame:
    """The published rows of `dates` (every date when None)."""
    return read_published(spark, uri, dates)


def read_features(
    spark: SparkSession, layout: Layout, dates: Sequence[str] | None = None
) -> DataFrame:
    return read_dataset(spark, layout.features_uri(), dates)


def fit_and_save_pca(
    spark: SparkSession, layout: Layout, s3: Any, k: int, progress: Report | None = None
) -> PcaRun:
    """Fit PCA on every feature row stored so far and save it under a new version."""
    features = read_features(spark, layout).select("features").persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with watch(spark, progress, "pca"):
            rows = features.count()
            if rows == 0:
                raise ValueError(f"no features under {layout.features_uri()} to fit PCA on")
            model = fit_pca(features, k)
    finally:
        features.unpersist()
    version = new_version()
    uri = save_pca(
        model, layout, s3, version, {"rows": rows, "features_uri": layout.features_uri()}
    )
    return PcaRun(version, uri, rows, explained_variance(model))


def write_reduced(
    spark: SparkSession,
    layout: Layout,
    dates: Sequence[str],
    version: str,
    progress: Report | None = None,
) -> dict[str, int]:
    """features of `dates` -> reduced/ with the PCA model `version`."""
    reduced = reduce_features(
        load_pca(layout, version), read_features(spark, layout, dates), version
    )
    with watch(spark, progress, "reduce"):
        return write_partitions(spark, reduced, layout.reduced_uri(), dates)


def cumulative(variance: Sequence[float], at: Sequence[int] = (10, 50, 100)) -> dict[int, float]:
    total = 0.0
    running = []
    for v in variance:
        total += v
        running.append(total)
    return {n: round(running[min(n, len(running)) - 1], 6) for n in at if running}
