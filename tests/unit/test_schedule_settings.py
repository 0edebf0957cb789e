"""Environment of the schedule sync function (DESIGN §7)."""

import pytest
from pydantic import ValidationError

from schedule_settings import ScheduleSettings

NAMES = {
    "LETTERSHOP_CHANNELS_TABLE": "channels",
    "LETTERSHOP_SCHEDULE_GROUP": "lettershop-channels",
    "LETTERSHOP_POLL_FUNCTION_ARN": "arn:aws:lambda:eu-central-1:123456789012:function:poll",
    "LETTERSHOP_SCHEDULER_ROLE_ARN": "arn:aws:iam::123456789012:role/scheduler",
    "LETTERSHOP_SCHEDULE_DLQ_ARN": "arn:aws:sqs:eu-central-1:123456789012:dlq",
    "LETTERSHOP_STATE_TABLE": "state",
}


def set_all(monkeypatch: pytest.MonkeyPatch, **changes: str) -> None:
    for name, value in {**NAMES, **changes}.items():
        monkeypatch.setenv(name, value)


def test_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_all(monkeypatch)

    settings = ScheduleSettings()  # type: ignore[call-arg]

    assert settings.schedule_group == "lettershop-channels"
    assert settings.poll_function_arn.endswith(":function:poll")


@pytest.mark.parametrize("missing", sorted(NAMES))
def test_missing_variable_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    set_all(monkeypatch)
    monkeypatch.delenv(missing)

    with pytest.raises(ValidationError, match=missing.removeprefix("LETTERSHOP_").lower()):
        ScheduleSettings()  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LETTERSHOP_POLL_FUNCTION_ARN", "arn:aws:sqs:eu-central-1:123456789012:poll"),
        ("LETTERSHOP_SCHEDULER_ROLE_ARN", "scheduler-role"),
        ("LETTERSHOP_SCHEDULE_DLQ_ARN", "arn:aws:sns:eu-central-1:123456789012:topic"),
        ("LETTERSHOP_SCHEDULE_GROUP", "has spaces"),
    ],
)
def test_values_of_the_wrong_kind_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    set_all(monkeypatch, **{name: value})

    with pytest.raises(ValidationError, match=name.removeprefix("LETTERSHOP_").lower()):
        ScheduleSettings()  # type: ignore[call-arg]
