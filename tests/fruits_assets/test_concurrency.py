"""Runs and an erasure at once, each in a process of its own (as Dagster launches runs), on one
layout and one catalog, with no lock: no row lost or doubled, the erased image published
nowhere, every date one whole version. A driver killed between its write and its publication
leaves `main` alone, and table maintenance removes what it wrote. Runs that share a process
(and so a Spark session) stage each under its own WAP id."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from spark import tables
from spark.layout import PARTITION_COLUMN, Layout, split_uri
from spark.manifest import read_manifest, write_manifests
from spark.pipeline import feature_rows, reject_rows
from spark.storage import list_keys
from spark.tables import FEATURES

pytestmark = pytest.mark.slow
D1, D2, D3 = "2026-12-01", "2026-12-02", "2026-12-03"

# One process: a driver of its own on the shared layout and catalog (FRUITS_* of the test's
# environment). `run` stages features for its dates, says so, waits for `go`, then publishes;
# `erase` says it is ready, waits for `go`, then erases one image. Each reports through files
# <folder>/<role>.<what>.
WORKER = r"""
import json, sys, time
from pathlib import Path

from fruits_assets.deployments import current_settings
from spark.layout import Layout
from spark.session import build_session
from spark.storage import s3_client

role, folder, argument = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
settings = current_settings()
spark = build_session(settings, f"fruits-{role}")
spark.sparkContext.setLogLevel("ERROR")
layout, s3 = Layout.of(settings), s3_client(settings)


def say(what, value=""):
    partial = folder / f".{role}.{what}"
    partial.write_text(str(value))
    partial.rename(folder / f"{role}.{what}")


def wait_for_go():
    while not (folder / "go").exists():
        time.sleep(0.05)


if role.startswith("erase"):
    from spark.erasure import erase_image

    say("ready")
    wait_for_go()
    record = erase_image(spark, layout, s3, argument, write_grace_hours=1.0)
    say("done", json.dumps(record["rows_removed"]))
else:
    from spark.fetch import ImageSource
    from spark.model import load_weights
    from spark.pipeline import publish_staged, stage_features

    weights = load_weights(settings.weights, settings.weights_seed, s3)
    source = ImageSource.of(settings)
    run = stage_features(spark, layout, s3, argument.split(","), weights, source=source)
    say("staged", run.staged.snapshot_id)
    wait_for_go()
    _, snapshot = publish_staged(spark, layout, s3, run.staged)
    say("done", snapshot)
"""


@dataclass
class Worker:
    role: str
    process: subprocess.Popen
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@pytest.fixture
def start_worker(
    spark, fresh_layout: Layout, tmp_path: Path, repo_root: Path
) -> Iterator[Callable[..., Worker]]:
    """start(role, argument, **FRUITS_fields) -> a Worker on this test's layout, in a process
    group of its own; whatever is still running at the end is killed."""
    started: list[Worker] = []

    def _start(role: str, argument: str, **fields: str) -> Worker:
        env = os.environ | {
            "FRUITS_PREFIX": fresh_layout.prefix,
            "FRUITS_NAMESPACE": fresh_layout.namespace,
            # One core each: the drivers share the machine's two.
            "FRUITS_SPARK_MASTER": "local[1,3]",
        }
        env |= {f"FRUITS_{k.upper()}": str(v) for k, v in fields.items()}
        log = tmp_path / f"{role}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", WORKER, role, str(tmp_path), argument],
                cwd=repo_root, env=env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        worker = Worker(role, process, log)
        started.append(worker)
        return worker

    yield _start
    for worker in started:
        if worker.process.poll() is None:
            kill(worker)


def kill(worker: Worker) -> None:
    """SIGKILL to the worker's whole group: its Python driver and the JVM it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.process.pid, signal.SIGKILL)
    worker.process.wait(timeout=30)


def reported(folder: Path, workers: list[Worker], what: str, timeout_s: float = 240) -> dict:
    """role -> what each worker reported as `what`, once all have; fails with a log when one
    exits without it."""
    deadline = time.monotonic() + timeout_s
    found: dict[str, str] = {}
    while len(found) < len(workers):
        for worker in workers:
            path = folder / f"{worker.role}.{what}"
            if worker.role in found:
                continue
            if path.exists():
                found[worker.role] = path.read_text()
            elif worker.process.poll() is not None:
                pytest.fail(f"{worker.role} exited {worker.process.returncode}:\n{worker.tail()}")
        assert time.monotonic() < deadline, f"no {what} from {set(w.role for w in workers)}"
        time.sleep(0.1)
    return found


def data_files(s3, target: tables.Table) -> set[str]:
    """The keys of every object under the table's data/ folder."""
    bucket, key = split_uri(target.location)
    return set(list_keys(s3, bucket, f"{key}/data/"))


def referenced_files(spark, target: tables.Table) -> set[str]:
    """The keys of the data files of `main`'s current snapshot."""
    rows = spark.sql(f"SELECT file_path FROM {target.qualified}.files").collect()
    return {split_uri(r["file_path"])[1] for r in rows}


def uploads(rows) -> list[tuple[str, str]]:
    return sorted((r["path"], r["etag"]) for r in rows)


def test_runs_in_one_process_stage_each_under_its_own_wap_id(spark, fresh_layout) -> None:
    """spark.wap.id is a property of the session, which threads of one process share: a
    stage must never take another's id, nor commit to `main` while another unsets it."""
    target = tables.table(fresh_layout, FEATURES)
    tables.ensure_table(spark, target)
    frames = {
        date: spark.createDataFrame(
            [(f"s3://b/raw/{date}/{i}.jpg", date, "apple", "e", "t", 1, [1.0], date, "sha", None)
             for i in range(3)],
            tables.SCHEMAS[FEATURES],
        )
        for date in (D1, D2)
    }  # fmt: skip

    def stage_repeatedly(date: str) -> list[tables.Staged]:
        return [tables.stage(spark, target, frames[date], [date]) for _ in range(4)]

    with ThreadPoolExecutor(2) as pool:
        staged = [s for batch in pool.map(stage_repeatedly, frames) for s in batch]
    assert tables.current_snapshot(spark, target) is None  # nothing reached `main` unaudited
    summaries = {s.snapshot_id: s.summary for s in tables.snapshots(spark, target)}
    assert sorted(summaries) == sorted(s.snapshot_id for s in staged)  # one snapshot each
    for one in staged:
        assert summaries[one.snapshot_id]["wap.id"] == one.wap_id
        assert one.counts == {one.dates[0]: 3}


def test_overlapping_runs_and_an_erasure_at_once_lose_nothing_and_publish_no_erased_image(
    spark, s3, fresh_layout, upload_sample, extract, weights, start_worker, tmp_path
) -> None:
    """Run A [D1, D2] and run B [D2, D3] (other weights: each row says which run wrote it)
    stage at once; then both publish while an erasure removes an image of D2, which both
    staged and `main` already holds. Their cherry-picks on D2 collide with each other and
    with the erasure's DELETE: the loser is staged again on the current `main`, without the
    erased upload."""
    upload_sample(fresh_layout, [D1, D2, D3], per_date=6)  # D1 has two broken files too
    extract(fresh_layout, [D2], weights)  # `main` holds D2: the erasure deletes a published row
    write_manifests(s3, fresh_layout, [D1, D2, D3])
    features = tables.table(fresh_layout, FEATURES)
    bucket = fresh_layout.bucket
    erased = f"s3://{bucket}/{sorted(list_keys(s3, bucket, fresh_layout.raw_date_key(D2)))[0]}"

    runs = [
        start_worker("run_a", f"{D1},{D2}", weights_seed=1),
        start_worker("run_b", f"{D2},{D3}", weights_seed=2),
    ]
    eraser = start_worker("erase", erased)
    staged = reported(tmp_path, runs, "staged")
    reported(tmp_path, [eraser], "ready")
    on_main = {s.snapshot_id for s in tables.snapshots(spark, features) if s.on_main}
    for snapshot in map(int, staged.values()):  # both staged, neither visible yet
        assert tables.snapshot_exists(spark, features, snapshot) and snapshot not in on_main
    (tmp_path / "go").touch()  # publish, publish and erase, at once
    published = reported(tmp_path, [*runs, eraser], "done")
    for worker in (*runs, eraser):
        assert worker.process.wait(timeout=60) == 0, worker.tail()

    assert all(int(published[run.role]) for run in runs)  # both published
    rows = tables.read(spark, features).cache()
    # The erased image: on `main` nowhere, in no snapshot the table keeps (time travel
    # included), its raw object and manifest entry gone.
    condition = f"path = '{erased}'"
    assert rows.where(F.col("path") == erased).count() == 0
    assert tables.holding(spark, features, condition, tables.snapshots(spark, features)) == []
    assert erased not in read_manifest(s3, fresh_layout, D2).column("path").to_pylist()
    # No row lost, none twice: every manifest entry of every date is one feature row or one
    # reject, and nothing else is there.
    for date in (D1, D2, D3):
        manifest = read_manifest(s3, fresh_layout, date).to_pylist()
        assert uploads(rows.where(F.col(PARTITION_COLUMN) == date).collect()) == uploads(manifest)
    assert reject_rows(rows).where(F.col(PARTITION_COLUMN) == D1).count() == 2
    assert reject_rows(rows).where(F.col(PARTITION_COLUMN) != D1).count() == 0
    # Every date one whole version: its rows all come from one run (one weights digest).
    digests = {
        r[PARTITION_COLUMN]: r["digests"]
        for r in feature_rows(rows)
        .groupBy(PARTITION_COLUMN)
        .agg(F.collect_set("weights_sha256").alias("digests"))
        .collect()
    }
    assert all(len(d) == 1 for d in digests.values()), digests
    run_a, run_b = digests[D1][0], digests[D3][0]
    assert run_a != run_b and digests[D2][0] in (run_a, run_b)
    # What the runs staged and did not publish as such was expired with its files.
    assert [s.snapshot_id for s in tables.snapshots(spark, features) if not s.on_main] == []
    rows.unpersist()


def test_a_driver_killed_between_write_and_publish_leaves_main_and_maintenance_cleans_up(
    spark, s3, fresh_layout, upload_sample, extract, weights, start_worker, tmp_path
) -> None:
    upload_sample(fresh_layout, [D1], per_date=6, broken=False)
    extract(fresh_layout, [D1], weights)
    features = tables.table(fresh_layout, FEATURES)
    main = tables.current_snapshot(spark, features)
    before = uploads(tables.read(spark, features).collect())
    assert data_files(s3, features) == referenced_files(spark, features)

    doomed = start_worker("doomed", D1, weights_seed=1)
    staged = int(reported(tmp_path, [doomed], "staged")["doomed"])
    kill(doomed)  # after its write, before its publication: it never hears `go`
    # Readers see nothing of it: `main` and its rows are what they were.
    assert tables.current_snapshot(spark, features) == main
    assert uploads(tables.read(spark, features).collect()) == before
    # It left a staged snapshot in the catalog and data files that `main` does not reference.
    assert tables.snapshot_exists(spark, features, staged)
    left = data_files(s3, features) - referenced_files(spark, features)
    assert left

    now = dt.datetime.now(dt.UTC)
    tables.expire_unreferenced(spark, features, older_than=now, keep_staged_after=now)
    tables.remove_orphan_files(spark, features, now)
    assert not tables.snapshot_exists(spark, features, staged)
    assert data_files(s3, features) == referenced_files(spark, features)
    assert not left & data_files(s3, features)
    assert tables.current_snapshot(spark, features) == main
    assert uploads(tables.read(spark, features).collect()) == before
