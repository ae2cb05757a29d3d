"""Progress of long Spark work, reported while it runs: per upload date and per Spark stage.

Workers count the images they finish in an accumulator (spark.featurize); Spark merges a
task's counts when the task ends, so a thread on the driver reads them and Spark's status
tracker every few seconds and reports lines like

    stage=featurize partition=2026-11-20 done=320 to_go=180 images_per_s=48.2 eta_s=3.7
    stage=spark stage_id=4 name="collect at pipeline.py:61" tasks_done=12 tasks=19 eta_s=2.1

in logfmt (key=value), so that they can be grepped and parsed. The caller decides where the
lines go: Dagster's run log, or stdout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pyspark import Accumulator, AccumulatorParam
from pyspark.sql import SparkSession

Report = Callable[[str], None]
POLL_S = 2.0


def logfmt(**fields: Any) -> str:
    """key=value pairs; values with spaces are quoted, floats get one decimal."""

    def text(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.1f}"
        value = str(value)
        return f'"{value}"' if " " in value or not value else value

    return " ".join(f"{key}={text(value)}" for key, value in fields.items())


class CountsParam(AccumulatorParam):
    """Accumulates {key: count} dictionaries by adding counts key by key."""

    def zero(self, value: dict[str, int]) -> dict[str, int]:
        return {}

    def addInPlace(  # noqa: N802 (Spark's name)
        self, value1: dict[str, int], value2: dict[str, int]
    ) -> dict[str, int]:
        for key, count in value2.items():
            value1[key] = value1.get(key, 0) + count
        return value1


def partition_lines(
    stage: str, done: Mapping[str, int], expected: Mapping[str, int], elapsed_s: float
) -> list[str]:
    """One line per partition: done, to go, rate and the time left at the overall rate."""
    rate = sum(done.values()) / elapsed_s if elapsed_s > 0 else 0.0
    lines = []
    for partition in sorted(expected):
        finished = done.get(partition, 0)
        to_go = max(expected[partition] - finished, 0)
        eta = to_go / rate if rate > 0 else None
        lines.append(
            logfmt(
                stage=stage,
                partition=partition,
                done=finished,
                to_go=to_go,
                images_per_s=rate,
                eta_s="unknown" if eta is None else eta,
            )
        )
    return lines


def short_stage_name(name: str) -> str:
    """'collect at /long/path/pipeline.py:61' -> 'collect at pipeline.py:61'."""
    action, at, where = name.partition(" at ")
    return action + at + where.rsplit("/", 1)[-1]


def spark_stage_lines(spark: SparkSession, started: dict[int, float]) -> list[str]:
    """One line per active Spark stage, from Spark's status tracker."""
    tracker = spark.sparkContext.statusTracker()
    lines = []
    for stage_id in sorted(tracker.getActiveStageIds()):
        info = tracker.getStageInfo(stage_id)
        if info is None:
            continue
        elapsed = time.monotonic() - started.setdefault(stage_id, time.monotonic())
        done = info.numCompletedTasks
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (info.numTasks - done) / rate if rate > 0 else None
        lines.append(
            logfmt(
                stage="spark",
                stage_id=stage_id,
                name=short_stage_name(info.name),
                tasks_done=done,
                tasks=info.numTasks,
                eta_s="unknown" if eta is None else eta,
            )
        )
    return lines


@contextmanager
def watch(
    spark: SparkSession,
    report: Report | None,
    stage: str,
    images_done: Accumulator | None = None,
    expected: Mapping[str, int] | None = None,
) -> Iterator[None]:
    """Report the start, what moved every POLL_S seconds while the body runs, and the end."""
    if report is None:
        yield
        return
    every_s, start = POLL_S, time.monotonic()
    stop = threading.Event()
    stage_starts: dict[int, float] = {}
    seen: dict[str, Any] = {"done": {}, "stages": []}

    def tick() -> None:
        if images_done is not None and expected:
            done = dict(images_done.value)  # a copy: Spark's thread updates it
            if done != seen["done"]:  # quiet while nothing moves
                for line in partition_lines(stage, done, expected, time.monotonic() - start):
                    report(line)
                seen["done"] = done
        stages = spark_stage_lines(spark, stage_starts)
        for line in stages:
            if line not in seen["stages"]:
                report(line)
        seen["stages"] = stages

    def loop() -> None:
        while not stop.wait(every_s):
            tick()

    report(logfmt(stage=stage, event="start"))
    thread = threading.Thread(target=loop, name=f"progress-{stage}", daemon=True)
    thread.start()
    try:
        yield
    except BaseException:
        report(logfmt(stage=stage, event="failed", elapsed_s=time.monotonic() - start))
        raise
    finally:
        stop.set()
        thread.join()
    tick()
    report(logfmt(stage=stage, event="done", elapsed_s=time.monotonic() - start))
