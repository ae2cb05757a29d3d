import json
from datetime import UTC, datetime

import dagster as dg
import pytest

from fruits_assets import sensors
from fruits_assets.definitions import defs
from fruits_assets.names import IMAGE_FEATURES, PCA_MODEL, REDUCED_FEATURES
from fruits_assets.resources import FruitsConfig
from fruits_assets.sensors import new_uploads, pca_refit_policy

D1, D2, D3 = "2026-11-05", "2026-11-06", "2026-11-07"


def evaluate(fruits: FruitsConfig, cursor: str | None, instance=None):
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={"fruits": fruits},
        instance=instance or dg.DagsterInstance.ephemeral(),
    )
    return new_uploads(context)


def test_requests_exactly_the_new_or_changed_dates(
    fresh_layout, upload_sample, fruits_config, s3, settings, monkeypatch
) -> None:
    fruits = fruits_config(prefix=fresh_layout.prefix)
    set_today(monkeypatch, "2026-11-08")  # D2 and D3 are the dates still settling
    upload_sample(fresh_layout, [D1, D2], per_date=2, broken=False)

    first = evaluate(fruits, None)
    assert sorted(r.partition_key for r in first.run_requests) == [D1, D2]

    unchanged = evaluate(fruits, first.cursor)
    assert unchanged.run_requests == []

    upload_sample(fresh_layout, [D3], per_date=2, broken=False)  # a new date
    s3.put_object(  # and a late upload into a date already requested
        Bucket=settings.bucket, Key=fresh_layout.raw_image_key(D2, "kiwi", "late.jpg"), Body=b"new"
    )
    later = evaluate(fruits, unchanged.cursor)
    assert sorted(r.partition_key for r in later.run_requests) == [D2, D3]
    assert set(json.loads(later.cursor)["dates"]) == {D1, D2, D3}
    assert len({r.run_key for r in later.run_requests}) == 2


def test_a_late_upload_into_an_older_date_is_requested_within_one_audit_round(
    fresh_layout, fruits_config, s3, settings, monkeypatch
) -> None:
    fruits = fruits_config(prefix=fresh_layout.prefix)
    dates = [f"2026-11-{day:02d}" for day in range(1, 11)]
    for date in dates:
        s3.put_object(Bucket=settings.bucket, Key=fresh_layout.raw_image_key(date, "a", "1.jpg"))
    set_today(monkeypatch, "2026-11-20")  # every date is settled: only the audit re-lists them
    cursor = evaluate(fruits, None).cursor
    s3.put_object(Bucket=settings.bucket, Key=fresh_layout.raw_image_key(D1, "b", "late.jpg"))

    seen: list[list[str]] = []
    for _ in range(len(dates)):  # one audit round: a date per tick
        result = evaluate(fruits, cursor)
        cursor = result.cursor
        seen.append(requested(result))
    assert [d for tick in seen for d in tick] == [D1]  # requested once, in the round


def test_a_cursor_from_before_the_audit_requests_nothing_again(
    fresh_layout, upload_sample, fruits_config
) -> None:
    """Cursors were a flat {date: fingerprint}: the same fingerprints, nothing re-requested."""
    fruits = fruits_config(prefix=fresh_layout.prefix)
    upload_sample(fresh_layout, [D1, D2], per_date=1, broken=False)
    flat = json.loads(evaluate(fruits, None).cursor)["dates"]
    assert requested(evaluate(fruits, json.dumps(flat))) == []


def test_dates_outside_the_partitions_are_not_requested(
    fresh_layout, upload_sample, fruits_config
) -> None:
    fruits = fruits_config(prefix=fresh_layout.prefix)
    upload_sample(fresh_layout, ["2020-01-01", D1], per_date=1, broken=False)
    assert [r.partition_key for r in evaluate(fruits, None).run_requests] == [D1]


def set_today(monkeypatch: pytest.MonkeyPatch, date: str) -> None:
    """Move the sensor's clock to noon UTC of `date`: the last valid partition is the day before."""
    noon = datetime.fromisoformat(f"{date}T12:00:00").replace(tzinfo=UTC)
    monkeypatch.setattr(sensors, "_now", lambda: noon)


def requested(result: dg.SensorResult) -> list[str]:
    return sorted(r.partition_key for r in result.run_requests)


def test_a_future_date_is_requested_once_it_is_in_range(
    fresh_layout, upload_sample, monkeypatch, fruits_config
) -> None:
    fruits = fruits_config(prefix=fresh_layout.prefix)
    upload_sample(fresh_layout, [D1, D3], per_date=1, broken=False)

    set_today(monkeypatch, D2)  # D3 lies in the future
    first = evaluate(fruits, None)
    assert requested(first) == [D1]
    assert set(json.loads(first.cursor)["dates"]) == {D1}  # D3 stays "changed"

    set_today(monkeypatch, D3)  # today is not a partition yet: the day must be over
    assert requested(evaluate(fruits, first.cursor)) == []

    set_today(monkeypatch, "2026-11-08")
    later = evaluate(fruits, first.cursor)
    assert requested(later) == [D3]
    assert set(json.loads(later.cursor)["dates"]) == {D1, D3}
    assert requested(evaluate(fruits, later.cursor)) == []  # requested once only


def test_a_date_before_the_start_stays_unrequested_and_out_of_the_cursor(
    fresh_layout, upload_sample, fruits_config
) -> None:
    fruits = fruits_config(prefix=fresh_layout.prefix)
    upload_sample(fresh_layout, ["2020-01-01", D1], per_date=1, broken=False)

    first = evaluate(fruits, None)
    assert json.loads(first.cursor)["dates"].keys() == {D1}
    second = evaluate(fruits, first.cursor)
    assert requested(second) == []
    assert json.loads(second.cursor)["dates"] == json.loads(first.cursor)["dates"]


def test_skipped_dates_in_an_older_cursor_are_requested_once_in_range(
    fresh_layout, upload_sample, monkeypatch, fruits_config
) -> None:
    """Cursors written before this fix held the fingerprints of skipped dates too."""
    fruits = fruits_config(prefix=fresh_layout.prefix)
    upload_sample(fresh_layout, [D1, D3], per_date=1, broken=False)
    set_today(monkeypatch, D2)
    requested_only = json.loads(evaluate(fruits, None).cursor)["dates"]
    old_style = requested_only | {D3: "fingerprint recorded while D3 was skipped"}
    older = evaluate(fruits, json.dumps(old_style))  # still skipped, and dropped from the cursor
    assert requested(older) == [] and set(json.loads(older.cursor)["dates"]) == {D1}

    set_today(monkeypatch, "2026-11-08")
    assert requested(evaluate(fruits, older.cursor)) == [D3]


def test_a_date_removed_from_s3_keeps_its_entry(
    fresh_layout, upload_sample, s3, settings, fruits_config
) -> None:
    fruits = fruits_config(prefix=fresh_layout.prefix)
    upload_sample(fresh_layout, [D1, D2], per_date=1, broken=False)
    first = evaluate(fruits, None)

    listed = s3.list_objects_v2(Bucket=settings.bucket, Prefix=fresh_layout.raw_date_key(D2))
    for obj in listed.get("Contents", []):
        s3.delete_object(Bucket=settings.bucket, Key=obj["Key"])
    after = evaluate(fruits, first.cursor)
    assert requested(after) == []
    assert json.loads(after.cursor)["dates"] == json.loads(first.cursor)["dates"]


def test_pca_refit_is_on_demand_by_default(local_s3, fruits_config) -> None:
    context = dg.build_sensor_context(
        resources={"fruits": fruits_config()}, instance=dg.DagsterInstance.ephemeral()
    )
    result = pca_refit_policy(context)
    assert isinstance(result, dg.SkipReason) and "on demand" in result.skip_message


def test_pca_refits_after_n_new_partitions(local_s3, fruits_config) -> None:
    fruits = fruits_config(pca_refit_after=2)
    instance = dg.DagsterInstance.ephemeral()

    def report(partition: str) -> None:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(IMAGE_FEATURES, partition=partition)
        )

    def evaluate_refit():
        context = dg.build_sensor_context(resources={"fruits": fruits}, instance=instance)
        return pca_refit_policy(context)

    report(D1)
    assert isinstance(evaluate_refit(), dg.SkipReason)
    report(D2)
    assert len(evaluate_refit().run_requests) == 1
    instance.report_runless_asset_event(dg.AssetMaterialization(PCA_MODEL))
    assert isinstance(evaluate_refit(), dg.SkipReason)  # counted again from the new fit


def test_reduced_features_follow_new_features_and_new_models() -> None:
    """The automation condition requests every date whose features or model changed."""
    instance = dg.DagsterInstance.ephemeral()
    selection = dg.AssetSelection.assets(REDUCED_FEATURES)
    first = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection
    )
    assert first.total_requested == 0  # nothing upstream exists yet

    for date in (D1, D2):
        instance.report_runless_asset_event(dg.AssetMaterialization(IMAGE_FEATURES, partition=date))
    instance.report_runless_asset_event(dg.AssetMaterialization(PCA_MODEL))
    second = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=selection, cursor=first.cursor
    )
    requested = second.get_requested_partitions(REDUCED_FEATURES)
    assert requested == {D1, D2}
