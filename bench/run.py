"""The speed and memory benchmark: `make bench` (or `python -m bench.run [--smoke]`).

Generates its own images on the local S3 server and measures, in one run on this machine,
each target of issue 15 as a ratio, met or not met:
1. S3 requests per image in the feature step, by type, counted by a latency proxy in front of
   the local S3 server (bench.proxy), where the requests happen;
2. throughput with 30 ms and 100 ms added to every S3 request, against the same run without;
3. the pipeline's CPU per image (driver, JVM, Python workers, from the OS: bench.measure)
   against decode + model alone on the same bytes in memory (2 processes, same engine), and
   its throughput against theirs and against the same reading each image from the same S3
   server (each ceiling measured right before and right after the run); the S3 server's and
   the proxy's CPU apart;
4. the speedup over the common public pattern (BASELINE below) on the same images, both
   warmed up the same way;
5. the same figures for 1280x960 phone photos, and their decode with Pillow against
   libjpeg-turbo's DCT-domain scaling (simplejpeg);
6. memory: each Python worker's peak RSS and the whole run's, sampled per run; and per
   workload, each in a Spark session of its own (bench.workload_memory), after the others.
Also the tf_threads_2 variant, PCA fit time against rows and, unless --no-e2e, the Dagster
materialization of the sample dates; then, unless --no-scale, the scale benchmark on synthetic
feature rows (bench.scale: sensor requests per tick, refit, reduce, files per date, a 365-date
backfill), in a process of its own, merged into the same results. Every timed window lasts at
least --window-s seconds (30 by default; the counts are sized for that on 2 cores, and each
window's length is kept).

Prints the figures and the targets, writes bench/results.json; `python -m bench.report`
then rewrites docs/performance.md from it. Figures, not pass/fail tests.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import floors
from bench.measure import DRIVER, JVM, WORKERS, Roles, Window, listening_pid
from bench.proxy import LatencyProxy
from bench.targets import (
    POINTER_DESIGN_BENCH_DATE,
    POINTER_DESIGN_FIXED_REQUESTS,
    RESULTS,
    TARGETS,
    verdicts,
)
from bootstrap import cli
from bootstrap.aws.buckets import ensure_pipeline_bucket
from bootstrap.local import local_catalog
from bootstrap.local.local_s3 import from_settings
from bootstrap.sample.fruit_images import LABELS, encode_jpeg, render_fruit
from bootstrap.sample.sample_data import SampleFile, upload
from fruits_assets.deployments import current_settings
from spark.decode import INPUT_SIZE, decode_image, preprocess
from spark.fetch import ImageSource
from spark.layout import Layout
from spark.manifest import write_manifests
from spark.model import ModelWeights, build_mobilenet, load_weights, tflite_flatbuffer
from spark.pipeline import extract_features
from spark.settings import PROJECT_ROOT, Settings
from spark.storage import s3_client

SMALL_DATE, PHONE_DATE, WARM_DATE = "2026-10-01", "2026-10-02", "2026-10-03"
SMALL, PHONE = (100, 100), (1280, 960)
DELAYS_MS = (30, 100)


@dataclass(frozen=True)
class Sizes:
    small: int  # 100x100 images: targets 1-4 and 6
    phone: int  # 1280x960 photos: target 5
    warmup: int  # images of the warm-up run that both the pipeline and the baseline get
    window_s: float  # the shortest timed window wanted (the ceiling's length)
    baseline_tasks: int = 24  # the public pattern's repartition(24); fewer in the smoke run


# Enough images that each timed run lasts long past its start-up on a 2-core machine (the
# rates each run reached: bench/results.json).
FULL = Sizes(small=10_000, phone=10_000, warmup=512, window_s=30)
SMOKE = Sizes(small=48, phone=8, warmup=16, window_s=2, baseline_tasks=2)


# --- data ------------------------------------------------------------------------------------
def bench_files(
    date: str, count: int, size: tuple[int, int], seed: int, unique: int
) -> Iterator[SampleFile]:
    """`count` images, of which `unique` are drawn (rendering phone photos is slow); the
    others repeat their bytes under keys of their own."""
    rng = np.random.default_rng(seed)
    bodies = [encode_jpeg(render_fruit(LABELS[n % len(LABELS)], rng, size)) for n in range(unique)]
    for n in range(count):
        yield SampleFile(date, LABELS[n % len(LABELS)], f"b_{n:05d}.jpg", bodies[n % unique])


# --- decode + model alone --------------------------------------------------------------------
@dataclass(frozen=True)
class S3Images:
    """Images for the ceiling to read from S3: the endpoint (the pipeline's, through the
    proxy), the bucket and their keys."""

    endpoint: str
    region: str
    bucket: str
    keys: list[str]
    etags: list[str]

    @property
    def paths(self) -> list[str]:
        return [f"s3://{self.bucket}/{key}" for key in self.keys]


def model_alone(
    model: bytes,
    *,
    processes: int,
    seconds: float,
    contents: list[bytes] | None = None,
    s3: S3Images | None = None,
) -> dict[str, float]:
    """`processes` concurrent processes of decode + model (or model alone on ready tensors,
    without `contents`; on bytes read from S3 with `s3`), one thread each, started together:
    images/s in all, CPU ms/image."""
    with tempfile.TemporaryDirectory() as scratch:
        model_file, images_file = Path(scratch, "model.tflite"), Path(scratch, "images.pickle")
        model_file.write_bytes(model)
        images_file.write_bytes(pickle.dumps(contents or []))
        command = [sys.executable, "-m", "bench.model_alone", "--model", str(model_file),
                   "--seconds", str(seconds), "--images-file", str(images_file)]  # fmt: skip
        if s3:
            keys_file = Path(scratch, "keys.json")
            keys_file.write_text(json.dumps(s3.keys))
            command += ["--s3-endpoint", s3.endpoint, "--region", s3.region,
                        "--bucket", s3.bucket, "--keys-file", str(keys_file)]  # fmt: skip
        workers = [
            subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )  # fmt: skip
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
    images = sum(r["images"] for r in results)
    return {
        "ips": sum(r["images"] / r["seconds"] for r in results),
        "cpu_ms_per_image": 1000 * sum(r["cpu_s"] for r in results) / images,
        "seconds": min(r["seconds"] for r in results),
    }


@dataclass
class Ceilings:
    """A workload's decode + model ceilings, on its bytes in memory and read from S3, measured
    right before and right after the pipeline's run: this machine's speed drifts by more than
    the targets' margins within minutes, and the run is judged against its own minutes."""

    model: bytes
    seconds: float
    contents: list[bytes]
    s3: S3Images
    windows: list[dict[str, dict[str, float]]] = field(default_factory=list)

    def measure(self) -> None:
        window = partial(model_alone, self.model, processes=2, seconds=self.seconds)
        self.windows.append({"memory": window(contents=self.contents), "s3": window(s3=self.s3)})

    def around(self, run: Callable[[], object], warm: Callable[[], object]) -> Any:
        """`run` between two windows; `warm` first, after the window before: Spark stops the
        Python workers (and their models) that sat idle for a minute."""
        print("decode + model alone, before ...", flush=True)
        self.measure()
        warm()
        figures = run()
        print("decode + model alone, after ...", flush=True)
        self.measure()
        return figures

    def ips(self, kind: str) -> list[float]:
        return [w[kind]["ips"] for w in self.windows]

    def mean(self, kind: str) -> dict[str, float]:
        each = [w[kind] for w in self.windows]
        return {
            "ips": statistics.fmean(e["ips"] for e in each),
            "cpu_ms_per_image": statistics.fmean(e["cpu_ms_per_image"] for e in each),
            "seconds": min(e["seconds"] for e in each),
        }


# --- pipeline and baseline -------------------------------------------------------------------
@dataclass
class Bench:
    """What every measured run shares: Spark, the layout, the proxy, the processes' roles."""

    spark: Any
    layout: Layout
    s3: Any
    weights: ModelWeights
    source: ImageSource
    proxy: LatencyProxy
    roles: Roles

    def measured(self, images: int, work: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
        """Runs `work` in a timed window; throughput, CPU and requests per image, memory."""
        self.proxy.reset()
        with Window(self.roles) as window:
            result = work()
        counts = self.proxy.counts()
        cpu_ms = {role: 1000 * s / images for role, s in window.cpu_s.items()}
        return result, {
            "images": images,
            "seconds": window.seconds,
            "ips": images / window.seconds,
            "requests_per_image": sum(counts.values()) / images,
            "requests_by_type": counts,
            "cpu_ms_per_image_by_role": cpu_ms,
            "pipeline_cpu_ms_per_image": sum(cpu_ms.get(r, 0.0) for r in (DRIVER, JVM, WORKERS)),
            "worker_peak_rss_mb": window.worker_peak_rss_mb,
            "run_peak_rss_mb": window.run_peak_rss_mb,
            "python_workers": len(window.workers_seen),
        }

    def pipeline(self, date: str, images: int, **options: Any) -> dict[str, Any]:
        """extract_features on one date whose manifest is written (not timed here)."""
        source = options.pop("source", self.source)
        run, figures = self.measured(
            images,
            # The manifest's count, as the asset passes it: the same task split as a Dagster run.
            lambda: extract_features(
                self.spark,
                self.layout,
                self.s3,
                [date],
                self.weights,
                source=source,
                expected={date: images},
                **options,
            ),  # fmt: skip
        )
        assert run.features_per_date[date] == images, run.features_per_date
        return figures | {"model_builds": run.model_builds}

    def baseline(self, date: str, images: int, tasks: int) -> dict[str, Any]:
        work = lambda: baseline(self.spark, self.layout, date, self.weights, tasks=tasks)  # noqa: E731
        return self.measured(images, work)[1]


def read_images(spark: Any, layout: Layout, date: str) -> Any:
    """BASELINE's reader, as the public pattern reads images: Spark's binaryFile source over
    the date's raw folder (a listing, then every file's bytes in the JVM); path and content."""
    return (
        spark.read.format("binaryFile")
        .option("recursiveFileLookup", "true")
        .load(layout.raw_date_uri(date))
        .select("path", "content")
    )


def baseline(spark: Any, layout: Layout, date: str, weights: ModelWeights, *, tasks: int) -> None:
    """BASELINE - the common public pattern, written from its description: an iterator pandas
    UDF that builds the model again in every task from broadcast weights and runs Keras'
    predict, over repartition(tasks), with Spark's default Arrow batch (10,000 rows), the images
    read by binaryFile. Not the project's code path."""
    from pyspark.sql import functions as F

    arrays = spark.sparkContext.broadcast(weights.arrays)

    @F.pandas_udf("array<float>")
    def rebuild_per_task(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        model = build_mobilenet(None)
        model.set_weights(arrays.value)
        for contents in batches:
            tensors = np.stack([decode_image(c) for c in contents])
            yield pd.Series(list(model.predict(tensors, batch_size=64, verbose=0)))

    configured = spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
    try:
        images_df = read_images(spark, layout, date).repartition(tasks)
        images_df.select("path", rebuild_per_task("content").alias("f")).write.mode(
            "overwrite"
        ).parquet(layout.uri("baseline_features"))
    finally:
        spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", configured)


# --- decode, PCA, end to end -------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def decode_simplejpeg(content: bytes) -> np.ndarray:
    """The trial: libjpeg-turbo scales in the DCT domain to the smallest size >= 224 px, as
    Pillow's draft mode does, then the same resize and preprocessing."""
    import simplejpeg
    from PIL import Image

    rgb = simplejpeg.decode_jpeg(
        content, colorspace="RGB", min_height=INPUT_SIZE, min_width=INPUT_SIZE
    )
    resized = Image.fromarray(rgb).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    return preprocess(np.asarray(resized))


def decode_ms(contents: list[bytes], decode: Callable[[bytes], np.ndarray]) -> float:
    started = time.process_time()
    for content in contents:
        decode(content)
    return 1000 * (time.process_time() - started) / len(contents)


def decode_trial(contents: list[bytes]) -> dict[str, float]:
    """Pillow (the pipeline's decoder) against simplejpeg on the same phone photos."""
    difference = max(float(np.abs(decode_image(c) - decode_simplejpeg(c)).max()) for c in contents)
    return {
        "decode_ms_phone": decode_ms(contents, decode_image),
        "decode_ms_phone_simplejpeg": decode_ms(contents, decode_simplejpeg),
        "simplejpeg_max_abs_difference": difference,
    }


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
    from bootstrap.local.dagster_home import prepare_dagster_home
    from bootstrap.sample.demo import launch_command
    from bootstrap.sample.sample_data import synthetic_files
    from fruits_assets.names import RAW_IMAGES

    upload(synthetic_files(dates, 60, 2, seed=7), settings)
    home = prepare_dagster_home(PROJECT_ROOT / ".fruits" / "bench_dagster_home")
    env = dict(os.environ, DAGSTER_HOME=str(home), FRUITS_PREFIX=settings.prefix)

    def cli(select: str) -> float:
        command = launch_command(dates, select)
        return timed(lambda: subprocess.run(command, env=env, check=True, capture_output=True))[1]

    total = cli("*")
    dagster_only = cli(RAW_IMAGES.to_user_string())  # Dagster start + listing S3, no Spark
    startup_code = (
        "from spark.session import build_session;"
        "from fruits_assets.deployments import current_settings;"
        "s = build_session(current_settings()); s.range(1).count(); import tensorflow; s.stop()"
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
def start_servers(settings: Settings) -> tuple[LatencyProxy, Roles, Callable[[], None]]:
    """The local S3 server and catalog (unless they are up) and the latency proxy in front of
    S3; and what stops those this run started."""
    assert settings.s3_endpoint, "the benchmark runs against the local S3 server"
    server, catalog = from_settings(settings), local_catalog.from_uri(settings.catalog_uri)
    started = [s for s in (server, catalog) if not s.responds()]
    for each in started:
        each.start()
    proxy = LatencyProxy(settings.s3_endpoint)

    def stop() -> None:
        proxy.stop()
        for each in started:
            each.stop()

    apart = {"proxy": proxy.pid}
    if (pid := listening_pid(server.port)) is not None:
        apart["s3_server"] = pid
    return proxy, Roles(apart), stop


def prepare(settings: Settings, sizes: Sizes) -> dict[str, list[bytes]]:
    """Images on S3 and their manifests; returns the unique bytes, for the ceilings."""
    small = list(bench_files(SMALL_DATE, sizes.small, SMALL, 1, min(sizes.small, 1000)))
    phone = list(bench_files(PHONE_DATE, sizes.phone, PHONE, 2, min(sizes.phone, 100)))
    warm = [replace(f, date=WARM_DATE) for f in small[: sizes.warmup]]
    upload(small + phone + warm, settings, threads=16)
    layout = Layout.of(settings)
    write_manifests(s3_client(settings), layout, [SMALL_DATE, PHONE_DATE, WARM_DATE])
    unique = {f.body: None for f in small}, {f.body: None for f in phone}
    return {"small": list(unique[0]), "phone": list(unique[1])}


def workload_memory(settings: Settings, date: str, images: int) -> dict[str, float]:
    """bench.workload_memory: one workload's peak RSS in a Spark session of its own."""
    env = dict(os.environ, FRUITS_PREFIX=settings.prefix, FRUITS_NAMESPACE=settings.namespace)
    command = [sys.executable, "-m", "bench.workload_memory", "--date", date,
               "--images", str(images)]  # fmt: skip
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def s3_images(settings: Settings, layout: Layout, date: str) -> S3Images:
    """The bench's images of `date`, for a ceiling that reads them from S3."""
    pages = s3_client(settings).get_paginator("list_objects_v2")
    listed = pages.paginate(Bucket=layout.bucket, Prefix=layout.raw_date_key(date))
    objects = [obj for page in listed for obj in page.get("Contents", [])]
    assert settings.s3_endpoint, "the benchmark runs against the local S3 server"
    keys = [obj["Key"] for obj in objects]
    etags = [obj["ETag"].strip('"') for obj in objects]
    return S3Images(settings.s3_endpoint, settings.region, layout.bucket, keys, etags)


def workload(prefix: str, run: dict[str, Any], ceilings: Ceilings) -> dict[str, Any]:
    """One workload's figures (100x100 images, or phone photos with prefix "phone_"): the
    pipeline's run against decode + model alone on the same bytes, in memory and read from
    the same S3 server (each the mean of its windows before and after the run, both kept)."""
    keys = ("ips", "seconds", "requests_per_image", "requests_by_type", "cpu_ms_per_image_by_role",
            "pipeline_cpu_ms_per_image", "worker_peak_rss_mb", "run_peak_rss_mb")  # fmt: skip
    by_role = run["cpu_ms_per_image_by_role"]
    ceiling, s3_ceiling = ceilings.mean("memory"), ceilings.mean("s3")
    return {f"{prefix}{k}": run[k] for k in keys} | {
        f"{prefix}decode_model_ceiling_ips_before_after": ceilings.ips("memory"),
        f"{prefix}decode_model_s3_ceiling_ips_before_after": ceilings.ips("s3"),
        f"{prefix}pipeline_ips": run["ips"],
        f"{prefix}decode_model_ceiling_ips": ceiling["ips"],
        f"{prefix}decode_model_ceiling_window_s": ceiling["seconds"],
        f"{prefix}decode_model_cpu_ms_per_image": ceiling["cpu_ms_per_image"],
        f"{prefix}ratio_to_ceiling": run["ips"] / ceiling["ips"],
        f"{prefix}decode_model_s3_ceiling_ips": s3_ceiling["ips"],
        f"{prefix}decode_model_s3_cpu_ms_per_image": s3_ceiling["cpu_ms_per_image"],
        f"{prefix}ratio_to_s3_ceiling": run["ips"] / s3_ceiling["ips"],
        f"{prefix}cpu_ratio": run["pipeline_cpu_ms_per_image"] / ceiling["cpu_ms_per_image"],
        f"{prefix}s3_server_cpu_ms_per_image": by_role.get("s3_server"),
        f"{prefix}proxy_cpu_ms_per_image": by_role["proxy"],
    }


def floor_figures(
    spark_run: dict[str, Any], get_ms: dict[str, float], results: dict[str, Any]
) -> dict[str, Any]:
    """bench.floors against decode + model alone: the CPU ratio no design of the feature step
    can go under on this machine, for each workload (the Spark floor holds no image bytes)."""
    figures = {
        "floor_spark_cpu_ms_per_image": spark_run["pipeline_cpu_ms_per_image"],
        "floor_spark_cpu_ms_by_role": spark_run["cpu_ms_per_image_by_role"],
    }
    for prefix, get in get_ms.items():
        alone = results[f"{prefix}decode_model_cpu_ms_per_image"]
        floor_ms = alone + get + spark_run["pipeline_cpu_ms_per_image"]
        figures[f"{prefix}floor_get_cpu_ms_per_image"] = get
        figures[f"{prefix}floor_cpu_ratio"] = floor_ms / alone
        # Every core busy at the floors, the S3 server and proxy serving the workload's GETs:
        # the most images/s any design reaches here, against the ceiling read through S3.
        roles = results[f"{prefix}cpu_ms_per_image_by_role"]
        serving = roles.get("s3_server", 0.0) + roles["proxy"]
        most_ips = (os.cpu_count() or 1) * 1000 / (floor_ms + serving)
        figures[f"{prefix}floor_ratio_to_s3_ceiling"] = (
            most_ips / results[f"{prefix}decode_model_s3_ceiling_ips"]
        )
    return figures


def run(sizes: Sizes, smoke: bool, e2e: bool, pca: bool = True) -> dict[str, Any]:
    pca_rows = [10_000, 30_000, 100_000]
    base = current_settings()
    settings = replace(base, prefix=f"bench-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}")
    proxy, roles, stop_servers = start_servers(settings)
    try:
        return measure_all(settings, sizes, e2e, proxy, roles, pca_rows if pca else []) | {
            "smoke": smoke
        }
    finally:
        stop_servers()


def measure_all(
    settings: Settings,
    sizes: Sizes,
    e2e: bool,
    proxy: LatencyProxy,
    roles: Roles,
    pca_rows: list[int],
) -> dict[str, Any]:
    ensure_pipeline_bucket(settings)
    print("images ...", flush=True)
    contents = prepare(settings, sizes)
    results: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, {memory_gib():.0f} GiB",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "images": sizes.small,
        "phone_images": sizes.phone,
        "warmup_images": sizes.warmup,
    }
    weights = load_weights("random", 42)
    model = tflite_flatbuffer(weights.arrays)  # the pipeline's conversion, done once here
    # The ceilings read the images from the local S3 server through the proxy too, as the
    # pipeline's workers do.
    via_proxy = replace(settings, s3_endpoint=proxy.url)
    layout = Layout.of(settings)
    small_s3, phone_s3 = (s3_images(via_proxy, layout, d) for d in (SMALL_DATE, PHONE_DATE))
    small_ceilings = Ceilings(model, sizes.window_s, contents["small"], small_s3)
    phone_ceilings = Ceilings(model, sizes.window_s, contents["phone"], phone_s3)
    results |= decode_trial(contents["phone"][:50])
    results["decode_ms_small"] = decode_ms(contents["small"][:200], decode_image)

    from spark.session import build_session

    # Everything S3 goes through the proxy: the JVM's S3A, the driver's and workers' boto3.
    spark = build_session(via_proxy, "fruits-bench")
    try:
        source = ImageSource.of(via_proxy)
        bench = Bench(spark, layout, s3_client(via_proxy), weights, source, proxy, roles)
        print("pipeline ...", flush=True)
        warm = bench.pipeline(WARM_DATE, sizes.warmup)  # JVM, Python workers, their model
        rewarm = partial(bench.pipeline, WARM_DATE, sizes.warmup)  # the same, not counted
        main = small_ceilings.around(partial(bench.pipeline, SMALL_DATE, sizes.small), rewarm)
        rewarm()  # the window after the run outlasts the workers' idle minute too
        # Each delayed run is judged against the runs without the delay right before and
        # right after it: the machine's speed drifts between runs minutes apart by more than
        # target 2's margin.
        delayed, undelayed = {}, [main]
        for delay in DELAYS_MS:
            proxy.set_delay(delay)
            delayed[delay] = bench.pipeline(SMALL_DATE, sizes.small)
            proxy.set_delay(0)
            undelayed.append(bench.pipeline(SMALL_DATE, sizes.small))
        phone = phone_ceilings.around(partial(bench.pipeline, PHONE_DATE, sizes.phone), rewarm)
        print("floors ...", flush=True)
        floor_spark = bench.measured(
            sizes.small, lambda: floors.spark_floor(spark, layout, SMALL_DATE, sizes.small)
        )[1]
        floor_get = {
            prefix: floors.get_floor_ms(ImageSource.of(via_proxy), images.paths, images.etags)
            for prefix, images in (("", small_s3), ("phone_", phone_s3))
        }
        print("tf_threads_2 ...", flush=True)
        two_threads = bench.pipeline(SMALL_DATE, sizes.small, tf_threads=2)
        print("baseline ...", flush=True)
        # The same warm-up as the pipeline's: the JVM's S3A client and the Python workers.
        bench.baseline(WARM_DATE, sizes.warmup, sizes.baseline_tasks)
        base_run = bench.baseline(SMALL_DATE, sizes.small, sizes.baseline_tasks)
        if pca_rows:
            print("PCA ...", flush=True)
            results["pca_fit_s_by_rows"] = pca_scaling(spark, pca_rows)
    finally:
        spark.stop()
    print("memory per workload ...", flush=True)
    for prefix, date, count in (("", SMALL_DATE, sizes.small), ("phone_", PHONE_DATE, sizes.phone)):
        memory = workload_memory(settings, date, count)
        results[f"{prefix}own_session_worker_peak_rss_mb"] = memory["worker_peak_rss_mb"]
        results[f"{prefix}own_session_run_peak_rss_mb"] = memory["run_peak_rss_mb"]

    results |= workload("", main, small_ceilings)
    results |= workload("phone_", phone, phone_ceilings)
    results |= floor_figures(floor_spark, floor_get, results)
    results |= {
        "decode_share_phone": results["decode_ms_phone"]
        / (results["phone_decode_model_cpu_ms_per_image"] - results["decode_ms_phone"]),
        "worker_peak_rss_mb": max(r["worker_peak_rss_mb"] for r in (warm, main, phone)),
        "run_peak_rss_mb": max(r["run_peak_rss_mb"] for r in (warm, main, phone)),
        "baseline_ips": base_run["ips"],
        "baseline_seconds": base_run["seconds"],
        "baseline_requests_per_image": base_run["requests_per_image"],
        "baseline_cpu_ms_per_image": base_run["pipeline_cpu_ms_per_image"],
        "speedup_vs_baseline": main["ips"] / base_run["ips"],
        # Counted in the workers: one build per worker and model (the cache's key), so the
        # runs after the warm-up build none, and two threads build a model of their own.
        "model_builds_warmup": warm["model_builds"],
        "model_builds_after_warmup": main["model_builds"]
        + phone["model_builds"]
        + sum(r["model_builds"] for r in [*delayed.values(), *undelayed[1:]]),
        "python_workers": main["python_workers"],
        "tf_threads_2_ips": two_threads["ips"],
        "tf_threads_2_model_builds": two_threads["model_builds"],
        "tf_threads_2_cpu_ms_per_image": two_threads["pipeline_cpu_ms_per_image"],
    }
    results |= latency_figures(delayed, undelayed)
    # Requests other than the images' GETs (one each) are made one after another by the driver
    # and the JVM (manifest, table commit, metadata): each delay adds to the run's wall time.
    results["requests_besides_gets"] = sum(main["requests_by_type"].values()) - main["images"]
    results |= {
        "fixed_requests_30ms_s": results["requests_besides_gets"] * 0.03,
        "pointer_design_fixed_requests": POINTER_DESIGN_FIXED_REQUESTS,
        "pointer_design_fixed_requests_30ms_s": POINTER_DESIGN_FIXED_REQUESTS * 0.03,
        "pointer_design_bench_date": POINTER_DESIGN_BENCH_DATE,
    }
    if pca_rows:
        largest = max(pca_rows)
        results |= {
            "pca_rows": largest,
            "pca_fit_s": results["pca_fit_s_by_rows"][largest],
            "featurize_s": largest / main["ips"],
        }
        results["pca_share_of_featurize"] = results["pca_fit_s"] / results["featurize_s"]
    if e2e:
        print("end to end ...", flush=True)
        results |= end_to_end(settings, ["2026-11-20", "2026-11-21", "2026-11-22"])
    results["targets"] = verdicts(results, TARGETS)
    return results


def latency_figures(
    delayed: dict[int, dict[str, Any]], undelayed: list[dict[str, Any]]
) -> dict[str, Any]:
    """Each delay's run against the mean of the runs without delay right before and right
    after it (`undelayed[i]`, `undelayed[i + 1]` around the i-th delay)."""
    figures: dict[str, Any] = {
        "latency_0ms_ips": [r["ips"] for r in undelayed],
        "latency_0ms_seconds": [r["seconds"] for r in undelayed],
    }
    for i, (delay, run) in enumerate(delayed.items()):
        around = undelayed[i : i + 2]
        without_ips = statistics.fmean(r["ips"] for r in around)
        without_seconds = statistics.fmean(r["seconds"] for r in around)
        figures |= {
            f"latency_{delay}ms_ips": run["ips"],
            f"latency_{delay}ms_ratio": run["ips"] / without_ips,
            f"latency_{delay}ms_seconds": run["seconds"],
            f"latency_{delay}ms_added_s": run["seconds"] - without_seconds,
        }
    return figures


def print_results(results: dict[str, Any]) -> None:
    r = results
    print(f"\nFruits! benchmark, {r['machine']}, {r['date']}")
    print(f"  {r['images']} images of 100x100, {r['phone_images']} of 1280x960")
    for key, comparison, target, label in TARGETS:
        verdict = "met" if r["targets"][key] else "NOT MET"
        print(f"  {label:54} {r[key]:9.2f}  target {comparison} {target:<6} {verdict}")
    roles = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_ms_per_image_by_role"].items())
    lines = [
        f"requests by type: {r['requests_by_type']}",
        f"CPU ms per image by process: {roles}",
        f"floors: a signed GET alone {r['floor_get_cpu_ms_per_image']:.2f} ms "
        f"(photos {r['phone_floor_get_cpu_ms_per_image']:.2f}), Spark with no image "
        f"{r['floor_spark_cpu_ms_per_image']:.2f} ms CPU per image: CPU ratio at least "
        f"{r['floor_cpu_ratio']:.2f} (photos {r['phone_floor_cpu_ratio']:.2f}), ratio to the S3 "
        f"ceiling at most {r['floor_ratio_to_s3_ceiling']:.2f} "
        f"(photos {r['phone_floor_ratio_to_s3_ceiling']:.2f})",
        f"decode + model alone: {r['decode_model_cpu_ms_per_image']:.2f} ms CPU per image, "
        f"{r['decode_model_ceiling_ips']:.0f} img/s; pipeline {r['pipeline_ips']:.0f} img/s, "
        f"ratio to ceiling {r['ratio_to_ceiling']:.2f}",
        f"30 ms per request added {r['latency_30ms_added_s']:.1f} s to a "
        f"{r['seconds']:.1f} s run; {r['requests_besides_gets']} requests besides the images' "
        f"GETs (mostly serial: the manifest, the table's commit and metadata) x 30 ms = "
        f"{r['fixed_requests_30ms_s']:.1f} s; the pointer design's: "
        f"{r['pointer_design_fixed_requests']} x 30 ms = "
        f"{r['pointer_design_fixed_requests_30ms_s']:.1f} s ({r['pointer_design_bench_date']})",
        f"100 ms per request: ratio {r['latency_100ms_ratio']:.2f}, "
        f"{r['latency_100ms_added_s']:.1f} s added",
        f"baseline {r['baseline_ips']:.1f} img/s ({r['baseline_requests_per_image']:.2f} "
        f"requests and {r['baseline_cpu_ms_per_image']:.1f} ms CPU per image)",
        f"phone photos: {r['phone_pipeline_ips']:.1f} img/s, ratio to ceiling "
        f"{r['phone_ratio_to_ceiling']:.2f}, CPU ratio {r['phone_cpu_ratio']:.2f}, "
        f"{r['phone_requests_per_image']:.2f} requests per image",
        f"phone decode: Pillow {r['decode_ms_phone']:.2f} ms, simplejpeg "
        f"{r['decode_ms_phone_simplejpeg']:.2f} ms (max difference "
        f"{r['simplejpeg_max_abs_difference']:.1e}); share of model time "
        f"{r['decode_share_phone']:.2f}",
        f"tf_threads_2: {r['tf_threads_2_ips']:.1f} img/s, {r['tf_threads_2_model_builds']} "
        f"builds; model builds after the warm-up: {r['model_builds_after_warmup']}",
    ]
    if "pca_fit_s" in r:
        lines.append(f"PCA fit of {r['pca_rows']} rows {r['pca_fit_s']:.1f} s "
                     f"({r['pca_share_of_featurize']:.3f} of featurizing them)")  # fmt: skip
    for line in lines:
        print(f"  {line}")
    if "e2e_s" in r:
        print(f"  end to end {r['e2e_s']:.1f} s (Dagster start-up {r['dagster_startup_s']:.1f} s, "
              f"Spark + TensorFlow {r['spark_and_tf_startup_s']:.1f} s)")  # fmt: skip


@cli.command
def main(argv: list[str] | None = None) -> int:
    parser = cli.parser("bench.run", __doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: shows it works (CI)")
    parser.add_argument("--small", type=int, help=f"100x100 images (default {FULL.small})")
    parser.add_argument("--phone", type=int, help=f"1280x960 photos (default {FULL.phone:,})")
    parser.add_argument("--window-s", type=float, help="decode + model window, seconds")
    parser.add_argument("--no-e2e", action="store_true", help="skip the Dagster end-to-end run")
    parser.add_argument("--no-pca", action="store_true", help="skip PCA's fit times")
    parser.add_argument(
        "--no-scale",
        action="store_true",
        help="skip the scale benchmark (bench.scale): the output keeps its last scale figures",
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    sizes = replace(
        sizes,
        small=args.small or sizes.small,
        phone=args.phone or sizes.phone,
        warmup=min(sizes.warmup, args.small or sizes.small),
        window_s=args.window_s or sizes.window_s,
    )
    results = run(sizes, args.smoke, e2e=not args.no_e2e, pca=not (args.no_pca or args.smoke))
    given = argv if argv is not None else sys.argv[1:]
    results["command"] = " ".join(["python -m bench.run", *given])
    if args.no_scale and args.output.exists():
        # The scale figures of the last bench.scale stay (dated by their scale_date).
        earlier = json.loads(args.output.read_text())
        scale = {k: v for k, v in earlier.items() if k.startswith("scale_")}
        verdicts_kept = {k: v for k, v in earlier.get("targets", {}).items() if k in scale}
        results |= scale
        results["targets"] |= verdicts_kept
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str))
    print_results(results)
    print(f"\nwritten to {args.output}")
    if not args.no_scale:
        # Its own process: its Spark session and memory are not this run's.
        smoke = ["--smoke"] if args.smoke else []
        command = [sys.executable, "-m", "bench.scale", "--output", str(args.output), *smoke]
        subprocess.run(command, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
