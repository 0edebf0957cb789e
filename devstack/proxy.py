"""A small TCP proxy on 127.0.0.1 that can cut, delay or refuse connections, for fault-injection tests.

Put it between the poll and a real server (Dovecot, aiosmtpd, moto) and point the channel (or the
endpoint) at :attr:`TcpProxy.port`. It forwards bytes unchanged, so TLS — implicit or after
STARTTLS/STLS — works through it: the certificate is for 127.0.0.1, which the proxy is too.

Faults, each in force until :meth:`TcpProxy.reset` (or replaced by the next call of its kind):

* :meth:`~TcpProxy.cut_after` — close a connection once N bytes server→client have passed in it
  (counted per connection from its start, TLS records included), e.g. in the middle of a RETR;
* :meth:`~TcpProxy.cut_on` — close a connection when the client sends a pattern (``b"QUIT"``,
  ``b"RETR"``); the bytes from the pattern on never reach the server. Plain text only: under TLS
  the client's commands are encrypted and never match;
* :meth:`~TcpProxy.delay` — wait before forwarding each chunk, in both directions (the waits add
  up: one chunk after another, as a slow hop that holds each chunk);
* :meth:`~TcpProxy.latency` — a one-way delay like a network's: each chunk is forwarded that long
  after it arrived, chunks in flight overlap (a pipelined command waits once, not once per chunk),
  and a new connection waits one round trip (twice the delay) before any byte flows, as a TCP
  handshake does;
* :meth:`~TcpProxy.refuse` — close every new connection right after accepting it.

Both sides are set ``TCP_NODELAY``: the proxy forwards each chunk as it comes, and Nagle's algorithm
against the peer's delayed ACK (up to 40 ms on Linux) would add stalls no real path has.

A cut closes both sides with a FIN (``how="close"``: the peer reads end-of-file) or with an RST
(``how="reset"``: the peer's next read fails with ``ECONNRESET``). :attr:`TcpProxy.cuts` records why
each connection was cut, so a test can tell the injected fault from an accident.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from devstack.server import LocalServer
from devstack.tls import HOST

How = Literal["close", "reset"]

POLL_SECONDS = 0.05
CONNECT_TIMEOUT = 5.0
SEND_TIMEOUT = 10.0
JOIN_TIMEOUT = 5.0
CHUNK = 64 * 1024


class ProxyError(RuntimeError):
    """The proxy did not stop cleanly."""


@dataclass
class _Rules:
    cut_after: int | None = None
    cut_after_how: How = "close"
    cut_on: bytes | None = None
    cut_on_how: How = "close"
    delay: float = 0.0
    latency: float = 0.0
    handshake: float = 0.0
    refuse: How | None = None


@dataclass
class _Connection:
    number: int
    client: socket.socket
    server: socket.socket
    from_server: int = 0
    client_tail: bytes = b""
    open_sides: set[str] = field(default_factory=lambda: {"client", "server"})
    last_from: str = ""  # the side the last forwarded chunk came from
    # chunks in flight under ``latency``: (when due, from which side, bytes; b"" = that side's EOF)
    in_flight: deque[tuple[float, str, bytes]] = field(default_factory=deque)


class _Cut(Exception):
    def __init__(self, reason: str, how: How) -> None:
        super().__init__(reason)
        self.reason = reason
        self.how = how


class TcpProxy(LocalServer):
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``, one thread per connection."""

    host = HOST

    def __init__(self, target_port: int, target_host: str = HOST) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.connections = 0
        """Connections accepted so far (refused ones included)."""
        self.cuts: list[str] = []
        """Why each cut (or refused) connection was closed, in order."""
        self.turns = 0
        """Client turns so far, all connections: the times the client sent after the server did (or
        first) — the round trips the client waited for, whatever the number of chunks."""
        self._rules = _Rules()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._threads: list[threading.Thread] = []

    # -------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._listener is not None

    def start(self) -> None:
        if self._listener is not None:
            raise RuntimeError("proxy already started")
        self._stopping.clear()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(16)
        listener.settimeout(POLL_SECONDS)
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(listener,), name=f"tcp-proxy-{self.port}-accept", daemon=True
        )
        self._acceptor.start()

    def stop(self) -> None:
        """Close the listener and every connection, wait for every thread; idempotent."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._stopping.set()
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.join(JOIN_TIMEOUT)  # after this, no new connection thread is started
        listener.close()
        for thread in self.threads():
            thread.join(JOIN_TIMEOUT)
        alive = [thread.name for thread in (acceptor, *self.threads()) if thread and thread.is_alive()]
        with self._lock:
            self._threads.clear()
        if alive:
            raise ProxyError(f"proxy threads still running after {JOIN_TIMEOUT:.0f} s: {alive}")

    def threads(self) -> list[threading.Thread]:
        """The proxy's threads that are still alive (none after :meth:`stop`)."""
        with self._lock:
            candidates = [self._acceptor, *self._threads]
        return [thread for thread in candidates if thread is not None and thread.is_alive()]

    # ----------------------------------------------------------------- faults

    def cut_after(self, bytes_from_server: int, *, how: How = "close") -> None:
        """Cut each connection once ``bytes_from_server`` bytes server→client have passed in it."""
        if bytes_from_server < 0:
            raise ValueError("bytes_from_server must not be negative")
        with self._lock:
            self._rules.cut_after, self._rules.cut_after_how = bytes_from_server, how

    def cut_on(self, pattern: bytes, *, how: How = "close") -> None:
        """Cut a connection when the client sends ``pattern``; the server never sees it."""
        if not pattern:
            raise ValueError("pattern must not be empty")
        with self._lock:
            self._rules.cut_on, self._rules.cut_on_how = pattern, how

    def delay(self, seconds: float) -> None:
        """Wait ``seconds`` before forwarding each chunk (both directions); 0 turns it off."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        with self._lock:
            self._rules.delay = seconds

    def latency(self, seconds: float, *, handshake: bool = True) -> None:
        """Forward each chunk ``seconds`` after it arrived, both directions, without holding the
        chunks behind it (a one-way network delay); new connections wait ``2 * seconds`` first (the
        handshake's round trip) unless ``handshake`` is false. 0 turns it off."""
        if seconds < 0:
            raise ValueError("seconds must not be negative")
        with self._lock:
            self._rules.latency = seconds
            self._rules.handshake = 2 * seconds if handshake else 0.0

    def refuse(self, *, how: How = "reset") -> None:
        """Close every new connection as soon as it is accepted (RST by default, or FIN)."""
        with self._lock:
            self._rules.refuse = how

    def reset(self) -> None:
        """No faults any more: forward everything as it comes (open connections included)."""
        with self._lock:
            self._rules = _Rules()

    def _current(self) -> _Rules:
        with self._lock:
            return _Rules(**vars(self._rules))

    # ---------------------------------------------------------------- threads

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _address = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            number = self.connections
            refuse = self._current().refuse
            if refuse is not None:
                self._record(f"connection {number} refused ({refuse})")
                _close(client, refuse)
                continue
            thread = threading.Thread(
                target=self._serve, args=(number, client), name=f"tcp-proxy-{self.port}-{number}", daemon=True
            )
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _serve(self, number: int, client: socket.socket) -> None:
        handshake = self._current().handshake
        if handshake > 0:
            self._stopping.wait(handshake)
        try:
            server = socket.create_connection(self.target, timeout=CONNECT_TIMEOUT)
        except OSError as error:
            self._record(f"connection {number}: target {self.target} not reachable: {error}")
            _close(client, "reset")
            return
        for sock in (client, server):
            sock.settimeout(SEND_TIMEOUT)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(number, client, server)
        how: How = "close"
        try:
            self._pump(connection)
        except _Cut as cut:
            self._record(f"connection {number}: {cut.reason}")
            how = cut.how
        except OSError:
            how = "close"
        finally:
            _close(client, how)
            _close(server, how)

    def _pump(self, connection: _Connection) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(connection.client, selectors.EVENT_READ, "client")
            selector.register(connection.server, selectors.EVENT_READ, "server")
            while (connection.open_sides or connection.in_flight) and not self._stopping.is_set():
                self._forward_due(connection)
                timeout = POLL_SECONDS
                if connection.in_flight:
                    timeout = min(timeout, max(0.0, connection.in_flight[0][0] - time.monotonic()))
                if not connection.open_sides:
                    self._stopping.wait(timeout)
                    continue
                for key, _events in selector.select(timeout):
                    side = str(key.data)
                    source = connection.client if side == "client" else connection.server
                    data = source.recv(CHUNK)
                    if not data:
                        selector.unregister(source)
                        connection.open_sides.discard(side)
                    latency = self._current().latency
                    if latency > 0 or connection.in_flight:
                        connection.in_flight.append((time.monotonic() + latency, side, data))
                    else:
                        self._forward(connection, side, data)
            self._forward_due(connection)

    def _forward_due(self, connection: _Connection) -> None:
        """Forward the chunks in flight whose time has come, in the order they arrived."""
        while connection.in_flight and connection.in_flight[0][0] <= time.monotonic():
            _due, side, data = connection.in_flight.popleft()
            self._forward(connection, side, data)

    def _forward(self, connection: _Connection, side: str, data: bytes) -> None:
        """Pass one chunk from ``side`` on to the other side; an empty one passes the EOF on."""
        if not data:
            other = connection.server if side == "client" else connection.client
            with contextlib.suppress(OSError):
                other.shutdown(socket.SHUT_WR)
            return
        if side == "client" and connection.last_from != "client":
            with self._lock:
                self.turns += 1
        connection.last_from = side
        if side == "client":
            self._to_server(connection, data)
        else:
            self._to_client(connection, data)

    def _wait(self, rules: _Rules) -> None:
        if rules.delay > 0:
            self._stopping.wait(rules.delay)

    def _to_server(self, connection: _Connection, data: bytes) -> None:
        rules = self._current()
        self._wait(rules)
        if rules.cut_on is not None:
            window = connection.client_tail + data
            found = window.find(rules.cut_on)
            if found >= 0:
                before = max(0, found - len(connection.client_tail))
                if before:
                    connection.server.sendall(data[:before])
                raise _Cut(f"client sent {rules.cut_on!r}", rules.cut_on_how)
            connection.client_tail = window[-(len(rules.cut_on) - 1) :] if len(rules.cut_on) > 1 else b""
        connection.server.sendall(data)

    def _to_client(self, connection: _Connection, data: bytes) -> None:
        rules = self._current()
        self._wait(rules)
        if rules.cut_after is not None:
            allowed = rules.cut_after - connection.from_server
            if len(data) >= allowed:
                if allowed > 0:
                    connection.client.sendall(data[:allowed])
                    connection.from_server += allowed
                raise _Cut(f"cut after {connection.from_server} bytes from the server", rules.cut_after_how)
        connection.client.sendall(data)
        connection.from_server += len(data)

    def _record(self, reason: str) -> None:
        with self._lock:
            self.cuts.append(reason)


def _close(sock: socket.socket, how: How) -> None:
    """Close ``sock``; ``reset`` makes the kernel send an RST instead of a FIN."""
    with contextlib.suppress(OSError):
        if how == "reset":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
