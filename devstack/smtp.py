"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records every message it accepts.

Default: plain port with STARTTLS required and AUTH (PLAIN/LOGIN) required — a typical
submission server. Flags give the other shapes the channel supports: no TLS requirement and/or no
AUTH (``smtp_security: none``, ``smtp_auth: false``) and implicit TLS (``smtp_security: tls``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from devstack.tls import HOST, TlsFiles, server_context


def _not_noise(record: logging.LogRecord) -> bool:
    # aiosmtpd logs this itself after every successful AUTH (it sets its own deprecated attribute).
    return not record.getMessage().startswith("Session.login_data is deprecated")


logging.getLogger("mail.log").addFilter(_not_noise)


@dataclass(frozen=True)
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    authenticated_user: str | None
    tls: bool = False
    peer: Any = None
    received_at: float = field(default_factory=time.time)


class _Recorder:
    """aiosmtpd handler: keeps every accepted message."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if raw is None:
            raw = envelope.content if isinstance(envelope.content, bytes) else b""
        user = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            user = session.auth_data.login.decode("utf-8", "replace")
        mail = ReceivedMail(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            data=bytes(raw),
            authenticated_user=user,
            tls=session.ssl is not None or self._server.implicit_tls,
            peer=session.peer,
        )
        self._server._record(mail)
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """Binds port 0 and learns the real port before aiosmtpd's self-test connection."""

    def __init__(self, *args: Any, auth_without_starttls: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._auth_without_starttls = auth_without_starttls

    def factory(self) -> SMTP:
        smtp = SMTP(self.handler, **self.SMTP_kwargs)
        if self._auth_without_starttls:
            # aiosmtpd only knows STARTTLS as "TLS": on an implicit-TLS port (and on the plain
            # test variant) AUTH must be offered without it. Passing auth_require_tls=False would
            # do the same but log and warn (UserWarning) on every single connection.
            smtp._auth_require_tls = False
        return smtp

    def _trigger_server(self) -> None:
        server = cast(asyncio.Server, self.server)
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class SmtpServer:
    """aiosmtpd ``Controller`` on a free port of 127.0.0.1; ``received`` lists accepted mail."""

    host = HOST

    def __init__(
        self,
        tls: TlsFiles,
        users: dict[str, str] | None = None,
        *,
        require_starttls: bool = True,
        auth_required: bool = True,
        implicit_tls: bool = False,
    ) -> None:
        self.tls = tls
        self.users: dict[str, str] = dict(users or {})
        self.require_starttls = require_starttls and not implicit_tls
        self.auth_required = auth_required
        self.implicit_tls = implicit_tls
        self.received: list[ReceivedMail] = []
        self.auth_attempts: list[tuple[str, bool]] = []
        self._cond = threading.Condition()
        self._controller: _Controller | None = None
        self.port = 0

    # -------------------------------------------------------------- lifecycle

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._controller is not None:
            raise RuntimeError("SMTP server already started")
        context = server_context(self.tls)
        kwargs: dict[str, Any] = {
            "authenticator": self._authenticate,
            "auth_required": self.auth_required,
            "server_hostname": "localhost",
            "ready_timeout": 10.0,
        }
        if self.implicit_tls:
            kwargs["ssl_context"] = context
        else:
            kwargs["tls_context"] = context
            kwargs["require_starttls"] = self.require_starttls
        controller = _Controller(
            _Recorder(self),
            hostname=HOST,
            port=0,
            # AUTH before STARTTLS only where STARTTLS is not required (or TLS is implicit).
            auth_without_starttls=not self.require_starttls,
            **kwargs,
        )
        controller.start()
        self._controller = controller
        self.port = controller.port

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop(no_assert=True)

    @property
    def running(self) -> bool:
        return self._controller is not None

    # ------------------------------------------------------------------ state

    def _authenticate(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        expected = self.users.get(user)
        ok = expected is not None and expected == password
        with self._cond:
            self.auth_attempts.append((user, ok))
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def _record(self, mail: ReceivedMail) -> None:
        with self._cond:
            self.received.append(mail)
            self._cond.notify_all()

    def add_user(self, name: str, password: str) -> None:
        self.users[name] = password

    def clear(self) -> None:
        """Forget received mail and auth attempts (users stay)."""
        with self._cond:
            self.received.clear()
            self.auth_attempts.clear()

    def wait_for(self, count: int, timeout: float = 5) -> list[ReceivedMail]:
        """Wait until at least *count* messages arrived; return them all (raise on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"expected {count} message(s) on SMTP port {self.port}, got {len(self.received)}"
                    )
                self._cond.wait(remaining)
            return list(self.received)

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls.ca_file))
