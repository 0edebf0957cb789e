"""The SMTP adapter's sorting of failures (DESIGN §6), with a recording stand-in for smtplib."""

import base64
import smtplib
import socket
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from adapters.oauth import AccessToken
from adapters.smtp import SizeOffer, SmtpAccount, SmtpReplySender
from domain.errors import ChannelFailure, ReplyTooLarge, TransientError, UndeliverableReply

REPLY = b"Subject: Re: x\r\n\r\nbody\r\n"


class RecordingClient:
    def __init__(
        self,
        *,
        fail: Exception | None = None,
        quit_fails: bool = False,
        extensions: tuple[str, ...] = (),
        size: str | None = None,
    ) -> None:
        self.fail = fail
        self.quit_fails = quit_fails
        self.extensions = extensions + (("size",) if size is not None else ())
        self.esmtp_features = {"size": size} if size is not None else {}
        self.sent: list[tuple[str, list[str], bytes, list[str]]] = []
        self.closed = False
        self.dropped = False
        self.quits = 0

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

    def noop(self) -> tuple[int, bytes]:
        if self.dropped:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return 250, b"OK"

    def quit(self) -> None:
        self.quits += 1
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
    sender = sender_with(client)

    sender.send(REPLY, sender="a@b.example", recipient="c@d.example")
    sender.close()

    assert client.sent == [("a@b.example", ["c@d.example"], REPLY, [])]
    assert client.closed


def connecting(*clients: RecordingClient) -> tuple[SmtpReplySender, list[RecordingClient]]:
    """A sender whose connections are ``clients``, in turn; the list says which were opened."""
    opened: list[RecordingClient] = []
    waiting = list(clients)
    sender = SmtpReplySender(SmtpAccount("smtp.example", 25, "starttls", "relay", "secret"))

    def connect() -> RecordingClient:
        opened.append(waiting.pop(0))
        return opened[-1]

    sender._connect = connect  # type: ignore[assignment,method-assign]
    return sender, opened


def test_the_replies_of_one_poll_share_one_connection_until_close() -> None:
    first, spare = RecordingClient(), RecordingClient()
    sender, opened = connecting(first, spare)

    sender.send(REPLY, sender="a@b.example", recipient="c@d.example")
    sender.send(REPLY, sender="a@b.example", recipient="e@f.example")
    sender.close()
    sender.close()

    assert opened == [first]
    assert [to for _, to, _, _ in first.sent] == [["c@d.example"], ["e@f.example"]]
    assert first.quits == 1


def test_a_connection_the_server_dropped_meanwhile_is_replaced() -> None:
    first, second = RecordingClient(), RecordingClient()
    sender, opened = connecting(first, second)
    sender.send(REPLY, sender="a@b.example", recipient="c@d.example")
    first.dropped = True  # an idle timeout of the server

    sender.send(REPLY, sender="a@b.example", recipient="e@f.example")

    assert opened == [first, second]
    assert second.sent[0][1] == ["e@f.example"]


def test_after_a_failed_reply_the_next_one_starts_a_new_connection() -> None:
    refusing, second = RecordingClient(fail=smtplib.SMTPDataError(451, b"try later")), RecordingClient()
    sender, opened = connecting(refusing, second)

    with pytest.raises(TransientError):
        sender.send(REPLY, sender="a@b.example", recipient="c@d.example")
    sender.send(REPLY, sender="a@b.example", recipient="e@f.example")

    assert opened == [refusing, second]
    assert refusing.quits == 1


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
        (smtplib.SMTPDataError(552, b"5.3.4 too big"), ReplyTooLarge),
        (smtplib.SMTPDataError(554, b"5.7.1 rejected as spam"), UndeliverableReply),
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


def test_a_reply_over_the_offered_size_is_refused_before_anything_is_sent() -> None:
    client, spare = RecordingClient(size="100"), RecordingClient()
    sender, opened = connecting(client, spare)
    large = REPLY + b"x" * (101 - len(REPLY))

    with pytest.raises(ReplyTooLarge) as raised:
        sender.send(large, sender="a@b.example", recipient="c@d.example")
    sender.send(REPLY, sender="a@b.example", recipient="c@d.example")  # the notice, say

    assert (raised.value.size, raised.value.limit) == (101, 100)
    assert "at most 100 bytes (SIZE)" in str(raised.value)
    assert [msg for _, _, msg, _ in client.sent] == [REPLY]
    assert opened == [client]  # nothing went wrong with the connection


@pytest.mark.parametrize("size", ["0", ""])
def test_a_size_offered_without_a_limit_is_no_limit(size: str) -> None:
    client = RecordingClient(size=size)

    sender_with(client).send(REPLY * 100, sender="a@b.example", recipient="c@d.example")

    assert len(client.sent) == 1


@given(st.one_of(st.text(max_size=30), st.integers(min_value=-5, max_value=10**12).map(str)))
@example("²")  # a digit to str.isdigit, not to int()
@example(" 0012 ")
def test_whatever_a_server_offers_as_size_is_read_without_raising(value: str) -> None:
    offer = SizeOffer.of(RecordingClient(size=value))  # type: ignore[arg-type]

    assert offer.offered
    if offer.limit is not None:
        assert offer.limit > 0
        assert str(offer.limit) == value.strip().lstrip("0")


@pytest.mark.parametrize(
    ("size", "failure"),
    [
        (
            "1000000",
            smtplib.SMTPSenderRefused(552, b"5.3.4 message size exceeds fixed maximum", "a@b.example"),
        ),
        ("", smtplib.SMTPSenderRefused(552, b"5.3.4 message size exceeds fixed maximum", "a@b.example")),
        ("1000000", smtplib.SMTPDataError(552, b"5.3.4 Too much mail data")),
        (None, smtplib.SMTPDataError(552, b"5.3.4 Too much mail data")),
    ],
)
def test_a_552_to_mail_from_with_size_or_after_data_is_a_reply_too_large(
    size: str | None, failure: Exception
) -> None:
    with pytest.raises(ReplyTooLarge) as raised:
        sender_with(RecordingClient(size=size, fail=failure)).send(
            REPLY, sender="a@b.example", recipient="c@d.example"
        )

    assert (raised.value.size, raised.value.limit) == (len(REPLY), None)  # the offered limit was kept
    assert "refused the reply of 24 bytes to c@d.example as too large: 552 5.3.4" in str(raised.value)


def test_a_552_to_mail_from_without_size_offered_is_still_the_sender_address() -> None:
    failure = smtplib.SMTPSenderRefused(552, b"5.7.1 sender not allowed", "a@b.example")

    with pytest.raises(ChannelFailure) as raised:
        sender_with(RecordingClient(fail=failure)).send(REPLY, sender="a@b.example", recipient="c@d.example")

    assert raised.value.setting == "sender_address"


def test_a_refused_login_names_the_settings_to_fix() -> None:
    failure = smtplib.SMTPAuthenticationError(535, b"bad credentials")

    with pytest.raises(ChannelFailure) as raised:
        sender_with(RecordingClient(fail=failure)).send(REPLY, sender="a@b.example", recipient="c@d.example")

    assert raised.value.setting == "smtp_username, smtp_password_secret"


def test_password_is_not_in_the_account_repr() -> None:
    assert "secret" not in repr(SmtpAccount("smtp.example", 25, "starttls", "relay", "secret"))


# ------------------------------------------------------------- AUTH XOAUTH2 (issue 12)


class XoauthRelay(smtplib.SMTP):
    """smtplib's own ``auth()`` against a relay that accepts the bearer tokens in ``valid``; a refusal
    is the XOAUTH2 error challenge, the client's empty answer, then 535 (RFC 7628 §3.2.3)."""

    def __init__(self, valid: set[str], offered: str = "PLAIN LOGIN XOAUTH2") -> None:
        super().__init__()
        self.valid = valid
        self.esmtp_features = {"auth": offered} if offered else {}
        self.presented: list[str] = []
        self.sent: list[tuple[str, list[str]]] = []
        self._refusing = False

    def ehlo_or_helo_if_needed(self) -> None:
        """EHLO was answered."""

    def docmd(self, cmd: str, args: str = "") -> tuple[int, bytes]:
        if self._refusing:
            self._refusing = False
            assert (cmd, args) == ("", "")
            return 535, b"5.7.3 Authentication unsuccessful"
        mechanism, response = args.split()
        assert (cmd, mechanism) == ("AUTH", "XOAUTH2")
        user, auth, *_ = base64.b64decode(response).decode().split("\x01")
        token = auth.removeprefix("auth=Bearer ")
        self.presented.append(token)
        if user == "user=box@contoso.example" and token in self.valid:
            return 235, b"2.7.0 Authentication successful"
        self._refusing = True
        return 334, base64.b64encode(b'{"status":"401","schemes":"bearer"}')

    def sendmail(
        self,
        from_addr: str,
        to_addrs: str | Sequence[str],
        msg: Any,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        self.sent.append((from_addr, [to_addrs] if isinstance(to_addrs, str) else list(to_addrs)))
        return {}

    def quit(self) -> tuple[int, bytes]:
        return 221, b"bye"


class Tokens:
    """A token source: first a cached token, after ``forget`` a fresh one."""

    def __init__(self, *tokens: AccessToken) -> None:
        self.tokens = list(tokens)
        self.forgotten: list[str] = []

    def token(self) -> AccessToken:
        return self.tokens[0]

    def forget(self, token: AccessToken) -> None:
        self.forgotten.append(token.value)
        self.tokens.pop(0)


def oauth_sender(relay: XoauthRelay, tokens: Tokens) -> SmtpReplySender:
    account = SmtpAccount("smtp.office365.example", 587, "starttls", "box@contoso.example", tokens=tokens)
    sender = SmtpReplySender(account)
    sender._connect = lambda: relay  # type: ignore[method-assign]
    return sender


def test_a_reply_is_sent_after_auth_xoauth2() -> None:
    relay = XoauthRelay({"fresh"})

    oauth_sender(relay, Tokens(AccessToken("fresh", cached=False))).send(
        REPLY, sender="a@b.example", recipient="c@d.example"
    )

    assert (relay.presented, relay.sent) == (["fresh"], [("a@b.example", ["c@d.example"])])


def test_a_refused_cached_token_is_renewed_once_in_the_same_session() -> None:
    relay = XoauthRelay({"new"})
    tokens = Tokens(AccessToken("old", cached=True), AccessToken("new", cached=False))

    oauth_sender(relay, tokens).send(REPLY, sender="a@b.example", recipient="c@d.example")

    assert (relay.presented, tokens.forgotten, len(relay.sent)) == (["old", "new"], ["old"], 1)


def test_a_refused_fresh_token_is_the_channels_failure_with_the_servers_answer() -> None:
    relay = XoauthRelay(set())

    with pytest.raises(ChannelFailure) as caught:
        oauth_sender(relay, Tokens(AccessToken("fresh", cached=False))).send(
            REPLY, sender="a@b.example", recipient="c@d.example"
        )

    assert relay.presented == ["fresh"]  # not renewed: a new token would be refused alike
    assert caught.value.setting.startswith("smtp_username, oauth_client_id, oauth_secret")
    assert "535" in str(caught.value)
    assert '"status":"401"' in str(caught.value)
    assert "fresh" not in str(caught.value)
    assert relay.sent == []


def test_a_relay_without_xoauth2_is_the_channels_failure() -> None:
    relay = XoauthRelay({"fresh"}, offered="PLAIN LOGIN")

    with pytest.raises(ChannelFailure, match="does not offer AUTH XOAUTH2") as caught:
        oauth_sender(relay, Tokens(AccessToken("fresh", cached=False))).send(
            REPLY, sender="a@b.example", recipient="c@d.example"
        )

    assert caught.value.setting == "smtp_login, smtp_security, smtp_host"
    assert relay.presented == []


def test_a_token_is_never_sent_without_tls() -> None:
    relay = XoauthRelay({"fresh"})
    account = SmtpAccount(
        "smtp.example", 25, "none", "box@contoso.example", tokens=Tokens(AccessToken("fresh", cached=False))
    )
    sender = SmtpReplySender(account)
    sender._connect = lambda: relay  # type: ignore[method-assign]

    with pytest.raises(ChannelFailure, match="never sent over an unencrypted connection"):
        sender.send(REPLY, sender="a@b.example", recipient="c@d.example")
    assert relay.presented == []
