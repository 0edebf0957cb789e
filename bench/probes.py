"""In-process probes around a real poll: every botocore API call, and what the poll writes to stdout.

* :class:`ApiCalls` wraps ``botocore.client.BaseClient._make_api_call`` for the whole class, so every
  client counts, whoever made it and whenever (the service's own, Powertools' Secrets Manager
  client, clients made before the probe was installed). A retried call counts once: retries happen
  inside ``_make_api_call``.
* :class:`StdoutBytes` points file descriptor 1 at a temporary file for a while: the poll's JSON log
  lines and EMF metrics are written for real (as they are in Lambda, to the runtime's pipe) without
  flooding the bench output, and their size is what CloudWatch Logs would ingest.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

METHOD = "_make_api_call"  # every API call of every botocore client goes through it


@dataclass
class CallWindow:
    """The API calls made while one ``ApiCalls.window()`` was open, as ``service.Operation`` names."""

    calls: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.calls)

    def breakdown(self) -> str:
        """``dynamodb.GetItem 1, dynamodb.PutItem 2`` (most frequent first), or ``none``."""
        counted = Counter(self.calls).most_common()
        return ", ".join(f"{name} {count}" for name, count in counted) or "none"


class ApiCalls:
    """Counts botocore API calls in this process while installed (``with ApiCalls() as calls``)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._original: Callable[..., Any] | None = None

    def __enter__(self) -> ApiCalls:
        from botocore.client import BaseClient  # noqa: PLC0415  # the bench imports boto3 only here

        original: Callable[..., Any] = getattr(BaseClient, METHOD)
        probe = self

        def counted(client: Any, operation_name: str, api_params: Any) -> Any:
            name = f"{client.meta.service_model.service_name}.{operation_name}"
            with probe._lock:
                probe.calls.append(name)
            return original(client, operation_name, api_params)

        self._original = original
        setattr(BaseClient, METHOD, counted)
        return self

    def __exit__(self, *exc: object) -> None:
        from botocore.client import BaseClient  # noqa: PLC0415

        if self._original is not None:
            setattr(BaseClient, METHOD, self._original)
            self._original = None

    @contextlib.contextmanager
    def window(self) -> Iterator[CallWindow]:
        """The calls made inside the ``with`` block (filled in when it ends)."""
        window = CallWindow()
        start = len(self.calls)
        try:
            yield window
        finally:
            with self._lock:
                window.calls.extend(self.calls[start:])


@dataclass
class Written:
    """What was written to stdout inside one ``StdoutBytes.capture()``."""

    size: int = 0
    lines: int = 0


class StdoutBytes:
    """Redirects file descriptor 1 (and ``sys.stdout``'s buffer) into a temporary file while open."""

    @contextlib.contextmanager
    def capture(self) -> Iterator[Written]:
        written = Written()
        sys.stdout.flush()
        saved = os.dup(1)
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            try:
                yield written
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
                os.close(saved)
                sink.seek(0)
                data = sink.read()
                written.size = len(data)
                written.lines = data.count(b"\n")


@contextlib.contextmanager
def quiet_stdout() -> Iterator[Written]:
    """``StdoutBytes().capture()``: the poll's log lines are written, counted and not shown."""
    with StdoutBytes().capture() as written:
        yield written
