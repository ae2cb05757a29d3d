"""The synthetic fruit photos: right size and mode, reproducible, and classes that differ."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bootstrap.sample.fruit_images import LABELS, encode_jpeg, render_fruit, render_fruit_with_mask

SIZES = [(100, 100), (1280, 960)]


def _pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64)


def _mean_fruit_colour(label: str, seed: int, samples: int = 8) -> np.ndarray:
    """Mean RGB of the fruit's own pixels, averaged over a batch of photos."""
    rng = np.random.default_rng([seed, LABELS.index(label)])
    colours = []
    for _ in range(samples):
        image, mask = render_fruit_with_mask(label, rng)
        colours.append(_pixels(image)[np.asarray(mask) > 128].mean(axis=0))
    return np.mean(colours, axis=0)


def test_labels_are_at_least_ten_distinct_fruit() -> None:
    assert len(LABELS) >= 10
    assert len(set(LABELS)) == len(LABELS)


@pytest.mark.parametrize("size", SIZES + [(960, 1280)])
@pytest.mark.parametrize("label", LABELS)
def test_photo_has_requested_size_and_is_rgb(label: str, size: tuple[int, int]) -> None:
    image = render_fruit(label, np.random.default_rng(0), size)
    assert image.mode == "RGB"
    assert image.size == size


def test_default_size_is_fruits_360() -> None:
    assert render_fruit("apple_red", np.random.default_rng(0)).size == (100, 100)


@pytest.mark.parametrize("size", SIZES)
def test_same_seed_gives_the_same_photo(size: tuple[int, int]) -> None:
    first = render_fruit("strawberry", np.random.default_rng(42), size)
    second = render_fruit("strawberry", np.random.default_rng(42), size)
    assert np.array_equal(_pixels(first), _pixels(second))


@pytest.mark.parametrize("size", SIZES)
def test_different_seeds_give_different_photos(size: tuple[int, int]) -> None:
    photos = [_pixels(render_fruit("orange", np.random.default_rng(s), size)) for s in range(4)]
    for a, b in itertools.combinations(photos, 2):
        assert np.abs(a - b).mean() > 2.0


def test_consecutive_draws_from_one_generator_differ() -> None:
    rng = np.random.default_rng(7)
    assert not np.array_equal(
        _pixels(render_fruit("kiwi", rng)), _pixels(render_fruit("kiwi", rng))
    )


def test_render_fruit_is_the_photo_of_render_fruit_with_mask() -> None:
    photo = render_fruit("pear", np.random.default_rng(3))
    with_mask, _ = render_fruit_with_mask("pear", np.random.default_rng(3))
    assert np.array_equal(_pixels(photo), _pixels(with_mask))


@pytest.mark.parametrize("label", LABELS)
def test_fruit_is_in_frame_and_stands_out_from_the_background(label: str) -> None:
    for seed in range(5):
        image, mask = render_fruit_with_mask(label, np.random.default_rng(seed), (160, 120))
        fruit = np.asarray(mask) > 128
        assert mask.mode == "L" and mask.size == (160, 120)
        assert 0.02 < fruit.mean() < 0.9
        pixels = _pixels(image)
        gap = np.linalg.norm(pixels[fruit].mean(axis=0) - pixels[~fruit].mean(axis=0))
        assert gap > 30.0


def test_labels_have_clearly_different_mean_colours() -> None:
    means = {label: _mean_fruit_colour(label, seed=0) for label in LABELS}
    for a, b in itertools.combinations(LABELS, 2):
        assert np.linalg.norm(means[a] - means[b]) > 15.0, (a, b)


def test_fresh_batches_are_recognised_by_mean_colour() -> None:
    # Lighting and colour jitter vary per photo, but never enough to blur two classes.
    centroids = {label: _mean_fruit_colour(label, seed=0) for label in LABELS}
    for label in LABELS:
        fresh = _mean_fruit_colour(label, seed=1)
        nearest = min(LABELS, key=lambda other: np.linalg.norm(centroids[other] - fresh))
        assert nearest == label


def _fill_ratio(label: str, seed: int) -> float:
    """How much of the fruit's own bounding box it covers: round fruit fill most of it."""
    _, mask = render_fruit_with_mask(label, np.random.default_rng(seed), (200, 200))
    box = mask.getbbox()
    assert box is not None
    return float((np.asarray(mask.crop(box)) > 128).mean())


def test_shapes_differ_between_round_and_crescent_or_cluster_fruit() -> None:
    def fill(label: str) -> float:
        return float(np.mean([_fill_ratio(label, seed) for seed in range(6)]))

    assert fill("orange") > 0.65
    assert fill("banana") < fill("orange") - 0.2
    assert fill("cherry") < fill("orange") - 0.2


@pytest.mark.parametrize("size", SIZES)
def test_jpeg_bytes_decode_back_to_the_photo(size: tuple[int, int]) -> None:
    image = render_fruit("banana", np.random.default_rng(1), size)
    data = encode_jpeg(image)
    assert data[:2] == b"\xff\xd8"
    decoded = Image.open(io.BytesIO(data))
    assert decoded.format == "JPEG"
    assert decoded.size == size
    assert decoded.mode == "RGB"
    assert np.abs(_pixels(decoded.convert("RGB")) - _pixels(image)).mean() < 4.0


def test_lower_jpeg_quality_gives_smaller_files() -> None:
    image = render_fruit("watermelon", np.random.default_rng(2), (320, 240))
    assert len(encode_jpeg(image, quality=40)) < len(encode_jpeg(image, quality=95))


def test_unknown_label_is_rejected_with_the_valid_labels() -> None:
    with pytest.raises(ValueError, match="durian") as error:
        render_fruit("durian", np.random.default_rng(0))
    assert all(label in str(error.value) for label in LABELS)


def test_module_needs_neither_spark_nor_boto3() -> None:
    code = (
        "import sys, bootstrap.sample.fruit_images; "
        "assert not {'pyspark', 'boto3'} & set(sys.modules), sorted(sys.modules)"
    )
    root = Path(__file__).resolve().parents[3]
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)
