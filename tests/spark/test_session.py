"""The local Spark session's prerequisites fail in one line before Spark starts."""

import pytest

from spark.session import s3a_conf, s3a_jars
from spark.settings import ConfigError, Settings


def test_missing_s3a_jars_are_one_line(tmp_path) -> None:
    (tmp_path / "unrelated.jar").write_bytes(b"")
    with pytest.raises(ConfigError, match="S3A jars missing") as error:
        s3a_jars(tmp_path)
    assert "\n" not in str(error.value)


def test_the_project_jars_include_hadoop_aws() -> None:
    assert any(j.name.startswith("hadoop-aws-3.3.4") for j in s3a_jars())


def test_s3a_requests_encryption_and_fails_fast(settings: Settings) -> None:
    conf = s3a_conf(settings)
    assert conf["fs.s3a.server-side-encryption-algorithm"] == "AES256"
    assert conf["fs.s3a.endpoint"] == settings.s3_endpoint
    assert int(conf["fs.s3a.retry.limit"]) <= 3
