"""The composition root: the one place that builds the outside world of a channel, for every entry point.

``AwsRoot`` builds, from the deployed tables, buckets and secrets (AWS clients made once per cold
start), the ports of a real poll (``ports``), of a dry run (``dry_run_ports``) and of a replay
(``replay_ports``), and where a real poll's end is recorded (``status_log``, ``credentials``). The
logins a poll makes are built here too (``pop3_mailbox``, ``smtp_account``), and which password
secrets they read is answered here once (``password_secrets``): ``lettershop channel check`` tries
exactly what a poll would. The poll handler and the operator's command line (``cli/``) both use it.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from adapters.archive import S3Archive
from adapters.channels import ChannelTable
from adapters.dry_run import (
    DryRunArchive,
    DryRunMailbox,
    GrantedLease,
    Journal,
    OverlayLedger,
    PlaceholderSerials,
    ReadOnlyMemory,
    RecordingReplySender,
    UnlimitedReplies,
)
from adapters.graph import GraphAccount, GraphMailbox
from adapters.graph_send import GraphReplySender
from adapters.mailbox_memory import DynamoDbMailboxMemory
from adapters.oauth import MailboxTokens
from adapters.pop3 import Pop3Account, Pop3Mailbox
from adapters.replay import ReplayMailbox, ReplayMemory
from adapters.scripts import S3ScriptRunner
from adapters.serials import DynamoDbSerialCounter
from adapters.ses import SesReplySender
from adapters.smtp import SmtpAccount, SmtpReplySender
from adapters.state import DynamoDbLease, DynamoDbLedger, DynamoDbReplyLimiter
from adapters.status import ChannelStatusStore
from adapters.status_item import ChannelStatus
from app.warm import WarmState
from domain.channel import Channel, OAuthClient
from domain.errors import ChannelFailure
from domain.outcomes import PollResult
from service.ports import Credentials, Mailbox, Ports, ReplySender, StatusLog

if TYPE_CHECKING:
    from settings import PollSettings  # the handler reads the settings; pydantic-settings is not needed here

# The process's one warm state (app.warm): every adapter built here keeps its caches in it.
WARM = WarmState()


def aws_client(service: str) -> Any:
    """The process's boto3 client of ``service`` (kept in the warm state)."""
    return WARM.client(service)


class AwsRoot:
    """Implements ``service.ports.Wiring`` and ``PollEndWiring`` with the deployed resources, and
    builds the ports of the operator's dry run and replay. ``watch`` wraps each channel's mailbox
    (the command line's progress display)."""

    def __init__(
        self,
        settings: "PollSettings",
        *,
        warm: WarmState = WARM,
        watch: Callable[[Mailbox], Mailbox] = lambda box: box,
    ) -> None:
        self._settings = settings
        self._warm = warm
        self._watch = watch

    def channel_item(self, channel_id: str) -> Mapping[str, Any] | None:
        return ChannelTable(self._settings.channels_table, self._warm.client("dynamodb")).get(channel_id)

    def status_log(self) -> StatusLog:
        """The channel status items of ``lettershop channel list`` (``adapters.status``: a warm
        function skips an unchanged empty poll without a request)."""
        warm = self._warm
        return _StatusItems(
            ChannelStatusStore(self._settings.state_table, warm.client("dynamodb"), written=warm.statuses)
        )

    def credentials(self) -> Credentials:
        """The secrets cached across warm invocations (``adapters.secrets``)."""
        return _CachedSecrets(self._warm)

    def ports(self, channel: Channel) -> Ports:
        """Adapters for one channel; reads its passwords (cached across warm invocations)."""
        settings, warm = self._settings, self._warm
        mailbox = self._watch(channel_mailbox(channel, warm))
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

    def dry_run_ports(self, channel: Channel, journal: Journal) -> Ports:
        """A poll that changes nothing (``adapters.dry_run``): the real mailbox, ledger, memory and
        archive read, never written; every decision noted in ``journal``."""
        real = self.ports(channel)
        ledger = OverlayLedger(
            DynamoDbLedger(self._settings.state_table, self._warm.client("dynamodb")), journal
        )
        return replace(
            real,
            mailbox=DryRunMailbox(real.mailbox, journal),
            archive=DryRunArchive(journal, real.archive),
            replies=RecordingReplySender(journal),
            serials=PlaceholderSerials(ledger),
            ledger=ledger,
            lease=GrantedLease(),
            limiter=UnlimitedReplies(),
            memory=ReadOnlyMemory(real.memory),
        )

    def replay_ports(
        self, channel: Channel, raw: bytes, *, uid: str, on_retrieve: Callable[[], None]
    ) -> Ports:
        """A poll of one archived message (``adapters.replay``) with the channel's real ledger,
        archive, scripts and reply transport; its mailbox memory neither read nor written."""
        return replace(
            self.ports(channel),
            mailbox=ReplayMailbox(raw, uid=uid, on_retrieve=on_retrieve),
            memory=ReplayMemory(),
        )


class _StatusItems:
    """Implements ``service.ports.StatusLog`` with the channel status items."""

    def __init__(self, store: ChannelStatusStore) -> None:
        self._store = store

    def record(self, result: PollResult, at: datetime) -> None:
        self._store.record(
            result.channel_id, ChannelStatus.from_result(result, at), interval_minutes=result.interval_minutes
        )


class _CachedSecrets:
    """Implements ``service.ports.Credentials`` with the warm state's secrets."""

    def __init__(self, warm: WarmState) -> None:
        self._warm = warm

    def forget(self) -> None:
        self._warm.forget_secrets()


@dataclass(frozen=True)
class PasswordSecret:
    """A password a channel's login reads from Secrets Manager."""

    login: Literal["POP3", "SMTP"]
    secret_id: str
    setting: str  # the channel attribute that names the secret


def password_secrets(channel: Channel) -> list[PasswordSecret]:
    """The password secrets a poll of the channel reads, POP3's first (an OAuth login reads the
    client's secret instead: ``MailboxTokens``)."""
    found = []
    pop3 = _pop3_password_secret(channel)
    if pop3 is not None:
        found.append(PasswordSecret("POP3", pop3, "pop3_password_secret"))
    smtp = _smtp_password_secret(channel)
    if smtp is not None:
        found.append(PasswordSecret("SMTP", smtp, "smtp_password_secret"))
    return found


def _pop3_password_secret(channel: Channel) -> str | None:
    if channel.mailbox_protocol != "pop3":
        return None
    if channel.pop3_login == "oauth2" and channel.oauth_client is not None:
        return None
    return channel.pop3_password_secret


def _smtp_password_secret(channel: Channel) -> str | None:
    if channel.reply_via != "smtp" or not channel.smtp_auth or channel.smtp_oauth:
        return None
    return channel.smtp_password_secret or None


def channel_mailbox(channel: Channel, warm: WarmState = WARM) -> Mailbox:
    """The channel's mailbox as ``mailbox_protocol`` says: POP3, or Microsoft Graph."""
    if channel.mailbox_protocol == "graph":
        return graph_mailbox(channel, warm)
    return pop3_mailbox(channel, warm)


def graph_mailbox(channel: Channel, warm: WarmState = WARM) -> GraphMailbox:
    """The channel's Microsoft 365 mailbox through Graph."""
    return GraphMailbox(graph_account(channel, warm))


def graph_sender(channel: Channel, warm: WarmState = WARM) -> GraphReplySender:
    """Replies through Graph as ``graph_mailbox`` (``reply_via: graph``). ``save_to_sent_items:
    false`` is refused here, before the mailbox is read (``adapters.graph_send``: not built yet)."""
    if not channel.save_to_sent_items:
        raise ChannelFailure(
            "save_to_sent_items false: Graph's MIME send always keeps a copy in Sent Items, and removing "
            "it afterwards is not built yet (issue 22); nothing was read or sent. Set it to true",
            setting="save_to_sent_items",
        )
    return GraphReplySender(graph_account(channel, warm), save_to_sent_items=channel.save_to_sent_items)


def graph_account(channel: Channel, warm: WarmState = WARM) -> GraphAccount:
    """``graph_mailbox`` with the app-only token of the channel's Microsoft client (asked for with
    the Graph scope; cached in the warm state like the XOAUTH2 tokens)."""
    client, mailbox = channel.graph_client, channel.graph_mailbox
    assert client is not None  # noqa: S101  # the channel model demands both when Graph is used
    assert mailbox is not None  # noqa: S101
    return GraphAccount(
        endpoint=channel.graph_endpoint, mailbox=mailbox, tokens=_tokens(client, mailbox, warm), tls=warm.tls
    )


def pop3_mailbox(channel: Channel, warm: WarmState = WARM) -> Pop3Mailbox:
    """The channel's POP3 mailbox, with the login a poll makes."""
    return Pop3Mailbox(pop3_account(channel, warm))


def pop3_account(channel: Channel, warm: WarmState = WARM) -> Pop3Account:
    """The POP3 login: OAuth 2.0 tokens (fetched at login, cached), or the password from Secrets Manager."""
    host, username = channel.pop3_host, channel.pop3_username
    if channel.mailbox_protocol != "pop3" or host is None or username is None:
        raise ChannelFailure(
            f"mailbox_protocol {channel.mailbox_protocol}: the mailbox is not read over POP3",
            setting="mailbox_protocol",
        )
    account = Pop3Account(
        host=host,
        port=channel.incoming_port,
        security=channel.pop3_security,
        username=username,
        tls=warm.tls,
    )
    secret = _pop3_password_secret(channel)
    if secret is None:
        assert channel.oauth_client is not None  # noqa: S101  # no password: the login is OAuth's
        return replace(account, tokens=_tokens(channel.oauth_client, username, warm))
    return replace(account, password=warm.secrets.password(secret, setting="pop3_password_secret"))


def _reply_sender(channel: Channel, warm: WarmState) -> ReplySender:
    if channel.reply_via == "ses":
        return SesReplySender(warm.client("sesv2"))
    if channel.reply_via == "graph":
        return graph_sender(channel, warm)
    return SmtpReplySender(smtp_account(channel, warm))


def _tokens(oauth: OAuthClient, mailbox: str, warm: WarmState) -> MailboxTokens:
    return MailboxTokens(oauth, mailbox, cache=warm.tokens, secrets=warm.secrets)


def smtp_account(channel: Channel, warm: WarmState = WARM) -> SmtpAccount:
    """The SMTP relay of a channel that replies by SMTP: its login with OAuth 2.0 tokens, with the
    password from Secrets Manager, or none (``smtp_auth`` off)."""
    assert channel.smtp_host is not None  # noqa: S101  # the channel model demands it for smtp
    oauth = channel.oauth_client if channel.smtp_oauth else None
    secret = _smtp_password_secret(channel)
    return SmtpAccount(
        host=channel.smtp_host,
        port=channel.smtp_port,
        security=channel.smtp_security,
        username=channel.smtp_username if channel.smtp_auth else None,
        password=warm.secrets.password(secret, setting="smtp_password_secret")
        if secret is not None
        else None,
        tokens=_tokens(oauth, channel.smtp_username or "", warm) if oauth is not None else None,
        tls=warm.tls,
    )
