"""The watchdog's rules (``domain.watch``): when a channel counts as quiet, and the heartbeat that
keeps a healthy one from ever looking so."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.watch import (
    HEARTBEAT,
    LeaseRecord,
    PollRecord,
    ScheduleSummary,
    age,
    heartbeat_due,
    heartbeat_slot,
    lease_finding,
    poll_findings,
    schedule_findings,
    stale_after,
)

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
POLL_ARN = "arn:aws:lambda:eu-central-1:123456789012:function:lettershop-poll"


def ok(at: datetime, since: datetime | None = None) -> PollRecord:
    return PollRecord(status="ok", at=at, since=since or at)


@pytest.mark.parametrize(
    ("minutes", "bound"),
    [
        (1, timedelta(minutes=62)),
        (5, timedelta(minutes=70)),
        (60, timedelta(hours=3)),
        (1440, timedelta(days=3)),
    ],
)
def test_stale_after_three_intervals_and_never_before_the_heartbeat_plus_two(
    minutes: int, bound: timedelta
) -> None:
    assert stale_after(minutes) == bound


def test_a_recent_poll_is_fine_and_an_old_one_is_named_with_its_age() -> None:
    assert poll_findings("acme", 5, ok(NOW - timedelta(minutes=70)), None, NOW) == []

    [finding] = poll_findings("acme", 5, ok(NOW - timedelta(minutes=71)), None, NOW)

    assert (finding.channel_id, finding.kind) == ("acme", "not_polled")
    assert finding.detail.startswith("last completed poll 1 h 11 min ago; polled every 5 min")


def test_a_schedule_changed_lately_restarts_the_clock() -> None:
    weeks_ago = ok(NOW - timedelta(days=20))  # the channel was inactive, and was just activated again

    assert poll_findings("acme", 5, weeks_ago, NOW - timedelta(minutes=10), NOW) == []
    [finding] = poll_findings("acme", 5, None, NOW - timedelta(hours=2), NOW)
    assert finding.detail.startswith("no completed poll recorded")
    assert poll_findings("acme", 5, None, None, NOW) == []  # nothing to judge by


def test_polls_that_all_end_in_error_for_longer_than_the_bound_are_named() -> None:
    failing = PollRecord(status="error", at=NOW - timedelta(minutes=1), since=NOW - timedelta(minutes=71))

    [finding] = poll_findings("acme", 5, failing, None, NOW)

    assert (finding.kind, finding.detail) == ("failing", "every poll has ended in error for 1 h 11 min")
    recent = PollRecord(status="error", at=NOW, since=NOW - timedelta(minutes=30))
    assert poll_findings("acme", 5, recent, None, NOW) == []


def test_a_lease_is_stuck_only_while_held_past_the_timeout() -> None:
    timeout = timedelta(seconds=300)
    held = LeaseRecord(acquired_at=NOW - timedelta(minutes=7), expires_at=NOW + timedelta(hours=1))
    # a poll killed at its timeout leaves its lease for another minute: not stuck
    young = LeaseRecord(
        acquired_at=NOW - timedelta(minutes=5, seconds=50), expires_at=NOW + timedelta(hours=1)
    )
    expired = LeaseRecord(acquired_at=NOW - timedelta(days=2), expires_at=NOW - timedelta(days=2))

    finding = lease_finding("acme", held, timeout, NOW)

    assert finding is not None
    assert finding.kind == "lease_stuck"
    assert "taken 7 min ago" in finding.detail
    assert [lease_finding("acme", lease, timeout, NOW) for lease in (young, expired, None)] == [None] * 3


def test_the_schedule_list_shows_missing_disabled_and_foreign_targets() -> None:
    def summary(state: str = "ENABLED", target: str = POLL_ARN) -> ScheduleSummary:
        return ScheduleSummary(name="acme", state=state, target_arn=target, modified=NOW)

    assert schedule_findings("acme", summary(), POLL_ARN) == []
    kinds = [
        [f.kind for f in schedule_findings("acme", s, POLL_ARN)]
        for s in (None, summary(state="DISABLED"), summary(target="arn:aws:lambda:other"))
    ]
    assert kinds == [["schedule_missing"], ["schedule_disabled"], ["schedule_changed"]]
    assert all(f.about_schedule for f in schedule_findings("acme", None, POLL_ARN))


def test_ages_read_as_an_operator_would() -> None:
    assert [age(timedelta(minutes=m)) for m in (0, 45, 192, 3120)] == [
        "0 min",
        "45 min",
        "3 h 12 min",
        "2 d 4 h",
    ]


@given(
    channel_id=st.text(min_size=1, max_size=20),
    interval=st.integers(min_value=1, max_value=1440),
    start=st.integers(min_value=0, max_value=7 * 24 * 3600),
    polls=st.integers(min_value=1, max_value=400),
    late=st.floats(min_value=0, max_value=1),
)
def test_a_channel_polled_on_time_is_never_stale_and_one_that_stopped_always_is(
    channel_id: str, interval: int, start: int, polls: int, late: float
) -> None:
    # The status is stored as the poll writes it when nothing changes: once per heartbeat slot, by
    # the first poll within the slot's window. Polls run every interval; the watchdog looks at any
    # moment before the next one.
    every = timedelta(minutes=interval)
    first = NOW + timedelta(seconds=start)
    stored = first
    for n in range(1, polls):
        at = first + n * every
        slot = heartbeat_due(channel_id, interval, at)
        if slot is not None and stored < slot:
            stored = at
    last_poll = first + (polls - 1) * every
    looking = last_poll + late * every
    assert poll_findings(channel_id, interval, ok(stored), None, looking) == []
    # and once no poll has come for the bound, the channel is named
    stopped = last_poll + stale_after(interval) + timedelta(seconds=1)
    assert [f.kind for f in poll_findings(channel_id, interval, ok(stored), None, stopped)] == ["not_polled"]


@given(channel_id=st.text(min_size=1, max_size=20), moment=st.integers(min_value=0, max_value=10**9))
def test_every_moment_is_in_exactly_one_slot_of_its_channel(channel_id: str, moment: int) -> None:
    at = datetime.fromtimestamp(moment, UTC)
    slot = heartbeat_slot(channel_id, at)

    assert slot <= at < slot + HEARTBEAT
    assert heartbeat_slot(channel_id, slot) == slot
    assert heartbeat_slot(channel_id, slot + HEARTBEAT) == slot + HEARTBEAT
