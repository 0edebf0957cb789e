"""The POP3 session's round trips (issue 21): DELE pipelined with the next command where the server
offers PIPELINING, and a session that deleted nothing not waiting for QUIT's answer."""

import io
import poplib

import pytest

from adapters.pop3_session import Pop3Session
from domain.errors import ConnectionLost, TransientError


class ScriptedServer:
    """poplib's line helpers over the server's scripted output; every write is recorded, and reading
    past the script fails the test (the session waited for an answer that never comes)."""

    def __init__(self, output: bytes, *, then_closed: bool = False) -> None:
        self.then_closed = then_closed  # after the script, the connection is closed (poplib: -ERR EOF)
        self.file = io.BytesIO(output)
        self.writes: list[bytes] = []
        self.closed = False
        self.sock = self

    def sendall(self, data: bytes) -> None:
        self.writes.append(data)

    def _putcmd(self, line: str) -> None:
        self.writes.append(line.encode() + b"\r\n")

    def _getresp(self) -> bytes:
        line = self.file.readline()
        if not line and self.then_closed:
            raise poplib.error_proto(b"-ERR EOF")
        if not line:
            raise AssertionError("the session waited for an answer")
        if line.startswith(b"-"):
            raise poplib.error_proto(line.rstrip())
        return line.rstrip()

    def dele(self, number: int) -> bytes:
        self._putcmd(f"DELE {number}")
        return self._getresp()

    def close(self) -> None:
        self.closed = True


def session(output: bytes, *, then_closed: bool = False) -> tuple[Pop3Session, ScriptedServer]:
    server = ScriptedServer(output, then_closed=then_closed)
    return Pop3Session(server), server  # type: ignore[arg-type]


def test_a_session_that_deleted_nothing_sends_quit_without_waiting_for_its_answer() -> None:
    pop3, server = session(b"")

    pop3.close(commit=True)

    assert (server.writes, server.closed) == ([b"QUIT\r\n"], True)


def test_with_pipelining_a_dele_goes_in_one_write_with_the_next_command() -> None:
    pop3, server = session(
        b"+OK\r\nUSER\r\nPIPELINING\r\n.\r\n"  # CAPA, at the first DELE
        b"+OK deleted\r\n+OK 9 octets\r\nbody\r\n.\r\n"  # DELE 1 and RETR 2
        b"+OK deleted\r\n+OK bye\r\n"  # DELE 2 and QUIT
    )
    sink = io.BytesIO()

    pop3.delete(1)
    pop3.retrieve(2, sink)
    pop3.delete(2)
    pop3.close(commit=True)

    assert server.writes == [b"CAPA\r\n", b"DELE 1\r\nRETR 2\r\n", b"DELE 2\r\nQUIT\r\n"]
    assert (sink.getvalue(), pop3.deletions_refused, server.closed) == (b"body\r\n", [], True)


def test_without_pipelining_a_dele_is_sent_alone_and_quit_is_waited_for() -> None:
    pop3, server = session(b"+OK\r\nUSER\r\n.\r\n+OK deleted\r\n+OK bye\r\n")

    pop3.delete(1)
    pop3.close(commit=True)

    assert server.writes == [b"CAPA\r\n", b"DELE 1\r\n", b"QUIT\r\n"]


def test_a_refused_pipelined_dele_is_kept_and_the_command_with_it_still_answered() -> None:
    pop3, _ = session(
        b"+OK\r\nPIPELINING\r\n.\r\n-ERR no such message\r\n+OK 9 octets\r\nbody\r\n.\r\n+OK bye\r\n"
    )
    sink = io.BytesIO()

    pop3.delete(7)
    pop3.retrieve(2, sink)
    pop3.close(commit=True)

    assert pop3.deletions_refused == ["-ERR no such message"]
    assert sink.getvalue() == b"body\r\n"


def test_a_quit_that_fails_after_deletions_is_a_lost_connection() -> None:
    pop3, _ = session(b"+OK\r\nPIPELINING\r\n.\r\n", then_closed=True)

    pop3.delete(1)
    with pytest.raises(ConnectionLost, match="deletions may not be committed"):
        pop3.close(commit=True)


def test_the_headers_expected_next_come_in_the_write_of_this_messages_retr() -> None:
    pop3, server = session(
        b"+OK\r\nPIPELINING\r\n.\r\n"  # CAPA
        b"+OK 9 octets\r\nbody\r\n.\r\n+OK\r\nSubject: next\r\n\r\n.\r\n"  # RETR 2, TOP 3 0
    )
    sink = io.BytesIO()

    pop3.expect_headers(3)
    pop3.retrieve(2, sink)
    headers = pop3.headers(3)

    assert server.writes == [b"CAPA\r\n", b"RETR 2\r\nTOP 3 0\r\n"]
    assert (sink.getvalue(), headers) == (b"body\r\n", b"Subject: next\r\n\r\n")


def test_a_refused_retr_with_the_next_top_keeps_the_session_in_step() -> None:
    pop3, server = session(
        b"+OK\r\nPIPELINING\r\n.\r\n-ERR [SYS/TEMP] try later\r\n+OK\r\nSubject: next\r\n\r\n.\r\n"
        b"+OK 9 octets\r\nbody\r\n.\r\n"
    )

    pop3.expect_headers(3)
    with pytest.raises(TransientError, match="try later"):
        pop3.retrieve(2, io.BytesIO())
    assert pop3.headers(3) == b"Subject: next\r\n\r\n"
    sink = io.BytesIO()
    pop3.retrieve(3, sink)

    assert sink.getvalue() == b"body\r\n"
    assert server.writes[-1] == b"RETR 3\r\n"


def test_without_pipelining_the_expected_headers_are_asked_on_their_own() -> None:
    pop3, server = session(
        b"+OK\r\nUSER\r\n.\r\n+OK 9 octets\r\nbody\r\n.\r\n+OK\r\nSubject: next\r\n\r\n.\r\n"
    )

    pop3.expect_headers(3)
    pop3.retrieve(2, io.BytesIO())
    pop3.headers(3)

    assert server.writes == [b"CAPA\r\n", b"RETR 2\r\n", b"TOP 3 0\r\n"]
