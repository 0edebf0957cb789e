"""OAuth 2.0 tokens for XOAUTH2 logins (adapters/oauth.py): the cache, whose failure, Google's grant.

The token endpoint itself is real in tests/integration/test_oauth.py; here its answers are given.
"""

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuthError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey

from adapters import oauth
from adapters import secrets as secrets_adapter
from adapters.oauth import AccessToken, MailboxTokens, xoauth2
from adapters.token_http import BoundedTransport
from app.root import WARM
from domain.channel import OAuthClient
from domain.errors import ChannelFailure, TransientError

SRC = Path(__file__).resolve().parents[2] / "src"
MICROSOFT = OAuthClient(
    "microsoft",
    "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token",
    "app-1",
    "lettershop/acme/oauth",
    "https://outlook.office365.com/.default",
)
GOOGLE = OAuthClient(
    "google",
    "https://oauth2.googleapis.com/token",
    None,
    "lettershop/acme/google",
    "https://mail.google.com/",
)


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    WARM.reset()
    yield
    WARM.reset()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def tokens_with(
    answers: list[dict[str, Any]],
    clock: Clock,
    client: OAuthClient = MICROSOFT,
    mailbox: str = "box@contoso.example",
) -> tuple[MailboxTokens, list[int]]:
    """Tokens whose token endpoint gives ``answers`` one after the other; the list counts calls."""
    calls: list[int] = []
    tokens = MailboxTokens(client, mailbox, cache=WARM.tokens, clock=clock)

    def fetch() -> dict[str, Any]:
        calls.append(1)
        return answers[len(calls) - 1]

    tokens._client_credentials_token = fetch  # type: ignore[method-assign]
    tokens._google_token = fetch  # type: ignore[method-assign]
    return tokens, calls


def test_a_token_is_reused_until_shortly_before_it_expires() -> None:
    clock = Clock()
    tokens, calls = tokens_with(
        [{"access_token": "t1", "expires_in": 3600}, {"access_token": "t2", "expires_in": 3600}], clock
    )

    assert tokens.token() == AccessToken("t1", cached=False)
    clock.now += 3600 - oauth.RENEW_BEFORE_SECONDS - 1
    assert tokens.token() == AccessToken("t1", cached=True)
    clock.now += 2  # less than six minutes left: a poll could outlive it
    assert tokens.token() == AccessToken("t2", cached=False)
    assert len(calls) == 2


def test_a_short_lived_token_is_renewed_at_half_its_lifetime() -> None:
    clock = Clock()
    tokens, _ = tokens_with(
        [{"access_token": "t1", "expires_in": "60"}, {"access_token": "t2", "expires_in": 60}], clock
    )

    tokens.token()
    clock.now += 29
    assert tokens.token().value == "t1"
    clock.now += 2
    assert tokens.token().value == "t2"


def test_a_refused_cached_token_is_forgotten_and_the_next_one_fetched() -> None:
    clock = Clock()
    tokens, calls = tokens_with(
        [{"access_token": "t1", "expires_in": 3600}, {"access_token": "t2", "expires_in": 3600}], clock
    )
    tokens.token()
    cached = tokens.token()

    tokens.forget(cached)

    assert tokens.token() == AccessToken("t2", cached=False)
    assert len(calls) == 2


def test_the_cache_outlives_the_object_as_a_warm_function_does() -> None:
    clock = Clock()
    first, _ = tokens_with([{"access_token": "t1", "expires_in": 3600}], clock)
    first.token()
    # POP3 and SMTP log in to the same mailbox with one app-only token; a new invocation too.
    second, calls = tokens_with([], clock, mailbox="other@contoso.example")

    assert second.token() == AccessToken("t1", cached=True)
    assert calls == []


def test_google_tokens_are_per_mailbox() -> None:
    clock = Clock()
    first, _ = tokens_with([{"access_token": "g1", "expires_in": 3600}], clock, GOOGLE, "a@acme.example")
    first.token()
    second, calls = tokens_with([{"access_token": "g2", "expires_in": 3600}], clock, GOOGLE, "b@acme.example")

    assert second.token().value == "g2"
    assert len(calls) == 1


def test_an_answer_without_a_token_is_the_channels_failure() -> None:
    tokens, _ = tokens_with([{"token_type": "Bearer"}], Clock())

    with pytest.raises(ChannelFailure) as caught:
        tokens.token()
    assert caught.value.setting == "oauth_token_url"


def test_the_xoauth2_string_is_as_microsoft_and_google_define_it() -> None:
    assert xoauth2("box@contoso.example", AccessToken("T0K", cached=False)) == (
        "user=box@contoso.example\x01auth=Bearer T0K\x01\x01"
    )
    assert "T0K" not in repr(AccessToken("T0K", cached=True))


def gaierror_in_a_requests_error() -> requests.ConnectionError:
    try:
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except socket.gaierror as cause:
            raise requests.ConnectionError("Max retries exceeded") from cause
    except requests.ConnectionError as error:
        return error


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status}", response=response)


@pytest.mark.parametrize(
    ("error", "client", "expected", "setting"),
    [
        (
            OAuthError("invalid_client", "AADSTS7000215: Invalid client secret provided."),
            MICROSOFT,
            ChannelFailure,
            "oauth_client_id, oauth_secret",
        ),
        (
            OAuthError("invalid_scope", "AADSTS70011"),
            MICROSOFT,
            ChannelFailure,
            "oauth_scope (or the permission granted to the app)",
        ),
        (
            OAuthError("unauthorized_client", "AADSTS700016"),
            MICROSOFT,
            ChannelFailure,
            "oauth_client_id (the app's permission to use the mailbox)",
        ),
        (
            OAuthError("invalid_request", "AADSTS90002: Tenant not found"),
            MICROSOFT,
            ChannelFailure,
            "oauth_tenant, oauth_client_id, oauth_token_url",
        ),
        (
            OAuthError(
                "unauthorized_client", "Client is unauthorized to retrieve access tokens using this method"
            ),
            GOOGLE,
            ChannelFailure,
            "oauth_secret (the service account's domain-wide delegation)",
        ),
        (OAuthError("temporarily_unavailable", "try later"), MICROSOFT, TransientError, None),
        (requests.Timeout("Read timed out"), MICROSOFT, TransientError, None),
        (requests.ConnectionError("Connection refused"), MICROSOFT, TransientError, None),
        (gaierror_in_a_requests_error(), MICROSOFT, ChannelFailure, "oauth_tenant"),
        (gaierror_in_a_requests_error(), GOOGLE, ChannelFailure, "oauth_token_url"),
        (
            requests.exceptions.SSLError("certificate verify failed"),
            MICROSOFT,
            ChannelFailure,
            "oauth_token_url (or its certificate)",
        ),
        (http_error(503), MICROSOFT, TransientError, None),
        (http_error(429), MICROSOFT, TransientError, None),
        (http_error(404), MICROSOFT, ChannelFailure, "oauth_token_url"),
        (  # a malformed answer is the endpoint's (the setting's), though requests files it as its own
            requests.exceptions.JSONDecodeError("Expecting value", "<html>", 0),
            MICROSOFT,
            ChannelFailure,
            "oauth_token_url",
        ),
    ],
)
def test_failures_are_sorted_by_whose_they_are(
    error: Exception, client: OAuthClient, expected: type[Exception], setting: str | None
) -> None:
    classified = oauth._classified(error, client)

    assert type(classified) is expected
    if isinstance(classified, ChannelFailure):
        assert classified.setting == setting
    if isinstance(error, OAuthError):
        assert error.error in str(classified)
        assert str(error.description) in str(classified)  # the provider's own text


def test_the_poll_handler_loads_no_oauth_library_at_cold_start() -> None:
    code = (
        "import sys, handlers.poll; "
        "print(sorted(m for m in ('authlib', 'requests', 'flask') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=SRC,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "[]"


def test_google_sends_a_service_account_assertion_for_the_mailbox(monkeypatch: pytest.MonkeyPatch) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    key = {
        "type": "service_account",
        "client_email": "lettershop@acme.iam.gserviceaccount.com",
        "private_key": pem,
        "private_key_id": "k1",
    }
    monkeypatch.setattr(
        secrets_adapter.SecretStore, "text", lambda store, secret_id, setting: json.dumps(key)
    )
    sent: list[requests.PreparedRequest] = []

    def send(adapter: object, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        sent.append(request)
        response = requests.Response()
        response.status_code = 200
        response._content = json.dumps(
            {"access_token": "ya29.x", "expires_in": 3599, "token_type": "Bearer"}
        ).encode()
        response.headers["Content-Type"] = "application/json"
        return response

    monkeypatch.setattr(BoundedTransport, "send", send)

    token = MailboxTokens(GOOGLE, "orders@acme.example").token()

    assert token == AccessToken("ya29.x", cached=False)
    [request] = sent
    assert request.url == GOOGLE.token_url
    form = dict(pair.split("=", 1) for pair in str(request.body).split("&"))
    assert form["grant_type"] == "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
    assertion = jwt.decode(
        form["assertion"],
        RSAKey.import_key(
            private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        ),
    )
    claims = assertion.claims
    assert (claims["iss"], claims["sub"], claims["aud"], claims["scope"]) == (
        "lettershop@acme.iam.gserviceaccount.com",
        "orders@acme.example",
        GOOGLE.token_url,
        "https://mail.google.com/",
    )
    assert assertion.header["kid"] == "k1"


def test_a_secret_that_is_not_a_service_account_key_names_oauth_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        secrets_adapter.SecretStore, "text", lambda store, secret_id, setting: "just-a-password"
    )

    with pytest.raises(ChannelFailure, match="not a Google service account key") as caught:
        MailboxTokens(GOOGLE, "orders@acme.example").token()
    assert caught.value.setting == "oauth_secret"
    assert "just-a-password" not in str(caught.value)


def test_a_service_account_key_that_cannot_sign_names_oauth_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    key = {
        "client_email": "x@acme.iam.gserviceaccount.com",
        "private_key": "-----BEGIN PRIVATE KEY-----\nnope",
    }
    monkeypatch.setattr(
        secrets_adapter.SecretStore, "text", lambda store, secret_id, setting: json.dumps(key)
    )

    with pytest.raises(ChannelFailure, match="not an RSA key") as caught:
        MailboxTokens(GOOGLE, "orders@acme.example").token()
    assert caught.value.setting == "oauth_secret"


def test_a_client_secret_may_be_stored_as_json() -> None:
    assert (
        secrets_adapter._password_from("s", '{"client_secret": "abc"}', "oauth_secret", key="client_secret")
        == "abc"
    )
    with pytest.raises(ChannelFailure, match='without a "client_secret"'):
        secrets_adapter._password_from("s", '{"password": "abc"}', "oauth_secret", key="client_secret")
