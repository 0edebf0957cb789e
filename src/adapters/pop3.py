"""POP3 mailbox over ``poplib``: TLS (verified), STLS (verified) or plain; messages are streamed.

The login is ``USER``/``PASS``, or ``AUTH XOAUTH2`` with an OAuth 2.0 bearer token (RFC 7628 framing
as Microsoft 365 and Google take it: ``AUTH XOAUTH2``, ``+``, the base64 initial response), never on
an unencrypted connection. A refused token that came from the cache is renewed once.

``STLS`` (``pop3_security: starttls``) is sent unless the server's ``CAPA`` answers without it; a
server that does not answer ``CAPA`` at all (RFC 1939 only) is asked for ``STLS`` all the same, and
its refusal is a ``ChannelFailure`` naming ``pop3_security``. The session and the optional commands
the poll relies on (``UIDL``, ``TOP``) are in ``adapters.pop3_session``. Deletions commit only at
``QUIT``, which is sent whenever the session is still healthy.
"""

import base64
import binascii
import poplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from adapters.network import TlsContexts, unknown_host
from adapters.oauth import AccessToken, TokenSource, xoauth2
from adapters.pop3_session import (
    Pop3Probe,
    Pop3Session,
    capabilities_before_login,
    close_quietly,
    closed,
    offers,
    temporary,
    text,
)
from domain.errors import ChannelFailure, TransientError

TLS_SETTINGS = "pop3_security, pop3_port (or the server's certificate)"
LOGIN_SETTINGS = "pop3_username, pop3_password_secret"
OAUTH_SETTINGS = "pop3_username, oauth_client_id, oauth_secret (and the app's permission for the mailbox)"


@dataclass(frozen=True)
class Pop3Account:
    host: str
    port: int
    security: Literal["tls", "starttls", "none"]
    username: str
    password: str | None = field(default=None, repr=False)
    tokens: TokenSource | None = None  # set: log in with AUTH XOAUTH2 instead of the password
    timeout: float = 30.0
    # The warm state's TLS contexts (default: a private one, made at the first connection).
    tls: TlsContexts = field(default_factory=TlsContexts, compare=False, repr=False)


class Pop3Mailbox:
    """Implements ``service.ports.Mailbox`` for one account."""

    def __init__(self, account: Pop3Account) -> None:
        self._account = account

    @contextmanager
    def session(self) -> Iterator["Pop3Session"]:
        client = self._connect()
        session = Pop3Session(client)
        try:
            yield session
        except BaseException:
            session.close(commit=False)
            raise
        session.close(commit=True)

    def probe(self) -> Pop3Probe:
        """Log in, count the messages, find out which optional commands the server offers; the line
        is dropped without ``QUIT``, so nothing is committed (``channel check``)."""
        session = Pop3Session(self._connect())
        try:
            return session.probe()
        finally:
            session.close(commit=False)

    def _connect(self) -> poplib.POP3:
        account = self._account
        where = f"{account.host}:{account.port}"
        try:
            if account.security == "tls":
                client: poplib.POP3 = poplib.POP3_SSL(
                    account.host, account.port, timeout=account.timeout, context=account.tls.context()
                )
            else:
                client = poplib.POP3(account.host, account.port, timeout=account.timeout)
        except poplib.error_proto as error:
            raise TransientError(f"POP3 server {where} closed the connection: {text(error)}") from error
        except ssl.SSLEOFError as error:
            raise TransientError(f"POP3 server {where} closed the connection during TLS: {error}") from error
        except ssl.SSLError as error:
            raise ChannelFailure(f"POP3 server {where}: TLS failed: {error}", setting=TLS_SETTINGS) from error
        except OSError as error:
            if unknown_host(error):
                raise ChannelFailure(
                    f"POP3 server {account.host} is not a known host name: {error}", setting="pop3_host"
                ) from error
            raise TransientError(f"POP3 server {where} not reachable: {error}") from error
        if account.security == "starttls":
            self._start_tls(client, where)
        return self._login(client, where)

    def _start_tls(self, client: poplib.POP3, where: str) -> None:
        try:
            capabilities = capabilities_before_login(client)
            if capabilities is not None and not offers(capabilities, "STLS"):
                close_quietly(client)
                raise ChannelFailure(
                    f"POP3 server {where} does not offer STLS (its CAPA: {', '.join(capabilities)})",
                    setting="pop3_security",
                )
            proto: Any = client  # poplib's own stls() gives up when the server does not answer CAPA
            proto._shortcmd("STLS")
            client.sock = self._account.tls.context().wrap_socket(
                client.sock, server_hostname=self._account.host
            )
            client.file = client.sock.makefile("rb")
            proto._tls_established = True
        except poplib.error_proto as error:
            close_quietly(client)
            if closed(error):
                raise TransientError(f"POP3 server {where} closed the connection: {text(error)}") from error
            raise ChannelFailure(
                f"POP3 server {where} refused STLS: {text(error)}", setting="pop3_security"
            ) from error
        except ssl.SSLEOFError as error:
            close_quietly(client)
            raise TransientError(f"POP3 server {where} closed the connection during TLS: {error}") from error
        except ssl.SSLError as error:
            close_quietly(client)
            raise ChannelFailure(f"POP3 server {where}: TLS failed: {error}", setting=TLS_SETTINGS) from error
        except (OSError, EOFError) as error:
            close_quietly(client)
            raise TransientError(f"POP3 server {where} dropped the connection: {error}") from error

    def _login(self, client: poplib.POP3, where: str) -> poplib.POP3:
        account = self._account
        if account.tokens is not None:
            return self._login_with_token(client, where, account.tokens)
        try:
            client.user(account.username)
            client.pass_(account.password or "")
        except poplib.error_proto as error:
            close_quietly(client)
            raise self._refused(text(error), where, closed(error), LOGIN_SETTINGS) from error
        except OSError as error:
            close_quietly(client)
            raise TransientError(f"POP3 server {where} dropped the login: {error}") from error
        return client

    def _refused(self, reply: str, where: str, dropped: bool, settings: str) -> Exception:
        user = self._account.username
        if temporary(reply) or dropped:
            return TransientError(f"POP3 mailbox {user} at {where} is busy: {reply}")
        return ChannelFailure(f"POP3 login of {user} at {where} failed: {reply}", setting=settings)

    def _login_with_token(self, client: poplib.POP3, where: str, tokens: TokenSource) -> poplib.POP3:
        """``AUTH XOAUTH2``; a cached token the server refuses (expired, revoked) is renewed once."""
        if self._account.security == "none":  # the channel model refuses this already
            close_quietly(client)
            raise ChannelFailure(
                "an OAuth token is never sent over an unencrypted connection", setting="pop3_security"
            )
        try:
            token = tokens.token()
            refusal = self._xoauth2(client, where, token)
            if refusal is not None and token.cached:
                tokens.forget(token)
                token = tokens.token()
                refusal = self._xoauth2(client, where, token)
        except poplib.error_proto as error:
            close_quietly(client)
            raise TransientError(f"POP3 server {where} broke off the login: {text(error)}") from error
        except OSError as error:
            close_quietly(client)
            raise TransientError(f"POP3 server {where} dropped the login: {error}") from error
        except BaseException:
            close_quietly(client)
            raise
        if refusal is not None:
            close_quietly(client)
            raise self._refused(refusal, where, refusal == "-ERR EOF", OAUTH_SETTINGS)
        return client

    def _xoauth2(self, client: poplib.POP3, where: str, token: AccessToken) -> str | None:
        """One ``AUTH XOAUTH2`` exchange: ``None`` when logged in, else the server's refusal."""
        proto: Any = client  # poplib has no AUTH; these are its own line helpers
        proto._putcmd("AUTH XOAUTH2")
        ready = _line(proto)
        if not ready.startswith("+") or ready.startswith("+OK"):
            if temporary(ready):
                return ready
            raise ChannelFailure(
                f"POP3 server {where} does not take AUTH XOAUTH2: {ready}", setting="pop3_login, pop3_host"
            )
        proto._putcmd(base64.b64encode(xoauth2(self._account.username, token).encode()).decode("ascii"))
        reply = _line(proto)
        if reply.startswith("+OK"):
            return None
        if reply.startswith("+"):  # the error as a challenge (RFC 7628 §3.2.3): answer it empty
            detail = _challenge(reply)
            proto._putcmd("")
            reply = f"{_line(proto)} {detail}".strip()
        return reply


def _line(proto: Any) -> str:
    line, _ = proto._getline()
    return bytes(line).decode("utf-8", "replace")


def _challenge(reply: str) -> str:
    """The server's XOAUTH2 error challenge, decoded (JSON such as ``{"status":"401",...}``)."""
    try:
        return base64.b64decode(reply[1:].strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return reply[1:].strip()
