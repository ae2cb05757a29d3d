"""Column schemas, column lineage and plots shown in the Dagster UI."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import dagster as dg
from PIL import Image, ImageDraw

from fruits_assets.names import IMAGE_FEATURES as FEATURES
from fruits_assets.names import RAW_IMAGES as RAW


def _schema(*columns: tuple[str, str, str]) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[dg.TableColumn(name, type_, description=text) for name, type_, text in columns]
    )


_PATH = ("path", "string", "S3 URI of the uploaded file")
_DATE = ("upload_date", "string", "YYYY-MM-DD, the partition")
_LABEL = ("label", "string", "fruit class: the folder the file was uploaded into")
_SIZE = ("size_bytes", "bigint", "file size")

MANIFEST_SCHEMA = _schema(_PATH, _DATE, _LABEL, _SIZE, ("etag", "string", "S3 ETag of the file"))
FEATURES_SCHEMA = _schema(
    _PATH, _DATE, _LABEL, _SIZE,
    ("features", "array<float>", "1280 MobileNetV2 features (ImageNet, no top, average pooling)"),
    ("weights_source", "string", "imagenet, random:<seed>, or the weights file"),
    ("weights_sha256", "string", "SHA-256 of the model weights"),
)  # fmt: skip
REDUCED_SCHEMA = _schema(
    _PATH, _DATE, _LABEL,
    ("weights_sha256", "string", "SHA-256 of the model weights the features came from"),
    ("pca_version", "string", "version of the PCA model that produced pca_features"),
    ("pca_features", "array<float>", "the features projected on the PCA components"),
)  # fmt: skip


def _same_columns(source: dg.AssetKey, *names: str) -> dict[str, list[dg.TableColumnDep]]:
    return {name: [dg.TableColumnDep(asset_key=source, column_name=name)] for name in names}


FEATURES_LINEAGE = dg.TableColumnLineage(
    deps_by_column={
        **_same_columns(RAW, "path", "upload_date", "label", "size_bytes"),
        # The image bytes are read from `path`.
        "features": [dg.TableColumnDep(asset_key=RAW, column_name="path")],
    }
)
REDUCED_LINEAGE = dg.TableColumnLineage(
    deps_by_column={
        **_same_columns(FEATURES, "path", "upload_date", "label", "weights_sha256"),
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
