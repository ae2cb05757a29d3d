"""Features on real local Spark, reading from the local S3 server."""

import numpy as np
import pytest

from spark.decode import decode_image
from spark.featurize import broadcast_model, featurize
from spark.images import read_images
from spark.model import FEATURE_DIM, build_mobilenet, compiled_predictor, load_weights

pytestmark = pytest.mark.slow
DATE = "2026-01-05"


@pytest.fixture
def images(spark, fresh_layout, upload_sample):
    upload_sample(fresh_layout, [DATE], per_date=10, phone_per_date=1, broken=True)
    return read_images(spark, fresh_layout, [DATE])


def run_features(spark, images, weights, engine="tflite"):
    model = broadcast_model(spark, weights, threads=1, engine=engine)
    rows = featurize(images, model).orderBy("path").collect()
    return rows, model.builds.value


def test_images_carry_date_label_and_size(images) -> None:
    rows = images.collect()
    assert len(rows) == 13  # 10 small, 1 phone-size, 2 broken
    assert {r.upload_date for r in rows} == {DATE}
    assert all(r.size_bytes == len(r.content) for r in rows)
    assert all(r.path.split("/")[-2] == r.label for r in rows)


def test_features_are_1280_float32_and_broken_files_get_a_reason(spark, images, weights) -> None:
    rows, builds = run_features(spark, images, weights)
    good = [r for r in rows if r.error is None]
    bad = {r.path.rsplit("/", 1)[-1]: r.error for r in rows if r.error is not None}
    assert len(good) == 11
    assert all(len(r.features) == FEATURE_DIM and np.isfinite(r.features).all() for r in good)
    assert set(bad) == {"truncated_upload.jpg", "not_an_image.jpg"}
    assert all(r.features is None for r in rows if r.error is not None)
    schema = featurize(images, broadcast_model(spark, weights, 1)).schema
    assert schema["features"].dataType.simpleString() == "array<float>"
    assert builds <= 2  # at most once per Python worker of local[2]


def test_the_model_is_built_once_per_python_worker(spark, images) -> None:
    fresh = load_weights("random", seed=2024)  # weights no worker has cached yet
    six_tasks = images.repartition(6)
    rows, builds = run_features(spark, six_tasks, fresh)
    assert 1 <= builds <= 2  # local[2]: two Python workers, each reused across the six tasks
    again, builds_again = run_features(spark, six_tasks, fresh)
    assert builds + builds_again <= 2  # and across runs of the same application
    assert [r.features for r in rows] == [r.features for r in again]


def test_seeded_features_are_the_same_across_runs(spark, images, weights) -> None:
    first, _ = run_features(spark, images, weights)
    second, _ = run_features(spark, images, weights)
    for a, b in zip(first, second, strict=True):
        assert a.path == b.path
        assert a.features == b.features


@pytest.mark.parametrize("engine", ["tflite", "keras"])
def test_broadcast_path_matches_calling_the_model_directly(spark, images, weights, engine) -> None:
    """The optimized path (LiteRT by default, decode prefetch, Arrow batches) against a plain
    Keras call on the same images: the same features within float tolerance."""
    rows, _ = run_features(spark, images, weights, engine)
    contents = {r.path: r.content for r in images.collect()}
    good = [r for r in rows if r.error is None]
    model = build_mobilenet(None)
    model.set_weights(weights.arrays)
    direct = compiled_predictor(model)(
        np.stack([decode_image(contents[r.path], r.path) for r in good])
    )
    assert np.abs(direct).mean() > 0.1  # features of order 1: the tolerance below means something
    np.testing.assert_allclose(np.array([r.features for r in good]), direct, rtol=0, atol=1e-4)


def test_missing_dates_read_as_no_images(spark, fresh_layout) -> None:
    assert read_images(spark, fresh_layout, ["2030-01-01"]).count() == 0
