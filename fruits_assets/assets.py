"""The four assets of group `fruits`: raw_images -> image_features -> pca_model -> reduced_features.

Write, audit, publish: each Spark asset writes its new version out of readers' sight, runs its
blocking checks on that staged version, and publishes it (pointers, LATEST) only when they all
pass. A failed check publishes nothing, records no materialization (so nothing downstream runs,
automation included), and names where the staged version can be inspected.
"""

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg

from fruits_assets import metadata as md
from fruits_assets.observability import progress_to_run_log, spark_ui_metadata
from fruits_assets.partitions import ONE_RUN_PER_BACKFILL, UPLOAD_DATES
from fruits_assets.resources import FruitsConfig, SparkResource
from spark import quality
from spark.fetch import ImageSource
from spark.images import manifest_images, tombstoned
from spark.layout import FEATURES, REDUCED, REJECTS
from spark.manifest import list_manifest, read_manifest, write_manifest
from spark.model import FEATURE_DIM, load_weights
from spark.pca import latest_version, publish_pca, read_pca_metadata
from spark.pipeline import (
    cumulative,
    fit_pca_version,
    publish_staged,
    read_features,
    stage_features,
    stage_reduced,
)
from spark.publish import read_staged, rows_per_date
from spark.storage import preflight

GROUP = "fruits"
Results = Iterator[dg.MaterializeResult | dg.AssetCheckResult]
# The Spark assets take the `pyspark_step_launcher` resource: None locally (they run in
# process), Dagster's EMR step launcher in the `emr` deployment (they run as EMR steps).
StepLauncherParam = dg.ResourceParam[Any]

# Check names, used by the specs, the results and the tests.
STORAGE_IN_EU = "storage_in_eu"
EVERY_IMAGE_ACCOUNTED = "every_image_accounted"
VECTORS_FINITE = "vectors_finite"
REJECT_RATE = "reject_rate"
EXPLAINED_VARIANCE = "explained_variance"
MATCHES_FEATURES = "matches_features"


def check_result(
    name: str, outcome: quality.Outcome, asset: str, staged: Mapping[str, str] | None = None
) -> dg.AssetCheckResult:
    extra = {"staged_at": dg.MetadataValue.json(dict(staged))} if staged else {}
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=outcome.passed,
        description=outcome.description,
        metadata={"details": dg.MetadataValue.json(outcome.details), **extra},
    )


def audit_then_publish(
    asset: str,
    outcomes: Mapping[str, quality.Outcome],
    staged: Mapping[str, str],
    publish: Callable[[], None],
    materialization: Callable[[], dg.MaterializeResult],
) -> Results:
    """Publish only when every blocking check passed on the staged version; else report the
    checks, with where the staged version lies, and fail without a materialization."""
    failed = sorted(name for name, outcome in outcomes.items() if not outcome.passed)
    if failed:
        for name, outcome in outcomes.items():
            yield check_result(name, outcome, asset, staged)
        raise dg.Failure(
            description=(
                f"{asset}: blocking checks failed ({', '.join(failed)}); nothing was published, "
                f"readers keep the previous version. Staged for inspection: {dict(staged)}"
            )
        )
    publish()
    yield materialization()
    for name, outcome in outcomes.items():
        yield check_result(name, outcome, asset)


def blocking(name: str, asset: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=True, description=description)


def count_table(counts: dict[str, dict[str, int]], key: str = "upload_date") -> dg.MetadataValue:
    """A table of counts, one row per key (upload date, label...)."""
    columns = sorted({c for row in counts.values() for c in row})
    return dg.MetadataValue.table(
        records=[dg.TableRecord({key: k, **row}) for k, row in sorted(counts.items())],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(key, "string")] + [dg.TableColumn(c, "int") for c in columns]
        ),
    )


@dg.asset(
    group_name=GROUP,
    partitions_def=UPLOAD_DATES,
    backfill_policy=ONE_RUN_PER_BACKFILL,
    metadata={"dagster/column_schema": md.MANIFEST_SCHEMA},
    check_specs=[
        blocking(STORAGE_IN_EU, "raw_images", "every bucket the pipeline uses is in the EU")
    ],
)
def raw_images(context: dg.AssetExecutionContext, fruits: FruitsConfig) -> Results:
    """The manifest of each upload date: every file under raw/upload_date=D/, listed from S3."""
    s3, layout = fruits.s3(), fruits.layout()
    preflight(s3, fruits.settings())
    in_eu = quality.bucket_in_eu(s3, layout.bucket)
    if not in_eu.passed:  # nothing is written outside the EU, not even a manifest
        yield check_result(STORAGE_IN_EU, in_eu, "raw_images")
        raise dg.Failure(f"GDPR: {in_eu.description}; refusing to write there")
    labels: dict[str, int] = {}
    per_date: dict[str, dict[str, int]] = {}
    total_bytes = 0
    for date in context.partition_keys:
        rows = list_manifest(s3, layout, date)
        write_manifest(s3, layout, date, rows)
        per_date[date] = {"images": len(rows)}
        for row in rows:
            labels[row["label"]] = labels.get(row["label"], 0) + 1
            total_bytes += row["size_bytes"]
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(r["images"] for r in per_date.values()),
            "images_per_date": count_table(per_date),
            "images_per_label": count_table({k: {"images": v} for k, v in labels.items()}, "label"),
            "total_bytes": total_bytes,
            "manifests": dg.MetadataValue.path(layout.manifests_uri()),
        }
    )
    yield check_result(STORAGE_IN_EU, in_eu, "raw_images")


@dg.asset(
    group_name=GROUP,
    partitions_def=UPLOAD_DATES,
    backfill_policy=ONE_RUN_PER_BACKFILL,
    deps=[raw_images],
    metadata={"dagster/column_schema": md.FEATURES_SCHEMA},
    check_specs=[
        blocking(
            EVERY_IMAGE_ACCOUNTED,
            "image_features",
            "the paths of feature rows + rejects are exactly the manifest's, each once",
        ),
        blocking(VECTORS_FINITE, "image_features", f"every vector has {FEATURE_DIM} finite values"),
        blocking(REJECT_RATE, "image_features", "the share of rejected files is under the limit"),
    ],
)
def image_features(
    context: dg.AssetExecutionContext,
    fruits: FruitsConfig,
    spark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """1280 MobileNetV2 features per manifest entry; the others go to rejects/ with a reason."""
    settings, layout, s3 = fruits.settings(), fruits.layout(), fruits.s3()
    dates = context.partition_keys
    preflight(s3, settings)  # before any Spark work
    manifest = {d: read_manifest(s3, layout, d).num_rows for d in dates}
    weights = load_weights(settings.weights, settings.weights_seed, s3)  # wrong shapes fail here
    session = spark.session_for(context)
    started = time.monotonic()
    run = stage_features(
        session,
        layout,
        s3,
        dates,
        weights,
        source=ImageSource.of(settings),
        tf_threads=settings.tf_intra_op_threads,
        engine=settings.engine,
        progress=progress_to_run_log(context),
        expected=manifest,
    )
    seconds = time.monotonic() - started
    images = sum(manifest.values())
    features, rejects = (read_staged(session, run.staged, n) for n in (FEATURES, REJECTS))
    expected = manifest_images(session, layout, dates, tombstoned(s3, layout, dates))
    outcomes = {
        EVERY_IMAGE_ACCOUNTED: quality.every_image_accounted(expected, features, rejects),
        VECTORS_FINITE: quality.vectors_are_finite(features, "features", FEATURE_DIM),
        REJECT_RATE: quality.reject_rate_below(
            run.features_per_date, run.rejects_per_date, settings.max_reject_rate
        ),
    }

    def materialization() -> dg.MaterializeResult:
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": run.feature_rows,
                "dagster/column_lineage": md.FEATURES_LINEAGE,
                "reject_count": sum(run.rejects_per_date.values()),
                "per_date": count_table(
                    {
                        d: {
                            "features": run.features_per_date[d],
                            "rejects": run.rejects_per_date[d],
                        }
                        for d in dates
                    }
                ),
                "rejects": dg.MetadataValue.json(run.rejects),
                "weights_source": run.weights_source,
                "weights_sha256": run.weights_sha256,
                "inference_engine": settings.engine,
                "model_builds": run.model_builds,
                "worker_peak_rss_mb": run.worker_peak_rss_mb,
                "spark_application_id": session.sparkContext.applicationId,
                **spark_ui_metadata(session, settings.deployment),
                "duration_s": round(seconds, 2),
                "images_per_s": round(images / seconds, 2) if seconds else 0.0,
                "attempt": run.staged.attempt,
                "features": dg.MetadataValue.path(layout.features_uri()),
                "rejects_uri": dg.MetadataValue.path(layout.rejects_uri()),
            }
        )

    yield from audit_then_publish(
        "image_features",
        outcomes,
        run.staged.locations(),
        lambda: publish_staged(session, layout, s3, run.staged),
        materialization,
    )


@dg.asset(
    group_name=GROUP,
    deps=[dg.AssetDep(image_features, partition_mapping=dg.AllPartitionMapping())],
    # Lets one run (and one CLI call) cover a range of dates and the model fitted on them.
    backfill_policy=ONE_RUN_PER_BACKFILL,
    check_specs=[
        blocking(
            EXPLAINED_VARIANCE,
            "pca_model",
            "enough variance kept, components in decreasing order",
        )
    ],
)
def pca_model(
    context: dg.AssetExecutionContext,
    fruits: FruitsConfig,
    spark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """PCA (k components) fitted on every published feature row of the current weights, saved
    under a new version; LATEST moves to it once its check passed."""
    settings, layout, s3 = fruits.settings(), fruits.layout(), fruits.s3()
    current = load_weights(settings.weights, settings.weights_seed, s3).sha256
    session = spark.session_for(context)
    run = fit_pca_version(
        session, layout, s3, settings.pca_k, current, progress_to_run_log(context)
    )
    at = cumulative(run.explained_variance)
    outcomes = {
        EXPLAINED_VARIANCE: quality.explained_variance_ok(
            run.explained_variance, settings.min_explained_variance
        )
    }

    def materialization() -> dg.MaterializeResult:
        return dg.MaterializeResult(
            metadata={
                "version": run.version,
                "model_uri": dg.MetadataValue.path(run.uri),
                "rows_used": run.rows,
                "weights_sha256": current,
                "rows_per_date": count_table(
                    {d: {"rows": n} for d, n in run.rows_per_date.items()}
                ),
                "feature_versions": dg.MetadataValue.json(run.feature_versions),
                **{f"cumulative_explained_variance_{n}": v for n, v in at.items()},
                "explained_variance_plot": md.png_markdown(
                    md.explained_variance_png(run.explained_variance), "explained variance"
                ),
            }
        )

    yield from audit_then_publish(
        "pca_model",
        outcomes,
        {"pca_model": run.uri},
        lambda: publish_pca(layout, s3, run.version),
        materialization,
    )


@dg.asset(
    group_name=GROUP,
    partitions_def=UPLOAD_DATES,
    backfill_policy=ONE_RUN_PER_BACKFILL,
    deps=[image_features, pca_model],
    metadata={"dagster/column_schema": md.REDUCED_SCHEMA},
    # New features for a date, or a new PCA model: recompute, for every date, not only today.
    # An upstream whose blocking check failed records no materialization (audit_then_publish),
    # so nothing here fires on it.
    automation_condition=dg.AutomationCondition.eager().without(
        dg.AutomationCondition.in_latest_time_window()
    ),
    check_specs=[
        blocking(
            MATCHES_FEATURES, "reduced_features", "one row per feature row, current PCA version"
        )
    ],
)
def reduced_features(
    context: dg.AssetExecutionContext,
    fruits: FruitsConfig,
    spark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """The features of each date projected on the current PCA model's components."""
    layout, s3 = fruits.layout(), fruits.s3()
    version = latest_version(layout, s3)
    if version is None:
        raise dg.Failure("no PCA model yet: materialize pca_model first")
    dates = context.partition_keys
    session = spark.session_for(context)
    staged = stage_reduced(session, layout, s3, dates, version, progress_to_run_log(context))
    counts = staged.rows(REDUCED)
    features = rows_per_date(read_features(session, layout, dates))
    outcomes = {
        MATCHES_FEATURES: quality.reduced_matches_features(
            features,
            read_staged(session, staged, REDUCED),
            read_pca_metadata(layout, s3, version)["k"],
            version,
        )
    }

    def materialization() -> dg.MaterializeResult:
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": sum(counts.values()),
                "dagster/column_lineage": md.REDUCED_LINEAGE,
                "per_date": count_table({d: {"reduced": n} for d, n in counts.items()}),
                "pca_version": version,
                "attempt": staged.attempt,
                "reduced": dg.MetadataValue.path(layout.reduced_uri()),
            }
        )

    yield from audit_then_publish(
        "reduced_features",
        outcomes,
        staged.locations(),
        lambda: publish_staged(session, layout, s3, staged),
        materialization,
    )
