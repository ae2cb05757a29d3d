"""PCA: one weights digest per fit, staged versus published models, lineage and centring."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

import numpy as np
import pyarrow as pa
import pytest
from pyspark.ml.feature import PCAModel
from pyspark.sql import functions as F

from spark import tables
from spark.pca import (
    CARRIED_COLUMNS,
    MAX_PARTIAL_SUMS,
    MixedWeightsError,
    _statistics_of_rows,
    date_statistics,
    explained_variance,
    fit_pca,
    fit_pca_from_statistics,
    forget_in_statistics,
    k_for_variance,
    latest_version,
    load_pca,
    new_version,
    partial_sums,
    publish_pca,
    read_pca_metadata,
    reduce_features,
    require_one_digest,
    require_one_digest_in_statistics,
    save_pca,
    store_staged_statistics,
    sum_statistics,
    unpack_upper,
)
from spark.settings import ConfigError, Settings

SCHEMA = (
    "path string, label string, upload_date string, etag string, last_modified string, "
    "weights_sha256 string, features array<float>"
)
CURRENT = hashlib.sha256(b"current weights").hexdigest()
OLD = hashlib.sha256(b"old weights").hexdigest()


def frame(spark, rows: list[tuple[str, str, list[float]]]):
    """Feature rows from (upload_date, weights_sha256, features) triples."""
    return spark.createDataFrame(
        [
            (f"s3a://b/raw/{i}.jpg", "apple", d, f"etag{i}", "t0", w, f)
            for i, (d, w, f) in enumerate(rows)
        ],
        SCHEMA,
    )


def small_features(spark, digest: str = CURRENT, n: int = 12):
    return frame(spark, [("2026-03-01", digest, [float(i), float(i % 3), 1.0]) for i in range(n)])


def test_one_current_digest_passes(spark) -> None:
    require_one_digest(small_features(spark), CURRENT)


def test_an_empty_frame_passes(spark) -> None:
    require_one_digest(spark.createDataFrame([], SCHEMA), CURRENT)


def test_two_digests_are_refused_with_their_rows_and_dates(spark) -> None:
    rows = [("2026-03-01", CURRENT, [1.0])] * 3 + [("2026-03-02", OLD, [1.0])] * 2
    rows += [("2026-03-04", OLD, [1.0])]
    with pytest.raises(MixedWeightsError) as raised:
        require_one_digest(frame(spark, rows), CURRENT)
    message = str(raised.value)
    assert f"{CURRENT[:12]} (3 rows, current; dates 2026-03-01)" in message
    assert f"{OLD[:12]} (3 rows; dates 2026-03-02, 2026-03-04)" in message
    assert "re-materialize image_features for dates 2026-03-02, 2026-03-04" in message.lower()


def test_one_digest_that_is_not_current_is_refused(spark) -> None:
    with pytest.raises(MixedWeightsError) as raised:
        require_one_digest(small_features(spark, OLD), CURRENT)
    message = str(raised.value)
    assert f"{OLD[:12]} (12 rows; dates 2026-03-01)" in message
    assert f"current weights {CURRENT[:12]}" in message


def test_a_saved_version_stays_invisible_until_published(spark, s3, fresh_layout) -> None:
    model = fit_pca(small_features(spark), k=2)
    first, second = new_version(), new_version()

    save_pca(model, fresh_layout, s3, first, {"rows": 12})
    assert latest_version(fresh_layout, s3) is None
    publish_pca(fresh_layout, s3, first)
    assert latest_version(fresh_layout, s3) == first

    uri = save_pca(model, fresh_layout, s3, second, {"rows": 12, "audit": "pending"})
    assert latest_version(fresh_layout, s3) == first
    metadata = read_pca_metadata(fresh_layout, s3, second)
    assert metadata["rows"] == 12 and metadata["audit"] == "pending"
    assert metadata["version"] == second and metadata["uri"] == uri and metadata["k"] == 2
    assert load_pca(fresh_layout, second).getK() == 2

    publish_pca(fresh_layout, s3, second)
    assert latest_version(fresh_layout, s3) == second


def test_reduced_rows_keep_the_upload_and_the_weights_digest(spark) -> None:
    features = small_features(spark)
    reduced = reduce_features(fit_pca(features, k=2), features, "v1")
    # The reduced table's columns, in its order: the upload each row comes from, the version.
    assert reduced.columns == [*CARRIED_COLUMNS, "pca_version", "pca_features"]
    assert reduced.columns == tables.Table(tables.REDUCED, "ns", "s3://b/t").columns
    rows = reduced.collect()
    assert len(rows) == 12
    # k is the array's length: no field metadata carries it.
    assert {(r.weights_sha256, r.pca_version, len(r.pca_features)) for r in rows} == {
        (CURRENT, "v1", 2)
    }
    assert reduced.schema["pca_features"].metadata == {}
    by_path = {r.path: r for r in features.collect()}
    assert all(
        (r.label, r.upload_date, r.etag, r.last_modified)
        == (by_path[r.path].label, by_path[r.path].upload_date, by_path[r.path].etag, "t0")
        for r in rows
    )


def test_the_projection_is_not_centred(spark) -> None:
    # Spread decreasing by axis, so the first components lie near the first axes, where the
    # mean is large: a centred projection would then have column means near zero.
    rng = np.random.default_rng(7)
    offset = np.array([100.0, 80.0, 60.0, 40.0, 30.0, 20.0, 10.0, 5.0])
    spread = np.array([10.0, 6.0, 3.0, 1.0, 0.5, 0.3, 0.2, 0.1])
    x = (offset + rng.standard_normal((200, 8)) * spread).astype(np.float32)
    features = frame(spark, [("2026-03-01", CURRENT, row.tolist()) for row in x])

    model = fit_pca(features, k=3)
    reduced = reduce_features(model, features, "v1").select("path", "pca_features").collect()
    by_index = sorted(reduced, key=lambda r: int(r.path.rsplit("/", 1)[1].split(".")[0]))
    scores = np.array([r.pca_features for r in by_index], dtype=np.float64)

    x = x.astype(np.float64)
    pc = model.pc.toArray()
    mean = x.mean(axis=0)
    np.testing.assert_allclose(scores, x @ pc, rtol=0, atol=1e-4)
    assert np.abs(scores - (x - mean) @ pc).max() > 1.0
    assert np.all(np.abs(scores.mean(axis=0)) > 10.0)
    np.testing.assert_allclose(scores.mean(axis=0), mean @ pc, rtol=0, atol=1e-3)


def test_k_for_variance_is_the_smallest_k_reaching_the_target() -> None:
    shares = [0.5, 0.3, 0.1, 0.1]
    assert [k_for_variance(shares, t) for t in (0.4, 0.5, 0.8, 0.81, 1.0)] == [1, 1, 2, 3, 4]
    assert k_for_variance([0.5, 0.2], 0.9) == 2  # never reached: every component


def scaled_axes(spark, stds: tuple[float, ...], n: int = 200):
    """Independent columns of the given spreads: their shares of the variance are known."""
    rng = np.random.default_rng(11)
    data = rng.normal(0, 1, (n, len(stds))) * np.array(stds)
    return frame(spark, [("2026-03-01", CURRENT, [float(x) for x in row]) for row in data])


def test_the_variance_target_is_validated(settings: Settings) -> None:
    assert settings.pca_variance_target is None
    assert dataclasses.replace(settings, pca_variance_target=0.9).pca_variance_target == 0.9
    for bad in (0.0, 1.5):
        with pytest.raises(ConfigError, match="FRUITS_PCA_VARIANCE_TARGET"):
            dataclasses.replace(settings, pca_variance_target=bad)


def as_feature_table_rows(features):
    """Feature rows with every column of the features table (no rejects)."""
    return (
        features.withColumn("size_bytes", F.lit(10).cast("bigint"))
        .withColumn("weights_source", F.lit("test"))
        .withColumn("reject_reason", F.lit(None).cast("string"))
    )


@pytest.mark.slow
def test_a_variance_target_keeps_the_fewest_components_reaching_it(spark, s3, fresh_layout) -> None:
    from spark.pipeline import fit_pca_version, publish_staged, read_table, stage_reduced

    date = "2026-03-01"
    features = scaled_axes(spark, (10.0, 5.0, 2.0, 1.0, 0.5, 0.1)).cache()  # ~.77 .19 .03 ...
    curve = explained_variance(fit_pca(features, 6))
    assert curve[0] < 0.95 <= curve[0] + curve[1]
    table = tables.table(fresh_layout, tables.FEATURES)
    staged = tables.stage(spark, table, as_feature_table_rows(features), [date])
    _, snapshot = publish_staged(spark, fresh_layout, s3, staged)

    run = fit_pca_version(
        spark, fresh_layout, s3, k=5, weights_sha256=CURRENT, variance_target=0.95
    )
    metadata = read_pca_metadata(fresh_layout, s3, run.version)
    assert (metadata["k"], metadata["variance_target"]) == (2, 0.95)  # not the default 5
    assert run.explained_variance == pytest.approx(curve[:2])
    # The model names the snapshot of the features table it was fitted on.
    assert metadata["features_snapshot"] == run.features_snapshot == snapshot
    assert metadata["rows"] == 200 and metadata["rows_per_date"] == {date: 200}
    assert latest_version(fresh_layout, s3) is None  # saved, not published

    # k is the length of each reduced row's array, through the Iceberg table.
    publish_pca(fresh_layout, s3, run.version)
    assert publish_staged(
        spark, fresh_layout, s3, stage_reduced(spark, fresh_layout, s3, [date], run.version).staged
    )[0].counts == {date: 200}
    reduced = read_table(spark, fresh_layout, tables.REDUCED)
    assert {
        (r.pca_version, r.k)
        for r in reduced.select("pca_version", F.size("pca_features").alias("k")).collect()
    } == {(run.version, 2)}
    assert reduced.columns == [*CARRIED_COLUMNS, "pca_version", "pca_features"]
    features.unpersist()


# --- a fit from per-date sufficient statistics ------------------------------------------------


def spread_over_dates(spark, n: int = 300, dim: int = 12, seed: int = 5, dates: int = 3):
    """Rows with distinct variances along random directions, around a far-off mean, over
    `dates` upload dates: the components are well defined (no two eigenvalues alike)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    scales = np.geomspace(20.0, 0.05, dim)
    x = 50.0 + (rng.normal(size=(n, dim)) * scales) @ basis.T
    x = x.astype(np.float32)
    days = [f"2026-03-{1 + i % dates:02d}" for i in range(n)]
    return frame(spark, [(d, CURRENT, row.tolist()) for d, row in zip(days, x, strict=True)]), x


def aligned(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """`other`'s columns with the sign that matches `reference`'s (components are up to sign)."""
    return other * np.sign(np.sum(reference * other, axis=0))


def assert_same_model(expected, fitted) -> None:
    assert fitted.getK() == expected.getK()
    want, got = expected.pc.toArray(), fitted.pc.toArray()
    np.testing.assert_allclose(aligned(want, got), want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(explained_variance(fitted), explained_variance(expected), atol=1e-6)


def test_a_fit_from_per_date_statistics_equals_pca_fit_on_the_rows(spark, tmp_path) -> None:
    features, x = spread_over_dates(spark)
    statistics = date_statistics(features).cache()
    per_date = {r.upload_date: r.rows for r in statistics.collect()}
    assert per_date == {"2026-03-01": 100, "2026-03-02": 100, "2026-03-03": 100}

    expected = fit_pca(features, 4)
    fitted = fit_pca_from_statistics(spark, statistics, 4)
    assert_same_model(expected, fitted)
    # Their sum is the rows' own: mean and covariance in float64.
    totals = sum_statistics(statistics)
    rows = x.astype(np.float64)
    assert totals.rows == 300
    np.testing.assert_allclose(totals.mean, rows.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(totals.covariance(), np.cov(rows.T), rtol=1e-9, atol=1e-9)
    # A PCAModel like any other: saved, loaded, and it projects as PCA.fit's does.
    fitted.write().save(str(tmp_path / "model"))
    loaded = PCAModel.load(str(tmp_path / "model"))
    assert_same_model(expected, loaded)
    ours = reduce_features(loaded, features, "v").orderBy("path").collect()
    theirs = reduce_features(expected, features, "v").orderBy("path").collect()
    signs = np.sign(np.sum(expected.pc.toArray() * loaded.pc.toArray(), axis=0))
    np.testing.assert_allclose(
        np.array([r.pca_features for r in ours]) * signs,
        np.array([r.pca_features for r in theirs]),
        rtol=1e-5,
        atol=1e-3,  # float32 scores of magnitude ~100
    )
    # However many files the dates are read from, few partial sums reach the driver (a year
    # of dates, one 6.6 MB triangle per task, went past spark.driver.maxResultSize).
    spread = statistics.repartition(3 * MAX_PARTIAL_SUMS)
    assert partial_sums(spread).getNumPartitions() <= MAX_PARTIAL_SUMS
    assert sum_statistics(spread).rows == 300
    statistics.unpersist()


@pytest.mark.slow
def test_the_variance_target_is_served_by_the_same_statistics(spark) -> None:
    features, _ = spread_over_dates(spark, n=240, dim=10, seed=9)
    statistics = date_statistics(features).cache()
    for target in (0.5, 0.9, 0.999):
        expected = fit_pca(features, 3, target)
        assert_same_model(expected, fit_pca_from_statistics(spark, statistics, 3, target))
    statistics.unpersist()


def test_fewer_rows_than_dimensions_fit_as_pca_fit_does(spark) -> None:
    # Rank 5 in 12 dimensions: the trailing eigenvalues are zero, the curve is capped there.
    features, _ = spread_over_dates(spark, n=6, dim=12, seed=3, dates=2)
    statistics = date_statistics(features)
    expected = fit_pca(features, 3, 0.9999)
    assert_same_model(expected, fit_pca_from_statistics(spark, statistics, 3, 0.9999))
    fitted = fit_pca_from_statistics(spark, statistics, 5)
    np.testing.assert_allclose(
        explained_variance(fitted), explained_variance(fit_pca(features, 5)), atol=1e-6
    )


def test_statistics_add_up_by_date_and_skip_rejects(spark) -> None:
    features, x = spread_over_dates(spark, n=90, dim=6, seed=1)
    rejects = frame(spark, [("2026-03-04", CURRENT, [])]).withColumn(
        "features", F.lit(None).cast("array<float>")
    )
    statistics = date_statistics(features.unionByName(rejects)).collect()
    by_date = {r.upload_date: r for r in statistics}
    assert by_date["2026-03-04"].rows == 0 and by_date["2026-03-04"].gram == bytearray()
    first = x[0::3].astype(np.float64)  # the rows of 2026-03-01
    row = by_date["2026-03-01"]
    np.testing.assert_allclose(np.frombuffer(row.feature_sum), first.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(unpack_upper(np.frombuffer(row.gram)), first.T @ first, rtol=1e-12)


def test_statistics_of_sorted_rows_hold_one_date_at_a_time() -> None:
    """A task sums its rows date by date: a date's sums leave before the next date's rows are
    read, so a task of a year's backfill holds one triangle, not one per date."""
    x = np.arange(12, dtype=np.float32).reshape(6, 2)

    def batch(dates: list[str], rows: np.ndarray) -> pa.RecordBatch:
        vectors = pa.array([list(map(float, r)) for r in rows], pa.list_(pa.float32()))
        return pa.RecordBatch.from_arrays(
            [pa.array(dates), pa.array([CURRENT] * len(dates)), vectors],
            ["upload_date", "weights_sha256", "features"],
        )

    read: list[int] = []

    def batches():
        for n, each in enumerate([batch(["d1", "d1"], x[:2]), batch(["d1", "d2"], x[2:4]),
                                  batch(["d2", "d2"], x[4:])]):  # fmt: skip
            read.append(n)
            yield each

    sums = _statistics_of_rows(batches())
    first = next(sums).to_pylist()[0]
    assert (first["upload_date"], first["rows"], read) == ("d1", 3, [0, 1])
    np.testing.assert_allclose(np.frombuffer(first["feature_sum"]), x[:3].sum(axis=0))
    second = next(sums).to_pylist()[0]
    assert (second["upload_date"], second["rows"], read) == ("d2", 3, [0, 1, 2])
    np.testing.assert_allclose(unpack_upper(np.frombuffer(second["gram"])), x[3:].T @ x[3:])
    assert list(sums) == []


def test_statistics_refuse_a_second_weights_digest(spark) -> None:
    rows = [("2026-03-01", CURRENT, [1.0, 2.0])] * 3 + [("2026-03-02", OLD, [1.0, 0.0])] * 2
    statistics = date_statistics(frame(spark, rows))
    with pytest.raises(
        MixedWeightsError, match="Re-materialize image_features for dates 2026-03-02"
    ):
        require_one_digest_in_statistics(statistics, CURRENT)


# --- the statistics table, written with the features, true after every change -----------------


def publish_features(spark, s3, layout, features, dates: list[str]) -> int:
    """Stage and publish feature rows for `dates` as image_features does; main's snapshot."""
    from spark.pipeline import publish_staged

    table = tables.table(layout, tables.FEATURES)
    staged = tables.stage(spark, table, as_feature_table_rows(features), dates)
    return publish_staged(spark, layout, s3, staged)[1]


def stored_statistics(spark, layout) -> dict[str, str]:
    rows = tables.read(spark, tables.statistics_table(layout)).collect()
    return {r.upload_date: r.features_files for r in rows}


def assert_fit_matches_the_rows(spark, s3, layout, k: int = 3) -> dict:
    """fit_pca_version (from the statistics) against PCA.fit on the published rows."""
    from spark.pipeline import fit_pca_version, read_features

    run = fit_pca_version(spark, layout, s3, k=k, weights_sha256=CURRENT)
    rows = read_features(spark, layout).cache()
    assert_same_model(fit_pca(rows, k), load_pca(layout, run.version))
    metadata = read_pca_metadata(layout, s3, run.version)
    x = np.array([r.features for r in rows.select("features").collect()], dtype=np.float64)
    np.testing.assert_allclose(metadata["mean"], x.mean(axis=0), rtol=1e-12)
    assert metadata["rows"] == len(x) and metadata["centred"] is False
    assert metadata["rows_per_date"] == tables.rows_per_date(rows)
    rows.unpersist()
    return metadata


@pytest.mark.slow
def test_the_statistics_follow_every_change_of_a_dates_features(spark, s3, fresh_layout) -> None:
    from spark.pipeline import features_snapshot, read_features

    d1, d2, d3 = "2026-03-01", "2026-03-02", "2026-03-03"
    features, _ = spread_over_dates(spark, n=150, dim=8, seed=21)
    publish_features(spark, s3, fresh_layout, features, [d1, d2, d3])
    fingerprints = tables.partition_fingerprints(
        spark, tables.table(fresh_layout, tables.FEATURES), features_snapshot(spark, fresh_layout)
    )
    # Written with the features: one row per date, naming the data files it summed.
    assert stored_statistics(spark, fresh_layout) == fingerprints
    assert_fit_matches_the_rows(spark, s3, fresh_layout)

    # d2 re-featurized (other rows), d3 emptied: their statistics follow at publication.
    again, _ = spread_over_dates(spark, n=40, dim=8, seed=22, dates=1)
    publish_features(spark, s3, fresh_layout, again.withColumn("upload_date", F.lit(d2)), [d2])
    publish_features(spark, s3, fresh_layout, again.limit(0), [d3])
    stored = stored_statistics(spark, fresh_layout)
    assert set(stored) == {d1, d2} and stored[d1] == fingerprints[d1] != stored[d2]

    # An erasure's DELETE in d1, then its hook: recomputed, the old sums' snapshots expired.
    features_table = tables.table(fresh_layout, tables.FEATURES)
    erased = read_features(spark, fresh_layout, [d1]).orderBy("path").first().path
    tables.delete_where(spark, features_table, f"upload_date = '{d1}' AND path = '{erased}'")
    grace = dt.datetime.now(dt.UTC)
    record = forget_in_statistics(spark, fresh_layout, d1, grace)
    assert record["recomputed"] == [d1]
    statistics = tables.statistics_table(fresh_layout)
    assert [s.on_main for s in tables.snapshots(spark, statistics)] == [True]
    assert stored_statistics(spark, fresh_layout)[d1] != fingerprints[d1]

    # A DELETE no hook followed (d2): the refit sees the data files changed and recomputes.
    other = read_features(spark, fresh_layout, [d2]).orderBy("path").first().path
    tables.delete_where(spark, features_table, f"upload_date = '{d2}' AND path = '{other}'")
    metadata = assert_fit_matches_the_rows(spark, s3, fresh_layout)
    assert metadata["rows_per_date"] == {d1: 49, d2: 39}


@pytest.mark.slow
def test_a_runs_statistics_come_from_its_rows_and_stand_only_for_what_main_holds(
    spark, s3, fresh_layout
) -> None:
    """stage_features stores the statistics of its staged rows (store_staged_statistics):
    published as staged, nothing is read back or written again; an audit that fails or an
    erasure filtered out at publication leaves main with other files, and the fit computes
    those dates again from main."""
    from spark.layout import upload_digest
    from spark.pipeline import features_snapshot, publish_staged

    d1, d2 = "2026-03-01", "2026-03-02"
    table = tables.table(fresh_layout, tables.FEATURES)
    statistics = tables.statistics_table(fresh_layout)
    features, _ = spread_over_dates(spark, n=120, dim=8, seed=41, dates=2)
    rows = as_feature_table_rows(features).cache()
    staged = tables.stage(spark, table, rows, [d1, d2])
    store_staged_statistics(spark, fresh_layout, staged, rows)
    written = tables.current_snapshot(spark, statistics)
    publish_staged(spark, fresh_layout, s3, staged)
    assert tables.current_snapshot(spark, statistics) == written  # nothing computed again
    published = tables.partition_fingerprints(spark, table, features_snapshot(spark, fresh_layout))
    assert stored_statistics(spark, fresh_layout) == published
    assert_fit_matches_the_rows(spark, s3, fresh_layout)

    # A version of d1 staged with its statistics, its audit failed: main keeps the old rows.
    again, _ = spread_over_dates(spark, n=30, dim=8, seed=42, dates=1)
    failed = tables.stage(spark, table, as_feature_table_rows(again), [d1])
    store_staged_statistics(spark, fresh_layout, failed, as_feature_table_rows(again))
    assert stored_statistics(spark, fresh_layout)[d1] != published[d1]
    fitted = assert_fit_matches_the_rows(spark, s3, fresh_layout)
    assert fitted["rows_per_date"] == {d1: 60, d2: 60}

    # An upload of d2 erased between staging and publication: published without it.
    restaged = tables.stage(spark, table, rows.where(F.col("upload_date") == d2), [d2])
    store_staged_statistics(spark, fresh_layout, restaged, rows)
    erased = rows.where(F.col("upload_date") == d2).orderBy("path").first()
    tombstone = fresh_layout.tombstone_key(
        d2, erased.path, upload_digest(erased.etag, erased.last_modified)
    )
    s3.put_object(Bucket=fresh_layout.bucket, Key=tombstone, Body=b"")
    publish_staged(spark, fresh_layout, s3, restaged)
    fitted = assert_fit_matches_the_rows(spark, s3, fresh_layout)
    assert fitted["rows_per_date"] == {d1: 60, d2: 59}
    rows.unpersist()


def test_a_consumer_projects_new_features_as_the_pipeline_did(
    spark, s3, fresh_layout, repo_root
) -> None:
    """The docs' snippet, on the properties and rows of the tables: the same float32 values as
    pca_features, and the stored mean centres them."""
    from spark.pipeline import (
        fit_pca_version,
        publish_staged,
        read_features,
        read_table,
        stage_reduced,
    )

    date = "2026-03-01"
    features, _ = spread_over_dates(spark, n=120, dim=16, seed=31, dates=1)
    publish_features(spark, s3, fresh_layout, features, [date])
    run = fit_pca_version(spark, fresh_layout, s3, k=4, weights_sha256=CURRENT)
    publish_pca(fresh_layout, s3, run.version)
    reduced_run = stage_reduced(spark, fresh_layout, s3, [date], run.version)
    publish_staged(spark, fresh_layout, s3, reduced_run.staged)

    reduced = tables.table(fresh_layout, tables.REDUCED)
    properties = tables.properties(spark, reduced)
    assert properties["fruits.pca.version"] == run.version
    assert properties["fruits.pca.centred"] == "false"
    snippet = docs_snippet(repo_root / "docs" / "pipeline.md")
    namespace: dict = {}
    exec(compile(snippet, "docs/pipeline.md", "exec"), namespace)
    components, mean = namespace["pca_of"](s3, properties)

    rows = read_features(spark, fresh_layout).select("path", "features").collect()
    by_path = {r.path: r.features for r in rows}
    out = read_table(spark, fresh_layout, tables.REDUCED).select("path", "pca_features").collect()
    x = np.array([by_path[r.path] for r in out], dtype=np.float32)
    expected = np.array([r.pca_features for r in out], dtype=np.float32)
    assert components.shape == (16, 4)
    np.testing.assert_array_max_ulp(namespace["project"](x, components), expected, maxulp=1)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-12)
    centred = namespace["project"](x, components) - mean @ components
    np.testing.assert_allclose(centred.mean(axis=0), 0, atol=1e-3)
    assert np.abs(expected.mean(axis=0)).max() > 1  # the stored rows are not centred


def docs_snippet(page) -> str:
    """The Python block after the `projection-snippet` marker."""
    text = page.read_text()
    after = text.split("<!-- projection-snippet -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]
