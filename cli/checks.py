"""``lettershop channel check``: everything a poll needs, tried without changing anything.

One :class:`Check` per step, each with the fix when it fails: both secrets resolve (for an OAuth
channel: its client obtains an access token); POP3 logs in (TLS verified), counts the messages and
says which optional commands the server offers (``CAPA``, ``UIDL``, ``TOP``: the poll needs the last
two) (no ``DELE``, no ``QUIT``: nothing is committed); SMTP answers ``EHLO``, ``STARTTLS`` and ``AUTH``
(no mail sent), or the SES identity of ``sender_address`` is verified; every configured script
exists and compiles.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from adapters.oauth import MailboxTokens
from adapters.pop3_session import Pop3Probe
from adapters.probe import probe_ses_identity, probe_smtp
from adapters.script_store import S3ScriptStore, ScriptCache, describe, script_key
from app.root import (
    WARM,
    PasswordSecret,
    aws_client,
    graph_mailbox,
    graph_sender,
    password_secrets,
    pop3_mailbox,
    smtp_account,
)
from cli.context import Stack, out, say
from domain.channel import Channel, OAuthClient
from domain.errors import ChannelFailure, LetterShopError, ScriptFailed, TransientError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: skipped (an earlier check failed)
    detail: str
    fix: str | None = None


def run_checks(channel: Channel, stack: Stack) -> Iterator[Check]:
    """The checks in the order a poll needs them; a login is not tried when what it needs failed."""
    oauth = channel.oauth_client
    secrets_ok = smtp_ok = True
    for secret in password_secrets(channel):  # exactly those a poll reads
        check = _secret(secret)
        if secret.login == "POP3":
            secrets_ok &= bool(check.ok)
        else:
            smtp_ok = bool(check.ok)
        yield check
    if oauth is not None:
        check = _token(oauth, channel)
        secrets_ok &= bool(check.ok)
        smtp_ok &= bool(check.ok)
        yield check
    yield _mailbox(channel, secrets_ok=secrets_ok)
    yield _replies(channel, smtp_ok=smtp_ok)
    for stage, name in (("prescript", channel.prescript), ("postscript", channel.postscript)):
        if name:
            yield _script(stage, name, channel, stack)


def _token(oauth: OAuthClient, channel: Channel) -> Check:
    """An access token from the channel's OAuth client (the login of POP3 and/or SMTP)."""
    mailbox = (channel.pop3_username if channel.pop3_oauth else channel.smtp_username) or ""
    try:
        MailboxTokens(oauth, mailbox, cache=WARM.tokens, secrets=WARM.secrets).token()
    except LetterShopError as error:
        return Check("OAuth token", False, str(error), _fix(error, channel))
    return Check(
        "OAuth token",
        True,
        f"{oauth.provider} token for client {oauth.client_id or '-'} from {oauth.token_url}",
    )


def _secret(secret: PasswordSecret) -> Check:
    label, secret_id, setting = f"{secret.login} password", secret.secret_id, secret.setting
    try:
        WARM.secrets.password(secret_id, setting=setting)
    except LetterShopError as error:
        return Check(
            label,
            False,
            str(error),
            f"store the password in Secrets Manager as {secret_id} (the value, or JSON "
            f'{{"password": "..."}}), or correct {setting}',
        )
    return Check(label, True, f"secret {secret_id} is readable")


def _pop3(channel: Channel) -> Check:
    where = f"{channel.pop3_host}:{channel.incoming_port} ({channel.pop3_security})"
    try:
        probe = pop3_mailbox(channel).probe()
    except LetterShopError as error:
        return Check("POP3", False, str(error), _fix(error, channel))
    tls = "" if channel.pop3_security == "none" else ", certificate verified"
    how = " with an OAuth 2.0 token (XOAUTH2)" if channel.pop3_login == "oauth2" else ""
    detail = (
        f"logged in as {channel.pop3_username}{how} at {where}{tls}; {probe.messages} message(s) waiting; "
        f"{_optional_commands(probe)}"
    )
    lacking = [name for name, offered in (("UIDL", probe.uidl), ("TOP", probe.top)) if offered is False]
    if lacking:
        return Check(
            "POP3",
            False,
            f"{detail}; the server does not offer {' and '.join(lacking)}",
            f"the poll needs UIDL and TOP (optional in RFC 1939): have them enabled on {channel.pop3_host}, "
            "or move the channel to a mailbox on a server that offers them (pop3_host)",
        )
    return Check("POP3", True, detail)


def _mailbox(channel: Channel, *, secrets_ok: bool) -> Check:
    if channel.mailbox_protocol == "graph":
        return _graph(channel)
    return _pop3(channel) if secrets_ok else Check("POP3", None, "not tried: its login could not be prepared")


def _replies(channel: Channel, *, smtp_ok: bool) -> Check:
    if channel.reply_via == "graph":
        return _graph_send(channel)
    if channel.reply_via == "ses":
        return _ses(channel)
    return _smtp(channel) if smtp_ok else Check("SMTP", None, "not tried: its login could not be prepared")


def _graph_send(channel: Channel) -> Check:
    try:
        detail = graph_sender(channel).probe()
    except LetterShopError as error:
        return Check("Graph send", False, str(error), _fix(error, channel))
    return Check("Graph send", True, f"{detail}; no mail sent")


def _graph(channel: Channel) -> Check:
    """A Graph token of the channel's Microsoft client, and the inbox's message count with it."""
    where = f"{channel.graph_mailbox} at {channel.graph_endpoint}"
    try:
        count = graph_mailbox(channel).inbox_count()
    except LetterShopError as error:
        return Check("Graph mailbox", False, str(error), _fix(error, channel))
    return Check(
        "Graph mailbox",
        True,
        f"{where}: a token for {channel.graph_scope} obtained; {count} message(s) in the inbox",
    )


def _optional_commands(probe: Pop3Probe) -> str:
    """Which optional commands the server offers, as ``channel check`` prints it."""
    capa = "CAPA not answered" if probe.capabilities is None else f"CAPA: {', '.join(probe.capabilities)}"
    top = {True: "yes", False: "no", None: "not known (no CAPA and no message to try it on)"}[probe.top]
    return f"optional commands: UIDL {'yes' if probe.uidl else 'no'}, TOP {top}, {capa}"


def _smtp(channel: Channel) -> Check:
    where = f"{channel.smtp_host}:{channel.smtp_port} ({channel.smtp_security})"
    try:
        steps = probe_smtp(smtp_account(channel))
    except LetterShopError as error:
        return Check("SMTP", False, str(error), _fix(error, channel))
    return Check("SMTP", True, f"{where}: {steps}; no mail sent")


def _ses(channel: Channel) -> Check:
    try:
        detail = probe_ses_identity(aws_client("sesv2"), channel.sender_address)
    except LetterShopError as error:
        return Check("SES", False, str(error), _fix(error, channel))
    return Check("SES", True, detail)


def _script(stage: str, name: str, channel: Channel, stack: Stack) -> Check:
    label = f"{stage} {name}"
    try:
        key = script_key(name, use_standard_script=channel.use_standard_script, partner_id=channel.partner)
        script = S3ScriptStore(stack.scripts_bucket, aws_client("s3"), ScriptCache()).fetch(key)
    except ScriptFailed as error:
        partner = "" if channel.use_standard_script else f" --partner {channel.partner}"
        return Check(
            label,
            False,
            str(error),
            f"upload it: lettershop script put {name}{partner}, or change {stage} / use_standard_script",
        )
    except LetterShopError as error:
        return Check(label, False, str(error), "check the scripts bucket and your access to it")
    try:
        compile(script.body, name, "exec")
    except (SyntaxError, ValueError) as error:
        line = f" (line {error.lineno})" if isinstance(error, SyntaxError) and error.lineno else ""
        return Check(
            label,
            False,
            f"{describe(key)} does not compile{line}: {error}",
            f"fix it, try it with lettershop script test, upload it with lettershop script put {name}",
        )
    return Check(label, True, f"{describe(key)} exists (s3://{stack.scripts_bucket}/{key}) and compiles")


def _fix(error: LetterShopError, channel: Channel) -> str:  # noqa: PLR0911  # one answer per setting
    """What to do about a failure, in the operator's words."""
    if isinstance(error, ChannelFailure):
        setting = error.setting or ""
        if setting.startswith("pop3_username"):
            return f"check pop3_username and the password stored in {channel.pop3_password_secret}"
        if setting.startswith("smtp_username"):
            return f"check smtp_username and the password stored in {channel.smtp_password_secret}"
        if "certificate" in setting:
            return (
                f"the server's certificate is not trusted or TLS failed: check {setting.split(' (')[0]}; "
                "the server needs a certificate from a public CA for its host name"
            )
        if setting == "sender_address":
            return "verify sender_address (or its domain) in SES, or use another sender_address"
        if setting:
            return f"correct {setting}"
    if isinstance(error, TransientError):
        return "is the host name and port right, and reachable from here (firewall)? then try again"
    return "see the message above"


def report(checks: Iterable[Check]) -> int:
    """Print each check (``channel check``, ``stack check``): ok, FAIL with its fix, or skip; the
    number that failed."""
    failed = 0
    for check in checks:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[check.ok]
        style = {True: "green", False: "red", None: "yellow"}[check.ok]
        out().print(f"[{style}]{mark}[/] ", end="")
        say(f"{check.name}: {check.detail}")
        if check.ok is False:
            failed += 1
            if check.fix:
                say(f"      fix: {check.fix}")
    return failed
