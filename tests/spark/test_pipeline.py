"""The pipeline's steps, S3 to Iceberg on local Spark: stage, publish, read back, re-run one
date, PCA, reduced rows on one PCA version, and every manifest entry (odd files too) ending as
exactly one feature row or one reject."""

import io
import os
import signal
import threading
import time
from dataclasses import replace
from urllib.parse import unquote, urlsplit

import numpy as np
import psutil
import pytest
from PIL import Image
from pyspark.sql import functions as F

from spark import tables
from spark.fetch import ImageSource
from spark.images import manifest_images
from spark.layout import PARTITION_COLUMN
from spark.manifest import write_manifests
from spark.model import load_weights
from spark.pca import (
    CARRIED_COLUMNS,
    MixedWeightsError,
    latest_version,
    load_pca,
    publish_pca,
    read_pca_metadata,
)
from spark.pipeline import (
    FULL_VERSION_METRICS,
    StalePcaVersion,
    cumulative,
    dates_on_other_versions,
    extract_features,
    features_snapshot,
    fit_pca_version,
    pca_versions_per_date,
    publish_staged,
    read_features,
    read_table,
    reject_rows,
    stage_features,
    stage_reduced,
)
from spark.quality import every_image_accounted, reduced_matches_features
from spark.storage import list_keys

pytestmark = pytest.mark.slow
DATES = ["2026-02-01", "2026-02-02", "2026-02-03"]


def warehouse_objects(s3, layout) -> dict[str, str]:
    """Every object under the layout's warehouse (the tables' data and metadata): key -> ETag."""
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=layout.bucket, Prefix=layout.key("warehouse") + "/"
    ):
        found |= {o["Key"]: o["ETag"] for o in page.get("Contents", [])}
    return found


def data_files(spark, layout, date: str) -> set[str]:
    """The data files of one date that `main` of the features table references."""
    table = tables.table(layout, tables.FEATURES)
    rows = spark.sql(
        f"SELECT file_path FROM {table.qualified}.files "
        f"WHERE partition.{PARTITION_COLUMN} = '{date}'"
    ).collect()
    return {r.file_path for r in rows}


def commits_on_main(spark, layout, name: str) -> int:
    return sum(s.on_main for s in tables.snapshots(spark, tables.table(layout, name)))


def rejects_of(spark, layout, dates=None):
    return reject_rows(read_table(spark, layout, tables.FEATURES, dates))


@pytest.fixture
def three_dates(fresh_layout, upload_sample):
    uploaded = upload_sample(fresh_layout, DATES, per_date=8, broken=True)
    return fresh_layout, uploaded


def test_every_image_ends_as_a_feature_row_or_a_reject_published_in_one_commit(
    spark, s3, settings, three_dates, weights
) -> None:
    layout, uploaded = three_dates
    write_manifests(s3, layout, DATES)
    run = stage_features(
        spark, layout, s3, DATES, weights, source=ImageSource.of(settings), tf_threads=1
    )
    assert run.features_per_date == {DATES[0]: 8, DATES[1]: 8, DATES[2]: 8}
    assert run.rejects_per_date == {DATES[0]: 2, DATES[1]: 0, DATES[2]: 0}
    assert run.feature_rows == 24
    for date in DATES:
        assert run.features_per_date[date] + run.rejects_per_date[date] == uploaded[date]
    # Features and rejects are rows of one table: the staged snapshot holds both.
    assert run.staged.counts == uploaded
    assert tables.read_staged(spark, run.staged).count() == sum(uploaded.values())
    # Staged, not published: readers see nothing yet.
    assert read_table(spark, layout, tables.FEATURES).count() == 0
    assert commits_on_main(spark, layout, tables.FEATURES) == 0

    published, snapshot = publish_staged(spark, layout, s3, run.staged)
    assert snapshot == features_snapshot(spark, layout)
    assert published.counts == uploaded
    assert commits_on_main(spark, layout, tables.FEATURES) == 1  # three dates, one commit

    features = read_features(spark, layout)
    assert features.count() == 24
    assert features.select("path").distinct().count() == 24
    assert {r.weights_sha256 for r in features.select("weights_sha256").distinct().collect()} == {
        weights.sha256
    }
    assert features.where(F.size("features") != 1280).count() == 0
    assert features.where(F.col("reject_reason").isNotNull()).count() == 0

    # Server-side encryption was requested on every object the tables' writes made, and applied.
    written = warehouse_objects(s3, layout)
    assert any(k.endswith(".parquet") for k in written)
    assert any(k.endswith(".metadata.json") for k in written)
    for key in written:
        assert s3.head_object(Bucket=settings.bucket, Key=key)["ServerSideEncryption"] == "AES256"

    rejects = rejects_of(spark, layout).collect()
    assert sorted(r.path.rsplit("/", 1)[-1] for r in rejects) == [
        "not_an_image.jpg",
        "truncated_upload.jpg",
    ]
    assert all(
        r.reject_reason and r.features is None and r.size_bytes >= 0 and r.upload_date == DATES[0]
        for r in rejects
    )
    assert sorted(r["path"] for r in run.rejects) == sorted(r.path for r in rejects)
    expected = manifest_images(spark, layout, DATES)
    assert every_image_accounted(expected, features, rejects_of(spark, layout)).passed


def test_rerunning_one_date_leaves_the_others_untouched(
    spark, s3, settings, three_dates, weights, extract
) -> None:
    layout, _ = three_dates
    extract(layout, DATES, weights)
    files = {d: data_files(spark, layout, d) for d in DATES}
    objects = warehouse_objects(s3, layout)
    assert all(files.values())

    other_weights = load_weights("random", seed=99)
    extract(layout, [DATES[1]], other_weights)

    # The other dates' data files are the same files, unchanged on S3; the re-run date's new.
    after = warehouse_objects(s3, layout)
    for date in (DATES[0], DATES[2]):
        assert data_files(spark, layout, date) == files[date]
        for uri in files[date]:
            key = uri.split(f"{layout.bucket}/", 1)[1]
            assert after[key] == objects[key]
    assert not data_files(spark, layout, DATES[1]) & files[DATES[1]]
    by_date = {
        r[PARTITION_COLUMN]: (r["rows"], r["shas"])
        for r in read_features(spark, layout)
        .groupBy(PARTITION_COLUMN)
        .agg(F.count("*").alias("rows"), F.collect_set("weights_sha256").alias("shas"))
        .collect()
    }
    assert by_date[DATES[1]] == (8, [other_weights.sha256])  # replaced, not appended
    assert by_date[DATES[0]] == (8, [weights.sha256])
    assert rejects_of(spark, layout).count() == 2  # DATES[0]'s, kept
    # PCA refuses to fit on features of two weights: the re-run date names the way out.
    with pytest.raises(MixedWeightsError, match=f"for dates {DATES[1]} with the current"):
        fit_pca_version(spark, layout, s3, k=10, weights_sha256=weights.sha256)
    assert list_keys(s3, layout.bucket, layout.key("models")) == []  # nothing saved
    assert latest_version(layout, s3) is None


def test_a_date_that_lost_its_images_loses_its_old_rows(
    spark, s3, settings, three_dates, weights, extract
) -> None:
    layout, _ = three_dates
    extract(layout, DATES, weights)
    for key in list_keys(s3, layout.bucket, layout.raw_date_key(DATES[0])):
        s3.delete_object(Bucket=settings.bucket, Key=key)
    run = extract(layout, [DATES[0]], weights)
    assert run.features_per_date == {DATES[0]: 0}
    assert run.rejects_per_date == {DATES[0]: 0}
    assert run.staged.counts == {DATES[0]: 0}
    # Its features and its rejects are gone; the other dates keep theirs.
    assert read_table(spark, layout, tables.FEATURES, [DATES[0]]).count() == 0
    assert read_features(spark, layout).count() == 16
    expected = manifest_images(spark, layout, DATES)
    accounted = every_image_accounted(
        expected, read_features(spark, layout), rejects_of(spark, layout)
    )
    assert accounted.passed, accounted.details


def test_pca_fit_save_publish_and_reduce(
    spark, s3, settings, three_dates, weights, extract
) -> None:
    layout, _ = three_dates
    extract(layout, DATES, weights)
    snapshot = features_snapshot(spark, layout)
    pca = fit_pca_version(spark, layout, s3, k=10, weights_sha256=weights.sha256)

    assert pca.rows == 24 and len(pca.explained_variance) == 10
    assert pca.rows_per_date == {d: 8 for d in DATES}  # feature rows: rejects aside
    variance = pca.explained_variance
    assert all(a >= b for a, b in zip(variance, variance[1:], strict=False))
    assert 0 < sum(pca.explained_variance) <= 1 + 1e-9
    assert latest_version(layout, s3) is None  # saved, not published
    publish_pca(layout, s3, pca.version)
    assert latest_version(layout, s3) == pca.version
    metadata = read_pca_metadata(layout, s3, pca.version)
    assert metadata["rows"] == 24 and metadata["k"] == 10
    assert metadata["features_snapshot"] == pca.features_snapshot == snapshot
    assert metadata["features_table"] == f"{layout.namespace}.{tables.FEATURES}"
    assert load_pca(layout, pca.version).getK() == 10

    counts = publish_staged(
        spark, layout, s3, stage_reduced(spark, layout, s3, DATES, pca.version).staged
    )[0].counts
    assert counts == {d: 8 for d in DATES}
    reduced = read_table(spark, layout, tables.REDUCED)
    assert reduced.count() == 24
    assert reduced.where(F.size("pca_features") != 10).count() == 0
    assert {r.pca_version for r in reduced.select("pca_version").distinct().collect()} == {
        pca.version
    }
    assert reduced.columns == [*CARRIED_COLUMNS, "pca_version", "pca_features"]
    # Each reduced row names the upload it comes from, as its feature row does.
    carried = sorted(tuple(r) for r in reduced.select(*CARRIED_COLUMNS).collect())
    assert carried == sorted(
        tuple(r) for r in read_features(spark, layout).select(*CARRIED_COLUMNS).collect()
    )
    assert {r.weights_sha256 for r in reduced.select("weights_sha256").distinct().collect()} == {
        weights.sha256
    }


def test_a_refit_switches_every_date_of_the_reduced_table_in_one_snapshot(
    spark, s3, settings, three_dates, weights, extract
) -> None:
    """The reduced table holds one PCA version: staging one date with a new version stages the
    other dates with it too, and one commit publishes them all."""
    layout, _ = three_dates
    extract(layout, DATES, weights)
    first = fit_pca_version(spark, layout, s3, k=4, weights_sha256=weights.sha256).version
    publish_pca(layout, s3, first)
    publish_staged(spark, layout, s3, stage_reduced(spark, layout, s3, DATES, first).staged)
    commits = commits_on_main(spark, layout, tables.REDUCED)
    second = fit_pca_version(spark, layout, s3, k=3, weights_sha256=weights.sha256).version
    publish_pca(layout, s3, second)

    run = stage_reduced(spark, layout, s3, [DATES[1]], second)

    assert run.switched == [DATES[0], DATES[2]]
    assert run.version == second and run.features_snapshot == features_snapshot(spark, layout)
    assert run.staged.dates == tuple(DATES)
    assert run.staged.counts == run.features_per_date == {d: 8 for d in DATES}
    staged = tables.read_staged(spark, run.staged)
    assert {r.pca_version for r in staged.select("pca_version").distinct().collect()} == {second}
    assert reduced_matches_features(run.features_per_date, staged, 3, second).passed
    published = read_table(spark, layout, tables.REDUCED)  # still the first, whole, until then
    assert {r.pca_version for r in published.select("pca_version").distinct().collect()} == {first}

    publish_staged(spark, layout, s3, run.staged)

    reduced = read_table(spark, layout, tables.REDUCED)
    assert {
        (r.upload_date, r.pca_version, r.k)
        for r in reduced.select(
            PARTITION_COLUMN, "pca_version", F.size("pca_features").alias("k")
        ).collect()
    } == {(d, second, 3) for d in DATES}
    assert reduced.count() == 24
    assert commits_on_main(spark, layout, tables.REDUCED) == commits + 1
    # Nothing to switch any more.
    assert stage_reduced(spark, layout, s3, [DATES[1]], second).switched == []


def published_versions(spark, layout) -> dict[str, set[str]]:
    """The PCA versions of each date's rows on `main` of the reduced table, read from rows."""
    reduced = read_table(spark, layout, tables.REDUCED).select(PARTITION_COLUMN, "pca_version")
    found: dict[str, set[str]] = {}
    for r in reduced.distinct().collect():
        found.setdefault(r.upload_date, set()).add(r.pca_version)
    return found


def test_a_run_staged_before_a_refit_never_publishes_its_old_version(
    spark, s3, settings, three_dates, weights, extract
) -> None:
    """Two runs staged with the first PCA version (one rewrites a published date, one adds a
    date `main` lacks), then a refit publishes the second version on every date: neither
    stale run may publish, whether Iceberg refuses its cherry-pick (a date it rewrites
    changed) or not (its date is new), and no reader ever sees two versions."""
    layout, _ = three_dates
    extract(layout, DATES, weights)
    first = fit_pca_version(spark, layout, s3, k=4, weights_sha256=weights.sha256).version
    publish_pca(layout, s3, first)
    publish_staged(spark, layout, s3, stage_reduced(spark, layout, s3, DATES[:2], first).staged)
    rewrites = stage_reduced(spark, layout, s3, [DATES[0]], first).staged
    adds = stage_reduced(spark, layout, s3, [DATES[2]], first).staged
    second = fit_pca_version(spark, layout, s3, k=3, weights_sha256=weights.sha256).version
    publish_pca(layout, s3, second)
    refit = stage_reduced(spark, layout, s3, [DATES[1]], second)
    assert refit.switched == [DATES[0]]  # DATES[2] is not on `main` yet
    publish_staged(spark, layout, s3, refit.staged)
    after_refit = tables.current_snapshot(spark, refit.staged.table)

    for stale in (rewrites, adds):
        with pytest.raises(StalePcaVersion, match=f"other PCA version than the current {second}"):
            publish_staged(spark, layout, s3, stale)
        assert published_versions(spark, layout) == {DATES[0]: {second}, DATES[1]: {second}}
    assert tables.current_snapshot(spark, refit.staged.table) == after_refit
    # Their staged snapshots, and the copies staged again on the new `main`, are expired: no
    # later publish can take them.
    assert [s for s in tables.snapshots(spark, refit.staged.table) if not s.on_main] == []
    # Run again with the current version, the new date joins the others on it.
    publish_staged(spark, layout, s3, stage_reduced(spark, layout, s3, [DATES[2]], second).staged)
    assert published_versions(spark, layout) == {d: {second} for d in DATES}


def test_cumulative_explained_variance() -> None:
    assert cumulative([0.5, 0.25, 0.125], at=(1, 2, 100)) == {1: 0.5, 2: 0.75, 3: 0.875}
    assert cumulative([0.5, 0.25], at=(1, 50)) == {1: 0.5, 2: 0.75}  # never at an absent 50


def test_unusual_names_and_places_are_accounted_for(
    spark, s3, settings, fresh_layout, weights, extract
) -> None:
    """Spaces, non-ASCII, upper-case extensions, files outside a label folder, other types."""
    from spark.manifest import list_manifest

    date = "2026-02-09"
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "orange").save(buffer, format="JPEG")
    names = {
        "kiwi/my photo é.jpg": buffer.getvalue(),
        "Apple Braeburn/UPPER.JPG": buffer.getvalue(),
        "loose file.jpeg": buffer.getvalue(),
        "kiwi/clip.gif": b"GIF89a not really",
    }
    for name, body in names.items():
        s3.put_object(Bucket=settings.bucket, Key=fresh_layout.raw_date_key(date) + name, Body=body)
    run = extract(fresh_layout, [date], weights)
    assert run.features_per_date[date] + run.rejects_per_date[date] == len(names)
    assert run.rejects_per_date[date] == 1  # the .gif, with its reason
    features = read_features(spark, fresh_layout, [date]).collect()
    assert {r.label for r in features} == {"kiwi", "Apple Braeburn", "unlabelled"}
    manifest_paths = {r["path"] for r in list_manifest(s3, fresh_layout, date)}
    assert {r.path for r in features} | {r["path"] for r in run.rejects} == manifest_paths


def kill_a_busy_worker(
    process_tree, killed: list[int], stop: threading.Event, after_cpu_s: float
) -> None:
    """SIGKILL the first of our Python workers (children of pyspark.daemon) that is computing
    and has computed `after_cpu_s` since this started: it is in the middle of a partition."""

    def workers() -> dict[int, tuple[str, float]]:
        tree = process_tree()
        daemons = {p.pid for p in tree if "pyspark.daemon" in p.cmdline}
        return {p.pid: (p.state, p.cpu_s) for p in tree if p.parent in daemons}

    start = {pid: cpu for pid, (_, cpu) in workers().items()}
    last: dict[int, float] = {}
    while not stop.is_set() and not killed:
        for pid, (state, cpu) in workers().items():
            # Still busy since the last look.
            computing = state == psutil.STATUS_RUNNING and cpu > last.get(pid, cpu)
            if computing and cpu - start.get(pid, 0.0) >= after_cpu_s:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            last[pid] = cpu
        time.sleep(0.05)


def test_a_worker_killed_mid_partition_is_retried_and_no_image_is_doubled(
    spark, fresh_layout, upload_sample, weights, process_tree, extract
) -> None:
    dates = DATES[:2]
    uploaded = upload_sample(fresh_layout, dates, per_date=300)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_a_busy_worker, args=(process_tree, killed, stop, 0.5))
    killer.start()
    spark.sparkContext.setJobGroup("killed-worker", "a worker is killed mid-partition")
    try:
        run = extract(fresh_layout, dates, weights)
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        stop.set()
        killer.join()

    assert killed, "no Python worker was busy long enough to be killed"
    tracker = spark.sparkContext.statusTracker()
    stages = [
        tracker.getStageInfo(stage)
        for job in tracker.getJobIdsForGroup("killed-worker")
        for stage in tracker.getJobInfo(job).stageIds
    ]
    assert sum(s.numFailedTasks for s in stages if s) >= 1  # the task failed, then was retried
    assert {d: run.features_per_date[d] + run.rejects_per_date[d] for d in dates} == uploaded
    paths = [r.path for r in read_features(spark, fresh_layout, dates).select("path").collect()]
    paths += [r["path"] for r in run.rejects]
    assert len(paths) == len(set(paths)) == sum(uploaded.values())


# --- odd files: each manifest entry ends as exactly one feature row or one reject -------------
ODD_DATE = "2026-02-10"


def jpeg(color: str, size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


def noise_jpeg(size: tuple[int, int], seed: int = 0) -> bytes:
    """Random pixels: a JPEG that compresses badly, so it is large for its size."""
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def gif() -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (16, 16), 1).save(buffer, format="GIF")
    return buffer.getvalue()


# The first bytes of an iPhone photo: an ISO media box with the HEIC brand.
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)


def put_raw(s3, layout, date: str, files: dict[str, bytes]) -> dict[str, str]:
    """Upload `files` (names under the date) and return name -> s3:// path."""
    paths = {}
    for name, body in files.items():
        key = layout.raw_date_key(date) + name
        s3.put_object(Bucket=layout.bucket, Key=key, Body=body)
        paths[name] = f"s3://{layout.bucket}/{key}"
    return paths


def count_raw_gets(fault_proxy, layout) -> list[str]:
    """Record the keys of every GET of a raw object that goes through the proxy (failing none)."""
    raw = f"/{layout.bucket}/{layout.raw_prefix()}"
    gets: list[str] = []

    def record(method: str, path: str, headers: dict[str, str]) -> bool:
        key = unquote(urlsplit(path).path)
        if method == "GET" and key.startswith(raw):
            gets.append(key[len(f"/{layout.bucket}/") :])
        return False

    fault_proxy.fail_when = record
    return gets


def published_outcome(spark, layout, dates: list[str]) -> tuple[dict, dict, object]:
    """path -> feature row, path -> reject row, and the accounting check against the manifests."""
    features = read_features(spark, layout, dates)
    rejects = rejects_of(spark, layout, dates)
    accounted = every_image_accounted(manifest_images(spark, layout, dates), features, rejects)
    return (
        {r.path: r for r in features.collect()},
        {r.path: r for r in rejects.collect()},
        accounted,
    )


@pytest.fixture
def proxied(through_proxy, fresh_layout):
    """The fault proxy's bucket, with this test's own Iceberg namespace."""
    return replace(through_proxy, namespace=fresh_layout.namespace)


def test_odd_files_end_as_one_reject_each_and_refused_ones_are_never_fetched(
    spark, s3, settings, proxied, fault_proxy, weights, extract
) -> None:
    layout = proxied
    good = {
        "kiwi/a.jpg": jpeg("green"),
        "kiwi/b.jpg": jpeg("yellow"),
        "_misc/x.jpg": jpeg("red"),  # hidden folders: listed and processed like any other
        ".hidden/y.jpg": jpeg("orange"),
        "kiwi/.z.jpg": jpeg("brown"),  # a hidden name
    }
    oversized = noise_jpeg((400, 400))
    max_bytes = 4 * max(len(b) for b in good.values())
    assert len(oversized) > max_bytes
    odd = {
        "kiwi/empty.jpg": b"",
        "kiwi/huge.jpg": oversized,
        "kiwi/IMG_0001.heic": HEIC,
        "kiwi/animation.jpg": gif(),  # a GIF named .jpg: fetched, refused by its content
    }
    paths = put_raw(s3, layout, ODD_DATE, good | odd)
    source = replace(ImageSource.of(settings), endpoint=fault_proxy.endpoint, max_bytes=max_bytes)
    gets = count_raw_gets(fault_proxy, layout)

    run = extract(layout, [ODD_DATE], weights, source=source)

    assert run.features_per_date == {ODD_DATE: len(good)}
    assert run.rejects_per_date == {ODD_DATE: len(odd)}
    features, rejects, accounted = published_outcome(spark, layout, [ODD_DATE])
    assert accounted.passed, accounted.details
    assert set(features) == {paths[n] for n in good}
    assert set(rejects) == {paths[n] for n in odd}
    assert set(features) | set(rejects) == set(paths.values())  # the manifest, path for path
    assert {features[paths[n]].label for n in good} == {"kiwi", "_misc", ".hidden"}
    reasons = {name: rejects[paths[name]].reject_reason for name in odd}
    assert reasons["kiwi/empty.jpg"] == "empty file (0 bytes)"
    assert reasons["kiwi/huge.jpg"] == (
        f"file too large: {len(oversized)} bytes, over the limit of {max_bytes}"
    )
    assert reasons["kiwi/IMG_0001.heic"] == "unsupported file extension '.heic'"
    assert reasons["kiwi/animation.jpg"] == "cannot decode image: content is GIF, not JPEG or PNG"
    assert {r["path"]: r["reason"] for r in run.rejects} == {
        paths[n]: reason for n, reason in reasons.items()
    }
    assert all(rejects[paths[n]].size_bytes == len(odd[n]) for n in odd)

    # One GET per image that was not refused on its listing; none for the refused ones.
    fetched = sorted(good) + ["kiwi/animation.jpg"]
    assert sorted(gets) == sorted(layout.raw_date_key(ODD_DATE) + n for n in fetched)


def test_files_deleted_or_overwritten_after_the_manifest_are_rejects(
    spark, s3, settings, proxied, fault_proxy, weights
) -> None:
    layout = proxied
    files = {
        "kiwi/kept.jpg": jpeg("green"),
        "kiwi/deleted.jpg": jpeg("yellow"),
        "kiwi/overwritten.jpg": jpeg("red"),
    }
    paths = put_raw(s3, layout, ODD_DATE, files)
    write_manifests(s3, layout, [ODD_DATE])  # what raw_images does; then the bucket changes
    s3.delete_object(Bucket=layout.bucket, Key=layout.raw_date_key(ODD_DATE) + "kiwi/deleted.jpg")
    put_raw(s3, layout, ODD_DATE, {"kiwi/overwritten.jpg": jpeg("blue", (48, 48))})
    source = replace(ImageSource.of(settings), endpoint=fault_proxy.endpoint)
    gets = count_raw_gets(fault_proxy, layout)

    run = extract_features(spark, layout, s3, [ODD_DATE], weights, source=source, tf_threads=1)

    assert run.features_per_date == {ODD_DATE: 1}
    assert run.rejects_per_date == {ODD_DATE: 2}
    features, rejects, accounted = published_outcome(spark, layout, [ODD_DATE])
    assert accounted.passed, accounted.details
    assert set(features) == {paths["kiwi/kept.jpg"]}
    assert rejects[paths["kiwi/deleted.jpg"]].reject_reason.startswith("no longer in S3")
    changed = rejects[paths["kiwi/overwritten.jpg"]].reject_reason
    assert "ETag" in changed and changed.startswith("changed after the manifest")
    # The listed size, not the new object's: the reject describes what the manifest held.
    assert rejects[paths["kiwi/overwritten.jpg"]].size_bytes == len(files["kiwi/overwritten.jpg"])
    assert len(gets) == len(files)  # one GET each, even for those that fail


def test_the_pca_version_of_each_date_comes_from_file_metadata_not_rows(
    spark, s3, fresh_layout
) -> None:
    """dates_on_other_versions reads Iceberg's file list (bounds of pca_version kept in full),
    so it answers with every data file of the reduced table gone from S3."""
    first, second = "20261201T000000Z-aaaaaaaa", "20261201T000000Z-bbbbbbbb"  # 25 characters
    assert first[:16] == second[:16]  # what Iceberg's default (truncated) bounds would keep
    dates = ["2026-02-01", "2026-02-02", "2026-02-03"]
    rows = [
        (f"s3://b/raw/{d}/{i}.jpg", d, "apple", "e", "t", "w", version, [float(i)])
        for d, version in zip(dates, (first, first, second), strict=True)
        for i in range(3)
    ]
    reduced = tables.table(fresh_layout, tables.REDUCED)
    tables.ensure_table(spark, reduced)
    tables.set_properties(spark, reduced, FULL_VERSION_METRICS)
    frame = spark.createDataFrame(rows, tables.SCHEMAS[tables.REDUCED])
    staged = tables.stage(spark, reduced, frame, dates)
    tables.publish(spark, staged, lambda kept: kept)
    # A second file in the last date, of the first version: that date mixes two.
    mixed = spark.createDataFrame(rows[:1], tables.SCHEMAS[tables.REDUCED])
    with tables._SESSION_WRITES:
        mixed.withColumn("upload_date", F.lit(dates[2])).writeTo(reduced.qualified).append()

    gone = [k for k in warehouse_objects(s3, fresh_layout) if "/reduced/data/" in k]
    assert len(gone) == 4
    for key in gone:
        s3.delete_object(Bucket=fresh_layout.bucket, Key=key)
    with pytest.raises(Exception):  # noqa: B017 - the rows cannot be read any more
        read_table(spark, fresh_layout, tables.REDUCED).select("pca_version").collect()

    assert pca_versions_per_date(spark, fresh_layout) == {
        dates[0]: first,
        dates[1]: first,
        dates[2]: None,
    }
    assert dates_on_other_versions(spark, fresh_layout, first) == [dates[2]]
    assert dates_on_other_versions(spark, fresh_layout, second) == dates
