"""A linear probe: does a classifier trained on the reduced features do as well as one trained
on the 1280 features, and do the held-out rows say so with confidence?

- Split: the labelled rows are grouped (label folder + file stem less its frame numbers,
  `Settings.probe_group_pattern`: the frames of one rotating fruit are one group) and, label by
  label, whole groups are held out in the order of a hash of their key, until a fifth of the
  label's rows; a label keeps at least one group for training. The split depends on neither
  the bucket, the prefix nor the upload date, and no object has frames on both sides.
- Fits: multinomial logistic regression (pyspark.ml) with balanced class weights; its λ is
  chosen once, by cross-validation over groups on the full features' training rows, and
  reused for every variant. Raw columns whose variance is near zero are left out of the full
  features (they carry nothing a projection keeps either). Each fit's iterations are recorded.
- Variants: the full features; the current PCA version's reduced features; projections at
  other k: the current model's leading components up to its k, and beyond it a PCA fitted on
  the training rows only.
- Verdict: "inconclusive" below a minimum of held-out rows (overall or for a label: then no
  fit runs at all), or when the full model does not beat the majority label's share; otherwise
  the ratio reduced/full accuracy with a paired bootstrap interval (groups resampled), a loss
  only when the interval's upper bound is below the floor. Fewer than two labels with
  training rows raise `ProbeInconclusive`: no probe can run on them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
from pyspark import StorageLevel, inheritable_thread_target
from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
from pyspark.ml.feature import PCAModel, VectorSlicer
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from spark.layout import PARTITION_COLUMN, UNLABELLED, Layout
from spark.pca import cumulative_variance, explained_variance, fit_pca
from spark.settings import PROBE_FRAME_NUMBERS
from spark.storage import SSE, put_json

HELD_OUT_SHARE = 0.2
PROBE_KS = (10, 25, 50, 200)
REG_PARAMS = (1e-4, 1e-3, 1e-2, 1e-1)
FULL, REDUCED = "full", "reduced"
NULL_SHARE = 1e-9  # a component explaining less is rounding noise
NEAR_ZERO_VARIANCE = 1e-6  # of the largest raw column's variance
R = TypeVar("R")
KEEPS, LOSES, INCONCLUSIVE = "keeps", "loses", "inconclusive"


@dataclass(frozen=True)
class ProbeOptions:
    ks: Sequence[int] = PROBE_KS
    max_iter: int = 300
    reg_params: Sequence[float] = REG_PARAMS
    folds: int = 3
    min_test_rows: int = 100
    min_test_rows_per_label: int = 5
    group_pattern: str = PROBE_FRAME_NUMBERS
    bootstrap_samples: int = 2000
    confidence: float = 0.95
    seed: int = 0
    # Fits run at once, as CrossValidator's `parallelism`: a fit on a probe's rows is a chain
    # of small Spark jobs, each mostly scheduling, which leaves cores idle that another fills.
    parallelism: int = 4


def variant(k: int) -> str:
    """The name of the probe on the projection at k components."""
    return f"k{k}"


def group_key(path: Column, label: Column, pattern: str = PROBE_FRAME_NUMBERS) -> Column:
    """The label and the file's stem less `pattern` (bucket, prefix and date play no part)."""
    stem = F.regexp_extract(path, r"([^/]+?)(?:\.[^./]*)?$", 1)
    return F.concat_ws("/", label, F.regexp_replace(stem, pattern, ""))


def split_groups(labelled: DataFrame, share: float = HELD_OUT_SHARE) -> DataFrame:
    """`labelled` (label, group, ...) with `held_out`: per label, whole groups in the order of
    a hash of their key (xxhash64 has a fixed seed: the same on every run and partitioning)
    until `share` of the label's rows; the last group of a label is always trained on."""
    groups = labelled.groupBy("label", "group").agg(F.count(F.lit(1)).alias("group_rows"))
    ordered = Window.partitionBy("label").orderBy(F.xxhash64("group"), "group")
    whole = Window.partitionBy("label")
    held = groups.select(
        "label",
        "group",
        (
            (F.row_number().over(ordered) < F.count(F.lit(1)).over(whole))
            & (
                F.sum("group_rows").over(ordered) - F.col("group_rows")
                < F.sum("group_rows").over(whole) * share
            )
        ).alias("held_out"),
    )
    return labelled.join(held, ["label", "group"])


@dataclass(frozen=True)
class Score:
    accuracy: float
    balanced_accuracy: float
    macro_f1: float
    test_rows: int


def score(confusion: Mapping[tuple[str, str], int], labels: Sequence[str]) -> Score:
    """Accuracy, balanced accuracy (mean recall) and macro-F1 from (true, predicted) -> rows.

    The means are over `labels`, one fixed set for every variant (the labels with held-out
    rows); a prediction of a label outside it counts against the true label only.
    """
    rows = sum(confusion.values())
    if rows == 0 or not labels:
        return Score(0.0, 0.0, 0.0, rows)
    recalls, f1s = [], []
    for label in labels:
        hits = confusion.get((label, label), 0)
        true = sum(n for (t, _), n in confusion.items() if t == label)
        predicted = sum(n for (_, p), n in confusion.items() if p == label)
        recalls.append(hits / true if true else 0.0)
        f1s.append(2 * hits / (true + predicted) if true + predicted else 0.0)
    correct = sum(n for (t, p), n in confusion.items() if t == p)
    return Score(correct / rows, float(np.mean(recalls)), float(np.mean(f1s)), rows)


def accuracy_ratio(full: float, reduced: float) -> float | None:
    """Reduced over full accuracy; None when the full model got nothing right (no ratio says
    anything then: a lucky reduced score would pass)."""
    return reduced / full if full > 0 else None


def bootstrap_ratio(
    groups: np.ndarray,
    full_correct: np.ndarray,
    reduced_correct: np.ndarray,
    samples: int,
    confidence: float,
    seed: int = 0,
) -> tuple[float, float] | None:
    """A percentile interval on the accuracy ratio, from a paired bootstrap of the held-out
    rows: both models are scored on the same resampled rows, a group's rows drawn together
    (frames of one object are not independent). None without held-out rows."""
    _, group_index = np.unique(groups, return_inverse=True)
    if len(group_index) == 0:
        return None
    full = np.bincount(group_index, weights=full_correct)
    reduced = np.bincount(group_index, weights=reduced_correct)
    rng = np.random.default_rng(seed)
    ratios = []
    for start in range(0, samples, 200):  # bounded memory: 200 x groups at a time
        drawn = rng.integers(0, len(full), (min(200, samples - start), len(full)))
        full_b, reduced_b = full[drawn].sum(axis=1), reduced[drawn].sum(axis=1)
        # A resample where the full model got nothing right: any reduced hit is an infinite
        # ratio, none at all a tie.
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(full_b > 0, reduced_b / full_b, np.where(reduced_b > 0, np.inf, 1.0))
        ratios.append(ratio)
    tail = (1 - confidence) / 2
    drawn_ratios = np.concatenate(ratios)
    # Bounds taken from the drawn ratios, not interpolated between them: between two infinite
    # ratios (or at an infinite one's edge) an interpolation is NaN, which compares as neither
    # below nor above a floor. Each bound steps outwards, so the interval is never narrower.
    low = np.quantile(drawn_ratios, tail, method="lower")
    high = np.quantile(drawn_ratios, 1 - tail, method="higher")
    return float(low), float(high)


@dataclass(frozen=True)
class ProbeResult:
    scores: dict[str, Score]  # FULL, REDUCED, variant(k) for each k in ks
    current_k: int
    ks: list[int]
    cumulative_variance: list[float] = field(repr=False)  # at k = 1, 2, ... max(ks)
    rows_per_label: dict[str, dict[str, int]] = field(default_factory=dict)  # train, test
    ratio_interval: tuple[float, float] | None = None
    confidence: float = 0.95
    majority_share: float = 0.0  # of the held-out rows: the accuracy of always one label
    reg_param: float = 0.0
    cross_validation: dict[str, float] = field(default_factory=dict)  # λ -> balanced accuracy
    iterations: dict[str, int] = field(default_factory=dict)  # variant -> iterations
    max_iter: int = 0
    full_columns: int = 0  # raw columns the full model reads
    groups: dict[str, int] = field(default_factory=dict)  # train, test
    group_pattern: str = PROBE_FRAME_NUMBERS
    min_test_rows: int = 1
    min_test_rows_per_label: int = 1
    dates_not_reduced: list[str] = field(default_factory=list)
    variance_at_current_k: float = 0.0  # the current model's cumulative explained variance

    @property
    def ratio(self) -> float | None:
        """Accuracy on the reduced features over accuracy on the full ones."""
        if FULL not in self.scores:
            return None
        return accuracy_ratio(self.scores[FULL].accuracy, self.scores[REDUCED].accuracy)

    @property
    def test_rows(self) -> int:
        return sum(r["test"] for r in self.rows_per_label.values())

    @property
    def fits_at_limit(self) -> list[str]:
        """The fits that stopped at max_iter, not at convergence: their scores depend on it."""
        return sorted(name for name, n in self.iterations.items() if n >= self.max_iter)

    def inconclusive(self) -> list[str]:
        """Why the held-out rows cannot support a verdict (empty when they can)."""
        reasons = []
        if self.test_rows < self.min_test_rows:
            reasons.append(f"{self.test_rows} held-out rows, fewer than {self.min_test_rows}")
        few = {
            label: r["test"]
            for label, r in sorted(self.rows_per_label.items())
            if r["test"] < self.min_test_rows_per_label
        }
        if few:
            reasons.append(
                f"labels with fewer than {self.min_test_rows_per_label} held-out rows: "
                + ", ".join(f"{label} ({n})" for label, n in few.items())
                + " (a label's rows form groups by probe_group_pattern; its last group trains)"
            )
        if FULL in self.scores and self.scores[FULL].accuracy <= self.majority_share:
            reasons.append(
                f"the full model's accuracy {self.scores[FULL].accuracy:.3f} does not beat the "
                f"majority label's share {self.majority_share:.3f}"
            )
        return reasons

    def warnings(self) -> list[str]:
        """What the run log should warn of: figures that depend on a limit or leave rows out."""
        warnings = []
        if self.fits_at_limit:
            warnings.append(
                f"probe fits stopped at max_iter={self.max_iter} before converging: "
                f"{self.fits_at_limit}; their accuracies depend on the limit"
            )
        if self.dates_not_reduced:
            warnings.append(
                f"dates not reduced by the current PCA version yet, left out of the probe: "
                f"{self.dates_not_reduced}"
            )
        return warnings

    def accuracy_at(self) -> dict[int, float]:
        return {k: self.scores[variant(k)].accuracy for k in self.ks if variant(k) in self.scores}

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "scores": {name: asdict(s) for name, s in self.scores.items()},
            "ratio": self.ratio,
            "inconclusive": self.inconclusive(),
            "fits_at_limit": self.fits_at_limit,
        }


@dataclass(frozen=True)
class Verdict:
    outcome: str  # KEEPS, LOSES or INCONCLUSIVE
    reason: str


def verdict(result: ProbeResult, min_ratio: float) -> Verdict:
    """A loss only when the ratio's interval lies wholly below the floor."""
    reasons = result.inconclusive()
    if reasons or result.ratio is None or result.ratio_interval is None:
        return Verdict(INCONCLUSIVE, "; ".join(reasons) or "no ratio to judge")
    low, high = result.ratio_interval
    if np.isnan(low) or np.isnan(high):
        # NaN is below no floor: left to the comparison it would read as "keeps".
        return Verdict(INCONCLUSIVE, f"the ratio's interval is undefined: [{low}, {high}]")
    level = f"{result.confidence:.0%}"
    described = (
        f"reduced/full accuracy {result.ratio:.3f}, {level} interval [{low:.3f}, {high:.3f}], "
        f"floor {min_ratio}"
    )
    if high < min_ratio:
        return Verdict(LOSES, described)
    return Verdict(KEEPS, described)


def probe_ks(requested: Sequence[int], current_k: int, rows: int, dim: int) -> list[int]:
    """The k to probe, each at most what the data allows (rows and dimensions)."""
    most = min(rows, dim)
    return sorted({min(k, most) for k in (*requested, current_k) if k >= 1})


class NotReducedError(ValueError):
    """Feature rows that the current PCA version has not reduced yet."""


class ProbeInconclusive(Exception):
    """The labelled rows cannot support a probe at all (none, or fewer than two labels with
    training rows): a finding about the data, not a failure of the run. Not a ValueError, so
    that an error raised by Spark or numpy (PySparkValueError is one) is never taken for it."""


def dates_not_reduced(features: DataFrame, reduced: DataFrame) -> list[str]:
    missing = features.join(reduced.select("path"), "path", "left_anti")
    return sorted(r[0] for r in missing.select(PARTITION_COLUMN).distinct().collect())


def run_probe(
    features: DataFrame,
    reduced: DataFrame,
    model: PCAModel,
    options: ProbeOptions = ProbeOptions(),
    *,
    require_all_reduced: bool = False,
) -> ProbeResult:
    """`features` (path, upload_date, label, features): the rows of the current weights;
    `reduced` (path, pca_features): the current PCA version's projection, `model`. Rows
    labelled `unlabelled` train and test nothing. Dates not reduced yet are left out and
    listed (`dates_not_reduced`), or refused with `require_all_reduced`."""
    labelled_features = features.where(F.col("label") != UNLABELLED)
    missing = dates_not_reduced(labelled_features, reduced)
    if missing and require_all_reduced:
        raise NotReducedError(f"dates not reduced by the current PCA version yet: {missing}")
    labelled = labelled_features.join(reduced.select("path", "pca_features"), "path")
    group = group_key(F.col("path"), F.col("label"), options.group_pattern)
    labelled = split_groups(labelled.withColumn("group", group))
    # The join and the split leave as many partitions as shuffles make (200): every iteration
    # of every fit would be that many tasks. One per core is enough for a probe's rows.
    cores = labelled.sparkSession.sparkContext.defaultParallelism
    labelled = labelled.coalesce(cores).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        return _probe(labelled, model, options, missing)
    finally:
        labelled.unpersist()


def _probe(
    labelled: DataFrame, model: PCAModel, options: ProbeOptions, missing: list[str]
) -> ProbeResult:
    per_label, groups = _rows_per_label(labelled)
    if not per_label:
        if missing:
            raise NotReducedError(
                f"no labelled row is reduced by the current PCA version yet (dates {missing})"
            )
        raise ProbeInconclusive("no labelled feature rows to probe")
    labels = sorted(per_label)
    if sum(1 for x in labels if per_label[x]["train"]) < 2:
        raise ProbeInconclusive(
            f"the probe needs two labels or more with training rows: {per_label}"
        )
    tested = [x for x in labels if per_label[x]["test"]]
    variance = explained_variance(model)
    counted = ProbeResult(
        scores={},
        current_k=model.getK(),
        ks=[],
        cumulative_variance=cumulative_variance(variance),
        rows_per_label=per_label,
        confidence=options.confidence,
        majority_share=_majority_share(per_label),
        max_iter=options.max_iter,
        groups=groups,
        group_pattern=options.group_pattern,
        min_test_rows=options.min_test_rows,
        min_test_rows_per_label=options.min_test_rows_per_label,
        dates_not_reduced=missing,
        variance_at_current_k=float(sum(variance)),
    )
    if counted.inconclusive():
        # The held-out rows alone rule out a verdict: no fit is run. Accuracies on so few rows
        # would read as the verdict they cannot support, and the fits are the probe's cost.
        return counted
    return _fit_variants(labelled, model, options, labels, tested, counted)


def _fit_variants(
    labelled: DataFrame,
    model: PCAModel,
    options: ProbeOptions,
    labels: list[str],
    tested: list[str],
    counted: ProbeResult,
) -> ProbeResult:
    per_label = counted.rows_per_label
    train_rows = sum(r["train"] for r in per_label.values())
    # Balanced: each label weighs as much in the loss, whatever its rows.
    weights = {x: train_rows / (len(labels) * max(1, per_label[x]["train"])) for x in labels}
    dim = len(labelled.select("features").first()[0])
    current_k = model.getK()
    ks = probe_ks(options.ks, current_k, train_rows, dim)
    vectors = _label_vectors(labelled, labels, weights, options.folds)
    kept = _kept_columns(vectors.where(~F.col("held_out")))
    # Beyond the current model's k, the leading components of a PCA of the training rows.
    wider = [k for k in ks if k > current_k]
    training_pca = None
    if wider:
        training_pca = fit_pca(labelled.where(~F.col("held_out")), max(wider))
        usable = sum(1 for share in explained_variance(training_pca) if share > NULL_SHARE)
        ks = sorted({k if k <= current_k else min(k, max(usable, current_k)) for k in ks})
    assembled = _assemble(vectors, kept, model, training_pca, ks).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    try:
        train = assembled.where(~F.col("held_out"))
        test = assembled.where(F.col("held_out"))
        # One λ for every variant: the one the full model validates best (ties: the larger).
        cross_validation = _cross_validate(train, options) if len(options.reg_params) > 1 else {}
        reg_param = max(options.reg_params, key=lambda x: (cross_validation.get(x, 0.0), x))
        # At the current k the projection is the reduced features themselves: one fit.
        names = [FULL, REDUCED, *(variant(k) for k in ks if k != current_k)]

        def fit_and_predict(name: str) -> tuple[int, dict[str, int] | None]:
            fitted = _fit(train, name, reg_param, options.max_iter)
            return fitted.summary.totalIterations, _predict(fitted, test, name) if tested else None

        fits = dict(zip(names, _at_once(fit_and_predict, names, options), strict=True))
        iterations = {name: n for name, (n, _) in fits.items()}
        predictions = {name: p for name, (_, p) in fits.items() if p is not None}
    finally:
        assembled.unpersist()
    if current_k in ks:
        iterations[variant(current_k)] = iterations[REDUCED]
        if REDUCED in predictions:
            predictions[variant(current_k)] = predictions[REDUCED]
    truth = _truth(labelled)
    interval = None
    if predictions:
        interval = _interval(predictions[FULL], predictions[REDUCED], truth, labels, options)
    variance_model = training_pca if training_pca is not None else model
    return replace(
        counted,
        scores={name: _score(predictions[name], truth, labels, tested) for name in predictions},
        ks=ks,
        cumulative_variance=cumulative_variance(explained_variance(variance_model)),
        ratio_interval=interval,
        reg_param=reg_param,
        cross_validation={str(k): v for k, v in cross_validation.items()},
        iterations=iterations,
        full_columns=len(kept),
    )


def _rows_per_label(labelled: DataFrame) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    counts = labelled.groupBy("label", "held_out").agg(
        F.count(F.lit(1)).alias("rows"), F.countDistinct("group").alias("groups")
    )
    rows: dict[str, dict[str, int]] = {}
    groups = {"train": 0, "test": 0}
    for row in counts.collect():
        side = "test" if row["held_out"] else "train"
        rows.setdefault(row["label"], {"train": 0, "test": 0})[side] = row["rows"]
        groups[side] += row["groups"]
    return rows, groups


def _majority_share(per_label: Mapping[str, Mapping[str, int]]) -> float:
    tested = [r["test"] for r in per_label.values()]
    return max(tested) / sum(tested) if sum(tested) else 0.0


def _label_vectors(
    labelled: DataFrame, labels: list[str], weights: Mapping[str, float], folds: int
) -> DataFrame:
    def lookup(values: Mapping[str, float]) -> Column:
        return F.create_map(*(F.lit(x) for key, v in values.items() for x in (key, v)))[
            F.col("label")
        ]

    return labelled.select(
        "path",
        "held_out",
        lookup({x: float(i) for i, x in enumerate(labels)}).alias("label_index"),
        lookup(weights).alias("weight"),
        # Folds of whole groups, so that cross-validation does not leak frames either.
        F.pmod(F.xxhash64("group", F.lit("fold")), F.lit(folds)).cast("int").alias("fold"),
        array_to_vector("features").alias("raw"),
        array_to_vector("pca_features").alias(REDUCED),
    )


def _kept_columns(train: DataFrame) -> list[int]:
    """The raw columns whose variance on the training rows is not near zero."""
    variance = train.select(Summarizer.variance(F.col("raw")).alias("v")).first()["v"].toArray()
    floor = NEAR_ZERO_VARIANCE * float(variance.max()) if len(variance) else 0.0
    return [int(i) for i in np.flatnonzero(variance > floor)]


def _assemble(
    vectors: DataFrame,
    kept: list[int],
    model: PCAModel,
    training_pca: PCAModel | None,
    ks: list[int],
) -> DataFrame:
    frame = VectorSlicer(inputCol="raw", outputCol=FULL, indices=kept).transform(vectors)
    frame = model.copy().setInputCol("raw").setOutputCol("current").transform(frame)
    if training_pca is not None:
        frame = training_pca.copy().setInputCol("raw").setOutputCol("wider").transform(frame)

    def projection(k: int) -> Column:
        source = vector_to_array("current" if k <= model.getK() else "wider")
        # float32, as reduced rows are stored (spark.pca.reduce_features)
        return array_to_vector(F.slice(source, 1, k).cast("array<float>")).alias(variant(k))

    return frame.select(
        "path",
        "held_out",
        "label_index",
        "weight",
        "fold",
        FULL,
        REDUCED,
        *(projection(k) for k in ks if k != model.getK()),
    )


def _fit(train: DataFrame, column: str, reg_param: float, max_iter: int) -> LogisticRegressionModel:
    return LogisticRegression(
        featuresCol=column,
        labelCol="label_index",
        weightCol="weight",
        family="multinomial",
        maxIter=max_iter,
        regParam=reg_param,
        # On the features' own scale: a principal component's variance says how much it
        # matters, and the 1280 features share one scale (one network layer). Standardizing
        # would give the noisy trailing components as much weight as the leading ones.
        standardization=False,
    ).fit(train)


def _cross_validate(train: DataFrame, options: ProbeOptions) -> dict[float, float]:
    """λ -> mean balanced accuracy over the folds, on the full features' training rows."""
    labels_per_fold = {
        r["fold"]: r["labels"]
        for r in train.groupBy("fold").agg(F.collect_set("label_index").alias("labels")).collect()
    }
    # A fold is validated on when the other folds still hold two labels or more.
    folds = sorted(f for f in labels_per_fold if len(_others(labels_per_fold, f)) >= 2)

    def validate(reg_param: float, fold: int) -> float:
        inside, outside = train.where(F.col("fold") != fold), train.where(F.col("fold") == fold)
        fitted = _fit(inside, FULL, reg_param, options.max_iter)
        counts = fitted.transform(outside).groupBy("label_index", "prediction").count()
        confusion = {(str(r[0]), str(r[1])): r["count"] for r in counts.collect()}
        return score(confusion, sorted({t for t, _ in confusion})).balanced_accuracy

    pairs = [(reg_param, fold) for reg_param in options.reg_params for fold in folds]
    scores = _at_once(lambda pair: validate(*pair), pairs, options)
    accuracies = dict(zip(pairs, scores, strict=True))
    # No fold to validate on (too few groups): every λ ties and the largest is taken.
    return {
        reg_param: float(np.mean([accuracies[reg_param, f] for f in folds])) if folds else 0.0
        for reg_param in options.reg_params
    }


def _at_once(work: Callable[[Any], R], items: Iterable[Any], options: ProbeOptions) -> list[R]:
    """`work` on each item, `options.parallelism` at a time, results in the items' order; each
    thread keeps the caller's Spark job properties."""
    with ThreadPoolExecutor(max(1, options.parallelism)) as pool:
        return list(pool.map(inheritable_thread_target(work), items))


def _others(labels_per_fold: Mapping[int, list[float]], fold: int) -> set[float]:
    return {x for f, labels in labels_per_fold.items() if f != fold for x in labels}


def _predict(fitted: LogisticRegressionModel, test: DataFrame, column: str) -> dict[str, int]:
    """path -> predicted label index, for the held-out rows."""
    rows = fitted.transform(test.select("path", column)).select("path", "prediction").collect()
    return {r["path"]: int(r["prediction"]) for r in rows}


def _truth(labelled: DataFrame) -> dict[str, tuple[str, str]]:
    """path -> (label, group), for the held-out rows."""
    rows = labelled.where(F.col("held_out")).select("path", "label", "group").collect()
    return {r["path"]: (r["label"], r["group"]) for r in rows}


def _score(
    predicted: Mapping[str, int],
    truth: Mapping[str, tuple[str, str]],
    labels: list[str],
    tested: list[str],
) -> Score:
    confusion: dict[tuple[str, str], int] = {}
    for path, index in predicted.items():
        pair = (truth[path][0], labels[index])
        confusion[pair] = confusion.get(pair, 0) + 1
    return score(confusion, tested)


def _interval(
    full: Mapping[str, int],
    reduced: Mapping[str, int],
    truth: Mapping[str, tuple[str, str]],
    labels: list[str],
    options: ProbeOptions,
) -> tuple[float, float] | None:
    paths = sorted(truth)
    groups = np.array([truth[p][1] for p in paths])
    full_correct = np.array([labels[full[p]] == truth[p][0] for p in paths], dtype=float)
    reduced_correct = np.array([labels[reduced[p]] == truth[p][0] for p in paths], dtype=float)
    return bootstrap_ratio(
        groups,
        full_correct,
        reduced_correct,
        options.bootstrap_samples,
        options.confidence,
        options.seed,
    )


def probe_png(result: ProbeResult) -> bytes:
    """Accuracy and cumulative explained variance against k, the current k marked."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and clusters
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    axes = figure.add_subplot()
    ks = list(range(1, len(result.cumulative_variance) + 1))
    axes.plot(
        ks, result.cumulative_variance, color="darkorange", label="cumulative explained variance"
    )
    at = result.accuracy_at()
    if at:
        axes.plot(list(at), list(at.values()), "o-", color="steelblue", label="probe accuracy at k")
    if FULL in result.scores:
        full = result.scores[FULL].accuracy
        axes.axhline(
            full, color="grey", linestyle="--", label=f"accuracy on the raw features ({full:.3f})"
        )
        reduced = result.scores[REDUCED].accuracy
        axes.plot(
            [result.current_k],
            [reduced],
            "D",
            color="crimson",
            label=f"current PCA ({reduced:.3f})",
        )
    axes.axvline(
        result.current_k, color="crimson", linestyle=":", label=f"current k = {result.current_k}"
    )
    axes.set(xlabel="k (components)", ylabel="share", ylim=(0, 1.02), xlim=(0, max(ks) + 1))
    axes.set_title(_title(result))
    axes.legend(loc="lower right", fontsize="small")
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _title(result: ProbeResult) -> str:
    if result.inconclusive() or result.ratio is None or result.ratio_interval is None:
        return f"Linear probe: inconclusive ({result.test_rows} held-out rows)"
    low, high = result.ratio_interval
    return (
        f"Linear probe: reduced/full accuracy {result.ratio:.3f} "
        f"[{low:.3f}, {high:.3f}], {result.test_rows} held-out rows"
    )


def save_probe(s3: Any, layout: Layout, version: str, result: ProbeResult, png: bytes) -> str:
    """Write the picture and the figures next to the PCA version; return the picture's URI."""
    png_key = layout.feature_quality_key(version, "png")
    s3.put_object(Bucket=layout.bucket, Key=png_key, Body=png, ContentType="image/png", **SSE)
    put_json(s3, layout.bucket, layout.feature_quality_key(version, "json"), result.to_json())
    return f"s3://{layout.bucket}/{png_key}"
