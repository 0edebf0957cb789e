"""Environment of the schedule sync function (DESIGN §7), read by the first invocation (``app.warm``)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ARN = r"^arn:aws[a-z-]*:"


class ScheduleSettings(BaseSettings):
    """The channel table, and where each channel's schedule lives and what it invokes."""

    model_config = SettingsConfigDict(env_prefix="LETTERSHOP_", frozen=True)

    channels_table: str = Field(min_length=3)
    schedule_group: str = Field(pattern=r"^[0-9A-Za-z_.-]{1,64}$")
    poll_function_arn: str = Field(pattern=ARN + r"lambda:[a-z0-9-]+:\d{12}:function:")
    scheduler_role_arn: str = Field(pattern=ARN + r"iam::\d{12}:role/")
    schedule_dlq_arn: str = Field(pattern=ARN + r"sqs:[a-z0-9-]+:\d{12}:")
    # Where "invalid: <reasons>" of a saved channel item is recorded (status items, src/adapters/status.py).
    state_table: str = Field(min_length=3)
    # The poll function's timeout: a lease held longer than this is stuck (the watchdog, service/watchdog.py).
    poll_timeout_seconds: int = Field(default=300, ge=1, le=900)


def schedule_settings() -> ScheduleSettings:
    """Read from the environment now; a warm function keeps what it read (``app.warm``)."""
    return ScheduleSettings()  # type: ignore[call-arg]  # values come from the environment
