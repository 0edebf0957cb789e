"""OAuth 2.0 access tokens for the mailbox logins (SASL ``XOAUTH2``), cached across warm invocations.

* ``microsoft`` and ``generic``: the client-credentials grant (RFC 6749 §4.4) with the client id and
  the client secret from Secrets Manager; Microsoft 365 issues app-only tokens for ``POP.AccessAsApp``
  and ``SMTP.SendAsApp``.
* ``google``: the JWT bearer grant (RFC 7523) of a service account with domain-wide delegation, on
  behalf of the mailbox (``sub``); the secret holds the service account's JSON key.

Tokens come from authlib (imported when a token is fetched, never at cold start) over ``requests``,
with the same certificate verification as the mail servers (``ssl.create_default_context()``, so
``SSL_CERT_FILE`` applies). The whole request has one deadline (``TIMEOUT_SECONDS``, not per read)
and its answer a size cap (64 KiB), both kept by ``adapters.token_http``. A token is reused until
shortly before it expires: a poll may run five minutes and logs in to SMTP for each reply, so the
margin is six minutes (half the lifetime of a shorter-lived token). Neither a token nor a secret
ever reaches a log line or an error message.

Whose failure (DESIGN §6): the provider refusing the client (``invalid_client``, ``unauthorized_client``,
``invalid_scope``, ...) is a ``ChannelFailure`` naming the attribute to fix, with the provider's error
text; an answer that is too large or not a JSON object is a ``ChannelFailure`` naming ``oauth_token_url``;
a timeout (the deadline passed), a dropped connection or a 5xx/429 answer is a ``TransientError``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from adapters.network import unknown_host
from adapters.secrets import SecretStore
from domain.channel import OAuthClient
from domain.errors import ChannelFailure, LetterShopError, TransientError
from service.telemetry import logger

if TYPE_CHECKING:
    import requests

TIMEOUT_SECONDS = 15.0
RENEW_BEFORE_SECONDS = 360.0
DEFAULT_LIFETIME_SECONDS = 300  # a token endpoint that does not say how long its token lives
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

# The provider's error code: which attributes of the channel to fix (RFC 6749 §5.2).
TRANSIENT_ERRORS = frozenset({"temporarily_unavailable", "server_error", "slow_down"})
SETTINGS_BY_ERROR = {
    "invalid_client": "oauth_client_id, oauth_secret",
    "unauthorized_client": "oauth_client_id (the app's permission to use the mailbox)",
    "invalid_scope": "oauth_scope (or the permission granted to the app)",
    "invalid_grant": "oauth_secret",
    "unsupported_grant_type": "oauth_provider, oauth_token_url",
    "invalid_request": "oauth_tenant, oauth_client_id, oauth_token_url",
}
GOOGLE_SETTINGS_BY_ERROR = {
    "invalid_client": "oauth_secret (the service account key)",
    "unauthorized_client": "oauth_secret (the service account's domain-wide delegation)",
    "invalid_grant": "oauth_secret (the service account key), the mailbox user name",
}
ALL_SETTINGS = "oauth_provider, oauth_tenant, oauth_client_id, oauth_secret, oauth_scope"


@dataclass(frozen=True)
class AccessToken:
    """A bearer token; ``cached`` when it was obtained by an earlier login (maybe revoked since)."""

    value: str = field(repr=False)
    cached: bool


@dataclass(frozen=True)
class _Key:
    provider: str
    token_url: str
    client_id: str | None
    secret: str
    scope: str | None
    subject: str | None


@dataclass(frozen=True)
class _Entry:
    value: str = field(repr=False)
    renew_at: float


class TokenCache:
    """The access tokens this process obtained, per OAuth client (and Google mailbox); kept across
    warm invocations by ``app.warm``."""

    def __init__(self) -> None:
        self._entries: dict[_Key, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, key: _Key) -> _Entry | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: _Key, entry: _Entry) -> None:
        with self._lock:
            self._entries[key] = entry

    def drop(self, key: _Key, value: str) -> None:
        """Forget the token of ``key`` if it is still ``value``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.value == value:
                del self._entries[key]

    def clear(self) -> None:
        """Forget every cached token (a cold start)."""
        with self._lock:
            self._entries.clear()


class TokenSource(Protocol):
    """Where the POP3 and SMTP adapters get the bearer token of their ``XOAUTH2`` login."""

    def token(self) -> AccessToken: ...

    def forget(self, token: AccessToken) -> None: ...


def xoauth2(user: str, token: AccessToken) -> str:
    """The SASL XOAUTH2 initial response (before base64), as Microsoft and Google define it."""
    return f"user={user}\x01auth=Bearer {token.value}\x01\x01"


class MailboxTokens:
    """Access tokens of one OAuth client for one mailbox; implements the ``TokenSource`` the POP3
    and SMTP adapters log in with. ``cache`` and ``secrets`` are the warm state's (default: a
    private, cold one)."""

    def __init__(
        self,
        client: OAuthClient,
        mailbox: str,
        *,
        cache: TokenCache | None = None,
        secrets: SecretStore | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float | None = None,
    ) -> None:
        self._client = client
        self._cache = cache if cache is not None else TokenCache()
        self._secrets = secrets if secrets is not None else SecretStore()
        # Google tokens are issued on behalf of one user; app-only tokens serve every mailbox.
        self._key = _Key(
            client.provider,
            client.token_url,
            client.client_id,
            client.secret,
            client.scope,
            mailbox if client.provider == "google" else None,
        )
        self._mailbox = mailbox
        self._clock = clock
        self._timeout = timeout if timeout is not None else TIMEOUT_SECONDS

    def token(self) -> AccessToken:
        """A cached token still valid for a while, else a new one from the token endpoint."""
        entry = self._cache.get(self._key)
        if entry is not None and self._clock() < entry.renew_at:
            logger.debug("OAuth access token reused from the cache", extra=self._where())
            return AccessToken(entry.value, cached=True)
        return self._fetch()

    def forget(self, token: AccessToken) -> None:
        """The mail server refused ``token``: the next :meth:`token` fetches a new one."""
        self._cache.drop(self._key, token.value)
        logger.info("the mail server refused the cached OAuth access token; renewing it", extra=self._where())

    def _where(self) -> dict[str, Any]:
        return {"token_url": self._client.token_url, "oauth_client_id": self._client.client_id or "-"}

    def _fetch(self) -> AccessToken:
        client = self._client
        started = self._clock()
        answer = self._google_token() if client.provider == "google" else self._client_credentials_token()
        value = answer.get("access_token")
        if not isinstance(value, str) or not value:
            raise ChannelFailure(
                f"token endpoint {client.token_url} answered without an access_token",
                setting="oauth_token_url",
            )
        lifetime = _lifetime(answer)
        renew_at = started + lifetime - min(RENEW_BEFORE_SECONDS, lifetime / 2)
        self._cache.put(self._key, _Entry(value, renew_at))
        logger.debug("OAuth access token obtained", extra={**self._where(), "expires_in": lifetime})
        return AccessToken(value, cached=False)

    def _client_credentials_token(self) -> dict[str, Any]:
        from authlib.integrations.requests_client import OAuth2Session  # noqa: PLC0415  # cold start

        client = self._client
        secret = self._secrets.client_secret(client.secret, setting="oauth_secret")
        session = OAuth2Session(
            client_id=client.client_id,
            client_secret=secret,
            scope=client.scope,
            # Entra documents the secret in the form body; RFC 6749 servers must take HTTP Basic.
            token_endpoint_auth_method="client_secret_post"
            if client.provider == "microsoft"
            else "client_secret_basic",
        )
        with session:
            _bounded(session, client, self._timeout)
            return self._call(
                lambda: session.fetch_token(
                    client.token_url, grant_type="client_credentials", timeout=self._timeout
                )
            )

    def _google_token(self) -> dict[str, Any]:
        from authlib.integrations.requests_client import AssertionSession  # noqa: PLC0415  # cold start

        client = self._client
        key = _service_account_key(client.secret, self._secrets.text(client.secret, setting="oauth_secret"))
        signing_key = _rsa_key(client.secret, key["private_key"])
        session = AssertionSession(
            token_endpoint=client.token_url,
            issuer=key["client_email"],
            subject=self._mailbox,
            audience=client.token_url,
            grant_type=JWT_BEARER,
            # Google reads the scope from the assertion's claims (not from a form field).
            claims={"scope": client.scope} if client.scope else None,
            key=signing_key,
            header={"alg": "RS256", **({"kid": key["private_key_id"]} if key.get("private_key_id") else {})},
            default_timeout=self._timeout,
        )
        with session:
            _bounded(session, client, self._timeout)
            return self._call(session.refresh_token)

    def _call(self, fetch: Callable[[], Any]) -> dict[str, Any]:
        try:
            answer = fetch()
        except LetterShopError:
            raise
        except Exception as error:  # authlib, requests and the key's crypto each raise their own
            raise _classified(error, self._client) from None
        return dict(answer)


def _bounded(session: requests.Session, client: OAuthClient, seconds: float) -> None:
    """The request of ``session`` verified like the mail servers, done within ``seconds``, its answer
    capped (``adapters.token_http``)."""
    from adapters.token_http import BoundedTransport  # noqa: PLC0415  # cold start: imports requests

    session.trust_env = False  # no proxy or CA bundle from the environment beyond OpenSSL's own
    session.mount("https://", BoundedTransport(f"token endpoint {client.token_url}", seconds))


def _service_account_key(secret_id: str, text: str) -> dict[str, str]:
    try:
        key = json.loads(text)
    except json.JSONDecodeError:
        key = None
    if not isinstance(key, dict) or not all(
        isinstance(key.get(name), str) for name in ("client_email", "private_key")
    ):
        raise ChannelFailure(
            f"secret {secret_id} is not a Google service account key (JSON with client_email, private_key)",
            setting="oauth_secret",
        )
    return {name: value for name, value in key.items() if isinstance(value, str)}


def _rsa_key(secret_id: str, pem: str) -> Any:
    from joserfc.jwk import RSAKey  # noqa: PLC0415  # cold start (comes with authlib)

    try:
        return RSAKey.import_key(pem)
    except Exception:  # joserfc and cryptography raise several kinds for a bad key
        raise ChannelFailure(
            f"secret {secret_id}: the private_key of the service account key is not an RSA key",
            setting="oauth_secret",
        ) from None


def _lifetime(answer: dict[str, Any]) -> float:
    try:
        lifetime = float(answer.get("expires_in", DEFAULT_LIFETIME_SECONDS))
    except (TypeError, ValueError):
        lifetime = DEFAULT_LIFETIME_SECONDS
    return max(lifetime, 0.0)


def _classified(error: Exception, client: OAuthClient) -> LetterShopError:  # noqa: PLR0911  # one per kind
    """Whose failure a failed token request is (see the module's docstring)."""
    import requests  # noqa: PLC0415  # loaded already by authlib at this point

    where = f"token endpoint {client.token_url}"
    code = getattr(error, "error", None)
    if isinstance(code, str) and code:  # authlib's OAuthError: the provider's own answer
        description = getattr(error, "description", None) or ""
        text = f"{code}: {description}".rstrip(": ")
        if code in TRANSIENT_ERRORS:
            return TransientError(f"{where} answered {text}")
        settings = (GOOGLE_SETTINGS_BY_ERROR if client.provider == "google" else {}).get(code)
        return ChannelFailure(
            f"{where} refused the OAuth client {client.client_id or '(service account)'}: {text}",
            setting=settings or SETTINGS_BY_ERROR.get(code, ALL_SETTINGS),
        )
    if isinstance(error, requests.Timeout):
        return TransientError(f"{where} did not answer in time: {error}")
    if isinstance(error, requests.exceptions.SSLError):
        return ChannelFailure(f"{where}: TLS failed: {error}", setting="oauth_token_url (or its certificate)")
    if isinstance(error, requests.ConnectionError):
        if _caused_by_unknown_host(error):
            return ChannelFailure(
                f"{where}: not a known host name: {error}",
                setting="oauth_tenant" if client.provider == "microsoft" else "oauth_token_url",
            )
        return TransientError(f"{where} not reachable: {error}")
    if isinstance(error, requests.HTTPError) and error.response is not None:
        status = error.response.status_code
        if status >= 500 or status == 429:
            return TransientError(f"{where} answered HTTP {status} (will be retried)")
        return ChannelFailure(f"{where} answered HTTP {status}", setting="oauth_token_url")
    if isinstance(error, json.JSONDecodeError) or (isinstance(error, ValueError) and "JSON" in str(error)):
        return ChannelFailure(f"{where}: not a JSON token answer: {error}", setting="oauth_token_url")
    if isinstance(error, requests.RequestException):
        return TransientError(f"{where} failed: {error}")
    # Anything else happened before the request: a key that cannot sign, say.
    return ChannelFailure(
        f"the OAuth token request to {where} could not be made: {type(error).__name__}",
        setting="oauth_secret",
    )


def _caused_by_unknown_host(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror) and unknown_host(current):
            return True
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = current.__cause__ or (reason if isinstance(reason, BaseException) else None) or nested
    return False
