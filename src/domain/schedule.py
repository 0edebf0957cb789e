"""What a channel's EventBridge Scheduler schedule should look like (DESIGN §7).

Pure decisions: a channel item (as the console stores it) in, the wanted schedule out. The schedule
is named after the channel, fires ``rate(<poll_interval_minutes> minutes)`` and is ``ENABLED`` only
when the item is a valid channel and ``active``. An invalid item still gets its schedule, disabled,
so the console shows every channel next to its schedule and a fixed item is picked up by its next
edit. Where the schedule points to (function, role, dead-letter queue) is deployment wiring, not
decided here.
"""

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from domain.channel import Channel, InvalidChannel, load_channel

SCHEDULE_NAME = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")
"""What EventBridge Scheduler accepts as a schedule name; every valid channel id is one."""

DEFAULT_INTERVAL_MINUTES: int = Channel.model_fields["poll_interval_minutes"].default
MIN_INTERVAL_MINUTES = 1
MAX_INTERVAL_MINUTES = 1440

MAX_RETRY_ATTEMPTS = 3
"""Scheduler retries of an invocation the poll function did not accept (throttling, outage)."""

MIN_EVENT_AGE_SECONDS = 60
MAX_EVENT_AGE_SECONDS = 86_400


@dataclass(frozen=True)
class Schedule:
    """One channel's schedule as EventBridge Scheduler should hold it."""

    name: str
    expression: str
    enabled: bool
    interval_minutes: int
    input: str
    description: str
    max_event_age_seconds: int
    max_retry_attempts: int = MAX_RETRY_ATTEMPTS

    @property
    def state(self) -> str:
        return "ENABLED" if self.enabled else "DISABLED"


@dataclass(frozen=True)
class ScheduleDecision:
    """The schedule a channel item asks for, and why it is disabled when it is.

    ``schedule`` is ``None`` only when the channel id cannot name a schedule at all; ``errors`` holds
    the item's validation errors as ``(field, reason)`` (empty for a valid item).
    """

    channel_id: str
    schedule: Schedule | None
    errors: tuple[tuple[str, str], ...] = ()

    @property
    def valid(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class ReconcilePlan:
    """What a full rebuild does: write every channel's schedule, delete the strays."""

    decisions: tuple[ScheduleDecision, ...]
    stray_schedules: tuple[str, ...] = field(default=())


def rate_expression(minutes: int) -> str:
    """``rate(5 minutes)``; EventBridge wants the singular for one: ``rate(1 minute)``."""
    if not MIN_INTERVAL_MINUTES <= minutes <= MAX_INTERVAL_MINUTES:
        raise ValueError(f"poll interval {minutes} is not between 1 and 1440 minutes")
    return "rate(1 minute)" if minutes == 1 else f"rate({minutes} minutes)"


def schedule_name(channel_id: str) -> str | None:
    """The schedule's name (the channel id), or ``None`` when Scheduler would refuse it."""
    return channel_id if SCHEDULE_NAME.fullmatch(channel_id) else None


def poll_input(channel_id: str) -> str:
    """The event the schedule sends to the poll function."""
    return json.dumps({"channel_id": channel_id}, separators=(",", ":"))


def decide_schedule(item: Mapping[str, Any], channel_id: str | None = None) -> ScheduleDecision:
    """The schedule for one channel item (plain values, as DynamoDB returns them).

    ``channel_id`` is the item's key when the caller knows it (a stream record's ``Keys``);
    otherwise it is read from the item.
    """
    key = str(channel_id if channel_id is not None else item.get("channel_id", ""))
    errors: tuple[tuple[str, str], ...] = ()
    try:
        channel = load_channel(item)
    except InvalidChannel as invalid:
        errors = tuple(invalid.errors)
        enabled = False
        interval = _interval_or_default(item.get("poll_interval_minutes"))
    else:
        enabled = channel.active
        interval = channel.poll_interval_minutes
    name = schedule_name(key)
    if name is None:
        return ScheduleDecision(key, None, errors)
    return ScheduleDecision(key, _schedule(name, interval, enabled=enabled, valid=not errors), errors)


def plan_reconcile(items: Iterable[Mapping[str, Any]], existing: Iterable[str]) -> ReconcilePlan:
    """Every item's schedule, and the existing schedules that belong to no channel item."""
    decisions = tuple(decide_schedule(item) for item in items)
    wanted = {decision.schedule.name for decision in decisions if decision.schedule is not None}
    strays = tuple(sorted(set(existing) - wanted))
    return ReconcilePlan(decisions, strays)


def _schedule(name: str, interval: int, *, enabled: bool, valid: bool) -> Schedule:
    if not valid:
        why = "disabled: the channel item is invalid (see the schedule sync function's log)"
    elif not enabled:
        why = "disabled: the channel is not active"
    else:
        why = "enabled"
    unit = "minute" if interval == 1 else f"{interval} minutes"
    return Schedule(
        name=name,
        expression=rate_expression(interval),
        enabled=enabled,
        interval_minutes=interval,
        input=poll_input(name),
        description=f"LetterShop channel {name}: poll every {unit}; {why}",
        # A poll that could not start before the next one is due is worth nothing.
        max_event_age_seconds=min(max(interval * 60, MIN_EVENT_AGE_SECONDS), MAX_EVENT_AGE_SECONDS),
    )


def _interval_or_default(value: Any) -> int:
    """The interval of an invalid item when it is usable on its own, else the default."""
    if isinstance(value, bool):
        return DEFAULT_INTERVAL_MINUTES
    try:
        minutes = int(value)
    except (TypeError, ValueError, ArithmeticError):
        return DEFAULT_INTERVAL_MINUTES
    if minutes != value or not MIN_INTERVAL_MINUTES <= minutes <= MAX_INTERVAL_MINUTES:
        return DEFAULT_INTERVAL_MINUTES
    return minutes
