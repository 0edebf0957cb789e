"""Each integration test starts as a cold Lambda: no cached settings, clients or secrets."""

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters

from adapters.clients import aws_client
from adapters.mailbox_memory import forget_warm_memories
from adapters.oauth import clear_cache
from adapters.serials import forget_known_counters
from adapters.status import forget_written
from service.telemetry import logger
from settings import poll_settings


@pytest.fixture(autouse=True)
def cold_start() -> Iterator[None]:
    parameters.clear_caches()  # type: ignore[no-untyped-call]
    poll_settings.cache_clear()
    aws_client.cache_clear()
    forget_warm_memories()
    forget_known_counters()
    forget_written()
    yield
    parameters.clear_caches()  # type: ignore[no-untyped-call]


@pytest.fixture(autouse=True)
def no_cached_oauth_tokens() -> Iterator[None]:
    """A cold start also has no OAuth access token cached (``adapters.oauth``)."""
    clear_cache()
    yield
    clear_cache()


class JsonLogs:
    """The service's JSON log lines as the Lambda would write them to CloudWatch."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.startswith("{")]


@pytest.fixture
def json_logs() -> Iterator[JsonLogs]:
    """Everything the service logs during the test, at DEBUG (EMF metrics go to stdout: use capsys)."""
    logs = JsonLogs()
    level = logger.log_level
    logger.setLevel(logging.DEBUG)
    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(logs.stream)
    try:
        yield logs
    finally:
        handler.setStream(previous)
        logger.setLevel(level)
