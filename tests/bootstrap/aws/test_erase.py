"""bootstrap.aws.erase under the emr deployment: Spark would start here without S3A or the
cluster's Iceberg, so the command refuses in one line, naming the Dagster job that erases on
the cluster, with a run config that job takes."""

import json
import shlex

import dagster as dg
import pytest

from bootstrap.aws import erase
from fruits_assets.definitions import definitions_for
from fruits_assets.erasure import ERASE_JOB

EMR_ENV = {
    "FRUITS_DEPLOYMENT": "emr", "FRUITS_REGION": "eu-west-3", "FRUITS_BUCKET": "fruits-data",
    "FRUITS_STAGING_BUCKET": "fruits-staging",
    "FRUITS_WEIGHTS": "s3://fruits-data/fruits/models/weights/mobilenet_v2.h5",
}  # fmt: skip
IMAGE = "s3://fruits-data/fruits/raw/upload_date=2026-11-20/kiwi/a.jpg"


@pytest.mark.parametrize("argv", [[IMAGE], ["--sha256", "9f86d081884c7d65"]])
def test_under_emr_it_names_the_dagster_job_instead_of_starting_spark(
    argv, monkeypatch, capsys
) -> None:
    for key, value in EMR_ENV.items():
        monkeypatch.setenv(key, value)

    def no_spark(*args, **kwargs):
        raise AssertionError("Spark started on the operator's machine")

    monkeypatch.setattr(erase, "build_session", no_spark)
    monkeypatch.setattr(erase, "s3_client", no_spark)  # nor any AWS call
    assert erase.main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "under the emr deployment the erasure runs on the cluster: dg launch" in line
    command = shlex.split(line[line.index("dg launch") :])
    assert command[:4] == ["dg", "launch", "--job", ERASE_JOB]
    config = json.loads(command[command.index("--config-json") + 1])
    job = definitions_for("emr", EMR_ENV).get_job_def(ERASE_JOB)
    assert dg.validate_run_config(job, config)["ops"]["erase"]["config"] == (
        {"path": IMAGE, "sha256": ""} if argv == [IMAGE] else {"path": "", "sha256": argv[1]}
    )
