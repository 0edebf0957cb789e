"""Passwords from AWS Secrets Manager, cached across warm invocations (Powertools parameters).

A secret holds the password itself or JSON ``{"password": "..."}``; an OAuth client's secret holds
the client secret (or JSON ``{"client_secret": "..."}``) or, for Google, the service account's JSON
key. Values never reach a log line: errors name the secret id only.
"""

import json

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code
from domain.errors import ChannelFailure

# An hour: a channel polled every 5 minutes reads each secret once in 12 polls. A password changed
# meanwhile fails one poll, which names the secret's setting; the wiring then forgets the cached
# secrets (``forget_cached_secrets``), so the next poll reads them afresh.
CACHE_SECONDS = 3600
MISSING_CODES = frozenset({"ResourceNotFoundException", "AccessDeniedException", "DecryptionFailure"})


def password(secret_id: str, *, setting: str) -> str:
    """The password stored under ``secret_id`` (the channel attribute ``setting``); ``ChannelFailure``
    naming that attribute when the secret is missing or malformed."""
    return _password_from(secret_id, secret_text(secret_id, setting=setting), setting)


def client_secret(secret_id: str, *, setting: str) -> str:
    """An OAuth client secret: the value itself, or JSON ``{"client_secret": "..."}``."""
    return _password_from(secret_id, secret_text(secret_id, setting=setting), setting, key="client_secret")


def secret_text(secret_id: str, *, setting: str) -> str:
    """The value stored under ``secret_id`` as it is; ``ChannelFailure`` naming ``setting`` when it
    cannot be read."""
    # Powertools' parameters import all of boto3: imported by the first read, not at cold start
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

    try:
        value = parameters.get_secret(secret_id, max_age=CACHE_SECONDS)
    except parameters.exceptions.GetParameterError as error:
        cause = error.__context__  # Powertools wraps the botocore error without "from"
        if isinstance(cause, ClientError) and error_code(cause) in MISSING_CODES:
            raise ChannelFailure(
                f"secret {secret_id} cannot be read: {error_code(cause)}", setting=setting
            ) from None
        if isinstance(cause, ClientError | BotoCoreError):
            raise classify(cause, f"reading secret {secret_id}") from None
        raise ChannelFailure(f"secret {secret_id} cannot be read", setting=setting) from None
    return value if isinstance(value, str) else bytes(value).decode()


def _password_from(secret_id: str, value: str, setting: str, key: str = "password") -> str:
    stripped = value.strip()
    if stripped.startswith("{"):
        try:
            document = json.loads(stripped)
        except json.JSONDecodeError:
            raise ChannelFailure(
                f"secret {secret_id} looks like JSON but is not valid JSON", setting=setting
            ) from None
        found = document.get(key) if isinstance(document, dict) else None
        if not isinstance(found, str) or not found:
            raise ChannelFailure(
                f'secret {secret_id} is JSON without a "{key}" string', setting=setting
            ) from None
        return found
    if not value:
        raise ChannelFailure(f"secret {secret_id} is empty", setting=setting)
    return value


def forget_cached_secrets() -> None:
    """Read every secret afresh at its next use (after a refused login: it may have been rotated)."""
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415  # see secret_text

    parameters.clear_caches()  # type: ignore[no-untyped-call]
