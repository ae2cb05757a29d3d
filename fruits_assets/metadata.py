"""Column schemas, column lineage and plots shown in the Dagster UI."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import dagster as dg
from PIL import Image, ImageDraw

from fruits_assets.names import IMAGE_FEATURES as FEATURES
from fruits_assets.names import RAW_IMAGES as RAW
from spark import manifest, tables

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
