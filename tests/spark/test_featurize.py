"""Features on real local Spark, the workers fetching each manifest entry from local S3."""

import numpy as np
import pytest

from spark.decode import decode_image
from spark.featurize import broadcast_model, featurize
from spark.fetch import ImageSource
from spark.images import manifest_images
from spark.manifest import write_manifests
from spark.model import FEATURE_DIM, build_mobilenet, compiled_predictor, load_weights

pytestmark = pytest.mark.slow
DATE = "2026-01-05"


@pytest.fixture
def images(spark, s3, fresh_layout, upload_sample):
    upload_sample(fresh_layout, [DATE], per_date=10, phone_per_date=1, broken=True)
    write_manifests(s3, fresh_layout, [DATE])
    return manifest_images(spark, fresh_layout, [DATE])


@pytest.fixture(scope="module")
def source(settings):
    return ImageSource.of(settings)


def run_features(spark, images, weights, source, engine="tflite"):
    model = broadcast_model(spark, weights, threads=1, engine=engine)
    rows = featurize(images, model, source).orderBy("path").collect()
    return rows, model.builds.value


def contents_of(s3, rows) -> dict[str, bytes]:
    def get(path: str) -> bytes:
        bucket, key = path[len("s3://") :].split("/", 1)
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()

    return {r.path: get(r.path) for r in rows}


def test_images_carry_date_label_size_and_etag(images, s3) -> None:
    rows = images.collect()
    assert len(rows) == 13  # 10 small, 1 phone-size, 2 broken
    assert {r.upload_date for r in rows} == {DATE}
    contents = contents_of(s3, rows)
    assert all(r.size_bytes == len(contents[r.path]) for r in rows)
    assert all(r.etag and r.path.split("/")[-2] == r.label for r in rows)


def test_features_are_1280_float32_and_broken_files_get_a_reason(
    spark, images, weights, source
) -> None:
    rows, builds = run_features(spark, images, weights, source)
    good = [r for r in rows if r.error is None]
    bad = {r.path.rsplit("/", 1)[-1]: r.error for r in rows if r.error is not None}
    assert len(good) == 11
    assert all(len(r.features) == FEATURE_DIM and np.isfinite(r.features).all() for r in good)
    assert set(bad) == {"truncated_upload.jpg", "not_an_image.jpg"}
    assert all(r.features is None for r in rows if r.error is not None)
    schema = featurize(images, broadcast_model(spark, weights, threads=1), source).schema
    assert schema["features"].dataType.simpleString() == "array<float>"
    assert "etag" in schema.names  # the upload's identity travels to the table (tombstones)
    assert builds <= 2  # at most once per Python worker of local[2]


def test_the_model_is_built_once_per_python_worker(spark, images, source) -> None:
    fresh = load_weights("random", seed=2024)  # weights no worker has cached yet
    six_tasks = images.repartition(6)
    rows, builds = run_features(spark, six_tasks, fresh, source)
    assert 1 <= builds <= 2  # local[2]: two Python workers, each reused across the six tasks
    again, builds_again = run_features(spark, six_tasks, fresh, source)
    assert builds + builds_again <= 2  # and across runs of the same application
    assert [r.features for r in rows] == [r.features for r in again]


def test_seeded_features_are_the_same_across_runs(spark, images, weights, source) -> None:
    first, _ = run_features(spark, images, weights, source)
    second, _ = run_features(spark, images, weights, source)
    for a, b in zip(first, second, strict=True):
        assert a.path == b.path
        assert a.features == b.features


@pytest.mark.parametrize("engine", ["tflite", "keras"])
def test_broadcast_path_matches_calling_the_model_directly(
    spark, s3, images, weights, source, engine
) -> None:
    """The optimized path (LiteRT by default, concurrent fetches, Arrow batches) against a
    plain Keras call on the same images: the same features within float tolerance."""
    rows, _ = run_features(spark, images, weights, source, engine)
    good = [r for r in rows if r.error is None]
    contents = contents_of(s3, good)
    model = build_mobilenet(None)
    model.set_weights(weights.arrays)
    direct = compiled_predictor(model)(
        np.stack([decode_image(contents[r.path], r.path) for r in good])
    )
    assert np.abs(direct).mean() > 0.1  # features of order 1: the tolerance below means something
    np.testing.assert_allclose(np.array([r.features for r in good]), direct, rtol=0, atol=1e-4)


def test_no_dates_read_as_no_images(spark, fresh_layout) -> None:
    assert manifest_images(spark, fresh_layout, []).count() == 0
