"""Replies over SMTP: STARTTLS (default), implicit TLS or plain, certificates verified, optional AUTH.

Errors are sorted for DESIGN §6: a 4xx reply, a timeout or a dropped connection is transient (the
message stays and is tried again); a 5xx reply is permanent; a refused login is a configuration error.
"""

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Literal

from domain.errors import ConfigurationError, PermanentError, TransientError


@dataclass(frozen=True)
class SmtpAccount:
    host: str
    port: int
    security: Literal["starttls", "tls", "none"]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 30.0


class SmtpReplySender:
    """Implements ``service.ports.ReplySender``; one connection per reply keeps failures local."""

    def __init__(self, account: SmtpAccount) -> None:
        self._account = account

    def send(self, message: EmailMessage, *, sender: str, recipient: str) -> None:
        account = self._account
        where = f"SMTP server {account.host}:{account.port}"
        try:
            client = self._connect()
            try:
                if account.username is not None and account.password is not None:
                    client.login(account.username, account.password)
                client.send_message(message, from_addr=sender, to_addrs=[recipient])
            finally:
                _quit(client)
        except smtplib.SMTPAuthenticationError as error:
            if 400 <= error.smtp_code < 500:
                raise TransientError(f"{where} could not check the login now: {_reply(error)}") from error
            raise ConfigurationError(
                f"{where} refused the login of {account.username}: {_reply(error)}"
            ) from error
        except smtplib.SMTPRecipientsRefused as error:
            code, text = next(iter(error.recipients.values()))
            raise _by_code(code, f"{where} refused recipient {recipient}: {code} {_decode(text)}") from error
        except smtplib.SMTPResponseException as error:
            raise _by_code(error.smtp_code, f"{where} answered {_reply(error)}") from error
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError) as error:
            raise TransientError(f"{where} closed the connection during TLS: {error}") from error
        except ssl.SSLError as error:
            raise ConfigurationError(f"{where}: TLS failed: {error}") from error
        except smtplib.SMTPNotSupportedError as error:
            raise ConfigurationError(f"{where}: {error}") from error
        except (smtplib.SMTPException, OSError) as error:
            raise TransientError(f"{where} not usable: {error}") from error

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


def _quit(client: smtplib.SMTP) -> None:
    """End the session; once DATA was accepted, a QUIT that fails changes nothing."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


def _by_code(code: int, text: str) -> Exception:
    return TransientError(text) if 400 <= code < 500 else PermanentError(text)


def _reply(error: smtplib.SMTPResponseException) -> str:
    return f"{error.smtp_code} {_decode(error.smtp_error)}"


def _decode(text: bytes | str) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text
