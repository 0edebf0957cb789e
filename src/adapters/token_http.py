"""The HTTP transport of one OAuth token request (``adapters.oauth``): verified TLS, a deadline, a cap.

* Certificates are verified with the system's trust store (and ``SSL_CERT_FILE``), as for POP3/SMTP.
* **One deadline for the whole request**: ``requests``' timeout applies to each read, so an endpoint
  that drips a byte now and then would hold the poll for ever. A watchdog shuts the request's sockets
  down when the deadline passes (connecting, TLS handshake, headers or body, redirects included); the
  request then ends in a ``TransientError`` ("did not answer within N s").
* **A small answer**: the body is streamed and the request stops past ``MAX_ANSWER_BYTES`` (a token
  answer is about 2 KiB), or at once when ``Content-Length`` says more; that is a ``ChannelFailure``
  naming ``oauth_token_url``. ``Accept-Encoding: identity`` is asked for, and the cap counts the
  bytes as decoded, so a compressed answer cannot grow past it either.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool

from domain.errors import ChannelFailure, LetterShopError, TransientError

MAX_ANSWER_BYTES = 64 * 1024
CHUNK_BYTES = 16 * 1024


class BoundedTransport(HTTPAdapter):
    """Mounted on the session of one token request; its deadline starts when it is made."""

    def __init__(self, where: str, seconds: float, *, max_bytes: int = MAX_ANSWER_BYTES) -> None:
        self._where = where
        self._seconds = seconds
        self._max_bytes = max_bytes
        self._deadline = time.monotonic() + seconds
        self._expired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.bytes_read = 0
        """Body bytes read so far (all requests of this transport): at most ``max_bytes`` + a chunk."""
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = ssl.create_default_context()
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"https": _tracked_pool(self._track)}

    def send(  # type: ignore[override]  # requests' own signature, keywords passed through
        self, request: PreparedRequest, stream: bool = False, timeout: Any = None, **kwargs: Any
    ) -> Response:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise self._late()
        request.headers["Accept-Encoding"] = "identity"
        watchdog = threading.Timer(left, self._expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            response = super().send(request, stream=True, timeout=(left, left), **kwargs)
            response._content = self._body(response)  # what requests' .content reads
            if self._expired.is_set():  # cut short by the watchdog: whatever arrived is not the answer
                raise self._late()
        except LetterShopError:
            raise
        except Exception:
            if self._expired.is_set():
                raise self._late() from None
            raise
        finally:
            watchdog.cancel()
        return response

    def _body(self, response: Response) -> bytes:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            response.close()
            raise self._too_large(f"Content-Length {declared}")
        chunks: list[bytes] = []
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                self.bytes_read += len(chunk)
                if self.bytes_read > self._max_bytes:
                    raise self._too_large(f"more than {self._max_bytes} bytes")
                chunks.append(chunk)
        finally:
            response.close()
        return b"".join(chunks)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
        if self._expired.is_set():  # connected just as the deadline passed
            _shut(sock)

    def _expire(self) -> None:
        self._expired.set()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def _late(self) -> TransientError:
        return TransientError(f"{self._where} did not answer within {self._seconds:g} s")

    def _too_large(self, size: str) -> ChannelFailure:
        return ChannelFailure(
            f"{self._where} answered with {size}; a token answer has at most {self._max_bytes} bytes",
            setting="oauth_token_url",
        )


def _tracked_pool(track: Callable[[socket.socket], None]) -> type[HTTPSConnectionPool]:
    """A connection pool whose connections hand their sockets to ``track`` (TCP, then TLS)."""

    class Connection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            track(sock)
            return sock

        def connect(self) -> None:
            super().connect()
            track(self.sock)

    class Pool(HTTPSConnectionPool):
        ConnectionCls = Connection

    return Pool


def _shut(sock: socket.socket) -> None:
    """Wake whoever waits on ``sock``: its reads end at once (the plain socket's shutdown, also for
    a TLS socket, whose own shutdown would change its state under the reading thread)."""
    with suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
