"""The one warm state: everything a function instance keeps from one invocation to the next.

A Lambda instance serves many invocations; what it learnt in one saves requests in the next. All of
it lives here, in one object the composition root makes once per process (``app.root.WARM``) and
hands to the adapters it builds; ``reset()`` makes the process cold again (the tests start each case
so). Nothing else in ``src/`` keeps state between invocations (tests/unit/test_module_state.py).

* ``clients``: one boto3 client per AWS service, made by the first use;
* ``secrets``: the secrets, each read at most once a day (``adapters.secrets``);
  :meth:`forget_secrets` after a poll that failed on a setting;
* ``tokens``: OAuth 2.0 access tokens until shortly before they expire (``adapters.oauth``);
* ``counters``: the serial counter's value after this process's last block (``adapters.serials``);
* ``memories``: each channel's mailbox memory (``adapters.mailbox_memory``);
* ``statuses``: what this process last wrote as each channel's status (``adapters.status``);
* ``scripts``: the scripts on local disk by ETag (``adapters.script_store``);
* ``tls``: the verifying TLS context of the mail servers (``adapters.network``);
* the function's settings, read from the environment by the first invocation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from adapters.clients import AwsClients
from adapters.mailbox_memory import WarmMemories
from adapters.network import TlsContexts
from adapters.oauth import TokenCache
from adapters.script_store import ScriptCache
from adapters.secrets import SecretStore
from adapters.serials import KnownValues
from adapters.status import WrittenStatuses

if TYPE_CHECKING:  # pydantic-settings is imported by the first read, not at cold start
    from schedule_settings import ScheduleSettings
    from settings import PollSettings


class WarmState:
    """Every per-instance cache of the functions and the command line; one :meth:`reset`."""

    def __init__(self) -> None:
        self.clients = AwsClients()
        self.secrets = SecretStore(lambda: self.clients.get("secretsmanager"))
        self.tokens = TokenCache()
        self.counters: KnownValues = {}
        self.memories: WarmMemories = {}
        self.statuses: WrittenStatuses = {}
        self.scripts = ScriptCache()
        self.tls = TlsContexts()
        self._poll_settings: PollSettings | None = None
        self._schedule_settings: ScheduleSettings | None = None

    def client(self, service: str) -> Any:
        """The boto3 client of ``service`` (``dynamodb``, ``s3``, ...)."""
        return self.clients.get(service)

    def poll_settings(self) -> PollSettings:
        """The poll function's settings, read from the environment by the first call."""
        if self._poll_settings is None:
            from settings import poll_settings  # noqa: PLC0415  # pydantic-settings: by the first invocation

            self._poll_settings = poll_settings()
        return self._poll_settings

    def schedule_settings(self) -> ScheduleSettings:
        """The schedule sync's settings, read from the environment by the first call."""
        if self._schedule_settings is None:
            from schedule_settings import schedule_settings  # noqa: PLC0415  # see poll_settings

            self._schedule_settings = schedule_settings()
        return self._schedule_settings

    def forget_secrets(self) -> None:
        """Read every secret afresh at its next use (a poll failed on a setting: maybe a rotated
        password)."""
        self.secrets.forget()

    def reset(self) -> None:
        """Forget everything, as a new function instance would have it (the script files too)."""
        self.clients.clear()
        self.secrets.reset()
        self.tokens.clear()
        self.counters.clear()
        self.memories.clear()
        self.statuses.clear()
        self.scripts.clear()
        self.tls.clear()
        self._poll_settings = None
        self._schedule_settings = None
