"""boto3 clients, made on first use and kept for the warm invocations of a function (``app.warm``)."""

import threading
from typing import Any


def new_client(service: str) -> Any:
    """A new boto3 client; boto3 is imported here, lazily, to keep the cold start small."""
    import boto3  # noqa: PLC0415

    return boto3.client(service)  # type: ignore[call-overload]


class AwsClients:
    """One client per AWS service, made by the first use."""

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, service: str) -> Any:
        with self._lock:
            client = self._made.get(service)
            if client is None:
                client = self._made[service] = new_client(service)
            return client

    def clear(self) -> None:
        """The next use of each service makes a new client (a cold start)."""
        with self._lock:
            self._made.clear()
