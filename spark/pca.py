"""PCA with pyspark.ml: fit, stage and publish versions, load, and reduce features.

A refit costs what the number of dates costs, not the rows: each date's features are summed
once into sufficient statistics (rows, sum of x, sum of x xᵀ, float64; `date_statistics`), and a
fit adds those up and takes the eigendecomposition of the covariance they give
(`fit_pca_from_statistics`): the same covariance, components and explained variance as
`pyspark.ml.feature.PCA.fit` on the rows, as a `PCAModel`.

The projection is not centred: `PCAModel.transform` multiplies the raw feature vectors (float32
read as float64) by the components; the reduced rows keep that product as float32. The mean of
the rows a model was fitted on is saved with it (`metadata.json`, key `mean`): centred scores
are the projection less `mean @ pc`.
"""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark.ml.common import _py2java
from pyspark.ml.feature import PCA, PCAModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.sql import DataFrame, SparkSession
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


# --- sufficient statistics: a refit over dates, not rows --------------------------------------

# One row per (upload_date, weights_sha256): how many feature rows, the sum of their vectors and
# the upper triangle of the sum of their outer products (row-major: x0x0, x0x1, ..., x1x1, ...),
# both float64 little-endian bytes. Binary rather than array<double>: a date's triangle (819,840
# values at 1280 dimensions, 6.6 MB) is read and summed as one buffer, with no per-element
# decoding. A date whose rows are all rejects has rows = 0 and empty buffers.
STATISTICS_DDL = (
    f"{PARTITION_COLUMN} string, weights_sha256 string, rows bigint, "
    "feature_sum binary, gram binary"
)
FLOAT64 = np.dtype("<f8")
# Rows per matrix product: bounds a Python worker's memory whatever its Arrow batch holds.
CHUNK_ROWS = 4096


@dataclass(frozen=True)
class Totals:
    """Sufficient statistics of a set of feature rows: enough for their covariance."""

    rows: int
    feature_sum: np.ndarray  # (d,)
    gram: np.ndarray  # (d, d): sum of x xᵀ

    @property
    def mean(self) -> np.ndarray:
        return self.feature_sum / self.rows

    def covariance(self) -> np.ndarray:
        """The sample covariance (divided by rows - 1), as RowMatrix.computeCovariance."""
        if self.rows < 2:
            raise ValueError(f"a covariance needs at least two feature rows, not {self.rows}")
        scatter = self.gram - np.outer(self.feature_sum, self.feature_sum) / self.rows
        return scatter / (self.rows - 1)


def pack_upper(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.triu_indices(matrix.shape[0])]


def unpack_upper(packed: np.ndarray) -> np.ndarray:
    """The symmetric matrix whose upper triangle (row-major) is `packed`."""
    dim = int((np.sqrt(8 * len(packed) + 1) - 1) / 2)
    if dim * (dim + 1) // 2 != len(packed):
        raise ValueError(f"{len(packed)} values are not the upper triangle of a square matrix")
    full = np.zeros((dim, dim))
    full[np.triu_indices(dim)] = packed
    return full + np.triu(full, 1).T


def _vectors(column: pa.Array) -> np.ndarray:
    """The non-null arrays of an Arrow list column as a float64 matrix, one row each."""
    column = column.filter(column.is_valid())
    if len(column) == 0:
        return np.zeros((0, 0))
    values = column.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    if len(values) % len(column):
        raise ValueError("feature vectors of different lengths cannot be summed together")
    return values.reshape(len(column), -1)


class _Accumulator:
    """Running statistics per (date, digest), the triangle kept packed (half the memory)."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], int] = {}
        self.sums: dict[tuple[str, str], np.ndarray] = {}
        self.grams: dict[tuple[str, str], np.ndarray] = {}

    def add(self, key: tuple[str, str], rows: int, feature_sum: np.ndarray, gram: np.ndarray):
        self.rows[key] = self.rows.get(key, 0) + rows
        if rows == 0:
            return
        if key in self.sums:
            if len(self.sums[key]) != len(feature_sum):
                raise ValueError(f"feature vectors of different lengths for {key}")
            self.sums[key] += feature_sum
            self.grams[key] += gram
        else:
            self.sums[key], self.grams[key] = feature_sum.copy(), gram.copy()

    def add_vectors(self, key: tuple[str, str], vectors: np.ndarray) -> None:
        for start in range(0, len(vectors), CHUNK_ROWS):
            chunk = vectors[start : start + CHUNK_ROWS]
            self.add(key, len(chunk), chunk.sum(axis=0), pack_upper(chunk.T @ chunk))
        if len(vectors) == 0:
            self.add(key, 0, np.zeros(0), np.zeros(0))

    def batches(self) -> Iterator[pa.RecordBatch]:
        # One key per batch: a batch's binary column holds at most 2 GB.
        for (date, digest), rows in self.rows.items():
            empty = np.zeros(0, FLOAT64)
            feature_sum = self.sums.get((date, digest), empty).astype(FLOAT64)
            gram = self.grams.get((date, digest), empty).astype(FLOAT64)
            yield pa.RecordBatch.from_pydict(
                {
                    PARTITION_COLUMN: [date],
                    "weights_sha256": [digest],
                    "rows": pa.array([rows], pa.int64()),
                    "feature_sum": pa.array([feature_sum.tobytes()], pa.binary()),
                    "gram": pa.array([gram.tobytes()], pa.binary()),
                }
            )


def _statistics_of_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    totals = _Accumulator()
    for batch in batches:
        keys = list(zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True))
        for key in dict.fromkeys(keys):
            mine = pa.array([k == key for k in keys]) if len(set(keys)) > 1 else None
            column = batch.column(2) if mine is None else batch.column(2).filter(mine)
            totals.add_vectors(key, _vectors(column))
    yield from totals.batches()


def _merge_statistics(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    totals = _Accumulator()
    for batch in batches:
        for row in batch.to_pylist():
            totals.add(
                (row[PARTITION_COLUMN], row["weights_sha256"]),
                row["rows"],
                np.frombuffer(row["feature_sum"], FLOAT64),
                np.frombuffer(row["gram"], FLOAT64),
            )
    yield from totals.batches()


def date_statistics(features: DataFrame) -> DataFrame:
    """The sufficient statistics of feature rows (upload_date, weights_sha256, features; rows
    with null features, rejects, count as no row), one row per date and digest
    (STATISTICS_DDL): partial sums per task, then one sum per date."""
    rows = features.select(PARTITION_COLUMN, "weights_sha256", "features")
    partial = rows.mapInArrow(_statistics_of_rows, STATISTICS_DDL)
    by_date = partial.repartition(PARTITION_COLUMN, "weights_sha256")
    return by_date.mapInArrow(_merge_statistics, STATISTICS_DDL)


def _sum_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    totals = _Accumulator()
    for batch in batches:
        for row in batch.select(["rows", "feature_sum", "gram"]).to_pylist():
            totals.add(
                ("", ""),
                row["rows"],
                np.frombuffer(row["feature_sum"], FLOAT64),
                np.frombuffer(row["gram"], FLOAT64),
            )
    yield from totals.batches()


def sum_statistics(statistics: DataFrame) -> Totals:
    """The sum of per-date statistics (STATISTICS_DDL rows): one partial sum per task, added
    up on the driver."""
    partial = statistics.select(
        F.lit("").alias(PARTITION_COLUMN), F.lit("").alias("weights_sha256"),
        "rows", "feature_sum", "gram",
    ).mapInArrow(_sum_partition, STATISTICS_DDL)  # fmt: skip
    totals = _Accumulator()
    for row in partial.collect():
        totals.add(
            ("", ""),
            row["rows"],
            np.frombuffer(row["feature_sum"], FLOAT64),
            np.frombuffer(row["gram"], FLOAT64),
        )
    rows = totals.rows.get(("", ""), 0)
    if rows == 0:
        raise ValueError("no feature rows in the statistics to fit on")
    return Totals(rows, totals.sums[("", "")], unpack_upper(totals.grams[("", "")]))


def require_one_digest_in_statistics(statistics: DataFrame, current_sha256: str) -> None:
    """require_one_digest, from per-date statistics instead of the rows."""
    groups = (
        statistics.where(F.col("rows") > 0)
        .groupBy("weights_sha256")
        .agg(
            F.sum("rows").alias("rows"),
            F.sort_array(F.collect_set(PARTITION_COLUMN)).alias("dates"),
        )
        .collect()
    )
    found = {g["weights_sha256"]: (int(g["rows"]), list(g["dates"])) for g in groups}
    if found and set(found) != {current_sha256}:
        raise MixedWeightsError(_mixed_weights_message(found, current_sha256))


def pca_from_totals(
    spark: SparkSession, totals: Totals, k: int, variance_target: float | None = None
) -> PCAModel:
    """The PCAModel that PCA.fit gives on the rows these totals sum: the eigenvectors of their
    covariance by decreasing eigenvalue, each eigenvalue's share of their sum as explained
    variance (as RowMatrix.computePrincipalComponentsAndExplainedVariance). With
    `variance_target`, k is the fewest components reaching it (as fit_pca): one
    eigendecomposition gives the whole curve."""
    dim = len(totals.feature_sum)
    if not 0 < k <= dim:
        raise ValueError(f"k must be between 1 and the {dim} dimensions, not {k}")
    # Singular values of a symmetric matrix, as Breeze's SVD gives them: |eigenvalues|, sorted.
    vectors, values, _ = np.linalg.svd(totals.covariance(), hermitian=True)
    shares = values / values.sum()
    if variance_target is not None:
        widest = min(totals.rows, dim)  # fit_pca's widest fit
        k = k_for_variance(shares[:widest], variance_target)
    return _pca_model(spark, vectors[:, :k], shares[:k])


def _pca_model(spark: SparkSession, pc: np.ndarray, shares: np.ndarray) -> PCAModel:
    """A pyspark.ml PCAModel holding these components, built in the JVM as PCA.fit builds it."""
    sc = spark.sparkContext
    jvm = sc._jvm
    assert jvm is not None
    dim, k = pc.shape
    # Column-major, as Spark's DenseMatrix stores it.
    matrix = _py2java(sc, DenseMatrix(dim, k, np.asfortranarray(pc).ravel(order="F").tolist()))
    variance = _py2java(sc, DenseVector(shares.tolist()))
    uid = jvm.org.apache.spark.ml.util.Identifiable.randomUID("pca")
    model = PCAModel(jvm.org.apache.spark.ml.feature.PCAModel(uid, matrix, variance))
    model._set(k=k, inputCol="vector", outputCol="pca_vector")
    model._transfer_params_to_java()
    return model


def fit_pca_from_statistics(
    spark: SparkSession, statistics: DataFrame, k: int, variance_target: float | None = None
) -> PCAModel:
    """Fit PCA from per-date statistics (STATISTICS_DDL rows, date_statistics): the same
    model as fit_pca on the rows they sum, at a cost that follows the number of dates."""
    return pca_from_totals(spark, sum_statistics(statistics), k, variance_target)
