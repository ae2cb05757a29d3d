"""Which upload dates have files, and what changed in one, at a cost that follows the new work:
the `new_uploads` sensor's scan (its run requests: tests/fruits_assets/test_sensors.py)."""

from spark import uploads

DATE, OTHER = "2026-11-08", "2026-11-09"


def test_fingerprints_change_with_any_file(fresh_layout, upload_sample, s3, settings) -> None:
    upload_sample(fresh_layout, [DATE, OTHER], per_date=2, broken=False)
    assert uploads.date_folders(s3, fresh_layout) == [DATE, OTHER]
    before = {d: uploads.date_fingerprint(s3, fresh_layout, d) for d in (DATE, OTHER)}
    s3.put_object(
        Bucket=settings.bucket, Key=fresh_layout.raw_image_key(DATE, "kiwi", "0.jpg"), Body=b"y"
    )
    after = {d: uploads.date_fingerprint(s3, fresh_layout, d) for d in (DATE, OTHER)}
    assert after[DATE] != before[DATE] and after[OTHER] == before[OTHER]


def test_requests_per_tick_stay_flat_as_objects_accumulate(
    fresh_layout, fruits_config, s3, settings, monkeypatch
) -> None:
    """A steady tick lists the date folders, the settling dates and one audited date: the same
    requests whether the history holds 60 objects or 2,100 (a listing of all raw/ takes 3 LIST
    pages there)."""
    from bench.sensor_scale import RequestCounter, dates_ending, populate, settle, steady_tick

    dates = dates_ending("2026-11-30", 30)
    valid = set(dates)
    counter = RequestCounter(s3)
    ticks = []
    for total in (60, 2_100):
        populate(s3, fresh_layout, dates, total, start=ticks[-1]["objects"] if ticks else 0)
        cursor = settle(s3, fresh_layout, valid, uploads.UploadCursor())
        ticks.append({"objects": total, **steady_tick(s3, counter, fresh_layout, valid, cursor)})
    # 1 LIST of the date folders + 2 settling dates + 1 audited date, a page each
    expected = 1 + uploads.SETTLE_DAYS + uploads.AUDIT_DATES_PER_TICK
    assert [t["requests"] for t in ticks] == [expected, expected]
    assert all(t["requested"] == [] for t in ticks)


def test_a_first_tick_over_a_long_history_lists_a_bounded_number_of_dates(
    fresh_layout, s3, settings
) -> None:
    from bench.sensor_scale import RequestCounter, dates_ending, populate

    dates = dates_ending("2026-12-31", 40)
    populate(s3, fresh_layout, dates, 40)
    counter = RequestCounter(s3)
    scan = uploads.scan_uploads(s3, fresh_layout, uploads.UploadCursor(), set(dates), 2, 1, 25)
    assert len(scan.requested) == 25 and counter.total == 1 + 25
    rest = uploads.scan_uploads(s3, fresh_layout, scan.cursor, set(dates), 2, 1, 25)
    assert set(scan.requested) | set(rest.requested) == set(dates)
