"""The AWS requests each function needs, on a stack's real ARNs, for ``lettershop stack check``.

One representative call of each kind the code makes (the calls the IAM check of the test suite
records, ``tests/integration/iam_recorder.py``), mapped by the same map (``tools.iam_map``) to the
IAM requests AWS authorizes. ``lettershop stack check`` asks IAM's policy simulator about each of
them for the deployed role, so a permission boundary, an SCP or a hand-edited role shows before
the first poll does.
"""

from __future__ import annotations

from tools.iam_map import Call, requests_for
from tools.iam_policy import Request, StackPolicies

POLL = "handlers.poll.handler"
SCHEDULES = "handlers.schedules.handler"
CHANNEL = "stack-check"  # a channel id no stack has: every ARN is one the functions could use


def _calls(policies: StackPolicies) -> dict[str, list[Call]]:
    resolve = policies.resolver
    channels = resolve.physical("ChannelsTable")
    state = resolve.physical("StateTable")
    scripts = resolve.physical("ScriptsBucket")
    archive = resolve.physical("ArchiveBucket")
    group = resolve.physical("ScheduleGroup")
    prefix = str(resolve.refs.get("SecretsPrefix", ""))
    stack = policies.stack
    secret_arn = (
        f"arn:{stack.partition}:secretsmanager:{stack.region}:{stack.account}:secret:{prefix}{CHANNEL}-AbCdEf"
    )
    key = {"pk": {"S": f"ledger#{CHANNEL}"}}
    poll = [
        Call("dynamodb", "GetItem", {"TableName": channels, "Key": {"channel_id": {"S": CHANNEL}}}),
        *(
            Call("dynamodb", op, {"TableName": state, "Key": key})
            for op in ("GetItem", "UpdateItem", "DeleteItem")
        ),
        Call("dynamodb", "PutItem", {"TableName": state, "Item": key}),
        Call("dynamodb", "BatchWriteItem", {"RequestItems": {state: [{"PutRequest": {"Item": key}}]}}),
        Call(
            "dynamodb",
            "TransactWriteItems",
            {"TransactItems": [{"Update": {"TableName": state, "Key": key}}]},
        ),
        Call("s3", "GetObject", {"Bucket": scripts, "Key": f"partners/{CHANNEL}/script"}, status=404),
        Call("s3", "PutObject", {"Bucket": archive, "Key": f"inbound/{CHANNEL}/message.eml"}),
        Call("s3", "AbortMultipartUpload", {"Bucket": archive, "Key": f"inbound/{CHANNEL}/message.eml"}),
        Call("s3", "HeadObject", {"Bucket": archive, "Key": f"replies/{CHANNEL}/reply.eml"}, status=404),
        Call("s3", "GetObject", {"Bucket": archive, "Key": f"exports/{CHANNEL}/export.csv"}),
        Call("secretsmanager", "GetSecretValue", {"SecretId": f"{prefix}{CHANNEL}"}, {"ARN": secret_arn}),
    ]
    domain = str(resolve.refs.get("SenderDomain", ""))
    if domain:
        poll.append(Call("sesv2", "SendEmail", {"FromEmailAddress": f"lettershop@{domain}"}))
    target = {"RoleArn": resolve.get_att("SchedulerRole", "Arn")}
    schedule = {"Name": CHANNEL, "GroupName": group, "Target": target}
    schedules = [
        Call("dynamodb", "Scan", {"TableName": channels}),
        Call("dynamodb", "PutItem", {"TableName": state, "Item": {"pk": {"S": f"status#{CHANNEL}"}}}),
        Call("scheduler", "CreateSchedule", schedule),
        Call("scheduler", "UpdateSchedule", schedule),
        Call("scheduler", "DeleteSchedule", {"Name": CHANNEL, "GroupName": group}),
        Call("scheduler", "ListSchedules", {"GroupName": group}),
        Call("scheduler", "GetSchedule", {"Name": CHANNEL, "GroupName": group}),
        Call("dynamodb", "Query", {"TableName": state, "IndexName": "watch"}),
        Call(
            "dynamodb",
            "BatchGetItem",
            {"RequestItems": {state: {"Keys": [{"pk": {"S": f"status#{CHANNEL}"}}]}}},
        ),
    ]
    return {POLL: poll, SCHEDULES: schedules}


def needs(policies: StackPolicies) -> dict[str, list[Request]]:
    """Handler → the requests its role must be allowed, without duplicates, in call order."""
    found: dict[str, list[Request]] = {}
    for handler, calls in _calls(policies).items():
        requests: list[Request] = []
        for call in calls:
            for request in requests_for(call, policies):
                if request not in requests:
                    requests.append(request)
        found[handler] = requests
    return found
