"""A real OAuth 2.0 authorization server on 127.0.0.1 (authlib's Flask integration, over HTTPS).

It stands in for Microsoft Entra ID / Google's token endpoint in the local stack:

* ``POST /token`` (also ``/<tenant>/oauth2/v2.0/token``, the Microsoft shape): the client-credentials
  grant (RFC 6749 §4.4). A client is registered with :meth:`AuthorizationServer.add_client`: its
  secret, the scopes it was granted and the one mailbox it may use (the "mailbox permission" an
  Exchange administrator grants to the app's service principal). A wrong secret is answered
  ``invalid_client``, a scope that was not granted ``invalid_scope``, as Entra does.
* The JWT bearer grant (RFC 7523) of a Google service account: :meth:`AuthorizationServer.add_service_account`
  gives a JSON key like Google's; the signed assertion's ``sub`` must be the mailbox the account was
  delegated (domain-wide delegation), its ``scope`` claim a granted scope, else ``unauthorized_client``
  / ``invalid_scope`` as Google answers.
* ``POST /introspect``: token introspection (RFC 7662) for the mail servers (Dovecot's ``passdb
  oauth2``, the aiosmtpd XOAUTH2 authenticator) and the Graph-shaped server (``devstack.graph``),
  which authenticate as the resource server :attr:`AuthorizationServer.resource_id`. An active
  token's ``username`` is its client's mailbox; its ``roles`` the application permissions the
  client had been granted (admin consent) when the token was issued, as an Entra app-only token's
  ``roles`` claim carries them.

Test controls: :meth:`expire_tokens` (every token issued so far becomes inactive, as if its lifetime
had passed), :attr:`token_lifetime`, :attr:`delay_seconds` (a slow token endpoint, for timeouts),
:attr:`token_requests` (what the token endpoint answered).
"""

from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer as FlaskAuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, InvalidScopeError, TokenMixin, UnauthorizedClientError
from authlib.oauth2.rfc6749.grants import ClientCredentialsGrant
from authlib.oauth2.rfc7523 import JWTBearerGrant
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from joserfc.jwk import RSAKey

from devstack.server import LocalServer
from devstack.tls import HOST, TlsFiles
from devstack.wsgi import ThreadedWsgi

MS_TOKEN_PATH = "/<tenant>/oauth2/v2.0/token"


@dataclass
class RegisteredClient(ClientMixin):  # type: ignore[misc]  # authlib has no type hints
    """An app registration: client id and secret, granted scopes, the mailbox it may use."""

    client_id: str
    client_secret: str
    scopes: frozenset[str]
    mailbox: str
    resource_server: bool = False
    roles: frozenset[str] = frozenset()  # application permissions consented, e.g. Mail.ReadWrite
    grant_type: str = "client_credentials"
    public_key: RSAKey | None = None  # a service account's, for its signed assertions

    def get_client_id(self) -> str:
        return self.client_id

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in self.scopes)

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == self.grant_type and not self.resource_server


@dataclass
class IssuedToken(TokenMixin):  # type: ignore[misc]
    access_token: str
    client: RegisteredClient
    scope: str
    issued_at: float
    expires_in: int
    revoked: bool = False
    roles: frozenset[str] = frozenset()  # the client's when the token was issued

    def check_client(self, client: ClientMixin) -> bool:
        return bool(client.get_client_id() == self.client.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked


@dataclass(frozen=True)
class TokenRequest:
    """One answer of the token endpoint: whose request, and ``ok`` or the OAuth error code."""

    client_id: str
    result: str


class _ScopedClientCredentials(ClientCredentialsGrant):  # type: ignore[misc]
    """Client credentials; a scope the client was not granted is ``invalid_scope`` (as Entra does)."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012

    def validate_requested_scope(self) -> None:
        requested = set((self.request.payload.scope or "").split())
        client: RegisteredClient = self.request.client
        missing = requested - client.scopes
        if missing:
            raise InvalidScopeError(
                f"the application {client.client_id} was not granted {' '.join(sorted(missing))}"
            )


class _ServiceAccountGrant(JWTBearerGrant):  # type: ignore[misc]
    """Google's service-account flow: ``iss`` = the account, ``sub`` = the mailbox, ``scope`` claim."""

    clients: dict[str, RegisteredClient] = {}  # noqa: RUF012  # set per server in AuthorizationServer._app

    def resolve_issuer_client(self, issuer: str) -> RegisteredClient | None:
        client = self.clients.get(issuer)
        return client if client is not None and client.public_key is not None else None

    def resolve_client_public_key(self, client: RegisteredClient) -> RSAKey:
        assert client.public_key is not None
        return client.public_key

    def authenticate_user(self, subject: str) -> str:
        return subject

    def has_granted_permission(self, client: RegisteredClient, user: str) -> bool:
        if user != client.mailbox:
            raise UnauthorizedClientError(
                "Client is unauthorized to retrieve access tokens using this method, "
                "or client not authorized for any of the scopes requested."
            )
        return True

    def validate_requested_scope(self) -> None:
        _, claims = self.extract_assertion(self.request.form["assertion"])
        requested = set(str(claims.get("scope", "")).split())
        client: RegisteredClient = self.request.client
        if not requested or not requested <= client.scopes:
            raise InvalidScopeError("Invalid OAuth scope or ID token audience provided.")


@dataclass
class _Store:
    clients: dict[str, RegisteredClient] = field(default_factory=dict)
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    requests: list[TokenRequest] = field(default_factory=list)


class AuthorizationServer(LocalServer):
    """authlib's Flask authorization server, served by werkzeug over TLS in a thread."""

    host = HOST

    def __init__(self, tls: TlsFiles, *, token_lifetime: int = 3600) -> None:
        self.tls = tls
        self.token_lifetime = token_lifetime
        self.delay_seconds = 0.0
        self.resource_id = "mail-servers"
        self.resource_secret = secrets.token_urlsafe(16)
        self._store = _Store()
        self._lock = threading.Lock()
        self._http = ThreadedWsgi("oauth-server")
        self.port = 0

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._add(RegisteredClient(self.resource_id, self.resource_secret, frozenset(), "", True))
        self.port = self._http.start(self._app(), self.tls)

    def stop(self) -> None:
        self._http.stop()

    @property
    def running(self) -> bool:
        return self._http.running

    # -------------------------------------------------------------- addresses

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    def microsoft_token_url(self, tenant: str) -> str:
        """The token URL in Entra's shape, ``https://.../<tenant>/oauth2/v2.0/token``."""
        return f"{self.base_url}/{tenant}/oauth2/v2.0/token"

    @property
    def introspection_url(self) -> str:
        return f"{self.base_url}/introspect"

    # ---------------------------------------------------------------- clients

    def add_client(
        self,
        mailbox: str,
        scopes: set[str] | frozenset[str],
        roles: set[str] | frozenset[str] = frozenset(),
    ) -> tuple[str, str]:
        """Register an app allowed ``scopes`` and to use ``mailbox``, with the application
        permissions ``roles`` consented: ``(client_id, client_secret)``."""
        client_id = f"app-{secrets.token_hex(6)}"
        secret = secrets.token_urlsafe(24)
        self._add(RegisteredClient(client_id, secret, frozenset(scopes), mailbox, roles=frozenset(roles)))
        return client_id, secret

    def set_roles(self, client_id: str, roles: set[str] | frozenset[str]) -> None:
        """Grant or revoke (admin consent) application permissions: tokens issued from now on carry
        ``roles``; those issued before keep theirs until they expire (:meth:`expire_tokens`)."""
        with self._lock:
            client = self._store.clients[client_id]
            self._store.clients[client_id] = replace(client, roles=frozenset(roles))

    def add_service_account(self, mailbox: str, scopes: set[str] | frozenset[str]) -> dict[str, str]:
        """Register a service account delegated ``mailbox`` with ``scopes``; its JSON key, shaped
        like the one Google's console downloads."""
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        email = f"lettershop-{secrets.token_hex(4)}@devstack.iam.gserviceaccount.com"
        public = RSAKey.import_key(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self._add(
            RegisteredClient(
                email, "", frozenset(scopes), mailbox, grant_type=JWTBearerGrant.GRANT_TYPE, public_key=public
            )
        )
        return {
            "type": "service_account",
            "client_email": email,
            "private_key_id": secrets.token_hex(8),
            "private_key": pem,
            "token_uri": self.token_url,
        }

    def _add(self, client: RegisteredClient) -> None:
        with self._lock:
            self._store.clients[client.client_id] = client

    def expire_tokens(self) -> None:
        """Every token issued so far is no longer active (as if its lifetime had passed)."""
        with self._lock:
            for token in self._store.tokens.values():
                token.revoked = True

    @property
    def issued_tokens(self) -> list[str]:
        """Every access token issued since the last :meth:`clear` (for "never logged" checks)."""
        with self._lock:
            return list(self._store.tokens)

    @property
    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._store.requests)

    def clear(self) -> None:
        """Forget tokens and requests, undo delays and lifetimes (clients stay)."""
        with self._lock:
            self._store.tokens.clear()
            self._store.requests.clear()
        self.delay_seconds = 0.0
        self.token_lifetime = 3600

    def introspector(self) -> Callable[[str], dict[str, Any]]:
        """A function that asks this server's introspection endpoint over HTTPS, as a mail server
        would (the SMTP server's XOAUTH2 authenticator uses it)."""
        return introspection_client(
            self.introspection_url, self.resource_id, self.resource_secret, self.tls.ca_file
        )

    # -------------------------------------------------------------------- app

    def _app(self) -> Flask:
        app = Flask("lettershop-oauth")
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"client_credentials": 3600}
        store, lock = self._store, self._lock

        def query_client(client_id: str) -> RegisteredClient | None:
            with lock:
                return store.clients.get(client_id)

        def save_token(token: dict[str, Any], request: Any) -> None:
            token["expires_in"] = self.token_lifetime
            with lock:
                store.tokens[token["access_token"]] = IssuedToken(
                    token["access_token"],
                    request.client,
                    token.get("scope", ""),
                    time.time(),
                    self.token_lifetime,
                    roles=request.client.roles,
                )

        server = FlaskAuthorizationServer(app, query_client=query_client, save_token=save_token)
        server.register_grant(_ScopedClientCredentials)

        def token_url() -> str:  # the port is known once the server is bound
            return self.token_url

        class ServiceAccountGrant(_ServiceAccountGrant):
            clients = store.clients

            def get_audiences(self) -> list[str]:
                return [token_url()]

        server.register_grant(ServiceAccountGrant)

        class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
            CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012

            def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
                with lock:
                    return store.tokens.get(token_string)

            def check_permission(self, token: IssuedToken, client: RegisteredClient, request: Any) -> bool:
                return client.resource_server

            def introspect_token(self, token: IssuedToken) -> dict[str, Any]:
                return _payload(token)

        server.register_endpoint(Introspection)

        def token_endpoint(tenant: str = "") -> Any:
            if self.delay_seconds:
                time.sleep(self.delay_seconds)
            from flask import request  # noqa: PLC0415  # Flask's request proxy, inside the view only

            response = server.create_token_response()
            client_id = request.form.get("client_id") or (
                request.authorization.username if request.authorization else _issuer(request.form)
            )
            result = "ok" if response.status_code == 200 else response.get_json().get("error", "?")
            with lock:
                store.requests.append(TokenRequest(client_id or "", result))
            return response

        app.add_url_rule("/token", "token", token_endpoint, methods=["POST"])
        app.add_url_rule(MS_TOKEN_PATH, "ms_token", token_endpoint, methods=["POST"])
        app.add_url_rule(
            "/introspect",
            "introspect",
            lambda: server.create_endpoint_response(Introspection.ENDPOINT_NAME),
            methods=["POST"],
        )
        return app


def introspection_client(
    url: str, client_id: str, client_secret: str, ca_file: Path
) -> Callable[[str], dict[str, Any]]:
    """RFC 7662 introspection over HTTPS (certificate verified against ``ca_file``), as a resource
    server does it: ``POST token=...`` with HTTP Basic client authentication."""
    context = ssl.create_default_context(cafile=str(ca_file))
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()

    def introspect(token: str) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310  # an https URL of our own server
            url,
            data=urllib.parse.urlencode({"token": token}).encode(),
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
            answer = json.load(response)
        return answer if isinstance(answer, dict) else {"active": False}

    return introspect


def _issuer(form: Any) -> str:
    """The ``iss`` of a JWT bearer assertion (unverified: only to say whose request it was)."""
    try:
        payload = str(form.get("assertion", "")).split(".")[1]
        return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("iss", ""))
    except (IndexError, ValueError):
        return ""


def _payload(token: IssuedToken) -> dict[str, Any]:
    return {
        "active": True,
        "client_id": token.client.client_id,
        "token_type": "Bearer",
        "scope": token.scope,
        "username": token.client.mailbox,
        "roles": sorted(token.roles),
        "iat": int(token.issued_at),
        "exp": int(token.issued_at + token.expires_in),
    }
