"""Lambda entry point: one EventBridge Scheduler schedule per channel item, following the table (DESIGN §7).

Two kinds of event:

* the channel table's stream: INSERT/MODIFY write the channel's schedule (``ENABLED`` only for a
  valid, active channel), REMOVE deletes it. Each record is applied on its own; the ones that fail
  are reported back (partial batch response) so Lambda retries only those.
* ``{"reconcile": true}`` (a daily schedule, or by hand): rebuild every schedule from the table and
  delete the schedules of channels that no longer exist — drift repair.
"""

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from typing import Any, Protocol

from aws_lambda_powertools import Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.shared.dynamodb_deserializer import TypeDeserializer  # no boto3 import
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify
from adapters.scheduler import ChannelSchedules, ScheduleTarget
from domain.errors import LetterShopError
from domain.schedule import Schedule, ScheduleDecision, decide_schedule, plan_reconcile, schedule_name
from schedule_settings import ScheduleSettings, schedule_settings
from service.telemetry import logger, metrics

tracer = Tracer()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


class Schedules(Protocol):
    """The schedule group, as the sync needs it (``adapters.scheduler.ChannelSchedules``)."""

    def put(self, schedule: Schedule) -> str: ...

    def delete(self, name: str) -> bool: ...

    def names(self) -> list[str]: ...


class MalformedRecord(ValueError):
    """A stream record this function cannot read (wrong stream view type, no key)."""


class ReconcileIncomplete(RuntimeError):
    """Some schedules could not be written or deleted; the log names each one."""


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("reconcile") is True:
        settings = schedule_settings()
        return reconcile(channel_items(settings), channel_schedules(settings))
    if isinstance(event.get("Records"), list):
        response = process_partial_response(
            event=event, record_handler=_apply_stream_record, processor=processor, context=context
        )
        return dict(response)
    raise ValueError('expected channel table stream records or {"reconcile": true}')


def _apply_stream_record(record: DynamoDBRecord) -> str:
    return apply_record(record, channel_schedules(schedule_settings()))


# ------------------------------------------------------------------ the sync


def apply_record(record: DynamoDBRecord, schedules: Schedules) -> str:
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
            return apply_decision(decide_schedule(image, channel_id), schedules)
        raise MalformedRecord(f"stream record with unknown eventName {record.get('eventName')!r}")


def apply_decision(decision: ScheduleDecision, schedules: Schedules) -> str:
    """Write the schedule a channel item asks for; an invalid item is logged and counted."""
    if not decision.valid:
        report_invalid(decision)
    if decision.schedule is None:
        logger.error(
            "the channel id cannot name a schedule (letters, digits, '-', '_', '.'; at most 64)",
            extra={"channel_id": decision.channel_id},
        )
        return "skipped"
    schedule = decision.schedule
    outcome = schedules.put(schedule)
    logger.info(
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


def reconcile(items: Iterable[Mapping[str, Any]], schedules: Schedules) -> dict[str, Any]:
    """Rebuild every channel's schedule and delete the schedules that belong to no channel item.

    The existing schedules are listed *before* the table is read, so a channel created meanwhile
    is never taken for a stray. One failing schedule does not stop the others; the run raises
    ``ReconcileIncomplete`` at the end when any failed.
    """
    existing = schedules.names()
    plan = plan_reconcile(items, existing)
    counts: Counter[str] = Counter()
    failed: list[str] = []
    for decision in plan.decisions:
        with logger.append_context_keys(channel_id=decision.channel_id):
            try:
                counts[apply_decision(decision, schedules)] += 1
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
        **{key: counts[key] for key in ("created", "updated", "deleted", "enabled", "disabled", "invalid")},
        "failed": sorted(failed),
    }
    logger.info("schedules reconciled with the channel table", extra={"reconcile": summary})
    if failed:
        raise ReconcileIncomplete(f"{len(failed)} schedule(s) could not be reconciled: {', '.join(failed)}")
    return summary


# ------------------------------------------------------------------ wiring

_deserializer = TypeDeserializer()


@cache
def aws_client(service: str) -> Any:
    """A boto3 client, made on first use and kept for the warm invocations."""
    import boto3  # noqa: PLC0415

    return boto3.client(service)  # type: ignore[call-overload]


def channel_schedules(settings: ScheduleSettings) -> ChannelSchedules:
    target = ScheduleTarget(
        function_arn=settings.poll_function_arn,
        role_arn=settings.scheduler_role_arn,
        dead_letter_arn=settings.schedule_dlq_arn,
    )
    return ChannelSchedules(aws_client("scheduler"), settings.schedule_group, target)


def channel_items(settings: ScheduleSettings) -> Iterator[dict[str, Any]]:
    """Every item of the channel table (consistent scan, all pages), as plain values."""
    paginator = aws_client("dynamodb").get_paginator("scan")
    try:
        for page in paginator.paginate(TableName=settings.channels_table, ConsistentRead=True):
            for item in page.get("Items", []):
                yield {name: _deserializer.deserialize(value) for name, value in item.items()}
    except (ClientError, BotoCoreError) as error:
        raise classify(error, f"reading the channel table {settings.channels_table}") from error
