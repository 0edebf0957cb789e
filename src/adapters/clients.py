"""boto3 clients, made on first use and kept for the warm invocations of a function."""

from functools import cache
from typing import Any


@cache
def aws_client(service: str) -> Any:
    """A boto3 client; boto3 is imported here, lazily, to keep the cold start small."""
    import boto3  # noqa: PLC0415

    return boto3.client(service)  # type: ignore[call-overload]
