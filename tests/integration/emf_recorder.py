"""pytest plugin: every EMF document the handlers print during the integration tests, kept for the
alarm check (``test_alarms_watch_emitted.py``, which the plugin runs last).

Powertools Metrics writes EMF with the builtin ``print`` (``Metrics.flush_metrics``, the 100-metric
flush and ``single_metric``); the plugin gives the modules that do so a ``print`` of its own that
prints as before and keeps each EMF document printed while a Lambda entry point (``src/handlers``)
runs during an integration test, with that test's id: what Lambda would ship to CloudWatch, not what a
test made an adapter print on its own. That works whatever the test does with stdout (``capsys``,
``-s``). EMF printed in another thread is left out: it comes from a test running several
invocations at once in one process (``ThreadPoolExecutor``), which Lambda never does, and
Powertools' metric set is one per process, so such a document mixes the invocations' dimensions
(a poll's metrics without its ``channel_id``).

The check is sound only if every integration test ran: ``EmfRecorder.incomplete`` is ``None``
then, else the reason it is not (a file of the folder not collected, a test deselected by ``-k``,
``-m`` or ``--lf``, a test id given on the command line). The check skips with that reason.

Enabled by one line in ``tests/integration/conftest.py``, importing ``pytest_emf_recorder`` (a
``pytest_collection_modifyitems`` wrapper under a name of its own, so other plugins' hooks in that
conftest cannot clash with it); it registers the ``EmfRecorder`` once the selection is known.
"""

from __future__ import annotations

import builtins
import inspect
import json
import threading
from collections.abc import Generator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.metrics import base
from aws_lambda_powertools.metrics.provider.cloudwatch_emf import cloudwatch

FOLDER = Path(__file__).parent
CHECK = "test_alarms_watch_emitted.py"
# The modules of Powertools Metrics that print EMF (tests/unit/test_watched_metrics.py keeps this true).
PRINTING_MODULES: tuple[ModuleType, ...] = (base, cloudwatch)
HANDLERS = "handlers."  # the functions' entry points (src/handlers)
KEY = pytest.StashKey["EmfRecorder"]()


class EmfRecorder:
    """The EMF documents printed, per test, and whether the session ran every integration test."""

    def __init__(self, incomplete: str | None) -> None:
        self.documents: list[tuple[str, dict[str, Any]]] = []
        self.incomplete = incomplete
        self.failed: list[str] = []
        self.skipped: list[str] = []
        self._test = ""

    def print(self, *args: Any, **kwargs: Any) -> None:
        builtins.print(*args, **kwargs)
        for arg in args:
            document = _emf(arg)
            if document is not None and self._test and _printed_by_a_handler():
                self.documents.append((self._test, document))

    def caveat(self) -> str:
        """The integration tests that failed or skipped, for a failure message: their metrics may be
        what is missing."""
        parts = [
            f"{len(t)} {how} (e.g. {t[0]})"
            for how, t in (("failed", self.failed), ("skipped", self.skipped))
            if t
        ]
        return f"\nintegration tests that did not run through: {'; '.join(parts)}" if parts else ""

    def install(self) -> None:
        for module in PRINTING_MODULES:
            module.print = self.print  # type: ignore[attr-defined]  # shadows the builtin in that module

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        self._test = item.nodeid if _in_folder(Path(item.path)) else ""
        try:
            return (yield)
        finally:
            self._test = ""

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.nodeid.split("::")[0].endswith(CHECK) or not _in_folder(Path(report.fspath)):
            return
        if report.failed:
            self.failed.append(report.nodeid)
        elif report.skipped:
            self.skipped.append(report.nodeid)

    def pytest_unconfigure(self) -> None:
        for module in PRINTING_MODULES:
            vars(module).pop("print", None)


def _emf(text: object) -> dict[str, Any] | None:
    if not isinstance(text, str) or '"_aws"' not in text:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) and "_aws" in document else None


def _printed_by_a_handler() -> bool:
    """Printed on the main thread while a Lambda entry point (``handlers.*``) runs, as in Lambda:
    in its code, or in a Powertools decorator wrapping it (``log_metrics`` flushes the handler's
    metrics after the handler's own code returned)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    frame = inspect.currentframe()
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module.startswith(HANDLERS):
            return True
        if module.startswith("aws_lambda_powertools.") and any(
            callable(value) and str(getattr(value, "__module__", "")).startswith(HANDLERS)
            for value in frame.f_locals.values()
        ):
            return True
        frame = frame.f_back
    return False


def _in_folder(path: Path) -> bool:
    return path.resolve().is_relative_to(FOLDER)


# Files whose tests print no EMF of this process, so the check does not need them: the rehearsal runs
# the built handler in a sandboxed process of its own, and skips as a whole without a build.
ELSEWHERE = frozenset({"test_rehearsal.py"})


def incompleteness(config: pytest.Config, before: list[pytest.Item], after: list[pytest.Item]) -> str | None:
    """Why this session does not run every integration test, or ``None`` when it does."""
    files = {p.name for p in FOLDER.glob("test_*.py")} - ELSEWHERE
    collected = {Path(i.path).name for i in before if _in_folder(Path(i.path))}
    if missing := sorted(files - collected):
        return f"{len(missing)} of {len(files)} integration test files not collected (e.g. {missing[0]})"
    kept = {i.nodeid for i in after}
    if dropped := [i.nodeid for i in before if _in_folder(Path(i.path)) and i.nodeid not in kept]:
        return f"{len(dropped)} integration tests were deselected (e.g. {dropped[0]})"
    if picked := [arg for arg in config.args if "::" in arg]:
        return f"only some tests of a file were asked for ({picked[0]})"
    return None


@pytest.hookimpl(specname="pytest_collection_modifyitems", wrapper=True, tryfirst=True)
def pytest_emf_recorder(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    """Around every other plugin's selection: note what it deselected, register the recorder, and
    move the alarm check to the end of the run."""
    before = list(items)
    yield
    if KEY in config.stash:
        return
    recorder = EmfRecorder(incompleteness(config, before, items))
    config.stash[KEY] = recorder
    config.pluginmanager.register(recorder, "emf_recorder")
    recorder.install()
    items.sort(key=lambda item: Path(item.path).name == CHECK and _in_folder(Path(item.path)))


def recorder_of(config: pytest.Config) -> EmfRecorder:
    """The session's recorder (registered when the integration folder's conftest was loaded)."""
    return config.stash[KEY]
