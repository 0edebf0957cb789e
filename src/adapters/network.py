"""What the mail adapters share about the network: which failure means the host name is wrong."""

import socket

# getaddrinfo's "no such host" answers; EAI_AGAIN (a DNS server that did not answer) is transient.
_UNKNOWN_HOST = frozenset(
    code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None)) if code is not None
)


def unknown_host(error: OSError) -> bool:
    """True when ``error`` says the host name does not exist (an operator's typo, not an outage)."""
    return isinstance(error, socket.gaierror) and error.errno in _UNKNOWN_HOST
