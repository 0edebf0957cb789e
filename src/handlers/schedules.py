"""Lambda entry point: one EventBridge Scheduler schedule per channel item, following the table (DESIGN §7).

Two kinds of event:

* the channel table's stream: each record is applied on its own (``service.schedules``); the ones
  that fail are reported back (partial batch response) so Lambda retries only those.
* ``{"reconcile": true}`` (a daily schedule, or by hand): rebuild every schedule from the table and
  delete the schedules of channels that no longer exist — drift repair.
* ``{"watch": true}`` (every 15 minutes): the watchdog (``service.watchdog``): is every active
  channel being polled? It runs here, in the one function that writes schedules, whose reserved
  concurrency of 1 keeps its repairs from interleaving with the stream's writes.
"""

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from adapters.channels import ChannelTable
from adapters.scheduler import ChannelSchedules, ScheduleTarget
from adapters.status import ChannelStatusStore, ScheduleSyncStatuses
from adapters.watch_index import WatchIndex
from app.root import WARM
from service.schedules import ChannelStatuses, apply_record, reconcile
from service.telemetry import logger
from service.watchdog import watch

if TYPE_CHECKING:
    from schedule_settings import ScheduleSettings

tracer = Tracer()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(
    event: dict[str, Any], context: LambdaContext, clock: Callable[[], datetime] | None = None
) -> dict[str, Any]:
    """``clock``: the watchdog's "now" (a test's own; default the system clock)."""
    if event.get("reconcile") is True:
        settings = WARM.schedule_settings()
        table = ChannelTable(settings.channels_table, WARM.client("dynamodb"))
        return reconcile(table.items(), channel_schedules(settings), channel_statuses(settings))
    if event.get("watch") is True:
        settings = WARM.schedule_settings()
        dynamodb = WARM.client("dynamodb")
        schedules = channel_schedules(settings)
        return watch(
            ChannelTable(settings.channels_table, dynamodb).items(),
            schedules,
            WatchIndex(settings.state_table, dynamodb),
            now=(clock or _now)(),
            time_left=lambda: context.get_remaining_time_in_millis() / 1000,
            poll_function_arn=settings.poll_function_arn,
            poll_timeout=timedelta(seconds=settings.poll_timeout_seconds),
        )
    if isinstance(event.get("Records"), list):
        response = process_partial_response(
            event=event, record_handler=_apply_stream_record, processor=processor, context=context
        )
        return dict(response)
    raise ValueError('expected channel table stream records, {"reconcile": true} or {"watch": true}')


def _now() -> datetime:
    return datetime.now(UTC)


def _apply_stream_record(record: DynamoDBRecord) -> str:
    settings = WARM.schedule_settings()
    return apply_record(record, channel_schedules(settings), channel_statuses(settings))


def channel_schedules(settings: "ScheduleSettings") -> ChannelSchedules:
    target = ScheduleTarget(
        function_arn=settings.poll_function_arn,
        role_arn=settings.scheduler_role_arn,
        dead_letter_arn=settings.schedule_dlq_arn,
    )
    return ChannelSchedules(WARM.client("scheduler"), settings.schedule_group, target)


def channel_statuses(settings: "ScheduleSettings") -> ChannelStatuses:
    """Where an invalid item's "invalid: <reasons>" is recorded: the state table's status items."""
    return ScheduleSyncStatuses(ChannelStatusStore(settings.state_table, WARM.client("dynamodb")))
