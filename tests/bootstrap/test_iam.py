"""The IAM policy against the layout, and against every key a real pipeline run writes."""

import json
from dataclasses import replace

import pytest

from bootstrap.iam import READ, WRITE, allows, policy
from spark.layout import RAW, WRITTEN_PREFIXES, Layout
from spark.pipeline import fit_and_save_pca, write_reduced
from spark.settings import Settings
from spark.storage import list_keys


def staged(settings: Settings) -> Settings:
    return replace(settings, staging_bucket="fruits-staging", staging_prefix="emr_staging")


def test_no_wildcard_beyond_the_pipeline_prefixes(settings) -> None:
    document = policy(staged(settings))
    text = json.dumps(document)
    assert (
        '"s3:*"' not in text
        and '"*"' not in text
        and f"arn:aws:s3:::{settings.bucket}/*" not in text
    )
    for statement in document["Statement"]:
        resources = statement["Resource"]
        for arn in [resources] if isinstance(resources, str) else resources:
            assert arn.startswith(("arn:aws:s3:::fruits-test", "arn:aws:s3:::fruits-staging"))


def test_the_policy_follows_the_layout(settings) -> None:
    document = policy(staged(settings))
    layout = Layout(settings.bucket, settings.prefix)
    for prefix in WRITTEN_PREFIXES:
        assert allows(
            document, "s3:PutObject", settings.bucket, layout.key(prefix, "x/part-0.parquet")
        )
    raw_key = layout.raw_image_key("2026-11-20", "kiwi", "a.jpg")
    assert allows(document, "s3:GetObject", settings.bucket, raw_key)
    assert not allows(document, "s3:PutObject", settings.bucket, raw_key)  # raw/ is read-only
    assert not allows(document, "s3:GetObject", settings.bucket, "elsewhere/secret.txt")
    assert allows(document, "s3:PutObject", "fruits-staging", "emr_staging/run/step/events.pkl")
    assert set(READ) <= set(WRITE)
    assert RAW not in WRITTEN_PREFIXES


@pytest.mark.slow
def test_every_key_a_run_writes_is_allowed(
    spark, s3, settings, fresh_layout, upload_sample, weights, extract
) -> None:
    upload_sample(fresh_layout, ["2026-11-15"], per_date=3)
    extract(fresh_layout, ["2026-11-15"], weights)
    version = fit_and_save_pca(spark, fresh_layout, s3, k=2, weights_sha256=weights.sha256).version
    write_reduced(spark, fresh_layout, s3, ["2026-11-15"], version)
    document = policy(replace(settings, prefix=fresh_layout.prefix))
    raw = fresh_layout.raw_prefix()
    written = [
        k for k in list_keys(s3, settings.bucket, fresh_layout.key()) if not k.startswith(raw)
    ]
    assert len(written) > 5
    denied = [k for k in written if not allows(document, "s3:PutObject", settings.bucket, k)]
    assert denied == []
