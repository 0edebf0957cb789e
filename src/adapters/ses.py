"""Replies through Amazon SES (``sesv2.send_email`` with the stored raw MIME message).

Whose failure (DESIGN §6): a reply larger than SES takes (``MAX_MESSAGE_BYTES``, 40 MB with its
attachments; checked before sending, and SES's own "message length" refusal) is ``ReplyTooLarge``;
``MessageRejected`` refuses this message (``UndeliverableReply``); throttling and outages are
transient; a suspended account, paused sending, an unverified or unknown identity and everything
else are the channel's (``ChannelFailure``, naming ``sender_address``).
"""

import re
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code
from domain.errors import ChannelFailure, ReplyTooLarge, UndeliverableReply

# SES API v2: "the maximum message size, including attachments, is 40 MB" (the raw MIME message,
# base64 attachments included); v1's 10 MB was 10,485,760 bytes, so MB means MiB here.
MAX_MESSAGE_BYTES = 40 * 1024 * 1024
MESSAGE_CODES = frozenset({"MessageRejected"})
# SES's answer to a message over its limit: "Message length is more than 41943040 bytes long: '…'."
# (as MessageRejected, BadRequestException or InvalidParameterValue, depending on the API version).
TOO_LARGE = re.compile(r"message length is more than (\d+) bytes|message (?:size|length) exceeds", re.I)
CHANNEL_CODES = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "NotFoundException",
        "MailFromDomainNotVerifiedException",
        "AccessDeniedException",
    }
)


class SesReplySender:
    """Implements ``service.ports.ReplySender`` with an injected ``sesv2`` client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def close(self) -> None:
        """SES keeps no connection of a poll's own."""

    def prepare(self) -> None:
        """Nothing to open: each send is one request."""

    def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        what = f"SES send from {sender} to {recipient}"
        if len(data) > MAX_MESSAGE_BYTES:
            raise ReplyTooLarge(
                f"{what}: the reply has {len(data)} bytes; SES takes at most {MAX_MESSAGE_BYTES}",
                size=len(data),
                limit=MAX_MESSAGE_BYTES,
            )
        try:
            self._client.send_email(
                FromEmailAddress=sender,
                Destination={"ToAddresses": [recipient]},
                Content={"Raw": {"Data": data}},
            )
        except ClientError as error:
            code = error_code(error)
            too_large = TOO_LARGE.search(_text(error))
            if too_large is not None:
                limit = int(too_large.group(1)) if too_large.group(1) else MAX_MESSAGE_BYTES
                raise ReplyTooLarge(f"{what}: {code}: {_text(error)}", size=len(data), limit=limit) from error
            if code in MESSAGE_CODES:
                raise UndeliverableReply(f"{what}: {code}: {_text(error)}") from error
            if code in CHANNEL_CODES:
                raise ChannelFailure(
                    f"SES cannot send from {sender}: {code}: {_text(error)}", setting="sender_address"
                ) from error
            raise classify(error, what) from error
        except BotoCoreError as error:
            raise classify(error, what) from error


def _text(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Message", ""))
