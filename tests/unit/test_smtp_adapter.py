"""The SMTP adapter's sorting of failures (DESIGN §6), with a recording stand-in for smtplib."""

import smtplib
from email.message import EmailMessage

import pytest

from adapters.smtp import SmtpAccount, SmtpReplySender
from domain.errors import ConfigurationError, PermanentError, TransientError


class RecordingClient:
    def __init__(self, *, fail: Exception | None = None, quit_fails: bool = False) -> None:
        self.fail = fail
        self.quit_fails = quit_fails
        self.sent: list[EmailMessage] = []
        self.closed = False

    def login(self, user: str, password: str) -> None:
        if isinstance(self.fail, smtplib.SMTPAuthenticationError):
            raise self.fail

    def send_message(self, message: EmailMessage, from_addr: str, to_addrs: list[str]) -> None:
        if self.fail is not None and not isinstance(self.fail, smtplib.SMTPAuthenticationError):
            raise self.fail
        self.sent.append(message)

    def quit(self) -> None:
        if self.quit_fails:
            raise smtplib.SMTPServerDisconnected("421 shutting down")

    def close(self) -> None:
        self.closed = True


def sender_with(client: RecordingClient) -> SmtpReplySender:
    sender = SmtpReplySender(SmtpAccount("smtp.example", 25, "starttls", "relay", "secret"))
    sender._connect = lambda: client  # type: ignore[assignment,method-assign,return-value]
    return sender


def reply() -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "Re: x"
    return message


def test_reply_accepted_then_quit_failing_counts_as_sent() -> None:
    client = RecordingClient(quit_fails=True)

    sender_with(client).send(reply(), sender="a@b.example", recipient="c@d.example")

    assert len(client.sent) == 1
    assert client.closed


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (smtplib.SMTPDataError(451, b"4.3.0 try later"), TransientError),
        (smtplib.SMTPDataError(552, b"5.3.4 too big"), PermanentError),
        (smtplib.SMTPRecipientsRefused({"c@d.example": (550, b"no such user")}), PermanentError),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), ConfigurationError),
        (smtplib.SMTPAuthenticationError(454, b"temporary auth failure"), TransientError),
        (smtplib.SMTPServerDisconnected("gone"), TransientError),
    ],
)
def test_failures_are_sorted_by_what_a_retry_can_change(
    failure: Exception, expected: type[Exception]
) -> None:
    with pytest.raises(expected):
        sender_with(RecordingClient(fail=failure)).send(
            reply(), sender="a@b.example", recipient="c@d.example"
        )


def test_password_is_not_in_the_account_repr() -> None:
    assert "secret" not in repr(SmtpAccount("smtp.example", 25, "starttls", "relay", "secret"))
