"""Drive the real poll handler against the local stack: store a channel, invoke, as the Lambda would."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from devstack import aws
from devstack.stack import GraphMailbox, LocalStack, OAuthMailbox

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))  # the Lambda runtime puts CodeUri (src/) on the path

SENDER_ADDRESS = "lettershop@operator.example"
# What the schedule sync's schedules point to in the local stack (nothing is invoked by them there).
POLL_FUNCTION_ARN = "arn:aws:lambda:eu-central-1:123456789012:function:lettershop-poll"
SCHEDULER_ROLE_ARN = "arn:aws:iam::123456789012:role/lettershop-scheduler"
DLQ_ARN = "arn:aws:sqs:eu-central-1:123456789012:lettershop-dead-letters"


@dataclass
class FakeLambdaContext:
    """What the Lambda runtime passes as ``context``."""

    function_name: str = "lettershop-poll"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:eu-central-1:123456789012:function:lettershop-poll"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int = 300_000
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        """Counts down from ``remaining_ms``, as the real deadline does."""
        return max(0, int(self.remaining_ms - (time.monotonic() - self.started) * 1000))


def store_channel(
    stack: LocalStack,
    mailbox: tuple[str, str],
    *,
    channel_id: str = "acme",
    smtp: str = "starttls",
    **overrides: Any,
) -> dict[str, Any]:
    """Store the mailbox's password as a secret and a channel item using it; return the item.

    ``smtp`` picks the reply server: ``starttls`` (STARTTLS + AUTH), ``tls`` (implicit TLS + AUTH),
    ``none`` (plain, no AUTH) or ``ses``.
    """
    user, password = mailbox
    endpoint = stack.endpoint_url
    aws.put_secret(endpoint, f"lettershop/{channel_id}/pop3", {"password": password})
    item: dict[str, Any] = {
        "channel_id": channel_id,
        "active": True,
        "exclusive_account": False,
        "subject_keyword": "LetterShop",
        "pop3_host": stack.dovecot.host,
        "pop3_port": stack.dovecot.pop3s_port,
        "pop3_security": "tls",
        "pop3_username": user,
        "pop3_password_secret": f"lettershop/{channel_id}/pop3",
        "sender_address": SENDER_ADDRESS,
        "allowed_senders": ["partner.example"],
        **_reply_settings(stack, channel_id, smtp),
    }
    item.update(overrides)
    aws.put_channel(endpoint, stack.names.channels_table, {k: v for k, v in item.items() if v is not None})
    return item


def store_oauth_channel(
    stack: LocalStack,
    box: OAuthMailbox,
    *,
    channel_id: str = "acme",
    tenant: str = "contoso.onmicrosoft.com",
    **overrides: Any,
) -> dict[str, Any]:
    """A Microsoft 365-shaped channel on the OAuth servers of the stack: POP3S and SMTP (STARTTLS),
    both logging in with XOAUTH2 as the mailbox, with the tokens of one app (client id in the item,
    client secret in Secrets Manager as ``lettershop/<channel_id>/oauth``); the token URL is the
    local authorization server's, in Entra's shape. Returns the item."""
    secret = f"lettershop/{channel_id}/oauth"
    aws.put_secret(stack.endpoint_url, secret, box.client_secret)
    settings: dict[str, Any] = {
        "pop3_port": stack.oauth_dovecot.pop3s_port,
        "pop3_security": "tls",
        "pop3_login": "oauth2",
        "pop3_password_secret": None,
        "smtp_port": stack.oauth_smtp.port,
        "smtp_security": "starttls",
        "smtp_auth": True,
        "smtp_login": "oauth2",
        "smtp_username": box.user,
        "smtp_password_secret": None,
        "oauth_provider": "microsoft",
        "oauth_tenant": tenant,
        "oauth_token_url": stack.oauth.microsoft_token_url(tenant),
        "oauth_client_id": box.client_id,
        "oauth_secret": secret,
    }
    return store_channel(stack, (box.user, "no-password"), channel_id=channel_id, **(settings | overrides))


def store_graph_channel(
    stack: LocalStack,
    box: GraphMailbox,
    *,
    channel_id: str = "acme",
    smtp: str = "none",
    tenant: str = "contoso.onmicrosoft.com",
    **overrides: Any,
) -> dict[str, Any]:
    """A Microsoft 365 mailbox read through the stack's Graph-shaped server (``mailbox_protocol:
    graph``, no POP3 attribute), answered by ``smtp`` as :func:`store_channel` picks it; the app's
    client secret in Secrets Manager as ``lettershop/<channel_id>/oauth``. Returns the item."""
    secret = f"lettershop/{channel_id}/oauth"
    aws.put_secret(stack.endpoint_url, secret, box.client_secret)
    settings: dict[str, Any] = {
        "mailbox_protocol": "graph",
        "graph_mailbox": box.user,
        "graph_endpoint": stack.graph.endpoint,
        **dict.fromkeys(("pop3_host", "pop3_port", "pop3_security", "pop3_username", "pop3_password_secret")),
        "oauth_provider": "microsoft",
        "oauth_tenant": tenant,
        "oauth_token_url": stack.oauth.microsoft_token_url(tenant),
        "oauth_client_id": box.client_id,
        "oauth_secret": secret,
    }
    return store_channel(
        stack, (box.user, "no-password"), channel_id=channel_id, smtp=smtp, **(settings | overrides)
    )


def _reply_settings(stack: LocalStack, channel_id: str, smtp: str) -> dict[str, Any]:
    if smtp == "ses":
        aws.verify_ses_identity(stack.endpoint_url, SENDER_ADDRESS)
        return {"reply_via": "ses"}
    server = {"starttls": stack.smtp, "tls": stack.smtps, "none": stack.smtp_open}[smtp]
    settings: dict[str, Any] = {
        "reply_via": "smtp",
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_security": smtp,
    }
    if smtp != "none":
        secret = f"lettershop/{channel_id}/smtp"
        aws.put_secret(stack.endpoint_url, secret, stack.smtp_password)
        settings |= {"smtp_auth": True, "smtp_username": stack.smtp_user, "smtp_password_secret": secret}
    return settings


def load_event(name: str, **changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    event.update(changes)
    return event


def invoke_poll(
    event: dict[str, Any],
    context: FakeLambdaContext | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
) -> dict[str, Any]:
    """Call the deployed entry point, ``handlers.poll.handler``, exactly as the runtime does
    (``clock``: a test's own "now" for the poll)."""
    from handlers.poll import handler  # noqa: PLC0415  # after the environment is set

    return handler(event, context or FakeLambdaContext(), clock=clock)  # type: ignore[no-any-return]


def sync_environment(stack: LocalStack) -> dict[str, str]:
    """The §7 environment of the schedule sync function (the stack's tables and group; state table
    and channel table come with the stack's own environment)."""
    return {
        "LETTERSHOP_SCHEDULE_GROUP": stack.names.schedule_group,
        "LETTERSHOP_POLL_FUNCTION_ARN": POLL_FUNCTION_ARN,
        "LETTERSHOP_SCHEDULER_ROLE_ARN": SCHEDULER_ROLE_ARN,
        "LETTERSHOP_SCHEDULE_DLQ_ARN": DLQ_ARN,
    }


def invoke_sync(event: dict[str, Any], *, clock: Callable[[], datetime] | None = None) -> dict[str, Any]:
    """Call ``handlers.schedules.handler`` as the runtime does: a stream batch, ``{"reconcile": true}``
    or ``{"watch": true}`` (``clock``: a test's own "now" for the watchdog)."""
    from handlers.schedules import handler  # noqa: PLC0415  # after the environment is set

    context = FakeLambdaContext(function_name="lettershop-schedule-sync")
    return handler(event, context, clock=clock)  # type: ignore[no-any-return]
