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


# --- a node's boot under local-disk encryption with KMS (issue 21, finding 5) ------------------
# The fake is given the account's network (moto's EC2, served with KMS by the test S3 server):
# a node of a cluster whose security configuration encrypts local disks with AwsKms asks KMS
# for its data key at boot, as the instance role, from its subnet.
KMS_SECURITY_CONFIGURATION = "fruits-kms-test"


@pytest.fixture
def account(settings, local_s3):
    """moto's EC2 and KMS of the test S3 server (one server serves every service)."""
    import boto3

    def client(service: str):
        return boto3.client(service, region_name=settings.region, endpoint_url=settings.s3_endpoint)

    return client


@pytest.fixture
def private_subnet(account, settings) -> str:
    """A subnet on a route table of its own with no default route (no NAT, no internet
    gateway), in a VPC tagged for the EMR managed policies, with S3's gateway endpoint."""
    from bootstrap.aws.roles import MANAGED_POLICY_TAG

    ec2 = account("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    ec2.create_tags(Resources=[vpc], Tags=[MANAGED_POLICY_TAG])
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    ec2.create_vpc_endpoint(
        VpcId=vpc, ServiceName=f"com.amazonaws.{settings.region}.s3",
        VpcEndpointType="Gateway", RouteTableIds=[table],
    )  # fmt: skip
    return subnet


def add_kms_endpoint(account, settings, subnet: str) -> None:
    ec2 = account("ec2")
    vpc = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]
    ec2.create_vpc_endpoint(
        VpcId=vpc, ServiceName=f"com.amazonaws.{settings.region}.kms",
        VpcEndpointType="Interface", SubnetIds=[subnet], PrivateDnsEnabled=True,
    )  # fmt: skip


def project_key(account, key_policy: dict) -> str:
    import json

    kms = account("kms")
    arn = kms.create_key(Description="fruits: test disks")["KeyMetadata"]["Arn"]
    kms.put_key_policy(KeyId=arn, PolicyName="default", Policy=json.dumps(key_policy))
    return arn


@pytest.fixture
def kms_cluster(settings, account, tmp_path):
    """kms_cluster(subnet, key, instance_policy, actions) -> (the fake EMR, the cluster) once
    the cluster is WAITING or has ended: a fake EMR given the network, its security
    configuration `create`'s (bootstrap.aws.emr_cluster) with the key; for each of `actions`,
    a bootstrap action that fails the cluster (BOOTSTRAP_FAILURE) if it runs."""
    import json

    from bootstrap.aws import roles
    from bootstrap.aws.emr_cluster import ClusterOptions, security_configuration
    from bootstrap.local.fake_emr import FakeEmr, FakeEmrTiming

    fakes = []

    def _start(subnet: str, key: str, instance_policy: dict | None = None, actions=()):
        fake = FakeEmr(
            settings, tmp_path / f"emr{len(fakes)}", timing=FakeEmrTiming(starting_s=0.05),
            network=account("ec2"), instance_policy=instance_policy,
        )  # fmt: skip
        fakes.append(fake)
        options = ClusterOptions(kms_key_arn=key, tls_certificates="s3://staging/bootstrap/t.zip")
        fake.call("CreateSecurityConfiguration", {
            "Name": KMS_SECURITY_CONFIGURATION,
            "SecurityConfiguration": json.dumps(security_configuration(options)),
        })  # fmt: skip
        never_staged = {"Name": "deps", "ScriptBootstrapAction": {
            "Path": f"s3://{settings.bucket}/kms-test/never-staged.sh", "Args": []}}  # fmt: skip
        request = {
            "Name": "kms", "SecurityConfiguration": KMS_SECURITY_CONFIGURATION,
            "Instances": {"Ec2SubnetId": subnet, "KeepJobFlowAliveWhenNoSteps": True},
            "BootstrapActions": [never_staged for _ in actions],
            "JobFlowRole": roles.INSTANCE_PROFILE, "ServiceRole": roles.SERVICE_ROLE,
        }  # fmt: skip
        cluster = fake.clusters[fake.call("RunJobFlow", request)["JobFlowId"]]
        deadline = time.monotonic() + 90  # a WAITING node has made its venv
        while cluster.state not in ("WAITING", "TERMINATED", "TERMINATED_WITH_ERRORS"):
            assert time.monotonic() < deadline, cluster.history
            time.sleep(0.05)
        return fake, cluster

    yield _start
    for fake in fakes:
        fake.stop()


def test_a_kms_encrypted_node_without_a_route_to_kms_fails_to_boot(
    kms_cluster, account, settings, private_subnet
) -> None:
    """No NAT, no KMS interface endpoint: the node cannot get its disks' data key; the cluster
    ends TERMINATED_WITH_ERRORS (INSTANCE_FAILURE) before any bootstrap action runs."""
    from bootstrap.aws.roles import key_policy
    from bootstrap.local.fake_emr import ACCOUNT

    key = project_key(account, key_policy(ACCOUNT))
    fake, cluster = kms_cluster(private_subnet, key, actions=["never staged"])
    assert cluster.state == "TERMINATED_WITH_ERRORS", cluster.history
    reason = fake.call("DescribeCluster", {"ClusterId": cluster.id})["Cluster"]["Status"]
    assert reason["StateChangeReason"]["Code"] == "INSTANCE_FAILURE"
    assert "no route to KMS" in reason["StateChangeReason"]["Message"]
    assert key in reason["StateChangeReason"]["Message"]
    assert "BOOTSTRAPPING" not in [state for state, _ in cluster.history]
    assert not (cluster.node.root / "tmp" / "bootstrap-actions").exists()
    assert cluster.node.kms_calls == [f"kms:GenerateDataKey {key}: no route to KMS"]


def test_a_kms_encrypted_node_gets_its_data_key_through_the_kms_endpoint(
    kms_cluster, account, settings, private_subnet
) -> None:
    """With KMS's interface endpoint (private DNS) the node's GenerateDataKey reaches moto's
    KMS and the cluster reaches WAITING; the project's key policy names the instance role,
    so its identity policy (bootstrap.aws.iam instance, no KMS statement) needs no grant."""
    from bootstrap.aws.iam import instance_policy
    from bootstrap.aws.roles import key_policy
    from bootstrap.local.fake_emr import ACCOUNT

    add_kms_endpoint(account, settings, private_subnet)
    key = project_key(account, key_policy(ACCOUNT))
    _, cluster = kms_cluster(private_subnet, key, instance_policy(settings))
    assert cluster.state == "WAITING", cluster.reason
    assert cluster.node.kms_calls == [f"kms:GenerateDataKey {key}: granted"]


def test_a_node_whose_role_the_key_does_not_grant_is_refused_its_data_key(
    kms_cluster, account, settings, private_subnet
) -> None:
    """A key policy that leaves the key's use to IAM (the account's statement only): the
    instance policy without a KMS grant is refused, as KMS refuses it; with the grant (its
    conditions evaluated: the cluster's region) the node boots."""
    from bootstrap.aws.iam import instance_policy
    from bootstrap.aws.roles import key_policy
    from bootstrap.local.fake_emr import ACCOUNT

    add_kms_endpoint(account, settings, private_subnet)
    account_only = key_policy(ACCOUNT) | {"Statement": key_policy(ACCOUNT)["Statement"][:1]}
    key = project_key(account, account_only)
    fake, refused = kms_cluster(private_subnet, key, instance_policy(settings))
    assert refused.state == "TERMINATED_WITH_ERRORS", refused.history
    assert refused.reason[0] == "INSTANCE_FAILURE"
    assert f"not authorized to perform kms:GenerateDataKey on {key}" in refused.reason[1]
    assert refused.node.kms_calls == [
        f"kms:GenerateDataKey {key}: AccessDeniedException (ImplicitDeny)"
    ]

    policy = instance_policy(settings)

    def with_kms_grant(region: str) -> dict:
        grant = {
            "Effect": "Allow", "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
            "Resource": [key], "Condition": {"StringEquals": {"aws:RequestedRegion": region}},
        }  # fmt: skip
        return policy | {"Statement": [*policy["Statement"], grant]}

    _, other_region = kms_cluster(private_subnet, key, with_kms_grant("eu-north-1"))
    assert other_region.state == "TERMINATED_WITH_ERRORS"  # the grant's condition fails
    granted = with_kms_grant(settings.region)
    _, booted = kms_cluster(private_subnet, key, granted)
    assert booted.state == "WAITING", booted.reason
    assert booted.node.kms_calls == [f"kms:GenerateDataKey {key}: granted"]
