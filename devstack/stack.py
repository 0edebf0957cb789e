"""The whole local stack: Dovecot (POP3/POP3S), aiosmtpd (SMTP) and moto (AWS) on 127.0.0.1.

::

    with LocalStack() as stack:
        user, password = stack.new_mailbox()
        stack.dovecot.deliver(user, raw)
        os.environ.update(stack.env())   # what the poll handler needs (DESIGN §8)
        ...
"""

from __future__ import annotations

import contextlib
import itertools
import json
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from devstack import aws
from devstack.aws import StackNames, create_resources
from devstack.dovecot import Dovecot, OAuth2Introspection
from devstack.moto import MotoServer
from devstack.server import LocalServer
from devstack.smtp import SmtpServer
from devstack.tls import HOST, TlsFiles, make_tls_files

if TYPE_CHECKING:
    from devstack.graph import GraphServer
    from devstack.oauth import AuthorizationServer

MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_SCOPE = "https://mail.google.com/"


@dataclass(frozen=True)
class OAuthMailbox:
    """A mailbox on the OAuth Dovecot and the app registration allowed to use it."""

    user: str
    client_id: str
    client_secret: str = field(repr=False)


@dataclass(frozen=True)
class GraphMailbox:
    """A mailbox on the Graph-shaped server and the app registration allowed to use it."""

    user: str
    client_id: str
    client_secret: str = field(repr=False)


class LocalStackError(RuntimeError):
    """Stopping one or more servers failed (all the others were stopped anyway)."""


class LocalStack(LocalServer):
    """Owns a temp folder, the TLS files and every server; ``env()`` is the handler's environment.

    SMTP servers:

    * ``smtp``  — STARTTLS required, AUTH required (user :attr:`smtp_user` / :attr:`smtp_password`);
    * ``smtps`` — implicit TLS, AUTH required (same user);
    * ``smtp_open`` — plain, STARTTLS offered but not required, no AUTH required.

    OAuth 2.0 (started on first use, so tests that do not need it never pay for it):

    * ``oauth`` — the authorization server (``devstack.oauth``): client credentials, introspection;
    * ``oauth_dovecot`` — a second Dovecot that takes only XOAUTH2/OAUTHBEARER tokens (``passdb oauth2``);
    * ``oauth_smtp`` — STARTTLS required, ``AUTH XOAUTH2`` required; both check tokens at ``oauth``;
    * ``graph`` — the Graph-shaped mail API (``devstack.graph``), checking tokens at ``oauth`` too.

    :meth:`new_oauth_mailbox` gives a mailbox on ``oauth_dovecot`` and an app allowed to use it
    (Microsoft's client credentials); :meth:`new_google_mailbox` one and a service account delegated
    to it (Google's JWT bearer grant); :meth:`new_graph_mailbox` a mailbox on ``graph`` and an app
    with the application permissions ``Mail.ReadWrite`` and ``Mail.Send`` for it alone.
    """

    host = HOST
    smtp_user = "lettershop-relay"

    def __init__(self, names: StackNames | None = None) -> None:
        self.names = names or StackNames()
        self.smtp_password = secrets.token_urlsafe(16)
        self.root: Path | None = None
        self.tls: TlsFiles | None = None
        self._dovecot: Dovecot | None = None
        self._smtp: SmtpServer | None = None
        self._smtps: SmtpServer | None = None
        self._smtp_open: SmtpServer | None = None
        self._moto: MotoServer | None = None
        self._oauth: AuthorizationServer | None = None
        self._oauth_dovecot: Dovecot | None = None
        self._oauth_smtp: SmtpServer | None = None
        self._graph: GraphServer | None = None
        self._mailboxes = itertools.count(1)

    # -------------------------------------------------------------- servers

    @staticmethod
    def _need[T](server: T | None, what: str) -> T:
        if server is None:
            raise RuntimeError(f"LocalStack is not started ({what})")
        return server

    @property
    def dovecot(self) -> Dovecot:
        return self._need(self._dovecot, "dovecot")

    @property
    def smtp(self) -> SmtpServer:
        return self._need(self._smtp, "smtp")

    @property
    def smtps(self) -> SmtpServer:
        return self._need(self._smtps, "smtps")

    @property
    def smtp_open(self) -> SmtpServer:
        return self._need(self._smtp_open, "smtp_open")

    @property
    def moto(self) -> MotoServer:
        return self._need(self._moto, "moto")

    @property
    def oauth(self) -> AuthorizationServer:
        self._start_oauth()
        return self._need(self._oauth, "oauth")

    @property
    def oauth_dovecot(self) -> Dovecot:
        self._start_oauth()
        return self._need(self._oauth_dovecot, "oauth_dovecot")

    @property
    def oauth_smtp(self) -> SmtpServer:
        self._start_oauth()
        return self._need(self._oauth_smtp, "oauth_smtp")

    @property
    def graph(self) -> GraphServer:
        self._start_oauth()
        return self._need(self._graph, "graph")

    @property
    def endpoint_url(self) -> str:
        return self.moto.endpoint_url

    @property
    def ca_file(self) -> Path:
        return self._need(self.tls, "tls").ca_file

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start everything; on any failure stop what already runs and re-raise (with the log)."""
        if self.root is not None:
            raise RuntimeError("LocalStack already started")
        self.root = Path(tempfile.mkdtemp(prefix="lettershop-stack-"))
        # Dovecot's unprivileged processes must be able to traverse into their own sub-folder.
        self.root.chmod(0o755)
        try:
            self.tls = make_tls_files(self.root / "tls")
            # Subprocesses first, then the threads of aiosmtpd.
            self._moto = MotoServer(self.root)
            self._moto.start()
            self._dovecot = Dovecot(self.root, self.tls)
            self._dovecot.start()
            users = {self.smtp_user: self.smtp_password}
            self._smtp = SmtpServer(self.tls, users)
            self._smtp.start()
            self._smtps = SmtpServer(self.tls, users, implicit_tls=True)
            self._smtps.start()
            self._smtp_open = SmtpServer(self.tls, users, require_starttls=False, auth_required=False)
            self._smtp_open.start()
            create_resources(self._moto.endpoint_url, self.names)
        except BaseException:
            with contextlib.suppress(Exception):
                self.stop()
            raise

    def _start_oauth(self) -> None:
        """Start the authorization server, then the Dovecot and SMTP server that check its tokens."""
        if self._oauth is not None:
            return
        if self.root is None or self.tls is None:
            raise RuntimeError("LocalStack is not started (oauth)")
        from devstack.graph import GraphServer  # noqa: PLC0415  # Flask only when OAuth is used
        from devstack.oauth import AuthorizationServer  # noqa: PLC0415

        oauth = AuthorizationServer(self.tls)
        oauth.start()
        self._oauth = oauth
        try:
            self._oauth_dovecot = Dovecot(
                self.root,
                self.tls,
                oauth2=OAuth2Introspection(oauth.introspection_url, oauth.resource_id, oauth.resource_secret),
            )
            self._oauth_dovecot.start()
            self._oauth_smtp = SmtpServer(self.tls, introspect=oauth.introspector())
            self._oauth_smtp.start()
            self._graph = GraphServer(self.tls, oauth.introspector())
            self._graph.start()
        except BaseException:
            with contextlib.suppress(Exception):
                self._stop_oauth()
            raise

    def _stop_oauth(self) -> list[tuple[str, BaseException]]:
        errors: list[tuple[str, BaseException]] = []
        for name, server in (
            ("graph", self._graph),
            ("oauth_smtp", self._oauth_smtp),
            ("oauth_dovecot", self._oauth_dovecot),
            ("oauth", self._oauth),
        ):
            if server is None:
                continue
            try:
                server.stop()
            except Exception as err:  # keep going: the other servers must stop too
                errors.append((name, err))
        self._oauth_smtp = self._oauth_dovecot = None
        self._oauth = None
        self._graph = None
        return errors

    def stop(self) -> None:
        """Stop every server even if stopping one fails; then remove the folder. Idempotent."""
        errors: list[tuple[str, BaseException]] = self._stop_oauth()
        stoppers: list[tuple[str, Callable[[], None] | None]] = [
            ("smtp_open", self._smtp_open.stop if self._smtp_open else None),
            ("smtps", self._smtps.stop if self._smtps else None),
            ("smtp", self._smtp.stop if self._smtp else None),
            ("dovecot", self._dovecot.stop if self._dovecot else None),
            ("moto", self._moto.stop if self._moto else None),
        ]
        for name, stop in stoppers:
            if stop is None:
                continue
            try:
                stop()
            except Exception as err:  # keep going: the other servers must stop too
                errors.append((name, err))
        self._smtp_open = self._smtps = self._smtp = None
        self._dovecot = None
        self._moto = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
        self.tls = None
        if errors:
            detail = "; ".join(f"{name}: {err!r}" for name, err in errors)
            raise LocalStackError(f"stopping the local stack failed: {detail}") from errors[0][1]

    # ------------------------------------------------------------- per test

    def reset(self) -> None:
        """Empty moto and re-create the resources; forget received SMTP mail."""
        self.moto.reset()
        create_resources(self.moto.endpoint_url, self.names)
        for server in (self.smtp, self.smtps, self.smtp_open):
            server.clear()
        if self._oauth_smtp is not None:
            self._oauth_smtp.clear()
        if self._oauth is not None:
            self._oauth.clear()
        if self._graph is not None:
            self._graph.clear()

    def new_mailbox(self, prefix: str = "partner") -> tuple[str, str]:
        """A fresh POP3 user with an empty Maildir: ``(user, password)``."""
        user = f"{prefix}{next(self._mailboxes)}-{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        self.dovecot.add_user(user, password)
        return user, password

    def new_oauth_mailbox(self, scopes: frozenset[str] = frozenset({MICROSOFT_SCOPE})) -> OAuthMailbox:
        """A fresh mailbox on :attr:`oauth_dovecot`, and an app granted ``scopes`` and that mailbox
        (as an Exchange administrator grants an Entra app's service principal access to it)."""
        user = f"oauth{next(self._mailboxes)}-{secrets.token_hex(3)}"
        self.oauth_dovecot.add_user(user, secrets.token_urlsafe(12))  # userdb only: logins take tokens
        client_id, client_secret = self.oauth.add_client(user, scopes)
        return OAuthMailbox(user, client_id, client_secret)

    def new_google_mailbox(self, scopes: frozenset[str] = frozenset({GOOGLE_SCOPE})) -> OAuthMailbox:
        """A fresh mailbox on :attr:`oauth_dovecot` and a service account delegated to it; the
        mailbox's ``client_secret`` is the service account's JSON key."""
        user = f"google{next(self._mailboxes)}-{secrets.token_hex(3)}"
        self.oauth_dovecot.add_user(user, secrets.token_urlsafe(12))
        key = self.oauth.add_service_account(user, scopes)
        return OAuthMailbox(user, key["client_email"], json.dumps(key))

    def new_graph_mailbox(
        self, roles: frozenset[str] = frozenset({"Mail.ReadWrite", "Mail.Send"})
    ) -> GraphMailbox:
        """A fresh mailbox on :attr:`graph`, and an app granted ``roles`` (admin consent) whose
        Exchange RBAC for Applications scope is that mailbox alone; the app may ask for a token with
        the Graph server's scope (and, like any app of the tenant, the Exchange one)."""
        user = f"graph{next(self._mailboxes)}-{secrets.token_hex(3)}@contoso.example"
        self.graph.add_mailbox(user)
        client_id, client_secret = self.oauth.add_client(
            user, frozenset({self.graph.scope, MICROSOFT_SCOPE}), roles
        )
        return GraphMailbox(user, client_id, client_secret)

    def env(self) -> dict[str, str]:
        """Exactly the environment the poll handler needs to run against this stack (§8)."""
        return {
            "LETTERSHOP_CHANNELS_TABLE": self.names.channels_table,
            "LETTERSHOP_STATE_TABLE": self.names.state_table,
            "LETTERSHOP_SCRIPTS_BUCKET": self.names.scripts_bucket,
            "LETTERSHOP_ARCHIVE_BUCKET": self.names.archive_bucket,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": aws.REGION,
            "AWS_ACCESS_KEY_ID": aws.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": aws.ACCESS_KEY,
            "SSL_CERT_FILE": str(self.ca_file),
            "POWERTOOLS_SERVICE_NAME": "lettershop-email-channel",
            "POWERTOOLS_METRICS_NAMESPACE": "LetterShop",
            "POWERTOOLS_TRACE_DISABLED": "true",
        }

    def log_text(self) -> str:
        """Dovecot's and moto's logs, for failure messages."""
        parts = []
        if self._dovecot is not None:
            parts.append("--- dovecot ---\n" + self._dovecot.log_text())
        if self._oauth_dovecot is not None:
            parts.append("--- oauth dovecot ---\n" + self._oauth_dovecot.log_text())
        if self._moto is not None:
            parts.append("--- moto ---\n" + self._moto.log_text())
        return "\n".join(parts)
