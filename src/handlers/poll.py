"""Lambda entry point: poll one channel's mailbox (event ``{"channel_id": "..."}``)."""

import time
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from domain.channel import InvalidChannel, load_channel
from domain.errors import LetterShopError
from domain.outcomes import PollResult
from handlers.bootstrap import channel_table, ports_for
from service.poll import poll_channel
from service.telemetry import logger, metrics
from settings import poll_settings

tracer = Tracer()

LEASE_BEYOND_TIMEOUT_SECONDS = 60

OUTCOME_METRICS = {
    "recognized": "MessagesRecognized",
    "processed": "MessagesProcessed",
    "failed": "MessagesFailed",
    "rejected": "MessagesRejected",
    "deferred": "MessagesDeferred",
}


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, object]:
    """Poll the channel; a poll that ends in ``status: "error"`` raises after logging its result,
    so that the scheduler's retries, its dead-letter queue and the error alarm see it."""
    channel_id = channel_id_of(event)
    logger.append_keys(channel_id=channel_id)
    metrics.add_dimension("channel_id", channel_id)
    started = time.monotonic()
    result = _poll(channel_id, context)
    metrics.add_metric("PollDuration", MetricUnit.Milliseconds, (time.monotonic() - started) * 1000)
    for field, metric in OUTCOME_METRICS.items():
        metrics.add_metric(metric, MetricUnit.Count, getattr(result, field))
    if result.status == "locked":
        metrics.add_metric("PollLocked", MetricUnit.Count, 1)
    if result.status == "error":
        metrics.add_metric("PollErrors", MetricUnit.Count, 1)
        logger.error("poll ended in error", extra={"result": result.as_dict()})
        raise PollFailed(f"poll of channel {channel_id} failed: {result.error}")
    return result.as_dict()


class PollFailed(RuntimeError):
    """Raised so the invocation counts as failed; the log holds the poll's result."""


def channel_id_of(event: dict[str, Any]) -> str:
    """The channel id from a scheduler event, or from an EventBridge event's ``detail``."""
    for source in (event, event.get("detail") or {}):
        if isinstance(source, dict) and isinstance(source.get("channel_id"), str) and source["channel_id"]:
            return str(source["channel_id"])
    raise ValueError('event has no "channel_id" (expected {"channel_id": "..."})')


def _poll(channel_id: str, context: LambdaContext) -> PollResult:
    settings = poll_settings()
    try:
        item = channel_table(settings).get(channel_id)
        if item is None:
            logger.error("no channel item with this id", extra={"table": settings.channels_table})
            metrics.add_metric("InvalidChannelConfig", MetricUnit.Count, 1)
            return PollResult(
                channel_id, status="invalid_config", error=f"channel {channel_id} does not exist"
            )
        channel = load_channel(item)
        if not channel.active:
            logger.info("channel is not active; mailbox not touched")
            return PollResult(channel_id, status="inactive")
        ports = ports_for(channel, settings)
        margin_ms = settings.time_margin_seconds * 1000
        return poll_channel(
            channel,
            ports,
            now=lambda: datetime.now(UTC),
            time_left=lambda: (context.get_remaining_time_in_millis() - margin_ms) / 1000,
            lease_seconds=context.get_remaining_time_in_millis() / 1000 + LEASE_BEYOND_TIMEOUT_SECONDS,
        )
    except InvalidChannel as error:
        logger.error(
            "channel configuration is invalid; mailbox not touched",
            extra={"errors": [{"field": field, "reason": reason} for field, reason in error.errors]},
        )
        metrics.add_metric("InvalidChannelConfig", MetricUnit.Count, 1)
        return PollResult(channel_id, status="invalid_config", error=str(error))
    except LetterShopError as error:
        logger.error("poll failed: %s", error)
        return PollResult(channel_id, status="error", error=str(error))
