"""A hostile HTTPS endpoint on 127.0.0.1 that answers every request in one bad way, for bound tests.

It stands where a token endpoint should be (``oauth_token_url``), with the devstack certificate, so
the client's TLS verification passes and only the answer is wrong. Behaviours (:data:`Behaviour`):

* ``drip_headers`` — the status line, then one byte of an endless header every ``interval`` seconds;
* ``drip_body`` — complete headers (``Content-Length: 4000``), then one body byte per ``interval``;
* ``huge_declared`` — ``Content-Length`` of :data:`HUGE` bytes, and the body as fast as it is taken;
* ``huge_endless`` — no ``Content-Length`` (the body ends when the connection does), as fast as taken;
* ``not_json`` — ``200 OK`` with an HTML page.

:attr:`HostileEndpoint.sent` holds, per connection, the body bytes the client took before it stopped
reading (or :data:`HUGE`), so a test can tell "stopped early" from "read it all".
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from typing import Literal

from devstack.server import LocalServer
from devstack.tls import HOST, TlsFiles, server_context

Behaviour = Literal["drip_headers", "drip_body", "huge_declared", "huge_endless", "not_json"]

HUGE = 300 * 1024 * 1024
CHUNK = 64 * 1024
LONGEST_SECONDS = 60.0  # a connection the client never gives up on still ends, after this
POLL_SECONDS = 0.05


class HostileEndpoint(LocalServer):
    host = HOST

    def __init__(self, tls: TlsFiles, behaviour: Behaviour, *, interval: float = 0.1) -> None:
        self.behaviour = behaviour
        self.interval = interval
        self.port = 0
        self.sent: list[int] = []
        """Body bytes taken by the client, one entry per finished connection."""
        self.requests = 0
        self._context = server_context(tls)
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"https://{HOST}:{self.port}/token"

    def start(self) -> None:
        listener = socket.create_server((HOST, 0))
        listener.settimeout(POLL_SECONDS)
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._spawn(self._accept_loop, listener)

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        self._stopping.set()
        listener.close()
        for thread in list(self._threads):
            thread.join(5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._spawn(self._serve, client)

    def _serve(self, raw: socket.socket) -> None:
        taken = 0
        try:
            raw.settimeout(5)
            with self._context.wrap_socket(raw, server_side=True) as client:
                _read_request(client)
                with self._lock:
                    self.requests += 1
                taken = self._answer(client)
        except (OSError, ssl.SSLError):
            return
        finally:
            with contextlib.suppress(OSError):
                raw.close()
        with self._lock:
            self.sent.append(taken)

    def _answer(self, client: ssl.SSLSocket) -> int:
        """Answer as :attr:`behaviour` says; the body bytes the client took."""
        if self.behaviour == "not_json":
            body = b"<html><body>Service Unavailable? No: a login page.</body></html>"
            client.sendall(_head(f"Content-Length: {len(body)}", "text/html") + body)
            return len(body)
        if self.behaviour == "drip_headers":
            client.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            self._drip(client, b"a")
            return 0
        if self.behaviour == "drip_body":
            client.sendall(_head("Content-Length: 4000") + b'{"access_token": "')
            return self._drip(client, b"a")
        length = f"Content-Length: {HUGE}" if self.behaviour == "huge_declared" else "Connection: close"
        client.sendall(_head(length))
        return self._flood(client)

    def _drip(self, client: ssl.SSLSocket, byte: bytes) -> int:
        sent, started = 0, time.monotonic()
        while not self._stopping.is_set() and time.monotonic() - started < LONGEST_SECONDS:
            try:
                client.sendall(byte)
            except OSError:
                break
            sent += 1
            self._stopping.wait(self.interval)
        return sent

    def _flood(self, client: ssl.SSLSocket) -> int:
        chunk = b'{"access_token": "' + b"a" * (CHUNK - 18)
        sent, started = 0, time.monotonic()
        client.settimeout(2)  # a client that stops reading without closing: the flood ends
        while sent < HUGE and not self._stopping.is_set() and time.monotonic() - started < LONGEST_SECONDS:
            try:
                client.sendall(chunk)
            except OSError:
                break
            sent += len(chunk)
            chunk = b"a" * CHUNK
        return sent


def _head(length: str, content_type: str = "application/json") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n{length}\r\n\r\n".encode()


def _read_request(client: ssl.SSLSocket) -> None:
    """The request line, headers and a ``Content-Length`` body (read and dropped)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(4096)
        if not chunk:
            raise ConnectionError("client closed before its request was complete")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = client.recv(4096)
        if not chunk:
            break
        body += chunk
