"""The fake EMR's control plane behaves as EMR's: the cluster's state walk and reasons,
auto-termination, refused steps, delayed step logs, CancelSteps. Steps are tiny shell scripts:
what is tested is the control plane, not Spark."""

import gzip
import time

import psutil
import pytest
from botocore.exceptions import ClientError

from bootstrap.local.fake_emr import ENDED_CLUSTER_REFUSAL


def bash_step(script: str, name: str = "script") -> dict:
    return {
        "Name": name,
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["bash", "-c", script]},
    }


def add_step(emr, cluster_id: str, script: str) -> str:
    return emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[bash_step(script)])["StepIds"][0]


def status_of(emr, cluster_id: str) -> dict:
    return emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]


def until_cluster(emr, cluster_id: str, state: str, timeout_s: float = 10) -> dict:
    deadline = time.monotonic() + timeout_s
    while (status := status_of(emr, cluster_id))["State"] != state:
        assert time.monotonic() < deadline, f"cluster stayed {status['State']}"
        time.sleep(0.05)
    return status


def gone_soon(pid: int, timeout_s: float = 5) -> bool:
    """The process exited (a zombie left to a non-reaping init counts as exited)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


def test_a_cluster_walks_emrs_states_and_ends_by_user_request(
    quick_emr, start_cluster, step_reaches
) -> None:
    emr, cluster_id = start_cluster(wait=False)
    assert status_of(emr, cluster_id)["State"] == "STARTING"
    step_id = add_step(emr, cluster_id, "sleep 0.3")  # queued while the cluster starts
    last_id = add_step(emr, cluster_id, "true")  # back to back: the cluster stays RUNNING
    assert emr.describe_step(ClusterId=cluster_id, StepId=step_id)["Step"]["Status"]["State"] == (
        "PENDING"
    )
    step_reaches(emr, cluster_id, step_id, "RUNNING")
    assert status_of(emr, cluster_id)["State"] == "RUNNING"
    step_reaches(emr, cluster_id, last_id, "COMPLETED")
    waiting = until_cluster(emr, cluster_id, "WAITING")
    assert waiting["Timeline"]["ReadyDateTime"] >= waiting["Timeline"]["CreationDateTime"]

    emr.terminate_job_flows(JobFlowIds=[cluster_id])
    assert status_of(emr, cluster_id)["State"] == "TERMINATING"
    ended = until_cluster(emr, cluster_id, "TERMINATED")
    assert ended["StateChangeReason"] == {
        "Code": "USER_REQUEST",
        "Message": "Terminated by user request",
    }
    assert "EndDateTime" in ended["Timeline"]
    walk = [state for state, _ in quick_emr.emr.clusters[cluster_id].history]
    assert walk == [
        "STARTING", "BOOTSTRAPPING", "WAITING", "RUNNING", "WAITING", "TERMINATING", "TERMINATED",
    ]  # fmt: skip
    listed = emr.list_clusters(ClusterStates=["TERMINATED"])["Clusters"]
    assert cluster_id in [c["Id"] for c in listed]
    assert cluster_id not in [
        c["Id"] for c in emr.list_clusters(ClusterStates=["WAITING"])["Clusters"]
    ]


def test_an_idle_cluster_auto_terminates_and_then_refuses_steps(quick_emr, start_cluster) -> None:
    emr, cluster_id = start_cluster(idle_timeout_s=60)  # 1.2 s at the tests' scale
    add_step(emr, cluster_id, "true")  # activity postpones the idle deadline
    ended = until_cluster(emr, cluster_id, "TERMINATED")
    assert ended["StateChangeReason"]["Code"] == "ALL_STEPS_COMPLETED"
    assert "Idle for 60 seconds" in ended["StateChangeReason"]["Message"]
    timeline = ended["Timeline"]
    assert (timeline["EndDateTime"] - timeline["ReadyDateTime"]).total_seconds() >= 1.2
    with pytest.raises(ClientError) as refused:
        add_step(emr, cluster_id, "true")
    assert refused.value.response["Error"]["Code"] == "ValidationException"
    assert refused.value.response["Error"]["Message"] == ENDED_CLUSTER_REFUSAL
    with pytest.raises(ClientError) as unknown:
        emr.describe_cluster(ClusterId="j-NOSUCHCLUSTER")
    assert unknown.value.response["Error"]["Code"] == "InvalidRequestException"


def test_step_logs_reach_the_log_uri_after_emrs_delay(
    quick_emr, start_cluster, step_reaches, s3, fresh_layout
) -> None:
    emr, cluster_id = start_cluster()
    step_id = add_step(emr, cluster_id, "echo out-line; echo 'ValueError: no weights' >&2; exit 3")
    status = step_reaches(emr, cluster_id, step_id, "FAILED")
    key = f"{fresh_layout.prefix}/logs/{cluster_id}/steps/{step_id}/stderr.gz"
    assert status["FailureDetails"] == {
        "Reason": "ValueError: no weights",
        "Message": "Step command exited with return code 3.",
        "LogFile": f"s3://{fresh_layout.bucket}/{key}",
    }
    with pytest.raises(ClientError):  # EMR reports the step's end before its logs
        s3.head_object(Bucket=fresh_layout.bucket, Key=key)
    time.sleep(quick_emr.emr.timing.log_push_delay_s + 0.5)
    body = s3.get_object(Bucket=fresh_layout.bucket, Key=key)["Body"].read()
    assert gzip.decompress(body) == b"ValueError: no weights\n"
    stdout = s3.get_object(Bucket=fresh_layout.bucket, Key=key.replace("stderr", "stdout"))
    assert gzip.decompress(stdout["Body"].read()) == b"out-line\n"


def test_cancel_steps_cancels_pending_and_interrupts_running_steps(
    quick_emr, start_cluster, step_reaches, tmp_path
) -> None:
    emr, cluster_id = start_cluster()
    child = tmp_path / "child.pid"
    # A step whose process has a child, as spark-submit has its JVM and Python workers.
    running = add_step(emr, cluster_id, f"sleep 60 & echo $! > {child}; wait")
    pending = add_step(emr, cluster_id, "true")
    step_reaches(emr, cluster_id, running, "RUNNING")
    while not child.exists() or not child.read_text().strip():
        time.sleep(0.05)
    answer = emr.cancel_steps(
        ClusterId=cluster_id, StepIds=[pending, running], StepCancellationOption="SEND_INTERRUPT"
    )["CancelStepsInfoList"]
    assert [a["Status"] for a in answer] == ["SUBMITTED", "SUBMITTED"]
    assert step_reaches(emr, cluster_id, pending, "CANCELLED")
    step_reaches(emr, cluster_id, running, "CANCELLED")
    assert gone_soon(int(child.read_text()))  # the step's whole process group was signalled
    # The queue is free: the next step runs; a finished step cannot be cancelled.
    after = add_step(emr, cluster_id, "true")
    step_reaches(emr, cluster_id, after, "COMPLETED")
    again = emr.cancel_steps(ClusterId=cluster_id, StepIds=[after])["CancelStepsInfoList"][0]
    assert again["Status"] == "FAILED"


def test_a_node_s_s3_client_needs_the_region_the_cluster_exports(
    quick_emr, settings, fresh_layout, step_reaches, s3
) -> None:
    """As dagster-aws's emr_step_main.py does, a step makes `boto3.client("s3")` with no
    region: with the spark-env export of `emr_cluster create` (AWS_REGION) it reaches S3
    through the subnet's regional gateway; without it, it signs for us-east-1 and finds no
    route, as in a private subnet on AWS."""
    import sys
    from dataclasses import replace

    import boto3

    from bootstrap.aws.emr_cluster import ClusterOptions, cluster_request
    from bootstrap.local.fake_emr import EMR_SPARK_ENV

    key = f"{fresh_layout.prefix}/probe.txt"
    s3.put_object(Bucket=fresh_layout.bucket, Key=key, Body=b"probe")
    staged = replace(settings, staging_bucket=fresh_layout.bucket)
    configurations = cluster_request(staged, ClusterOptions(), {})["Configurations"]
    exported = configurations[0]["Configurations"][0]["Properties"]
    without_region = {k: v for k, v in exported.items() if not k.startswith("AWS_")}
    read = (f'import boto3; boto3.client("s3").get_object(Bucket="{fresh_layout.bucket}", '
            f'Key="{key}")')  # fmt: skip
    script = f"set -a; . {EMR_SPARK_ENV}; set +a; exec {sys.executable} -c '{read}'"
    emr = boto3.client("emr", region_name=settings.region)
    outcomes = {}
    for name, properties in (("exported", exported), ("none", without_region)):
        spark_env = [{"Classification": "spark-env", "Configurations": [
            {"Classification": "export", "Properties": properties}]}]  # fmt: skip
        cluster_id = emr.run_job_flow(
            Name=name, ReleaseLabel="emr-7.12.0", Configurations=spark_env,
            Instances={"KeepJobFlowAliveWhenNoSteps": True},
            JobFlowRole="fruits-emr-instance", ServiceRole="fruits-emr-service",
        )["JobFlowId"]  # fmt: skip
        until_cluster(emr, cluster_id, "WAITING", timeout_s=60)
        step = add_step(emr, cluster_id, script)
        outcomes[name] = step_reaches(emr, cluster_id, step, "COMPLETED", "FAILED", timeout_s=60)
    assert outcomes["exported"]["State"] == "COMPLETED", outcomes["exported"]
    assert outcomes["none"]["State"] == "FAILED"
    assert quick_emr.emr.gateway.refused[-1].endswith("signed for us-east-1")
