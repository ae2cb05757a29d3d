import pytest

from spark.layout import Layout, label_of, split_uri


def test_every_area_has_its_prefix() -> None:
    layout = Layout("bucket", "fruits")
    assert layout.raw_date_uri("2026-11-20") == "s3://bucket/fruits/raw/upload_date=2026-11-20/"
    assert (
        layout.raw_image_key("2026-11-20", "kiwi", "a.jpg")
        == "fruits/raw/upload_date=2026-11-20/kiwi/a.jpg"
    )
    assert layout.features_uri() == "s3://bucket/fruits/features"
    assert layout.rejects_uri() == "s3://bucket/fruits/rejects"
    assert layout.reduced_uri() == "s3://bucket/fruits/reduced"
    assert layout.pca_model_uri("v1") == "s3://bucket/fruits/models/pca/v1"
    assert layout.pca_metadata_key("v1") == "fruits/models/pca/v1/metadata.json"
    assert layout.partition_uri(layout.features_uri(), "2026-11-20").endswith(
        "features/upload_date=2026-11-20"
    )


def test_layout_without_prefix() -> None:
    assert Layout("b").features_uri() == "s3://b/features"
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
