"""The one wiring point of the poll: real adapters for a channel, with the process's one warm state."""

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from adapters.archive import S3Archive
from adapters.channels import ChannelTable
from adapters.mailbox_memory import DynamoDbMailboxMemory
from adapters.oauth import MailboxTokens
from adapters.pop3 import Pop3Account, Pop3Mailbox
from adapters.scripts import S3ScriptRunner
from adapters.serials import DynamoDbSerialCounter
from adapters.ses import SesReplySender
from adapters.smtp import SmtpAccount, SmtpReplySender
from adapters.state import DynamoDbLease, DynamoDbLedger, DynamoDbReplyLimiter
from adapters.status import ChannelStatus, ChannelStatusStore
from app.warm import WarmState
from domain.channel import Channel, OAuthClient
from domain.errors import LetterShopError
from domain.outcomes import PollResult
from service.poll import Ports
from service.ports import ReplySender
from service.telemetry import logger

if TYPE_CHECKING:
    from settings import PollSettings  # the handler reads the settings; pydantic-settings is not needed here

# The process's one warm state (app.warm): every adapter built here keeps its caches in it.
WARM = WarmState()


def aws_client(service: str) -> Any:
    """The process's boto3 client of ``service`` (kept in the warm state)."""
    return WARM.client(service)


class AwsWiring:
    """Implements ``service.poll.Wiring`` with the deployed tables, buckets and secrets."""

    def __init__(self, settings: "PollSettings", warm: WarmState = WARM) -> None:
        self._settings = settings
        self._warm = warm

    def channel_item(self, channel_id: str) -> Mapping[str, Any] | None:
        return ChannelTable(self._settings.channels_table, self._warm.client("dynamodb")).get(channel_id)

    def poll_ended(self, result: PollResult) -> None:
        """After a poll that failed on a setting, the secrets are read afresh by the next one (a
        rotated password fails one poll, not an hour of them); and the channel's status item for
        ``lettershop channel list`` is written when it says something new (``adapters.status``: a
        warm function skips an unchanged empty poll without a request)."""
        warm = self._warm
        if result.status == "error" and result.setting:
            warm.forget_secrets()
        store = ChannelStatusStore(self._settings.state_table, warm.client("dynamodb"), written=warm.statuses)
        try:
            store.record(result.channel_id, ChannelStatus.from_result(result, datetime.now(UTC)))
        except LetterShopError as error:
            logger.warning("channel status not recorded: %s", error)

    def ports(self, channel: Channel) -> Ports:
        """Adapters for one channel; reads its passwords (cached across warm invocations)."""
        settings, warm = self._settings, self._warm
        mailbox = Pop3Mailbox(pop3_account(channel, warm))
        dynamodb = warm.client("dynamodb")
        return Ports(
            mailbox=mailbox,
            archive=S3Archive(settings.archive_bucket, warm.client("s3")),
            replies=_reply_sender(channel, warm),
            serials=DynamoDbSerialCounter(settings.state_table, dynamodb, known=warm.counters),
            scripts=S3ScriptRunner(settings.scripts_bucket, warm.client("s3"), cache=warm.scripts),
            ledger=DynamoDbLedger(settings.state_table, dynamodb),
            lease=DynamoDbLease(settings.state_table, dynamodb),
            limiter=DynamoDbReplyLimiter(settings.state_table, dynamodb),
            memory=DynamoDbMailboxMemory(settings.state_table, dynamodb, warm=warm.memories),
        )


def pop3_account(channel: Channel, warm: WarmState = WARM) -> Pop3Account:
    """The POP3 login: OAuth 2.0 tokens (fetched at login, cached), or the password from Secrets Manager."""
    account = Pop3Account(
        host=channel.pop3_host,
        port=channel.incoming_port,
        security=channel.pop3_security,
        username=channel.pop3_username,
        tls=warm.tls,
    )
    oauth = channel.oauth_client
    if channel.pop3_login == "oauth2" and oauth is not None:
        return replace(account, tokens=_tokens(oauth, channel.pop3_username, warm))
    assert channel.pop3_password_secret is not None  # noqa: S101  # the model demands it for password
    secret = warm.secrets.password(channel.pop3_password_secret, setting="pop3_password_secret")
    return replace(account, password=secret)


def _reply_sender(channel: Channel, warm: WarmState) -> ReplySender:
    if channel.reply_via == "ses":
        return SesReplySender(warm.client("sesv2"))
    return SmtpReplySender(smtp_account(channel, warm))


def _tokens(oauth: OAuthClient, mailbox: str, warm: WarmState) -> MailboxTokens:
    return MailboxTokens(oauth, mailbox, cache=warm.tokens, secrets=warm.secrets)


def smtp_account(channel: Channel, warm: WarmState = WARM) -> SmtpAccount:
    """The SMTP relay of a channel that replies by SMTP: its login with OAuth 2.0 tokens, with the
    password from Secrets Manager, or none (``smtp_auth`` off)."""
    assert channel.smtp_host is not None  # noqa: S101  # the channel model demands it for smtp
    oauth = channel.oauth_client if channel.smtp_oauth else None
    smtp_password = (
        warm.secrets.password(channel.smtp_password_secret, setting="smtp_password_secret")
        if channel.smtp_auth and channel.smtp_password_secret and oauth is None
        else None
    )
    return SmtpAccount(
        host=channel.smtp_host,
        port=channel.smtp_port,
        security=channel.smtp_security,
        username=channel.smtp_username if channel.smtp_auth else None,
        password=smtp_password,
        tokens=_tokens(oauth, channel.smtp_username or "", warm) if oauth is not None else None,
        tls=warm.tls,
    )
