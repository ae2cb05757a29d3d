"""The speed and memory benchmark: `make bench` (or `python -m bench.run [--smoke]`).

Generates its own images on the local S3 server, measures in one run on this machine:
- the model-alone ceiling (one process per core, one TensorFlow thread each), plus XLA,
  oneDNN off and one process with two threads;
- the pipeline, S3 bytes -> 1280 features in Parquet on S3 (spark.pipeline.extract_features:
  the workers GET each manifest entry, local[2]), for Fruits-360-size and phone-size photos,
  and its ratio to the ceiling;
- the common public pattern (labelled BASELINE below) on the same images, read with Spark's
  binaryFile source;
- counted loads (model builds per worker, weight reads, worker downloads), memory (peak RSS
  per Python worker, peak RSS of the whole run), decode cost of phone photos;
- tuning variants (Arrow batch, TensorFlow threads, concurrent fetches per worker, engine);
- PCA fit time against rows, and against featurizing as many images;
- with --e2e-dates, the Dagster materialization of the sample dates and the start-up cost.

Prints a table and writes bench/results.json. Figures, not pass/fail: no timed test uses them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bootstrap.buckets import ensure_pipeline_bucket
from bootstrap.fruit_images import LABELS, encode_jpeg, render_fruit
from bootstrap.local_s3 import from_settings
from bootstrap.sample_data import SampleFile, upload
from spark import model as model_module
from spark.decode import decode_image
from spark.fetch import ImageSource
from spark.layout import Layout
from spark.manifest import write_manifests
from spark.model import ModelWeights, build_mobilenet, load_weights
from spark.pipeline import extract_features
from spark.settings import PROJECT_ROOT, Settings
from spark.storage import list_keys, s3_client

RESULTS = PROJECT_ROOT / "bench" / "results.json"
SMALL_DATE, PHONE_DATE, BASELINE_DATE = "2026-10-01", "2026-10-02", "2026-10-03"


# --- data ------------------------------------------------------------------------------------
def bench_files(date: str, count: int, size: tuple[int, int], seed: int) -> Iterator[SampleFile]:
    rng = np.random.default_rng(seed)
    for n in range(count):
        label = LABELS[n % len(LABELS)]
        yield SampleFile(date, label, f"b_{n:05d}.jpg", encode_jpeg(render_fruit(label, rng, size)))


# --- model alone -----------------------------------------------------------------------------
def model_alone(
    processes: int,
    threads: int,
    images: int,
    engine: str = "tflite",
    jit: bool = False,
    onednn: bool = True,
) -> float:
    """Images per second of `processes` concurrent model-only processes, started together."""
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="1" if onednn else "0")
    command = [sys.executable, "-m", "bench.model_alone", "--threads", str(threads),
               "--images", str(images), "--engine", engine]  # fmt: skip
    workers = [
        subprocess.Popen(
            command + (["--jit"] if jit else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for _ in range(processes)
    ]
    try:
        for worker in workers:
            assert worker.stdout and worker.stdout.readline().strip() == "ready"
        for worker in workers:
            assert worker.stdin
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = [json.loads(w.stdout.readline()) for w in workers if w.stdout]
    finally:
        for worker in workers:
            worker.wait(timeout=120)
    return sum(r["images"] / r["seconds"] for r in results)


# --- memory of the whole run -----------------------------------------------------------------
class TreeMemory:
    """Samples the summed RSS of this process and all its descendants (JVM, Python workers)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.peak_mb, self._stop = interval, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _children() -> dict[int, list[int]]:
        tree: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                tree.setdefault(ppid, []).append(int(entry.name))
        return tree

    def sample(self) -> float:
        tree, total, todo = self._children(), 0, [os.getpid()]
        while todo:
            pid = todo.pop()
            todo += tree.get(pid, [])
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self.sample())

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- pipeline and baseline -------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def pipeline(
    spark: Any,
    layout: Layout,
    s3: Any,
    date: str,
    weights: ModelWeights,
    images: int,
    source: ImageSource,
    tf_threads: int = 1,
    arrow_batch: int = 64,
    engine: str = "tflite",
) -> dict[str, Any]:
    """extract_features on one date whose manifest is written (not timed here)."""
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(arrow_batch))
    run, seconds = timed(
        lambda: extract_features(
            spark, layout, s3, [date], weights, source=source, tf_threads=tf_threads, engine=engine
        )
    )
    assert run.features_per_date[date] == images, run.features_per_date
    return {
        "ips": images / seconds,
        "seconds": seconds,
        "builds": run.model_builds,
        "worker_peak_rss_mb": run.worker_peak_rss_mb,
    }


def read_images(spark: Any, layout: Layout, date: str) -> Any:
    """BASELINE's reader, as the public pattern reads images: Spark's binaryFile source over
    the date's raw folder (a listing, then every file's bytes in the JVM); path and content."""
    return (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .load(layout.raw_date_uri(date))
        .select("path", "content")
    )


def baseline(spark: Any, layout: Layout, date: str, weights: ModelWeights, images: int) -> float:
    """BASELINE - the common public pattern, written from its description: an iterator pandas
    UDF that builds the model again in every task, over repartition(24), with Spark's default
    Arrow batch (10,000 rows), the images read by binaryFile. Not the project's code path."""
    from pyspark.sql import functions as F

    arrays = spark.sparkContext.broadcast(weights.arrays)
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")

    @F.pandas_udf("array<float>")
    def rebuild_per_task(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        model = build_mobilenet(None)
        model.set_weights(arrays.value)
        for contents in batches:
            tensors = np.stack([decode_image(c) for c in contents])
            yield pd.Series(list(model.predict(tensors, batch_size=64, verbose=0)))

    images_df = read_images(spark, layout, date).repartition(24)
    out = layout.uri("baseline_features")
    _, seconds = timed(
        lambda: (
            images_df.select("path", rebuild_per_task("content").alias("f"))
            .write.mode("overwrite")
            .parquet(out)
        )
    )
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "64")
    return images / seconds


# --- decode, PCA, end to end -------------------------------------------------------------------
def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def s3_server_cpu_ms_per_get(settings: Settings, layout: Layout, date: str) -> float | None:
    """CPU the local S3 server spends serving one small object: it shares the 2 cores."""
    pid = from_settings(settings).pid() if settings.s3_endpoint else None
    if pid is None:
        return None  # not ours to measure (AWS S3, or a server started elsewhere)
    client = s3_client(settings)
    keys = list_keys(client, settings.bucket, layout.raw_date_key(date))
    before = cpu_s(pid)
    for key in keys:
        client.get_object(Bucket=settings.bucket, Key=key)["Body"].read()
    return 1000 * (cpu_s(pid) - before) / len(keys)


def decode_ms(files: list[SampleFile]) -> float:
    _, seconds = timed(lambda: [decode_image(f.body, f.name) for f in files])
    return 1000 * seconds / len(files)


def random_features(spark: Any, rows: int, seed: int = 0) -> Any:
    """`rows` random 1280-d vectors, generated in the workers (no driver memory needed)."""
    from pyspark.ml.functions import array_to_vector

    def generate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            rng = np.random.default_rng(seed + int(batch["id"].iloc[0]))
            values = rng.standard_normal((len(batch), 1280)).astype(np.float32)
            yield pd.DataFrame({"features": list(values)})

    ids = spark.range(rows, numPartitions=8)
    arrays = ids.mapInPandas(generate, "features array<float>")
    return arrays.select(array_to_vector("features").alias("v"))


def pca_scaling(spark: Any, rows_list: list[int]) -> dict[int, float]:
    """Fit time of PCA(k=100) on random 1280-d features, by number of rows (cached on disk)."""
    from pyspark import StorageLevel
    from pyspark.ml.feature import PCA

    times: dict[int, float] = {}
    for rows in rows_list:
        features = random_features(spark, rows).persist(StorageLevel.DISK_ONLY)
        features.count()
        _, times[rows] = timed(lambda f=features: PCA(k=100, inputCol="v").fit(f))
        features.unpersist()
    return times


def end_to_end(settings: Settings, dates: list[str]) -> dict[str, float]:
    """The demo's path: the sample dates in one Dagster run through the CLI, and its start-up."""
    from bootstrap.dagster_home import prepare_dagster_home
    from bootstrap.demo import materialize_command
    from bootstrap.sample_data import synthetic_files

    upload(synthetic_files(dates, 60, 2, seed=7), settings)
    home = prepare_dagster_home(PROJECT_ROOT / ".fruits" / "bench_dagster_home")
    env = dict(os.environ, DAGSTER_HOME=str(home), FRUITS_PREFIX=settings.prefix)

    def cli(select: str) -> float:
        command = materialize_command(dates, select)
        return timed(lambda: subprocess.run(command, env=env, check=True, capture_output=True))[1]

    total = cli("*")
    dagster_only = cli("raw_images")  # Dagster start + listing S3, no Spark
    startup_code = (
        "from spark.session import build_session; from spark.settings import Settings;"
        "s = build_session(Settings.load()); s.range(1).count(); import tensorflow; s.stop()"
    )
    spark_tf = timed(
        lambda: subprocess.run(
            [sys.executable, "-c", startup_code], env=env, check=True, capture_output=True
        )
    )[1]
    return {"e2e_s": total, "dagster_startup_s": dagster_only, "spark_and_tf_startup_s": spark_tf}


def memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


# --- the run ---------------------------------------------------------------------------------
def run(smoke: bool, e2e: bool) -> dict[str, Any]:
    small_n, phone_n, ceiling_n = (24, 4, 64) if smoke else (500, 60, 384)
    pca_rows = [2_000] if smoke else [10_000, 30_000, 100_000]
    base = Settings.load()
    settings = replace(base, prefix=f"bench-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}")
    if settings.s3_endpoint and not from_settings(settings).responds():
        from_settings(settings).start()  # else: one is already up (demo, UI or tests)
    ensure_pipeline_bucket(settings)
    layout = Layout(settings.bucket, settings.prefix)
    small = list(bench_files(SMALL_DATE, small_n, (100, 100), 1))
    phone = list(bench_files(PHONE_DATE, phone_n, (1280, 960), 2))
    upload(small + phone + [replace(f, date=BASELINE_DATE) for f in small], settings)
    s3 = s3_client(settings)
    write_manifests(s3, layout, [SMALL_DATE, PHONE_DATE])  # what raw_images does
    source = ImageSource.of(settings)
    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, {memory_gib():.0f} GiB",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "smoke": smoke,
        "images": {"small": small_n, "phone": phone_n},
    }

    print("model alone ...", flush=True)
    results["ceiling_ips"] = model_alone(2, 1, ceiling_n)
    if not smoke:
        results["ceiling_variants_ips"] = {
            "keras": model_alone(2, 1, ceiling_n, engine="keras"),
            "keras_xla_jit_compile": model_alone(2, 1, ceiling_n, engine="keras", jit=True),
            "keras_onednn_off": model_alone(2, 1, ceiling_n, engine="keras", onednn=False),
            "tflite_one_process_two_threads": model_alone(1, 2, ceiling_n),
        }

    from spark.session import build_session

    os.environ["KERAS_HOME"] = keras_home = str(PROJECT_ROOT / ".fruits" / "bench_keras_home")
    spark = build_session(settings, "fruits-bench")
    try:
        model_module.WEIGHT_READS = 0
        weights = load_weights("random", 42)
        with TreeMemory() as memory:
            print("pipeline ...", flush=True)
            # The first run warms the JVM, the Python workers and their model.
            warm = pipeline(spark, layout, s3, SMALL_DATE, weights, small_n, source)
            main = pipeline(spark, layout, s3, SMALL_DATE, weights, small_n, source)
            phone_run = pipeline(spark, layout, s3, PHONE_DATE, weights, phone_n, source)
        builds = warm["builds"] + main["builds"] + phone_run["builds"]
        results |= {
            "pipeline_ips": main["ips"],
            "featurize_s_per_image": 1 / main["ips"],
            "phone_pipeline_ips": phone_run["ips"],
            # local[2]: two Python workers, reused by every task of the three runs
            "model_builds_per_worker": builds / 2,
            "weight_reads": model_module.WEIGHT_READS,
            "worker_downloads": sum(1 for _ in Path(keras_home).rglob("*.h5")),
            "worker_peak_rss_mb": max(main["worker_peak_rss_mb"], phone_run["worker_peak_rss_mb"]),
            "run_peak_rss_mb": memory.peak_mb,
        }
        results["ratio_to_ceiling"] = results["pipeline_ips"] / results["ceiling_ips"]
        results["phone_ratio_to_ceiling"] = results["phone_pipeline_ips"] / results["ceiling_ips"]
        model_ms = 1000 * 2 / results["ceiling_ips"]  # two processes share the ceiling
        results["decode_ms_phone"] = decode_ms(phone)
        results["decode_ms_small"] = decode_ms(small)
        results["model_ms_per_image"] = model_ms
        results["decode_share_phone"] = results["decode_ms_phone"] / model_ms
        # At the target ratio, each image may cost this much CPU beyond the model, in all.
        results["cpu_ms_left_per_image_at_target"] = 1000 * 2 / (0.9 * results["ceiling_ips"])
        results["cpu_ms_left_per_image_at_target"] -= model_ms
        if (get_ms := s3_server_cpu_ms_per_get(settings, layout, SMALL_DATE)) is not None:
            results["s3_server_cpu_ms_per_get"] = get_ms

        print("baseline ...", flush=True)
        results["baseline_ips"] = baseline(spark, layout, BASELINE_DATE, weights, small_n)
        results["speedup_vs_baseline"] = results["pipeline_ips"] / results["baseline_ips"]

        if not smoke:
            print("variants ...", flush=True)
            variants = {
                "arrow_batch_32": {"arrow_batch": 32},
                "arrow_batch_128": {"arrow_batch": 128},
                "tf_threads_2": {"tf_threads": 2},
                "fetch_threads_4": {"source": replace(source, concurrency=4)},
                "engine_keras": {"engine": "keras"},
            }
            results["variants_ips"] = {
                name: pipeline(
                    spark, layout, s3, SMALL_DATE, weights, small_n, **({"source": source} | kw)
                )["ips"]
                for name, kw in variants.items()
            }

        print("PCA ...", flush=True)
        results["pca_fit_s_by_rows"] = pca_scaling(spark, pca_rows)
        largest = max(pca_rows)
        results["pca_rows"] = largest
        results["pca_fit_s"] = results["pca_fit_s_by_rows"][largest]
        results["featurize_s"] = largest / results["pipeline_ips"]
        results["pca_share_of_featurize"] = results["pca_fit_s"] / results["featurize_s"]
    finally:
        spark.stop()
    if e2e:
        print("end to end ...", flush=True)
        results |= end_to_end(settings, ["2026-11-20", "2026-11-21", "2026-11-22"])
    return results


TABLE = [
    ("model-alone ceiling (LiteRT), 2 processes x 1 thread", "ceiling_ips", "{:.1f} img/s"),
    ("pipeline, 100x100 JPEG, S3 -> Parquet on S3", "pipeline_ips", "{:.1f} img/s"),
    ("  ratio to ceiling (target >= 0.90)", "ratio_to_ceiling", "{:.2f}"),
    ("pipeline, 1280x960 JPEG", "phone_pipeline_ips", "{:.1f} img/s"),
    ("  ratio to ceiling", "phone_ratio_to_ceiling", "{:.2f}"),
    (
        "  CPU per image left beyond the model at 0.90, ms",
        "cpu_ms_left_per_image_at_target",
        "{:.2f}",
    ),
    ("  local S3 server CPU per GET, ms", "s3_server_cpu_ms_per_get", "{:.2f}"),
    ("  decode 100x100, ms/img", "decode_ms_small", "{:.2f}"),
    ("BASELINE common pattern", "baseline_ips", "{:.1f} img/s"),
    ("  speedup (target >= 3)", "speedup_vs_baseline", "{:.2f}x"),
    ("model builds per Python worker (<= 1)", "model_builds_per_worker", "{:.1f}"),
    ("weight reads on the driver (1)", "weight_reads", "{}"),
    ("downloads by workers (0)", "worker_downloads", "{}"),
    ("decode 1280x960, ms/img", "decode_ms_phone", "{:.2f}"),
    ("  share of model time (target <= 0.25)", "decode_share_phone", "{:.2f}"),
    ("peak RSS per Python worker, MB (<= 1536)", "worker_peak_rss_mb", "{:.0f}"),
    ("peak RSS of the whole run, MB (<= 6144)", "run_peak_rss_mb", "{:.0f}"),
    ("PCA fit, s", "pca_fit_s", "{:.1f}"),
    ("featurizing as many images, s", "featurize_s", "{:.1f}"),
    ("  PCA share (target < 0.10)", "pca_share_of_featurize", "{:.3f}"),
    ("end to end through Dagster, 3 dates, s", "e2e_s", "{:.1f}"),
    ("  Dagster start-up (raw_images only), s", "dagster_startup_s", "{:.1f}"),
    ("  Spark + TensorFlow start-up, s", "spark_and_tf_startup_s", "{:.1f}"),
]


def print_table(results: dict[str, Any]) -> None:
    print(f"\nFruits! benchmark, {results['machine']}, {results['date']}")
    for label, key, fmt in TABLE:
        if key in results:
            print(f"  {label:48} {fmt.format(results[key])}")
    for group in ("ceiling_variants_ips", "variants_ips", "pca_fit_s_by_rows"):
        for name, value in results.get(group, {}).items():
            print(f"  {group}: {name:32} {value:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: shows it works (CI)")
    parser.add_argument("--no-e2e", action="store_true", help="skip the Dagster end-to-end run")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = run(args.smoke, e2e=not args.no_e2e)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str))
    print_table(results)
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
