"""When is a channel quiet? The watchdog's rules (issue 20), pure: records in, findings out.

Every completed poll leaves its time in the channel's status item, at least once per ``HEARTBEAT``
(the poll writes it when something changed, or when the stored one is older than that), so an
active channel whose last recorded poll is older than ``stale_after(interval)`` is not being
polled. The watchdog (``service.watchdog``) also compares each active channel's schedule with what
the sync would write, and looks for a lease held past the poll function's timeout.
"""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HEARTBEAT = timedelta(hours=1)
"""A poll that changes nothing still writes its status once in each of the channel's heartbeat
slots: hours that begin at an offset of its own (``heartbeat_slot``)."""

LEASE_BEYOND_TIMEOUT = timedelta(seconds=60)
"""A poll's lease outlives the poll function's timeout by this much (a killed poll's lease expires
by itself); held longer, it is stuck."""

SCHEDULE_LOOKBACK = timedelta(minutes=45)
"""The watchdog reads in full the schedules modified this recently (three of its 15-minute runs),
to find a changed interval, target or input: the schedule list shows only name, state and target."""

# What a finding is about; the log's ``finding`` and docs/operations.md "A channel went quiet".
SCHEDULE_MISSING = "schedule_missing"
SCHEDULE_DISABLED = "schedule_disabled"
SCHEDULE_CHANGED = "schedule_changed"
NOT_POLLED = "not_polled"
FAILING = "failing"
LEASE_STUCK = "lease_stuck"
SCHEDULE_FINDINGS = (SCHEDULE_MISSING, SCHEDULE_DISABLED, SCHEDULE_CHANGED)


@dataclass(frozen=True)
class PollRecord:
    """What a channel's status item says: when it was last written (``at``: the last completed poll,
    give or take ``HEARTBEAT``), its status, and since when that status holds."""

    status: str
    at: datetime
    since: datetime


@dataclass(frozen=True)
class LeaseRecord:
    """A channel's poll lease as stored: taken at ``acquired_at``, free again at ``expires_at``."""

    acquired_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class ScheduleSummary:
    """One schedule as ``ListSchedules`` shows it (no expression, no input)."""

    name: str
    state: str
    target_arn: str
    modified: datetime


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one channel, in words an operator can act on."""

    channel_id: str
    kind: str
    detail: str

    @property
    def about_schedule(self) -> bool:
        """The schedule is to be written again (the repair the daily reconcile would make)."""
        return self.kind in SCHEDULE_FINDINGS


def heartbeat_slot(channel_id: str, at: datetime) -> datetime:
    """The start of the channel's heartbeat slot that ``at`` falls in. Every process computes the
    same slots (the offset comes from the channel id), so the fleet agrees on which poll writes the
    heartbeat without asking anyone, and the channels' writes spread over the hour."""
    period = int(HEARTBEAT.total_seconds())
    offset = int.from_bytes(hashlib.sha256(channel_id.encode()).digest()[:4], "big") % period
    seconds = int(at.timestamp()) - offset
    return datetime.fromtimestamp(seconds - seconds % period + offset, UTC)


def heartbeat_window(interval_minutes: int) -> timedelta:
    """How long after its slot begins a poll still writes the heartbeat: two intervals (so one late
    or lost poll does not cost the hour), the whole slot when that is longer or the interval is not
    known (0)."""
    if interval_minutes <= 0:
        return HEARTBEAT
    return min(2 * timedelta(minutes=interval_minutes), HEARTBEAT)


def heartbeat_due(channel_id: str, interval_minutes: int, at: datetime) -> datetime | None:
    """The start of the current slot when a poll at ``at`` is within its window (it writes the
    heartbeat unless the stored one is already from this slot); None when it is not."""
    slot = heartbeat_slot(channel_id, at)
    return slot if at - slot < heartbeat_window(interval_minutes) else None


def stale_after(interval_minutes: int) -> timedelta:
    """How old the last recorded poll of a channel polled every ``interval_minutes`` may be:
    three intervals, and never less than the heartbeat plus two intervals."""
    interval = timedelta(minutes=interval_minutes)
    return max(3 * interval, HEARTBEAT + 2 * interval)


def schedule_findings(
    channel_id: str, summary: ScheduleSummary | None, poll_function_arn: str
) -> list[Finding]:
    """What the schedule list alone shows wrong with an active channel's schedule."""
    if summary is None:
        return [Finding(channel_id, SCHEDULE_MISSING, "its schedule is missing from the schedule group")]
    if summary.state != "ENABLED":
        return [Finding(channel_id, SCHEDULE_DISABLED, f"its schedule is {summary.state}, not ENABLED")]
    if summary.target_arn != poll_function_arn:
        return [
            Finding(
                channel_id,
                SCHEDULE_CHANGED,
                f"its schedule invokes {summary.target_arn}, not the poll function",
            )
        ]
    return []


def changed_schedule(channel_id: str, fields: list[str]) -> Finding:
    """The schedule read in full differs from what the sync writes in ``fields``."""
    return Finding(channel_id, SCHEDULE_CHANGED, f"its schedule was changed: {', '.join(fields)}")


def poll_findings(
    channel_id: str,
    interval_minutes: int,
    record: PollRecord | None,
    schedule_modified: datetime | None,
    now: datetime,
) -> list[Finding]:
    """Whether an active channel is being polled, judged from its last recorded poll.

    The clock starts at the later of the last recorded poll and the schedule's last change (a
    channel just activated, or given another interval, has not been due yet). Without either there
    is nothing to judge by (the schedule's own finding says why).
    """
    bound = stale_after(interval_minutes)
    starts = [moment for moment in (record.at if record else None, schedule_modified) if moment]
    findings: list[Finding] = []
    if starts and now - max(starts) > bound:
        last = f"last completed poll {age(now - record.at)} ago" if record else "no completed poll recorded"
        findings.append(
            Finding(
                channel_id,
                NOT_POLLED,
                f"{last}; polled every {interval_minutes} min, a poll is recorded at least every "
                f"{age(bound)}",
            )
        )
    if record is not None and record.status == "error" and now - record.since > bound:
        findings.append(
            Finding(channel_id, FAILING, f"every poll has ended in error for {age(now - record.since)}")
        )
    return findings


def lease_finding(
    channel_id: str, lease: LeaseRecord | None, poll_timeout: timedelta, now: datetime
) -> Finding | None:
    """A lease still held longer than any poll's lease lasts (the poll function's timeout and
    ``LEASE_BEYOND_TIMEOUT``): no other poll of the channel can start."""
    held = now - lease.acquired_at if lease is not None else timedelta(0)
    if lease is None or lease.expires_at <= now or held <= poll_timeout + LEASE_BEYOND_TIMEOUT:
        return None
    return Finding(
        channel_id,
        LEASE_STUCK,
        f"its poll lease was taken {age(now - lease.acquired_at)} ago and is held until "
        f"{lease.expires_at.isoformat(timespec='seconds')}, past the poll's timeout of {age(poll_timeout)}",
    )


def age(delta: timedelta) -> str:
    """A duration as an operator reads it: ``3 h 12 min``, ``45 min``, ``2 d 4 h``."""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min"
