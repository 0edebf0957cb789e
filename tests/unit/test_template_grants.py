"""Every AWS request the functions' code makes is allowed by the rendered template's own policies.

Each client call in ``src/adapters`` is listed in ``USES`` with the IAM actions AWS authorizes for it
(``TransactWriteItems`` as its items' actions, ``BatchWriteItem`` as its own, a multipart upload as
``s3:PutObject`` plus ``s3:AbortMultipartUpload``, ``HeadObject`` as ``s3:GetObject``, and a 404
needing ``s3:ListBucket``), or as the operator's (the command line, with the operator's credentials).
``CALLS`` are those requests on the test stack's ARNs; they are evaluated against the statements of the
transformed template, intrinsics resolved for one stack (wildcards, conditions, ``Deny`` wins). A new
client call fails here until it is listed, and a listed request the role does not allow fails, naming
role, action and resource. ``REFUSED`` holds what least privilege must keep out.
"""

import ast
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from tools.iam_policy import Request, StackPolicies, like, matches
from tools.iam_template import StackIdentity, as_list, render

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ROOT / "src" / "adapters"

POLL, SYNC = "PollFunctionRole", "ScheduleSyncFunctionRole"
ACCOUNT, REGION = "123456789012", "eu-central-1"
PARAMETERS = {"SecretsPrefix": "lettershop/", "SenderDomain": "operator.example", "AWS::StackName": "ls"}
NAMES = {
    "ChannelsTable": "ls-ChannelsTable-1A",
    "StateTable": "ls-StateTable-2B",
    "ScriptsBucket": "ls-scriptsbucket-3c",
    "ArchiveBucket": "ls-archivebucket-4d",
    "DeadLetterQueue": "ls-DeadLetterQueue-5E",
    "ScheduleGroup": "ScheduleGroup-6F",
    "SchedulerRole": "ls-SchedulerRole-7G",
    "PollFunctionLogGroup": "/aws/lambda/ls-poll",
    "ScheduleSyncFunctionLogGroup": "/aws/lambda/ls-schedule-sync",
    "PollFunction": "ls-PollFunction-8H",
    "ScheduleSyncFunction": "ls-ScheduleSyncFunction-9I",
}
ARN = {
    "ChannelsTable": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{NAMES['ChannelsTable']}",
    "StateTable": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{NAMES['StateTable']}",
    "ScriptsBucket": f"arn:aws:s3:::{NAMES['ScriptsBucket']}",
    "ArchiveBucket": f"arn:aws:s3:::{NAMES['ArchiveBucket']}",
    "DeadLetterQueue": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{NAMES['DeadLetterQueue']}",
    "ScheduleGroup": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/{NAMES['ScheduleGroup']}",
    "SchedulerRole": f"arn:aws:iam::{ACCOUNT}:role/{NAMES['SchedulerRole']}",
    **{
        group: f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{NAMES[group]}:*"
        for group in ("PollFunctionLogGroup", "ScheduleSyncFunctionLogGroup")
    },
    "PollFunction": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{NAMES['PollFunction']}",
    "ScheduleSyncFunction": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{NAMES['ScheduleSyncFunction']}",
}
STREAM = f"{ARN['ChannelsTable']}/stream/2026-12-07T09:30:15.123"
CHANNELS, STATE, DLQ = ARN["ChannelsTable"], ARN["StateTable"], ARN["DeadLetterQueue"]
SCRIPTS, ARCHIVE = ARN["ScriptsBucket"], ARN["ArchiveBucket"]
DIGEST = "ab" * 32
SECRET = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:lettershop/acme/pop3-Ab12Cd"  # random suffix
SCHEDULE = f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{NAMES['ScheduleGroup']}/acme"
IDENTITY = f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/"
LOG_STREAM = ":log-stream:2026/12/07/[$LATEST]0123456789abcdef"

_STACK_CHECK = (
    "describe_stacks",
    "list_stack_resources",
    "list_subscriptions_by_topic",
    "simulate_principal_policy",
)
# (adapter module, client method) -> the IAM actions each function's role needs for it; {} = the
# operator's command line only (lettershop ..., with the operator's credentials).
USES: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("archive", "put_object"): {POLL: ("s3:PutObject",)},
    ("archive", "upload_fileobj"): {POLL: ("s3:PutObject", "s3:AbortMultipartUpload")},  # > 8 MB
    ("archive", "head_object"): {POLL: ("s3:GetObject", "s3:ListBucket")},  # a dead poll's reply; 404
    ("archive", "get_object"): {POLL: ("s3:GetObject",)},  # load: a stored reply (quarantine_reason: CLI)
    ("archive", "list_objects_v2"): {},  # lettershop message list
    ("channels", "get_item"): {POLL: ("dynamodb:GetItem",)},
    ("channels", "scan"): {SYNC: ("dynamodb:Scan",)},  # reconcile
    ("channels", "put_item"): {},  # lettershop channel put
    ("mailbox_memory", "get_item"): {POLL: ("dynamodb:GetItem",)},
    ("mailbox_memory", "put_item"): {POLL: ("dynamodb:PutItem",)},
    # reconcile and watchdog (a changed schedule read before it is repaired); also channel list/show
    ("scheduler", "get_schedule"): {SYNC: ("scheduler:GetSchedule",)},
    ("scheduler", "create_schedule"): {SYNC: ("scheduler:CreateSchedule", "iam:PassRole")},
    ("scheduler", "update_schedule"): {SYNC: ("scheduler:UpdateSchedule", "iam:PassRole")},
    ("scheduler", "delete_schedule"): {SYNC: ("scheduler:DeleteSchedule",)},
    ("scheduler", "list_schedules"): {SYNC: ("scheduler:ListSchedules",)},
    ("script_store", "get_object"): {POLL: ("s3:GetObject", "s3:ListBucket")},  # a missing script: 404
    ("script_store", "put_object"): {},  # lettershop script put
    ("serials", "transact_write_items"): {POLL: ("dynamodb:UpdateItem", "dynamodb:PutItem")},  # per item
    ("serials", "update_item"): {POLL: ("dynamodb:UpdateItem",)},
    ("serials", "get_item"): {POLL: ("dynamodb:GetItem",)},
    ("serials", "put_item"): {POLL: ("dynamodb:PutItem",)},
    ("ses", "send_email"): {POLL: ("ses:SendEmail",)},
    ("stack_outputs", "describe_stacks"): {},  # lettershop --stack NAME
    **{("deployment", method): {} for method in _STACK_CHECK},  # lettershop stack check (read-only)
    ("probe", "get_email_identity"): {},  # lettershop channel check (SES sender identity)
    ("state", "get_item"): {POLL: ("dynamodb:GetItem",)},
    ("state", "update_item"): {POLL: ("dynamodb:UpdateItem",)},
    ("state", "put_item"): {POLL: ("dynamodb:PutItem",)},
    ("state", "batch_write_item"): {POLL: ("dynamodb:BatchWriteItem",)},  # late ledger entries
    ("state", "delete_item"): {POLL: ("dynamodb:DeleteItem",)},
    ("status", "get_item"): {},  # lettershop channel list/show
    ("status", "put_item"): {POLL: ("dynamodb:PutItem",), SYNC: ("dynamodb:PutItem",)},
    ("status", "update_item"): {POLL: ("dynamodb:UpdateItem",)},  # the heartbeat of an unchanged status
    ("watch_index", "query"): {SYNC: ("dynamodb:Query",)},  # the watchdog, on the index only
    ("watch_index", "batch_get_item"): {SYNC: ("dynamodb:BatchGetItem",)},  # status items the index lacks
}


@dataclass(frozen=True)
class Call:
    """One request as AWS authorizes it: the role's action on a resource, with its condition keys."""

    role: str
    action: str
    resource: str
    context: dict[str, Any] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:
        return f"{self.role}: {self.action} on {self.resource} {self.context or ''}".rstrip()


def _poll(action: str, resource: str, **context: Any) -> Call:
    return Call(POLL, action, resource, context)


def _sync(action: str, resource: str, **context: Any) -> Call:
    return Call(SYNC, action, resource, context)


# The requests the functions make, on the test stack's ARNs (and the runtime's: logs, X-Ray, the
# dead-letter queue of a failed asynchronous invocation, the stream read by the event source mapping).
CALLS = [
    _poll("dynamodb:GetItem", CHANNELS),
    *(_poll(f"dynamodb:{action}", STATE) for action in ("GetItem", "PutItem", "UpdateItem", "DeleteItem")),
    _poll("dynamodb:BatchWriteItem", STATE),  # DynamoDbLedger.save_all after throttled "replied" writes
    _poll("s3:GetObject", f"{SCRIPTS}/standard/check.py"),
    _poll("s3:GetObject", f"{SCRIPTS}/partners/acme/check.py"),
    _poll("s3:ListBucket", SCRIPTS),
    *(
        _poll(action, f"{ARCHIVE}/{key}")
        for action in ("s3:PutObject", "s3:AbortMultipartUpload")
        for key in (f"inbound/acme/2026/12/07/{DIGEST}.eml", f"quarantine/acme/2026/12/07/{DIGEST}.eml")
    ),
    _poll("s3:PutObject", f"{ARCHIVE}/quarantine/acme/2026/12/07/{DIGEST}.json"),
    *(
        _poll(action, f"{ARCHIVE}/{folder}/acme/{DIGEST}/20261207T093015.123456Z.eml")
        for action in ("s3:PutObject", "s3:GetObject")
        for folder in ("exports", "replies")
    ),
    _poll("s3:ListBucket", ARCHIVE),
    _poll("secretsmanager:GetSecretValue", SECRET),
    *(
        _poll("ses:SendEmail", f"{IDENTITY}{identity}", **{"ses:FromAddress": "lettershop@operator.example"})
        for identity in ("operator.example", "lettershop@operator.example")
    ),
    _poll("sqs:SendMessage", DLQ),
    _poll("logs:CreateLogStream", ARN["PollFunctionLogGroup"].removesuffix(":*") + LOG_STREAM),
    _poll("logs:PutLogEvents", ARN["PollFunctionLogGroup"].removesuffix(":*") + LOG_STREAM),
    _poll("xray:PutTraceSegments", "*"),
    _poll("xray:PutTelemetryRecords", "*"),
    _sync("dynamodb:Scan", CHANNELS),
    *(_sync(f"dynamodb:{action}", STREAM) for action in ("DescribeStream", "GetRecords", "GetShardIterator")),
    *(_sync(f"scheduler:{verb}Schedule", SCHEDULE) for verb in ("Create", "Update", "Delete")),
    _sync("scheduler:ListSchedules", "*"),
    _sync("scheduler:GetSchedule", SCHEDULE),
    _sync("dynamodb:Query", f"{STATE}/index/watch"),
    _sync("dynamodb:BatchGetItem", STATE, **{"dynamodb:LeadingKeys": ["status#acme"]}),
    _sync("iam:PassRole", ARN["SchedulerRole"], **{"iam:PassedToService": "scheduler.amazonaws.com"}),
    _sync("dynamodb:PutItem", STATE, **{"dynamodb:LeadingKeys": ["status#acme"]}),
    _sync("sqs:SendMessage", DLQ),
    _sync("logs:PutLogEvents", ARN["ScheduleSyncFunctionLogGroup"].removesuffix(":*") + LOG_STREAM),
    _sync("xray:PutTraceSegments", "*"),
]

# What least privilege keeps out: every one must be refused.
REFUSED = [
    _poll("dynamodb:BatchWriteItem", CHANNELS),
    _poll("dynamodb:PutItem", CHANNELS),
    _poll("dynamodb:Scan", STATE),
    _poll("s3:GetObject", f"{ARCHIVE}/inbound/acme/2026/12/07/{DIGEST}.eml"),
    _poll("s3:DeleteObject", f"{ARCHIVE}/exports/acme/{DIGEST}/20261207T093015.123456Z.eml"),
    _poll("s3:PutObject", f"{SCRIPTS}/standard/check.py"),
    _poll("secretsmanager:GetSecretValue", SECRET.replace(":secret:lettershop/acme/pop3", ":secret:prod/db")),
    _poll("ses:SendEmail", f"{IDENTITY}other.example", **{"ses:FromAddress": "someone@other.example"}),
    _poll("ses:SendEmail", f"{IDENTITY}operator.example", **{"ses:FromAddress": "someone@other.example"}),
    _poll("scheduler:CreateSchedule", SCHEDULE),
    _sync("dynamodb:BatchWriteItem", STATE),
    _sync("dynamodb:Query", STATE),  # the watchdog reads the index, never the ledger through the table
    _sync("dynamodb:Scan", STATE),
    _sync("dynamodb:GetItem", STATE, **{"dynamodb:LeadingKeys": ["ledger#acme#" + DIGEST]}),
    _sync("dynamodb:BatchGetItem", STATE, **{"dynamodb:LeadingKeys": ["ledger#acme#" + DIGEST]}),
    _sync("dynamodb:BatchGetItem", STATE, **{"dynamodb:LeadingKeys": ["lease#acme"]}),
    _sync("scheduler:GetSchedule", f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/other"),
    _sync("dynamodb:PutItem", STATE, **{"dynamodb:LeadingKeys": ["ledger#acme#" + DIGEST]}),
    _sync("iam:PassRole", ARN["SchedulerRole"], **{"iam:PassedToService": "lambda.amazonaws.com"}),
    _sync("scheduler:CreateSchedule", f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/acme"),
]


# ------------------------------------------------------------- the rendered policies


STACK = StackIdentity(
    stack_name="ls",
    account=ACCOUNT,
    region=REGION,
    physical={
        **NAMES,
        "DeadLetterQueue": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{NAMES['DeadLetterQueue']}",
    },
    parameters={name: value for name, value in PARAMETERS.items() if not name.startswith("AWS::")},
)


@cache
def policies() -> StackPolicies:
    """The transformed template's policies, intrinsics resolved for ``STACK`` (``tools.iam_template``:
    the same rendering the integration tests' IAM check uses)."""
    return StackPolicies(render(), STACK)


@cache
def statements(role: str) -> tuple[Mapping[str, Any], ...]:
    """The role's identity statements in the transformed template, resolved."""
    return tuple(statement.body for statement in policies().identity[role])


def allowed(call: Call, granted: tuple[Mapping[str, Any], ...] | None = None) -> bool:
    """IAM's evaluation of the role's identity policy (``granted``: its statements in the template),
    with the IAM check's statement matching (``tools.iam_policy.matches``): an explicit ``Deny`` wins,
    else some ``Allow``."""
    granted = statements(call.role) if granted is None else granted
    request = Request(call.action, call.resource, call.context)
    applying = [statement for statement in granted if matches(statement, request)]
    return bool(applying) and all(statement["Effect"] == "Allow" for statement in applying)


# ------------------------------------------------------------------------- tests


def adapter_calls() -> set[tuple[str, str]]:
    """Every ``(module, method)`` of a boto3 client called in ``src/adapters`` (paginators by name;
    a method is an AWS operation of some service, or S3's managed transfer)."""
    found = set()
    for path in ADAPTERS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value
            owner_name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if owner_name not in ("client", "_client"):
                continue
            method = node.func.attr
            if method == "get_paginator":
                method = str(ast.literal_eval(node.args[0]))
            if method in aws_operations():
                found.add((path.stem, method))
    return found


@cache
def aws_operations() -> frozenset[str]:
    """The client method names of the operations of every AWS service named in ``src/`` or ``cli/``
    (``client("dynamodb")``, ...), and boto3's S3 transfers."""
    session = botocore.session.get_session()
    loader = session.get_component("data_loader")
    quoted = {
        word
        for folder in ("src", "cli")
        for path in (ROOT / folder).rglob("*.py")
        for word in re.findall(r"[\"']([a-z0-9-]+)[\"']", path.read_text(encoding="utf-8"))
    }
    names = {"upload_file", "upload_fileobj", "download_file", "download_fileobj", "copy"}
    for service in quoted & set(session.get_available_services()):
        model = loader.load_service_model(service, "service-2")
        names.update(xform_name(operation) for operation in model["operations"])
    return frozenset(names)


def test_every_client_call_of_the_adapters_is_listed_with_its_iam_actions() -> None:
    assert adapter_calls() == set(USES)


@pytest.mark.parametrize("role", [POLL, SYNC])
def test_every_action_the_code_needs_is_among_the_requests_checked(role: str) -> None:
    needed = {action for uses in USES.values() for action in uses.get(role, ())}
    needed |= {"secretsmanager:GetSecretValue"} if role == POLL else set()  # Powertools' SecretsProvider

    checked = {call.action for call in CALLS if call.role == role}

    assert needed - checked == set()


@pytest.mark.parametrize("call", CALLS, ids=str)
def test_every_request_of_the_functions_is_allowed_by_the_template(call: Call) -> None:
    assert allowed(call), f"denied: {call}"


@pytest.mark.parametrize("call", REFUSED, ids=str)
def test_least_privilege_refuses(call: Call) -> None:
    assert not allowed(call), f"allowed: {call}"


def test_late_ledger_entries_may_be_batch_written_to_the_state_table_only() -> None:
    """``DynamoDbLedger.save_all`` (the poll's late entries, ``service.poll._record_late``) is a
    ``BatchWriteItem``: AWS authorizes it as that action, never as the items' ``PutItem``."""
    batch = "dynamodb:BatchWriteItem"
    granting = [
        statement
        for statement in statements(POLL)
        if any(like(action, batch, case=False) for action in as_list(statement["Action"]))
    ]

    assert [statement["Resource"] for statement in granting] == [STATE]
    assert [statement.get("Condition") for statement in granting] == [None]
    assert not any("BatchWriteItem" in json.dumps(statement) for statement in statements(SYNC))


def test_the_evaluation_finds_a_removed_statement() -> None:
    """Without the poll's state table statement its ledger writes are denied; a Deny beats an Allow."""
    call = _poll("dynamodb:PutItem", STATE)
    kept = statements(POLL)

    cut = tuple(statement for statement in kept if statement.get("Sid") != "LeaseLedgerCounters")
    denied = (*kept, {"Effect": "Deny", "Action": "dynamodb:*", "Resource": STATE})

    assert allowed(call, kept)
    assert not allowed(call, cut)
    assert not allowed(call, denied)
