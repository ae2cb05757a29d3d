"""What the Dagster UI shows of the assets: column schemas, column lineage, plots, and the
metadata of each materialization and check result (built here, so asset bodies only work)."""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from PIL import Image, ImageDraw

from fruits_assets import names
from fruits_assets.names import IMAGE_FEATURES as FEATURES
from fruits_assets.names import RAW_IMAGES as RAW
from spark import manifest, quality, tables
from spark.pipeline import FeatureRun, PcaRun, ReducedRun, cumulative

# What each column means, shown in the UI's column schemas; the columns themselves and their
# types are the library's (the manifest's Arrow schema, the tables' Iceberg schemas).
COLUMN_DESCRIPTIONS = {
    "path": "S3 URI of the uploaded file",
    "upload_date": "YYYY-MM-DD, the partition",
    "label": "fruit class: the folder the file was uploaded into",
    "size_bytes": "file size",
    "etag": "S3 ETag of the upload",
    "last_modified": "S3 LastModified of the upload (with the ETag, names the upload)",
    "features": "1280 MobileNetV2 features (ImageNet, no top, average pooling); null for a reject",
    "weights_source": "imagenet, random:<seed>, or the weights file",
    "weights_sha256": "SHA-256 of the model weights",
    "reject_reason": "why the file was rejected; null for a feature row",
    "pca_version": "version of the PCA model that produced pca_features",
    "pca_features": "the features projected on the PCA components",
}


def _schema(columns: list[tuple[str, str]]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name, type_, description=COLUMN_DESCRIPTIONS[name])
            for name, type_ in columns
        ]
    )


MANIFEST_SCHEMA = _schema([(f.name, str(f.type)) for f in manifest.MANIFEST_SCHEMA])
FEATURES_SCHEMA = _schema(tables.column_types(tables.FEATURES))
REDUCED_SCHEMA = _schema(tables.column_types(tables.REDUCED))


UPLOAD = ("path", "upload_date", "label", "etag", "last_modified")


def _same_columns(source: dg.AssetKey, *names: str) -> dict[str, list[dg.TableColumnDep]]:
    return {name: [dg.TableColumnDep(asset_key=source, column_name=name)] for name in names}


FEATURES_LINEAGE = dg.TableColumnLineage(
    deps_by_column={
        **_same_columns(RAW, *UPLOAD, "size_bytes"),
        # The image bytes are read from `path`: its features, or why it has none.
        "features": [dg.TableColumnDep(asset_key=RAW, column_name="path")],
        "reject_reason": [dg.TableColumnDep(asset_key=RAW, column_name="path")],
    }
)
REDUCED_LINEAGE = dg.TableColumnLineage(
    deps_by_column={
        **_same_columns(FEATURES, *UPLOAD, "weights_sha256"),
        "pca_features": [dg.TableColumnDep(asset_key=FEATURES, column_name="features")],
    }
)


def explained_variance_png(variance: Sequence[float], width: int = 640, height: int = 320) -> bytes:
    """Bars: each component's explained variance; line: the cumulative share (0..1)."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 40, 20, width - 10, height - 30
    draw.rectangle((left, top, right, bottom), outline="black")
    for tick in (0.25, 0.5, 0.75):
        y = bottom - tick * (bottom - top)
        draw.line((left, y, right, y), fill=(220, 220, 220))
        draw.text((4, y - 6), f"{tick:.2f}", fill="black")
    step = (right - left) / max(len(variance), 1)
    cumulative, points = 0.0, []
    for i, share in enumerate(variance):
        x = left + i * step
        draw.rectangle(
            (x, bottom - share * (bottom - top), x + max(step - 1, 1), bottom), fill="steelblue"
        )
        cumulative += share
        points.append((x + step / 2, bottom - cumulative * (bottom - top)))
    if len(points) > 1:
        draw.line(points, fill="darkorange", width=2)
    draw.text(
        (left, bottom + 8),
        f"components 1..{len(variance)}: bars per component, line cumulative",
        fill="black",
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


# --- what each asset records ----------------------------------------------------------------


def numbers(details: Mapping[str, Any]) -> dict[str, float | int]:
    """A check's numeric details as entries of their own: Dagster plots those over time."""
    return {
        k: v for k, v in details.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }


def check_result(
    check: dg.AssetCheckKey, outcome: quality.Outcome, staged: Mapping[str, str] | None = None
) -> dg.AssetCheckResult:
    """A check's result; `staged`: what a failed check read (the staged version's location)."""
    extra = {names.STAGED_AT: dg.MetadataValue.json(dict(staged))} if staged else {}
    return dg.AssetCheckResult(
        asset_key=check.asset_key,
        check_name=check.name,
        passed=outcome.passed,
        description=outcome.description,
        metadata={
            names.DETAILS: dg.MetadataValue.json(outcome.details),
            **numbers(outcome.details),
            **extra,
        },
    )


def count_table(
    counts: dict[str, dict[str, int]], key: str = names.UPLOAD_DATE
) -> dg.MetadataValue:
    """A table of counts, one row per key (upload date, label...)."""
    columns = sorted({c for row in counts.values() for c in row})
    return dg.MetadataValue.table(
        records=[dg.TableRecord({key: k, **row}) for k, row in sorted(counts.items())],
        schema=dg.TableSchema(
            columns=[dg.TableColumn(key, "string")] + [dg.TableColumn(c, "int") for c in columns]
        ),
    )


def published_table(staged: tables.Staged, snapshot_id: int) -> dict[str, Any]:
    """Lineage of a table's materialization: which table, which snapshot of its `main`."""
    return {
        names.TABLE: staged.table.qualified,
        names.SNAPSHOT_ID: dg.MetadataValue.int(snapshot_id),
        names.TABLE_LOCATION: dg.MetadataValue.path(staged.table.location),
    }


def manifests(rows_per_date: Mapping[str, list[dict[str, Any]]], uri: str) -> dict[str, Any]:
    """raw_images: images per date and per label, bytes, where the manifests are."""
    labels = Counter(row["label"] for rows in rows_per_date.values() for row in rows)
    return {
        names.ROW_COUNT: sum(len(rows) for rows in rows_per_date.values()),
        names.IMAGES_PER_DATE: count_table(
            {d: {names.N_IMAGES: len(rows)} for d, rows in rows_per_date.items()}
        ),
        names.IMAGES_PER_LABEL: count_table(
            {label: {names.N_IMAGES: n_images} for label, n_images in labels.items()}, names.LABEL
        ),
        names.TOTAL_BYTES: sum(r["size_bytes"] for rows in rows_per_date.values() for r in rows),
        names.MANIFESTS_URI: dg.MetadataValue.path(uri),
    }


def features(
    run: FeatureRun,
    published: tuple[tables.Staged, int],
    reject_rate: float,
    engine: str,
    spark: Mapping[str, Any],
    images: int,
    seconds: float,
) -> dict[str, Any]:
    """image_features: rows, rejects, the model that computed them, speed, the snapshot."""
    per_date = {
        d: {names.N_FEATURES: run.features_per_date[d], names.N_REJECTS: run.rejects_per_date[d]}
        for d in run.staged.dates
    }
    return {
        names.ROW_COUNT: run.feature_rows,
        names.COLUMN_LINEAGE: FEATURES_LINEAGE,
        names.REJECT_COUNT: sum(run.rejects_per_date.values()),
        names.REJECT_SHARE: reject_rate,
        names.PER_DATE: count_table(per_date),
        names.REJECTS: dg.MetadataValue.json(run.rejects),
        names.WEIGHTS_SOURCE: run.weights_source,
        names.WEIGHTS_SHA256: run.weights_sha256,
        names.INFERENCE_ENGINE: engine,
        names.MODEL_BUILDS: run.model_builds,
        names.WORKER_PEAK_RSS_MB: run.worker_peak_rss_mb,
        **spark,
        names.DURATION_S: round(seconds, 2),
        names.IMAGES_PER_S: round(images / seconds, 2) if seconds else 0.0,
        **published_table(*published),
    }


def pca(run: PcaRun, weights_sha256: str, variance_target: float | None) -> dict[str, Any]:
    """pca_model: the version, what it was fitted on, the variance it keeps (and its plot)."""
    return {
        names.VERSION: run.version,
        names.MODEL_URI: dg.MetadataValue.path(run.uri),
        names.ROWS_USED: run.rows,
        names.WEIGHTS_SHA256: weights_sha256,
        names.ROWS_PER_DATE: count_table(
            {d: {names.N_ROWS: rows} for d, rows in run.rows_per_date.items()}
        ),
        names.FEATURES_SNAPSHOT: dg.MetadataValue.int(run.features_snapshot or 0),
        **{
            f"{names.CUMULATIVE_EXPLAINED_VARIANCE}{k}": v
            for k, v in cumulative(run.explained_variance).items()
        },
        names.PCA_K: len(run.explained_variance),
        names.EXPLAINED_VARIANCE_AT_K: float(sum(run.explained_variance)),
        **({names.VARIANCE_TARGET: variance_target} if variance_target else {}),
        names.EXPLAINED_VARIANCE_PLOT: png_markdown(
            explained_variance_png(run.explained_variance), "explained variance"
        ),
    }


def reduced(run: ReducedRun, published: tuple[tables.Staged, int], k: int) -> dict[str, Any]:
    """reduced_features: rows per date, the PCA version, the snapshots read and published."""
    staged, _ = published
    return {
        names.ROW_COUNT: staged.rows,
        names.COLUMN_LINEAGE: REDUCED_LINEAGE,
        names.PER_DATE: count_table(
            {d: {names.N_REDUCED: rows} for d, rows in staged.counts.items()}
        ),
        names.PCA_VERSION: run.version,
        names.PCA_K: k,
        names.FEATURES_SNAPSHOT: dg.MetadataValue.int(run.features_snapshot),
        names.SWITCHED_DATES: dg.MetadataValue.json(run.switched),
        **published_table(*published),
    }
