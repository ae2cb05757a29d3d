"""How workers address and sign their GETs on real AWS (no request is sent), and what an answer
other than the object becomes, against the local S3 server."""

from urllib.parse import parse_qs, urlsplit

import pytest

from spark.fetch import ImageSource, Unfetchable


@pytest.mark.parametrize("region", ["eu-west-1", "eu-west-3", "eu-central-1"])
def test_gets_on_aws_are_sigv4_to_the_bucket_s_regional_host(region, monkeypatch) -> None:
    # SigV2 (botocore's presign default in older regions) is refused for newer buckets and
    # KMS-encrypted objects; the global host redirects a new bucket's requests elsewhere.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    signer, _ = ImageSource(region, None, 1024, 4).client()
    url = signer.generate_presigned_url(
        "get_object", Params={"Bucket": "fruits-data", "Key": "raw/a b.jpg"}, ExpiresIn=60
    )
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.scheme == "https" and parts.netloc == f"fruits-data.s3.{region}.amazonaws.com"
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert f"/{region}/s3/aws4_request" in query["X-Amz-Credential"][0]


def test_a_missing_or_changed_object_is_unfetchable_with_its_reason(settings, s3) -> None:
    key = f"{settings.prefix}/test_fetch/apple.jpg"
    etag = s3.put_object(Bucket=settings.bucket, Key=key, Body=b"jpeg bytes")["ETag"].strip('"')
    source = ImageSource.of(settings)
    path = f"s3://{settings.bucket}/{key}"
    assert source.get(path, etag) == b"jpeg bytes"
    with pytest.raises(Unfetchable, match="changed after the manifest was listed"):
        source.get(path, "0" * 32)
    s3.delete_object(Bucket=settings.bucket, Key=key)
    with pytest.raises(Unfetchable, match="no longer in S3"):
        source.get(path, etag)
