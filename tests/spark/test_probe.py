"""The linear probe on generated features whose labels are separable: above chance, the ratio,
a stable held-out split, macro-F1 by hand, and the picture."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image
from pyspark.sql import functions as F

from spark.layout import UNLABELLED
from spark.pca import fit_pca, reduce_features
from spark.probe import (
    FULL,
    HELD_OUT_PERCENT,
    REDUCED,
    ProbeResult,
    Score,
    held_out,
    probe_ks,
    probe_png,
    run_probe,
    score,
    variant,
)
from spark.settings import ConfigError

SCHEMA = (
    "path string, label string, upload_date string, weights_sha256 string, features array<float>, "
    "etag string, last_modified string"
)
LABELS = ("apple", "banana", "cherry")
DIM = 1280


def clusters(per_label: int, seed: int = 7, unlabelled: int = 6, signal: float = 4.0):
    """Rows of class-dependent Gaussian clusters in 1280 dimensions, plus unlabelled rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, signal / np.sqrt(DIM / 8), (len(LABELS), DIM))
    rows = []
    for c, label in enumerate(LABELS):
        for n in range(per_label):
            vector = centres[c] + rng.normal(0, 0.5, DIM)
            rows.append((f"s3a://b/raw/{label}/{n}.jpg", label, vector))
    for n in range(unlabelled):
        rows.append((f"s3a://b/raw/{n}.jpg", UNLABELLED, rng.normal(0, 0.5, DIM)))
    return [(p, lab, "2026-03-01", "w", [float(x) for x in v], "e", "t") for p, lab, v in rows]


@pytest.fixture(scope="module")
def separable(spark):
    """Features of three separable labels, and their reduction by a PCA of k=10."""
    features = spark.createDataFrame(clusters(per_label=20), SCHEMA).cache()
    reduced = reduce_features(fit_pca(features, 10), features, "v1")
    return features, reduced


@pytest.fixture(scope="module")
def probed(separable) -> ProbeResult:
    features, reduced = separable
    return run_probe(features, reduced, 10, ks=(5, 200), max_iter=50)


def test_the_probe_is_far_above_chance_on_separable_labels(probed) -> None:
    chance = 1 / len(LABELS)
    for name in (FULL, REDUCED, variant(5), variant(65)):
        assert probed.scores[name].accuracy > chance + 0.4, (name, probed.scores[name])
        assert probed.scores[name].macro_f1 > chance + 0.4, (name, probed.scores[name])


def test_the_ratio_is_reduced_over_full_accuracy(probed) -> None:
    full, reduced = probed.scores[FULL].accuracy, probed.scores[REDUCED].accuracy
    assert probed.ratio == pytest.approx(reduced / full)
    made_up = dataclasses.replace(
        probed, scores={FULL: Score(0.8, 0.8, 10), REDUCED: Score(0.6, 0.5, 10)}
    )
    assert made_up.ratio == pytest.approx(0.75)
    nothing = dataclasses.replace(made_up, scores={FULL: Score(0, 0, 10), REDUCED: Score(0, 0, 10)})
    assert nothing.ratio == 0.0


def test_unlabelled_rows_are_left_out_and_every_k_is_within_the_data(probed) -> None:
    assert set(probed.rows_per_label) == set(LABELS)
    assert all(r["train"] + r["test"] == 20 for r in probed.rows_per_label.values())
    # 66 rows: 200 is capped at their rank once centred (65); the current k (10) is probed too
    assert probed.ks == [5, 10, 65]
    assert len(probed.cumulative_variance) == 66
    running = probed.cumulative_variance
    assert all(a <= b + 1e-9 for a, b in zip(running, running[1:], strict=False))
    assert probed.cumulative_variance[-1] <= 1 + 1e-9
    assert probe_ks((10, 25, 50, 200), 100, rows=10_000, dim=1280) == [10, 25, 50, 100, 200]


def test_the_held_out_rows_are_the_same_whatever_the_order_and_partitioning(spark) -> None:
    paths = [(f"s3a://b/raw/fruit/{n}.jpg",) for n in range(2000)]
    one = spark.createDataFrame(paths, "path string")
    other = spark.createDataFrame(list(reversed(paths)), "path string").repartition(7)

    def tested(frame) -> set[str]:
        return {r.path for r in frame.where(held_out(F.col("path"))).collect()}

    first, second = tested(one), tested(other)
    assert first == second == tested(one)
    assert abs(len(first) / len(paths) - HELD_OUT_PERCENT / 100) < 0.03


def test_macro_f1_is_the_mean_of_each_labels_f1() -> None:
    confusion = {("a", "a"): 3, ("a", "b"): 1, ("b", "b"): 2, ("c", "c"): 0, ("b", "c"): 1}
    # a: 2*3 / (4 true + 3 predicted) = 6/7; b: 2*2 / (3 + 3) = 2/3; c: 0 / (0 + 1) = 0
    result = score(confusion)
    assert result.accuracy == pytest.approx(5 / 7)
    assert result.macro_f1 == pytest.approx((6 / 7 + 2 / 3 + 0) / 3)
    assert result.test_rows == 7
    assert score({}) == Score(0.0, 0.0, 0)


def test_the_picture_is_a_png(probed) -> None:
    png = probe_png(probed)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.width > 400 and image.height > 200


def test_too_few_labels_is_a_clear_error(spark) -> None:
    one_label = spark.createDataFrame(
        [r for r in clusters(per_label=10) if r[1] in ("apple", UNLABELLED)], SCHEMA
    )
    reduced = one_label.select("path", F.slice("features", 1, 2).alias("pca_features"))
    with pytest.raises(ValueError, match="two labels or more"):
        run_probe(one_label, reduced, 2, ks=())


def test_a_label_seen_only_in_the_held_out_rows_is_tested_not_refused(spark, separable) -> None:
    features, reduced = separable
    candidates = [(f"s3a://b/raw/durian/{i}.jpg",) for i in range(40)]
    paths = spark.createDataFrame(candidates, "path string")
    (new,) = paths.where(held_out(F.col("path"))).limit(1).collect()
    vector = [float(x) for x in np.random.default_rng(1).normal(0, 0.5, DIM)]
    durian = spark.createDataFrame(
        [(new.path, "durian", "2026-03-01", "w", vector, "e", "t")], SCHEMA
    )
    with_durian = features.unionByName(durian)
    model = fit_pca(features, 10)
    result = run_probe(with_durian, reduce_features(model, with_durian, "v1"), 10, ks=())
    assert result.rows_per_label["durian"] == {"train": 0, "test": 1}
    before = run_probe(features, reduced, 10, ks=())
    tested = before.scores[FULL].test_rows
    assert result.scores[FULL].test_rows == tested + 1
    # Its row is an error: the model never saw the label.
    assert result.scores[FULL].accuracy == pytest.approx(
        before.scores[FULL].accuracy * tested / (tested + 1)
    )


def test_the_probe_ratio_floor_is_validated(settings) -> None:
    assert settings.min_probe_ratio == 0.97
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="FRUITS_MIN_PROBE_RATIO"):
            dataclasses.replace(settings, min_probe_ratio=bad)
