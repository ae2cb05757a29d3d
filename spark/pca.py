"""PCA with pyspark.ml: fit, version and save, load, and reduce features."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pyspark.ml.feature import PCA, PCAModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark.layout import PARTITION_COLUMN, Layout
from spark.storage import get_json, put_json

REDUCED_COLUMNS = ["path", "label", PARTITION_COLUMN, "pca_version", "pca_features"]


def new_version(now: dt.datetime | None = None) -> str:
    """Sortable by time, unique across concurrent fits: 20261125T131500Z-1a2b3c4d."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def fit_pca(features: DataFrame, k: int) -> PCAModel:
    """Fit on the `features` arrays (one 1280-vector per image)."""
    vectors = features.select(array_to_vector("features").alias("vector"))
    return PCA(k=k, inputCol="vector", outputCol="pca_vector").fit(vectors)


def explained_variance(model: PCAModel) -> list[float]:
    return [float(v) for v in model.explainedVariance.toArray()]


def save_pca(
    model: PCAModel, layout: Layout, s3: Any, version: str, details: dict[str, Any]
) -> str:
    """Save the model under models/pca/<version>/, with metadata.json, and point LATEST at it.

    LATEST is written last, so readers never see a version whose files are incomplete.
    """
    uri = layout.pca_model_uri(version)
    model.write().overwrite().save(uri)
    metadata = {
        "version": version,
        "uri": uri,
        "k": model.getK(),
        "explained_variance": explained_variance(model),
        **details,
    }
    put_json(s3, layout.bucket, layout.pca_metadata_key(version), metadata)
    put_json(s3, layout.bucket, layout.pca_latest_key(), {"version": version, "uri": uri})
    return uri


def latest_version(layout: Layout, s3: Any) -> str | None:
    try:
        return get_json(s3, layout.bucket, layout.pca_latest_key())["version"]
    except s3.exceptions.NoSuchKey:
        return None


def load_pca(layout: Layout, version: str) -> PCAModel:
    return PCAModel.load(layout.pca_model_uri(version))


def reduce_features(model: PCAModel, features: DataFrame, version: str) -> DataFrame:
    """path, label, upload_date, pca_version, pca_features (k float32 values)."""
    vectors = features.withColumn("vector", array_to_vector("features"))
    model = model.copy().setInputCol("vector").setOutputCol("pca_vector")
    return model.transform(vectors).select(
        "path",
        "label",
        PARTITION_COLUMN,
        F.lit(version).alias("pca_version"),
        vector_to_array("pca_vector", dtype="float32").alias("pca_features"),
    )
