"""The SMTP adapter's sorting of failures (DESIGN §6), with a recording stand-in for smtplib."""

import smtplib
import socket

import pytest

from adapters.smtp import SmtpAccount, SmtpReplySender
from domain.errors import ChannelFailure, TransientError, UndeliverableReply

REPLY = b"Subject: Re: x\r\n\r\nbody\r\n"


class RecordingClient:
    def __init__(
        self, *, fail: Exception | None = None, quit_fails: bool = False, extensions: tuple[str, ...] = ()
    ) -> None:
        self.fail = fail
        self.quit_fails = quit_fails
        self.extensions = extensions
        self.sent: list[tuple[str, list[str], bytes, list[str]]] = []
        self.closed = False

    def login(self, user: str, password: str) -> None:
        if isinstance(self.fail, smtplib.SMTPAuthenticationError | smtplib.SMTPNotSupportedError):
            raise self.fail

    def ehlo_or_helo_if_needed(self) -> None:
        """EHLO was answered; ``extensions`` are what it offered."""

    def has_extn(self, name: str) -> bool:
        return name.lower() in self.extensions

    def sendmail(self, from_addr: str, to_addrs: list[str], msg: bytes, mail_options: list[str]) -> None:
        if self.fail is not None and not isinstance(
            self.fail, smtplib.SMTPAuthenticationError | smtplib.SMTPNotSupportedError
        ):
            raise self.fail
        self.sent.append((from_addr, to_addrs, msg, mail_options))

    def quit(self) -> None:
        if self.quit_fails:
            raise smtplib.SMTPServerDisconnected("421 shutting down")

    def close(self) -> None:
        self.closed = True


def sender_with(client: RecordingClient) -> SmtpReplySender:
    sender = SmtpReplySender(SmtpAccount("smtp.example", 25, "starttls", "relay", "secret"))
    sender._connect = lambda: client  # type: ignore[assignment,method-assign,return-value]
    return sender


def test_reply_accepted_then_quit_failing_counts_as_sent() -> None:
    client = RecordingClient(quit_fails=True)

    sender_with(client).send(REPLY, sender="a@b.example", recipient="c@d.example")

    assert client.sent == [("a@b.example", ["c@d.example"], REPLY, [])]
    assert client.closed


def test_a_non_ascii_recipient_is_sent_with_smtputf8_where_offered() -> None:
    client = RecordingClient(extensions=("smtputf8",))

    sender_with(client).send(REPLY, sender="a@b.example", recipient="jdöe@d.example")

    assert client.sent == [("a@b.example", ["jdöe@d.example"], REPLY, ["SMTPUTF8", "BODY=8BITMIME"])]


def test_a_non_ascii_recipient_without_smtputf8_is_the_messages_problem() -> None:
    client = RecordingClient()

    with pytest.raises(UndeliverableReply, match="SMTPUTF8"):
        sender_with(client).send(REPLY, sender="a@b.example", recipient="jdöe@d.example")
    assert client.sent == []


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (smtplib.SMTPDataError(451, b"4.3.0 try later"), TransientError),
        (smtplib.SMTPDataError(552, b"5.3.4 too big"), UndeliverableReply),
        (smtplib.SMTPRecipientsRefused({"c@d.example": (550, b"no such user")}), UndeliverableReply),
        (smtplib.SMTPRecipientsRefused({"c@d.example": (450, b"mailbox busy")}), TransientError),
        (smtplib.SMTPSenderRefused(553, b"not our sender", "a@b.example"), ChannelFailure),
        (smtplib.SMTPSenderRefused(451, b"try later", "a@b.example"), TransientError),
        (smtplib.SMTPAuthenticationError(535, b"bad credentials"), ChannelFailure),
        (smtplib.SMTPAuthenticationError(454, b"temporary auth failure"), TransientError),
        (smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server."), ChannelFailure),
        (smtplib.SMTPServerDisconnected("gone"), TransientError),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), ChannelFailure),
        (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), TransientError),
        (ConnectionRefusedError(111, "Connection refused"), TransientError),
    ],
)
def test_failures_are_sorted_by_whose_they_are(failure: Exception, expected: type[Exception]) -> None:
    with pytest.raises(expected):
        sender_with(RecordingClient(fail=failure)).send(REPLY, sender="a@b.example", recipient="c@d.example")


def test_a_refused_login_names_the_settings_to_fix() -> None:
    failure = smtplib.SMTPAuthenticationError(535, b"bad credentials")

    with pytest.raises(ChannelFailure) as raised:
        sender_with(RecordingClient(fail=failure)).send(REPLY, sender="a@b.example", recipient="c@d.example")

    assert raised.value.setting == "smtp_username, smtp_password_secret"


def test_password_is_not_in_the_account_repr() -> None:
    assert "secret" not in repr(SmtpAccount("smtp.example", 25, "starttls", "relay", "secret"))
