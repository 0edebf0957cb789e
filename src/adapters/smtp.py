"""Replies over SMTP: STARTTLS (default), implicit TLS or plain, certificates verified, optional AUTH.

The stored reply is sent byte for byte (``sendmail``), so a retry sends exactly what the first try did.
Errors are sorted for DESIGN §6 (whose failure is it):

* a 4xx reply, a timeout or a dropped connection: ``TransientError`` (the message is tried again);
* a reply larger than the ``SIZE`` the server offered in ``EHLO`` (RFC 1870; checked before anything
  is sent), a 552 to ``MAIL FROM`` carrying ``SIZE=`` (``smtplib`` adds it wherever ``SIZE`` is
  offered) or a 552 after ``DATA``: ``ReplyTooLarge`` (that message's own problem; the partner is
  told so in a short notice);
* the recipient refused for good (5xx at RCPT or DATA), or a non-ASCII address and a server that
  does not offer SMTPUTF8: ``UndeliverableReply`` (that message's own problem);
* a refused login, AUTH or STARTTLS not offered, TLS failing, an unknown host, our sender address
  refused (any other 5xx at MAIL FROM): ``ChannelFailure`` naming the setting to fix.

The replies of one poll share one connection. It is used again without a ``NOOP`` while it was used
less than ``IDLE_SECONDS`` ago; a connection found gone before the server answered anything of a
reply (no answer to ``MAIL``, so nothing of the reply was taken) is replaced once, in the same send.
Where the server offers ``PIPELINING`` (RFC 2920), ``MAIL``, ``RCPT`` and ``DATA`` go in one write
(``transact``): a reply costs two round trips instead of four.

The login is ``AUTH PLAIN/LOGIN`` with the password, or ``AUTH XOAUTH2`` with an OAuth 2.0 bearer
token (``smtp_login: oauth2``, never on an unencrypted connection); a refused token that came from the
cache is renewed once, in the same session.
"""

import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Literal

from adapters.network import TlsContexts, unknown_host
from adapters.oauth import AccessToken, TokenSource, xoauth2
from domain.errors import ChannelFailure, LetterShopError, ReplyTooLarge, TransientError, UndeliverableReply


@dataclass(frozen=True)
class SmtpAccount:
    host: str
    port: int
    security: Literal["starttls", "tls", "none"]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tokens: TokenSource | None = None  # set: log in as username with AUTH XOAUTH2
    timeout: float = 30.0
    # The warm state's TLS contexts (default: a private one, made at the first connection).
    tls: TlsContexts = field(default_factory=TlsContexts, compare=False, repr=False)


LOGIN_SETTINGS = "smtp_username, smtp_password_secret"
OAUTH_SETTINGS = (
    "smtp_username, oauth_client_id, oauth_secret (and the app's permission to send as smtp_username)"
)
TLS_SETTINGS = "smtp_security, smtp_port (or the server's certificate)"
TOO_LARGE = 552  # RFC 1870 §6.1, RFC 5321 §4.2.3: message size exceeds fixed maximum message size
# A connection used less than this long ago is used again without asking NOOP first. Relays keep an
# idle connection for minutes (RFC 5321 §4.5.3.2.7: at least 5); one that dropped it sooner costs a
# reconnection, never a reply (``SmtpReplySender.send``).
IDLE_SECONDS = 30.0


@dataclass(frozen=True)
class SizeOffer:
    """What the server said of ``SIZE`` in ``EHLO`` (RFC 1870): whether it offers it (``smtplib``
    then sends ``SIZE=`` with ``MAIL FROM``), and its limit in bytes (None: no limit declared)."""

    offered: bool = False
    limit: int | None = None

    @classmethod
    def of(cls, client: smtplib.SMTP) -> "SizeOffer":
        if not client.has_extn("size"):
            return cls()
        value = str(client.esmtp_features.get("size") or "").strip()
        return cls(True, int(value) if value.isascii() and value.isdigit() and int(value) > 0 else None)


class SmtpReplySender:
    """Implements ``service.ports.ReplySender``. The replies of one poll share one logged-in
    connection (``close`` ends it at the end of the poll); it is checked with ``NOOP`` only when it
    has been idle ``IDLE_SECONDS`` or more, replaced once when it turns out to be gone before the
    server answered anything of a reply, and dropped after any other failure, so the next reply
    starts afresh and a failure stays with the reply it happened to."""

    def __init__(self, account: SmtpAccount, clock: Callable[[], float] = time.monotonic) -> None:
        self._account = account
        self._client: smtplib.SMTP | None = None
        self._clock = clock
        self._used = 0.0  # when the open connection last took a reply (``clock``)
        self._opening: Future[smtplib.SMTP] | None = None  # a login on its way (``prepare``)

    def prepare(self) -> None:
        """Open and log in the connection on a thread of its own, so that its round trips (TCP,
        TLS, EHLO, AUTH) pass while the message is downloaded, recorded and processed; the first
        ``send`` takes it, or raises what the login raised, sorted as its own would be. Nothing when
        a connection is open or on its way."""
        if self._client is not None or self._opening is not None:
            return
        where = f"SMTP server {self._account.host}:{self._account.port}"
        opening: Future[smtplib.SMTP] = Future()

        def run() -> None:
            try:
                opening.set_result(self._open(where))
            except BaseException as error:  # handed to the first send
                opening.set_exception(error)

        self._opening = opening
        threading.Thread(target=run, name="smtp-login", daemon=True).start()

    def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        account = self._account
        where = f"SMTP server {account.host}:{account.port}"
        utf8 = not (sender + recipient).isascii()
        offer = SizeOffer()
        try:
            while True:
                client, fresh = self._session(where)
                if utf8 and not client.has_extn("smtputf8"):
                    raise UndeliverableReply(
                        f"{where} does not offer SMTPUTF8, which the address {recipient} needs"
                    )
                offer = SizeOffer.of(client)
                if offer.limit is not None and len(data) > offer.limit:
                    raise ReplyTooLarge(
                        f"{where} takes messages of at most {offer.limit} bytes (SIZE); "
                        f"the reply to {recipient} has {len(data)}",
                        size=len(data),
                        limit=offer.limit,
                    )
                options = ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else []
                try:
                    transact(client, sender, recipient, data, options)
                except Unanswered as gone:
                    self.close()
                    if fresh:
                        raise gone.error from None
                    continue  # the kept connection was gone: once more on a new one
                except BaseException:
                    self.close()
                    raise
                self._used = self._clock()
                return
        except (smtplib.SMTPException, OSError) as error:
            raise classified(
                error, where, account, sender=sender, recipient=recipient, size=len(data), offer=offer
            ) from error

    def close(self) -> None:
        """End the connection, if one is open or on its way (``QUIT``)."""
        opening, self._opening = self._opening, None
        if opening is not None and opening.exception() is None:
            _quit(opening.result())
        client, self._client = self._client, None
        if client is not None:
            _quit(client)

    def _session(self, where: str) -> tuple[smtplib.SMTP, bool]:
        """The open connection (and False), asked ``NOOP`` first only when it has been idle
        ``IDLE_SECONDS`` or more; else a new one, logged in (and True)."""
        opening, self._opening = self._opening, None
        if opening is not None:  # ``prepare``d: its connection (a gone one is replaced once, as a
            self._client = opening.result()  # kept one), or what its login raised
            return self._client, False
        if self._client is not None:
            if self._clock() - self._used < IDLE_SECONDS:
                return self._client, False
            try:
                if self._client.noop()[0] == 250:
                    return self._client, False
            except (smtplib.SMTPException, OSError):
                pass
            self.close()
        self._client = self._open(where)
        return self._client, True

    def _open(self, where: str) -> smtplib.SMTP:
        """A new connection, logged in."""
        client = self._connect()
        try:
            self._login(client, where)
            client.ehlo_or_helo_if_needed()
        except BaseException:
            _quit(client)
            raise
        return client

    def _login(self, client: smtplib.SMTP, where: str) -> None:
        account = self._account
        if account.username is not None and account.tokens is not None:
            if account.security == "none":  # the channel model refuses this already
                raise ChannelFailure(
                    "an OAuth token is never sent over an unencrypted connection", setting="smtp_security"
                )
            login_with_token(client, where, account.username, account.tokens)
        elif account.username is not None and account.password is not None:
            client.login(account.username, account.password)

    def _connect(self) -> smtplib.SMTP:
        account = self._account
        context = account.tls.context()
        if account.security == "tls":
            return smtplib.SMTP_SSL(account.host, account.port, timeout=account.timeout, context=context)
        client = smtplib.SMTP(account.host, account.port, timeout=account.timeout)
        if account.security == "starttls":
            try:
                client.starttls(context=context)
            except BaseException:
                client.close()
                raise
        return client


class Unanswered(Exception):
    """The connection was gone before the server answered ``MAIL``: nothing of the reply was taken."""

    def __init__(self, error: smtplib.SMTPException | OSError) -> None:
        super().__init__(str(error))
        self.error = error


def transact(
    client: smtplib.SMTP, sender: str, recipient: str, data: bytes, options: Sequence[str] = ()
) -> None:
    """One mail transaction of ``data`` (sent byte for byte, dot-stuffed) to one recipient, raising
    what ``smtplib.SMTP.sendmail`` raises for each refusal (``classified`` sorts them). Where the
    server offers ``PIPELINING`` (RFC 2920), ``MAIL``, ``RCPT`` and ``DATA`` are sent in one write and
    their three answers read after it; then the data and its final answer: two round trips, where
    ``sendmail`` waits for each command (four). ``Unanswered`` when the connection is gone before the
    answer to ``MAIL``. Any failure leaves the connection unusable: the caller drops it."""
    client.ehlo_or_helo_if_needed()
    esmtp = [f"size={len(data)}"] if client.does_esmtp and client.has_extn("size") else []
    esmtp += options
    if client.does_esmtp and client.has_extn("pipelining"):
        _envelope_pipelined(client, sender, recipient, esmtp)
        client.send(_data_block(data))
        code, reply = client.getreply()
    else:
        try:
            code, reply = client.mail(sender, esmtp)
        except (smtplib.SMTPServerDisconnected, OSError) as error:
            raise Unanswered(error) from error
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, reply, sender)
        code, reply = client.rcpt(recipient)
        if code not in (250, 251):
            raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
        code, reply = client.data(data)
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)


def _envelope_pipelined(client: smtplib.SMTP, sender: str, recipient: str, esmtp: list[str]) -> None:
    """``MAIL``, ``RCPT`` and ``DATA`` in one write; their answers in order, the first refusal raised."""
    utf8 = any(option.lower() == "smtputf8" for option in esmtp)
    optionlist = "".join(f" {option}" for option in esmtp)
    lines = [
        f"MAIL FROM:{smtplib.quoteaddr(sender)}{optionlist}",
        f"RCPT TO:{smtplib.quoteaddr(recipient)}",
        "DATA",
    ]
    if any("\r" in line or "\n" in line for line in lines):
        raise ValueError("an SMTP command may not contain CR or LF")  # as smtplib's putcmd
    try:
        client.send("".join(f"{line}\r\n" for line in lines).encode("utf-8" if utf8 else "ascii"))
        code, reply = client.getreply()
    except (smtplib.SMTPServerDisconnected, OSError) as error:
        raise Unanswered(error) from error
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = client.getreply()
    if code not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    code, reply = client.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)


def _data_block(data: bytes) -> bytes:
    """The data as ``smtplib.SMTP.data`` sends bytes: lines starting with a dot doubled, CRLF, ``.``."""
    quoted = re.sub(rb"(?m)^\.", b"..", data)
    if not quoted.endswith(b"\r\n"):
        quoted += b"\r\n"
    return quoted + b".\r\n"


def login_with_token(client: smtplib.SMTP, where: str, username: str, tokens: TokenSource) -> None:
    """``AUTH XOAUTH2``; a cached token the server refuses (expired, revoked) is renewed once."""
    client.ehlo_or_helo_if_needed()
    offered = (client.esmtp_features.get("auth") or "").upper().split()
    if "XOAUTH2" not in offered:
        raise ChannelFailure(
            f"{where} does not offer AUTH XOAUTH2 (offered: {' '.join(offered) or 'no AUTH'})",
            setting="smtp_login, smtp_security, smtp_host",
        )
    token = tokens.token()
    try:
        _xoauth2(client, username, token)
    except smtplib.SMTPAuthenticationError:
        if not token.cached:
            raise
        tokens.forget(token)
        _xoauth2(client, username, tokens.token())


def _xoauth2(client: smtplib.SMTP, username: str, token: AccessToken) -> None:
    """One ``AUTH XOAUTH2`` (initial response inline); the server's error challenge is answered
    empty (RFC 7628 §3.2.3) and kept for the error message."""
    challenges: list[bytes] = []

    def respond(challenge: bytes | None = None) -> str:
        if challenge is None:
            return xoauth2(username, token)
        challenges.append(challenge)
        return ""

    try:
        client.auth("XOAUTH2", respond, initial_response_ok=True)
    except smtplib.SMTPAuthenticationError as error:
        if challenges:
            detail = b" ".join(challenges).decode("utf-8", "replace")
            raise smtplib.SMTPAuthenticationError(
                error.smtp_code, _decode(error.smtp_error) + " " + detail
            ) from None
        raise


def classified(  # noqa: PLR0911  # one return per kind of failure reads best
    error: smtplib.SMTPException | OSError,
    where: str,
    account: SmtpAccount,
    *,
    sender: str,
    recipient: str,
    size: int = 0,
    offer: SizeOffer = SizeOffer(),  # frozen: one shared default is safe
) -> LetterShopError:
    """Whose failure it is (see the module's docstring); ``size`` is the reply's, ``offer`` what the
    server said of ``SIZE``. A reply refused as too large had passed the check against the offered
    limit, so the limit the server applied is not known."""
    if isinstance(error, smtplib.SMTPResponseException) and 400 <= error.smtp_code < 500:
        return TransientError(f"{where} answered {_reply(error)}")
    if isinstance(error, smtplib.SMTPResponseException) and _too_large(error, offer):
        return ReplyTooLarge(
            f"{where} refused the reply of {size} bytes to {recipient} as too large: {_reply(error)}",
            size=size,
            limit=None,
        )
    if isinstance(error, smtplib.SMTPAuthenticationError):
        how = "the OAuth token for " if account.tokens is not None else "the login of "
        return ChannelFailure(
            f"{where} refused {how}{account.username}: {_reply(error)}",
            setting=OAUTH_SETTINGS if account.tokens is not None else LOGIN_SETTINGS,
        )
    if isinstance(error, smtplib.SMTPSenderRefused):
        return ChannelFailure(
            f"{where} refused the sender address {sender}: {_reply(error)}", setting="sender_address"
        )
    if isinstance(error, smtplib.SMTPResponseException):
        return UndeliverableReply(f"{where} refused the reply to {recipient}: {_reply(error)}")
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(error.recipients.values()))
        refused = f"{where} refused recipient {recipient}: {code} {_decode(text)}"
        return TransientError(refused) if 400 <= code < 500 else UndeliverableReply(refused)
    if isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return TransientError(f"{where} closed the connection during TLS: {error}")
    if isinstance(error, ssl.SSLError):
        return ChannelFailure(f"{where}: TLS failed: {error}", setting=TLS_SETTINGS)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return ChannelFailure(f"{where}: {error}", setting="smtp_security, smtp_auth")
    if isinstance(error, OSError) and unknown_host(error):
        return ChannelFailure(
            f"SMTP server {account.host} is not a known host name: {error}", setting="smtp_host"
        )
    return TransientError(f"{where} not usable: {error}")


def _too_large(error: smtplib.SMTPResponseException, offer: SizeOffer) -> bool:
    """552 after ``DATA``, or to a ``MAIL FROM`` that carried ``SIZE=``: the message is too large."""
    if isinstance(error, smtplib.SMTPDataError):
        return error.smtp_code == TOO_LARGE
    return isinstance(error, smtplib.SMTPSenderRefused) and error.smtp_code == TOO_LARGE and offer.offered


def _quit(client: smtplib.SMTP) -> None:
    """End the session: ``QUIT``, and the line dropped without waiting for the answer (once DATA was
    accepted, nothing QUIT answers changes anything; one round trip less for a poll that replied)."""
    with suppress(smtplib.SMTPException, OSError):
        client.send(b"QUIT\r\n")
    client.close()


def _reply(error: smtplib.SMTPResponseException) -> str:
    return f"{error.smtp_code} {_decode(error.smtp_error)}"


def _decode(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text
