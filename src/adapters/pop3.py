"""POP3 mailbox over ``poplib``: TLS (verified), STLS (verified) or plain; messages are streamed.

The login is ``USER``/``PASS``, or ``AUTH XOAUTH2`` with an OAuth 2.0 bearer token (RFC 7628 framing
as Microsoft 365 and Google take it: ``AUTH XOAUTH2``, ``+``, the base64 initial response), never on
an unencrypted connection. A refused token that came from the cache is renewed once.

``TOP n 0`` and ``RETR n`` are read line by line into a sink, so a large message is never held in
memory and a line longer than poplib's 2 KiB limit (real mail has them) does not break the session.
Deletions commit only at ``QUIT``, which is sent whenever the session is still healthy.
"""

import base64
import binascii
import poplib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from adapters.network import tls_context, unknown_host
from adapters.oauth import AccessToken, TokenSource, xoauth2
from domain.bounds import MAX_SCREENED_HEADER_BYTES
from domain.errors import ChannelFailure, ConnectionLost, TransientError
from service.ports import MessageRef

MAX_LINE = 64 * 1024
TLS_SETTINGS = "pop3_security, pop3_port (or the server's certificate)"
LOGIN_SETTINGS = "pop3_username, pop3_password_secret"
OAUTH_SETTINGS = "pop3_username, oauth_client_id, oauth_secret (and the app's permission for the mailbox)"
WriteBytes = Callable[[bytes], object]


@dataclass(frozen=True)
class Pop3Account:
    host: str
    port: int
    security: Literal["tls", "starttls", "none"]
    username: str
    password: str | None = field(default=None, repr=False)
    tokens: TokenSource | None = None  # set: log in with AUTH XOAUTH2 instead of the password
    timeout: float = 30.0


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

    def _connect(self) -> poplib.POP3:
        account = self._account
        where = f"{account.host}:{account.port}"
        try:
            if account.security == "tls":
                client: poplib.POP3 = poplib.POP3_SSL(
                    account.host, account.port, timeout=account.timeout, context=tls_context()
                )
            else:
                client = poplib.POP3(account.host, account.port, timeout=account.timeout)
        except poplib.error_proto as error:
            raise TransientError(f"POP3 server {where} closed the connection: {_text(error)}") from error
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
            client.stls(context=tls_context())
        except poplib.error_proto as error:
            _close_quietly(client)
            if _closed(error):
                raise TransientError(f"POP3 server {where} closed the connection: {_text(error)}") from error
            raise ChannelFailure(
                f"POP3 server {where} refused STLS: {_text(error)}", setting="pop3_security"
            ) from error
        except ssl.SSLEOFError as error:
            _close_quietly(client)
            raise TransientError(f"POP3 server {where} closed the connection during TLS: {error}") from error
        except ssl.SSLError as error:
            _close_quietly(client)
            raise ChannelFailure(f"POP3 server {where}: TLS failed: {error}", setting=TLS_SETTINGS) from error
        except OSError as error:
            _close_quietly(client)
            raise TransientError(f"POP3 server {where} dropped the connection: {error}") from error

    def _login(self, client: poplib.POP3, where: str) -> poplib.POP3:
        account = self._account
        if account.tokens is not None:
            return self._login_with_token(client, where, account.tokens)
        try:
            client.user(account.username)
            client.pass_(account.password or "")
        except poplib.error_proto as error:
            _close_quietly(client)
            raise self._refused(_text(error), where, _closed(error), LOGIN_SETTINGS) from error
        except OSError as error:
            _close_quietly(client)
            raise TransientError(f"POP3 server {where} dropped the login: {error}") from error
        return client

    def _refused(self, reply: str, where: str, closed: bool, settings: str) -> Exception:
        user = self._account.username
        if "[IN-USE]" in reply or "[SYS/TEMP]" in reply or closed:
            return TransientError(f"POP3 mailbox {user} at {where} is busy: {reply}")
        return ChannelFailure(f"POP3 login of {user} at {where} failed: {reply}", setting=settings)

    def _login_with_token(self, client: poplib.POP3, where: str, tokens: TokenSource) -> poplib.POP3:
        """``AUTH XOAUTH2``; a cached token the server refuses (expired, revoked) is renewed once."""
        if self._account.security == "none":  # the channel model refuses this already
            _close_quietly(client)
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
            _close_quietly(client)
            raise TransientError(f"POP3 server {where} broke off the login: {_text(error)}") from error
        except OSError as error:
            _close_quietly(client)
            raise TransientError(f"POP3 server {where} dropped the login: {error}") from error
        except BaseException:
            _close_quietly(client)
            raise
        if refusal is not None:
            _close_quietly(client)
            raise self._refused(refusal, where, refusal == "-ERR EOF", OAUTH_SETTINGS)
        return client

    def _xoauth2(self, client: poplib.POP3, where: str, token: AccessToken) -> str | None:
        """One ``AUTH XOAUTH2`` exchange: ``None`` when logged in, else the server's refusal."""
        proto: Any = client  # poplib has no AUTH; these are its own line helpers
        proto._putcmd("AUTH XOAUTH2")
        ready = _line(proto)
        if not ready.startswith("+") or ready.startswith("+OK"):
            if "[SYS/TEMP]" in ready or "[IN-USE]" in ready:
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


class Pop3Session:
    """One logged-in session; implements ``service.ports.MailboxSession``."""

    def __init__(self, client: poplib.POP3) -> None:
        self._client = client
        self._healthy = True

    def messages(self) -> list[MessageRef]:
        """``STAT`` first: an empty mailbox (the common case) answers in one round trip."""
        count: list[int] = []
        self._command(lambda: count.append(self._client.stat()[0]))
        if not count[0]:
            return []
        sizes = self._listing("LIST")
        uids = self._listing("UIDL")
        return [
            MessageRef(number=n, size=int(size), uid=uids.get(n, "")) for n, size in sorted(sizes.items())
        ]

    def headers(self, number: int) -> bytes:
        """The header block, at most ``MAX_SCREENED_HEADER_BYTES`` of it (the rest is read, dropped)."""
        lines: list[bytes] = []
        kept = 0

        def keep(line: bytes) -> None:
            nonlocal kept
            if kept < MAX_SCREENED_HEADER_BYTES:
                lines.append(line[: MAX_SCREENED_HEADER_BYTES - kept])
                kept += len(lines[-1])

        self._multiline(f"TOP {number} 0", keep)
        return b"".join(lines)

    def retrieve(self, number: int, sink: BinaryIO) -> None:
        self._multiline(f"RETR {number}", sink.write)

    def delete(self, number: int) -> None:
        self._command(lambda: self._client.dele(number))

    def close(self, *, commit: bool) -> None:
        """``QUIT`` (commits deletions) when healthy and asked to; otherwise just drop the line."""
        if commit and self._healthy:
            try:
                self._client.quit()
            except (poplib.error_proto, OSError) as error:
                raise ConnectionLost(f"POP3 QUIT failed, deletions may not be committed: {error}") from error
            return
        _close_quietly(self._client)

    def _listing(self, command: str) -> dict[int, str]:
        lines: list[bytes] = []
        self._multiline(command, lines.append)
        entries: dict[int, str] = {}
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit():
                entries[int(parts[0])] = parts[1].decode("ascii", "replace")
        return entries

    def _multiline(self, command: str, write: WriteBytes) -> None:
        """Send ``command``; pass each line of the answer to ``write``, un-dot-stuffed, as sent."""

        def run() -> None:
            client: Any = self._client  # poplib has no streaming API; these two are its own helpers
            client._putcmd(command)
            client._getresp()
            at_line_start = True
            while True:
                chunk = self._client.file.readline(MAX_LINE)
                if not chunk:
                    raise EOFError("connection closed in the middle of a message")
                complete = chunk.endswith(b"\n")
                if at_line_start and complete and chunk.rstrip(b"\r\n") == b".":
                    return
                if at_line_start and chunk.startswith(b".."):
                    chunk = chunk[1:]
                write(chunk)
                at_line_start = complete

        self._command(run)

    def _command(self, run: Callable[[], object]) -> None:
        try:
            run()
        except poplib.error_proto as error:
            if _closed(error):
                self._healthy = False
                raise ConnectionLost(f"POP3 connection lost: {_text(error)}") from error
            raise TransientError(f"POP3 server refused: {_text(error)}") from error
        except (OSError, EOFError) as error:
            self._healthy = False
            raise ConnectionLost(f"POP3 connection lost: {error}") from error


def _closed(error: poplib.error_proto) -> bool:
    """poplib reports a connection closed by the server as the reply ``-ERR EOF``."""
    return _text(error) == "-ERR EOF"


def _text(error: poplib.error_proto) -> str:
    reply = error.args[0] if error.args else error
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _line(proto: Any) -> str:
    line, _ = proto._getline()
    return bytes(line).decode("utf-8", "replace")


def _challenge(reply: str) -> str:
    """The server's XOAUTH2 error challenge, decoded (JSON such as ``{"status":"401",...}``)."""
    try:
        return base64.b64decode(reply[1:].strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return reply[1:].strip()


def _close_quietly(client: poplib.POP3) -> None:
    with suppress(OSError):
        client.close()
