"""Look at a channel's outgoing transport without sending anything (``lettershop channel check``).

SMTP: connect, ``EHLO``, ``STARTTLS`` (certificate verified) or implicit TLS, ``AUTH`` when the
channel logs in, then ``QUIT``; no ``MAIL FROM`` is ever sent. SES: the identity of the sender
address (or its domain) must exist and be verified for sending. Failures are the errors the reply
transport would raise, naming the setting to fix.
"""

import smtplib
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code
from adapters.smtp import SmtpAccount, classified, login_with_token
from domain.errors import ChannelFailure


def probe_smtp(account: SmtpAccount) -> str:
    """What the server offered, e.g. ``EHLO ok, STARTTLS ok, AUTH ok``; raises ``LetterShopError``."""
    where = f"SMTP server {account.host}:{account.port}"
    try:
        return _conversation(account, where)
    except (smtplib.SMTPException, OSError) as error:  # sorted as the reply transport sorts them
        raise classified(error, where, account, sender="", recipient="") from error


def _conversation(account: SmtpAccount, where: str) -> str:
    steps: list[str] = []
    context = account.tls.context()
    if account.security == "tls":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            account.host, account.port, timeout=account.timeout, context=context
        )
        steps.append("TLS ok")
    else:
        client = smtplib.SMTP(account.host, account.port, timeout=account.timeout)
    try:
        client.ehlo()
        steps.append("EHLO ok")
        if account.security == "starttls":
            if not client.has_extn("starttls"):
                raise ChannelFailure(f"{where} does not offer STARTTLS", setting="smtp_security")
            client.starttls(context=context)
            client.ehlo()
            steps.append("STARTTLS ok, certificate verified")
        if account.username is not None and account.tokens is not None:
            login_with_token(client, where, account.username, account.tokens)
            steps.append(f"AUTH XOAUTH2 as {account.username} ok (OAuth 2.0 token)")
        elif account.username is not None and account.password is not None:
            client.login(account.username, account.password)
            steps.append(f"AUTH as {account.username} ok")
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()
    return ", ".join(steps)


def probe_ses_identity(client: Any, sender: str) -> str:
    """Which verified SES identity sends as ``sender`` (the address, else its domain)."""
    domain = sender.rpartition("@")[2]
    for identity in (sender, domain):
        try:
            answer = client.get_email_identity(EmailIdentity=identity)
        except ClientError as error:
            if error_code(error) == "NotFoundException":
                continue
            raise classify(error, f"reading the SES identity {identity}") from error
        except BotoCoreError as error:
            raise classify(error, f"reading the SES identity {identity}") from error
        status = answer.get("VerificationStatus", "?")
        if answer.get("VerifiedForSendingStatus") or status == "SUCCESS":
            return f"SES identity {identity} is verified for sending"
        raise ChannelFailure(
            f"SES identity {identity} is not verified for sending (verification {status})",
            setting="sender_address",
        )
    raise ChannelFailure(
        f"SES has no identity for {sender} or {domain}: create and verify one", setting="sender_address"
    )
