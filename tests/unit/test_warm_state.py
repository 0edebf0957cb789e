"""The one warm state (``app.warm``): what it keeps, what ``forget_secrets`` and ``reset`` forget."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from adapters.oauth import AccessToken, MailboxTokens, _Entry, _Key
from adapters.status import ChannelStatusStore
from adapters.status_item import ChannelStatus
from app.root import AwsRoot
from app.warm import WarmState
from domain.channel import OAuthClient
from domain.outcomes import PollResult
from service.poll import poll_ended
from settings import PollSettings

SECRET = "lettershop/acme/pop3"


class FakeSecretsManager:
    """Just enough of a ``secretsmanager`` client for Powertools' provider; counts the reads."""

    def __init__(self, value: str = "pop3-password") -> None:
        self.value = value
        self.reads: list[str] = []

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:
        self.reads.append(SecretId)
        return {"SecretString": self.value}


class FakeDynamoDb:
    """Stores nothing: a status update finds no item (its condition fails), so the status is put."""

    def __init__(self) -> None:
        self.puts = 0

    def put_item(self, **request: Any) -> None:
        self.puts += 1

    def update_item(self, **request: Any) -> None:
        raise ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "UpdateItem")


class Clients:
    """The warm state's client factory, handing out fakes and counting how often each was made."""

    def __init__(self) -> None:
        self.made: list[str] = []
        self.secretsmanager = FakeSecretsManager()
        self.dynamodb = FakeDynamoDb()

    def __call__(self, service: str) -> Any:
        self.made.append(service)
        return getattr(self, service)


@pytest.fixture
def clients(monkeypatch: pytest.MonkeyPatch) -> Clients:
    made = Clients()
    monkeypatch.setattr("adapters.clients.new_client", made)
    return made


def test_secrets_are_read_once_until_forgotten(clients: Clients) -> None:
    warm = WarmState()

    assert warm.secrets.password(SECRET, setting="pop3_password_secret") == "pop3-password"
    assert warm.secrets.password(SECRET, setting="pop3_password_secret") == "pop3-password"
    assert clients.secretsmanager.reads == [SECRET]
    clients.secretsmanager.value = "rotated"
    warm.forget_secrets()
    assert warm.secrets.password(SECRET, setting="pop3_password_secret") == "rotated"
    assert clients.secretsmanager.reads == [SECRET, SECRET]
    assert clients.made == ["secretsmanager"]  # forgetting the values keeps the client


def test_secrets_are_kept_for_hours_and_read_again_after_a_day(
    clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = {"now": datetime(2026, 12, 8, 0, 0)}

    class Clock(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> "Clock":
            return cls.fromtimestamp(clock["now"].timestamp(), tz)

    monkeypatch.setattr("aws_lambda_powertools.utilities.parameters.base.datetime", Clock)
    warm = WarmState()
    warm.secrets.password(SECRET, setting="pop3_password_secret")

    clock["now"] += timedelta(hours=23)  # an hour was the bound before (issue 21)
    warm.secrets.password(SECRET, setting="pop3_password_secret")
    assert clients.secretsmanager.reads == [SECRET]

    clock["now"] += timedelta(hours=1, seconds=1)
    warm.secrets.password(SECRET, setting="pop3_password_secret")
    assert clients.secretsmanager.reads == [SECRET, SECRET]


def test_reset_forgets_everything_a_warm_instance_kept(
    clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a warm state that kept something of every kind
    for name in ("CHANNELS_TABLE", "STATE_TABLE", "SCRIPTS_BUCKET", "ARCHIVE_BUCKET"):
        monkeypatch.setenv(f"LETTERSHOP_{name}", f"test-{name.lower()}")
    warm = WarmState()
    settings = warm.poll_settings()
    warm.secrets.password(SECRET, setting="pop3_password_secret")
    dynamodb = warm.client("dynamodb")
    warm.counters[("state", "counter#s10")] = 41
    warm.memories[("state", "acme")] = object()  # type: ignore[assignment]
    warm.tokens.put(*_token_entry())
    warm.scripts.put("scripts", "standard/a.py", '"e1"', b"print(1)")
    context = warm.tls.context()
    status = ChannelStatusStore("state", dynamodb, written=warm.statuses)
    empty = ChannelStatus.from_result(PollResult("acme"), _at())
    assert status.record("acme", empty) is True
    assert status.record("acme", empty) is False  # warm: no request
    assert warm.poll_settings() is settings
    assert warm.tls.context() is context

    # When it is reset
    warm.reset()

    # Then nothing is kept: each thing is made or read again by its next use
    assert (warm.counters, warm.memories, warm.statuses) == ({}, {}, {})
    assert warm.tokens.get(_token_entry()[0]) is None
    assert warm.scripts.get("scripts", "standard/a.py") is None
    assert warm.poll_settings() is not settings
    assert warm.tls.context() is not context
    assert status.record("acme", empty) is True  # cold: one (conditional) write again
    assert dynamodb.puts == 2
    warm.client("dynamodb")
    warm.secrets.password(SECRET, setting="pop3_password_secret")
    assert clients.made == ["secretsmanager", "dynamodb", "dynamodb", "secretsmanager"]
    assert clients.secretsmanager.reads == [SECRET, SECRET]


def test_a_poll_that_failed_on_a_setting_forgets_the_secrets_and_no_other(clients: Clients) -> None:
    warm = WarmState()
    root = AwsRoot(_settings(), warm=warm)
    at = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    warm.secrets.password(SECRET, setting="pop3_password_secret")

    poll_ended(PollResult("acme", status="error", error="POP3 login failed"), root, at=at)
    warm.secrets.password(SECRET, setting="pop3_password_secret")
    poll_ended(
        PollResult("acme", status="error", error="refused", setting="pop3_password_secret"), root, at=at
    )
    warm.secrets.password(SECRET, setting="pop3_password_secret")

    assert clients.secretsmanager.reads == [SECRET, SECRET]
    assert clients.dynamodb.puts == 2  # the status of each poll: it changed


def test_the_oauth_tokens_of_the_root_are_the_warm_states(clients: Clients) -> None:
    warm = WarmState()
    key, entry = _token_entry()
    warm.tokens.put(key, entry)

    tokens = MailboxTokens(MICROSOFT, "box@contoso.example", cache=warm.tokens, secrets=warm.secrets)

    assert tokens.token() == AccessToken("t1", cached=True)
    assert clients.made == []


MICROSOFT = OAuthClient(
    "microsoft",
    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
    "app-1",
    "lettershop/acme/oauth",
    "https://outlook.office365.com/.default",
)


def _token_entry() -> tuple[_Key, _Entry]:
    key = _Key("microsoft", MICROSOFT.token_url, "app-1", "lettershop/acme/oauth", MICROSOFT.scope, None)
    return key, _Entry("t1", renew_at=float("inf"))


def _settings() -> PollSettings:
    return PollSettings(
        channels_table="channels", state_table="state", scripts_bucket="scripts", archive_bucket="archive"
    )


def _at() -> datetime:
    return datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
