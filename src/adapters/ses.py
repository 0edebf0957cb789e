"""Replies through Amazon SES (``sesv2.send_email`` with the raw MIME message)."""

from email.message import EmailMessage
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code
from domain.errors import ConfigurationError

CONFIGURATION_CODES = frozenset({"AccountSuspendedException", "SendingPausedException", "NotFoundException"})


class SesReplySender:
    """Implements ``service.ports.ReplySender`` with an injected ``sesv2`` client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def send(self, message: EmailMessage, *, sender: str, recipient: str) -> None:
        try:
            self._client.send_email(
                FromEmailAddress=sender,
                Destination={"ToAddresses": [recipient]},
                Content={"Raw": {"Data": message.as_bytes()}},
            )
        except ClientError as error:
            if error_code(error) in CONFIGURATION_CODES:
                raise ConfigurationError(f"SES cannot send from {sender}: {error_code(error)}") from error
            raise classify(error, f"SES send from {sender} to {recipient}") from error
        except BotoCoreError as error:
            raise classify(error, f"SES send from {sender} to {recipient}") from error
