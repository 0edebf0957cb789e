"""The one wiring point of the poll: real adapters for a channel, AWS clients built once per cold start."""

from collections.abc import Mapping
from typing import Any

from adapters.archive import S3Archive
from adapters.channels import ChannelTable
from adapters.clients import aws_client
from adapters.mailbox_memory import DynamoDbMailboxMemory
from adapters.pop3 import Pop3Account, Pop3Mailbox
from adapters.scripts import S3ScriptRunner
from adapters.secrets import password
from adapters.serials import DynamoDbSerialCounter
from adapters.ses import SesReplySender
from adapters.smtp import SmtpAccount, SmtpReplySender
from adapters.state import DynamoDbLease, DynamoDbLedger, DynamoDbReplyLimiter
from domain.channel import Channel
from service.poll import Ports
from service.ports import ReplySender
from settings import PollSettings


class AwsWiring:
    """Implements ``service.poll.Wiring`` with the deployed tables, buckets and secrets."""

    def __init__(self, settings: PollSettings) -> None:
        self._settings = settings

    def channel_item(self, channel_id: str) -> Mapping[str, Any] | None:
        return ChannelTable(self._settings.channels_table, aws_client("dynamodb")).get(channel_id)

    def ports(self, channel: Channel) -> Ports:
        """Adapters for one channel; reads its passwords (cached across warm invocations)."""
        settings = self._settings
        mailbox = Pop3Mailbox(
            Pop3Account(
                host=channel.pop3_host,
                port=channel.incoming_port,
                security=channel.pop3_security,
                username=channel.pop3_username,
                password=password(channel.pop3_password_secret, setting="pop3_password_secret"),
            )
        )
        dynamodb = aws_client("dynamodb")
        return Ports(
            mailbox=mailbox,
            archive=S3Archive(settings.archive_bucket, aws_client("s3")),
            replies=_reply_sender(channel),
            serials=DynamoDbSerialCounter(settings.state_table, dynamodb),
            scripts=S3ScriptRunner(settings.scripts_bucket, aws_client("s3")),
            ledger=DynamoDbLedger(settings.state_table, dynamodb),
            lease=DynamoDbLease(settings.state_table, dynamodb),
            limiter=DynamoDbReplyLimiter(settings.state_table, dynamodb),
            memory=DynamoDbMailboxMemory(settings.state_table, dynamodb),
        )


def _reply_sender(channel: Channel) -> ReplySender:
    if channel.reply_via == "ses":
        return SesReplySender(aws_client("sesv2"))
    assert channel.smtp_host is not None  # noqa: S101  # the channel model demands it for smtp
    smtp_password = (
        password(channel.smtp_password_secret, setting="smtp_password_secret")
        if channel.smtp_auth and channel.smtp_password_secret
        else None
    )
    return SmtpReplySender(
        SmtpAccount(
            host=channel.smtp_host,
            port=channel.smtp_port,
            security=channel.smtp_security,
            username=channel.smtp_username if channel.smtp_auth else None,
            password=smtp_password,
        )
    )
