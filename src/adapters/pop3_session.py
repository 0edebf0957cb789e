"""One logged-in POP3 session (``service.ports.MailboxSession``), and the optional commands it needs.

``TOP n 0`` and ``RETR n`` are read line by line into a sink, so a large message is never held in
memory and a line longer than poplib's 2 KiB limit (real mail has them) does not break the session.

The poll relies on two commands RFC 1939 makes optional: ``UIDL`` (a message's identity across
polls: the mailbox memory and the log keys) and ``TOP`` (screening a message by its headers before it
is downloaded; asked on shared accounts only: an exclusive account's messages are all LetterShop's,
screened after ``RETR``). ``CAPA`` (RFC 2449) is optional too; the poll works without it. A server that lacks
``UIDL`` or ``TOP`` stops the poll with a ``ChannelFailure`` naming what it lacks (``pop3_host``), so
the operator is told and no message is charged an attempt. Whether a refusal means "not offered":

* a refusal with ``[SYS/TEMP]`` or ``[IN-USE]`` (RFC 2449/3206) is the server's passing trouble:
  transient;
* else the server's ``CAPA`` decides (asked only then, so a healthy poll costs no extra round trip):
  listed, the refusal was about that message (``TOP``) or passing (``UIDL``): transient;
* a server without ``CAPA``: ``UIDL`` refused is not offered; ``TOP`` refused is not offered unless
  ``TOP`` of another message of the listing works (then only that message's headers were refused).

Where the server offers ``PIPELINING`` (RFC 2449; its ``CAPA`` is asked at the session's first
``DELE``), a ``DELE`` is not sent alone: it waits for the session's next command (the next message's
``TOP`` or ``RETR``, or ``QUIT``) and goes in the same write, one round trip for both. Deletions
commit only at ``QUIT`` either way, and a session that ends without it drops them alike. A ``DELE``
the server refuses (it does not, for a message of its listing) leaves the message for the next poll,
which finds it answered in the ledger and deletes it then. Likewise the headers of the message the
poll looks at next (``expect_headers``) are asked with ``TOP`` in the same write as this message's
``RETR``: on a shared account a message costs one round trip for ``RETR`` and the next ``TOP``.
"""

import poplib
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, BinaryIO

from domain.bounds import MAX_SCREENED_HEADER_BYTES
from domain.errors import ChannelFailure, ConnectionLost, LetterShopError, TransientError
from service.ports import MessageRef

MAX_LINE = 64 * 1024
OPTIONAL = {"UIDL": "to tell messages apart across polls", "TOP": "to screen a message before downloading it"}
WriteBytes = Callable[[bytes], object]


@dataclass(frozen=True)
class Pop3Probe:
    """What ``channel check`` learns of a mailbox: its size and the optional commands it offers."""

    messages: int
    capabilities: tuple[str, ...] | None  # the CAPA lines; None: the server does not answer CAPA
    uidl: bool
    top: bool | None  # None: no CAPA and no message to try it on


class Pop3Session:
    """One logged-in session; implements ``service.ports.MailboxSession``."""

    def __init__(self, client: poplib.POP3) -> None:
        self._client = client
        self._healthy = True
        self._numbers: list[int] = []
        self._capabilities: tuple[str, ...] | None = None
        self._asked_capa = False
        self._top_worked = False
        self._pending: list[int] = []  # DELEs that go with the next command (PIPELINING)
        self._deleting = False  # a DELE was asked for in this session: QUIT must commit it
        self.deletions_refused: list[str] = []  # the server's answers to DELEs sent with a command
        self._expected: int | None = None  # the message whose headers are asked next (``expect_headers``)
        self._fetched: dict[int, tuple[bytes, str | None]] = {}  # headers asked early, or the refusal

    def messages(self) -> list[MessageRef]:
        """``STAT`` first: an empty mailbox (the common case) answers in one round trip."""
        count: list[int] = []
        self._command(lambda: count.append(self._client.stat()[0]))
        if not count[0]:
            return []
        sizes = self._listing("LIST")
        uids = self._listing("UIDL")
        self._numbers = sorted(sizes)
        return [MessageRef(number=n, size=int(sizes[n]), uid=uids.get(n, "")) for n in self._numbers]

    def headers(self, number: int) -> bytes:
        """The header block, at most ``MAX_SCREENED_HEADER_BYTES`` of it (the rest is read, dropped);
        asked now, or taken from the answer that came with the last ``RETR`` (``expect_headers``)."""
        if number in self._fetched:
            block, refusal = self._fetched.pop(number)
        else:
            kept = _Kept()
            refusal = self._try(lambda: self._multiline(f"TOP {number} 0", kept.write))
            block = kept.block()
        if refusal is not None:
            raise self._refused("TOP", refusal, lambda: self._top_works_except(number))
        self._top_worked = True
        return block

    def expect_headers(self, number: int) -> None:
        """The poll asks for the headers of message ``number`` next (after this message's ``RETR``,
        if it has one): where the server offers ``PIPELINING``, they come in that ``RETR``'s write."""
        self._expected = number

    def retrieve(self, number: int, sink: BinaryIO) -> None:
        expected, self._expected = self._expected, None
        if expected is None or expected in self._fetched or not self._pipelining():
            self._command(lambda: self._multiline(f"RETR {number}", sink.write))
            return
        self._command(lambda: self._retrieve_then_top(number, sink, expected))

    def _retrieve_then_top(self, number: int, sink: BinaryIO, then: int) -> None:
        """``RETR number`` and ``TOP then 0`` in one write; both answers read, in order (a refused
        ``RETR`` is raised after the ``TOP``'s answer was read, so the session stays in step)."""
        self._send_with_pending(f"RETR {number}", f"TOP {then} 0")
        refused: poplib.error_proto | None = None
        try:
            read_answer(self._client, sink.write)
        except poplib.error_proto as error:
            if closed(error):
                raise
            refused = error
        kept = _Kept()
        try:
            read_answer(self._client, kept.write)
            self._fetched[then] = (kept.block(), None)
        except poplib.error_proto as error:
            if closed(error):
                raise
            self._fetched[then] = (b"", text(error))
        if refused is not None:
            raise refused

    def _pipelining(self) -> bool:
        capabilities = self.capabilities()
        return capabilities is not None and offers(capabilities, "PIPELINING")

    def delete(self, number: int) -> None:
        """``DELE``: at once, or with the next command where the server offers ``PIPELINING``."""
        self._deleting = True
        if self._pipelining():
            self._pending.append(number)
            return
        self._command(lambda: self._client.dele(number))

    def capabilities(self) -> tuple[str, ...] | None:
        """The server's ``CAPA`` lines (asked once per session); ``None`` when it does not answer it."""
        if not self._asked_capa:
            lines: list[bytes] = []
            refusal = self._try(lambda: read_multiline(self._client, "CAPA", lines.append))
            self._capabilities = None if refusal is not None else _capability_lines(lines)
            self._asked_capa = True
        return self._capabilities

    def probe(self) -> Pop3Probe:
        """Count the messages and try ``UIDL`` and ``TOP`` (of the first message), changing nothing."""
        count: list[int] = []
        self._command(lambda: count.append(self._client.stat()[0]))
        capabilities = self.capabilities()
        uidl = self._try(lambda: read_multiline(self._client, "UIDL", _drop)) is None
        if count[0]:
            top: bool | None = self._try(lambda: read_multiline(self._client, "TOP 1 0", _drop)) is None
        else:
            top = None if capabilities is None else "TOP" in _names(capabilities)
        return Pop3Probe(count[0], capabilities, uidl, top)

    def close(self, *, commit: bool) -> None:
        """``QUIT`` (commits deletions) when healthy and asked to; otherwise just drop the line. A
        session that deleted nothing has nothing to commit: its ``QUIT`` is sent, and the line
        dropped without waiting for the answer (one round trip less for an empty poll)."""
        proto: Any = self._client  # poplib's own line helpers
        if commit and self._healthy and not self._deleting:
            with suppress(OSError):
                proto._putcmd("QUIT")
            close_quietly(self._client)
            return
        if commit and self._healthy:
            try:
                self._send_with_pending("QUIT")
                proto._getresp()
                self._client.close()
            except (poplib.error_proto, OSError, EOFError) as error:
                raise ConnectionLost(f"POP3 QUIT failed, deletions may not be committed: {error}") from error
            return
        close_quietly(self._client)

    def _listing(self, command: str) -> dict[int, str]:
        lines: list[bytes] = []
        refusal = self._try(lambda: read_multiline(self._client, command, lines.append))
        if refusal is not None:
            if command in OPTIONAL:
                raise self._refused(command, refusal, lambda: False)
            raise TransientError(f"POP3 server refused {command}: {refusal}")
        entries: dict[int, str] = {}
        for line in lines:
            parts = line.split()
            if len(parts) >= 2 and parts[0].isdigit():
                entries[int(parts[0])] = parts[1].decode("ascii", "replace")
        return entries

    def _refused(self, command: str, refusal: str, works_elsewhere: Callable[[], bool]) -> LetterShopError:
        """Whose failure a refused optional command is (see the module's docstring)."""
        if temporary(refusal):
            return TransientError(f"POP3 server refused {command} for now: {refusal}")
        capabilities = self.capabilities()
        if capabilities is not None and command in _names(capabilities):
            return TransientError(f"POP3 server refused {command} (it offers it): {refusal}")
        if capabilities is None and works_elsewhere():
            return TransientError(f"POP3 server refused {command} for this message: {refusal}")
        host = getattr(self._client, "host", "?")
        listed = "its CAPA does not list it" if capabilities is not None else "it does not answer CAPA"
        return ChannelFailure(
            f"the POP3 server {host} does not offer {command} (RFC 1939 optional command; {listed}; "
            f"it answered {refusal}); LetterShop needs it {OPTIONAL[command]}",
            setting="pop3_host",
        )

    def _top_works_except(self, number: int) -> bool:
        """Does ``TOP`` work for some other message of the listing (one is tried, its headers dropped)?"""
        if self._top_worked:
            return True
        other = next((n for n in self._numbers if n != number), None)
        if other is None:
            return False
        return self._try(lambda: read_multiline(self._client, f"TOP {other} 0", _drop)) is None

    def _multiline(self, command: str, write: WriteBytes) -> None:
        """``command`` with its multi-line answer, the pending ``DELE``s sent in the same write."""
        self._send_with_pending(command)
        read_answer(self._client, write)

    def _send_with_pending(self, command: str, *after: str) -> None:
        """Send the pending ``DELE``s, ``command`` and the commands ``after`` it in one write; read the
        ``DELE``s' answers (a refusal is kept in ``deletions_refused``), leaving the answers of
        ``command`` and ``after`` to the caller."""
        pending, self._pending = self._pending, []
        if not pending and not after:
            proto: Any = self._client
            proto._putcmd(command)
            return
        lines = [f"DELE {number}" for number in pending] + [command, *after]
        self._client.sock.sendall("".join(f"{line}\r\n" for line in lines).encode("ascii"))
        for _ in pending:
            try:
                self._client._getresp()  # type: ignore[attr-defined]  # poplib's own reader
            except poplib.error_proto as error:
                if closed(error):
                    raise
                self.deletions_refused.append(text(error))

    def _command(self, run: Callable[[], object]) -> None:
        refusal = self._try(run)
        if refusal is not None:
            raise TransientError(f"POP3 server refused: {refusal}")

    def _try(self, run: Callable[[], object]) -> str | None:
        """Run one exchange: ``None`` when it succeeded, else the server's ``-ERR`` reply; a broken
        connection is ``ConnectionLost``."""
        try:
            run()
        except poplib.error_proto as error:
            if closed(error):
                self._healthy = False
                raise ConnectionLost(f"POP3 connection lost: {text(error)}") from error
            return text(error)
        except (OSError, EOFError) as error:
            self._healthy = False
            raise ConnectionLost(f"POP3 connection lost: {error}") from error
        return None


class _Kept:
    """A header block as ``TOP n 0`` gives it, at most ``MAX_SCREENED_HEADER_BYTES`` kept."""

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._kept = 0

    def write(self, line: bytes) -> None:
        if self._kept < MAX_SCREENED_HEADER_BYTES:
            self._lines.append(line[: MAX_SCREENED_HEADER_BYTES - self._kept])
            self._kept += len(self._lines[-1])

    def block(self) -> bytes:
        return b"".join(self._lines)


def read_multiline(client: poplib.POP3, command: str, write: WriteBytes) -> None:
    """Send ``command``; pass each line of the answer to ``write``, un-dot-stuffed, as sent.
    A ``-ERR`` answer raises ``poplib.error_proto``, a closed connection ``EOFError``."""
    proto: Any = client  # poplib has no streaming API; these two are its own helpers
    proto._putcmd(command)
    read_answer(client, write)


def read_answer(client: poplib.POP3, write: WriteBytes) -> None:
    """The multi-line answer to a command already sent (see ``read_multiline``)."""
    proto: Any = client
    proto._getresp()
    at_line_start = True
    while True:
        chunk = client.file.readline(MAX_LINE)
        if not chunk:
            raise EOFError("connection closed in the middle of a message")
        complete = chunk.endswith(b"\n")
        if at_line_start and complete and chunk.rstrip(b"\r\n") == b".":
            return
        if at_line_start and chunk.startswith(b".."):
            chunk = chunk[1:]
        write(chunk)
        at_line_start = complete


def capabilities_before_login(client: poplib.POP3) -> tuple[str, ...] | None:
    """``CAPA`` in the authorization state (for ``STLS``); ``None`` when the server does not answer it."""
    lines: list[bytes] = []
    try:
        read_multiline(client, "CAPA", lines.append)
    except poplib.error_proto as error:
        if closed(error):
            raise
        return None
    return _capability_lines(lines)


def offers(capabilities: tuple[str, ...], command: str) -> bool:
    return command in _names(capabilities)


def temporary(reply: str) -> bool:
    """The server's passing trouble (RFC 2449 ``[SYS/TEMP]``, RFC 3206 ``[IN-USE]``)."""
    return "[SYS/TEMP]" in reply or "[IN-USE]" in reply


def closed(error: poplib.error_proto) -> bool:
    """poplib reports a connection closed by the server as the reply ``-ERR EOF``."""
    return text(error) == "-ERR EOF"


def text(error: poplib.error_proto) -> str:
    reply = error.args[0] if error.args else error
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def close_quietly(client: poplib.POP3) -> None:
    with suppress(OSError):
        client.close()


def _capability_lines(lines: list[bytes]) -> tuple[str, ...]:
    return tuple(line.decode("ascii", "replace").strip() for line in lines if line.strip())


def _names(capabilities: tuple[str, ...]) -> set[str]:
    return {line.split()[0].upper() for line in capabilities}


def _drop(_line: bytes) -> None:
    """A sink for answers only tried (``channel check``)."""
