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
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore import xform_name

from tests.unit.test_template import _transformed, as_list

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ROOT / "src" / "adapters"

POLL, SYNC = "PollFunctionRole", "ScheduleSyncFunctionRole"
ACCOUNT, REGION = "123456789012", "eu-central-1"
PARAMETERS = {"SecretsPrefix": "lettershop/", "SenderDomain": "operator.example", "AWS::StackName": "ls"}
CONDITIONS = {"RepliesViaSes": True, "InVpc": False, "HasAlarmEmail": False, "LimitPollConcurrency": False}
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
    ("scheduler", "get_schedule"): {},  # lettershop channel list/show (ScheduleStates)
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
    ("probe", "get_email_identity"): {},  # lettershop channel check (SES sender identity)
    ("state", "get_item"): {POLL: ("dynamodb:GetItem",)},
    ("state", "update_item"): {POLL: ("dynamodb:UpdateItem",)},
    ("state", "put_item"): {POLL: ("dynamodb:PutItem",)},
    ("state", "batch_write_item"): {POLL: ("dynamodb:BatchWriteItem",)},  # late ledger entries
    ("state", "delete_item"): {POLL: ("dynamodb:DeleteItem",)},
    ("status", "get_item"): {},  # lettershop channel list/show
    ("status", "put_item"): {POLL: ("dynamodb:PutItem",), SYNC: ("dynamodb:PutItem",)},
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
    _sync("dynamodb:PutItem", STATE, **{"dynamodb:LeadingKeys": ["ledger#acme#" + DIGEST]}),
    _sync("iam:PassRole", ARN["SchedulerRole"], **{"iam:PassedToService": "lambda.amazonaws.com"}),
    _sync("scheduler:CreateSchedule", f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/default/acme"),
]


# ------------------------------------------------------------- the rendered policies


def resolved(value: Any) -> Any:  # noqa: PLR0911  # one return per intrinsic
    """``value`` with the template's intrinsics resolved for the test stack (``Fn::If`` by ``CONDITIONS``)."""
    if isinstance(value, list):
        return [found for found in (resolved(inner) for inner in value) if found is not None]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::If"}:
        condition, when_true, when_false = value["Fn::If"]
        return resolved(when_true if CONDITIONS[condition] else when_false)
    if value == {"Ref": "AWS::NoValue"}:
        return None
    if set(value) == {"Ref"}:
        return _ref(value["Ref"])
    if set(value) == {"Fn::GetAtt"}:
        return _attribute(*value["Fn::GetAtt"])
    if set(value) == {"Fn::Sub"}:
        return re.sub(r"\$\{([^}]+)\}", lambda m: _sub(m.group(1)), value["Fn::Sub"])
    return {key: resolved(inner) for key, inner in value.items()}


def _ref(name: str) -> str:
    pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
    return pseudo.get(name) or PARAMETERS.get(name) or NAMES[name]


def _attribute(name: str, attribute: str) -> str:
    return STREAM if attribute == "StreamArn" else ARN[name]


def _sub(name: str) -> str:
    return _attribute(*name.split(".", 1)) if "." in name else _ref(name)


@cache
def statements(role: str) -> tuple[dict[str, Any], ...]:
    """The role's statements in the transformed template, resolved (``None`` statements dropped)."""
    res = json.loads(_transformed())["Resources"][role]
    found: list[dict[str, Any]] = []
    for policy in res["Properties"]["Policies"]:
        found.extend(statement for statement in resolved(policy["PolicyDocument"]["Statement"]) if statement)
    return tuple(found)


def _matches(pattern: str, value: str, *, case: bool = True) -> bool:
    regex = ".*".join(".".join(re.escape(part) for part in piece.split("?")) for piece in pattern.split("*"))
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _condition_holds(condition: dict[str, Any], context: dict[str, Any]) -> bool:
    """The operators the template uses; a key the request does not carry makes the condition false."""
    for operator, tests in condition.items():
        for key, wanted in tests.items():
            patterns = [str(pattern) for pattern in as_list(wanted)]
            if key not in context:
                return False
            values = [str(value) for value in as_list(context[key])]
            if operator in ("StringEquals", "ArnEquals"):
                ok = all(value in patterns for value in values)
            elif operator in ("StringLike", "ArnLike", "ForAllValues:StringLike"):
                ok = all(any(_matches(p, value) for p in patterns) for value in values)
            else:
                raise AssertionError(f"condition operator {operator} is not evaluated here; add it")
            if not ok:
                return False
    return True


def _applies(statement: dict[str, Any], call: Call) -> bool:
    return (
        any(_matches(action, call.action, case=False) for action in as_list(statement["Action"]))
        and any(_matches(resource, call.resource) for resource in as_list(statement["Resource"]))
        and _condition_holds(statement.get("Condition", {}), call.context)
    )


def allowed(call: Call, granted: tuple[dict[str, Any], ...] | None = None) -> bool:
    """IAM's evaluation of the role's identity policy (``granted``: its statements in the template):
    an explicit ``Deny`` wins, else some ``Allow``."""
    granted = statements(call.role) if granted is None else granted
    applying = [statement for statement in granted if _applies(statement, call)]
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
        if any(_matches(action, batch, case=False) for action in as_list(statement["Action"]))
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
