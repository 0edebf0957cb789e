"""A POP3 server that lacks optional commands: the TCP proxy in front of Dovecot, answering some
commands itself (issue 17, item 10).

RFC 1939 makes ``UIDL`` and ``TOP`` optional, RFC 2449 adds ``CAPA``; Dovecot offers all three and
cannot be told not to. :class:`Pop3Filter` forwards everything else unchanged to Dovecot's plain
POP3 port and, while the session is in plain text, answers

* each command of ``refuse`` with ``-ERR Unknown command`` (Dovecot never sees it); a rule is a verb
  (``TOP``) or a verb with its first arguments (``TOP 1``: only the first message's headers);
* ``CAPA`` with ``capabilities`` when that is set (a server whose CAPA lists less than Dovecot's).

Under TLS (after ``STLS``) the client's commands are encrypted and pass unchanged.
:attr:`Pop3Filter.commands` records the verbs the client sent in plain text, in order.
"""

from __future__ import annotations

from devstack.proxy import TcpProxy, _Connection


class Pop3Filter(TcpProxy):
    def __init__(
        self,
        target_port: int,
        *,
        refuse: frozenset[str] = frozenset(),
        capabilities: list[str] | None = None,
    ) -> None:
        super().__init__(target_port)
        self.refused = frozenset(command.upper() for command in refuse)
        self.capabilities = capabilities
        self.commands: list[str] = []

    def _to_server(self, connection: _Connection, data: bytes) -> None:
        verb = data.split(b" ", 1)[0].strip().upper().decode("ascii", "replace")
        if data.endswith(b"\r\n") and verb.isalpha() and len(verb) <= 4:  # a POP3 command line
            self.commands.append(verb)
            line = data.rstrip(b"\r\n").decode("ascii", "replace").upper()
            if any(line == rule or line.startswith(f"{rule} ") for rule in self.refused):
                connection.client.sendall(b"-ERR Unknown command: " + verb.encode() + b"\r\n")
                return
            if verb == "CAPA" and self.capabilities is not None:
                lines = "".join(f"{line}\r\n" for line in self.capabilities)
                connection.client.sendall(f"+OK\r\n{lines}.\r\n".encode())
                return
        super()._to_server(connection, data)
