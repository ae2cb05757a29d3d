"""PCA with pyspark.ml: fit, stage and publish versions, load, and reduce features.

The projection is not centred: `PCAModel.transform` multiplies the raw feature vectors by the
components (the mean is only used while fitting), so consumers who need centred scores subtract
`mean @ pc`, with `mean` the average of the features the model was fitted on.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Sequence
from typing import Any

from pyspark.ml.feature import PCA, PCAModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark.layout import PARTITION_COLUMN, Layout
from spark.storage import get_json, put_json

# Carried from the feature rows: the upload each reduced row comes from.
CARRIED_COLUMNS = ["path", PARTITION_COLUMN, "label", "etag", "last_modified", "weights_sha256"]


class MixedWeightsError(ValueError):
    """Feature rows come from weights other than the current ones, or from several."""


def require_one_digest(features: DataFrame, current_sha256: str) -> None:
    """Refuse features that were not all extracted with the current weights.

    Components fitted on vectors from different weights mix two unrelated feature spaces.
    """
    groups = (
        features.groupBy("weights_sha256")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.sort_array(F.collect_set(PARTITION_COLUMN)).alias("dates"),
        )
        .collect()
    )
    found = {g["weights_sha256"]: (g["rows"], list(g["dates"])) for g in groups}
    if found and set(found) != {current_sha256}:
        raise MixedWeightsError(_mixed_weights_message(found, current_sha256))


def _short(digest: str | None) -> str:
    return digest[:12] if digest else "(no digest)"


def _mixed_weights_message(
    found: dict[str | None, tuple[int, list[str]]], current_sha256: str
) -> str:
    def describe(digest: str | None) -> str:
        rows, dates = found[digest]
        mark = ", current" if digest == current_sha256 else ""
        return f"{_short(digest)} ({rows} rows{mark}; dates {', '.join(dates)})"

    by_rows = sorted(found, key=lambda d: (-found[d][0], d or ""))
    stale = sorted({date for d in found if d != current_sha256 for date in found[d][1]})
    return (
        f"image_features were extracted with {len(found)} different weights, "
        f"but PCA needs every row from the current weights {_short(current_sha256)}: "
        f"{'; '.join(describe(d) for d in by_rows)}. "
        f"Re-materialize image_features for dates {', '.join(stale)} with the current weights, "
        "then fit PCA again."
    )


def new_version(now: dt.datetime | None = None) -> str:
    """Sortable by time, unique across concurrent fits: 20261125T131500Z-1a2b3c4d."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def fit_pca(features: DataFrame, k: int, variance_target: float | None = None) -> PCAModel:
    """Fit on the `features` arrays (one 1280-vector per image): k components, or with
    `variance_target` the fewest components whose cumulative explained variance reaches it."""
    vectors = features.select(array_to_vector("features").alias("vector"))
    if variance_target is None:
        return _fit(vectors, k)
    # Explained variance is a share of the total, so a fit at the most components the data
    # allows gives the whole curve; its top-k components are the fit at k, refitted for a
    # model of k components.
    most = min(vectors.count(), len(vectors.first()["vector"]))
    widest = _fit(vectors, most)
    chosen = k_for_variance(explained_variance(widest), variance_target)
    return widest if chosen == most else _fit(vectors, chosen)


def _fit(vectors: DataFrame, k: int) -> PCAModel:
    return PCA(k=k, inputCol="vector", outputCol="pca_vector").fit(vectors)


def cumulative_variance(variance: Sequence[float]) -> list[float]:
    """The share of the variance the first k components explain, for k = 1, 2, ..."""
    return list(itertools.accumulate(variance))


def k_for_variance(variance: Sequence[float], target: float) -> int:
    """The smallest k whose first k components explain at least `target` of the variance
    (all of them when none does)."""
    running = enumerate(cumulative_variance(variance), start=1)
    return next((k for k, total in running if total >= target - 1e-12), len(variance))


def explained_variance(model: PCAModel) -> list[float]:
    return [float(v) for v in model.explainedVariance.toArray()]


def save_pca(
    model: PCAModel, layout: Layout, s3: Any, version: str, details: dict[str, Any]
) -> str:
    """Stage the model under models/pca/<version>/, with metadata.json; return its URI.

    LATEST is left alone: the version stays invisible to readers until `publish_pca`, so it
    can be audited first.
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
    return uri


def publish_pca(layout: Layout, s3: Any, version: str) -> None:
    """Point LATEST at a saved version: one PUT, so readers switch all at once."""
    uri = layout.pca_model_uri(version)
    put_json(s3, layout.bucket, layout.pca_latest_key(), {"version": version, "uri": uri})


def read_pca_metadata(layout: Layout, s3: Any, version: str) -> dict[str, Any]:
    return get_json(s3, layout.bucket, layout.pca_metadata_key(version))


def latest_version(layout: Layout, s3: Any) -> str | None:
    try:
        return get_json(s3, layout.bucket, layout.pca_latest_key())["version"]
    except s3.exceptions.NoSuchKey:
        return None


def load_pca(layout: Layout, version: str) -> PCAModel:
    return PCAModel.load(layout.pca_model_uri(version))


def reduce_features(model: PCAModel, features: DataFrame, version: str) -> DataFrame:
    """The upload's columns, pca_version, and pca_features: k float32 values, projected
    without centring."""
    vectors = features.withColumn("vector", array_to_vector("features"))
    model = model.copy().setInputCol("vector").setOutputCol("pca_vector")
    return model.transform(vectors).select(
        *CARRIED_COLUMNS,
        F.lit(version).alias("pca_version"),
        vector_to_array("pca_vector", dtype="float32").alias("pca_features"),
    )
