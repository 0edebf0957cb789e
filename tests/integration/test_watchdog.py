"""No channel stops in silence (issue 20): the heartbeat and the watchdog, through the real handlers.

The poll handler and the schedule sync's ``{"watch": true}`` run against the local stack (Dovecot,
moto server); time is a clock the test controls, handed to both handlers, so "three intervals
without a poll" takes no waiting. Schedules are made by the sync's own reconcile.
"""

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from adapters.state import DynamoDbLease
from bench.probes import ApiCalls
from cli.main import app
from devstack import aws
from devstack.aws import load_template
from devstack.invoke import invoke_poll, invoke_sync, store_channel
from devstack.stack import LocalStack
from domain.watch import HEARTBEAT, heartbeat_slot
from tests.integration.conftest import JsonLogs

pytestmark = pytest.mark.integration

NO_METRICS = {"POWERTOOLS_METRICS_DISABLED": "true"}
INTERVAL = 5  # minutes, the default; stale after max(3 x 5 min, 1 h + 2 x 5 min) = 70 min


class Clock:
    """The tests' "now": starts at the real time (the schedules' modification dates are real)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def watch(clock: Callable[[], datetime]) -> dict[str, Any]:
    return invoke_sync({"watch": True}, clock=clock)


def findings(logs: JsonLogs) -> list[tuple[str, str]]:
    """``(channel_id, finding)`` of every watchdog finding logged."""
    return [
        (line["channel_id"], line["finding"])
        for line in logs.lines()
        if str(line.get("message", "")).startswith("channel not polled as expected")
    ]


def stale_metrics(out: str) -> list[dict[str, Any]]:
    return [
        doc
        for doc in (json.loads(line) for line in out.splitlines() if '"_aws"' in line)
        if "StaleChannel" in doc
    ]


def scheduler(stack: LocalStack) -> Any:
    return aws.client("scheduler", stack.endpoint_url)


def test_a_schedule_deleted_behind_the_syncs_back_is_named_and_repaired(
    sync_env: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs
) -> None:
    # Given two active channels with their schedules, one of them deleted by hand in the console
    store_channel(sync_env, mailbox, channel_id="acme")
    store_channel(sync_env, mailbox, channel_id="beta")
    invoke_sync({"reconcile": True})
    scheduler(sync_env).delete_schedule(Name="acme", GroupName=sync_env.names.schedule_group)
    clock = Clock()

    # When the watchdog runs
    summary = watch(clock)

    # Then it names that channel and what is wrong, and the schedule is back as the item asks
    assert findings(json_logs) == [("acme", "schedule_missing")]
    assert (summary["channels"], summary["schedule_missing"], summary["repaired"]) == (2, 1, 1)
    repaired = scheduler(sync_env).get_schedule(Name="acme", GroupName=sync_env.names.schedule_group)
    assert (repaired["State"], repaired["ScheduleExpression"]) == ("ENABLED", "rate(5 minutes)")


def test_a_schedule_disabled_or_given_another_interval_in_the_console_is_repaired(
    sync_env: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs
) -> None:
    store_channel(sync_env, mailbox, channel_id="acme")
    store_channel(sync_env, mailbox, channel_id="beta")
    invoke_sync({"reconcile": True})
    group = sync_env.names.schedule_group
    for name, changes in (
        ("acme", {"State": "DISABLED"}),
        ("beta", {"ScheduleExpression": "rate(60 minutes)"}),
    ):
        stored = scheduler(sync_env).get_schedule(Name=name, GroupName=group)
        keep = ("Name", "GroupName", "ScheduleExpression", "FlexibleTimeWindow", "Target", "State")
        scheduler(sync_env).update_schedule(**{**{key: stored[key] for key in keep}, **changes})

    summary = watch(Clock())

    assert sorted(findings(json_logs)) == [("acme", "schedule_disabled"), ("beta", "schedule_changed")]
    [changed] = [line for line in json_logs.lines() if line.get("finding") == "schedule_changed"]
    assert "ScheduleExpression" in changed["detail"]
    assert summary["repaired"] == 2
    for name in ("acme", "beta"):
        repaired = scheduler(sync_env).get_schedule(Name=name, GroupName=group)
        assert (repaired["State"], repaired["ScheduleExpression"]) == ("ENABLED", "rate(5 minutes)")


def test_a_channel_whose_polls_stop_is_named_and_counted_for_the_alarm(
    sync_env: LocalStack,
    mailbox: tuple[str, str],
    json_logs: JsonLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a channel polled once, then never again (throttled, its schedule not firing ...)
    store_channel(sync_env, mailbox)
    invoke_sync({"reconcile": True})
    clock = Clock()
    assert invoke_poll({"channel_id": "acme"}, clock=clock)["status"] == "ok"

    # When the watchdog runs within the bound, nothing is said; past it, the channel is named
    clock.advance(minutes=69)
    watch(clock)
    assert findings(json_logs) == []
    capsys.readouterr()
    clock.advance(minutes=2)
    summary = watch(clock)

    assert findings(json_logs) == [("acme", "not_polled")]
    assert summary["not_polled"] == 1
    [line] = [line for line in json_logs.lines() if line.get("finding") == "not_polled"]
    assert "last completed poll 1 h 11 min ago" in line["detail"]
    # and the metric is the one the alarm's query sums: name, namespace, dimensions
    [metric] = stale_metrics(capsys.readouterr().out)
    [directive] = metric["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "LetterShop"
    assert sorted(directive["Dimensions"][0]) == ["channel_id", "service"]
    assert (metric["channel_id"], metric["StaleChannel"]) == ("acme", [1.0])
    query = _alarm_query("ChannelsNotPolledAlarm")
    assert query.startswith('SELECT SUM(StaleChannel) FROM "LetterShop" WHERE service = ')


def test_a_channel_that_polls_fine_without_mail_is_never_reported_and_pays_only_the_heartbeat(
    sync_env: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs
) -> None:
    store_channel(sync_env, mailbox)
    invoke_sync({"reconcile": True})
    clock = Clock()
    start = clock.now
    invoke_poll({"channel_id": "acme"}, clock=clock)  # cold: secrets, status written

    # When it is polled every 5 minutes for three hours, and the watchdog runs every 15
    per_poll: list[list[str]] = []
    with ApiCalls() as calls:
        for minute in range(INTERVAL, 3 * 60 + 1, INTERVAL):
            clock.advance(minutes=INTERVAL)
            with calls.window() as window:
                assert invoke_poll({"channel_id": "acme"}, clock=clock)["status"] == "ok"
            per_poll.append(window.calls)
            if minute % 15 == 0:
                watch(clock)

    # Then it is never reported, and each empty poll made one request but for one write an hour
    assert timedelta(hours=1) == HEARTBEAT
    assert findings(json_logs) == []
    extra = [(n + 1) * INTERVAL for n, made in enumerate(per_poll) if made != ["dynamodb.GetItem"]]
    # the first poll in each of the channel's heartbeat slots (hours at an offset of its own)
    new_slot = [
        m
        for m in range(INTERVAL, 3 * 60 + 1, INTERVAL)
        if heartbeat_slot("acme", start + timedelta(minutes=m))
        > heartbeat_slot("acme", start + timedelta(minutes=m - INTERVAL))
    ]
    assert extra == new_slot
    assert len(extra) == 3
    assert all(
        Counter(per_poll[m // INTERVAL - 1]) == {"dynamodb.GetItem": 1, "dynamodb.UpdateItem": 1}
        for m in extra
    )


def test_a_status_item_from_before_the_watch_index_still_counts(
    sync_env: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs
) -> None:
    # Given a channel whose status item was written before the upgrade (no `watch`, no `since`): the
    # index does not know it, the item says the channel was polled a minute ago
    store_channel(sync_env, mailbox)
    invoke_sync({"reconcile": True})
    clock = Clock()
    polled = clock.advance(minutes=79)
    aws.client("dynamodb", sync_env.endpoint_url).put_item(
        TableName=sync_env.names.state_table,
        Item={
            "pk": {"S": "status#acme"},
            "channel_id": {"S": "acme"},
            "status": {"S": "ok"},
            "at": {"S": polled.isoformat(timespec="seconds")},
            "source": {"S": "poll"},
            "detail": {"S": ""},
        },
    )

    # When the watchdog runs 80 minutes after the schedule was written
    clock.advance(minutes=1)
    summary = watch(clock)

    # Then the channel is not reported: its record was read by key
    assert findings(json_logs) == []
    assert summary["findings"] == 0


def test_inactive_and_invalid_channels_are_never_reported_as_stale(
    sync_env: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs
) -> None:
    store_channel(sync_env, mailbox, channel_id="resting", active=False)
    store_channel(sync_env, mailbox, channel_id="broken", pop3_host=None)
    invoke_sync({"reconcile": True})  # their schedules exist, disabled
    clock = Clock()

    clock.advance(days=3)
    summary = watch(clock)

    assert findings(json_logs) == []
    assert (summary["channels"], summary["findings"]) == (0, 0)


def test_a_lease_held_past_the_poll_functions_timeout_is_reported(
    sync_env: LocalStack, mailbox: tuple[str, str], json_logs: JsonLogs
) -> None:
    store_channel(sync_env, mailbox)
    invoke_sync({"reconcile": True})
    clock = Clock()
    invoke_poll({"channel_id": "acme"}, clock=clock)
    lease = DynamoDbLease(sync_env.names.state_table, aws.client("dynamodb", sync_env.endpoint_url))
    assert lease.acquire("acme", "stuck-owner", seconds=24 * 3600)  # a lease that never expires in time

    clock.advance(minutes=4)
    watch(clock)
    assert findings(json_logs) == []  # a poll may hold it up to its timeout (300 s) and 60 s more
    clock.advance(minutes=3)
    watch(clock)

    assert findings(json_logs) == [("acme", "lease_stuck")]


def last_column(table: str) -> dict[str, str]:
    """The table's last column by its first, a row's wrapped lines joined."""
    cells: dict[str, list[str]] = {}
    row = ""
    for line in table.splitlines():
        if line.count("│") < 3:
            continue
        parts = [part.strip() for part in line.split("│")]
        row = parts[1] or row
        cells.setdefault(row, []).append(parts[-2])
    return {name: " ".join(part for part in parts if part) for name, parts in cells.items()}


def _alarm_query(name: str) -> str:
    [query] = load_template()["Resources"][name]["Properties"]["Metrics"]
    return str(query["Expression"]["Fn::Sub"])


def test_channel_list_and_show_mark_a_stale_channel_with_the_age_of_its_last_poll(
    stack: LocalStack, mailbox: tuple[str, str]
) -> None:
    # Given two channels without schedules: one polled two hours ago, one a minute ago
    store_channel(stack, mailbox, channel_id="acme")
    store_channel(stack, mailbox, channel_id="beta")
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    invoke_poll({"channel_id": "acme"}, clock=lambda: two_hours_ago)
    invoke_poll({"channel_id": "beta"})

    listed = CliRunner().invoke(app, ["channel", "list"], env=NO_METRICS)
    shown = CliRunner().invoke(app, ["channel", "show", "acme"], env=NO_METRICS)

    assert listed.exit_code == 0, listed.output
    last_poll = last_column(listed.stdout)
    assert last_poll["acme"].endswith("(2 h 0 min ago) STALE: not_polled")
    assert "STALE" not in last_poll["beta"]
    assert shown.exit_code == 0, shown.output
    assert "STALE (not_polled): last completed poll 2 h 0 min ago; polled every 5 min" in shown.stdout
    assert "last poll: " in shown.stdout
