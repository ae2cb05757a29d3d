from spark.manifest import list_manifest, raw_fingerprints, read_manifest, write_manifest

DATE = "2026-11-08"


def test_manifest_lists_every_visible_file(fresh_layout, upload_sample, s3, settings) -> None:
    upload_sample(fresh_layout, [DATE], per_date=3, broken=True)
    s3.put_object(
        Bucket=settings.bucket, Key=fresh_layout.raw_date_key(DATE) + "loose.jpg", Body=b"x"
    )
    s3.put_object(
        Bucket=settings.bucket, Key=fresh_layout.raw_date_key(DATE) + "kiwi/.DS_Store", Body=b"x"
    )
    rows = list_manifest(s3, fresh_layout, DATE)
    assert len(rows) == 6  # 3 photos, 2 broken, 1 loose; hidden files skipped like Spark does
    assert {r["label"] for r in rows if r["path"].endswith("loose.jpg")} == {"unlabelled"}
    assert all(r["path"].startswith(f"s3://{settings.bucket}/") and r["etag"] for r in rows)

    uri = write_manifest(s3, fresh_layout, DATE, rows)
    assert uri.endswith(f"manifests/upload_date={DATE}/manifest.parquet")
    assert read_manifest(s3, fresh_layout, DATE).to_pylist() == rows


def test_fingerprints_change_with_any_file(fresh_layout, upload_sample, s3, settings) -> None:
    upload_sample(fresh_layout, [DATE, "2026-11-09"], per_date=2, broken=False)
    before = raw_fingerprints(s3, fresh_layout)
    assert set(before) == {DATE, "2026-11-09"}
    s3.put_object(
        Bucket=settings.bucket, Key=fresh_layout.raw_image_key(DATE, "kiwi", "0.jpg"), Body=b"y"
    )
    after = raw_fingerprints(s3, fresh_layout)
    assert after[DATE] != before[DATE] and after["2026-11-09"] == before["2026-11-09"]
