"""Write, audit, publish, end to end through Dagster: a failing blocking check on any asset
publishes nothing new (readers keep the previous version), nothing downstream runs, and fixing
the input and re-running publishes. Bad uploads of every kind end as one reject each."""

import io
import re
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from fruits_assets import names as n
from fruits_assets.assets import image_features, pca_model, raw_images, reduced_features
from fruits_assets.names import (
    EVERY_IMAGE_ACCOUNTED,
    EXPLAINED_VARIANCE,
    MATCHES_FEATURES,
    REJECT_RATE,
    VECTORS_FINITE,
)
from spark import fs
from spark.decode import DecodeError, decode_image
from spark.layout import FEATURES, REDUCED, REJECTS
from spark.pca import latest_version
from spark.pipeline import read_dataset
from spark.publish import read_pointer
from spark.storage import list_keys

pytestmark = pytest.mark.slow
D1, D2, D3 = "2026-11-02", "2026-11-03", "2026-11-04"
UPSTREAM = [raw_images, image_features]
USUAL_ERRORS = {"OSError", "ValueError", "SyntaxError", "UnidentifiedImageError"}


def pointer_attempts(spark, layout, dates) -> dict[str, str | None]:
    """What readers are on: the published attempt of each unit and date, and PCA's LATEST."""
    seen: dict[str, str | None] = {}
    for name in (FEATURES, REDUCED):
        for date in dates:
            pointer = read_pointer(spark, layout.dataset(name).unit_uri, date)
            seen[f"{name}/{date}"] = pointer.attempt if pointer else None
    return seen


def rows(spark, layout, name, dates) -> list[tuple]:
    return sorted(
        (r.path, r.upload_date) for r in read_dataset(spark, layout, name, dates).collect()
    )


def check_evaluation(result, check: dg.AssetCheckKey) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.asset_check_key == check]
    return evaluation


def materialized_assets(result) -> set[dg.AssetKey]:
    return {e.asset_key for e in result.get_asset_materialization_events()}


def assert_staged_kept(spark, evaluation: dg.AssetCheckEvaluation) -> None:
    """The failed version is kept for inspection where the check's metadata says."""
    staged = evaluation.metadata[n.STAGED_AT].value
    assert staged and all(fs.exists(spark, uri) for uri in staged.values())


def test_a_failed_feature_check_publishes_nothing_and_blocks_downstream(
    asset_layout, upload_sample, run_assets, check_outcomes, spark, weights, tmp_path,
    asset_config, save_legacy_h5,
) -> None:  # fmt: skip
    instance = dg.DagsterInstance.ephemeral()
    upload_sample(asset_layout, [D1], per_date=8, broken=False)
    assert run_assets([D1], instance=instance).success
    before = pointer_attempts(spark, asset_layout, [D1])
    features_before = rows(spark, asset_layout, FEATURES, [D1])
    model_before = latest_version(asset_layout, fruits_s3(asset_layout))
    automation = reduced_automation(instance)

    # Four uploads replaced, and weights that make every vector NaN.
    upload_sample(asset_layout, [D1], per_date=4, broken=False, seed=11)
    nan = [np.full_like(a, np.nan) if i == 0 else a for i, a in enumerate(weights.arrays)]
    asset_config["weights"] = str(save_legacy_h5(tmp_path / "nan.h5", nan))
    failed = run_assets([D1], instance=instance)
    assert not failed.success
    assert check_outcomes(failed)[VECTORS_FINITE] is False
    assert materialized_assets(failed) == {n.RAW_IMAGES}  # no features, no PCA, no reduced
    assert_staged_kept(spark, check_evaluation(failed, VECTORS_FINITE))
    # Readers are still on the previous version, whole: features, rejects, model, reduced.
    assert pointer_attempts(spark, asset_layout, [D1]) == before
    assert rows(spark, asset_layout, FEATURES, [D1]) == features_before
    assert latest_version(asset_layout, fruits_s3(asset_layout)) == model_before
    # Nor does automation move reduced_features.
    assert automation() == set()

    del asset_config["weights"]  # fixed: the seeded weights again
    fixed = run_assets([D1], assets=UPSTREAM, instance=instance)
    assert fixed.success
    assert len(rows(spark, asset_layout, FEATURES, [D1])) == 8
    after = pointer_attempts(spark, asset_layout, [D1])
    assert after[f"features/{D1}"] != before[f"features/{D1}"]
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
    before = pointer_attempts(spark, asset_layout, [D1])
    junk = [asset_layout.raw_image_key(D1, "kiwi", f"junk_{i}.jpg") for i in range(3)]
    for key in junk:
        s3.put_object(Bucket=settings.bucket, Key=key, Body=b"not an image")

    failed = run_assets([D1], assets=[*UPSTREAM, reduced_features])
    assert not failed.success
    assert check_outcomes(failed)[REJECT_RATE] is False
    assert check_outcomes(failed)[EVERY_IMAGE_ACCOUNTED] is True
    assert pointer_attempts(spark, asset_layout, [D1]) == before
    assert rows(spark, asset_layout, REJECTS, [D1]) == []  # the junk's rejects are not out

    for key in junk:
        s3.delete_object(Bucket=settings.bucket, Key=key)
    assert run_assets([D1], assets=UPSTREAM).success
    assert pointer_attempts(spark, asset_layout, [D1])[f"features/{D1}"] != before[f"features/{D1}"]


def test_a_lost_row_fails_the_accounting_by_path_and_publishes_nothing(
    asset_layout, upload_sample, run_assets, check_outcomes, spark, monkeypatch
) -> None:
    """A bug that loses a row between the model and the staged write is caught by paths."""
    import spark.pipeline as pipeline

    upload_sample(asset_layout, [D1], per_date=6, broken=False)
    stage = pipeline.stage

    def lose_one_row(session, frames, dates):
        frames = {
            d: (f.orderBy("path").offset(1) if d.name == FEATURES else f) for d, f in frames.items()
        }
        return stage(session, frames, dates)

    monkeypatch.setattr(pipeline, "stage", lose_one_row)
    failed = run_assets([D1], assets=UPSTREAM)
    assert not failed.success
    evaluation = check_evaluation(failed, EVERY_IMAGE_ACCOUNTED)
    assert evaluation.passed is False
    details = evaluation.metadata[n.DETAILS].value
    assert details["missing"] == 1 and len(details["missing_paths"]) == 1
    assert read_pointer(spark, asset_layout.features_uri(), D1) is None  # never published

    monkeypatch.setattr(pipeline, "stage", stage)
    assert run_assets([D1], assets=UPSTREAM).success
    assert len(rows(spark, asset_layout, FEATURES, [D1])) == 6


def test_a_failed_pca_check_keeps_latest_and_reduced(
    asset_layout, upload_sample, run_assets, check_outcomes, spark, asset_config
) -> None:
    upload_sample(asset_layout, [D1], per_date=8, broken=False)
    assert run_assets([D1]).success
    s3 = fruits_s3(asset_layout)
    model, before = (
        latest_version(s3=s3, layout=asset_layout),
        pointer_attempts(spark, asset_layout, [D1]),
    )

    asset_config["pca_k"] = 1
    asset_config["min_explained_variance"] = 0.99
    failed = run_assets([D1], assets=[pca_model, reduced_features])
    assert not failed.success
    assert check_outcomes(failed) == {EXPLAINED_VARIANCE: False}
    assert_staged_kept(spark, check_evaluation(failed, EXPLAINED_VARIANCE))
    assert latest_version(asset_layout, s3) == model
    assert pointer_attempts(spark, asset_layout, [D1]) == before
    assert materialized_assets(failed) == set()

    del asset_config["min_explained_variance"]
    del asset_config["pca_k"]
    fixed = run_assets([D1], assets=[pca_model, reduced_features])
    assert fixed.success and latest_version(asset_layout, s3) != model


def test_a_failed_reduced_check_keeps_the_previous_reduced_rows(
    asset_layout, upload_sample, run_assets, check_outcomes, spark, monkeypatch
) -> None:
    import spark.pca as pca

    upload_sample(asset_layout, [D1], per_date=8, broken=False)
    assert run_assets([D1]).success
    before = rows(spark, asset_layout, REDUCED, [D1])
    reduce = pca.reduce_features
    monkeypatch.setattr(pca, "reduce_features", lambda *a: reduce(*a).orderBy("path").offset(1))
    failed = run_assets([D1], assets=[pca_model, reduced_features])
    assert not failed.success
    assert check_outcomes(failed)[MATCHES_FEATURES] is False
    assert rows(spark, asset_layout, REDUCED, [D1]) == before
    assert n.REDUCED_FEATURES not in materialized_assets(failed)


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
    rejects = {r.path: r.reason for r in read_dataset(spark, asset_layout, REJECTS).collect()}
    assert len(rejects) == len(bad)
    for key, (_, reason) in bad.items():
        assert reason in rejects[f"s3://{settings.bucket}/{key}"], rejects
    assert len(rows(spark, asset_layout, FEATURES, [D1])) == 6


def test_overlapping_range_runs_leave_one_whole_version_per_date(
    asset_layout, upload_sample, run_assets, check_outcomes, spark
) -> None:
    """Two backfills over overlapping ranges at once: the date locks keep their publications
    apart, both succeed, and every date ends with one version of all its rows."""
    upload_sample(asset_layout, [D1, D2, D3], per_date=5, broken=False)
    ranges = [[D1, D2], [D2, D3]]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda dates: run_assets(dates, assets=UPSTREAM), ranges))
    assert [r.success for r in results] == [True, True]
    for date in (D1, D2, D3):
        paths = [p for p, _ in rows(spark, asset_layout, FEATURES, [date])]
        assert len(paths) == len(set(paths)) == 5
    keys = list_keys(fruits_s3(asset_layout), asset_layout.bucket, asset_layout.key("locks"))
    assert keys == []  # every lock released
