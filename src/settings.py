"""Environment of the poll function (DESIGN §8), read and validated once per cold start."""

from functools import lru_cache

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


@lru_cache(maxsize=1)
def poll_settings() -> PollSettings:
    return PollSettings()  # type: ignore[call-arg]  # values come from the environment
