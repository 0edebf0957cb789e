"""Passwords from AWS Secrets Manager, cached across warm invocations (Powertools parameters).

A secret holds the password itself or JSON ``{"password": "..."}``; an OAuth client's secret holds
the client secret (or JSON ``{"client_secret": "..."}``) or, for Google, the service account's JSON
key. Values never reach a log line: errors name the secret id only.
"""

import json
import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code
from domain.errors import ChannelFailure

# A day, about an execution environment's life: a secret is read once by each environment that polls
# its channel, not once an hour in each (at 5,000 channels polled every minute that was 20 times the
# reads, docs/scaling.md). A password changed meanwhile fails one poll, which names the secret's
# setting; the poll then forgets the cached secrets (``SecretStore.forget``), so the next poll reads
# them afresh. A rotation that keeps the old password valid for a while (Secrets Manager's
# alternating users) goes unnoticed until the old one is refused or the day is over.
CACHE_SECONDS = 24 * 3600
MISSING_CODES = frozenset({"ResourceNotFoundException", "AccessDeniedException", "DecryptionFailure"})


class SecretStore:
    """Secrets read through a Powertools ``SecretsProvider`` of its own, each kept ``CACHE_SECONDS``.

    The provider (and with it Powertools, which imports all of boto3) is made by the first read, not
    at cold start, with the client ``client()`` gives (default: Powertools makes its own), and kept:
    Powertools adds its user-agent hook to the client of every provider it makes.
    """

    def __init__(self, client: Callable[[], Any] | None = None) -> None:
        self._client = client
        self._provider: Any = None
        self._lock = threading.Lock()

    def password(self, secret_id: str, *, setting: str) -> str:
        """The password stored under ``secret_id`` (the channel attribute ``setting``); ``ChannelFailure``
        naming that attribute when the secret is missing or malformed."""
        return _password_from(secret_id, self.text(secret_id, setting=setting), setting)

    def client_secret(self, secret_id: str, *, setting: str) -> str:
        """An OAuth client secret: the value itself, or JSON ``{"client_secret": "..."}``."""
        return _password_from(secret_id, self.text(secret_id, setting=setting), setting, key="client_secret")

    def text(self, secret_id: str, *, setting: str) -> str:
        """The value stored under ``secret_id`` as it is; ``ChannelFailure`` naming ``setting`` when it
        cannot be read."""
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError  # noqa: PLC0415

        try:
            value = self._provider_made().get(secret_id, max_age=CACHE_SECONDS)
        except GetParameterError as error:
            cause = error.__context__  # Powertools wraps the botocore error without "from"
            if isinstance(cause, ClientError) and error_code(cause) in MISSING_CODES:
                raise ChannelFailure(
                    f"secret {secret_id} cannot be read: {error_code(cause)}", setting=setting
                ) from None
            if isinstance(cause, ClientError | BotoCoreError):
                raise classify(cause, f"reading secret {secret_id}") from None
            raise ChannelFailure(f"secret {secret_id} cannot be read", setting=setting) from None
        return value if isinstance(value, str) else bytes(value).decode()

    def forget(self) -> None:
        """Read every secret afresh at its next use (after a refused login: it may have been rotated)."""
        with self._lock:
            if self._provider is not None:
                self._provider.clear_cache()

    def reset(self) -> None:
        """Forget the secrets and the provider with its client (a cold start): the next read makes a
        new provider with the client ``client()`` gives then."""
        with self._lock:
            self._provider = None

    def _provider_made(self) -> Any:
        with self._lock:
            if self._provider is None:
                # Powertools' parameters import all of boto3: imported by the first read
                from aws_lambda_powertools.utilities.parameters import SecretsProvider  # noqa: PLC0415

                client = self._client() if self._client is not None else None
                self._provider = SecretsProvider(boto3_client=client)
            return self._provider


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
