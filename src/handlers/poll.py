"""Lambda entry point: poll one channel's mailbox (event ``{"channel_id": "..."}``).

Thin: parse the event, call ``service.poll.poll_channel``, emit the metrics of its result, end the
poll (``service.poll.poll_ended``). The wiring is a parameter (default: the composition root,
``app.root.AwsRoot``), so a unit test drives the handler with fakes.

The import is the cold start (issue 11): what only an invocation needs is imported by it, once —
the X-Ray SDK with Powertools' Tracer (``service.telemetry.tracer``), pydantic-settings with the
function's settings, boto3 with the first AWS client (``adapters.clients``); what a warm
instance keeps between invocations is the one warm state (``app.warm``).
"""

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from app.root import WARM, AwsRoot
from domain.outcomes import PollResult
from domain.watch import LEASE_BEYOND_TIMEOUT
from service.poll import poll_channel, poll_ended
from service.ports import PollEndWiring, Wiring
from service.telemetry import logger, metrics, tracer

OUTCOME_METRICS = {
    "recognized": "MessagesRecognized",
    "processed": "MessagesProcessed",
    "failed": "MessagesFailed",
    "rejected": "MessagesRejected",
    "deferred": "MessagesDeferred",
}
STATUS_METRICS = {"locked": "PollLocked", "invalid_config": "InvalidChannelConfig", "error": "PollErrors"}


class PollWiring(Wiring, PollEndWiring, Protocol):
    """The poll's wiring, and where the end of a poll is recorded."""


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(
    event: dict[str, Any],
    context: LambdaContext,
    wiring: PollWiring | None = None,
    clock: Callable[[], datetime] | None = None,
) -> dict[str, object]:
    """Poll the channel; a poll that ends in ``status: "error"`` raises after logging its result,
    so that the scheduler's retries, its dead-letter queue and the error alarm see it. ``clock``:
    the poll's "now" (a test's own; default the system clock)."""
    now = clock or _now
    channel_id = channel_id_of(event)
    logger.append_keys(channel_id=channel_id)
    metrics.add_dimension("channel_id", channel_id)
    settings = WARM.poll_settings()  # pydantic-settings: imported by the first invocation
    margin_ms = settings.time_margin_seconds * 1000
    started = time.monotonic()
    wiring = wiring or AwsRoot(settings)
    result = poll_channel(
        channel_id,
        wiring,
        now=now,
        time_left=lambda: (context.get_remaining_time_in_millis() - margin_ms) / 1000,
        lease_seconds=context.get_remaining_time_in_millis() / 1000 + LEASE_BEYOND_TIMEOUT.total_seconds(),
    )
    _emit_metrics(result, started)
    poll_ended(result, wiring, at=now())
    if result.status == "error":
        logger.error("poll ended in error", extra={"result": result.as_dict(), "setting": result.setting})
        raise PollFailed(f"poll of channel {channel_id} failed: {result.error}")
    return result.as_dict()


def _now() -> datetime:
    return datetime.now(UTC)


class PollFailed(RuntimeError):
    """Raised so the invocation counts as failed; the log holds the poll's result."""


def channel_id_of(event: dict[str, Any]) -> str:
    """The channel id from a scheduler event, or from an EventBridge event's ``detail``."""
    for source in (event, event.get("detail") or {}):
        if isinstance(source, dict) and isinstance(source.get("channel_id"), str) and source["channel_id"]:
            return str(source["channel_id"])
    raise ValueError('event has no "channel_id" (expected {"channel_id": "..."})')


def _emit_metrics(result: PollResult, started: float) -> None:
    metrics.add_metric("PollDuration", MetricUnit.Milliseconds, (time.monotonic() - started) * 1000)
    for field, metric in OUTCOME_METRICS.items():
        metrics.add_metric(metric, MetricUnit.Count, getattr(result, field))
    if result.status in STATUS_METRICS:
        metrics.add_metric(STATUS_METRICS[result.status], MetricUnit.Count, 1)
