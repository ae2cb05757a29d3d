"""The linear probe: on features whose truth is known (the ratio's interval finds it), on a
demo-sized set (inconclusive), the grouped and stratified split, the scores over one label
set, the bootstrap interval and the verdict."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.functions import array_to_vector
from pyspark.sql import functions as F

from bootstrap.sample.sample_data import DEFAULT_DATES, photo_name
from spark.layout import UNLABELLED
from spark.pca import cumulative_variance, explained_variance, fit_pca, reduce_features
from spark.probe import (
    FULL,
    INCONCLUSIVE,
    KEEPS,
    LOSES,
    REDUCED,
    NotReducedError,
    ProbeInconclusive,
    ProbeOptions,
    ProbeResult,
    Score,
    accuracy_ratio,
    bootstrap_ratio,
    group_key,
    probe_ks,
    probe_png,
    run_probe,
    score,
    split_groups,
    variant,
    verdict,
)
from spark.settings import ConfigError

SCHEMA = (
    "path string, label string, upload_date string, weights_sha256 string, features array<float>, "
    "etag string, last_modified string"
)
DIM = 1280
# The known-truth rows are narrower: the probe does not depend on the width, and a PCA's cost
# grows with its square (1280 would take minutes on two cores).
KNOWN_DIM = 256
# Two bits make four labels: the first is loud (a PCA at k=5 keeps it), the second quiet
# (lost at k=5, kept at k=25). A probe on k=5 reads one bit of two: its accuracy is half the
# full model's, whose is about 1. The known ratio is 0.5.
BITS = {"apple": (0, 0), "banana": (0, 1), "cherry": (1, 0), "durian": (1, 1)}
QUIET = slice(10, 30)


def raw_path(label: str, stem: str, date: str = "2026-03-01", root: str = "s3a://b/p") -> str:
    return f"{root}/raw/upload_date={date}/{label}/{stem}.jpg"


def two_bit_rows(objects: int = 100, frames: int = 2, seed: int = 3) -> list[tuple]:
    """`objects` per label, each photographed `frames` times (near-duplicates, one group)."""
    rng = np.random.default_rng(seed)
    rows = []
    for label, (loud, quiet) in BITS.items():
        for o in range(objects):
            base = np.zeros(KNOWN_DIM)
            base[0] = (2 * loud - 1) * 5 + rng.normal(0, 0.5)
            base[1:5] = rng.normal(0, 4, 4)  # loud noise: the rest of the top five components
            base[QUIET] = (2 * quiet - 1) * 0.3 + rng.normal(0, 0.2, 20)
            for f in range(frames):
                vector = base.copy()
                vector[:30] += rng.normal(0, 0.02, 30)
                vector[30:] = rng.normal(0, 0.001, KNOWN_DIM - 30)  # near-constant raw columns
                rows.append((raw_path(label, f"obj{o}x_{f}"), label, vector))
    return [(p, lab, "2026-03-01", "w", [float(x) for x in v], "e", "t") for p, lab, v in rows]


@pytest.fixture(scope="module")
def known(spark):
    """The probe on the two-bit rows with a current PCA of k=5, fitted on every row."""
    features = spark.createDataFrame(two_bit_rows(), SCHEMA).cache()
    model = fit_pca(features, 5)
    reduced = reduce_features(model, features, "v1")
    options = ProbeOptions(
        ks=(25,), max_iter=100, reg_params=(1e-3, 1e-1), folds=2, bootstrap_samples=1000
    )
    return run_probe(features, reduced, model, options)


@pytest.mark.slow
def test_the_ratios_interval_holds_the_known_value_and_the_check_sees_the_loss(known) -> None:
    assert known.scores[FULL].accuracy > 0.95
    assert known.scores[REDUCED].accuracy == pytest.approx(0.5, abs=0.12)
    low, high = known.ratio_interval
    assert low < 0.5 < high, known.ratio_interval
    assert low > 0.25 and high < 0.75  # the interval is informative, not [0, inf]
    assert low <= known.ratio <= high
    assert known.inconclusive() == []
    assert verdict(known, 0.97).outcome == LOSES
    assert verdict(known, 0.3).outcome == KEEPS  # the interval reaches above 0.3


@pytest.mark.slow
def test_the_k_curve_recovers_the_quiet_bit_beyond_the_current_k(known) -> None:
    assert known.ks == [5, 25]
    assert known.scores[variant(25)].accuracy > 0.95
    assert known.scores[variant(5)] == known.scores[REDUCED]  # the current k: the same fit
    running = known.cumulative_variance
    assert len(running) == 25 and running[-1] <= 1 + 1e-9
    assert all(a <= b + 1e-9 for a, b in zip(running, running[1:], strict=False))


@pytest.mark.slow
def test_the_fits_are_comparable(known) -> None:
    # One λ for every variant, chosen by cross-validation: the full features separate the four
    # labels at either λ, and of two that validate alike the larger (simpler model) is taken.
    assert set(known.cross_validation) == {"0.001", "0.1"}
    assert min(known.cross_validation.values()) > 0.95
    assert known.cross_validation["0.1"] >= known.cross_validation["0.001"]
    assert known.reg_param == 0.1
    assert set(known.iterations) == {FULL, REDUCED, variant(5), variant(25)}
    assert known.iterations[variant(5)] == known.iterations[REDUCED]  # one fit at the current k
    # The narrow projections converge before the limit: not flagged.
    assert REDUCED not in known.fits_at_limit and variant(25) not in known.fits_at_limit
    # The near-constant raw columns are left out: the first 30 carry everything.
    assert known.full_columns == 30
    # Every label holds out 40 rows (20 whole two-frame objects), so a variant's mean recall
    # is its accuracy; the full model reads both bits, the reduced one the loud bit only.
    assert {r["test"] for r in known.rows_per_label.values()} == {40}
    for name in (FULL, REDUCED):
        assert known.scores[name].test_rows == known.test_rows == 160
        assert known.scores[name].balanced_accuracy == pytest.approx(known.scores[name].accuracy)
    assert known.scores[FULL].macro_f1 > 0.95
    assert known.scores[REDUCED].macro_f1 == pytest.approx(0.5, abs=0.12)


def test_a_fit_stopped_at_its_iteration_limit_is_flagged_and_warned_of(spark) -> None:
    features = spark.createDataFrame(two_bit_rows(objects=10, frames=1), SCHEMA)
    model = fit_pca(features, 5)
    options = ProbeOptions(
        ks=(), max_iter=2, reg_params=(1e-2,), min_test_rows=1, min_test_rows_per_label=1,
        bootstrap_samples=100,
    )  # fmt: skip
    result = run_probe(features, reduce_features(model, features, "v1"), model, options)
    assert result.iterations == {FULL: 2, REDUCED: 2, variant(5): 2}
    assert result.fits_at_limit == [FULL, variant(5), REDUCED]
    (warning, *others) = result.warnings()
    assert others == []
    assert "max_iter=2" in warning and all(repr(n) in warning for n in (FULL, REDUCED))


@pytest.mark.slow
def test_balanced_class_weights_let_the_rare_label_be_predicted(spark) -> None:
    """39 common rows to 1 rare, one feature shifting the rare ones by two standard deviations.
    Fitted for accuracy alone, a classifier answers "common" unless a row is far out: the
    rare label's recall stays low. The probe's balanced weights trade accuracy on the common
    label for recall on the rare one."""
    rng = np.random.default_rng(2)
    rows = []
    for label, count, shift in (("common", 3900, 0.0), ("rare", 100, 2.0)):
        for i in range(count):
            vector = rng.normal(0, 1, 4)
            vector[0] += shift
            rows.append((raw_path(label, f"photo{i}x"), label, "2026-03-01", "w",
                         [float(x) for x in vector], "e", "t"))  # fmt: skip
    features = spark.createDataFrame(rows, SCHEMA).cache()
    model = fit_pca(features, 2)
    options = ProbeOptions(ks=(), max_iter=100, reg_params=(1e-2,), bootstrap_samples=100)
    result = run_probe(features, reduce_features(model, features, "v1"), model, options)
    full = result.scores[FULL]
    # Balanced accuracy is (common recall + rare recall) / 2: above 0.75, the rare recall is
    # above a half.
    assert full.balanced_accuracy > 0.75
    assert full.accuracy < result.majority_share  # what the weights pay for it
    # The same rows without weights (fitted and scored on all of them: the most favourable
    # case for it): the rare label is mostly missed.
    unweighted = LogisticRegression(
        featuresCol="x", labelCol="y", maxIter=100, regParam=1e-2, standardization=False
    ).fit(features.select(array_to_vector("features").alias("x"),
                          (F.col("label") == "rare").cast("double").alias("y")))  # fmt: skip
    predicted = unweighted.transform(
        features.select(array_to_vector("features").alias("x"), F.col("label"))
    ).where(F.col("label") == "rare")
    rare_recall = predicted.where(F.col("prediction") == 1).count() / predicted.count()
    assert rare_recall < 0.4


@pytest.mark.slow
def test_the_split_holds_out_whole_objects_per_label(known) -> None:
    per_label = known.rows_per_label
    assert set(per_label) == set(BITS)
    for rows in per_label.values():
        assert rows["train"] + rows["test"] == 200
        assert rows["test"] % 2 == 0 and 20 <= rows["test"] <= 60  # whole two-frame objects
    assert known.groups["train"] + known.groups["test"] == 400
    assert known.majority_share == pytest.approx(
        max(r["test"] for r in per_label.values()) / known.test_rows
    )


def demo_names(per_date: int = 60, phone_per_date: int = 2) -> list[tuple[str, str]]:
    """(label, stem) of the demo's sample (bootstrap.sample.sample_data's defaults: 12 labels
    in turn, two phone photos a date), by its own naming."""
    labels = [f"fruit{chr(97 + i)}" for i in range(12)]
    names = []
    for date in DEFAULT_DATES:
        names += [(labels[n % 12], photo_name(labels[n % 12], date, n)) for n in range(per_date)]
        names += [(labels[n], photo_name("phone", date, n)) for n in range(phone_per_date)]
    return [(label, name.removesuffix(".jpg")) for label, name in names]


@pytest.mark.slow
def test_a_demo_sized_set_is_inconclusive(spark) -> None:
    """186 rows of 12 labels named as the demo's: each photo its own object, a fifth of each
    label held out, and those too few held-out rows to judge a ratio."""
    rng = np.random.default_rng(11)
    names = demo_names()
    labels = sorted({label for label, _ in names})
    centres = dict(zip(labels, rng.normal(0, 1, (12, DIM)), strict=True))
    rows = [
        (raw_path(label, stem), label, "2026-03-01", "w",
         [float(x) for x in centres[label] + rng.normal(0, 0.5, DIM)], "e", "t")
        for label, stem in names
    ]  # fmt: skip
    features = spark.createDataFrame(rows, SCHEMA)
    model = fit_pca(features, 10)
    options = ProbeOptions(ks=(), max_iter=100, reg_params=(1e-2,), bootstrap_samples=200)
    result = run_probe(features, reduce_features(model, features, "v1"), model, options)
    assert result.groups["train"] + result.groups["test"] == 186  # no two photos grouped
    assert all(r["test"] >= 1 and r["train"] > r["test"] for r in result.rows_per_label.values())
    assert 30 <= result.test_rows < 100
    outcome = verdict(result, 0.97)
    assert outcome.outcome == INCONCLUSIVE
    assert outcome.reason.startswith(f"{result.test_rows} held-out rows, fewer than 100")
    # The counts alone rule a verdict out: no classifier is fitted, no accuracy reported.
    assert result.scores == {} and result.iterations == {} and result.ratio_interval is None
    assert result.cumulative_variance == pytest.approx(
        cumulative_variance(explained_variance(model))
    )


def split_frame(spark, names: list[tuple[str, str]], root: str = "s3a://b/p", date="2026-03-01"):
    rows = [(raw_path(label, stem, date, root), label) for label, stem in names]
    frame = spark.createDataFrame(rows, "path string, label string")
    return split_groups(frame.withColumn("group", group_key(F.col("path"), F.col("label"))))


def test_frames_of_one_object_fall_on_one_side_whatever_the_bucket_prefix_or_order(
    spark,
) -> None:
    names = [(f"l{n}", f"obj{o}x_{f}") for n in range(5) for o in range(20) for f in range(3)]

    def sides(frame) -> set[tuple[str, str, bool]]:
        return {(r.label, r.path.rsplit("/", 1)[1], r.held_out) for r in frame.collect()}

    one = sides(split_frame(spark, names))
    moved = split_frame(spark, list(reversed(names)), "s3a://other/elsewhere", "2026-04-02")
    assert sides(moved.repartition(7)) == one
    by_group: dict[tuple[str, str], set[bool]] = {}
    for label, name, held in one:
        by_group.setdefault((label, name.split("_")[0]), set()).add(held)
    assert all(len(sides) == 1 for sides in by_group.values())  # no object on both sides
    for label in {label for label, _ in names}:
        held = [h for (lab, _), sides in by_group.items() if lab == label for h in sides]
        assert 1 <= sum(held) < len(held)  # each label tested and trained
        assert sum(held) / len(held) <= 0.3


def test_fruits360_frames_of_a_single_fruit_are_never_split(spark) -> None:
    """Fruits-360 names one fruit's frames `0_100.jpg`, `r_0_100.jpg`, ...: one group each,
    so a label with one fruit is trained on only, and a label with two is split by fruit."""
    names = [("kiwi", f"{f}_100") for f in range(30)]
    names += [("lime", f"{f}_100") for f in range(30)] + [("lime", f"r_{f}_100") for f in range(30)]
    rows = split_frame(spark, names).collect()
    assert not any(r.held_out for r in rows if r.label == "kiwi")
    held = {r.group: {x.held_out for x in rows if x.group == r.group} for r in rows}
    assert held["lime/"] != held["lime/r"] and all(len(s) == 1 for s in held.values())


def test_dates_not_reduced_yet_are_listed_or_refused(spark) -> None:
    features = spark.createDataFrame(two_bit_rows(objects=10, frames=1), SCHEMA)
    late = features.where(F.col("label") == "apple").withColumn("upload_date", F.lit("2026-03-02"))
    everything = features.unionByName(late.withColumn("path", F.concat("path", F.lit("2"))))
    model = fit_pca(features, 5)
    reduced = reduce_features(model, features, "v1")
    with pytest.raises(NotReducedError, match="2026-03-02"):
        run_probe(everything, reduced, model, ProbeOptions(ks=()), require_all_reduced=True)
    options = ProbeOptions(
        ks=(), max_iter=50, reg_params=(1e-2,), min_test_rows=1, bootstrap_samples=100
    )
    result = run_probe(everything, reduced, model, options)
    assert result.dates_not_reduced == ["2026-03-02"]
    assert sum(r["train"] + r["test"] for r in result.rows_per_label.values()) == 40


def test_too_few_labels_is_a_clear_error(spark) -> None:
    rows = [r for r in two_bit_rows(objects=5, frames=1) if r[1] == "apple"]
    rows.append((raw_path(UNLABELLED, "x"), UNLABELLED, *rows[0][2:]))
    one_label = spark.createDataFrame(rows, SCHEMA)
    model = fit_pca(one_label, 2)
    with pytest.raises(ProbeInconclusive, match="two labels or more"):
        run_probe(one_label, reduce_features(model, one_label, "v1"), model, ProbeOptions(ks=()))


def test_scores_average_over_one_fixed_label_set() -> None:
    confusion = {("a", "a"): 3, ("a", "b"): 1, ("b", "b"): 2, ("b", "c"): 1}
    # a: recall 3/4, F1 6/7; b: recall 2/3, F1 4/6; c (predicted, never true) is outside
    result = score(confusion, ["a", "b"])
    assert result.accuracy == pytest.approx(5 / 7)
    assert result.balanced_accuracy == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert result.macro_f1 == pytest.approx((6 / 7 + 4 / 6) / 2)
    assert result.test_rows == 7
    # a label of the set that the variant never predicts counts as 0, not left out
    assert score({("a", "a"): 2, ("b", "a"): 2}, ["a", "b"]).macro_f1 == pytest.approx(
        (2 * 2 / 6 + 0) / 2
    )
    assert score({}, ["a"]) == Score(0.0, 0.0, 0.0, 0)


def test_the_ratio_without_a_full_accuracy_is_none() -> None:
    assert accuracy_ratio(0.8, 0.6) == pytest.approx(0.75)
    assert accuracy_ratio(0.0, 0.3) is None


def test_the_bootstrap_interval_covers_the_true_ratio_and_narrows_with_rows() -> None:
    rng = np.random.default_rng(5)

    def interval(rows: int) -> tuple[float, float]:
        full = (rng.random(rows) < 0.9).astype(float)
        reduced = full * (rng.random(rows) < 0.8)  # keeps 80% of what the full model gets
        groups = np.arange(rows).astype(str)
        return bootstrap_ratio(groups, full, reduced, 1000, 0.95, seed=1)

    small, large = interval(100), interval(5000)
    assert small[0] < 0.8 < small[1] and large[0] < 0.8 < large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 3
    # Groups resampled whole: ten copies of each row are no more evidence than one.
    full = np.repeat((rng.random(100) < 0.9).astype(float), 10)
    reduced = full * np.repeat(rng.random(100) < 0.8, 10)
    copies = np.repeat(np.arange(100), 10).astype(str)
    grouped = bootstrap_ratio(copies, full, reduced, 1000, 0.95)
    alone = bootstrap_ratio(np.arange(1000).astype(str), full, reduced, 1000, 0.95)
    assert grouped[1] - grouped[0] > 2 * (alone[1] - alone[0])
    assert bootstrap_ratio(np.array([]), np.array([]), np.array([]), 100, 0.95) is None


def test_resamples_without_a_full_hit_give_an_infinite_bound_never_nan() -> None:
    # Two groups, the full model right on one only: a quarter of the resamples draw the other
    # twice, a ratio of reduced hits over none. Interpolating between such ratios gave NaN.
    low, high = bootstrap_ratio(
        np.array(["a", "b"]), np.array([0.0, 1.0]), np.array([1.0, 1.0]), 2000, 0.95
    )
    assert low == 1.0 and high == np.inf
    # And were a bound NaN, it would read as no verdict, not as "keeps" (NaN < floor is False).
    for interval in ((0.5, np.nan), (np.nan, 1.2)):
        outcome = verdict(made_up(0.9, 0.85, interval), 0.97)
        assert outcome.outcome == INCONCLUSIVE and "undefined" in outcome.reason


def made_up(full: float, reduced: float, interval, test: int = 40, majority: float = 0.25):
    per_label = {x: {"train": 100, "test": test} for x in "abcd"}
    return ProbeResult(
        scores={FULL: Score(full, full, full, 4 * test), REDUCED: Score(reduced, 0, 0, 4 * test)},
        current_k=5,
        ks=[5],
        cumulative_variance=[0.5] * 5,
        rows_per_label=per_label,
        ratio_interval=interval,
        majority_share=majority,
        min_test_rows=100,
        min_test_rows_per_label=5,
    )


def test_the_verdict_is_a_loss_only_when_the_whole_interval_is_below_the_floor() -> None:
    assert verdict(made_up(0.9, 0.6, (0.55, 0.8)), 0.97).outcome == LOSES
    assert verdict(made_up(0.9, 0.85, (0.8, 1.02)), 0.97).outcome == KEEPS
    few = verdict(made_up(0.9, 0.6, (0.55, 0.8), test=20), 0.97)
    assert few.outcome == INCONCLUSIVE and "80 held-out rows" in few.reason
    lopsided = made_up(0.6, 0.3, (0.3, 0.7), majority=0.6)
    assert verdict(lopsided, 0.97).outcome == INCONCLUSIVE
    assert "does not beat the majority" in verdict(lopsided, 0.97).reason
    nothing = verdict(made_up(0.0, 0.3, (1.0, np.inf), majority=0.0), 0.97)
    assert nothing.outcome == INCONCLUSIVE  # no ratio without a full accuracy


def test_probe_ks_are_within_the_data() -> None:
    assert probe_ks((10, 25, 50, 200), 100, rows=10_000, dim=1280) == [10, 25, 50, 100, 200]
    assert probe_ks((10, 200), 5, rows=66, dim=1280) == [5, 10, 66]


@pytest.mark.slow
def test_the_picture_is_a_png_with_or_without_scores(known) -> None:
    for result in (known, dataclasses.replace(known, scores={})):
        image = Image.open(io.BytesIO(probe_png(result)))
        assert image.format == "PNG" and image.width > 400 and image.height > 200


def test_the_probe_settings_are_validated(settings) -> None:
    assert settings.min_probe_ratio == 0.97
    assert (settings.probe_min_test_rows, settings.probe_min_test_rows_per_label) == (100, 5)
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="FRUITS_MIN_PROBE_RATIO"):
            dataclasses.replace(settings, min_probe_ratio=bad)
    with pytest.raises(ConfigError, match="FRUITS_PROBE_MIN_TEST_ROWS"):
        dataclasses.replace(settings, probe_min_test_rows=0)
    with pytest.raises(ConfigError, match="FRUITS_PROBE_GROUP_PATTERN"):
        dataclasses.replace(settings, probe_group_pattern="(")
