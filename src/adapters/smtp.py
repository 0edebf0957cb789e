"""Replies over SMTP: STARTTLS (default), implicit TLS or plain, certificates verified, optional AUTH.

The stored reply is sent byte for byte (``sendmail``), so a retry sends exactly what the first try did.
Errors are sorted for DESIGN §6 (whose failure is it):

* a 4xx reply, a timeout or a dropped connection: ``TransientError`` (the message is tried again);
* the recipient refused for good (5xx at RCPT or DATA), or a non-ASCII address and a server that
  does not offer SMTPUTF8: ``UndeliverableReply`` (that message's own problem);
* a refused login, AUTH or STARTTLS not offered, TLS failing, an unknown host, our sender address
  refused (5xx at MAIL FROM): ``ChannelFailure`` naming the setting to fix.
"""

import smtplib
import ssl
from dataclasses import dataclass, field
from typing import Literal

from adapters.network import unknown_host
from domain.errors import ChannelFailure, LetterShopError, TransientError, UndeliverableReply


@dataclass(frozen=True)
class SmtpAccount:
    host: str
    port: int
    security: Literal["starttls", "tls", "none"]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0


LOGIN_SETTINGS = "smtp_username, smtp_password_secret"
TLS_SETTINGS = "smtp_security, smtp_port (or the server's certificate)"


class SmtpReplySender:
    """Implements ``service.ports.ReplySender``; one connection per reply keeps failures local."""

    def __init__(self, account: SmtpAccount) -> None:
        self._account = account

    def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        account = self._account
        where = f"SMTP server {account.host}:{account.port}"
        utf8 = not (sender + recipient).isascii()
        try:
            client = self._connect()
            try:
                if account.username is not None and account.password is not None:
                    client.login(account.username, account.password)
                client.ehlo_or_helo_if_needed()
                if utf8 and not client.has_extn("smtputf8"):
                    raise UndeliverableReply(
                        f"{where} does not offer SMTPUTF8, which the address {recipient} needs"
                    )
                options = ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else []
                client.sendmail(sender, [recipient], data, mail_options=options)
            finally:
                _quit(client)
        except (smtplib.SMTPException, OSError) as error:
            raise _classified(error, where, account, sender=sender, recipient=recipient) from error

    def _connect(self) -> smtplib.SMTP:
        account = self._account
        context = ssl.create_default_context()
        if account.security == "tls":
            return smtplib.SMTP_SSL(account.host, account.port, timeout=account.timeout, context=context)
        client = smtplib.SMTP(account.host, account.port, timeout=account.timeout)
        if account.security == "starttls":
            try:
                client.starttls(context=context)
            except BaseException:
                client.close()
                raise
        return client


def _classified(  # noqa: PLR0911  # one return per kind of failure reads best
    error: smtplib.SMTPException | OSError, where: str, account: SmtpAccount, *, sender: str, recipient: str
) -> LetterShopError:
    """Whose failure it is (see the module's docstring)."""
    if isinstance(error, smtplib.SMTPResponseException) and 400 <= error.smtp_code < 500:
        return TransientError(f"{where} answered {_reply(error)}")
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return ChannelFailure(
            f"{where} refused the login of {account.username}: {_reply(error)}", setting=LOGIN_SETTINGS
        )
    if isinstance(error, smtplib.SMTPSenderRefused):
        return ChannelFailure(
            f"{where} refused the sender address {sender}: {_reply(error)}", setting="sender_address"
        )
    if isinstance(error, smtplib.SMTPResponseException):
        return UndeliverableReply(f"{where} refused the reply to {recipient}: {_reply(error)}")
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(error.recipients.values()))
        refused = f"{where} refused recipient {recipient}: {code} {_decode(text)}"
        return TransientError(refused) if 400 <= code < 500 else UndeliverableReply(refused)
    if isinstance(error, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return TransientError(f"{where} closed the connection during TLS: {error}")
    if isinstance(error, ssl.SSLError):
        return ChannelFailure(f"{where}: TLS failed: {error}", setting=TLS_SETTINGS)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return ChannelFailure(f"{where}: {error}", setting="smtp_security, smtp_auth")
    if isinstance(error, OSError) and unknown_host(error):
        return ChannelFailure(
            f"SMTP server {account.host} is not a known host name: {error}", setting="smtp_host"
        )
    return TransientError(f"{where} not usable: {error}")


def _quit(client: smtplib.SMTP) -> None:
    """End the session; once DATA was accepted, a QUIT that fails changes nothing."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _reply(error: smtplib.SMTPResponseException) -> str:
    return f"{error.smtp_code} {_decode(error.smtp_error)}"


def _decode(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text
