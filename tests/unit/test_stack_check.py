"""``lettershop stack check``'s IAM step: each role simulated on the deployed stack's real ARNs.

moto has no ``SimulatePrincipalPolicy``; a recording IAM client answers here as IAM would.
"""

from typing import Any

from adapters.deployment import StackDescription
from cli.stack import iam_checks

ACCOUNT = "111122223333"
DEPLOYED = StackDescription(
    name="lettershop-email-channel-prod",
    account=ACCOUNT,
    region="eu-west-1",
    partition="aws",
    status="CREATE_COMPLETE",
    parameters={"SenderDomain": "shop.example", "SecretsPrefix": "lettershop/"},
    outputs={},
    resources={
        "ChannelsTable": "prod-ChannelsTable-1A2B",
        "StateTable": "prod-StateTable-3C4D",
        "ScriptsBucket": "prod-scriptsbucket-5e6f",
        "ArchiveBucket": "prod-archivebucket-7a8b",
        "ScheduleGroup": "ScheduleGroup-9c0d",
        "PollFunctionRole": "prod-PollFunctionRole-AAAA",
        "ScheduleSyncFunctionRole": "prod-ScheduleSyncFunctionRole-BBBB",
        "SchedulerRole": "prod-SchedulerRole-CCCC",
    },
)


class RecordingIam:
    """Answers ``SimulatePrincipalPolicy``: ``refused`` actions are implicitly denied."""

    def __init__(self, refused: frozenset[str] = frozenset()) -> None:
        self.refused = refused
        self.asked: list[dict[str, Any]] = []

    def simulate_principal_policy(self, **request: Any) -> dict[str, Any]:
        self.asked.append(request)
        [action] = request["ActionNames"]
        decision = "implicitDeny" if action in self.refused else "allowed"
        return {"EvaluationResults": [{"EvalActionName": action, "EvalDecision": decision}]}


def test_each_role_is_simulated_for_what_its_function_needs_on_the_real_arns() -> None:
    iam = RecordingIam()

    checks = list(iam_checks(DEPLOYED, iam))

    assert [(c.name, c.ok) for c in checks] == [
        ("IAM PollFunction", True),
        ("IAM ScheduleSyncFunction", True),
    ]
    poll_role = f"arn:aws:iam::{ACCOUNT}:role/prod-PollFunctionRole-AAAA"
    asked = {(r["PolicySourceArn"], r["ActionNames"][0], r["ResourceArns"][0]) for r in iam.asked}
    state = f"arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/prod-StateTable-3C4D"
    assert (poll_role, "dynamodb:BatchWriteItem", state) in asked
    assert (poll_role, "s3:ListBucket", "arn:aws:s3:::prod-archivebucket-7a8b") in asked
    secret = f"arn:aws:secretsmanager:eu-west-1:{ACCOUNT}:secret:lettershop/stack-check-AbCdEf"
    assert (poll_role, "secretsmanager:GetSecretValue", secret) in asked
    sync_role = f"arn:aws:iam::{ACCOUNT}:role/prod-ScheduleSyncFunctionRole-BBBB"
    assert (sync_role, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/prod-SchedulerRole-CCCC") in asked
    [ses] = [
        r
        for r in iam.asked
        if r["ResourceArns"] == [f"arn:aws:ses:eu-west-1:{ACCOUNT}:identity/shop.example"]
    ]
    assert {
        "ContextKeyName": "ses:FromAddress",
        "ContextKeyValues": ["lettershop@shop.example"],
        "ContextKeyType": "string",
    } in ses["ContextEntries"]


def test_a_refused_request_fails_the_role_naming_action_and_resource() -> None:
    checks = list(iam_checks(DEPLOYED, RecordingIam(refused=frozenset({"dynamodb:BatchWriteItem"}))))

    poll = checks[0]
    assert (poll.name, poll.ok) == ("IAM PollFunction", False)
    assert (
        f"dynamodb:BatchWriteItem on arn:aws:dynamodb:eu-west-1:{ACCOUNT}:table/prod-StateTable-3C4D:"
        " implicitDeny" in poll.detail
    )
    assert checks[1].ok is True
