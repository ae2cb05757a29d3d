import os
import urllib.request

import boto3
import pytest

from bootstrap.local.local_s3 import LocalS3, main
from spark.settings import ConfigError

EU = {"LocationConstraint": "eu-west-3"}


def test_start_serves_s3_on_loopback_and_stop_ends_it(tmp_path, unused_port, test_env) -> None:
    server = LocalS3(f"http://127.0.0.1:{unused_port}", state_dir=tmp_path)
    pid = server.start()
    try:
        assert server.start() == pid  # already running: same process
        assert server.responds()
        client = boto3.client("s3", endpoint_url=server.endpoint, region_name="eu-west-3")
        client.create_bucket(Bucket="bucket", CreateBucketConfiguration=EU)
        client.put_object(Bucket="bucket", Key="k", Body=b"v")
        assert client.get_object(Bucket="bucket", Key="k")["Body"].read() == b"v"
    finally:
        assert server.stop()
    assert not server.responds()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not server.stop()  # nothing left to stop


def test_objects_do_not_survive_a_restart(tmp_path, unused_port, test_env) -> None:
    """What the README says: moto keeps objects in memory only."""
    server = LocalS3(f"http://127.0.0.1:{unused_port}", state_dir=tmp_path)
    client = boto3.client("s3", endpoint_url=server.endpoint, region_name="eu-west-3")
    server.start()
    try:
        client.create_bucket(Bucket="bucket", CreateBucketConfiguration=EU)
    finally:
        server.stop()
    server.start()
    try:
        assert client.list_buckets()["Buckets"] == []
    finally:
        server.stop()


def test_refuses_a_port_someone_else_serves(tmp_path, local_s3) -> None:
    with pytest.raises(ConfigError, match="something else"):
        LocalS3(local_s3.endpoint, state_dir=tmp_path / "other").start()


def test_only_loopback_endpoints() -> None:
    for endpoint in ("http://10.0.0.5:9000", "http://0.0.0.0:9000", "http://example.org:9000"):
        with pytest.raises(ConfigError, match="loopback"):
            LocalS3(endpoint)


def test_cli_status_start_stop(tmp_path, unused_port, monkeypatch, capsys, test_env) -> None:
    monkeypatch.setenv("FRUITS_S3_ENDPOINT", f"http://127.0.0.1:{unused_port}")
    assert main(["status"], tmp_path) == 3
    assert main(["start"], tmp_path) == 0
    try:
        assert main(["status"], tmp_path) == 0
        with urllib.request.urlopen(f"http://127.0.0.1:{unused_port}/moto-api/data.json") as page:
            assert page.status == 200
    finally:
        assert main(["stop"], tmp_path) == 0
    out = capsys.readouterr().out
    assert "not running" in out and "running on" in out and "stopped" in out


def test_cli_ls_lists_what_the_pipeline_stored(s3, settings, local_s3, capsys) -> None:
    key = f"{settings.prefix}/features/upload_date=2026-11-20/_published.json"
    s3.put_object(Bucket=settings.bucket, Key=key, Body=b"{}")
    assert main(["ls", "features/"]) == 0
    out = capsys.readouterr().out
    assert f"s3://{settings.bucket}/{key}" in out and out.split()[0] == "2"
