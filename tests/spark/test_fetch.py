"""How workers address and sign their GETs on real AWS (no request is sent), and what an answer
other than the object becomes, against the local S3 server."""

from urllib.parse import urlsplit

import pytest

from spark.fetch import _CLIENTS, ImageSource, Unfetchable


@pytest.mark.parametrize("region", ["eu-west-1", "eu-west-3", "eu-central-1"])
def test_gets_on_aws_are_sigv4_to_the_bucket_s_regional_host(region, monkeypatch) -> None:
    # SigV2 is refused for newer buckets and KMS-encrypted objects; the global host redirects
    # a new bucket's requests, and a redirected request's signature no longer matches.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    source = ImageSource(region, None, 1024, 4)
    _CLIENTS.clear()  # credentials are read once per worker
    url, headers = source.signed_request("s3://fruits-data/raw/a b+c.jpg", "abc123")
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == f"fruits-data.s3.{region}.amazonaws.com"
    assert parts.path == "/raw/a%20b%2Bc.jpg" and not parts.query
    auth = headers["Authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert f"/{region}/s3/aws4_request" in auth and "if-match" in auth  # the ETag is signed
    assert headers["If-Match"] == '"abc123"'
    _CLIENTS.clear()


def test_an_endpoint_from_the_aws_environment_is_honoured(monkeypatch) -> None:
    """As boto3 does: AWS_ENDPOINT_URL_S3 (how the fake EMR's nodes reach the local server)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9/")
    _CLIENTS.clear()
    url, _ = ImageSource("eu-west-3", None, 1024, 4).signed_request("s3://b/raw/x.jpg", "e")
    assert url == "http://127.0.0.1:9/b/raw/x.jpg"
    _CLIENTS.clear()


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
