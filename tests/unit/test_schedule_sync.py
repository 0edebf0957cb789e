"""The schedule sync (DESIGN §7) with a recording fake of the schedule group: events/ files in, calls out."""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from domain.errors import TransientError
from domain.schedule import Schedule
from service.schedules import MalformedRecord, ReconcileIncomplete, apply_record, reconcile

EVENTS = Path(__file__).resolve().parents[2] / "events"


class RecordingSchedules:
    """A schedule group in memory; records every call, can be told to fail for one name."""

    def __init__(self, *existing: str, failing: str | None = None) -> None:
        self.schedules: dict[str, Schedule | None] = dict.fromkeys(existing)
        self.calls: list[tuple[str, str]] = []
        self.failing = failing

    def put(self, schedule: Schedule) -> str:
        self.calls.append(("put", schedule.name))
        if schedule.name == self.failing:
            raise TransientError("Scheduler throttled (will be retried)")
        outcome = "updated" if schedule.name in self.schedules else "created"
        self.schedules[schedule.name] = schedule
        return outcome

    def ensure(self, schedule: Schedule) -> str:
        """As ``ChannelSchedules.ensure``: only a missing or different schedule is written."""
        self.calls.append(("get", schedule.name))
        if self.schedules.get(schedule.name) == schedule:
            return "unchanged"
        return self.put(schedule)

    def delete(self, name: str) -> bool:
        self.calls.append(("delete", name))
        if name == self.failing:
            raise TransientError("Scheduler throttled (will be retried)")
        return self.schedules.pop(name, False) is not False

    def names(self) -> list[str]:
        return sorted(self.schedules)


def stream_record(name: str) -> DynamoDBRecord:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return DynamoDBRecord(event["Records"][0])


def emitted_metrics(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith('{"_aws"')]


def test_insert_of_an_inactive_channel_creates_a_disabled_schedule() -> None:
    schedules = RecordingSchedules()

    outcome = apply_record(stream_record("stream-insert.json"), schedules)

    assert outcome == "created"
    schedule = schedules.schedules["demo"]
    assert schedule is not None
    assert (schedule.state, schedule.expression) == ("DISABLED", "rate(5 minutes)")


def test_modify_updates_interval_and_state() -> None:
    schedules = RecordingSchedules("demo")

    outcome = apply_record(stream_record("stream-modify.json"), schedules)

    assert outcome == "updated"
    schedule = schedules.schedules["demo"]
    assert schedule is not None
    assert (schedule.state, schedule.expression) == ("ENABLED", "rate(15 minutes)")


def test_remove_deletes_the_schedule_and_a_missing_one_is_no_error() -> None:
    schedules = RecordingSchedules("demo")

    assert apply_record(stream_record("stream-remove.json"), schedules) == "deleted"
    assert apply_record(stream_record("stream-remove.json"), schedules) == "absent"
    assert schedules.names() == []


def test_invalid_item_disables_the_schedule_logs_errors_and_counts_the_metric(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    record = json.loads((EVENTS / "stream-modify.json").read_text())["Records"][0]
    record["dynamodb"]["NewImage"]["pop3_host"] = {"S": ""}
    record["dynamodb"]["NewImage"]["reply_via"] = {"S": "pigeon"}
    schedules = RecordingSchedules("demo")

    apply_record(DynamoDBRecord(record), schedules)

    schedule = schedules.schedules["demo"]
    assert schedule is not None
    assert schedule.state == "DISABLED"
    logged = [record for record in caplog.records if hasattr(record, "errors")]
    assert [record.levelname for record in logged] == ["ERROR"]
    assert {error["field"] for error in logged[0].errors} >= {"pop3_host", "reply_via"}
    metric = next(m for m in emitted_metrics(capsys.readouterr().out) if "InvalidChannelConfig" in m)
    assert (metric["channel_id"], metric["InvalidChannelConfig"]) == ("demo", [1.0])


def test_record_without_new_image_is_malformed() -> None:
    record = json.loads((EVENTS / "stream-modify.json").read_text())["Records"][0]
    del record["dynamodb"]["NewImage"]

    with pytest.raises(MalformedRecord, match="NEW_AND_OLD_IMAGES"):
        apply_record(DynamoDBRecord(record), RecordingSchedules())


def test_reconcile_writes_every_channel_and_deletes_strays() -> None:
    items = [
        {**_item("stream-modify.json"), "channel_id": "acme"},
        {**_item("stream-insert.json"), "channel_id": "beta"},
    ]
    schedules = RecordingSchedules("acme", "gone")

    summary = reconcile(items, schedules)

    assert schedules.names() == ["acme", "beta"]
    assert summary == {
        "channels": 2,
        "created": 1,
        "updated": 1,
        "unchanged": 0,
        "deleted": 1,
        "enabled": 1,
        "disabled": 1,
        "invalid": 0,
        "failed": [],
    }


def test_reconcile_writes_only_what_differs() -> None:
    items = [{**_item("stream-insert.json"), "channel_id": name} for name in ("acme", "beta")]
    schedules = RecordingSchedules()
    reconcile(items, schedules)
    schedules.calls.clear()

    summary = reconcile(items, schedules)

    assert (summary["unchanged"], summary["created"], summary["updated"]) == (2, 0, 0)
    assert schedules.calls == [("get", "acme"), ("get", "beta")]  # read, never written again


def test_reconcile_goes_on_past_a_failing_schedule_then_reports_it() -> None:
    items = [{**_item("stream-insert.json"), "channel_id": name} for name in ("acme", "beta", "gamma")]
    schedules = RecordingSchedules("stray", failing="beta")

    with pytest.raises(ReconcileIncomplete, match="beta"):
        reconcile(items, schedules)

    assert schedules.names() == ["acme", "gamma"]
    assert ("delete", "stray") in schedules.calls


def _item(name: str) -> dict[str, Any]:
    record = stream_record(name)
    assert record.dynamodb is not None
    return record.dynamodb.new_image


class RecordingStatuses:
    """The channels' status records in memory (``adapters.status.ScheduleSyncStatuses``)."""

    def __init__(self, *, failing: bool = False) -> None:
        self.calls: list[tuple[str, str, tuple[tuple[str, str], ...]]] = []
        self.failing = failing

    def invalid(self, channel_id: str, errors: Sequence[tuple[str, str]]) -> None:
        if self.failing:
            raise TransientError("state table throttled")
        self.calls.append(("invalid", channel_id, tuple(errors)))

    def valid(self, channel_id: str) -> None:
        self.calls.append(("valid", channel_id, ()))


def test_an_invalid_item_is_recorded_in_the_channel_status_with_every_reason() -> None:
    record = json.loads((EVENTS / "stream-modify.json").read_text())["Records"][0]
    record["dynamodb"]["NewImage"]["pop3_host"] = {"S": ""}
    record["dynamodb"]["NewImage"]["reply_via"] = {"S": "pigeon"}
    statuses = RecordingStatuses()

    apply_record(DynamoDBRecord(record), RecordingSchedules("demo"), statuses)

    [(kind, channel_id, errors)] = statuses.calls
    assert (kind, channel_id) == ("invalid", "demo")
    assert {field for field, _ in errors} >= {"pop3_host", "reply_via"}


def test_a_valid_item_replaces_an_invalid_status_and_a_failing_status_never_stops_the_schedule() -> None:
    statuses = RecordingStatuses()
    apply_record(stream_record("stream-modify.json"), RecordingSchedules("demo"), statuses)
    assert statuses.calls == [("valid", "demo", ())]

    record = json.loads((EVENTS / "stream-modify.json").read_text())["Records"][0]
    record["dynamodb"]["NewImage"]["pop3_host"] = {"S": ""}
    schedules = RecordingSchedules("demo")
    assert apply_record(DynamoDBRecord(record), schedules, RecordingStatuses(failing=True)) == "updated"
    schedule = schedules.schedules["demo"]
    assert schedule is not None
    assert schedule.state == "DISABLED"


def test_reconcile_records_the_invalid_items() -> None:
    items = [
        {**_item("stream-modify.json"), "channel_id": "acme", "reply_via": "pigeon"},
        {**_item("stream-insert.json"), "channel_id": "beta"},
    ]
    statuses = RecordingStatuses()

    reconcile(items, RecordingSchedules(), statuses)

    assert [(kind, channel_id) for kind, channel_id, _ in statuses.calls] == [
        ("invalid", "acme"),
        ("valid", "beta"),
    ]
