from spark.manifest import list_manifest, read_manifest, write_manifest

DATE = "2026-11-08"


def test_manifest_lists_every_file_hidden_ones_too(
    fresh_layout, upload_sample, s3, settings
) -> None:
    upload_sample(fresh_layout, [DATE], per_date=3, broken=True)
    under_date = fresh_layout.raw_date_key(DATE)
    for name in ("loose.jpg", "kiwi/.DS_Store", "_misc/x.jpg", ".x", ".hidden/y.jpg"):
        s3.put_object(Bucket=settings.bucket, Key=under_date + name, Body=b"x")
    for marker in ("kiwi/", "empty folder/"):  # folder markers, as consoles create them
        s3.put_object(Bucket=settings.bucket, Key=under_date + marker, Body=b"")
    rows = list_manifest(s3, fresh_layout, DATE)
    # 3 photos, 2 broken, 1 loose, 4 hidden: every upload is an entry; folder markers are not.
    assert len(rows) == 10
    names = {r["path"][len(f"s3://{settings.bucket}/{under_date}") :] for r in rows}
    assert {"kiwi/.DS_Store", "_misc/x.jpg", ".x", ".hidden/y.jpg", "loose.jpg"} <= names
    assert not any(name.endswith("/") for name in names)
    labels = {r["path"].rsplit("/", 1)[-1]: r["label"] for r in rows}
    assert (labels["loose.jpg"], labels[".x"], labels["x.jpg"], labels["y.jpg"]) == (
        "unlabelled",
        "unlabelled",
        "_misc",
        ".hidden",
    )
    assert all(r["path"].startswith(f"s3://{settings.bucket}/") and r["etag"] for r in rows)
    assert {r["size_bytes"] for r in rows if r["path"].endswith((".x", "x.jpg"))} == {1}

    uri = write_manifest(s3, fresh_layout, DATE, rows)
    assert uri.endswith(f"manifests/upload_date={DATE}/manifest.parquet")
    assert read_manifest(s3, fresh_layout, DATE).to_pylist() == rows
