"""The IAM check (tools/iam_policy.py, tools/iam_map.py, tests/integration/iam_recorder.py) can fail.

The rendered template's policies for the test stack decide each recorded call; removing the
statement that grants a call makes the same call denied, naming function, action and resource.
"""

import functools
from pathlib import Path
from typing import Any

import pytest

from tests.integration.iam_findings import OPERATOR, Recorded, evaluate
from tests.integration.iam_recorder import IamRecorder
from tools.iam_map import Call, Unmapped, requests_for
from tools.iam_policy import Request, StackPolicies
from tools.iam_template import TEST_STACK, render

POLL = "handlers.poll.handler"
SYNC = "handlers.schedules.handler"
ACCOUNT_REGION = "eu-central-1:123456789012"
STATE = f"arn:aws:dynamodb:{ACCOUNT_REGION}:table/lettershop-state"


@functools.cache
def _rendered() -> dict[str, Any]:
    return render()


def policies(*, without: str = "") -> StackPolicies:
    """The test stack's policies; ``without`` removes the statements of that Sid from every role."""
    template = _rendered()
    stack = StackPolicies(template, TEST_STACK)
    if without:
        for statements in stack.identity.values():
            statements[:] = [s for s in statements if not s.origin.endswith(f"/{without}")]
    return stack


def put_ledger() -> Call:
    return Call(
        "dynamodb", "PutItem", {"TableName": "lettershop-state", "Item": {"pk": {"S": "ledger#acme#1"}}}
    )


def test_a_granted_call_passes_and_fails_once_its_statement_is_removed() -> None:
    calls = [Recorded(POLL, put_ledger(), "t::ledger")]
    assert not evaluate(calls, policies()).failed

    findings = evaluate(calls, policies(without="LeaseLedgerCounters"))

    assert findings.denied == [
        f"PollFunction: dynamodb:PutItem on {STATE} (dynamodb PutItem in t::ledger)",
    ]


def test_batch_write_item_is_its_own_action_per_table_and_item() -> None:
    call = Call(
        "dynamodb",
        "BatchWriteItem",
        {
            "RequestItems": {
                "lettershop-state": [
                    {"PutRequest": {"Item": {"pk": {"S": "a"}}}},
                    {"DeleteRequest": {"Key": {"pk": {"S": "b"}}}},
                ]
            }
        },
    )
    requests = requests_for(call, policies())
    assert [(r.action, r.resource, r.context["dynamodb:LeadingKeys"]) for r in requests] == [
        ("dynamodb:BatchWriteItem", STATE, ["a"]),
        ("dynamodb:BatchWriteItem", STATE, ["b"]),
    ]


def test_transact_write_items_needs_each_item_action() -> None:
    call = Call(
        "dynamodb",
        "TransactWriteItems",
        {
            "TransactItems": [
                {"Update": {"TableName": "lettershop-state", "Key": {"pk": {"S": "serial"}}}},
                {"ConditionCheck": {"TableName": "lettershop-state", "Key": {"pk": {"S": "lock"}}}},
            ]
        },
    )
    findings = evaluate([Recorded(POLL, call, "t::serials")], policies())
    assert findings.denied == [
        f"PollFunction: dynamodb:ConditionCheckItem on {STATE} (dynamodb TransactWriteItems in t::serials)"
    ]


def test_a_missing_stored_reply_needs_list_bucket_else_aws_answers_403() -> None:
    call = Call("s3", "HeadObject", {"Bucket": "lettershop-archive", "Key": "replies/acme/x.eml"}, status=404)
    requests = requests_for(call, policies())
    assert [(r.action, r.resource) for r in requests] == [
        ("s3:GetObject", "arn:aws:s3:::lettershop-archive/replies/acme/x.eml"),
        ("s3:ListBucket", "arn:aws:s3:::lettershop-archive"),
    ]
    assert not evaluate([Recorded(POLL, call, "t")], policies()).failed
    denied = evaluate([Recorded(POLL, call, "t")], policies(without="MissingStoredReplyIs404")).denied
    assert denied == ["PollFunction: s3:ListBucket on arn:aws:s3:::lettershop-archive (s3 HeadObject in t)"]


def test_ses_send_email_needs_the_address_and_the_domain_identity_from_the_sender_domain() -> None:
    raw = b"From: LetterShop <lettershop@operator.example>\r\nTo: a@partner.example\r\n\r\nbody"
    call = Call("sesv2", "SendEmail", {"Content": {"Raw": {"Data": raw}}})
    identities = [r.resource for r in requests_for(call, policies())]
    assert identities == [
        f"arn:aws:ses:{ACCOUNT_REGION}:identity/lettershop@operator.example",
        f"arn:aws:ses:{ACCOUNT_REGION}:identity/operator.example",
    ]
    assert not evaluate([Recorded(POLL, call, "t")], policies()).failed

    foreign = Call("sesv2", "SendEmail", {"FromEmailAddress": "lettershop@elsewhere.example"})
    assert len(evaluate([Recorded(POLL, foreign, "t")], policies()).denied) == 2


def test_a_secret_is_authorized_on_its_arn_with_the_random_suffix() -> None:
    arn = f"arn:aws:secretsmanager:{ACCOUNT_REGION}:secret:lettershop/acme/pop3-AbCdEf"
    known = Call("secretsmanager", "GetSecretValue", {"SecretId": "lettershop/acme/pop3"}, {"ARN": arn})
    assert [r.resource for r in requests_for(known, policies())] == [arn]
    outside = Call("secretsmanager", "GetSecretValue", {"SecretId": "other/acme"}, status=400)
    assert evaluate([Recorded(POLL, outside, "t")], policies()).denied == [
        f"PollFunction: secretsmanager:GetSecretValue on arn:aws:secretsmanager:{ACCOUNT_REGION}:"
        "secret:other/acme-?????? (secretsmanager GetSecretValue in t)"
    ]


def test_status_writes_of_the_schedule_sync_are_held_to_their_leading_keys() -> None:
    status = Call(
        "dynamodb", "PutItem", {"TableName": "lettershop-state", "Item": {"pk": {"S": "status#acme"}}}
    )
    assert not evaluate([Recorded(SYNC, status, "t")], policies()).failed
    assert evaluate([Recorded(SYNC, put_ledger(), "t")], policies()).denied == [
        f"ScheduleSyncFunction: dynamodb:PutItem on {STATE} (dynamodb PutItem in t)"
    ]


def test_the_watchdog_may_query_the_watch_index_and_not_the_table() -> None:
    index = Call("dynamodb", "Query", {"TableName": "lettershop-state", "IndexName": "watch"})
    table = Call("dynamodb", "Query", {"TableName": "lettershop-state"})

    assert [r.resource for r in requests_for(index, policies())] == [f"{STATE}/index/watch"]
    assert not evaluate([Recorded(SYNC, index, "t")], policies()).failed
    assert evaluate([Recorded(SYNC, table, "t")], policies()).denied == [
        f"ScheduleSyncFunction: dynamodb:Query on {STATE} (dynamodb Query in t)"
    ]


def test_a_schedule_write_passes_the_scheduler_role() -> None:
    target = {"RoleArn": "arn:aws:iam::123456789012:role/lettershop-scheduler"}
    call = Call(
        "scheduler", "CreateSchedule", {"Name": "acme", "GroupName": "lettershop-channels", "Target": target}
    )
    assert not evaluate([Recorded(SYNC, call, "t")], policies()).failed
    denied = evaluate([Recorded(SYNC, call, "t")], policies(without="PassSchedulerRole")).denied
    assert denied == [
        "ScheduleSyncFunction: iam:PassRole on arn:aws:iam::123456789012:role/lettershop-scheduler "
        "(scheduler CreateSchedule in t)"
    ]


def test_a_bucket_policy_deny_wins_over_the_roles_allow() -> None:
    request = Request(
        "s3:PutObject", "arn:aws:s3:::lettershop-archive/inbound/x", {"aws:SecureTransport": "false"}
    )
    allowed, deciding = policies().decide(POLL, request)
    assert (allowed, [s.origin for s in deciding]) == (False, ["ArchiveBucketPolicy/DenyInsecureTransport"])


def test_an_unknown_call_is_unmapped_and_fails() -> None:
    call = Call("dynamodb", "RestoreTableFromBackup", {"TableName": "lettershop-state"})
    with pytest.raises(Unmapped):
        requests_for(call, policies())
    findings = evaluate([Recorded(POLL, call, "t")], policies())
    assert findings.failed
    assert findings.unmapped == [
        "PollFunction: dynamodb RestoreTableFromBackup in t: no IAM mapping (dynamodb RestoreTableFromBackup)"
    ]


def test_operator_and_harness_calls_are_counted_not_checked() -> None:
    findings = evaluate(
        [Recorded(OPERATOR, put_ledger(), "t"), Recorded(None, put_ledger(), "t")],
        policies(without="LeaseLedgerCounters"),
    )
    assert (findings.failed, findings.checked) == (False, 0)
    assert dict(findings.skipped) == {"operator (cli/)": 1, "harness (outside a handler)": 1}


def test_grants_no_call_used_are_reported() -> None:
    findings = evaluate([Recorded(POLL, put_ledger(), "t")], policies())
    assert (
        "PollFunction (PollFunctionRole): PollFunctionRole/poll-channel/LeaseLedgerCounters"
        " dynamodb:DeleteItem" in findings.unused
    )
    assert not any("LeaseLedgerCounters dynamodb:PutItem" in line for line in findings.unused)


def test_an_action_stack_check_would_not_simulate_is_reported() -> None:
    call = Call("dynamodb", "Query", {"TableName": "lettershop-state"})
    findings = evaluate([Recorded(POLL, call, "t"), Recorded(POLL, put_ledger(), "t")], policies())
    assert findings.not_simulated == ["PollFunction: dynamodb:Query"]


def test_a_denial_a_test_provokes_on_purpose_is_listed_not_failed() -> None:
    test = "tests/integration/test_schedules.py::test_reconcile_reports_a_schedule_it_could_not_write (call)"
    call = Call("scheduler", "DeleteSchedule", {"Name": "acme", "GroupName": "no-such-group"})
    findings = evaluate([Recorded(SYNC, call, test)], policies())
    assert not findings.failed
    assert findings.expected == [
        "ScheduleSyncFunction: scheduler:DeleteSchedule on arn:aws:scheduler:eu-central-1:123456789012:"
        f"schedule/no-such-group/acme (scheduler DeleteSchedule in {test}): LETTERSHOP_SCHEDULE_GROUP="
        "no-such-group, a group the stack does not have"
    ]
    assert evaluate([Recorded(SYNC, call, "tests/integration/test_other.py::t (call)")], policies()).failed


def test_a_poll_in_a_child_process_hands_its_calls_to_the_session(tmp_path: Path) -> None:
    raw = b"From: lettershop@operator.example\r\n\r\nbody"
    child = IamRecorder(sink=tmp_path / "4242.jsonl")
    sent = Recorded(POLL, Call("sesv2", "SendEmail", {"Content": {"Raw": {"Data": raw}}}, status=200), "t")
    child._write(sent)  # what the child's after-call hook does
    session = IamRecorder()

    session.load_children(tmp_path)

    [loaded] = session.calls
    assert (loaded.principal, loaded.call.operation, loaded.call.status) == (POLL, "SendEmail", 200)
    assert next(r.resource for r in requests_for(loaded.call, policies())).endswith(
        "lettershop@operator.example"
    )
