"""A linear probe: does a classifier trained on the reduced features do as well as one trained
on the 1280 features?

A multinomial logistic regression (pyspark.ml) is trained on the labelled rows that a hash of
their path keeps for training, and scored on the others: on the full features, on the current
PCA version's reduced features, and on projections at a few other k. The projections come from
one PCA fit at the largest k, sliced: the top-k components of a fit at K > k are the fit at k.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pyspark import StorageLevel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark.layout import UNLABELLED, Layout
from spark.pca import cumulative_variance, explained_variance, fit_pca
from spark.storage import SSE, put_json

# One labelled row in five is held out. xxhash64 has a fixed seed in Spark, so the same paths
# are held out on every run, machine and partitioning (unlike randomSplit).
HELD_OUT_PERCENT = 20
PROBE_KS = (10, 25, 50, 200)
FULL, REDUCED = "full", "reduced"
NULL_SHARE = 1e-9


def held_out(path: Column) -> Column:
    return F.pmod(F.xxhash64(path), F.lit(100)) < HELD_OUT_PERCENT


def variant(k: int) -> str:
    """The name of the probe on the projection at k components."""
    return f"k{k}"


@dataclass(frozen=True)
class Score:
    accuracy: float
    macro_f1: float
    test_rows: int


def score(confusion: Mapping[tuple[str, str], int]) -> Score:
    """Accuracy and macro-F1 from (true label, predicted label) -> rows.

    Macro-F1 is the plain mean of each label's F1 over the labels that are true or predicted
    (MulticlassClassificationEvaluator's "f1" weights them by support instead).
    """
    rows = sum(confusion.values())
    if rows == 0:
        return Score(0.0, 0.0, 0)
    labels = sorted({label for pair in confusion for label in pair})
    f1s = []
    for label in labels:
        hits = confusion.get((label, label), 0)
        true = sum(n for (t, _), n in confusion.items() if t == label)
        predicted = sum(n for (_, p), n in confusion.items() if p == label)
        f1s.append(2 * hits / (true + predicted))
    correct = sum(n for (t, p), n in confusion.items() if t == p)
    return Score(correct / rows, sum(f1s) / len(f1s), rows)


@dataclass(frozen=True)
class ProbeResult:
    scores: dict[str, Score]  # FULL, REDUCED, variant(k) for each k in ks
    current_k: int
    ks: list[int]
    cumulative_variance: list[float] = field(repr=False)  # at k = 1, 2, ... max(ks)
    rows_per_label: dict[str, dict[str, int]] = field(default_factory=dict)  # train, test

    @property
    def ratio(self) -> float:
        """Accuracy on the reduced features over accuracy on the full ones."""
        full = self.scores[FULL].accuracy
        return self.scores[REDUCED].accuracy / full if full else 0.0

    def accuracy_at(self) -> dict[int, float]:
        return {k: self.scores[variant(k)].accuracy for k in self.ks}

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "scores": {name: asdict(s) for name, s in self.scores.items()},
            "ratio": self.ratio,
        }


def probe_ks(requested: Sequence[int], current_k: int, rows: int, dim: int) -> list[int]:
    """The k to probe, each at most what the data allows (rows and dimensions)."""
    most = min(rows, dim)
    return sorted({min(k, most) for k in (*requested, current_k) if k >= 1})


def run_probe(
    features: DataFrame,
    reduced: DataFrame,
    current_k: int,
    *,
    ks: Sequence[int] = PROBE_KS,
    max_iter: int = 100,
    reg_param: float = 1e-3,
) -> ProbeResult:
    """`features` (path, label, features): the rows the PCA is fitted on; `reduced` (path,
    pca_features): the current PCA version's projection of them. Rows labelled `unlabelled`
    train and test nothing."""
    counts = features.select(
        F.count(F.lit(1)).alias("rows"), F.max(F.size("features")).alias("dim")
    )
    totals = counts.first()
    if not totals or not totals["rows"]:
        raise ValueError("no feature rows to probe")
    labelled = (
        features.where(F.col("label") != UNLABELLED)
        .join(reduced.select("path", "pca_features"), "path")
        .withColumn("held_out", held_out(F.col("path")))
    )
    per_label = _rows_per_label(labelled)
    trained = sorted(x for x in per_label if per_label[x]["train"])
    if len(trained) < 2:
        raise ValueError(f"the probe needs two labels or more with training rows: {per_label}")
    # A label whose few rows all fell in the held-out part (a new fruit, say) is still tested:
    # no model can predict it, so its rows count as errors, on the full and reduced alike. Its
    # index comes after the trained labels', so the regression's classes are those it saw.
    labels = trained + sorted(set(per_label) - set(trained))
    ks = probe_ks(ks, current_k, totals["rows"], totals["dim"])
    pca = fit_pca(features, max(ks))  # one fit; smaller k are its leading components
    # Past the data's rank a component explains nothing: its values are rounding noise, which
    # the regression's internal scaling would blow up to the signal's size.
    usable = sum(1 for share in explained_variance(pca) if share > NULL_SHARE)
    ks = sorted({min(k, usable) for k in ks})
    assembled = _assemble(labelled, pca, labels, ks).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        names = [FULL, REDUCED, *(variant(k) for k in ks)]
        scores = {
            name: _fit_and_score(assembled, name, labels, max_iter, reg_param) for name in names
        }
    finally:
        assembled.unpersist()
    cumulative = cumulative_variance(explained_variance(pca))
    return ProbeResult(scores, current_k, ks, cumulative, per_label)


def _rows_per_label(labelled: DataFrame) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for row in labelled.groupBy("label", "held_out").count().collect():
        found.setdefault(row["label"], {"train": 0, "test": 0})
        found[row["label"]]["test" if row["held_out"] else "train"] = row["count"]
    return found


def _assemble(labelled: DataFrame, pca: Any, labels: list[str], ks: list[int]) -> DataFrame:
    index = F.create_map(*(F.lit(x) for i, label in enumerate(labels) for x in (label, float(i))))
    vectors = labelled.select(
        index[F.col("label")].alias("label_index"),
        "held_out",
        array_to_vector("features").alias(FULL),
        array_to_vector("pca_features").alias(REDUCED),
    )
    projected = pca.copy().setInputCol(FULL).setOutputCol("widest").transform(vectors)
    widest = vector_to_array("widest")
    return projected.select(
        "label_index",
        "held_out",
        FULL,
        REDUCED,
        # float32, as reduced rows are stored (spark.pca.reduce_features)
        *(
            array_to_vector(F.slice(widest, 1, k).cast("array<float>")).alias(variant(k))
            for k in ks
        ),
    )


def _fit_and_score(
    assembled: DataFrame, column: str, labels: list[str], max_iter: int, reg_param: float
) -> Score:
    model = LogisticRegression(
        featuresCol=column,
        labelCol="label_index",
        family="multinomial",
        maxIter=max_iter,
        regParam=reg_param,
        # On the features' own scale: a principal component's variance says how much it
        # matters, and the 1280 features share one scale (one network layer). Standardizing
        # would give the noisy trailing components as much weight as the leading ones.
        standardization=False,
    ).fit(assembled.where(~F.col("held_out")))
    tested = model.transform(assembled.where(F.col("held_out")))
    counts = tested.groupBy("label_index", "prediction").count().collect()
    return score({(labels[int(r[0])], labels[int(r[1])]): r["count"] for r in counts})


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
    axes.plot(list(at), list(at.values()), "o-", color="steelblue", label="probe accuracy at k")
    full = result.scores[FULL].accuracy
    axes.axhline(
        full, color="grey", linestyle="--", label=f"accuracy on 1280 features ({full:.3f})"
    )
    reduced = result.scores[REDUCED].accuracy
    axes.plot(
        [result.current_k], [reduced], "D", color="crimson", label=f"current PCA ({reduced:.3f})"
    )
    axes.axvline(
        result.current_k, color="crimson", linestyle=":", label=f"current k = {result.current_k}"
    )
    axes.set(xlabel="k (components)", ylabel="share", ylim=(0, 1.02), xlim=(0, max(ks) + 1))
    axes.set_title(f"Linear probe: reduced/full accuracy {result.ratio:.3f}")
    axes.legend(loc="lower right", fontsize="small")
    axes.grid(alpha=0.3)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def save_probe(s3: Any, layout: Layout, version: str, result: ProbeResult, png: bytes) -> str:
    """Write the picture and the figures next to the PCA version; return the picture's URI."""
    png_key = layout.feature_quality_key(version, "png")
    s3.put_object(Bucket=layout.bucket, Key=png_key, Body=png, ContentType="image/png", **SSE)
    put_json(s3, layout.bucket, layout.feature_quality_key(version, "json"), result.to_json())
    return f"s3://{layout.bucket}/{png_key}"
