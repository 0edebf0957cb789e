"""Environment of the poll function (DESIGN §8)."""

import pytest
from pydantic import ValidationError

from settings import PollSettings

NAMES = {
    "LETTERSHOP_CHANNELS_TABLE": "channels",
    "LETTERSHOP_STATE_TABLE": "state",
    "LETTERSHOP_SCRIPTS_BUCKET": "scripts",
    "LETTERSHOP_ARCHIVE_BUCKET": "archive",
}


def test_reads_resource_names_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in NAMES.items():
        monkeypatch.setenv(name, value)

    settings = PollSettings()  # type: ignore[call-arg]

    assert (settings.channels_table, settings.archive_bucket, settings.time_margin_seconds) == (
        "channels",
        "archive",
        30,
    )


@pytest.mark.parametrize("missing", sorted(NAMES))
def test_missing_name_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    for name, value in NAMES.items():
        if name != missing:
            monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing, raising=False)

    with pytest.raises(ValidationError, match=missing.removeprefix("LETTERSHOP_").lower()):
        PollSettings()  # type: ignore[call-arg]


def test_time_margin_must_be_sensible(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in NAMES.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("LETTERSHOP_TIME_MARGIN_SECONDS", "0")

    with pytest.raises(ValidationError, match="time_margin_seconds"):
        PollSettings()  # type: ignore[call-arg]
