"""Soak: 5,000 images over 10 upload dates, one date after another, as a daily backfill runs.

Every image is accounted for, and memory stays flat from the first date to the last: the
driver's Python, the JVM's heap after a full GC, the largest Python worker's RSS after each
date, and their peak RSS.
The figures are printed, in `make test`'s output too.
"""

import datetime as dt

import psutil
import pytest

from spark.pipeline import read_features

pytestmark = pytest.mark.slow
DATES = [(dt.date(2026, 4, 1) + dt.timedelta(days=n)).isoformat() for n in range(10)]
PER_DATE = 500


def rss_mb(pid: int | None = None) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def python_workers(tree) -> list[int]:
    """The Python workers (children of pyspark.daemon) alive now."""
    daemons = {p.pid for p in tree if "pyspark.daemon" in p.cmdline}
    return [p.pid for p in tree if p.parent in daemons]


def workers_rss_mb(workers: list[int]) -> float:
    """What the largest Python worker holds now. Not their sum: how many idle workers Spark
    keeps (one kind per UDF kind, dropped after an idle minute) depends on timing (printed
    per date); a leak shows in a worker's own RSS."""
    return max((rss_mb(pid) for pid in workers), default=0.0)


def jvm_heap_after_gc_mb(spark) -> float:
    runtime = spark.sparkContext._jvm.java.lang.Runtime.getRuntime()
    spark.sparkContext._jvm.java.lang.System.gc()
    return (runtime.totalMemory() - runtime.freeMemory()) / 2**20


def test_soak_5000_images_over_10_dates(
    spark, fresh_layout, upload_sample, weights, process_tree, capsys, extract
) -> None:
    uploaded = upload_sample(fresh_layout, DATES, per_date=PER_DATE)
    assert sum(uploaded.values()) >= 5000
    [java] = [p.pid for p in process_tree() if p.exe.endswith("/java")]
    figures = []
    for date in DATES:
        run = extract(fresh_layout, [date], weights)
        workers = python_workers(process_tree())
        assert run.features_per_date[date] + run.rejects_per_date[date] == uploaded[date]
        figures.append(
            {
                "date": date,
                "images": uploaded[date],
                "driver_python_rss_mb": round(rss_mb(), 1),
                "driver_jvm_rss_mb": round(rss_mb(java), 1),
                "jvm_heap_after_gc_mb": round(jvm_heap_after_gc_mb(spark), 1),
                "python_workers": len(workers),
                "workers_rss_mb": round(workers_rss_mb(workers), 1),
                # ru_maxrss: each worker's peak since it started, earlier tests included
                "worker_peak_rss_mb": run.worker_peak_rss_mb,
            }
        )
    with capsys.disabled():  # printed in every run, `make test` included
        print("\nsoak: memory after each upload date")
        for row in figures:
            print("  " + "  ".join(f"{k}={v}" for k, v in row.items()))

    paths = [r.path for r in read_features(spark, fresh_layout, DATES).select("path").collect()]
    assert len(paths) == len(set(paths))

    first, last = figures[0], figures[-1]
    # Flat: what the last date holds is within a small margin of what the first one did.
    assert last["driver_python_rss_mb"] <= first["driver_python_rss_mb"] + 100
    assert last["jvm_heap_after_gc_mb"] <= first["jvm_heap_after_gc_mb"] * 1.5 + 64
    assert last["workers_rss_mb"] <= first["workers_rss_mb"] + 150
    assert last["worker_peak_rss_mb"] <= first["worker_peak_rss_mb"] + 100
    assert max(f["worker_peak_rss_mb"] for f in figures) < 1536
