"""Schedules follow the channel table (DESIGN §7), through the real handler, on moto server.

Channel items are written to the stack's channel table as an operator would; the records the
handler gets are read back from that table's own DynamoDB stream, exactly as Lambda's event source
mapping delivers them. What counts is what is left in EventBridge Scheduler afterwards.
"""

import json
from datetime import datetime
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.scheduler import ScheduleStates
from adapters.status import ChannelStatusStore
from app.root import WARM
from cli.main import app
from devstack import aws
from devstack.invoke import DLQ_ARN, POLL_FUNCTION_ARN, SCHEDULER_ROLE_ARN, load_event
from devstack.invoke import invoke_sync as invoke
from devstack.stack import LocalStack
from service.schedules import ReconcileIncomplete
from tests.integration.conftest import JsonLogs

CHANNEL: dict[str, Any] = {
    "channel_id": "acme",
    "active": True,
    "subject_keyword": "LetterShop",
    "pop3_host": "pop.acme-mail.example",
    "pop3_username": "lettershop@acme-mail.example",
    "pop3_password_secret": "lettershop/acme/pop3",
    "sender_address": "lettershop@operator.example",
    "smtp_host": "smtp.operator.example",
    "allowed_senders": ["orders@acme.example"],
}


class ChannelStream:
    """The channel table's DynamoDB stream, read as Lambda's event source mapping reads it."""

    def __init__(self, stack: LocalStack) -> None:
        endpoint = stack.endpoint_url
        table = aws.client("dynamodb", endpoint).describe_table(TableName=stack.names.channels_table)
        self.arn = table["Table"]["LatestStreamArn"]
        self._streams = aws.client("dynamodbstreams", endpoint)
        [shard] = self._streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        self._iterator = self._streams.get_shard_iterator(
            StreamArn=self.arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]

    def next_records(self) -> list[dict[str, Any]]:
        """The records written since the last call, as the Lambda event's ``Records`` holds them."""
        answer = self._streams.get_records(ShardIterator=self._iterator)
        self._iterator = answer["NextShardIterator"]
        return [self._as_lambda_record(record) for record in answer["Records"]]

    def _as_lambda_record(self, record: dict[str, Any]) -> dict[str, Any]:
        wire: dict[str, Any] = json.loads(json.dumps(record, default=_epoch))
        wire["eventSourceARN"] = self.arn
        return wire


def _epoch(value: object) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@pytest.fixture
def stream(sync_env: LocalStack) -> ChannelStream:
    return ChannelStream(sync_env)


def sync(stream: ChannelStream) -> dict[str, Any]:
    """Hand the stream's new records to the handler in one batch; every record must succeed."""
    records = stream.next_records()
    assert records, "the table change left no stream record"
    result = invoke({"Records": records})
    assert result == {"batchItemFailures": []}
    return result


def put_channel(stack: LocalStack, **changes: Any) -> None:
    item = {**CHANNEL, **changes}
    aws.put_channel(
        stack.endpoint_url, stack.names.channels_table, {k: v for k, v in item.items() if v is not None}
    )


def schedules(stack: LocalStack) -> dict[str, dict[str, Any]]:
    """Every schedule of the group, in full (``get_schedule``), by name."""
    scheduler = aws.client("scheduler", stack.endpoint_url)
    group = stack.names.schedule_group
    names = [
        summary["Name"]
        for page in scheduler.get_paginator("list_schedules").paginate(GroupName=group)
        for summary in page["Schedules"]
    ]
    return {name: scheduler.get_schedule(Name=name, GroupName=group) for name in names}


def state_of(stack: LocalStack) -> dict[str, tuple[str, str]]:
    return {name: (s["State"], s["ScheduleExpression"]) for name, s in schedules(stack).items()}


def test_new_active_channel_gets_an_enabled_schedule_invoking_the_poll(
    stack: LocalStack, stream: ChannelStream
) -> None:
    put_channel(stack)

    sync(stream)

    found = schedules(stack)
    assert list(found) == ["acme"]
    schedule = found["acme"]
    assert (schedule["State"], schedule["ScheduleExpression"]) == ("ENABLED", "rate(5 minutes)")
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = schedule["Target"]
    assert (target["Arn"], target["RoleArn"]) == (POLL_FUNCTION_ARN, SCHEDULER_ROLE_ARN)
    assert json.loads(target["Input"]) == {"channel_id": "acme"}
    assert target["DeadLetterConfig"] == {"Arn": DLQ_ARN}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 300, "MaximumRetryAttempts": 3}


def test_edits_of_interval_and_active_flag_follow(stack: LocalStack, stream: ChannelStream) -> None:
    put_channel(stack)
    sync(stream)

    put_channel(stack, poll_interval_minutes=1)
    sync(stream)
    assert state_of(stack) == {"acme": ("ENABLED", "rate(1 minute)")}

    put_channel(stack, poll_interval_minutes=30, active=False)
    sync(stream)
    assert state_of(stack) == {"acme": ("DISABLED", "rate(30 minutes)")}

    put_channel(stack, poll_interval_minutes=30, active=True)
    sync(stream)
    assert state_of(stack) == {"acme": ("ENABLED", "rate(30 minutes)")}


def test_the_command_line_shows_the_schedules_state_through_the_adapter(
    stack: LocalStack, stream: ChannelStream
) -> None:
    """``lettershop channel show|list`` read the schedule through ``adapters.scheduler.ScheduleStates``."""
    put_channel(stack, active=False)
    sync(stream)
    put_channel(stack, channel_id="beta")  # no sync: no schedule yet

    shown = CliRunner().invoke(app, ["channel", "show", "acme"])
    listed = CliRunner().invoke(app, ["channel", "list"])

    assert shown.exit_code == 0, shown.output
    assert "schedule: DISABLED" in shown.stdout
    assert (
        ScheduleStates(aws.client("scheduler", stack.endpoint_url), stack.names.schedule_group).state("beta")
        is None
    )
    [beta] = [line for line in listed.stdout.splitlines() if "│ beta" in line]
    assert "│ none" in beta


def test_invalid_item_disables_the_schedule_and_says_why(
    stack: LocalStack, stream: ChannelStream, json_logs: JsonLogs, capsys: pytest.CaptureFixture[str]
) -> None:
    put_channel(stack)
    sync(stream)

    put_channel(stack, pop3_host=None, reply_via="pigeon")
    sync(stream)

    assert state_of(stack) == {"acme": ("DISABLED", "rate(5 minutes)")}
    [line] = [line for line in json_logs.lines() if "errors" in line]
    assert (line["level"], line["channel_id"]) == ("ERROR", "acme")
    assert {error["field"] for error in line["errors"]} == {"pop3_host", "reply_via"}
    emitted = [json.loads(out) for out in capsys.readouterr().out.splitlines() if out.startswith('{"_aws"')]
    assert any(m.get("InvalidChannelConfig") == [1.0] and m["channel_id"] == "acme" for m in emitted)

    put_channel(stack)  # fixed in the console
    sync(stream)
    assert state_of(stack) == {"acme": ("ENABLED", "rate(5 minutes)")}


def test_deleted_channel_loses_its_schedule_and_a_missing_one_is_no_error(
    stack: LocalStack, stream: ChannelStream
) -> None:
    put_channel(stack)
    put_channel(stack, channel_id="beta", active=False)
    sync(stream)
    assert set(schedules(stack)) == {"acme", "beta"}

    aws.delete_channel(stack.endpoint_url, stack.names.channels_table, "acme")
    [remove] = stream.next_records()
    assert remove["eventName"] == "REMOVE"
    assert invoke({"Records": [remove]}) == {"batchItemFailures": []}
    assert state_of(stack) == {"beta": ("DISABLED", "rate(5 minutes)")}

    assert invoke({"Records": [remove]}) == {"batchItemFailures": []}  # the same record again
    assert set(schedules(stack)) == {"beta"}


def test_bad_record_is_reported_and_the_others_are_applied(stack: LocalStack, stream: ChannelStream) -> None:
    put_channel(stack)
    put_channel(stack, channel_id="beta")
    put_channel(stack, channel_id="gamma")
    records = stream.next_records()
    assert len(records) == 3
    del records[1]["dynamodb"]["NewImage"]  # as a KEYS_ONLY stream would deliver it

    result = invoke({"Records": records})

    assert result == {"batchItemFailures": [{"itemIdentifier": records[1]["dynamodb"]["SequenceNumber"]}]}
    assert set(schedules(stack)) == {"acme", "gamma"}


def test_reconcile_repairs_a_deleted_and_a_stray_schedule(stack: LocalStack, stream: ChannelStream) -> None:
    put_channel(stack)
    put_channel(stack, channel_id="beta", poll_interval_minutes=15)
    sync(stream)
    scheduler = aws.client("scheduler", stack.endpoint_url)
    group = stack.names.schedule_group
    scheduler.delete_schedule(Name="beta", GroupName=group)  # drift: someone deleted it
    scheduler.update_schedule(  # drift: someone edited it
        **{k: v for k, v in schedules(stack)["acme"].items() if k in UPDATABLE}, State="DISABLED"
    )
    stray = schedules(stack)["acme"]
    scheduler.create_schedule(  # drift: a schedule whose channel no longer exists
        Name="ghost",
        GroupName=group,
        ScheduleExpression="rate(5 minutes)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target=stray["Target"],
    )

    summary = invoke(load_event("reconcile.json"))

    assert state_of(stack) == {
        "acme": ("ENABLED", "rate(5 minutes)"),
        "beta": ("ENABLED", "rate(15 minutes)"),
    }
    assert (summary["channels"], summary["created"], summary["updated"], summary["deleted"]) == (2, 1, 1, 1)
    assert summary["failed"] == []


def test_reconcile_reads_every_page_of_table_and_schedule_group(sync_env: LocalStack) -> None:
    stack = sync_env
    names = [f"channel-{number:02d}" for number in range(60)]  # > 1 MB of items, > 50 schedules
    for name in names:
        put_channel(stack, channel_id=name, description="x" * 20_000)

    summary = invoke({"reconcile": True})

    assert (summary["channels"], summary["created"]) == (60, 60)
    assert sorted(schedules(stack)) == names
    for name in names:
        aws.delete_channel(stack.endpoint_url, stack.names.channels_table, name)

    summary = invoke({"reconcile": True})

    assert (summary["channels"], summary["deleted"]) == (0, 60)
    assert schedules(stack) == {}


def test_reconcile_reports_a_schedule_it_could_not_write(
    sync_env: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = sync_env
    put_channel(stack)
    monkeypatch.setenv("LETTERSHOP_SCHEDULE_GROUP", "no-such-group")
    WARM.reset()

    with pytest.raises(ReconcileIncomplete, match="acme"):
        invoke({"reconcile": True})


UPDATABLE = ("Name", "GroupName", "ScheduleExpression", "FlexibleTimeWindow", "Target")


def test_an_invalid_item_is_recorded_in_the_channel_status_until_it_is_fixed(
    stack: LocalStack, stream: ChannelStream
) -> None:
    """``lettershop channel list`` shows "invalid: <reasons>" next to the channel (status record)."""
    statuses = ChannelStatusStore(stack.names.state_table, aws.client("dynamodb", stack.endpoint_url))
    put_channel(stack)
    sync(stream)
    assert statuses.get("acme") is None  # a valid item leaves no record of its own

    put_channel(stack, pop3_host=None, reply_via="pigeon")
    sync(stream)

    status = statuses.get("acme")
    assert status is not None
    assert (status.status, status.source) == ("invalid_config", "schedule-sync")
    assert status.detail is not None
    assert status.detail.startswith("invalid: ")
    assert "pop3_host: Field required" in status.detail
    assert "reply_via:" in status.detail

    put_channel(stack)  # fixed in the console
    sync(stream)
    fixed = statuses.get("acme")
    assert fixed is not None
    assert (fixed.status, fixed.detail) == ("saved", "item valid again")
