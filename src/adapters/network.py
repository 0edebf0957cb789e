"""What the mail adapters share about the network: which failure means the host name is wrong, and
the TLS context that verifies the servers."""

import os
import socket
import ssl
from functools import cache

# getaddrinfo's "no such host" answers; EAI_AGAIN (a DNS server that did not answer) is transient.
_UNKNOWN_HOST = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)


def unknown_host(error: OSError) -> bool:
    """True when ``error`` says the host name does not exist (an operator's typo, not an outage)."""
    return isinstance(error, socket.gaierror) and error.errno in _UNKNOWN_HOST


def tls_context() -> ssl.SSLContext:
    """The verifying client context of ``ssl.create_default_context()`` (the system's trust store,
    or ``SSL_CERT_FILE``/``SSL_CERT_DIR``), made once per trust store: loading it takes about a
    millisecond, which an empty poll would pay at every login."""
    return _tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@cache
def _tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return ssl.create_default_context()
