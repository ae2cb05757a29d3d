import pytest

from spark.layout import Layout, label_of, split_uri, upload_digest


def test_every_area_has_its_prefix() -> None:
    layout = Layout("bucket", "fruits")
    assert layout.raw_date_uri("2026-11-20") == "s3://bucket/fruits/raw/upload_date=2026-11-20/"
    assert (
        layout.raw_image_key("2026-11-20", "kiwi", "a.jpg")
        == "fruits/raw/upload_date=2026-11-20/kiwi/a.jpg"
    )
    assert layout.warehouse_uri() == "s3://bucket/fruits/warehouse"
    assert layout.table_uri("features") == "s3://bucket/fruits/warehouse/fruits/features"
    assert (
        Layout("bucket", "p", "prod").table_uri("reduced") == "s3://bucket/p/warehouse/prod/reduced"
    )
    assert layout.pca_model_uri("v1") == "s3://bucket/fruits/models/pca/v1"
    assert layout.pca_metadata_key("v1") == "fruits/models/pca/v1/metadata.json"
    assert layout.manifest_key("2026-11-20") == (
        "fruits/manifests/upload_date=2026-11-20/manifest.parquet"
    )


def test_tombstones_name_the_upload_not_the_path() -> None:
    layout = Layout("b", "p")
    key = layout.tombstone_key("2026-11-20", "s3://b/p/raw/x.jpg", upload_digest("e", "t"))
    assert key.startswith("p/audit/tombstones/upload_date=2026-11-20/")
    assert "x.jpg" not in key
    assert upload_digest("e", "t") != upload_digest("e", "t2")  # a later upload is another


def test_layout_without_prefix() -> None:
    assert Layout("b").table_uri("features") == "s3://b/warehouse/fruits/features"
    assert Layout("b").raw_prefix() == "raw/"


def test_dates_are_validated() -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        Layout("b").raw_date_uri("2026-13-01")


def test_labels_come_from_the_folder() -> None:
    assert label_of("s3://b/p/raw/upload_date=2026-11-20/kiwi/a.jpg") == "kiwi"
    assert label_of("s3a://b/raw/upload_date=2026-11-20/Apple Braeburn/r_1.jpg") == "Apple Braeburn"
    assert label_of("raw/upload_date=2026-11-20/loose.jpg") == "unlabelled"
    with pytest.raises(ValueError):
        label_of("elsewhere/kiwi/a.jpg")


def test_split_uri() -> None:
    assert split_uri("s3://b/k/x.h5") == ("b", "k/x.h5")
    assert split_uri("s3a://b/k") == ("b", "k")
    with pytest.raises(ValueError):
        split_uri("/tmp/x")
