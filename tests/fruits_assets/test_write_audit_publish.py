"""Write, audit, publish, end to end through Dagster: a failing blocking check on any asset
publishes nothing new (`main` of each table stays where it was, readers keep the previous
rows, the staged snapshot is dropped), nothing downstream runs, and fixing the input and
re-running publishes. A run's dates become visible in one commit, which its materializations
name. Bad uploads of every kind end as one reject each."""

import io
import re
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from fruits_assets import names
from fruits_assets.assets import image_features, pca_model, raw_images, reduced_features
from fruits_assets.names import (
    EVERY_IMAGE_ACCOUNTED,
    EXPLAINED_VARIANCE,
    MATCHES_FEATURES,
    REJECT_RATE,
    VECTORS_FINITE,
)
from spark import fs, tables
from spark.decode import DecodeError, decode_image
from spark.layout import PARTITION_COLUMN
from spark.manifest import read_manifest
from spark.pca import latest_version
from spark.pipeline import feature_rows, reject_rows
from spark.tables import FEATURES, REDUCED

pytestmark = pytest.mark.slow
D1, D2, D3 = "2026-11-02", "2026-11-03", "2026-11-04"
UPSTREAM = [raw_images, image_features]
USUAL_ERRORS = {"OSError", "ValueError", "SyntaxError", "UnidentifiedImageError"}
DATA_VERSION_TAG = "dagster/data_version"  # where Dagster keeps a materialization's version


@pytest.fixture
def asset_config(asset_config, fresh_layout) -> dict:
    """The runs' tables in this test's own Iceberg namespace (as `asset_layout` reads them)."""
    asset_config["namespace"] = fresh_layout.namespace
    return asset_config


def mains(spark, layout) -> dict[str, int | None]:
    """What readers are on: the `main` snapshot of each table (None: nothing published)."""
    return {name: tables.current_snapshot(spark, tables.table(layout, name)) for name in (
        FEATURES, REDUCED)}  # fmt: skip


def published(spark, layout, name, dates=None) -> list[tuple]:
    """Every published row of the table (rejects included), as readers read it."""
    target = tables.table(layout, name)
    if not tables.exists(spark, target):
        return []
    columns = ["path", PARTITION_COLUMN, "weights_sha256"]
    columns += ["reject_reason", "features"] if name == FEATURES else ["pca_features"]
    frame = tables.read(spark, target, dates).select(*columns)
    return sorted(tuple(tuple(v) if isinstance(v, list) else v for v in r) for r in frame.collect())


def rows(spark, layout, name, dates) -> list[tuple]:
    """(path, upload_date) of the published feature rows (rejects aside) or reduced rows."""
    target = tables.table(layout, name)
    if not tables.exists(spark, target):
        return []
    frame = tables.read(spark, target, dates)
    frame = feature_rows(frame) if name == FEATURES else frame
    return sorted((r.path, r.upload_date) for r in frame.collect())


def published_rejects(spark, layout, dates=None) -> dict[str, str]:
    target = tables.table(layout, FEATURES)
    if not tables.exists(spark, target):
        return {}
    frame = reject_rows(tables.read(spark, target, dates))
    return {r.path: r.reject_reason for r in frame.collect()}


def check_evaluation(result, check: dg.AssetCheckKey) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.asset_check_key == check]
    return evaluation


def materialized_assets(result) -> set[dg.AssetKey]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


def materializations(result, asset: dg.AssetKey) -> list[dg.AssetMaterialization]:
    return [
        e.materialization for e in result.get_asset_materialization_events() if e.asset_key == asset
    ]


def staged_snapshot(spark, layout, name, evaluation: dg.AssetCheckEvaluation) -> int:
    """The staged snapshot that the failed check read, from the SQL in its `staged_at`."""
    target = tables.table(layout, name)
    [sql] = evaluation.metadata[names.STAGED_AT].value.values()
    assert f"FROM {target.qualified} VERSION AS OF" in sql, sql
    match = re.search(r"VERSION AS OF (\d+)", sql)
    assert match, sql
    return int(match[1])


def assert_staged_dropped(spark, layout, name, evaluation: dg.AssetCheckEvaluation) -> None:
    """The check's metadata names the snapshot it read, and that snapshot is gone: a failed
    version is never published, not even later by mistake."""
    snapshot = staged_snapshot(spark, layout, name, evaluation)
    assert not tables.snapshot_exists(spark, tables.table(layout, name), snapshot)


def test_a_failed_feature_check_publishes_nothing_and_blocks_downstream(
    asset_layout, upload_sample, run_assets, check_outcomes, spark, weights, tmp_path,
    asset_config, save_legacy_h5,
) -> None:  # fmt: skip
    instance = dg.DagsterInstance.ephemeral()
    upload_sample(asset_layout, [D1], per_date=8, broken=False)
    assert run_assets([D1], instance=instance).success
    before = mains(spark, asset_layout)
    assert None not in before.values()
    features_before = published(spark, asset_layout, FEATURES)
    reduced_before = published(spark, asset_layout, REDUCED)
    model_before = latest_version(asset_layout, fruits_s3(asset_layout))
    automation = reduced_automation(instance)

    # Four uploads replaced, and weights that make every vector NaN.
    upload_sample(asset_layout, [D1], per_date=4, broken=False, seed=11)
    nan = [np.full_like(a, np.nan) if i == 0 else a for i, a in enumerate(weights.arrays)]
    asset_config["weights"] = str(save_legacy_h5(tmp_path / "nan.h5", nan))
    failed = run_assets([D1], instance=instance)
    assert not failed.success
    assert check_outcomes(failed)[VECTORS_FINITE] is False
    assert materialized_assets(failed) == {names.RAW_IMAGES}  # no features, no PCA, no reduced
    evaluation = check_evaluation(failed, VECTORS_FINITE)
    assert_staged_dropped(spark, asset_layout, FEATURES, evaluation)
    # Readers are still on the previous version, whole: features, rejects, model, reduced.
    assert mains(spark, asset_layout) == before
    assert published(spark, asset_layout, FEATURES) == features_before
    assert published(spark, asset_layout, REDUCED) == reduced_before
    assert latest_version(asset_layout, fruits_s3(asset_layout)) == model_before
    # Nor does automation move reduced_features.
    assert automation() == set()

    del asset_config["weights"]  # fixed: the seeded weights again
    fixed = run_assets([D1], assets=UPSTREAM, instance=instance)
    assert fixed.success
    assert len(rows(spark, asset_layout, FEATURES, [D1])) == 8
    after = mains(spark, asset_layout)
    assert after[FEATURES] != before[FEATURES] and after[REDUCED] == before[REDUCED]
    assert automation() == {D1}  # the audited new features: reduced_features follows


def reduced_automation(instance: dg.DagsterInstance):
    """Evaluates reduced_features' automation condition, tick after tick."""
    from fruits_assets.definitions import defs

    state = {"cursor": None}

    def evaluate() -> set[str]:
        result = dg.evaluate_automation_conditions(
            defs=defs,
            instance=instance,
            asset_selection=dg.AssetSelection.assets(reduced_features),
            cursor=state["cursor"],
        )
        state["cursor"] = result.cursor
        return result.get_requested_partitions(reduced_features.key)

    evaluate()  # the first tick only records what exists
    return evaluate


def fruits_s3(layout):
    from fruits_assets.deployments import resources_for

    return resources_for("local")["fruits"].s3()


def test_a_reject_rate_over_the_limit_publishes_nothing_until_fixed(
    asset_layout, upload_sample, run_assets, check_outcomes, spark, s3, settings
) -> None:
    upload_sample(asset_layout, [D1], per_date=6, broken=False)
    assert run_assets([D1], assets=UPSTREAM).success
    before = mains(spark, asset_layout)
    features_before = published(spark, asset_layout, FEATURES)
    junk = [asset_layout.raw_image_key(D1, "kiwi", f"junk_{i}.jpg") for i in range(3)]
    for key in junk:
        s3.put_object(Bucket=settings.bucket, Key=key, Body=b"not an image")

    failed = run_assets([D1], assets=[*UPSTREAM, reduced_features])
    assert not failed.success
    assert check_outcomes(failed)[REJECT_RATE] is False
    assert check_outcomes(failed)[EVERY_IMAGE_ACCOUNTED] is True
    assert_staged_dropped(spark, asset_layout, FEATURES, check_evaluation(failed, REJECT_RATE))
    assert mains(spark, asset_layout) == before
    assert published(spark, asset_layout, FEATURES) == features_before
    assert published_rejects(spark, asset_layout, [D1]) == {}  # the junk's rejects are not out

    for key in junk:
        s3.delete_object(Bucket=settings.bucket, Key=key)
    assert run_assets([D1], assets=UPSTREAM).success
    assert mains(spark, asset_layout)[FEATURES] != before[FEATURES]


def test_a_lost_row_fails_the_accounting_by_path_and_publishes_nothing(
    asset_layout, upload_sample, run_assets, check_outcomes, spark, monkeypatch
) -> None:
    """A bug that loses a row between the model and the staged write is caught by paths."""
    upload_sample(asset_layout, [D1], per_date=6, broken=False)
    stage = tables.stage

    def lose_one_row(session, target, frame, dates, **options):
        frame = frame.orderBy("path").offset(1) if target.name == FEATURES else frame
        return stage(session, target, frame, dates, **options)

    monkeypatch.setattr(tables, "stage", lose_one_row)
    failed = run_assets([D1], assets=UPSTREAM)
    assert not failed.success
    evaluation = check_evaluation(failed, EVERY_IMAGE_ACCOUNTED)
    assert evaluation.passed is False
    details = evaluation.metadata[names.DETAILS].value
    assert details["missing"] == 1 and len(details["missing_paths"]) == 1
    features = tables.table(asset_layout, FEATURES)
    assert tables.current_snapshot(spark, features) is None  # never published
    assert_staged_dropped(spark, asset_layout, FEATURES, evaluation)
    assert tables.read(spark, features).count() == 0

    monkeypatch.setattr(tables, "stage", stage)
    assert run_assets([D1], assets=UPSTREAM).success
    assert len(rows(spark, asset_layout, FEATURES, [D1])) == 6


def test_a_failed_pca_check_keeps_latest_and_reduced(
    asset_layout, upload_sample, run_assets, check_outcomes, spark, asset_config
) -> None:
    upload_sample(asset_layout, [D1], per_date=8, broken=False)
    assert run_assets([D1]).success
    s3 = fruits_s3(asset_layout)
    model, before = latest_version(asset_layout, s3), mains(spark, asset_layout)
    reduced_before = published(spark, asset_layout, REDUCED)

    asset_config["pca_k"] = 1
    asset_config["min_explained_variance"] = 0.99
    failed = run_assets([D1], assets=[pca_model, reduced_features])
    assert not failed.success
    assert check_outcomes(failed) == {EXPLAINED_VARIANCE: False}
    # The failed version's folder stays for inspection; LATEST never named it.
    staged = check_evaluation(failed, EXPLAINED_VARIANCE).metadata[names.STAGED_AT].value
    assert staged and all(fs.exists(spark, uri) for uri in staged.values())
    assert latest_version(asset_layout, s3) == model
    assert mains(spark, asset_layout) == before
    assert published(spark, asset_layout, REDUCED) == reduced_before
    assert materialized_assets(failed) == set()

    del asset_config["min_explained_variance"]
    del asset_config["pca_k"]
    fixed = run_assets([D1], assets=[pca_model, reduced_features])
    assert fixed.success and latest_version(asset_layout, s3) != model
    assert mains(spark, asset_layout)[REDUCED] != before[REDUCED]


def test_a_failed_reduced_check_keeps_the_previous_reduced_rows(
    asset_layout, upload_sample, run_assets, check_outcomes, spark, monkeypatch
) -> None:
    import spark.pca as pca

    upload_sample(asset_layout, [D1], per_date=8, broken=False)
    assert run_assets([D1]).success
    before, reduced_before = mains(spark, asset_layout), published(spark, asset_layout, REDUCED)
    reduce = pca.reduce_features
    monkeypatch.setattr(pca, "reduce_features", lambda *a: reduce(*a).orderBy("path").offset(1))
    failed = run_assets([D1], assets=[pca_model, reduced_features])
    assert not failed.success
    evaluation = check_evaluation(failed, MATCHES_FEATURES)
    assert evaluation.passed is False
    assert_staged_dropped(spark, asset_layout, REDUCED, evaluation)
    assert mains(spark, asset_layout) == before
    assert published(spark, asset_layout, REDUCED) == reduced_before
    assert names.REDUCED_FEATURES not in materialized_assets(failed)


def test_a_backfill_publishes_its_dates_in_one_commit_that_its_materializations_name(
    asset_layout, upload_sample, run_assets, spark
) -> None:
    """Three dates, one run: one new snapshot on `main` makes them all visible at once (no
    reader sees some of them new and others not), and the materialization of each date names
    that snapshot, as its metadata and as its data version."""
    upload_sample(asset_layout, [D1, D2, D3], per_date=4, broken=False)
    assert run_assets([D1], assets=UPSTREAM).success  # the table has a history already
    features = tables.table(asset_layout, FEATURES)
    previous = tables.current_snapshot(spark, features)
    history = {s.snapshot_id for s in tables.snapshots(spark, features) if s.on_main}

    result = run_assets([D1, D2, D3], assets=UPSTREAM)
    assert result.success
    current = tables.current_snapshot(spark, features)
    on_main = [s for s in tables.snapshots(spark, features) if s.on_main]
    new = [s for s in on_main if s.snapshot_id not in history]
    assert [s.snapshot_id for s in new] == [current]  # one commit for the three dates
    assert new[0].summary.get("changed-partition-count") == "3"
    per_date = tables.rows_per_date
    assert per_date(tables.read(spark, features, snapshot_id=previous)) == {D1: 4}
    assert per_date(tables.read(spark, features)) == {D1: 4, D2: 4, D3: 4}

    events = materializations(result, names.IMAGE_FEATURES)
    assert sorted(e.partition for e in events) == [D1, D2, D3]
    for event in events:
        metadata = event.metadata
        assert metadata[names.SNAPSHOT_ID].value == current
        assert event.tags[DATA_VERSION_TAG] == str(current)
        assert metadata[names.TABLE].value == features.qualified
        assert metadata[names.TABLE_LOCATION].value == features.location
    # The snapshot they name is readable as it was published, whatever comes later.
    assert per_date(tables.read(spark, features, snapshot_id=current)) == {D1: 4, D2: 4, D3: 4}


def test_features_of_other_weights_are_refused_by_the_pca(
    asset_layout, upload_sample, run_assets, asset_config, asset_resources
) -> None:
    upload_sample(asset_layout, [D1, D2], per_date=4, broken=False)
    assert run_assets([D1], assets=UPSTREAM).success
    asset_config["weights_seed"] = 7
    assert run_assets([D2], assets=UPSTREAM).success
    result = dg.materialize([pca_model], resources=asset_resources(), raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    error = failure.event_specific_data.error
    message = error.cause.message if error.cause else error.message
    assert "MixedWeightsError" in message and D1 in message


def unusual_decoder_failure() -> tuple[bytes, str]:
    """A JPEG mutated until decoding it raises something other than the OSError, ValueError or
    SyntaxError a decoder expects (as real corrupt uploads do): the bytes and the type's name."""
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "Fruits"  # orientation, make: EXIF to parse
    buffer = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(buffer, "JPEG", exif=exif)
    good = buffer.getvalue()
    rng = np.random.default_rng(1)
    for _ in range(20_000):
        data = bytearray(good)
        for _ in range(3):
            data[int(rng.integers(2, 160))] = int(rng.integers(256))
        try:
            decode_image(bytes(data), "odd.jpg")
        except DecodeError as error:
            kind = str(error).removeprefix("cannot decode image: ").split(":", 1)[0]
            if re.fullmatch(r"[\w.]+", kind) and kind not in USUAL_ERRORS:
                return bytes(data), kind
    raise AssertionError("no mutation made the decoder meet an unusual exception")


def test_bad_uploads_of_every_kind_end_as_one_reject_each(
    asset_layout, upload_sample, run_assets, spark, s3, settings, asset_config
) -> None:
    upload_sample(asset_layout, [D1], per_date=6, broken=False)
    body, exception = unusual_decoder_failure()
    big = asset_layout.raw_image_key(D1, "kiwi", "huge.jpg")
    bad = {
        asset_layout.raw_image_key(D1, "kiwi", "empty.jpg"): (b"", "empty file"),
        asset_layout.raw_date_key(D1) + "_misc/hidden.jpg": (b"junk", "cannot decode"),
        big: (b"\xff\xd8" + bytes(5000), "too large"),
        asset_layout.raw_image_key(D1, "kiwi", "odd.jpg"): (body, exception),
        asset_layout.raw_image_key(D1, "kiwi", "photo.heic"): (b"....ftypheic", "extension"),
    }
    for key, (content, _) in bad.items():
        s3.put_object(Bucket=settings.bucket, Key=key, Body=content)
    asset_config["max_reject_rate"] = 0.5
    asset_config["max_image_bytes"] = 4000
    result = run_assets([D1], assets=UPSTREAM)
    assert result.success
    rejects = published_rejects(spark, asset_layout)
    assert len(rejects) == len(bad)
    for key, (_, reason) in bad.items():
        assert reason in rejects[f"s3://{settings.bucket}/{key}"], rejects
    assert len(rows(spark, asset_layout, FEATURES, [D1])) == 6
    # A reject has no vector; a feature row no reason: one row per upload, one kind each.
    published_rows = published(spark, asset_layout, FEATURES, [D1])
    assert len(published_rows) == 6 + len(bad)
    assert all((reason is None) == (vector is not None) for *_, reason, vector in published_rows)


def test_overlapping_range_runs_leave_one_whole_version_per_date(
    asset_layout, upload_sample, run_assets, spark, s3
) -> None:
    """Two backfills over overlapping ranges at once, in one process (one Spark session):
    both succeed without a lock, and every date ends with exactly its manifest's rows, once.
    (Runs in separate processes, with an erasure: test_concurrency.py.)"""
    upload_sample(asset_layout, [D1, D2, D3], per_date=5, broken=False)
    ranges = [[D1, D2], [D2, D3]]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda dates: run_assets(dates, assets=UPSTREAM), ranges))
    assert [r.success for r in results] == [True, True]
    for date in (D1, D2, D3):
        paths = [p for p, _ in rows(spark, asset_layout, FEATURES, [date])]
        manifest = read_manifest(s3, asset_layout, date).column("path").to_pylist()
        assert sorted(paths) == sorted(manifest) and len(manifest) == 5
    features = tables.table(asset_layout, FEATURES)
    # Nothing either run staged is left behind: superseded copies were expired.
    assert all(s.on_main for s in tables.snapshots(spark, features))
    # No lock anywhere: the catalog's atomic commit is the only coordination.
    locks = s3.list_objects_v2(Bucket=asset_layout.bucket, Prefix=asset_layout.key("locks"))
    assert locks["KeyCount"] == 0
