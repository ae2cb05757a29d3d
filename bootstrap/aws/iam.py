"""The IAM policies of the three principals of a deployment, each the only grant it needs.

    python -m bootstrap.aws.iam instance    the cluster's instance role (attached by roles.py)
    python -m bootstrap.aws.iam host        whoever runs Dagster: adds, follows and cancels steps
    python -m bootstrap.aws.iam operator    whoever runs the bootstrap.* commands (roles, buckets,
                                        doctor, create...)

instance: read-only on raw/, read-write on what the pipeline writes (spark.layout.
WRITTEN_PREFIXES, the tables' files included) and on the staging prefix but its bootstrap/
(read-only: what the cluster re-reads), the Glue calls of Iceberg's catalog on the namespace's
database and tables only (catalog_type glue), s3:ListBucket on both buckets (HeadBucket is
authorized by s3:ListBucket, and carries no s3:prefix: hence "IfExists"). The customer KMS
key is granted by its key policy (bootstrap.aws.roles.key_policy), which names this role, so
no KMS statement is needed here.
host: the EMR calls of dagster-aws's step launcher on the project's clusters only (tag
project=fruits), its staging files, the step logs, and what raw_images does on the host (list
raw/, write manifests/).
operator: RunJobFlow and security configurations (no resource-level permissions exist for them:
"*", limited to the region), iam:PassRole of exactly the two roles, the roles command's own IAM,
KMS and EC2-tag calls, bucket set-up, and staging the bootstrap artifacts, weights and images.
"""

from __future__ import annotations

import fnmatch
import json
import sys
from typing import Any

from bootstrap import cli
from fruits_assets.deployments import current_settings
from spark.layout import MANIFESTS, RAW, STAGING_BOOTSTRAP, WEIGHTS, WRITTEN_PREFIXES, Layout
from spark.settings import Settings

READ = ["s3:GetObject"]
WRITE = [
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
]
LIST = ["s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"]
# What Iceberg's Glue catalog calls for the pipeline's tables: the namespace is a Glue database
# (created by the first run), each table a Glue table whose metadata location a commit swaps
# with UpdateTable.
GLUE_TABLES = [
    "glue:GetDatabase",
    "glue:CreateDatabase",
    "glue:GetTable",
    "glue:GetTables",
    "glue:CreateTable",
    "glue:UpdateTable",
]
PRINCIPALS = ("instance", "host", "operator")
EMR_CLEANUP_ROLE = (
    "arn:aws:iam::*:role/aws-service-role/elasticmapreduce.amazonaws.com*/"
    "AWSServiceRoleForEMRCleanup*"
)
PROJECT_TAG = {"Key": "project", "Value": "fruits"}
# The roles bootstrap.aws.roles creates, named here because the policies grant them.
SERVICE_ROLE = "fruits-emr-service"
INSTANCE_ROLE = "fruits-emr-instance"
INSTANCE_PROFILE = "fruits-emr-instance"


def _objects(bucket: str, key_prefix: str) -> str:
    # "prefix*", not "prefix/*": EMRFS and S3A also touch the folder key itself and EMRFS's
    # "prefix_$folder$" marker.
    return f"arn:aws:s3:::{bucket}/{key_prefix.strip('/')}*"


def _sid(*words: str) -> str:
    return "".join(c for c in "".join(w.title() for w in words) if c.isalnum())


def _list(bucket: str, root: str, prefixes: list[str]) -> dict[str, Any]:
    root = root.strip("/")
    allowed = [f"{p.strip('/')}*" for p in prefixes] + ([root, f"{root}/"] if root else [])
    return {
        "Sid": _sid("List", bucket),
        "Effect": "Allow",
        "Action": LIST,
        "Resource": f"arn:aws:s3:::{bucket}",
        # Listings stay under the granted prefixes; HeadBucket (no prefix) passes.
        "Condition": {"StringLikeIfExists": {"s3:prefix": allowed}},
    }


def _allow(sid: str, actions: list[str], resources: list[str], **condition: Any) -> dict:
    statement: dict[str, Any] = {
        "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources
    }  # fmt: skip
    if condition:
        statement["Condition"] = condition
    return statement


def _document(statements: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def _staging(settings: Settings, *parts: str) -> str:
    return "/".join(p.strip("/") for p in (settings.staging_prefix, *parts) if p.strip("/"))


def _listings(settings: Settings, data_prefixes: list[str], staged: bool) -> list[dict]:
    listed = {settings.bucket: data_prefixes}
    if staged and settings.staging_bucket:
        listed.setdefault(settings.staging_bucket, []).append(settings.staging_prefix)
    return [
        _list(bucket, settings.prefix if bucket == settings.bucket else "", prefixes)
        for bucket, prefixes in listed.items()
    ]


def instance_policy(settings: Settings) -> dict[str, Any]:
    """The cluster's instance role: the pipeline's S3 traffic, the step files, the logs."""
    layout = Layout.of(settings)
    written = [layout.key(p) for p in WRITTEN_PREFIXES]
    statements = [
        _allow("ReadRawImages", READ, [_objects(settings.bucket, layout.key(RAW))]),
        _allow("WritePipelineOutputs", WRITE, [_objects(settings.bucket, p) for p in written]),
    ]
    if settings.catalog_type == "glue":
        statements.append(_allow("IcebergTablesInGlue", GLUE_TABLES, _glue_arns(settings)))
    if settings.staging_bucket:
        bucket = settings.staging_bucket
        statements += [
            # Code packages, step files and events, EMR's log pushes.
            _allow("EmrStaging", WRITE, [_objects(bucket, settings.staging_prefix)]),
            # What every node re-reads at start (bootstrap action, lock, wheelhouse, TLS zip):
            # never written from the cluster.
            _deny_writes("KeepBootstrapArtifacts", bucket, settings),
        ]
    return _document(statements + _listings(settings, [layout.key(RAW), *written], staged=True))


def _glue_arns(settings: Settings) -> list[str]:
    """The account's catalog (Glue authorizes a database's calls on it too), the namespace's
    database and its tables: no other database."""
    glue = f"arn:aws:glue:{settings.region}:*"
    return [
        f"{glue}:catalog",
        f"{glue}:database/{settings.namespace}",
        f"{glue}:table/{settings.namespace}/*",
    ]


def _deny_writes(sid: str, bucket: str, settings: Settings) -> dict[str, Any]:
    return {
        "Sid": sid,
        "Effect": "Deny",
        "Action": ["s3:PutObject", "s3:DeleteObject"],
        "Resource": [_objects(bucket, _staging(settings, STAGING_BOOTSTRAP) + "/")],
    }


def _cluster_arns(settings: Settings) -> list[str]:
    return [f"arn:aws:elasticmapreduce:{settings.region}:*:cluster/*"]


def host_policy(settings: Settings) -> dict[str, Any]:
    """Dagster's host: the step launcher's EMR calls and staging files, and raw_images."""
    layout = Layout.of(settings)
    project = {f"aws:ResourceTag/{PROJECT_TAG['Key']}": PROJECT_TAG["Value"]}
    steps = ["AddJobFlowSteps", "DescribeStep", "DescribeCluster", "ListSteps", "CancelSteps"]
    statements = [
        _allow(
            "StepsOnTheProjectsClusters",
            [f"elasticmapreduce:{a}" for a in steps],
            _cluster_arns(settings),
            StringEquals=project,
        ),
        # Finding the current cluster (no resource-level permission exists for it).
        _allow("FindClusters", ["elasticmapreduce:ListClusters"], ["*"],
               StringEquals={"aws:RequestedRegion": settings.region}),
        _allow("ListRawImages", READ, [_objects(settings.bucket, layout.key(RAW))]),
        _allow("WriteManifests", WRITE, [_objects(settings.bucket, layout.key(MANIFESTS))]),
    ]  # fmt: skip
    if settings.staging_bucket:
        bucket = settings.staging_bucket
        statements += [
            # Code package, pickled step and its events, the step's logs (read).
            _allow("EmrStaging", WRITE, [_objects(bucket, settings.staging_prefix)]),
            _deny_writes("KeepBootstrapArtifacts", bucket, settings),
        ]
    data = [layout.key(RAW), layout.key(MANIFESTS)]
    return _document(statements + _listings(settings, data, staged=True))


def operator_policy(settings: Settings) -> dict[str, Any]:
    """The bootstrap.* commands: roles and key, buckets, doctor, staging, the cluster."""
    region = {"aws:RequestedRegion": settings.region}
    role_arns = [f"arn:aws:iam::*:role/{r}" for r in (SERVICE_ROLE, INSTANCE_ROLE)]
    profile_arn = f"arn:aws:iam::*:instance-profile/{INSTANCE_PROFILE}"
    layout = Layout.of(settings)
    buckets = [settings.bucket] + ([settings.staging_bucket] if settings.staging_bucket else [])
    bucket_setup = [
        "CreateBucket", "ListBucket", "GetBucketLocation", "PutEncryptionConfiguration",
        "GetEncryptionConfiguration", "PutBucketPublicAccessBlock", "GetBucketPublicAccessBlock",
        "PutLifecycleConfiguration", "GetLifecycleConfiguration",
    ]  # fmt: skip
    uploads = [layout.key(RAW), layout.key(WEIGHTS)]
    staged = [_objects(settings.staging_bucket, _staging(settings, STAGING_BOOTSTRAP) + "/")]
    statements = [
        _allow("Clusters", [f"elasticmapreduce:{a}" for a in (
            "RunJobFlow", "AddTags", "CreateSecurityConfiguration",
            "DescribeSecurityConfiguration", "ListClusters",
        )], ["*"], StringEquals=region),
        _allow("ProjectClusters", [f"elasticmapreduce:{a}" for a in (
            "DescribeCluster", "ListSteps", "AddJobFlowSteps", "ListBootstrapActions",
            "TerminateJobFlows",
        )], _cluster_arns(settings)),
        # RunJobFlow passes the service role to EMR and the instance role to EC2 (so does
        # AddRoleToInstanceProfile), as AWS's AmazonEMRFullAccessPolicy_v2 grants them.
        _allow("PassTheServiceRoleToEmr", ["iam:PassRole"], [role_arns[0]],
               StringLike={"iam:PassedToService": "elasticmapreduce.amazonaws.com*"}),
        _allow("PassTheInstanceRoleToEc2", ["iam:PassRole"], [role_arns[1]],
               StringLike={"iam:PassedToService": "ec2.amazonaws.com*"}),
        # EMR's cleanup role, which the account's first cluster creates.
        _allow("EmrCleanupServiceLinkedRole", ["iam:CreateServiceLinkedRole"], [EMR_CLEANUP_ROLE],
               StringEquals={"iam:AWSServiceName": "elasticmapreduce.amazonaws.com"}),
        _allow("ManageTheTwoRoles", [f"iam:{a}" for a in (
            "GetRole", "CreateRole", "TagRole", "UpdateAssumeRolePolicy", "PutRolePolicy",
            "GetRolePolicy", "DeleteRolePolicy", "ListRolePolicies", "ListAttachedRolePolicies",
            "AttachRolePolicy", "DetachRolePolicy", "GetInstanceProfile",
            "CreateInstanceProfile", "AddRoleToInstanceProfile",
        )], [*role_arns, profile_arn]),
        _allow("TheKey", [f"kms:{a}" for a in (
            "CreateKey", "CreateAlias", "ListAliases", "DescribeKey", "GetKeyPolicy",
            "PutKeyPolicy", "TagResource",
        )], ["*"], StringEquals=region),
        _allow("TagAndCheckNetwork", [f"ec2:{a}" for a in (
            "CreateTags", "DescribeSubnets", "DescribeSecurityGroups", "DescribeRouteTables",
            "DescribeVpcEndpoints", "DescribeVpcs",
        )], ["*"], StringEquals=region),
        _allow("Buckets", ["s3:ListAllMyBuckets"], ["*"]),
        _allow("BucketSetUp", [f"s3:{a}" for a in bucket_setup],
               [f"arn:aws:s3:::{b}" for b in buckets]),
        _allow("StageImagesAndWeights", WRITE, [_objects(settings.bucket, p) for p in uploads]),
    ]  # fmt: skip
    if settings.staging_bucket:
        statements.append(_allow("StageBootstrapArtifacts", WRITE, staged))
    if settings.catalog_type == "glue":  # doctor checks the tables' database
        statements.append(_allow("CheckTheGlueDatabase", ["glue:GetDatabase"],
                                 _glue_arns(settings)[:2]))  # fmt: skip
    return _document(statements)


POLICIES = {"instance": instance_policy, "host": host_policy, "operator": operator_policy}


def policy(settings: Settings, principal: str = "instance") -> dict[str, Any]:
    return POLICIES[principal](settings)


# --- evaluating policies with their conditions ------------------------------------------------
Context = dict[str, str | list[str]]  # condition keys of a request -> their values


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _like(value: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern)


def _bool(value: str, pattern: str) -> bool:
    return value.lower() == pattern.lower()


# Each operator: how one request value is compared with one policy value (case-sensitive, as
# IAM compares values; keys are case-insensitive).
OPERATORS = {
    "StringEquals": str.__eq__, "StringLike": _like, "ArnEquals": str.__eq__,
    "ArnLike": _like, "Bool": _bool,
}  # fmt: skip
NEGATED = {
    "StringNotEquals": "StringEquals",
    "StringNotLike": "StringLike",
    "ArnNotLike": "ArnLike",
}


def _condition_holds(operator: str, key: str, wanted: Any, context: Context) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    found = {k.lower(): v for k, v in context.items()}.get(key.lower())
    if found is None:  # a missing key fails a condition, unless ...IfExists (or negated)
        return if_exists or base in NEGATED
    positive = NEGATED.get(base, base)
    if positive not in OPERATORS:
        raise ValueError(f"condition operator {operator} is not evaluated here")
    compare = OPERATORS[positive]
    matched = any(compare(str(v), str(w)) for v in _listed(found) for w in _listed(wanted))
    return matched != (base in NEGATED)


def _statement_applies(
    statement: dict[str, Any], action: str, resource: str, context: Context
) -> bool:
    actions = [a.lower() for a in _listed(statement.get("Action", []))]
    if not any(_like(action.lower(), a) for a in actions):
        return False
    if not any(_like(resource, r) for r in _listed(statement.get("Resource", []))):
        return False
    return all(
        _condition_holds(operator, key, wanted, context)
        for operator, keys in statement.get("Condition", {}).items()
        for key, wanted in keys.items()
    )  # fmt: skip


def decide(
    documents: list[dict[str, Any]], action: str, resource: str, context: Context | None = None
) -> str:
    """IAM's decision on one request under identity policies: "Deny" (an explicit Deny),
    "Allow", or "ImplicitDeny". Conditions are evaluated against `context` (the request's
    condition keys: iam:PassedToService, aws:RequestedRegion, aws:ResourceTag/..., ...)."""
    context = context or {}
    statements = [s for d in documents for s in _listed(d["Statement"])]
    applying = [s["Effect"] for s in statements if _statement_applies(s, action, resource, context)]
    if "Deny" in applying:
        return "Deny"
    return "Allow" if "Allow" in applying else "ImplicitDeny"


def allows(document: dict[str, Any], action: str, bucket: str, key: str) -> bool:
    """Whether `document` allows `action` on s3://bucket/key (Allow unless Denied; * wildcards,
    conditions not evaluated)."""
    arn = f"arn:aws:s3:::{bucket}/{key}"

    def matching(effect: str) -> bool:
        for statement in document["Statement"]:
            resources = statement["Resource"]
            resources = [resources] if isinstance(resources, str) else resources
            if (
                statement["Effect"] == effect
                and action in statement["Action"]
                and any(fnmatch.fnmatchcase(arn, r) for r in resources)
            ):
                return True
        return False

    return matching("Allow") and not matching("Deny")


@cli.command
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = cli.parser("bootstrap.aws.iam", __doc__)
    parser.add_argument("principal", choices=PRINCIPALS)
    parser.parse_args(argv)  # so argv[0] is the principal
    print(json.dumps(policy(current_settings(), argv[0]), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
