"""Channel schedules follow the channel table (DESIGN §7): one stream record, or the whole table.

A stream record's INSERT/MODIFY writes the channel's schedule (``ENABLED`` only for a valid, active
channel), REMOVE deletes it. ``reconcile`` rebuilds every schedule from the table and deletes the
schedules of channels that no longer exist.
"""

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from aws_lambda_powertools import single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)

from domain.errors import LetterShopError
from domain.schedule import Schedule, ScheduleDecision, decide_schedule, plan_reconcile, schedule_name
from service.telemetry import logger, metrics


class Schedules(Protocol):
    """The schedule group, as the sync needs it (``adapters.scheduler.ChannelSchedules``)."""

    def put(self, schedule: Schedule) -> str: ...

    def ensure(self, schedule: Schedule) -> str:
        """Write the schedule only when it is missing or differs: ``created``, ``updated`` or
        ``unchanged``."""
        ...

    def delete(self, name: str) -> bool: ...

    def names(self) -> list[str]: ...


class ChannelStatuses(Protocol):
    """The channel's status record (``adapters.status.ScheduleSyncStatuses``): an invalid saved item
    is recorded as "invalid: <reasons>", so ``lettershop channel list`` shows it next to the channel."""

    def invalid(self, channel_id: str, errors: Sequence[tuple[str, str]]) -> None: ...

    def valid(self, channel_id: str) -> None:
        """The item is valid (again): replace an "invalid" record of the sync, if there is one."""
        ...


class MalformedRecord(ValueError):
    """A stream record this function cannot read (wrong stream view type, no key)."""


class ReconcileIncomplete(RuntimeError):
    """Some schedules could not be written or deleted; the log names each one."""


def apply_record(
    record: DynamoDBRecord, schedules: Schedules, statuses: ChannelStatuses | None = None
) -> str:
    """Apply one stream record to the channel's schedule; returns what was done."""
    stream = record.dynamodb
    keys = stream.keys if stream is not None else {}
    channel_id = keys.get("channel_id")
    if not isinstance(channel_id, str):
        raise MalformedRecord("stream record has no channel_id key")
    with logger.append_context_keys(channel_id=channel_id):
        if record.event_name is DynamoDBRecordEventName.REMOVE:
            return remove_channel(channel_id, schedules)
        if record.event_name in (DynamoDBRecordEventName.INSERT, DynamoDBRecordEventName.MODIFY):
            assert stream is not None  # noqa: S101  # it held the key
            image = stream.new_image
            if not image:
                raise MalformedRecord(
                    "stream record has no NewImage: the table's stream must be NEW_AND_OLD_IMAGES"
                )
            return apply_decision(decide_schedule(image, channel_id), schedules, statuses)
        raise MalformedRecord(f"stream record with unknown eventName {record.get('eventName')!r}")


def apply_decision(
    decision: ScheduleDecision,
    schedules: Schedules,
    statuses: ChannelStatuses | None = None,
    *,
    repair: bool = False,
) -> str:
    """Write the schedule a channel item asks for (``repair``: only when it is missing or differs);
    an invalid item is logged, counted and recorded in the channel's status (when ``statuses`` is
    given)."""
    if not decision.valid:
        report_invalid(decision)
    if statuses is not None:
        record_status(decision, statuses)
    if decision.schedule is None:
        logger.error(
            "the channel id cannot name a schedule (letters, digits, '-', '_', '.'; at most 64)",
            extra={"channel_id": decision.channel_id},
        )
        return "skipped"
    schedule = decision.schedule
    outcome = schedules.ensure(schedule) if repair else schedules.put(schedule)
    (logger.debug if outcome == "unchanged" else logger.info)(
        f"schedule {outcome}",
        extra={"schedule": schedule.name, "state": schedule.state, "expression": schedule.expression},
    )
    return outcome


def remove_channel(channel_id: str, schedules: Schedules) -> str:
    name = schedule_name(channel_id)
    if name is None or not schedules.delete(name):
        logger.info("channel item deleted; it had no schedule")
        return "absent"
    logger.info("channel item deleted; schedule deleted", extra={"schedule": name})
    return "deleted"


def report_invalid(decision: ScheduleDecision) -> None:
    """One log line listing every error of the item, and the ``InvalidChannelConfig`` metric."""
    logger.error(
        "channel item is invalid; its schedule is disabled until the item is fixed",
        extra={
            "channel_id": decision.channel_id,
            "errors": [{"field": field, "reason": reason} for field, reason in decision.errors],
        },
    )
    # single_metric: one stream batch may hold several channels, each its own dimension.
    with single_metric(
        name="InvalidChannelConfig", unit=MetricUnit.Count, value=1, namespace=metrics.namespace
    ) as metric:
        metric.add_dimension(name="channel_id", value=decision.channel_id)


def record_status(decision: ScheduleDecision, statuses: ChannelStatuses) -> None:
    """Record the item's verdict in its status; a failure here never holds up the schedule."""
    try:
        if decision.valid:
            statuses.valid(decision.channel_id)
        else:
            statuses.invalid(decision.channel_id, decision.errors)
    except LetterShopError as error:
        logger.warning("channel status not recorded: %s", error)


def reconcile(
    items: Iterable[Mapping[str, Any]], schedules: Schedules, statuses: ChannelStatuses | None = None
) -> dict[str, Any]:
    """Rebuild every channel's schedule and delete the schedules that belong to no channel item.

    A schedule is read first and written only when it is missing or differs from the item's
    (``updated`` counts the repaired ones), so its last modification date keeps meaning a change:
    the watchdog reads in full only the schedules changed lately (``service.watchdog``). The
    existing schedules are listed *before* the table is read, so a channel created meanwhile is
    never taken for a stray. One failing schedule does not stop the others; the run raises
    ``ReconcileIncomplete`` at the end when any failed.
    """
    existing = schedules.names()
    plan = plan_reconcile(items, existing)
    counts: Counter[str] = Counter()
    failed: list[str] = []
    for decision in plan.decisions:
        with logger.append_context_keys(channel_id=decision.channel_id):
            try:
                counts[apply_decision(decision, schedules, statuses, repair=True)] += 1
            except LetterShopError as error:
                logger.error("schedule could not be written: %s", error)
                failed.append(decision.channel_id)
                continue
        if decision.schedule is not None:
            counts["enabled" if decision.schedule.enabled else "disabled"] += 1
        if not decision.valid:
            counts["invalid"] += 1
    for name in plan.stray_schedules:
        try:
            deleted = schedules.delete(name)
        except LetterShopError as error:
            logger.error("stray schedule could not be deleted: %s", error, extra={"schedule": name})
            failed.append(name)
            continue
        if deleted:
            counts["deleted"] += 1
            logger.warning("schedule of a channel that no longer exists deleted", extra={"schedule": name})
    summary: dict[str, Any] = {
        "channels": len(plan.decisions),
        **{
            key: counts[key]
            for key in ("created", "updated", "unchanged", "deleted", "enabled", "disabled", "invalid")
        },
        "failed": sorted(failed),
    }
    logger.info("schedules reconciled with the channel table", extra={"reconcile": summary})
    if failed:
        raise ReconcileIncomplete(f"{len(failed)} schedule(s) could not be reconciled: {', '.join(failed)}")
    return summary
