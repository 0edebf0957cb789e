"""template.yaml, as CloudFormation gets it: the SAM transform, run offline, and what it must hold.

The transform is samtranslator's (the library ``sam validate`` and CloudFormation use); every IAM
statement of the result is checked for scope, so a new ``"*"`` needs a line in ``NEEDS_STAR``.
"""

import functools
import json
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

from devstack.aws import load_template, table_definition
from schedule_settings import ScheduleSettings
from settings import PollSettings

# Statements that truly need Resource "*": the service has no resource-level permissions for them.
NEEDS_STAR = {
    ("xray:PutTelemetryRecords", "xray:PutTraceSegments"),  # X-Ray has no resource types
    ("scheduler:ListSchedules",),  # ListSchedules has no resource type
    (  # Lambda's network interfaces in a VPC: ids unknown in advance; Describe* unscopable
        "ec2:AssignPrivateIpAddresses",
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:UnassignPrivateIpAddresses",
    ),
}

# The only functions CloudFormation accepts in a rule's condition and assertions (rule functions).
RULE_FUNCTIONS = {
    "Fn::And",
    "Fn::Contains",
    "Fn::EachMemberEquals",
    "Fn::EachMemberIn",
    "Fn::Equals",
    "Fn::Not",
    "Fn::Or",
    "Fn::RefAll",
    "Fn::ValueOf",
    "Fn::ValueOfAll",
    "Ref",
}

CUSTOM_METRIC_ALARMS = {
    "PollErrors",
    "MessageQuarantined",
    "MessageUnretrievable",
    "InvalidChannelConfig",
    "ScriptFailed",
    "SerialRangeLow",
    "StaleChannel",
    "WatchdogRuns",
}
OUTCOME_METRICS = (
    "MessagesProcessed",
    "MessagesFailed",
    "MessagesRejected",
    "MessagesDeferred",
    "PollDuration",
)


@functools.cache
def _transformed() -> str:
    template = load_template()
    template["Globals"]["Function"]["CodeUri"] = "s3://lettershop-artifacts/src.zip"  # as `sam package` does
    session = boto3.Session(
        region_name="eu-central-1", aws_access_key_id="offline", aws_secret_access_key="offline"
    )
    translator = Translator({}, Parser(), boto_session=session)
    result = translator.translate(template, parameter_values={}, get_managed_policy_map=dict)
    return json.dumps(result)


@pytest.fixture
def cfn() -> dict[str, Any]:
    """The transformed template (a fresh copy per test)."""
    template: dict[str, Any] = json.loads(_transformed())
    return template


def resources_of(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in cfn["Resources"].items() if res["Type"] == kind}


def branches(value: Any) -> Iterator[Any]:
    """Every value ``value`` may take: both sides of each ``Fn::If``, ``AWS::NoValue`` dropped."""
    if isinstance(value, dict) and set(value) == {"Fn::If"}:
        _, when_true, when_false = value["Fn::If"]
        yield from branches(when_true)
        yield from branches(when_false)
    elif not (isinstance(value, dict) and value == {"Ref": "AWS::NoValue"}):
        yield value


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_statements(cfn: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(role, statement)`` for every inline statement of every role and policy."""
    for name, res in cfn["Resources"].items():
        documents: list[Any] = []
        if res["Type"] == "AWS::IAM::Role":
            documents = [policy["PolicyDocument"] for policy in res["Properties"].get("Policies", [])]
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [res["Properties"]["PolicyDocument"]]
        for document in documents:
            for statement in as_list(document["Statement"]):
                for variant in branches(statement):
                    yield name, variant


def resource_of(statement: dict[str, Any]) -> list[Any]:
    return as_list(statement["Resource"])


def functions_in(value: Any) -> Iterator[str]:
    """The name of every intrinsic function (``Fn::...``, ``Ref``) anywhere in ``value``."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" or key.startswith("Fn::"):
                yield key
            yield from functions_in(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from functions_in(inner)


def role_statements(cfn: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for name, s in policy_statements(cfn) if name == role}


# ------------------------------------------------------------------ resources


def test_transform_yields_the_named_resources(cfn: dict[str, Any]) -> None:
    kinds = {name: res["Type"] for name, res in cfn["Resources"].items()}

    assert {
        "ChannelsTable": "AWS::DynamoDB::Table",
        "StateTable": "AWS::DynamoDB::Table",
        "ScriptsBucket": "AWS::S3::Bucket",
        "ArchiveBucket": "AWS::S3::Bucket",
        "PollFunction": "AWS::Lambda::Function",
        "ScheduleSyncFunction": "AWS::Lambda::Function",
        "ScheduleGroup": "AWS::Scheduler::ScheduleGroup",
        "SchedulerRole": "AWS::IAM::Role",
        "DeadLetterQueue": "AWS::SQS::Queue",
        "AlarmTopic": "AWS::SNS::Topic",
        "Dashboard": "AWS::CloudWatch::Dashboard",
    }.items() <= kinds.items()


def test_tables_keep_their_keys_and_are_durable(cfn: dict[str, Any]) -> None:
    channels = cfn["Resources"]["ChannelsTable"]["Properties"]
    state = cfn["Resources"]["StateTable"]["Properties"]

    assert channels["KeySchema"] == [{"AttributeName": "channel_id", "KeyType": "HASH"}]
    assert state["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert channels["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert state["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    for table in (channels, state):
        assert table["BillingMode"] == "PAY_PER_REQUEST"
        assert table["SSESpecification"] == {"SSEEnabled": True}
        assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    for name in ("ChannelsTable", "StateTable"):
        assert cfn["Resources"][name]["DeletionPolicy"] == "Retain"


def test_local_tables_are_built_from_the_template() -> None:
    """devstack creates the test tables from these very definitions (DESIGN §2)."""
    template = load_template()

    channels = table_definition("ChannelsTable", template)
    state = table_definition("StateTable", template)

    assert channels["KeySchema"] == template["Resources"]["ChannelsTable"]["Properties"]["KeySchema"]
    assert channels["StreamSpecification"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert state["KeySchema"] == template["Resources"]["StateTable"]["Properties"]["KeySchema"]


@pytest.mark.parametrize("bucket", ["ScriptsBucket", "ArchiveBucket"])
def test_buckets_are_private_versioned_encrypted_and_tls_only(cfn: dict[str, Any], bucket: str) -> None:
    props = cfn["Resources"][bucket]["Properties"]
    policies = [
        res["Properties"]
        for res in resources_of(cfn, "AWS::S3::BucketPolicy").values()
        if res["Properties"]["Bucket"] == {"Ref": bucket}
    ]

    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert set(props["PublicAccessBlockConfiguration"].values()) == {True}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    [policy] = policies
    [deny] = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_archive_expires_after_the_retention_parameter(cfn: dict[str, Any]) -> None:
    rules = cfn["Resources"]["ArchiveBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]

    assert any(rule.get("ExpirationInDays") == {"Ref": "ArchiveRetentionDays"} for rule in rules)
    assert "ArchiveRetentionDays" in cfn["Parameters"]


def test_poll_function(cfn: dict[str, Any]) -> None:
    props = cfn["Resources"]["PollFunction"]["Properties"]
    env = props["Environment"]["Variables"]

    assert (props["Handler"], props["Runtime"], props["Timeout"]) == (
        "handlers.poll.handler",
        "python3.13",
        300,
    )
    assert env["LETTERSHOP_TIME_MARGIN_SECONDS"] == "30"
    for field in PollSettings.model_fields:  # every setting of §8 comes from the template
        assert f"LETTERSHOP_{field.upper()}" in env
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "LetterShop"
    # polls of different channels run in parallel: the parameter's reservation or none, never a
    # fixed value (a reservation of 1 would serialize every channel)
    assert props["ReservedConcurrentExecutions"] == {
        "Fn::If": ["LimitPollConcurrency", {"Ref": "PollMaxConcurrency"}, {"Ref": "AWS::NoValue"}]
    }
    assert cfn["Conditions"]["LimitPollConcurrency"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "PollMaxConcurrency"}, 0]}]
    }
    assert cfn["Parameters"]["PollMaxConcurrency"]["Default"] == 0  # no reservation unless asked
    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": "PollFunctionLogGroup"}}


def test_vpc_is_applied_only_when_subnets_are_given(cfn: dict[str, Any]) -> None:
    vpc = cfn["Resources"]["PollFunction"]["Properties"]["VpcConfig"]

    assert vpc["Fn::If"][0] == "InVpc"
    assert vpc["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    assert cfn["Conditions"]["InVpc"] == {
        "Fn::Not": [{"Fn::Equals": [{"Fn::Join": ["", {"Ref": "VpcSubnetIds"}]}, ""]}]
    }
    assert {"VpcSubnetIds", "VpcSecurityGroupIds"} <= set(cfn["Parameters"])


def test_security_groups_are_required_with_subnets_by_rule_functions_only(cfn: dict[str, Any]) -> None:
    rule = cfn["Rules"]["VpcNeedsSecurityGroups"]

    # an empty CommaDelimitedList is [""]: "each member is empty" means "not given"
    assert rule["RuleCondition"] == {"Fn::Not": [{"Fn::EachMemberEquals": [{"Ref": "VpcSubnetIds"}, ""]}]}
    [assertion] = rule["Assertions"]
    assert assertion["Assert"] == {
        "Fn::Not": [{"Fn::EachMemberEquals": [{"Ref": "VpcSecurityGroupIds"}, ""]}]
    }
    for name, each in cfn["Rules"].items():  # Fn::Join & co. would make CloudFormation reject the template
        used = set(functions_in(each.get("RuleCondition"))) | set(functions_in(each["Assertions"]))
        assert used <= RULE_FUNCTIONS, (name, used - RULE_FUNCTIONS)


def test_schedule_sync_function_has_the_section_7_environment_and_stream(cfn: dict[str, Any]) -> None:
    props = cfn["Resources"]["ScheduleSyncFunction"]["Properties"]
    env = props["Environment"]["Variables"]
    [mapping] = resources_of(cfn, "AWS::Lambda::EventSourceMapping").values()

    assert props["Handler"] == "handlers.schedules.handler"
    assert {f"LETTERSHOP_{field.upper()}" for field in ScheduleSettings.model_fields} <= set(env)
    assert env["LETTERSHOP_POLL_FUNCTION_ARN"] == {"Fn::GetAtt": ["PollFunction", "Arn"]}
    assert env["LETTERSHOP_SCHEDULE_GROUP"] == {"Ref": "ScheduleGroup"}
    stream = mapping["Properties"]
    assert stream["EventSourceArn"] == {"Fn::GetAtt": ["ChannelsTable", "StreamArn"]}
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["DeadLetterQueue", "Arn"]
    }


def _sync_schedules(cfn: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The schedules that invoke the schedule sync function, by their input."""
    return {
        props["Target"]["Input"]: props
        for props in (r["Properties"] for r in resources_of(cfn, "AWS::Scheduler::Schedule").values())
    }


@pytest.mark.parametrize(
    ("event", "expression"), [({"reconcile": True}, "cron("), ({"watch": True}, "rate(")]
)
def test_reconcile_and_watchdog_schedules_outside_the_channel_group(
    cfn: dict[str, Any], event: dict[str, bool], expression: str
) -> None:
    props = _sync_schedules(cfn)[json.dumps(event)]

    assert props["Target"]["Arn"] == {"Fn::GetAtt": ["ScheduleSyncFunction", "Arn"]}
    assert props["ScheduleExpression"].startswith(expression)
    # in the channel group, the reconcile would delete them as strays
    assert props.get("GroupName", "default") == "default"
    # no fixed name: CloudFormation generates one per stack, so a second stack of this template in
    # the same account and region does not collide with the first in the default group
    assert "Name" not in props
    assert props["Target"]["RoleArn"] == {"Fn::GetAtt": ["ReconcileSchedulerRole", "Arn"]}


def test_watchdog_runs_at_least_every_15_minutes_and_knows_the_poll_timeout(cfn: dict[str, Any]) -> None:
    props = _sync_schedules(cfn)[json.dumps({"watch": True})]
    sync_env = cfn["Resources"]["ScheduleSyncFunction"]["Properties"]["Environment"]["Variables"]
    poll = cfn["Resources"]["PollFunction"]["Properties"]

    assert props["ScheduleExpression"] == "rate(15 minutes)"
    assert props["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert sync_env["LETTERSHOP_POLL_TIMEOUT_SECONDS"] == str(poll["Timeout"])


def test_watchdog_reads_what_it_checks_and_nothing_else(cfn: dict[str, Any]) -> None:
    statements = role_statements(cfn, "ScheduleSyncFunctionRole")
    state_table = [s for s in statements.values() if "StateTable" in json.dumps(s["Resource"])]

    # the state table: its status items written (the sync's "invalid") and read by key (those the
    # index lacks), the watch index queried; nothing else of it
    sids = ("WriteChannelStatus", "ReadChannelStatus", "WatchChannels")
    assert {sid: statements[sid]["Action"] for sid in sids} == {
        "WriteChannelStatus": "dynamodb:PutItem",
        "ReadChannelStatus": "dynamodb:BatchGetItem",
        "WatchChannels": "dynamodb:Query",
    }
    assert len(state_table) == 3
    for sid in ("WriteChannelStatus", "ReadChannelStatus"):
        assert statements[sid]["Condition"] == {
            "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["status#*"]}
        }
    assert statements["WatchChannels"]["Resource"] == {"Fn::Sub": "${StateTable.Arn}/index/watch"}
    read = statements["ReadChannelSchedules"]
    assert read["Action"] == "scheduler:GetSchedule"
    assert ":schedule/${ScheduleGroup}/*" in read["Resource"]["Fn::Sub"]


def test_watch_index_is_sparse_and_projects_what_the_watchdog_reads(cfn: dict[str, Any]) -> None:
    [index] = cfn["Resources"]["StateTable"]["Properties"]["GlobalSecondaryIndexes"]

    assert index["IndexName"] == "watch"
    assert [key["AttributeName"] for key in index["KeySchema"]] == ["watch", "pk"]
    assert set(index["Projection"]["NonKeyAttributes"]) == {
        "status",
        "at",
        "since",
        "acquired_at",
        "expires_at",
    }


def test_channels_not_polled_alarm_says_where_to_look(cfn: dict[str, Any]) -> None:
    alarm = cfn["Resources"]["ChannelsNotPolledAlarm"]["Properties"]
    silent = cfn["Resources"]["WatchdogSilentAlarm"]["Properties"]

    assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}]
    for words in ("channel not polled as expected", "A channel went quiet", "channel_id"):
        assert words in alarm["AlarmDescription"], words
    # two watchdog runs in each period, so a finding is never averaged away by a late run
    assert alarm["Metrics"][0]["Period"] >= 2 * 15 * 60
    # nothing heard from the watchdog is itself the alarm
    assert (silent["TreatMissingData"], silent["ComparisonOperator"]) == ("breaching", "LessThanThreshold")


def test_dead_letter_queue_is_encrypted(cfn: dict[str, Any]) -> None:
    assert cfn["Resources"]["DeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"] is True


# ---------------------------------------------------------------------- IAM


def test_every_iam_statement_is_scoped(cfn: dict[str, Any]) -> None:
    unscoped = []
    for role, statement in policy_statements(cfn):
        if statement["Effect"] != "Allow":
            continue
        actions = tuple(sorted(as_list(statement["Action"])))
        assert all(action != "*" and not action.endswith(":*") for action in actions), (role, actions)
        if "*" in resource_of(statement) and actions not in NEEDS_STAR:
            unscoped.append((role, actions))
    assert unscoped == []


def test_no_managed_policies_hide_statements(cfn: dict[str, Any]) -> None:
    for name, role in resources_of(cfn, "AWS::IAM::Role").items():
        assert not role["Properties"].get("ManagedPolicyArns"), name


def test_scheduler_role_may_only_invoke_the_poll_and_dead_letter(cfn: dict[str, Any]) -> None:
    statements = [s for role, s in policy_statements(cfn) if role == "SchedulerRole"]

    assert {(s["Action"], json.dumps(s["Resource"])) for s in statements} == {
        ("lambda:InvokeFunction", json.dumps({"Fn::GetAtt": ["PollFunction", "Arn"]})),
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})),
    }


def test_reconcile_schedule_role_may_only_invoke_the_schedule_sync_and_dead_letter(
    cfn: dict[str, Any],
) -> None:
    statements = [s for role, s in policy_statements(cfn) if role == "ReconcileSchedulerRole"]
    trust = cfn["Resources"]["ReconcileSchedulerRole"]["Properties"]["AssumeRolePolicyDocument"]

    assert {(s["Action"], json.dumps(s["Resource"])) for s in statements} == {
        ("lambda:InvokeFunction", json.dumps({"Fn::GetAtt": ["ScheduleSyncFunction", "Arn"]})),
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})),
    }
    [statement] = trust["Statement"]
    default_group = "arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule-group/default"
    assert statement["Condition"]["ArnEquals"] == {"aws:SourceArn": {"Fn::Sub": default_group}}


def test_every_scheduler_role_trusts_only_this_account(cfn: dict[str, Any]) -> None:
    """No role that Scheduler assumes lacks the confused-deputy conditions (SAM's generated one does)."""
    assumed_by_scheduler = {
        name: statement
        for name, role in resources_of(cfn, "AWS::IAM::Role").items()
        for statement in as_list(role["Properties"]["AssumeRolePolicyDocument"]["Statement"])
        if "scheduler.amazonaws.com" in as_list(statement["Principal"].get("Service", []))
    }

    assert set(assumed_by_scheduler) == {"SchedulerRole", "ReconcileSchedulerRole"}
    for name, statement in assumed_by_scheduler.items():
        assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}, (
            name
        )
        assert "aws:SourceArn" in statement["Condition"]["ArnEquals"], name


def test_poll_writes_the_archive_and_reads_back_only_stored_replies(cfn: dict[str, Any]) -> None:
    statements = role_statements(cfn, "PollFunctionRole")
    archive = {sid: s for sid, s in statements.items() if "ArchiveBucket" in json.dumps(s["Resource"])}

    assert {sid: (sorted(as_list(s["Action"])), s["Resource"]) for sid, s in archive.items()} == {
        "ArchiveWrite": (
            ["s3:AbortMultipartUpload", "s3:PutObject"],
            {"Fn::Sub": "${ArchiveBucket.Arn}/*"},
        ),
        # the only read: a stored reply (S3Archive.stored_reply, S3Archive.load)
        "ReadStoredReplies": (
            ["s3:GetObject"],
            [{"Fn::Sub": "${ArchiveBucket.Arn}/exports/*"}, {"Fn::Sub": "${ArchiveBucket.Arn}/replies/*"}],
        ),
        # so that a missing stored reply answers 404, not 403 (S3Archive.stored_reply)
        "MissingStoredReplyIs404": (["s3:ListBucket"], {"Fn::GetAtt": ["ArchiveBucket", "Arn"]}),
    }


def test_poll_may_count_shipment_budgets_in_the_state_table(cfn: dict[str, Any]) -> None:
    # The budget items (shipments#<channel>#<day>) are read, and updated in the serial transaction,
    # beside the counter and the ledger: no condition on leading keys may leave them out.
    statements = role_statements(cfn, "PollFunctionRole")
    state = [s for s in statements.values() if "StateTable" in json.dumps(s["Resource"])]

    actions = {action for s in state for action in as_list(s["Action"])}
    # BatchWriteItem: the late ledger entries (DynamoDbLedger.save_all), authorized as its own action
    needed = {"GetItem", "PutItem", "UpdateItem", "BatchWriteItem"}
    assert {f"dynamodb:{action}" for action in needed} <= actions
    assert [s.get("Condition") for s in state] == [None] * len(state)


def test_poll_reads_only_prefixed_secrets_and_sends_only_from_the_sender_domain(cfn: dict[str, Any]) -> None:
    statements = {s["Sid"]: s for role, s in policy_statements(cfn) if role == "PollFunctionRole"}

    secrets = statements["ChannelSecrets"]
    assert secrets["Action"] == "secretsmanager:GetSecretValue"
    assert secrets["Resource"]["Fn::Sub"].endswith(":secret:${SecretsPrefix}*")
    ses = statements["RepliesViaSesFromSenderDomain"]
    assert all("${SenderDomain}" in resource["Fn::Sub"] for resource in ses["Resource"])
    assert ses["Condition"] == {"StringLike": {"ses:FromAddress": {"Fn::Sub": "*@${SenderDomain}"}}}
    tables = {json.dumps(r) for s in statements.values() for r in resource_of(s) if "Table" in json.dumps(r)}
    assert tables == {
        json.dumps({"Fn::GetAtt": ["ChannelsTable", "Arn"]}),
        json.dumps({"Fn::GetAtt": ["StateTable", "Arn"]}),
    }
    assert statements["ReadChannels"]["Action"] == "dynamodb:GetItem"  # read only


def test_schedule_sync_manages_only_its_group(cfn: dict[str, Any]) -> None:
    statements = {s["Sid"]: s for role, s in policy_statements(cfn) if role == "ScheduleSyncFunctionRole"}

    manage = statements["ManageChannelSchedules"]
    assert ":schedule/${ScheduleGroup}/*" in manage["Resource"]["Fn::Sub"]
    # what adapters.scheduler.ChannelSchedules writes, nothing more
    assert sorted(manage["Action"]) == [
        "scheduler:CreateSchedule",
        "scheduler:DeleteSchedule",
        "scheduler:UpdateSchedule",
    ]
    assert statements["PassSchedulerRole"]["Resource"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert statements["PassSchedulerRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}
    }


def test_schedule_sync_reads_only_the_channel_stream(cfn: dict[str, Any]) -> None:
    statements = role_statements(cfn, "ScheduleSyncFunctionRole")
    actions = {action for s in statements.values() for action in as_list(s["Action"])}

    stream = statements["ReadChannelStream"]
    assert sorted(stream["Action"]) == [
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
    ]
    assert stream["Resource"] == {"Fn::GetAtt": ["ChannelsTable", "StreamArn"]}
    # ListStreams has no resource-level permissions: scoped to the stream it grants nothing, and
    # with "*" it would list every stream of the account. The event source mapping names its
    # stream (EventSourceArn), so it needs only the three above.
    assert "dynamodb:ListStreams" not in actions


# ------------------------------------------------------- alarms and dashboard


def test_alarms_cover_poll_failures_quarantine_config_scripts_and_dead_letters(cfn: dict[str, Any]) -> None:
    alarms = resources_of(cfn, "AWS::CloudWatch::Alarm")
    plain = {(a["Properties"].get("Namespace"), a["Properties"].get("MetricName")) for a in alarms.values()}
    queries = [
        query["Expression"]["Fn::Sub"]
        for alarm in alarms.values()
        for query in alarm["Properties"].get("Metrics", [])
    ]

    assert {("AWS/Lambda", "Errors"), ("AWS/SQS", "ApproximateNumberOfMessagesVisible")} <= plain
    poll_errors = [
        a
        for a in alarms.values()
        if a["Properties"].get("Dimensions") == [{"Name": "FunctionName", "Value": {"Ref": "PollFunction"}}]
    ]
    assert len(poll_errors) == 1
    for metric in CUSTOM_METRIC_ALARMS:  # all channels of this stack, by a Metrics Insights query
        query = f"SELECT SUM({metric}) FROM \"LetterShop\" WHERE service = '${{AWS::StackName}}'"  # noqa: S608 - the expected text
        assert query in queries, metric
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_serial_range_alarm_tells_the_operator_to_plan_a_new_range(cfn: dict[str, Any]) -> None:
    alarm = cfn["Resources"]["SerialRangeLowAlarm"]["Properties"]
    [query] = alarm["Metrics"]
    description = alarm["AlarmDescription"]

    assert "SELECT SUM(SerialRangeLow)" in query["Expression"]["Fn::Sub"]
    assert query["Period"] * alarm["EvaluationPeriods"] <= 3 * 3600  # Metrics Insights alarms' limit
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert "OKActions" not in alarm  # the range never comes back: no "all clear" mail
    for words in ("90%", "shared by every channel", "never repeat", "never be reset", "new issuer"):
        assert words in description, words


def test_alarm_topic_mails_the_alarm_email_when_given(cfn: dict[str, Any]) -> None:
    subscription = cfn["Resources"]["AlarmEmailSubscription"]

    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}


def test_dashboard_shows_every_outcome_per_channel(cfn: dict[str, Any]) -> None:
    body = cfn["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    rendered = body.replace("${AWS::StackName}", "lettershop").replace("${AWS::Region}", "eu-central-1")
    rendered = re.sub(r"\$\{[A-Za-z:.]+\}", "x", rendered)

    widgets = json.loads(rendered)["widgets"]  # valid JSON once CloudFormation substituted it

    expressions = [
        m[0]["expression"]
        for w in widgets
        for m in w["properties"].get("metrics", [])
        if isinstance(m[0], dict)
    ]
    for metric in OUTCOME_METRICS:
        assert any(
            e.startswith("SEARCH('{LetterShop,channel_id,service}") and f'MetricName="{metric}"' in e
            for e in expressions
        ), metric


def test_dashboard_shows_the_state_of_every_alarm(cfn: dict[str, Any]) -> None:
    body = cfn["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]

    shown = set(re.findall(r"\$\{([A-Za-z]+)\.Arn\}", body))

    assert shown >= set(resources_of(cfn, "AWS::CloudWatch::Alarm"))


def test_outputs_name_tables_buckets_functions_and_dashboard(cfn: dict[str, Any]) -> None:
    outputs = {name: output["Value"] for name, output in cfn["Outputs"].items()}

    assert outputs["ChannelsTableName"] == {"Ref": "ChannelsTable"}
    assert outputs["StateTableName"] == {"Ref": "StateTable"}
    assert outputs["ScriptsBucketName"] == {"Ref": "ScriptsBucket"}
    assert outputs["ArchiveBucketName"] == {"Ref": "ArchiveBucket"}
    assert outputs["PollFunctionName"] == {"Ref": "PollFunction"}
    assert outputs["ScheduleSyncFunctionName"] == {"Ref": "ScheduleSyncFunction"}
    assert outputs["DashboardName"] == {"Ref": "Dashboard"}
    assert "DashboardUrl" in outputs
