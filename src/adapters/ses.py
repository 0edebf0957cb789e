"""Replies through Amazon SES (``sesv2.send_email`` with the stored raw MIME message).

Whose failure (DESIGN §6): ``MessageRejected`` refuses this message (``UndeliverableReply``);
throttling and outages are transient; a suspended account, paused sending, an unverified or unknown
identity and everything else are the channel's (``ChannelFailure``, naming ``sender_address``).
"""

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code
from domain.errors import ChannelFailure, UndeliverableReply

MESSAGE_CODES = frozenset({"MessageRejected"})
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

    def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        what = f"SES send from {sender} to {recipient}"
        try:
            self._client.send_email(
                FromEmailAddress=sender,
                Destination={"ToAddresses": [recipient]},
                Content={"Raw": {"Data": data}},
            )
        except ClientError as error:
            code = error_code(error)
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
