"""OAuth 2.0 (XOAUTH2) mailbox logins through the handler, on the local stack (issue 12).

Real parts only: the authorization server of ``devstack.oauth`` (authlib) issues client-credentials
tokens and answers introspection; a Dovecot with ``passdb oauth2`` and an aiosmtpd server with an
XOAUTH2 authenticator accept only its active tokens, each checked by introspection over HTTPS.
"""

import base64
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters import oauth
from devstack import aws
from devstack.invoke import invoke_poll, store_oauth_channel
from devstack.oauth import AuthorizationServer
from devstack.samples import partner_mail
from devstack.stack import LocalStack, OAuthMailbox
from devstack.tls import make_tls_files
from handlers.poll import PollFailed
from tests.integration.conftest import JsonLogs

EVENT = {"channel_id": "acme"}
PARTNER = "orders@partner.example"
TENANT = "contoso.onmicrosoft.com"
OAUTH_SECRET = "lettershop/acme/oauth"


@pytest.fixture
def box(stack: LocalStack) -> OAuthMailbox:
    return stack.new_oauth_mailbox()


@pytest.fixture
def oauth_logins(stack: LocalStack) -> Callable[[], int]:
    """How many XOAUTH2 logins the OAuth Dovecot accepted during this test (it serves the session)."""
    start = len(stack.oauth_dovecot.log_text())
    return lambda: stack.oauth_dovecot.log_text()[start:].count("method=XOAUTH2")


def ledger_entry(stack: LocalStack, raw: bytes) -> dict[str, Any]:
    pk = f"ledger#acme#{hashlib.sha256(raw).hexdigest()}"
    answer = aws.client("dynamodb", stack.endpoint_url).get_item(
        TableName=stack.names.state_table, Key={"pk": {"S": pk}}, ConsistentRead=True
    )
    return dict(answer.get("Item", {}))


def failure_of(json_logs: JsonLogs) -> dict[str, Any]:
    [line] = [line for line in json_logs.lines() if line["message"] == "poll ended in error"]
    return line


def test_an_oauth_channel_is_polled_and_answered_with_one_token(
    stack: LocalStack, box: OAuthMailbox, oauth_logins: Callable[[], int]
) -> None:
    store_oauth_channel(stack, box)
    raw = partner_mail()
    stack.oauth_dovecot.deliver(box.user, raw)

    result = invoke_poll(EVENT)

    assert (result["status"], result["processed"], result["deleted"]) == ("ok", 1, 1)
    [mail] = stack.oauth_smtp.wait_for(1)
    assert (mail.rcpt_tos, mail.authenticated_user, mail.tls) == ([PARTNER], box.user, True)
    assert stack.oauth_smtp.auth_attempts == [(box.user, True)]
    assert stack.oauth_dovecot.mailbox(box.user) == []
    assert oauth_logins() == 1
    # One app-only token serves the POP3 login and the SMTP login: one request at the token endpoint.
    assert [(r.client_id, r.result) for r in stack.oauth.token_requests] == [(box.client_id, "ok")]


def test_a_generic_provider_over_stls_with_its_own_scope(stack: LocalStack) -> None:
    box = stack.new_oauth_mailbox(scopes=frozenset({"mail.pop", "mail.send"}))
    store_oauth_channel(
        stack,
        box,
        pop3_port=stack.oauth_dovecot.pop3_port,
        pop3_security="starttls",
        oauth_provider="generic",
        oauth_tenant=None,
        oauth_token_url=stack.oauth.token_url,
        oauth_scope="mail.pop mail.send",
    )
    stack.oauth_dovecot.deliver(box.user, partner_mail())

    result = invoke_poll(EVENT)

    assert (result["status"], result["processed"], result["deleted"]) == ("ok", 1, 1)
    assert [mail.authenticated_user for mail in stack.oauth_smtp.received] == [box.user]


def test_a_google_channel_logs_in_with_a_service_accounts_assertion_per_mailbox(
    stack: LocalStack, oauth_logins: Callable[[], int]
) -> None:
    box = stack.new_google_mailbox()
    store_oauth_channel(
        stack,
        box,
        oauth_provider="google",
        oauth_tenant=None,
        oauth_client_id=None,
        oauth_token_url=stack.oauth.token_url,  # instead of https://oauth2.googleapis.com/token
    )
    stack.oauth_dovecot.deliver(box.user, partner_mail())

    result = invoke_poll(EVENT)

    assert (result["status"], result["processed"], result["deleted"]) == ("ok", 1, 1)
    assert [mail.authenticated_user for mail in stack.oauth_smtp.received] == [box.user]
    assert oauth_logins() == 1
    # The service account's signed assertion (JWT bearer grant), verified by the server with its key.
    assert [(r.client_id, r.result) for r in stack.oauth.token_requests] == [(box.client_id, "ok")]


def test_a_google_mailbox_without_delegation_names_the_service_account_key(
    stack: LocalStack, json_logs: JsonLogs
) -> None:
    box = stack.new_google_mailbox()
    other = stack.new_google_mailbox()  # a service account delegated another mailbox only
    store_oauth_channel(
        stack,
        box,
        oauth_provider="google",
        oauth_tenant=None,
        oauth_client_id=None,
        oauth_token_url=stack.oauth.token_url,
    )
    aws.put_secret(stack.endpoint_url, OAUTH_SECRET, other.client_secret)
    raw = partner_mail()
    stack.oauth_dovecot.deliver(box.user, raw)

    with pytest.raises(PollFailed, match="unauthorized_client"):
        invoke_poll(EVENT)

    assert failure_of(json_logs)["setting"] == "oauth_secret (the service account's domain-wide delegation)"
    assert stack.oauth_dovecot.mailbox(box.user) == [raw]
    assert "PRIVATE KEY" not in json_logs.text


@pytest.fixture
def untrusted_oauth(tmp_path: Path) -> Iterator[AuthorizationServer]:
    """An authorization server whose certificate comes from a CA nobody trusts."""
    with AuthorizationServer(make_tls_files(tmp_path / "tls")) as server:
        yield server


def test_the_token_endpoints_certificate_is_verified(
    stack: LocalStack, box: OAuthMailbox, json_logs: JsonLogs, untrusted_oauth: AuthorizationServer
) -> None:
    store_oauth_channel(stack, box, oauth_token_url=untrusted_oauth.microsoft_token_url(TENANT))
    stack.oauth_dovecot.deliver(box.user, partner_mail())

    with pytest.raises(PollFailed, match="TLS failed"):
        invoke_poll(EVENT)

    assert failure_of(json_logs)["setting"] == "oauth_token_url (or its certificate)"
    assert untrusted_oauth.token_requests == []


REFUSALS = {
    # what the operator got wrong: (the provider's error, the setting the poll names)
    "secret": ("invalid_client", "oauth_client_id, oauth_secret"),
    "scope": ("invalid_scope", "oauth_scope (or the permission granted to the app)"),
}


@pytest.mark.parametrize("wrong", sorted(REFUSALS))
def test_a_refused_client_stops_the_poll_naming_the_setting_and_charges_no_message(
    stack: LocalStack, box: OAuthMailbox, json_logs: JsonLogs, wrong: str, oauth_logins: Callable[[], int]
) -> None:
    error, setting = REFUSALS[wrong]
    if wrong == "scope":  # an app that was granted Exchange, asked for something it was not granted
        store_oauth_channel(stack, box, oauth_scope="https://graph.microsoft.com/.default")
    else:
        store_oauth_channel(stack, box)
        aws.put_secret(stack.endpoint_url, OAUTH_SECRET, "not-the-client-secret")
    raw = partner_mail()
    stack.oauth_dovecot.deliver(box.user, raw)

    for _ in range(3):
        with pytest.raises(PollFailed, match=error):
            invoke_poll(EVENT)

    failures = [line for line in json_logs.lines() if line["message"] == "poll ended in error"]
    assert {(line["result"]["status"], line["setting"]) for line in failures} == {("error", setting)}
    assert error in failures[0]["result"]["error"]  # the provider's own error text
    assert stack.oauth_dovecot.mailbox(box.user) == [raw]
    assert oauth_logins() == 0
    assert ledger_entry(stack, raw) == {}  # never touched: no attempt counted
    assert stack.oauth_smtp.received == []
    assert "not-the-client-secret" not in json_logs.text


def test_an_expired_cached_token_is_renewed_once_and_the_poll_goes_on(
    stack: LocalStack, box: OAuthMailbox, json_logs: JsonLogs, oauth_logins: Callable[[], int]
) -> None:
    store_oauth_channel(stack, box)
    assert invoke_poll(EVENT)["status"] == "ok"  # caches the token (a warm function keeps it)
    stack.oauth.expire_tokens()  # the provider no longer accepts it, though it has not run out for us
    stack.oauth_dovecot.deliver(box.user, partner_mail())

    result = invoke_poll(EVENT)

    assert (result["status"], result["processed"], result["deleted"]) == ("ok", 1, 1)
    assert [r.result for r in stack.oauth.token_requests] == ["ok", "ok"]
    renewals = [line for line in json_logs.lines() if "renewing it" in line["message"]]
    assert len(renewals) == 1
    assert oauth_logins() == 2
    assert stack.oauth_smtp.auth_attempts == [(box.user, True)]


def test_a_token_that_runs_out_is_replaced_before_it_is_used(stack: LocalStack, box: OAuthMailbox) -> None:
    stack.oauth.token_lifetime = 2
    start = len(stack.oauth_dovecot.log_text())
    store_oauth_channel(stack, box)
    assert invoke_poll(EVENT)["status"] == "ok"
    time.sleep(2.1)  # the token has run out now; Dovecot's introspection would refuse it
    stack.oauth_dovecot.deliver(box.user, partner_mail())

    result = invoke_poll(EVENT)

    assert (result["status"], result["processed"]) == ("ok", 1)
    assert "Authentication failed" not in stack.oauth_dovecot.log_text()[start:]
    assert len(stack.oauth.token_requests) >= 2


def test_a_token_endpoint_that_does_not_answer_is_transient(
    stack: LocalStack, box: OAuthMailbox, json_logs: JsonLogs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oauth, "TIMEOUT_SECONDS", 0.5)
    stack.oauth.delay_seconds = 2
    store_oauth_channel(stack, box)
    raw = partner_mail()
    stack.oauth_dovecot.deliver(box.user, raw)

    with pytest.raises(PollFailed, match=r"did not answer within 0\.5 s"):
        invoke_poll(EVENT)

    assert not failure_of(json_logs).get("setting")  # not the channel's failure: nothing to fix
    assert not [line for line in json_logs.lines() if line["message"].startswith("the channel failed")]
    assert stack.oauth_dovecot.mailbox(box.user) == [raw]
    assert ledger_entry(stack, raw) == {}
    deadline = time.monotonic() + 10  # let the slow answer finish here, not in the next test
    while not stack.oauth.token_requests and time.monotonic() < deadline:
        time.sleep(0.05)


def test_no_token_or_secret_appears_in_any_log_line_at_debug(
    stack: LocalStack,
    box: OAuthMailbox,
    json_logs: JsonLogs,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store_oauth_channel(stack, box)
    stack.oauth_dovecot.deliver(box.user, partner_mail())
    caplog.set_level(logging.DEBUG)  # every library's logger too: authlib, requests, urllib3, botocore
    caplog.clear()
    assert invoke_poll(EVENT)["status"] == "ok"
    stack.oauth.expire_tokens()  # a renewal too
    stack.oauth_dovecot.deliver(box.user, partner_mail())
    assert invoke_poll(EVENT)["processed"] == 1

    tokens = stack.oauth.issued_tokens
    assert len(tokens) == 2
    assert "OAuth access token obtained" in json_logs.text
    # What the function logged (the servers of the stack run in threads of their own) ...
    records = [record for record in caplog.records if record.thread == threading.get_ident()]
    lines = [f"{record.name} {record.getMessage()} {record.__dict__}" for record in records]
    written = "\n".join([json_logs.text, capsys.readouterr().out, *lines])
    for token in tokens:
        sasl = base64.b64encode(f"user={box.user}\x01auth=Bearer {token}\x01\x01".encode()).decode()
        assert token not in written
        assert sasl not in written
    # ... and the client secret nowhere but in botocore's own DEBUG dump of the Secrets Manager answer
    # (the SDK logs response bodies when the root logger is at DEBUG, for every secret alike).
    ours = [
        line for record, line in zip(records, lines, strict=True) if not record.name.startswith("botocore")
    ]
    assert box.client_secret not in "\n".join([json_logs.text, *ours])


WITHOUT_TLS = {
    "pop3": ({"pop3_security": "none"}, "pop3_login oauth2 needs pop3_security tls or starttls"),
    "smtp": ({"smtp_security": "none"}, "smtp_login oauth2 needs smtp_security starttls or tls"),
}


@pytest.mark.parametrize("server", sorted(WITHOUT_TLS))
def test_oauth2_without_tls_is_an_invalid_channel(
    stack: LocalStack, box: OAuthMailbox, json_logs: JsonLogs, server: str, oauth_logins: Callable[[], int]
) -> None:
    settings, reason = WITHOUT_TLS[server]
    store_oauth_channel(stack, box, pop3_port=stack.oauth_dovecot.pop3_port, **settings)
    stack.oauth_dovecot.deliver(box.user, partner_mail())

    result = invoke_poll(EVENT)

    assert result["status"] == "invalid_config"
    [logged] = [line for line in json_logs.lines() if "configuration is invalid" in line["message"]]
    assert any(reason in error["reason"] for error in logged["errors"])
    assert stack.oauth.token_requests == []
    assert oauth_logins() == 0
    assert len(stack.oauth_dovecot.mailbox(box.user)) == 1
