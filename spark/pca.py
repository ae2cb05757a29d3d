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
import functools
import itertools
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from pyspark import RDD
from pyspark.ml.common import _py2java
from pyspark.ml.feature import PCA, PCAModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark import tables
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


# How the reduced rows were computed from the feature rows, in the model's metadata.json and in
# the reduced table's properties: reduce_features, in words.
PROJECTION = (
    "pca_features = float32(float64(features) @ pc), pc the model's (dimensions x k) "
    "components (PCAModel.pc, Spark ML format under the model's URI); not centred: centred "
    "scores are that less mean @ pc"
)
PROPERTY_PREFIX = "fruits.pca."


def projection_details(mean: np.ndarray) -> dict[str, Any]:
    """What metadata.json keeps beside the components to reproduce the projection."""
    return {"mean": [float(v) for v in mean], "centred": False, "projection": PROJECTION}


def projection_properties(layout: Layout, metadata: dict[str, Any]) -> dict[str, str]:
    """The reduced table's properties for the version whose metadata this is: where its
    components are, its mean (JSON, float64; null for a version saved without one), and how
    its rows were projected."""
    version = metadata["version"]
    values = {
        "version": version,
        "model-uri": metadata["uri"],
        "metadata-uri": f"s3://{layout.bucket}/{layout.pca_metadata_key(version)}",
        "k": str(metadata["k"]),
        "centred": "false",
        "projection": PROJECTION,
        "mean": json.dumps(metadata.get("mean")),
    }
    return {PROPERTY_PREFIX + key: value for key, value in values.items()}


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
    without centring (PROJECTION)."""
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
# At most this many partial sums of the statistics reach the driver (sum_statistics).
MAX_PARTIAL_SUMS = 16


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


# (rows, sum, packed gram) of one date, or of any set of rows; empty arrays for no rows.
Sums = tuple[int, np.ndarray, np.ndarray]
NO_ROWS: Sums = (0, np.zeros(0), np.zeros(0))


def _sums_of(row: Any) -> Sums:
    return (
        int(row["rows"]),
        np.frombuffer(row["feature_sum"], FLOAT64),
        np.frombuffer(row["gram"], FLOAT64),
    )


def _add_sums(a: Sums, b: Sums) -> Sums:
    if a[0] == 0 or b[0] == 0:
        return (a[0] + b[0], *(a[1:] if a[0] else b[1:]))
    if len(a[1]) != len(b[1]):
        raise ValueError("feature vectors of different lengths cannot be summed together")
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


def _sum_all(sums: Iterator[Sums]) -> Iterator[Sums]:
    total = NO_ROWS
    for one in sums:
        total = _add_sums(total, one)
    yield total


def _statistics_row(key: tuple[str, str], sums: Sums) -> tuple[Any, ...]:
    rows, feature_sum, gram = sums
    as_bytes = [bytearray(a.astype(FLOAT64).tobytes()) for a in (feature_sum, gram)]
    return (*key, rows, *as_bytes)


def _sums_of_vectors(vectors: np.ndarray) -> Sums:
    total = NO_ROWS
    for start in range(0, len(vectors), CHUNK_ROWS):
        chunk = vectors[start : start + CHUNK_ROWS]
        total = _add_sums(total, (len(chunk), chunk.sum(axis=0), pack_upper(chunk.T @ chunk)))
    return total


STATISTICS_ARROW = pa.schema(
    [
        (PARTITION_COLUMN, pa.string()),
        ("weights_sha256", pa.string()),
        ("rows", pa.int64()),
        ("feature_sum", pa.binary()),
        ("gram", pa.binary()),
    ]
)


def _statistics_of_rows(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Partial sums of rows sorted by key: one key's triangle held at a time, yielded when the
    next key begins (a key seen again later only yields another partial sum)."""
    key: tuple[str, str] | None = None
    sums = NO_ROWS
    for batch in batches:
        keys = list(zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True))
        distinct = dict.fromkeys(keys)
        for each in distinct:
            mine = pa.array([k == each for k in keys]) if len(distinct) > 1 else None
            column = batch.column(2) if mine is None else batch.column(2).filter(mine)
            if each != key:
                if key is not None:
                    yield _statistics_batch(key, sums)
                key, sums = each, NO_ROWS
            sums = _add_sums(sums, _sums_of_vectors(_vectors(column)))
    if key is not None:
        yield _statistics_batch(key, sums)


def _statistics_batch(key: tuple[str, str], sums: Sums) -> pa.RecordBatch:
    """One key per batch: a binary column holds at most 2 GB."""
    row = dict(zip(STATISTICS_ARROW.names, _statistics_row(key, sums), strict=True))
    return pa.RecordBatch.from_pylist([row], STATISTICS_ARROW)


def statistics_row(date: str, weights_sha256: str, vectors: np.ndarray) -> tuple[Any, ...]:
    """One row of STATISTICS_DDL for these vectors (rows x dimensions), computed on the
    driver: synthetic statistics for a benchmark, or a test's."""
    return _statistics_row((date, weights_sha256), _sums_of_vectors(np.asarray(vectors, float)))


def date_statistics(features: DataFrame) -> DataFrame:
    """The sufficient statistics of feature rows (upload_date, weights_sha256, features; rows
    with null features, rejects, count as no row), one row per date and digest
    (STATISTICS_DDL): partial sums over Arrow batches in one task per core, then one sum per
    date. The second step handles rows of megabytes: an RDD, where Arrow batches would hold too
    many."""
    keys = (PARTITION_COLUMN, "weights_sha256")
    # A task per core rather than per task of the run that made the rows, each summing its rows
    # date by date: a date's partial sums number the cores, not the run's tasks (each is a
    # 6.6 MB triangle that the RDD below pickles), and a task holds one at a time.
    cores = features.sparkSession.sparkContext.defaultParallelism
    partial = (
        features.select(*keys, "features")
        .coalesce(cores)
        .sortWithinPartitions(*keys)
        .mapInArrow(_statistics_of_rows, STATISTICS_DDL)
    )
    by_date = (
        partial.rdd.map(lambda r: ((r[PARTITION_COLUMN], r["weights_sha256"]), _sums_of(r)))
        .reduceByKey(_add_sums)
        .map(lambda pair: _statistics_row(*pair))
    )
    return features.sparkSession.createDataFrame(by_date, STATISTICS_DDL)


def partial_sums(statistics: DataFrame) -> RDD[Sums]:
    """The per-date statistics summed in a few tasks, one partial sum each: every partial
    reaches the driver, and each holds a whole triangle (6.6 MB at 1280 dimensions), so a
    year's 365 date files read one per task would send it gigabytes."""
    rows = statistics.select("rows", "feature_sum", "gram").rdd
    tasks = min(
        rows.getNumPartitions(),
        statistics.sparkSession.sparkContext.defaultParallelism,
        MAX_PARTIAL_SUMS,
    )
    return rows.coalesce(max(tasks, 1)).map(_sums_of).mapPartitions(_sum_all)


def sum_statistics(statistics: DataFrame) -> Totals:
    """The sum of per-date statistics (rows, feature_sum, gram as in STATISTICS_DDL): partial
    sums in a few tasks, added up on the driver."""
    rows, feature_sum, gram = functools.reduce(
        _add_sums, partial_sums(statistics).collect(), NO_ROWS
    )
    if rows == 0:
        raise ValueError("no feature rows in the statistics to fit on")
    return Totals(rows, feature_sum, unpack_upper(gram))


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


# --- the statistics table: written with each date's features, checked before each refit ------


FINGERPRINT_DDL = f"{PARTITION_COLUMN} string, features_files string"


def _store_statistics(
    spark: SparkSession,
    layout: Layout,
    stale: Sequence[str],
    gone: Sequence[str],
    snapshot_id: int,
    fingerprints: dict[str, str],
) -> None:
    """Compute the statistics of `stale` as of a snapshot of the features table, each row
    naming its date's data files there; replace the stored rows of `stale` and `gone`."""
    features = tables.table(layout, tables.FEATURES)
    # Rejects too: a date of rejects only gets its row (rows = 0), so it is not stale later.
    rows = tables.read(spark, features, stale, snapshot_id)
    _write_statistics(spark, layout, rows, stale, gone, fingerprints)


def _write_statistics(
    spark: SparkSession,
    layout: Layout,
    rows: DataFrame,
    stale: Sequence[str],
    gone: Sequence[str],
    fingerprints: dict[str, str],
) -> None:
    named = spark.createDataFrame([(d, fingerprints[d]) for d in stale], FINGERPRINT_DDL)
    fresh = date_statistics(rows).join(F.broadcast(named), PARTITION_COLUMN).persist()
    try:
        fresh.count()  # computed before the write takes the session's write lock
        tables.overwrite_dates(spark, tables.statistics_table(layout), fresh, [*stale, *gone])
    finally:
        fresh.unpersist()


def store_staged_statistics(
    spark: SparkSession, layout: Layout, staged: tables.Staged, rows: DataFrame
) -> None:
    """The statistics of a staged write of the features table, from its rows while the caller
    holds them (cached), stored under the staged data files' fingerprints: once those files
    are published, refresh_statistics finds them current and reads no feature back. Where
    main ends up with other files (an audit failed, an erasure was filtered out at
    publication), the date's row matches nothing and refresh_statistics computes it again:
    so the caller leaves out of `rows` the uploads erased since they were staged (their sums
    must be written nowhere), which publication will leave out too."""
    fingerprints = tables.partition_fingerprints(
        spark, staged.table, staged.snapshot_id, staged.dates
    )
    dates = [d for d in staged.dates if d in fingerprints]  # an emptied date has no files
    if not dates:
        return
    tables.ensure_statistics_table(spark, tables.statistics_table(layout))
    ours = rows.where(F.col(PARTITION_COLUMN).isin(dates))
    _write_statistics(spark, layout, ours, dates, [], fingerprints)


def refresh_statistics(
    spark: SparkSession,
    layout: Layout,
    snapshot_id: int,
    dates: Sequence[str] | None = None,
) -> DataFrame:
    """The statistics (STATISTICS_DDL + features_files) of the dates (all when None) of the
    features table as of `snapshot_id`, read from the statistics table: a date whose stored
    row names other data files than its own there (re-featurized, emptied, a row deleted,
    compacted) or none is computed again and stored first; a date gone loses its row. Only
    what changed is read from the features."""
    target = tables.statistics_table(layout)
    tables.ensure_statistics_table(spark, target)
    fingerprints = tables.partition_fingerprints(
        spark, tables.table(layout, tables.FEATURES), snapshot_id, dates
    )
    asked = set(fingerprints) if dates is None else set(dates)
    expected = spark.createDataFrame(
        sorted((d, f) for d, f in fingerprints.items() if d in asked), FINGERPRINT_DDL
    )
    for _ in range(tables.PUBLISH_ATTEMPTS):
        stored_at = tables.current_snapshot(spark, target)
        stored = tables.read(spark, target, snapshot_id=stored_at)
        held: dict[str, set[str]] = {}
        for r in stored.select(PARTITION_COLUMN, "features_files").distinct().collect():
            held.setdefault(r[PARTITION_COLUMN], set()).add(r["features_files"])
        stale = sorted(d for d in asked & set(fingerprints) if held.get(d) != {fingerprints[d]})
        gone = sorted((asked & set(held)) - set(fingerprints))
        if not stale and not gone:
            # One snapshot of the statistics, which a later write cannot change under us.
            return stored.join(F.broadcast(expected), [PARTITION_COLUMN, "features_files"])
        _store_statistics(spark, layout, stale, gone, snapshot_id, fingerprints)
    raise RuntimeError(
        f"the PCA statistics of {layout.namespace} kept changing while they were refreshed "
        f"({tables.PUBLISH_ATTEMPTS} tries): concurrent writers of other snapshots; run again"
    )


def forget_in_statistics(
    spark: SparkSession, layout: Layout, date: str, write_grace: dt.datetime
) -> dict[str, Any]:
    """After an erasure deleted rows of `date`: its statistics summed them, so they are
    computed again, and the snapshots that kept the old sums expire with their files."""
    target = tables.statistics_table(layout)
    features = tables.table(layout, tables.FEATURES)
    if not tables.exists(spark, target) or not tables.exists(spark, features):
        return {}
    snapshot = tables.current_snapshot(spark, features)
    if snapshot is not None:
        refresh_statistics(spark, layout, snapshot, [date])
    return {
        "recomputed": [date],
        "files_deleted": tables.expire_unreferenced(
            spark, target, older_than=dt.datetime.now(dt.UTC), keep_staged_after=write_grace
        ),
        "orphan_files_deleted": tables.remove_orphan_files(spark, target, write_grace),
    }
