"""Environment of the poll function (DESIGN §8), read and validated by the first invocation (``app.warm``)."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PollSettings(BaseSettings):
    """Names of the resources the poll function works with; AWS endpoints come from boto3 itself."""

    model_config = SettingsConfigDict(env_prefix="LETTERSHOP_", frozen=True)

    channels_table: str = Field(min_length=3)
    state_table: str = Field(min_length=3)
    scripts_bucket: str = Field(min_length=3)
    archive_bucket: str = Field(min_length=3)
    time_margin_seconds: int = Field(default=30, ge=1, le=600)


def poll_settings() -> PollSettings:
    """Read from the environment now; a warm function keeps what it read (``app.warm``)."""
    return PollSettings()  # type: ignore[call-arg]  # values come from the environment
