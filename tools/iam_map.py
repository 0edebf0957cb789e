"""Which IAM action(s) on which resource ARN(s) AWS authorizes for one API call.

``requests_for(call, policies)`` maps a recorded call (service, operation, parameters, outcome) to
``Request`` s, as AWS documents the authorization of each operation (Service Authorization
Reference): ``BatchWriteItem`` per table and item, ``TransactWriteItems`` as the per-item actions,
``ListObjectsV2`` → ``s3:ListBucket``, a 404 ``GetObject``/``HeadObject`` needs ``s3:ListBucket``
too (AWS answers 403 without it), multipart parts → ``s3:PutObject``, SESv2 ``SendEmail`` →
``ses:SendEmail`` on the address and the domain identity, Secrets Manager ARNs with their random
suffix, Scheduler writes with ``iam:PassRole`` of the target role. A call it does not know raises
``Unmapped``: a new call needs its line here before the suite passes.

The same map gives ``lettershop stack check`` the actions and ARNs to simulate for a deployed stack.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from typing import Any

from tools.iam_policy import Request, StackPolicies
from tools.iam_template import StackIdentity

# Every request Lambda's HTTPS clients make is over TLS (the bucket policies deny the others).
BASE_CONTEXT: Mapping[str, str] = {"aws:SecureTransport": "true"}


class Unmapped(LookupError):
    """A call the map does not know how AWS authorizes."""


@dataclass
class Call:
    """One AWS API call made by a function's code, as recorded by the test harness."""

    service: str  # the client's service name: dynamodb, s3, sesv2, ...
    operation: str  # the API operation: PutItem, GetObject, ...
    params: Mapping[str, Any]
    response: Mapping[str, Any] = field(default_factory=dict)
    status: int | None = None  # HTTP status; None when no answer came
    error: str = ""  # the error code, or the exception's name when no answer came


class Arns:
    """ARNs of one stack's account and region."""

    def __init__(self, stack: StackIdentity) -> None:
        self.stack = stack

    def __call__(self, service: str, rest: str) -> str:
        return f"arn:{self.stack.partition}:{service}:{self.stack.region}:{self.stack.account}:{rest}"

    def table(self, name: str) -> str:
        return name if name.startswith("arn:") else self("dynamodb", f"table/{name}")

    def bucket(self, name: str) -> str:
        return f"arn:{self.stack.partition}:s3:::{name}"


def _hash_keys(policies: StackPolicies) -> dict[str, str]:
    """Table name → its partition key attribute, from the template's key schemas."""
    keys: dict[str, str] = {}
    for logical, resource in policies.resolver.template["Resources"].items():
        if resource["Type"] == "AWS::DynamoDB::Table":
            schema = resource["Properties"]["KeySchema"]
            keys[policies.resolver.physical(logical)] = next(
                k["AttributeName"] for k in schema if k["KeyType"] == "HASH"
            )
    return keys


def _leading(
    item: Mapping[str, Any] | None, table: str, hash_keys: Mapping[str, str]
) -> dict[str, list[str]]:
    """``dynamodb:LeadingKeys`` of a Key or Item (its partition key value)."""
    name = hash_keys.get(table.rsplit("/", 1)[-1])
    if not item or name is None or name not in item:
        return {}
    typed = item[name]
    value = next(iter(typed.values())) if isinstance(typed, dict) else typed
    return {"dynamodb:LeadingKeys": [str(value)]}


def _dynamodb(call: Call, arns: Arns, hash_keys: Mapping[str, str]) -> list[Request]:
    p, op = call.params, call.operation
    if op in ("GetItem", "PutItem", "UpdateItem", "DeleteItem"):
        thing = p.get("Key") if "Key" in p else p.get("Item")
        return [
            Request(f"dynamodb:{op}", arns.table(p["TableName"]), _leading(thing, p["TableName"], hash_keys))
        ]
    if op in ("Query", "Scan", "DescribeTable", "DescribeTimeToLive"):
        table = arns.table(p["TableName"])
        # a read of a secondary index is authorized on the index's ARN, not the table's
        return [Request(f"dynamodb:{op}", f"{table}/index/{p['IndexName']}" if "IndexName" in p else table)]
    if op in ("BatchWriteItem", "BatchGetItem"):
        requests = []
        for table, entries in p["RequestItems"].items():
            rows = entries if op == "BatchWriteItem" else [{"Get": {"Key": k}} for k in entries["Keys"]]
            for row in rows:
                (inner,) = row.values()
                thing = inner.get("Item", inner.get("Key"))
                requests.append(
                    Request(f"dynamodb:{op}", arns.table(table), _leading(thing, table, hash_keys))
                )
        return requests
    if op in ("TransactWriteItems", "TransactGetItems"):
        verbs = {
            "Put": "PutItem",
            "Update": "UpdateItem",
            "Delete": "DeleteItem",
            "ConditionCheck": "ConditionCheckItem",
        }
        verbs["Get"] = "GetItem"
        requests = []
        for row in p["TransactItems"]:
            ((verb, inner),) = row.items()
            thing = inner.get("Item", inner.get("Key"))
            table = inner["TableName"]
            requests.append(
                Request(f"dynamodb:{verbs[verb]}", arns.table(table), _leading(thing, table, hash_keys))
            )
        return requests
    raise Unmapped(f"dynamodb {op}")


_S3_OBJECT = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "ListParts": "s3:ListMultipartUploadParts",
    "DeleteObject": "s3:DeleteObject",
}


def _s3(call: Call, arns: Arns) -> list[Request]:
    p, op = call.params, call.operation
    bucket = arns.bucket(p["Bucket"])
    if op in ("ListObjectsV2", "ListObjects"):
        return [Request("s3:ListBucket", bucket)]
    if op == "ListObjectVersions":
        return [Request("s3:ListBucketVersions", bucket)]
    if op not in _S3_OBJECT:
        raise Unmapped(f"s3 {op}")
    action = _S3_OBJECT[op]
    if p.get("VersionId") and action in ("s3:GetObject", "s3:DeleteObject"):
        action += "Version"
    requests = [Request(action, f"{bucket}/{p['Key']}")]
    if op in ("GetObject", "HeadObject") and call.status == 404:
        requests.append(Request("s3:ListBucket", bucket))  # without it, AWS answers 403, not 404
    return requests


def _secretsmanager(call: Call, arns: Arns) -> list[Request]:
    if call.operation not in ("GetSecretValue", "DescribeSecret"):
        raise Unmapped(f"secretsmanager {call.operation}")
    secret_id = str(call.params["SecretId"])
    arn = call.response.get("ARN") or (
        secret_id if secret_id.startswith("arn:") else arns("secretsmanager", f"secret:{secret_id}-??????")
    )
    return [Request(f"secretsmanager:{call.operation}", str(arn))]


def _from_address(params: Mapping[str, Any]) -> str:
    sender = params.get("FromEmailAddress")
    if not sender:
        raw = params.get("Content", {}).get("Raw", {}).get("Data", b"")
        headers = BytesHeaderParser().parsebytes(raw if isinstance(raw, bytes) else raw.encode())
        sender = headers.get("From", "")
    return parseaddr(str(sender))[1]


def _sesv2(call: Call, arns: Arns) -> list[Request]:
    if call.operation != "SendEmail":
        raise Unmapped(f"sesv2 {call.operation}")
    address = _from_address(call.params)
    context = {"ses:FromAddress": address}
    domain = address.rpartition("@")[2]
    requests = [
        Request("ses:SendEmail", arns("ses", f"identity/{who}"), context) for who in (address, domain)
    ]
    if call.params.get("ConfigurationSetName"):
        requests.append(
            Request(
                "ses:SendEmail",
                arns("ses", f"configuration-set/{call.params['ConfigurationSetName']}"),
                context,
            )
        )
    return requests


def _scheduler(call: Call, arns: Arns) -> list[Request]:
    p, op = call.params, call.operation
    if op == "ListSchedules":
        return [Request("scheduler:ListSchedules", "*")]
    if op in ("CreateSchedule", "UpdateSchedule", "DeleteSchedule", "GetSchedule"):
        group = p.get("GroupName") or "default"
        requests = [Request(f"scheduler:{op}", arns("scheduler", f"schedule/{group}/{p['Name']}"))]
        role = p.get("Target", {}).get("RoleArn")
        if role:
            requests.append(Request("iam:PassRole", role, {"iam:PassedToService": "scheduler.amazonaws.com"}))
        return requests
    raise Unmapped(f"scheduler {op}")


def _sqs(call: Call, arns: Arns) -> list[Request]:
    if call.operation not in ("SendMessage", "SendMessageBatch"):
        raise Unmapped(f"sqs {call.operation}")
    name = str(call.params["QueueUrl"]).rstrip("/").rsplit("/", 1)[-1]
    return [Request("sqs:SendMessage", arns("sqs", name))]


def requests_for(call: Call, policies: StackPolicies) -> list[Request]:
    """The requests AWS authorizes for ``call`` (condition context included); ``Unmapped`` if unknown."""
    arns = Arns(policies.stack)
    mappers: dict[str, Callable[[], list[Request]]] = {
        "dynamodb": lambda: _dynamodb(call, arns, _hash_keys(policies)),
        "s3": lambda: _s3(call, arns),
        "secretsmanager": lambda: _secretsmanager(call, arns),
        "sesv2": lambda: _sesv2(call, arns),
        "scheduler": lambda: _scheduler(call, arns),
        "sqs": lambda: _sqs(call, arns),
    }
    if call.service == "sts" and call.operation == "GetCallerIdentity":
        return []  # needs no permission
    if call.service not in mappers:
        raise Unmapped(f"{call.service} {call.operation}")
    return [Request(r.action, r.resource, {**BASE_CONTEXT, **r.context}) for r in mappers[call.service]()]
