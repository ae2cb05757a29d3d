import pytest

from bootstrap.aws import weights as staging
from spark.model import IMAGENET_NO_TOP_FILE, load_weights


def test_stage_uploads_the_keras_imagenet_file_and_it_loads(
    weights, s3, settings, tmp_path, monkeypatch, save_legacy_h5
) -> None:
    """No internet here: the Keras cache holds a file in the published format already."""
    cached = tmp_path / "models" / IMAGENET_NO_TOP_FILE
    cached.parent.mkdir()
    save_legacy_h5(cached, weights.arrays)
    monkeypatch.setattr(staging, "keras_cache_file", lambda: cached)
    monkeypatch.setattr(staging, "build_mobilenet", lambda source: None)  # the download step

    uri = staging.stage(settings)
    assert uri == f"s3://{settings.bucket}/{settings.prefix}/models/weights/{IMAGENET_NO_TOP_FILE}"
    assert load_weights(uri, s3=s3).sha256 == weights.sha256
    head = s3.head_object(Bucket=settings.bucket, Key=uri.split("/", 3)[3])
    assert head["ServerSideEncryption"] == "AES256"


def test_the_cache_path_is_where_keras_puts_the_file() -> None:
    assert staging.keras_cache_file().name == IMAGENET_NO_TOP_FILE
    assert staging.keras_cache_file().parent.name == "models"
    pytest.importorskip("keras")
