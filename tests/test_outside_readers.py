"""Readers outside the project (Spark SQL, pyiceberg, DuckDB) see exactly the published rows:
not what a run staged, not what a re-run superseded, not what an erasure removed."""

import pytest

from spark import tables
from spark.erasure import erase_image
from spark.pipeline import stage_features

pytestmark = pytest.mark.slow
D1, D2 = "2026-10-01", "2026-10-02"


@pytest.fixture
def published(spark, s3, settings, fresh_layout, upload_sample, extract, weights):
    """Two dates published, one of them twice (superseded), a run staged and never
    published, and an image erased: the published rows, as the project reads them."""
    upload_sample(fresh_layout, [D1, D2], per_date=4, broken=True)
    extract(fresh_layout, [D1, D2], weights)
    extract(fresh_layout, [D1], weights)  # supersedes D1's first version
    from spark.fetch import ImageSource

    stage_features(spark, fresh_layout, s3, [D2], weights, source=ImageSource.of(settings))
    features = tables.table(fresh_layout, tables.FEATURES)
    erased = sorted(r.path for r in tables.read(spark, features, [D1]).collect())[0]
    erase_image(spark, fresh_layout, s3, erased, write_grace_hours=24)
    rows = tables.read(spark, features).select("path", "upload_date").collect()
    return erased, sorted((r.path, r.upload_date) for r in rows)


def test_three_outside_readers_see_exactly_the_published_rows(
    published, spark, settings, fresh_layout, outside_readers
) -> None:
    readers = outside_readers
    erased, expected = published
    assert len(expected) == 9 and erased not in {path for path, _ in expected}
    namespace, table = fresh_layout.namespace, tables.FEATURES
    where = (settings.catalog_uri, settings.s3_endpoint, settings.region, namespace, table)
    assert readers.spark_sql(spark, namespace, table) == expected
    assert readers.pyiceberg(*where) == expected
    assert readers.duckdb(*where) == expected
