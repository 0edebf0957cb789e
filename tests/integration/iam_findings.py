"""The IAM check's verdict on the recorded calls (tests/integration/iam_recorder.py records them).

Each call of a function is mapped to the IAM requests AWS authorizes (``tools.iam_map``) and
decided against the function's role for the test stack (``tools.iam_policy``): denied and unmapped
calls fail the session; denials a test provokes on purpose, grants no call used and actions that
``lettershop stack check`` would not simulate (``tools.iam_needs``) are listed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from tools.iam_map import Call, Unmapped, requests_for
from tools.iam_needs import needs
from tools.iam_policy import StackPolicies, like
from tools.iam_template import Unresolvable, as_list

OPERATOR = "operator"

# Tests that point a function at a resource outside the stack on purpose, to make its call fail:
# in AWS the call is refused (AccessDenied) instead of failing on the missing resource, and the
# code takes the same path (adapters.aws_errors.classify: both are permanent). Listed, not failed.
EXPECTED_DENIALS = {
    "tests/integration/test_schedules.py::test_reconcile_reports_a_schedule_it_could_not_write": (
        "LETTERSHOP_SCHEDULE_GROUP=no-such-group, a group the stack does not have"
    ),
}
# Used with the function's role by Lambda itself, never by the code: the log, X-Ray traces, the
# dead-letter queue of failed invocations and the stream reads of the event source mapping.
USED_BY_LAMBDA = frozenset(
    {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "sqs:SendMessage",
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
    }
)


@dataclass
class Recorded:
    """One call and who made it: a function's handler (``handlers.poll.handler``) or ``operator``."""

    principal: str | None
    call: Call
    test: str


@dataclass
class Findings:
    denied: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    not_simulated: list[str] = field(default_factory=list)  # used, but not in tools/iam_needs.py
    expected: list[str] = field(default_factory=list)  # denied in a test of EXPECTED_DENIALS
    checked: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def failed(self) -> bool:
        return bool(self.denied or self.unmapped)


def evaluate(calls: list[Recorded], policies: StackPolicies) -> Findings:
    """Each function call's requests against its role; the grants no request used."""
    findings = Findings()
    used: set[tuple[str, str]] = set()  # (statement origin, action)
    seen: set[str] = set()
    try:
        simulated = {(handler, r.action) for handler, requests in needs(policies).items() for r in requests}
    except (KeyError, Unresolvable) as error:
        findings.unmapped.append(f"tools/iam_needs.py does not fit the template: {error!r}")
        simulated = set()
    for record in calls:
        if record.principal is None or record.principal == OPERATOR:
            findings.skipped["operator (cli/)" if record.principal else "harness (outside a handler)"] += 1
            continue
        findings.checked += 1
        function = policies.functions.get(record.principal, record.principal)
        where = f"{record.call.service} {record.call.operation} in {record.test}"
        try:
            requests = requests_for(record.call, policies)
        except (Unmapped, KeyError, Unresolvable) as error:
            line = f"{function}: {where}: no IAM mapping ({error})"
            if line not in seen:
                findings.unmapped.append(line)
            seen.add(line)
            continue
        for request in requests:
            if (record.principal, request.action) not in simulated:
                line = f"{function}: {request.action}"
                if line not in findings.not_simulated:
                    findings.not_simulated.append(line)
            try:
                allowed, deciding = policies.decide(record.principal, request)
            except Unresolvable as error:
                line = f"{function}: {request.action} on {request.resource}: {error}"
                if line not in seen:
                    findings.unmapped.append(line)
                seen.add(line)
                continue
            used.update((s.origin, request.action) for s in deciding if allowed)
            if not allowed:
                denied_by = f" (explicit deny: {', '.join(s.origin for s in deciding)})" if deciding else ""
                line = f"{function}: {request.action} on {request.resource}{denied_by} ({where})"
                key = f"{function} {request.action} {request.resource} {denied_by}"
                test = record.test.rsplit(" (", 1)[0]
                into = findings.expected if test in EXPECTED_DENIALS else findings.denied
                if key not in seen:
                    into.append(line + (f": {EXPECTED_DENIALS[test]}" if test in EXPECTED_DENIALS else ""))
                seen.add(key)
    findings.unused = list(_unused(policies, used))
    return findings


def _unused(policies: StackPolicies, used: set[tuple[str, str]]) -> Iterator[str]:
    for handler, role in sorted(policies.roles.items()):
        for statement in policies.statements(handler):
            if statement.effect != "Allow":
                continue
            for action in as_list(statement.body.get("Action", [])):
                if action in USED_BY_LAMBDA:
                    continue
                if not any(origin == statement.origin and _covers(action, a) for origin, a in used):
                    yield f"{policies.functions[handler]} ({role}): {statement.origin} {action}"


def _covers(pattern: str, action: str) -> bool:
    return like(pattern, action, case=False)
