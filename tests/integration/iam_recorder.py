"""The IAM check of the integration tests: every AWS call a function makes must be allowed by its role.

moto enforces no IAM, so this pytest plugin does. Each boto3 client the functions make
(``adapters.clients.new_client``, the warm state's clients) gets botocore event hooks that record
service, operation, parameters and outcome of each call, and which function made it: the handler
on the calling thread's stack (``handlers.poll`` → PollFunction's role, ``handlers.schedules`` →
ScheduleSyncFunction's role; a transfer thread of s3transfer takes the handler running elsewhere).
Calls from ``cli/`` use the operator's credentials and calls of the harness itself (a test reading
back an item, devstack creating tables) are counted but not checked.

At the end of the session every recorded call is mapped to the IAM requests AWS authorizes
(``tools.iam_map``) and evaluated against template.yaml's rendered policies for the test stack
(``tools.iam_policy``). A denied or unmapped call fails the session (exit status 1) naming the
function, action, resource and test; grants no call used are listed, not failed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

import adapters.clients
from tests.integration.iam_findings import OPERATOR, USED_BY_LAMBDA, Findings, Recorded, evaluate
from tools.iam_map import Call
from tools.iam_policy import StackPolicies
from tools.iam_template import TEST_STACK, Unresolvable, render

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = ROOT / "src" / "handlers"
CLI = ROOT / "cli"
# A poll run in a child process (devstack/run_poll.py, the crash tests) appends its calls here.
RECORD_DIR_ENV = "LETTERSHOP_IAM_RECORD_DIR"


def _stack_principal(frame: FrameType | None) -> str | None:
    """``operator`` for a call from cli/, else the module of the innermost handler on the stack."""
    handler = None
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.is_relative_to(CLI):
            return OPERATOR
        if handler is None and path.is_relative_to(HANDLERS):
            handler = "handlers." + path.stem + ".handler"
        frame = frame.f_back
    return handler


def _has_transfer_frame(frame: FrameType | None) -> bool:
    while frame is not None:
        if "s3transfer" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def principal_of_current_call() -> str | None:
    frame = sys._getframe(1)
    principal = _stack_principal(frame)
    if principal is None and _has_transfer_frame(frame):
        me = threading.get_ident()
        found = {_stack_principal(f) for ident, f in sys._current_frames().items() if ident != me} - {None}
        if len(found) == 1:
            principal = found.pop()
    return principal


def _bytes_as_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"{type(value).__name__} is not JSON")


def _slim(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters without payloads (message bodies), keeping the raw mail's headers for SES."""
    slim = {key: value for key, value in params.items() if key not in ("Body", "SecretString")}
    raw = params.get("Content", {}).get("Raw", {}).get("Data")
    if isinstance(raw, bytes | str):
        data = raw if isinstance(raw, bytes) else raw.encode()
        slim["Content"] = {"Raw": {"Data": data.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]}}
    return slim


class IamRecorder:
    """Records the calls (installed by the ``iam_recorder`` fixture) and checks them at the end."""

    def __init__(self, sink: Path | None = None) -> None:
        self.calls: list[Recorded] = []
        self._lock = threading.Lock()
        self._sink = sink  # a child process writes each finished call there (it may be killed)
        self.children: Path | None = None  # where child processes write theirs
        self.from_children = 0

    # -------------------------------------------------------------- hooks

    def instrument(self, client: Any) -> Any:
        events = client.meta.events
        events.register("provide-client-params.*.*", self._params)
        events.register("before-call.*.*", self._before)
        events.register("after-call.*.*", self._after)
        events.register("after-call-error.*.*", self._failed)
        return client

    @staticmethod
    def _params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["iam_params"] = _slim(params)

    def _before(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        call = Call(model.service_model.service_name, model.name, context.get("iam_params", {}))
        record = Recorded(principal_of_current_call(), call, os.environ.get("PYTEST_CURRENT_TEST", "?"))
        context["iam_record"] = record
        with self._lock:
            self.calls.append(record)

    def _after(self, http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        record: Recorded | None = context.get("iam_record")
        if record is not None:
            record.call.status = http_response.status_code
            record.call.error = str(parsed.get("Error", {}).get("Code", ""))
            if "ARN" in parsed:
                record.call.response = {"ARN": parsed["ARN"]}
            self._write(record)

    def _failed(self, exception: BaseException, context: dict[str, Any], **_: Any) -> None:
        record: Recorded | None = context.get("iam_record")
        if record is not None:
            record.call.error = type(exception).__name__
            self._write(record)

    def _write(self, record: Recorded) -> None:
        if self._sink is None:
            return
        call = record.call
        line = [record.principal, record.test, call.service, call.operation, call.params, call.response]
        text = json.dumps([*line, call.status, call.error], default=_bytes_as_text)
        with self._lock, self._sink.open("a", encoding="utf-8") as sink:
            sink.write(text + "\n")

    def load_children(self, folder: Path) -> None:
        """The calls that polls in child processes wrote to ``folder``."""
        for path in sorted(folder.glob("*.jsonl")):
            for text in path.read_text(encoding="utf-8").splitlines():
                principal, test, service, operation, params, response, status, error = json.loads(text)
                call = Call(service, operation, params, response, status, error)
                self.calls.append(Recorded(principal, call, test))
                self.from_children += 1

    # -------------------------------------------------------------- pytest

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.children is not None:
            self.load_children(self.children)
        try:
            self.findings = evaluate(self.calls, StackPolicies(render(), TEST_STACK))
        except Unresolvable as error:  # the template uses what the check cannot evaluate offline
            self.findings = Findings(unmapped=[f"template.yaml: {error}"])
        if self.findings.failed:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        findings: Findings | None = getattr(self, "findings", None)
        if findings is None:
            return
        write = terminalreporter.write_line
        terminalreporter.section("IAM check (template.yaml's policies, tools/iam_policy.py)")
        skipped = ", ".join(f"{count} {who}" for who, count in sorted(findings.skipped.items()))
        write(
            f"{findings.checked} function calls checked ({self.from_children} recorded by polls in child "
            f"processes); not checked: {skipped or 'none'}"
        )
        for line in findings.denied:
            write(f"DENIED {line}", red=True)
        for line in findings.unmapped:
            write(f"UNMAPPED {line}", red=True)
        for line in findings.expected:
            write(f"denied as the test intends: {line}")
        for line in findings.unused:
            write(f"unused grant (no test used it): {line}")
        for line in findings.not_simulated:
            write(
                f"used but not simulated by `lettershop stack check` (add it to tools/iam_needs.py): {line}"
            )
        write(f"not looked for (Lambda itself uses them with the role): {', '.join(sorted(USED_BY_LAMBDA))}")
        if findings.failed:
            write(
                f"{len(findings.denied)} denied, {len(findings.unmapped)} unmapped: the session fails",
                red=True,
            )


def record_this_process() -> None:
    """In a child process that runs a poll (devstack/run_poll.py): record into the session's folder."""
    folder = os.environ.get(RECORD_DIR_ENV)
    if folder:
        recorder = IamRecorder(sink=Path(folder) / f"{os.getpid()}.jsonl")
        made = adapters.clients.new_client
        adapters.clients.new_client = lambda service: recorder.instrument(made(service))


@pytest.fixture(scope="session", autouse=True)
def iam_recorder(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IamRecorder]:
    """Record the functions' AWS calls for the whole session; the check runs at its end."""
    recorder = IamRecorder()
    recorder.children = tmp_path_factory.mktemp("iam-calls")
    request.config.pluginmanager.register(recorder, "iam_recorder")
    made = adapters.clients.new_client
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(adapters.clients, "new_client", lambda service: recorder.instrument(made(service)))
        mp.setenv(RECORD_DIR_ENV, str(recorder.children))
        yield recorder
