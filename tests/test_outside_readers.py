"""Readers outside the project (Spark SQL, pyiceberg, DuckDB) see exactly the published rows:
not what a run staged, not what a re-run superseded, not what an erasure removed. Each of the
three writes holds the same uploads under other weights, so its rows differ by their
weights_sha256, not only in number."""

import pytest

from spark import tables
from spark.erasure import erase_image
from spark.fetch import ImageSource
from spark.model import load_weights
from spark.pipeline import stage_features

pytestmark = pytest.mark.slow
D1, D2 = "2026-10-01", "2026-10-02"


def digests_per_date(rows) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for r in rows:
        found.setdefault(r["upload_date"], set()).add(r["weights_sha256"])
    return found


@pytest.fixture
def published(spark, s3, settings, fresh_layout, upload_sample, extract, weights):
    """Two dates published under the first weights; an image of D1 erased; D2 published
    again under second weights (superseding its first version, which history keeps), then
    staged under third weights and never published. Returns the erased path, the digests by
    write, and the published rows as the project reads them."""
    upload_sample(fresh_layout, [D1, D2], per_date=4, broken=True)
    second, third = load_weights("random", seed=7), load_weights("random", seed=8)
    extract(fresh_layout, [D1, D2], weights)
    features = tables.table(fresh_layout, tables.FEATURES)
    erased = sorted(r.path for r in tables.read(spark, features, [D1]).collect())[0]
    erase_image(spark, fresh_layout, s3, erased, write_grace_hours=24)
    extract(fresh_layout, [D2], second)
    staged = stage_features(
        spark, fresh_layout, s3, [D2], third, source=ImageSource.of(settings)
    ).staged
    # What a reader of the staged snapshot, or of the one D2's re-run superseded, would see.
    superseded = [s for s in tables.snapshots(spark, features) if s.on_main][-2]
    for snapshot, digest in ((staged.snapshot_id, third), (superseded.snapshot_id, weights)):
        seen = tables.read(spark, features, [D2], snapshot).collect()
        assert digests_per_date(seen) == {D2: {digest.sha256}}
    rows = tables.read(spark, features).select("path", "upload_date", "weights_sha256")
    digests = {"first": weights.sha256, "second": second.sha256, "third": third.sha256}
    return erased, digests, sorted(tuple(r) for r in rows.collect())


def test_three_outside_readers_see_exactly_the_published_rows(
    published, spark, settings, fresh_layout, outside_readers
) -> None:
    readers = outside_readers
    erased, digests, expected = published
    assert len(set(digests.values())) == 3  # each write's rows are told apart
    assert len(expected) == 9 and erased not in {path for path, _, _ in expected}
    assert digests_per_date(
        {"upload_date": date, "weights_sha256": digest} for _, date, digest in expected
    ) == {D1: {digests["first"]}, D2: {digests["second"]}}
    namespace, table = fresh_layout.namespace, tables.FEATURES
    where = (settings.catalog_uri, settings.s3_endpoint, settings.region, namespace, table)
    assert readers.spark_sql(spark, namespace, table) == expected
    assert readers.pyiceberg(*where) == expected
    assert readers.duckdb(*where) == expected
