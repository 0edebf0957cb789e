"""What the mail adapters share about the network: which failure means the host name is wrong, and
the TLS context that verifies the servers."""

import os
import socket
import ssl
import threading

# getaddrinfo's "no such host" answers; EAI_AGAIN (a DNS server that did not answer) is transient.
_UNKNOWN_HOST = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)


def unknown_host(error: OSError) -> bool:
    """True when ``error`` says the host name does not exist (an operator's typo, not an outage)."""
    return isinstance(error, socket.gaierror) and error.errno in _UNKNOWN_HOST


class TlsContexts:
    """The verifying client context of ``ssl.create_default_context()`` (the system's trust store, or
    ``SSL_CERT_FILE``/``SSL_CERT_DIR``), made once per trust store and kept warm (``app.warm``):
    loading it takes about a millisecond, which an empty poll would pay at every login."""

    def __init__(self) -> None:
        self._made: dict[tuple[str | None, str | None], ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def context(self) -> ssl.SSLContext:
        where = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        with self._lock:
            made = self._made.get(where)
            if made is None:
                made = self._made[where] = ssl.create_default_context()
            return made

    def clear(self) -> None:
        with self._lock:
            self._made.clear()
