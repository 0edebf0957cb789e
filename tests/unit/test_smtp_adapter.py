"""The SMTP adapter's sorting of failures (DESIGN §6), with a recording stand-in for smtplib."""

import base64
import smtplib
import socket
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from adapters.oauth import AccessToken
from adapters.smtp import IDLE_SECONDS, SizeOffer, SmtpAccount, SmtpReplySender
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
        self.noops = 0
        self.lost_at_data = False  # the connection breaks after MAIL and RCPT were answered

    def login(self, user: str, password: str) -> None:
        if isinstance(self.fail, smtplib.SMTPAuthenticationError | smtplib.SMTPNotSupportedError):
            raise self.fail

    def ehlo_or_helo_if_needed(self) -> None:
        """EHLO was answered; ``extensions`` are what it offered."""

    def has_extn(self, name: str) -> bool:
        return name.lower() in self.extensions

    does_esmtp = True

    def _failing(self) -> Exception | None:
        if isinstance(self.fail, smtplib.SMTPAuthenticationError | smtplib.SMTPNotSupportedError):
            return None
        return self.fail

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        """The failure ``fail`` as the command that answers it would give it (as ``sendmail`` raises
        it); any other exception is raised by MAIL, as a connection that is gone raises it."""
        if self.dropped:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        fail = self._failing()
        self._mail = (sender, [o for o in options if not o.startswith("size=")])
        if isinstance(fail, smtplib.SMTPSenderRefused):
            return fail.smtp_code, fail.smtp_error
        if fail is not None and not isinstance(fail, smtplib.SMTPRecipientsRefused | smtplib.SMTPDataError):
            raise fail
        return 250, b"OK"

    def rcpt(self, recipient: str) -> tuple[int, bytes]:
        self._rcpt = recipient
        if isinstance(self.fail, smtplib.SMTPRecipientsRefused):
            return next(iter(self.fail.recipients.values()))
        return 250, b"OK"

    def data(self, msg: bytes) -> tuple[int, bytes | str]:
        if self.lost_at_data:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        if isinstance(self.fail, smtplib.SMTPDataError):
            return self.fail.smtp_code, self.fail.smtp_error
        sender, options = self._mail
        self.sent.append((sender, [self._rcpt], msg, options))
        return 250, b"OK"

    def noop(self) -> tuple[int, bytes]:
        self.noops += 1
        if self.dropped:
            raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")
        return 250, b"OK"

    def send(self, data: bytes) -> None:
        """Only QUIT is sent so (the transaction goes through ``mail``, ``rcpt``, ``data``)."""
        assert data == b"QUIT\r\n"
        self.quits += 1
        if self.quit_fails:
            raise smtplib.SMTPServerDisconnected("Server not connected")

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


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_connection_used_moments_ago_takes_the_next_reply_without_noop() -> None:
    first = RecordingClient()
    sender, opened = connecting(first)
    clock = Clock()
    sender._clock = clock

    for recipient in ("c@d.example", "e@f.example", "g@h.example"):
        sender.send(REPLY, sender="a@b.example", recipient=recipient)
        clock.now += IDLE_SECONDS - 1

    assert (opened, first.noops, len(first.sent)) == ([first], 0, 3)


def test_a_connection_idle_for_longer_is_asked_noop_and_replaced_when_it_does_not_answer() -> None:
    first, second = RecordingClient(), RecordingClient()
    sender, opened = connecting(first, second)
    clock = Clock()
    sender._clock = clock
    sender.send(REPLY, sender="a@b.example", recipient="c@d.example")
    clock.now += IDLE_SECONDS
    sender.send(REPLY, sender="a@b.example", recipient="e@f.example")  # NOOP answered: kept
    first.dropped = True
    clock.now += IDLE_SECONDS

    sender.send(REPLY, sender="a@b.example", recipient="g@h.example")

    assert (first.noops, opened) == (2, [first, second])
    assert [to for _, to, _, _ in second.sent] == [["g@h.example"]]


def test_a_new_connection_gone_before_mail_is_answered_is_not_tried_again() -> None:
    first, spare = RecordingClient(), RecordingClient()
    first.dropped = True
    sender, opened = connecting(first, spare)

    with pytest.raises(TransientError, match="unexpectedly closed"):
        sender.send(REPLY, sender="a@b.example", recipient="c@d.example")

    assert opened == [first]


def test_a_connection_lost_after_mail_was_answered_is_never_tried_again_in_the_same_send() -> None:
    first = RecordingClient()
    second = RecordingClient()
    second.lost_at_data = True
    sender, opened = connecting(first, second, RecordingClient())
    sender.send(REPLY, sender="a@b.example", recipient="c@d.example")
    first.dropped = True  # the kept connection is gone: replaced once, by second

    with pytest.raises(TransientError):  # the reply may have been taken: the next poll decides
        sender.send(REPLY, sender="a@b.example", recipient="e@f.example")

    assert len(opened) == 2


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

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        self._sender = sender
        return 250, b"OK"

    def rcpt(self, recip: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        self.sent.append((self._sender, [recip]))
        return 250, b"OK"

    def data(self, msg: Any) -> tuple[int, bytes]:
        return 250, b"OK"

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


# ------------------------------------------------------------- PIPELINING (issue 21)


class PipeliningRelay(smtplib.SMTP):
    """smtplib's own client against a relay that offers PIPELINING: every write is recorded, the
    answers are ``answers`` in order (then 250)."""

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        super().__init__()
        self.does_esmtp = True
        self.esmtp_features = {"pipelining": "", "size": "1000000"}
        self.writes: list[bytes] = []
        self.answers = list(answers)

    def ehlo_or_helo_if_needed(self) -> None:
        """EHLO was answered."""

    def send(self, s: Any) -> None:
        self.writes.append(s.encode() if isinstance(s, str) else s)

    def getreply(self) -> tuple[int, bytes]:
        return self.answers.pop(0) if self.answers else (250, b"OK")

    def quit(self) -> tuple[int, bytes]:
        return 221, b"bye"


def pipelining_sender(relay: PipeliningRelay) -> SmtpReplySender:
    sender = SmtpReplySender(SmtpAccount("smtp.example", 587, "starttls"))
    sender._connect = lambda: relay  # type: ignore[method-assign]
    return sender


def test_where_pipelining_is_offered_mail_rcpt_and_data_go_in_one_write() -> None:
    relay = PipeliningRelay((250, b"OK"), (250, b"OK"), (354, b"go ahead"), (250, b"queued"))
    data = b"Subject: x\r\n\r\n.hidden\r\nlast line"

    pipelining_sender(relay).send(data, sender="a@b.example", recipient="c@d.example")

    assert relay.writes == [
        f"MAIL FROM:<a@b.example> size={len(data)}\r\nRCPT TO:<c@d.example>\r\nDATA\r\n".encode(),
        b"Subject: x\r\n\r\n..hidden\r\nlast line\r\n.\r\n",
    ]


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([(451, b"4.3.0 try later")], TransientError),
        ([(553, b"5.7.1 not our sender")], ChannelFailure),
        ([(250, b"OK"), (550, b"5.1.1 no such user"), (503, b"no valid recipients")], UndeliverableReply),
        ([(250, b"OK"), (450, b"4.2.1 busy"), (503, b"no valid recipients")], TransientError),
        ([(250, b"OK"), (250, b"OK"), (554, b"5.5.1 no DATA now")], UndeliverableReply),
        ([(250, b"OK"), (250, b"OK"), (354, b"go ahead"), (552, b"5.3.4 too big")], ReplyTooLarge),
        ([(250, b"OK"), (250, b"OK"), (354, b"go ahead"), (451, b"4.3.0 later")], TransientError),
    ],
)
def test_a_pipelined_refusal_is_sorted_as_the_same_refusal_sent_one_by_one(
    answers: list[tuple[int, bytes]], expected: type[Exception]
) -> None:
    relay = PipeliningRelay(*answers)

    with pytest.raises(expected):
        pipelining_sender(relay).send(REPLY, sender="a@b.example", recipient="c@d.example")

    transaction = [write for write in relay.writes if write != b"QUIT\r\n"]  # then dropped
    assert len(transaction) == (2 if len(answers) == 4 else 1)  # the data only after a 354


# ------------------------------------------------------------- prepare (issue 21)


def test_a_prepared_connection_logs_in_on_its_own_thread_and_takes_the_first_reply() -> None:
    first, spare = RecordingClient(), RecordingClient()
    sender = SmtpReplySender(SmtpAccount("smtp.example", 25, "starttls", "relay", "secret"))
    opened: list[tuple[RecordingClient, str]] = []

    def connect() -> RecordingClient:
        opened.append(((first, spare)[len(opened)], threading.current_thread().name))
        return opened[-1][0]

    sender._connect = connect  # type: ignore[assignment,method-assign]

    sender.prepare()
    sender.prepare()  # one connection on its way is enough
    sender.send(REPLY, sender="a@b.example", recipient="c@d.example")
    sender.close()

    assert opened == [(first, "smtp-login")]
    assert (len(first.sent), first.quits) == (1, 1)


def test_a_login_refused_while_prepared_is_raised_by_the_send_sorted_as_its_own() -> None:
    client = RecordingClient(fail=smtplib.SMTPAuthenticationError(535, b"bad credentials"))
    sender = sender_with(client)

    sender.prepare()  # never raises
    with pytest.raises(ChannelFailure) as raised:
        sender.send(REPLY, sender="a@b.example", recipient="c@d.example")

    assert raised.value.setting == "smtp_username, smtp_password_secret"
    assert client.sent == []


def test_a_prepared_connection_no_reply_needed_is_closed_with_the_poll() -> None:
    client = RecordingClient()
    sender = sender_with(client)

    sender.prepare()
    sender.close()

    assert (client.quits, client.sent) == (1, [])


def test_a_prepared_connection_gone_before_mail_is_replaced_once() -> None:
    first, second = RecordingClient(), RecordingClient()
    first.dropped = True  # the relay dropped it while the message was processed
    sender, opened = connecting(first, second)

    sender.prepare()
    sender.send(REPLY, sender="a@b.example", recipient="c@d.example")

    assert opened == [first, second]
    assert len(second.sent) == 1
