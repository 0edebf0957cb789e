"""Shared fixtures: the local stack of real servers (DESIGN §9).

* ``local_stack`` (session): Dovecot, aiosmtpd and moto, started once, with the handler's
  environment (``LocalStack.env()``) applied for the whole session and restored afterwards.
* ``stack`` (function): the same stack, reset for this test — moto emptied and its resources
  re-created, SMTP mail forgotten. Use ``stack.new_mailbox()`` for a POP3 user of your own.
* ``mailbox`` (function): a fresh ``(user, password)`` on the stack's Dovecot.
* ``mail_corpus`` (session): the external real-world mail corpus (``tests/corpus.py``), or one skip.

Nothing of the stack is skipped: when a server cannot start, every test that needs it errors with its log.
The stack is started lazily, so unit tests never pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from devstack.stack import LocalStack
from tests import corpus

# Property-based tests: a bounded run in `make test`, as many examples as asked in `make fuzz`
# (HYPOTHESIS_PROFILE=fuzz, LETTERSHOP_FUZZ_EXAMPLES).
settings.register_profile("bounded", max_examples=200, deadline=None)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("LETTERSHOP_FUZZ_EXAMPLES", "20000")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bounded"))

# Variables from the developer's shell that would send boto3 elsewhere than to moto.
_FOREIGN_AWS_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport() -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    corpus.fold_skip(report)
    return report


@pytest.fixture(scope="session")
def mail_corpus() -> Path:
    """The real-world mail corpus folder (tests/corpus.py): skipped, with one reason, when not set."""
    return corpus.require()


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    stack = LocalStack()
    try:
        stack.start()
    except Exception as err:
        # The message of a Dovecot/moto start failure already carries the server's log.
        pytest.fail(f"the local stack did not start: {err}", pytrace=False)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name in _FOREIGN_AWS_ENV:
                mp.delenv(name, raising=False)
            for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_")]:
                mp.delenv(name)
            # ~/.aws of whoever runs the tests plays no part.
            mp.setenv("AWS_CONFIG_FILE", os.devnull)
            mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
            for name, value in stack.env().items():
                mp.setenv(name, value)
            yield stack
    finally:
        stack.stop()


@pytest.fixture
def stack(local_stack: LocalStack) -> LocalStack:
    local_stack.reset()
    return local_stack


@pytest.fixture
def mailbox(stack: LocalStack) -> tuple[str, str]:
    return stack.new_mailbox()
