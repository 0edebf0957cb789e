"""POP3 mailbox over ``poplib``: TLS (verified), STLS (verified) or plain; messages are streamed.

``TOP n 0`` and ``RETR n`` are read line by line into a sink, so a large message is never held in
memory and a line longer than poplib's 2 KiB limit (real mail has them) does not break the session.
Deletions commit only at ``QUIT``, which is sent whenever the session is still healthy.
"""

import poplib
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from adapters.network import unknown_host
from domain.errors import ChannelFailure, ConnectionLost, TransientError
from service.ports import MessageRef

MAX_LINE = 64 * 1024
TLS_SETTINGS = "pop3_security, pop3_port (or the server's certificate)"
WriteBytes = Callable[[bytes], object]


@dataclass(frozen=True)
class Pop3Account:
    host: str
    port: int
    security: Literal["tls", "starttls", "none"]
    username: str
    password: str = field(repr=False)
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
                    account.host, account.port, timeout=account.timeout, context=ssl.create_default_context()
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
            client.stls(context=ssl.create_default_context())
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
        try:
            client.user(account.username)
            client.pass_(account.password)
        except poplib.error_proto as error:
            _close_quietly(client)
            reply = _text(error)
            if "[IN-USE]" in reply or "[SYS/TEMP]" in reply or _closed(error):
                raise TransientError(
                    f"POP3 mailbox {account.username} at {where} is busy: {reply}"
                ) from error
            raise ChannelFailure(
                f"POP3 login of {account.username} at {where} failed: {reply}",
                setting="pop3_username, pop3_password_secret",
            ) from error
        except OSError as error:
            _close_quietly(client)
            raise TransientError(f"POP3 server {where} dropped the login: {error}") from error
        return client


class Pop3Session:
    """One logged-in session; implements ``service.ports.MailboxSession``."""

    def __init__(self, client: poplib.POP3) -> None:
        self._client = client
        self._healthy = True

    def messages(self) -> list[MessageRef]:
        sizes = self._listing("LIST")
        uids = self._listing("UIDL")
        return [
            MessageRef(number=n, size=int(size), uid=uids.get(n, "")) for n, size in sorted(sizes.items())
        ]

    def headers(self, number: int) -> bytes:
        lines: list[bytes] = []
        self._multiline(f"TOP {number} 0", lines.append)
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


def _close_quietly(client: poplib.POP3) -> None:
    with suppress(OSError):
        client.close()
