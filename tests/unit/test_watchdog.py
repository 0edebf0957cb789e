"""The watchdog's run (``service.watchdog``) with an in-memory schedule group: what it reads when time
is short, and where each run starts."""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from domain.schedule import Schedule
from domain.watch import LeaseRecord, PollRecord, ScheduleSummary
from service.watchdog import RUN_SECONDS, watch

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
POLL_ARN = "arn:aws:lambda:eu-central-1:123456789012:function:lettershop-poll"
ITEM = {
    "active": True,
    "subject_keyword": "LetterShop",
    "pop3_host": "pop.acme-mail.example",
    "pop3_username": "lettershop@acme-mail.example",
    "pop3_password_secret": "lettershop/acme/pop3",
    "sender_address": "lettershop@operator.example",
    "smtp_host": "smtp.operator.example",
    "allowed_senders": ["orders@acme.example"],
}


class ChangedGroup:
    """Every schedule enabled, targeting the poll, changed a minute ago; records which it reads."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.read: list[str] = []
        self.modified = NOW - timedelta(minutes=1)

    def summaries(self) -> list[ScheduleSummary]:
        return [ScheduleSummary(name, "ENABLED", POLL_ARN, self.modified) for name in self.names]

    def differences(self, schedule: Schedule) -> list[str] | None:
        self.read.append(schedule.name)
        return []

    def put(self, schedule: Schedule) -> str:
        raise AssertionError(f"nothing is to be repaired, yet {schedule.name} was written")


class FreshRecords:
    """Every channel polled just now, no lease."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def records(self, channel_ids: Sequence[str]) -> tuple[dict[str, PollRecord], dict[str, LeaseRecord]]:
        return {channel_id: PollRecord("ok", self.at, self.at) for channel_id in channel_ids}, {}


def run(group: ChangedGroup, *, now: datetime = NOW, seconds_left: float = 100.0) -> dict[str, object]:
    items = [{**ITEM, "channel_id": name} for name in group.names]
    return watch(
        items,
        group,
        FreshRecords(now),
        now=now,
        time_left=lambda: seconds_left,
        poll_function_arn=POLL_ARN,
        poll_timeout=timedelta(seconds=300),
    )


def test_a_run_short_of_time_reads_no_more_changed_schedules_and_says_how_many_it_left() -> None:
    group = ChangedGroup([f"ch{n:02}" for n in range(10)])

    summary = run(group, seconds_left=5.0)

    assert group.read == []
    assert (summary["changed_unread"], summary["findings"], summary["channels"]) == (10, 0, 10)


def test_consecutive_runs_start_at_different_channels() -> None:
    group = ChangedGroup([f"ch{n:02}" for n in range(10)])

    firsts = set()
    for run_number in range(4):
        now = NOW + timedelta(seconds=run_number * RUN_SECONDS)
        group.read.clear()
        group.modified = now - timedelta(minutes=1)
        run(group, now=now)
        firsts.add(group.read[0])
        assert sorted(group.read) == group.names  # with time enough, every changed one is read

    assert len(firsts) == 4
