"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records every message it accepts.

Default: plain port with STARTTLS required and AUTH (PLAIN/LOGIN) required — a typical
submission server. Flags give the other shapes the channel supports: no TLS requirement and/or no
AUTH (``smtp_security: none``, ``smtp_auth: false``) and implicit TLS (``smtp_security: tls``).

``data_size_limit`` is the largest message it takes (aiosmtpd's own, 32 MiB by default): it offers it
as ``SIZE`` in ``EHLO`` (RFC 1870), answers a ``MAIL FROM`` with a larger ``SIZE=`` with ``552`` and
refuses more data than that after ``DATA`` with ``552`` as well.

Failure injection: :meth:`SmtpServer.fail_next` makes the server answer the next N ``MAIL``,
``RCPT`` or ``DATA`` commands with a given reply (``451 4.3.0 try later``, ``550 5.1.1 no such
user``, ...) instead of accepting; a 421 also closes the connection, as RFC 5321 says it does.
:attr:`SmtpServer.refused` lists the replies given that way; :meth:`SmtpServer.clear` forgets them.

With ``introspect`` (a function asking the local authorization server, ``devstack.oauth``) the server
takes ``AUTH XOAUTH2`` only, as Microsoft 365 and Google do for app logins: the bearer token must be
active and issued for the ``user=`` it is presented with.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import DATA_SIZE_DEFAULT, MISSING, SMTP, AuthResult, Envelope, LoginPassword, Session

from devstack.server import LocalServer
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


Stage = Literal["MAIL", "RCPT", "DATA"]
STAGES: tuple[Stage, ...] = ("MAIL", "RCPT", "DATA")


@dataclass
class _Failure:
    at: Stage
    code: int
    text: str
    times: int


@dataclass(frozen=True)
class RefusedCommand:
    """One command answered with an injected failure."""

    at: Stage
    code: int
    text: str
    argument: str = ""


class _Recorder:
    """aiosmtpd handler: keeps every accepted message; answers injected failures first."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_EHLO(
        self, smtp: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        """aiosmtpd's own answer, with ``PIPELINING`` (RFC 2920) where the server offers it: aiosmtpd
        reads commands one line after another from its stream, so pipelined ones are answered in
        order, as real relays (Postfix, Exchange, Gmail, SES) offer it."""
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        if self._server.pipelining:
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        refusal = self._server._take_failure("MAIL", address, smtp)
        if refusal is not None:
            return refusal
        # What aiosmtpd does itself when there is no hook.
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self._server._take_failure("RCPT", address, smtp)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        refusal = self._server._take_failure("DATA", "", smtp)
        if refusal is not None:
            return refusal
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


Introspect = Callable[[str], dict[str, Any]]
"""RFC 7662 token introspection: the token's metadata (``active``, ``username``, ...)."""


class _OAuthRecorder(_Recorder):
    """Records like :class:`_Recorder`; logins are ``AUTH XOAUTH2`` only, each token introspected.

    A token is accepted when the authorization server says it is active and its ``username`` is the
    ``user=`` of the XOAUTH2 string. A refusal follows the XOAUTH2 protocol: a 334 challenge with
    the JSON error, the client's empty line, then 535.
    """

    def __init__(self, server: SmtpServer, introspect: Introspect) -> None:
        super().__init__(server)
        self._introspect = introspect

    async def auth_XOAUTH2(self, smtp: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await smtp.challenge_auth("", encode_to_b64=False)
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except ValueError:
                await smtp.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        assert isinstance(blob, bytes)
        fields = dict(
            part.split("=", 1) for part in blob.decode("utf-8", "replace").split("\x01") if "=" in part
        )
        user, auth = fields.get("user", ""), fields.get("auth", "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        answer = (
            await asyncio.get_running_loop().run_in_executor(None, self._introspect, token) if token else {}
        )
        ok = answer.get("active") is True and answer.get("username") == user
        with self._server._cond:
            self._server.auth_attempts.append((user, ok))
        if ok:
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        await smtp.challenge_auth(json.dumps({"status": "401", "schemes": "bearer", "scope": "smtp"}))
        return AuthResult(success=False, message="535 5.7.3 Authentication unsuccessful")


_DEFAULT_TEXT = {
    421: "4.3.2 Service shutting down, closing transmission channel",
    450: "4.2.1 Mailbox unavailable, try again later",
    451: "4.3.0 Local error in processing, try again later",
    452: "4.3.1 Insufficient system storage",
    550: "5.1.1 Mailbox unavailable",
    552: "5.3.4 Message too big",
    554: "5.6.0 Transaction failed",
}


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


class SmtpServer(LocalServer):
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
        smtputf8: bool = False,
        introspect: Introspect | None = None,
        data_size_limit: int = DATA_SIZE_DEFAULT,
        pipelining: bool = True,
    ) -> None:
        self.tls = tls
        self.users: dict[str, str] = dict(users or {})
        self.require_starttls = require_starttls and not implicit_tls
        self.auth_required = auth_required
        self.implicit_tls = implicit_tls
        self.smtputf8 = smtputf8  # offer SMTPUTF8 (RFC 6531); aiosmtpd, like many relays, does not by default
        self.introspect = introspect  # set: logins are AUTH XOAUTH2 tokens only (see _OAuthRecorder)
        self.data_size_limit = data_size_limit  # offered as SIZE; larger messages are refused with 552
        self.pipelining = pipelining  # offer PIPELINING (RFC 2920) in EHLO
        self.received: list[ReceivedMail] = []
        self.auth_attempts: list[tuple[str, bool]] = []
        self.refused: list[RefusedCommand] = []
        self._failures: list[_Failure] = []
        self._cond = threading.Condition()
        self._controller: _Controller | None = None
        self.port = 0

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        if self._controller is not None:
            raise RuntimeError("SMTP server already started")
        context = server_context(self.tls)
        kwargs: dict[str, Any] = {
            "authenticator": self._authenticate,
            "auth_required": self.auth_required,
            "server_hostname": "localhost",
            "ready_timeout": 10.0,
            "enable_SMTPUTF8": self.smtputf8,
            "data_size_limit": self.data_size_limit,
        }
        handler = _Recorder(self)
        if self.introspect is not None:
            handler = _OAuthRecorder(self, self.introspect)
            kwargs["auth_exclude_mechanism"] = ["PLAIN", "LOGIN"]
        if self.implicit_tls:
            kwargs["ssl_context"] = context
        else:
            kwargs["tls_context"] = context
            kwargs["require_starttls"] = self.require_starttls
        controller = _Controller(
            handler,
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
        """Forget received mail, auth attempts and injected failures (users stay)."""
        with self._cond:
            self.received.clear()
            self.auth_attempts.clear()
            self.refused.clear()
            self._failures.clear()

    def fail_next(self, code: int, text: str = "", *, times: int = 1, at: Stage = "DATA") -> None:
        """Answer the next ``times`` ``at`` commands (``MAIL``, ``RCPT``, ``DATA``) with ``code text``.

        ``DATA`` is answered after the message was received (the reply to the final ``.``), so
        the message is not recorded. Failures queue up in the order they were asked for; a 421
        closes the connection after the reply.
        """
        if not 400 <= code <= 599:
            raise ValueError(f"an injected failure must be a 4xx or 5xx reply, not {code}")
        if at not in STAGES:
            raise ValueError(f"at must be one of {STAGES}, not {at!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._cond:
            self._failures.append(
                _Failure(at, code, text or _DEFAULT_TEXT.get(code, "injected failure"), times)
            )

    @property
    def pending_failures(self) -> int:
        """How many injected failures are still to be answered."""
        with self._cond:
            return sum(failure.times for failure in self._failures)

    def _take_failure(self, at: Stage, argument: str, smtp: SMTP) -> str | None:
        """The injected reply for this command, if one is due (called on aiosmtpd's loop)."""
        with self._cond:
            failure = next((f for f in self._failures if f.at == at), None)
            if failure is None:
                return None
            failure.times -= 1
            if failure.times == 0:
                self._failures.remove(failure)
            self.refused.append(RefusedCommand(at, failure.code, failure.text, argument))
            self._cond.notify_all()
        if failure.code == 421 and smtp.transport is not None:
            # The reply is written before this callback runs; close() flushes it first.
            asyncio.get_running_loop().call_soon(smtp.transport.close)
        return f"{failure.code} {failure.text}"

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
