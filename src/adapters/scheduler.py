"""The channel schedules of one EventBridge Scheduler schedule group (DESIGN §7).

Takes an injected boto3 ``scheduler`` client. Every schedule targets the poll function with the
scheduler's execution role, a retry policy and the dead-letter queue; ``put`` makes the schedule
exist exactly as asked, whether or not it existed before. Failures become our errors through
``adapters.aws_errors.classify``: throttling and outages are transient, the rest permanent.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code
from domain.schedule import Schedule
from domain.watch import ScheduleSummary

NOT_FOUND = "ResourceNotFoundException"
CONFLICT = "ConflictException"


@dataclass(frozen=True)
class ScheduleTarget:
    """What every channel schedule invokes, as whom, and where undeliverable events go."""

    function_arn: str
    role_arn: str
    dead_letter_arn: str


class ScheduleStates:
    """Whether each channel's schedule is there and enabled, for the operator (``lettershop channel
    list|show``, with the operator's credentials); not ``ChannelSchedules``, whose calls are the
    function role's and which reads no schedule."""

    def __init__(self, client: Any, group: str) -> None:
        self._client = client
        self._group = group

    def state(self, name: str) -> str | None:
        """``ENABLED`` or ``DISABLED`` as the scheduler has it; None when there is no such schedule."""
        summary = self.summary(name)
        return None if summary is None else summary.state

    def summary(self, name: str) -> ScheduleSummary | None:
        """The schedule's state, target and last change; None when there is no such schedule."""
        answer = _get_schedule(self._client, self._group, name)
        return None if answer is None else _summary(answer)


class ChannelSchedules:
    """Create, update, delete, read and list the schedules of one group.

    Calls only what the function's role grants (template.yaml, ``ManageChannelSchedules``,
    ``ReadChannelSchedules`` and ``ListChannelSchedules``): a new Scheduler call here needs its
    action there too.
    """

    def __init__(self, client: Any, group: str, target: ScheduleTarget) -> None:
        self._client = client
        self._group = group
        self._target = target

    def put(self, schedule: Schedule) -> Literal["created", "updated"]:
        """Make the schedule exist exactly as given; say whether it was created or updated."""
        request = self._request(schedule)
        what = f"writing schedule {schedule.name} in group {self._group}"
        try:
            self._client.update_schedule(**request)
            return "updated"
        except ClientError as error:
            if error_code(error) != NOT_FOUND:
                raise classify(error, what) from error
        except BotoCoreError as error:
            raise classify(error, what) from error
        try:
            self._client.create_schedule(**request)
            return "created"
        except ClientError as error:
            if error_code(error) != CONFLICT:
                raise classify(error, what) from error
        except BotoCoreError as error:
            raise classify(error, what) from error
        # Created by someone else between our two calls: ours is the newer wish.
        try:
            self._client.update_schedule(**request)
        except (ClientError, BotoCoreError) as error:
            raise classify(error, what) from error
        return "updated"

    def delete(self, name: str) -> bool:
        """Delete the schedule; ``False`` when there was none (not an error)."""
        try:
            self._client.delete_schedule(Name=name, GroupName=self._group)
        except ClientError as error:
            if error_code(error) == NOT_FOUND:
                return False
            raise classify(error, f"deleting schedule {name} in group {self._group}") from error
        except BotoCoreError as error:
            raise classify(error, f"deleting schedule {name} in group {self._group}") from error
        return True

    def ensure(self, schedule: Schedule) -> Literal["created", "updated", "unchanged"]:
        """Make the schedule exist as given, writing only when it differs (or is missing); say which."""
        differences = self.differences(schedule)
        if differences == []:
            return "unchanged"
        return self.put(schedule)

    def differences(self, schedule: Schedule) -> list[str] | None:
        """The fields in which the stored schedule differs from ``schedule`` (``GetSchedule``);
        ``None`` when there is no such schedule."""
        stored = _get_schedule(self._client, self._group, schedule.name)
        if stored is None:
            return None
        wanted = {k: v for k, v in self._request(schedule).items() if k not in ("Name", "GroupName")}
        return _differences(wanted, stored)

    def names(self) -> list[str]:
        """The names of every schedule in the group (all pages)."""
        return sorted(summary.name for summary in self.summaries())

    def summaries(self) -> list[ScheduleSummary]:
        """Every schedule of the group as ``ListSchedules`` shows it (all pages): name, state,
        target and last change; the expression and input are only in ``GetSchedule``."""
        summaries: list[ScheduleSummary] = []
        try:
            for page in self._client.get_paginator("list_schedules").paginate(GroupName=self._group):
                summaries.extend(_summary(entry) for entry in page.get("Schedules", []))
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"listing the schedules of group {self._group}") from error
        return summaries

    def _request(self, schedule: Schedule) -> dict[str, Any]:
        return {
            "Name": schedule.name,
            "GroupName": self._group,
            "Description": schedule.description,
            "ScheduleExpression": schedule.expression,
            "State": schedule.state,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "ActionAfterCompletion": "NONE",
            "Target": {
                "Arn": self._target.function_arn,
                "RoleArn": self._target.role_arn,
                "Input": schedule.input,
                "RetryPolicy": {
                    "MaximumEventAgeInSeconds": schedule.max_event_age_seconds,
                    "MaximumRetryAttempts": schedule.max_retry_attempts,
                },
                "DeadLetterConfig": {"Arn": self._target.dead_letter_arn},
            },
        }


def _get_schedule(client: Any, group: str, name: str) -> dict[str, Any] | None:
    """``GetSchedule``; None when there is no such schedule."""
    try:
        answer: dict[str, Any] = client.get_schedule(Name=name, GroupName=group)
    except ClientError as error:
        if error_code(error) == NOT_FOUND:
            return None
        raise classify(error, f"reading schedule {name} in group {group}") from error
    except BotoCoreError as error:
        raise classify(error, f"reading schedule {name} in group {group}") from error
    return answer


def _summary(entry: Mapping[str, Any]) -> ScheduleSummary:
    """A ``ScheduleSummary`` of ``ListSchedules``, read as documented (Name, State, Target.Arn,
    LastModificationDate; nothing else is there)."""
    modified = entry.get("LastModificationDate") or entry.get("CreationDate")
    return ScheduleSummary(
        name=str(entry["Name"]),
        state=str(entry.get("State", "?")),
        target_arn=str((entry.get("Target") or {}).get("Arn", "")),
        modified=modified if isinstance(modified, datetime) else datetime.fromisoformat(str(modified)),
    )


def _differences(wanted: Mapping[str, Any], stored: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted names of the ``wanted`` fields that ``stored`` does not hold as wanted."""
    found: list[str] = []
    for key, value in wanted.items():
        have = stored.get(key)
        if isinstance(value, Mapping) and isinstance(have, Mapping):
            found.extend(_differences(value, have, f"{prefix}{key}."))
        elif have != value:
            found.append(f"{prefix}{key}")
    return found
