"""The four assets of group `fruits`: raw_images -> image_features -> pca_model -> reduced_features.

Each asset writes its own Parquet to S3 through the `spark` library and returns a
MaterializeResult with the URIs; its checks run in the same step (check_specs), so they run
wherever the asset runs. Blocking checks stop wrong data from flowing downstream.
"""

import time
from collections.abc import Iterator
from typing import Any

import dagster as dg

from fruits_assets import metadata as md
from fruits_assets.observability import progress_to_run_log, spark_ui_metadata
from fruits_assets.partitions import ONE_RUN_PER_BACKFILL, UPLOAD_DATES
from fruits_assets.resources import FruitsResource, SparkResource
from spark import quality
from spark.manifest import list_manifest, read_manifest, write_manifest
from spark.model import FEATURE_DIM, load_weights
from spark.pca import latest_version
from spark.pipeline import (
    cumulative,
    extract_features,
    fit_and_save_pca,
    read_dataset,
    read_features,
    rows_per_date,
    write_reduced,
)
from spark.storage import preflight

GROUP = "fruits"
Results = Iterator[dg.MaterializeResult | dg.AssetCheckResult]
# The Spark assets take the `pyspark_step_launcher` resource: None locally (they run in
# process), Dagster's EMR step launcher in the `emr` deployment (they run as EMR steps).
StepLauncherParam = dg.ResourceParam[Any]


def check_result(name: str, outcome: quality.Outcome, asset: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=name,
        passed=outcome.passed,
        description=outcome.description,
        metadata={"details": dg.MetadataValue.json(outcome.details)},
    )


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
        blocking("storage_in_eu", "raw_images", "every bucket the pipeline uses is in the EU")
    ],
)
def raw_images(context: dg.AssetExecutionContext, fruits: FruitsResource) -> Results:
    """The manifest of each upload date: every file under raw/upload_date=D/, listed from S3."""
    s3, layout = fruits.s3(), fruits.layout()
    preflight(s3, fruits.settings())
    in_eu = quality.bucket_in_eu(s3, layout.bucket)
    if not in_eu.passed:  # nothing is written outside the EU, not even a manifest
        yield check_result("storage_in_eu", in_eu, "raw_images")
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
    yield check_result("storage_in_eu", in_eu, "raw_images")


@dg.asset(
    group_name=GROUP,
    partitions_def=UPLOAD_DATES,
    backfill_policy=ONE_RUN_PER_BACKFILL,
    deps=[raw_images],
    metadata={"dagster/column_schema": md.FEATURES_SCHEMA},
    check_specs=[
        blocking(
            "every_image_accounted",
            "image_features",
            "feature rows + rejects = manifest, no duplicates",
        ),
        blocking(
            "vectors_finite", "image_features", f"every vector has {FEATURE_DIM} finite values"
        ),
        blocking("reject_rate", "image_features", "the share of rejected files is under the limit"),
    ],
)
def image_features(
    context: dg.AssetExecutionContext,
    fruits: FruitsResource,
    spark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """1280 MobileNetV2 features per image; undecodable files go to rejects/ with a reason."""
    settings, layout, s3 = fruits.settings(), fruits.layout(), fruits.s3()
    dates = context.partition_keys
    preflight(s3, settings)  # before any Spark work
    manifest = {d: read_manifest(s3, layout, d).num_rows for d in dates}
    weights = load_weights(settings.weights, settings.weights_seed, s3)  # wrong shapes fail here
    session = spark.session_for(context)
    started = time.monotonic()
    run = extract_features(
        session,
        layout,
        dates,
        weights,
        settings.tf_intra_op_threads,
        settings.decode_prefetch,
        settings.engine,
        progress=progress_to_run_log(context),
        expected=manifest,
    )
    seconds = time.monotonic() - started
    images = sum(manifest.values())
    written = read_features(session, layout, dates)
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": run.feature_rows,
            "dagster/column_lineage": md.FEATURES_LINEAGE,
            "reject_count": sum(run.rejects_per_date.values()),
            "per_date": count_table(
                {
                    d: {"features": run.features_per_date[d], "rejects": run.rejects_per_date[d]}
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
            "features": dg.MetadataValue.path(layout.features_uri()),
            "rejects_uri": dg.MetadataValue.path(layout.rejects_uri()),
        }
    )
    accounted = quality.every_image_accounted(manifest, run.features_per_date, run.rejects_per_date)
    unique = quality.no_duplicate_paths(written.select("path"))
    both = quality.Outcome(
        accounted.passed and unique.passed,
        f"{accounted.description}; {unique.description}",
        {**accounted.details, **unique.details},
    )
    yield check_result("every_image_accounted", both, "image_features")
    yield check_result(
        "vectors_finite",
        quality.vectors_are_finite(written, "features", FEATURE_DIM),
        "image_features",
    )
    rate = quality.reject_rate_below(
        run.features_per_date, run.rejects_per_date, settings.max_reject_rate
    )
    yield check_result("reject_rate", rate, "image_features")


@dg.asset(
    group_name=GROUP,
    deps=[dg.AssetDep(image_features, partition_mapping=dg.AllPartitionMapping())],
    # Lets one run (and one CLI call) cover a range of dates and the model fitted on them.
    backfill_policy=ONE_RUN_PER_BACKFILL,
    check_specs=[
        blocking(
            "explained_variance",
            "pca_model",
            "enough variance kept, components in decreasing order",
        )
    ],
)
def pca_model(
    context: dg.AssetExecutionContext,
    fruits: FruitsResource,
    spark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """PCA (k components) fitted on every feature row so far, saved under a new version."""
    settings, layout, s3 = fruits.settings(), fruits.layout(), fruits.s3()
    session = spark.session_for(context)
    run = fit_and_save_pca(session, layout, s3, settings.pca_k, progress_to_run_log(context))
    at = cumulative(run.explained_variance)
    yield dg.MaterializeResult(
        metadata={
            "version": run.version,
            "model_uri": dg.MetadataValue.path(run.uri),
            "rows_used": run.rows,
            **{f"cumulative_explained_variance_{n}": v for n, v in at.items()},
            "explained_variance_plot": md.png_markdown(
                md.explained_variance_png(run.explained_variance), "explained variance"
            ),
        }
    )
    outcome = quality.explained_variance_ok(run.explained_variance, settings.min_explained_variance)
    yield check_result("explained_variance", outcome, "pca_model")


@dg.asset(
    group_name=GROUP,
    partitions_def=UPLOAD_DATES,
    backfill_policy=ONE_RUN_PER_BACKFILL,
    deps=[image_features, pca_model],
    metadata={"dagster/column_schema": md.REDUCED_SCHEMA},
    # New features for a date, or a new PCA model: recompute, for every date, not only today.
    automation_condition=dg.AutomationCondition.eager().without(
        dg.AutomationCondition.in_latest_time_window()
    ),
    check_specs=[
        blocking(
            "matches_features", "reduced_features", "one row per feature row, current PCA version"
        )
    ],
)
def reduced_features(
    context: dg.AssetExecutionContext,
    fruits: FruitsResource,
    spark: SparkResource,
    pyspark_step_launcher: StepLauncherParam,
) -> Results:
    """The features of each date projected on the current PCA model's components."""
    settings, layout, s3 = fruits.settings(), fruits.layout(), fruits.s3()
    version = latest_version(layout, s3)
    if version is None:
        raise dg.Failure("no PCA model yet: materialize pca_model first")
    dates = context.partition_keys
    session = spark.session_for(context)
    counts = write_reduced(session, layout, dates, version, progress_to_run_log(context))
    yield dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(counts.values()),
            "dagster/column_lineage": md.REDUCED_LINEAGE,
            "per_date": count_table({d: {"reduced": n} for d, n in counts.items()}),
            "pca_version": version,
            "reduced": dg.MetadataValue.path(layout.reduced_uri()),
        }
    )
    features = rows_per_date(read_features(session, layout, dates))
    reduced = read_dataset(session, layout.reduced_uri(), dates)
    outcome = quality.reduced_matches_features(
        features, reduced, settings.pca_k, latest_version(layout, s3)
    )
    yield check_result("matches_features", outcome, "reduced_features")
