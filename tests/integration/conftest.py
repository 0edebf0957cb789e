"""Each integration test starts as a cold Lambda: no cached settings, clients or secrets."""

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.root import WARM
from devstack.invoke import sync_environment
from devstack.proxy import TcpProxy
from devstack.smtp import SmtpServer
from devstack.stack import LocalStack
from service.telemetry import logger
from tests.integration.emf_recorder import pytest_emf_recorder  # noqa: F401 - records EMF for the alarm check
from tests.integration.iam_recorder import iam_recorder  # noqa: F401 - the IAM check, a session fixture


@pytest.fixture(autouse=True)
def cold_start() -> Iterator[None]:
    """No settings, clients, secrets, OAuth tokens or memories kept (``app.warm``)."""
    WARM.reset()
    yield
    WARM.reset()


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


@pytest.fixture
def proxy_to() -> Iterator[Callable[[int], TcpProxy]]:
    """Start a TCP proxy to a port of 127.0.0.1; every proxy is stopped after the test."""
    started: list[TcpProxy] = []

    def start(port: int) -> TcpProxy:
        proxy = TcpProxy(port)
        proxy.start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def relay_with(stack: LocalStack) -> Iterator[Callable[..., SmtpServer]]:
    """Start a second SMTP relay with the stack's certificate and login and the given options
    (``data_size_limit``, ``smtputf8``, ...); every one is stopped after the test."""
    started: list[SmtpServer] = []

    def start(**options: Any) -> SmtpServer:
        assert stack.tls is not None  # the stack is running
        relay = SmtpServer(stack.tls, {stack.smtp_user: stack.smtp_password}, **options)
        relay.start()
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture
def sync_env(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    """The §7 environment of the schedule sync function (and its watchdog), on a cold start."""
    for name, value in sync_environment(stack).items():
        monkeypatch.setenv(name, value)
    WARM.reset()
    yield stack
    WARM.reset()
