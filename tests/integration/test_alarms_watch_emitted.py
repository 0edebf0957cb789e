"""The alarms and the dashboard watch what the code emits (issue 19, point 4).

Runs last (``emf_recorder`` moves it there), over the EMF documents every integration test made the
handlers print, and only when the session ran every integration test: a subset (``-k``, one file, a
test id) leaves metrics unemitted, so the check skips and says why. When it finds a problem and some
integration tests failed or skipped, its message says so: their metrics may be what is missing.
"""

import json
from typing import Any

import pytest

from service.telemetry import NAMESPACE, SERVICE
from tests.integration.emf_recorder import recorder_of
from tests.unit.test_template import _transformed
from tests.watched_metrics import Emitted, Resolver, emitted_in, problems, template_watches

pytestmark = pytest.mark.integration

# Metrics the code emits that no alarm or widget watches, on purpose: metric name -> why.
UNWATCHED = {
    "MessagesRecognized": "the sum of the four outcomes the dashboard shows (processed, failed, rejected, "
    "deferred); nothing to do when it rises",
    "PollLocked": "two polls of a channel overlapped: harmless now and then, and a poll that keeps "
    "running into the next one shows on the dashboard's poll duration",
    "ReplyUndeliverable": "the recipient refused the reply for good: counted in MessagesFailed on the "
    "dashboard; the log line names the recipient; nothing in the stack to fix",
    "ReplyTooLarge": "the partner got a notice naming both sizes: counted in MessagesFailed on the "
    "dashboard; docs/operations.md says what to do if it happens often",
}


def test_every_alarm_and_widget_watches_an_emitted_metric_and_every_metric_is_watched(
    request: pytest.FixtureRequest,
) -> None:
    recorder = recorder_of(request.config)
    if recorder.incomplete:
        pytest.skip(f"alarm check needs every integration test: {recorder.incomplete}")
    cfn: dict[str, Any] = json.loads(_transformed())
    resolve = Resolver(cfn, stack_name=SERVICE)  # a stack named as the local stack's functions' service
    emitted: list[Emitted] = [e for test, doc in recorder.documents for e in emitted_in(doc, test)]

    found = problems(template_watches(cfn, resolve), emitted, UNWATCHED, resolve)

    assert not found, "\n".join(found) + recorder.caveat()
    assert {e.namespace for e in emitted} == {NAMESPACE}
