"""The watchdog (issue 20): no active channel stops in silence.

Every alarm but this one fires on something that happened; this one fires when nothing happens.
A run (every 15 minutes, in the schedule sync function, so it never interleaves with the sync's
own schedule writes) reads in bulk — the schedule list, the channel table, the status items and
leases through the state table's ``watch`` index — and, for every active, valid channel, checks
(rules in ``domain.watch``):

* its schedule exists, is ``ENABLED`` and invokes the poll function; a schedule changed lately is
  read in full and compared with what the sync writes (interval, input, target, retries). A
  wrong one is written again, as the daily reconcile would;
* its last completed poll is recent enough for its interval, and its polls have not all ended in
  error for as long;
* its lease is not held past the poll function's timeout.

Each finding is one log line (``channel_id``, ``finding``, ``detail``) and one ``StaleChannel``
datapoint (alarm ``ChannelsNotPolled``); every run counts ``WatchdogRuns`` (alarm
``WatchdogSilent`` when it stops). Inactive and invalid channels are never reported here (an
invalid item has its own alarm).
"""

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools import single_metric
from aws_lambda_powertools.metrics import MetricUnit

from domain.errors import LetterShopError
from domain.schedule import Schedule, decide_schedule
from domain.watch import (
    SCHEDULE_LOOKBACK,
    Finding,
    LeaseRecord,
    PollRecord,
    ScheduleSummary,
    changed_schedule,
    lease_finding,
    poll_findings,
    schedule_findings,
)
from service.telemetry import logger, metrics


class WatchedSchedules(Protocol):
    """The schedule group as the watchdog reads and repairs it (``adapters.scheduler.ChannelSchedules``)."""

    def summaries(self) -> list[ScheduleSummary]: ...

    def differences(self, schedule: Schedule) -> list[str] | None: ...

    def put(self, schedule: Schedule) -> str: ...


class Records(Protocol):
    """Every channel's status record and lease (``adapters.watch_index.WatchIndex``)."""

    def records(self, channel_ids: Sequence[str]) -> tuple[dict[str, PollRecord], dict[str, LeaseRecord]]:
        """By channel id; ``channel_ids``: the channels whose status record is wanted for sure."""
        ...


RUN_SECONDS = 15 * 60  # the watchdog's schedule
ROTATION = 7919  # a prime: consecutive runs start far apart in the list of channels
READ_RESERVE_SECONDS = 20.0  # what a run keeps for the rest of its work once it stops reading schedules


class WatchIncomplete(RuntimeError):
    """Some schedules could not be read or repaired; the log names each one."""


def watch(
    items: Iterable[Mapping[str, Any]],
    schedules: WatchedSchedules,
    records: Records,
    *,
    now: datetime,
    time_left: Callable[[], float],
    poll_function_arn: str,
    poll_timeout: timedelta,
) -> dict[str, Any]:
    """Check every active, valid channel once; report and repair what is wrong. The schedules are
    listed before the table is read (a channel created meanwhile is not taken for one without a
    schedule); the summary counts the channels watched and the findings by kind. A changed schedule
    is read only while ``time_left()`` (seconds) allows; each run starts at another channel, so what
    one run leaves unread a later run (or the daily reconcile) reads."""
    summaries = {summary.name: summary for summary in schedules.summaries()}
    watched = [
        (decision.channel_id, decision.schedule)
        for decision in (decide_schedule(item) for item in items)
        if decision.valid and decision.schedule is not None and decision.schedule.enabled
    ]
    polls, leases = records.records([channel_id for channel_id, _ in watched])
    turn = int(now.timestamp() // RUN_SECONDS) * ROTATION % len(watched) if watched else 0
    kinds: Counter[str] = Counter()
    repaired, unread = 0, 0
    failed: list[str] = []
    for channel_id, schedule in watched[turn:] + watched[:turn]:
        with logger.append_context_keys(channel_id=channel_id):
            summary = summaries.get(schedule.name)
            findings = schedule_findings(channel_id, summary, poll_function_arn)
            if not findings and summary is not None and now - summary.modified <= SCHEDULE_LOOKBACK:
                if time_left() > READ_RESERVE_SECONDS:
                    findings = _changed(schedule, schedules, poll_function_arn, failed)
                else:
                    unread += 1
            findings += poll_findings(
                channel_id,
                schedule.interval_minutes,
                polls.get(channel_id),
                summary.modified if summary else None,
                now,
            )
            stuck = lease_finding(channel_id, leases.get(channel_id), poll_timeout, now)
            findings += [stuck] if stuck else []
            for finding in findings:
                _report(finding)
                kinds[finding.kind] += 1
            if any(finding.about_schedule for finding in findings):
                try:
                    logger.warning(f"schedule {schedules.put(schedule)} as the channel item asks")
                    repaired += 1
                except LetterShopError as error:
                    logger.error("schedule could not be repaired: %s", error)
                    failed.append(channel_id)
    summary_line = {
        "channels": len(watched),
        "findings": sum(kinds.values()),
        **dict(sorted(kinds.items())),
        "repaired": repaired,
        "changed_unread": unread,
        "failed": sorted(failed),
    }
    if unread:
        logger.warning(
            "changed schedules left unread for lack of time; a later run or the reconcile reads them",
            extra={"changed_unread": unread},
        )
    logger.info("watchdog run finished", extra={"watch": summary_line})
    _count("WatchdogRuns")
    if failed:
        raise WatchIncomplete(
            f"{len(failed)} schedule(s) could not be checked or repaired: {', '.join(failed)}"
        )
    return summary_line


def _changed(
    schedule: Schedule, schedules: WatchedSchedules, poll_function_arn: str, failed: list[str]
) -> list[Finding]:
    """A schedule changed lately, read in full and compared with what the sync writes."""
    try:
        fields = schedules.differences(schedule)
    except LetterShopError as error:
        logger.error("schedule could not be read: %s", error, extra={"schedule": schedule.name})
        failed.append(schedule.name)
        return []
    if fields is None:  # deleted since the list was read
        return schedule_findings(schedule.name, None, poll_function_arn)
    return [changed_schedule(schedule.name, fields)] if fields else []


def _report(finding: Finding) -> None:
    """One log line and one ``StaleChannel`` datapoint (dimension ``channel_id``)."""
    logger.warning(
        f"channel not polled as expected: {finding.detail}",
        extra={"finding": finding.kind, "detail": finding.detail},
    )
    _count("StaleChannel", finding.channel_id)


def _count(name: str, channel_id: str | None = None) -> None:
    """One datapoint of ``name``; single_metric: one run reports many channels, each its own dimension."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as metric:
        if channel_id is not None:
            metric.add_dimension(name="channel_id", value=channel_id)
