import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spark import model as model_module
from spark.model import (
    FEATURE_DIM,
    IMAGENET_NO_TOP_FILE,
    build_mobilenet,
    compiled_predictor,
    converted_cache,
    load_weights,
    tflite_flatbuffer,
    weights_sha256,
)
from spark.settings import ConfigError


def test_random_weights_are_seeded(weights) -> None:
    again = load_weights("random", seed=42)
    other = load_weights("random", seed=43)
    assert weights.source == "random:42"
    assert again.sha256 == weights.sha256 != other.sha256
    assert weights.sha256 == weights_sha256(weights.arrays)


def test_the_model_gives_1280_float32_values(weights) -> None:
    model = build_mobilenet(None)
    model.set_weights(weights.arrays)
    batch = np.random.default_rng(1).uniform(-1, 1, (3, 224, 224, 3)).astype(np.float32)
    out = compiled_predictor(model)(batch)
    assert out.shape == (3, FEATURE_DIM) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_weights_from_a_local_file(weights, tmp_path: Path, save_legacy_h5) -> None:
    path = save_legacy_h5(tmp_path / "mobilenet.h5", weights.arrays)
    loaded = load_weights(str(path))
    assert loaded.sha256 == weights.sha256 and loaded.source == str(path)


def test_weights_from_s3(weights, s3, settings, tmp_path: Path, save_legacy_h5) -> None:
    path = save_legacy_h5(tmp_path / "mobilenet.h5", weights.arrays)
    s3.upload_file(str(path), settings.bucket, "models/weights/mobilenet.h5")
    loaded = load_weights(f"s3://{settings.bucket}/models/weights/mobilenet.h5", s3=s3)
    assert loaded.sha256 == weights.sha256


def test_a_weights_file_of_the_wrong_shape_is_refused(tmp_path: Path, save_legacy_h5) -> None:
    import keras

    small = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    save_legacy_h5(tmp_path / "other.h5", model=small)
    with pytest.raises(ConfigError, match="does not fit MobileNetV2") as error:
        load_weights(str(tmp_path / "other.h5"))
    assert "\n" not in str(error.value)


def test_unknown_weights_source() -> None:
    with pytest.raises(ConfigError, match="neither imagenet, random"):
        load_weights("/nowhere/weights.h5")


def test_imagenet_goes_through_keras_own_download(weights, tmp_path: Path, save_legacy_h5) -> None:
    """No internet here: seed Keras's download cache with a file in the published format and
    check that `imagenet` loads exactly that file through keras.applications."""
    cache = tmp_path / "keras_home"
    (cache / "models").mkdir(parents=True)
    save_legacy_h5(cache / "models" / IMAGENET_NO_TOP_FILE, weights.arrays)
    code = "from spark.model import load_weights as f; w = f('imagenet'); print(w.source, w.sha256)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "KERAS_HOME": str(cache)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert result.stdout.split()[-2:] == ["imagenet", weights.sha256]


def test_missing_weights_on_s3_name_the_uri(s3, settings) -> None:
    uri = f"s3://{settings.bucket}/nowhere/weights.h5"
    with pytest.raises(ConfigError, match=f"cannot read weights {uri}"):
        load_weights(uri, s3=s3)


def test_a_conversion_is_kept_for_the_next_process(weights, tmp_path: Path, monkeypatch) -> None:
    """Converted once; another process (an empty in-memory cache) reads the user's cache;
    a cache that cannot be written costs a conversion, never the run."""
    conversions = []

    def counted(arrays: list[np.ndarray]) -> bytes:
        conversions.append(1)
        return convert(arrays)

    convert = model_module._convert
    monkeypatch.setattr(model_module, "_convert", counted)
    monkeypatch.setattr(model_module, "_CONVERTED", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = tflite_flatbuffer(weights.arrays)
    (kept,) = converted_cache().glob("*.tflite")
    assert kept.name.startswith(weights.sha256) and kept.read_bytes() == first
    assert list(converted_cache().iterdir()) == [kept]  # no partial file left
    monkeypatch.setattr(model_module, "_CONVERTED", {})
    assert tflite_flatbuffer(weights.arrays) == first and len(conversions) == 1

    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    monkeypatch.setattr(model_module, "_CONVERTED", {})
    assert tflite_flatbuffer(weights.arrays)[4:8] == b"TFL3" and len(conversions) == 2
