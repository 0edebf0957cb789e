"""``lettershop stack check``: the first-deploy smoke check of a deployed stack, read only.

After ``make deploy`` (docs/deploy.md): the stack's outputs resolve, its tables, buckets and
schedule group exist, each function's role is allowed (IAM's policy simulator, which sees
permission boundaries and SCPs too) every request the functions need on the stack's real ARNs
(``tools.iam_needs``, the map of the test suite's IAM check), the alarm topic has a confirmed
subscription, and one channel (``--channel ID``) passes ``channel check``.
"""

from collections.abc import Iterator
from typing import Annotated, Any

import typer

from adapters.deployment import (
    StackDescription,
    bucket_exists,
    describe_stack,
    schedule_group_exists,
    simulate,
    table_exists,
    topic_subscriptions,
)
from app.root import aws_client
from cli.checks import Check, report, run_checks
from cli.context import CliError, handled, say, stack_of
from devstack.aws import load_template
from domain.errors import LetterShopError
from tools.iam_needs import needs
from tools.iam_policy import StackPolicies
from tools.iam_template import StackIdentity, Unresolvable, render

app = typer.Typer(help="The deployed stack: check.", no_args_is_help=True)

TABLES = ("ChannelsTableName", "StateTableName")
BUCKETS = ("ScriptsBucketName", "ArchiveBucketName")


def stack_checks(described: StackDescription) -> Iterator[Check]:
    """Every check of the stack itself, in order; a check whose output is missing is skipped."""
    outputs = described.outputs
    expected = list(load_template().get("Outputs", {}))
    missing = [key for key in expected if not outputs.get(key)]
    yield Check(
        "outputs",
        not missing and described.status.endswith("_COMPLETE"),
        f"stack {described.name} is {described.status}; "
        + (f"outputs missing: {', '.join(missing)}" if missing else f"all {len(expected)} outputs resolve"),
        "finish or repeat `make deploy` (docs/deploy.md)",
    )
    for key, exists, kind in [(k, table_exists, "table") for k in TABLES] + [
        (k, bucket_exists, "bucket") for k in BUCKETS
    ]:
        yield _exists(outputs, key, kind, exists, "dynamodb" if kind == "table" else "s3")
    yield _exists(outputs, "ScheduleGroupName", "schedule group", schedule_group_exists, "scheduler")
    yield from iam_checks(described, aws_client("iam"))
    yield _alarm_topic(outputs.get("AlarmTopicArn"))


def _exists(outputs: dict[str, str], key: str, kind: str, exists: Any, service: str) -> Check:
    name = outputs.get(key)
    if not name:
        return Check(kind, None, f"not tried: no output {key}")
    try:
        found = exists(aws_client(service), name)
    except LetterShopError as error:
        return Check(kind, False, str(error))
    return Check(
        kind, found, f"{kind} {name} {'exists' if found else 'does not exist'}", "repeat `make deploy`"
    )


def iam_checks(described: StackDescription, iam: Any) -> Iterator[Check]:
    """One check per function: its role may make every request the function needs (simulated)."""
    identity = StackIdentity(
        stack_name=described.name,
        account=described.account,
        region=described.region,
        physical=described.resources,
        parameters=described.parameters,
        partition=described.partition,
    )
    try:
        policies = StackPolicies(render(), identity)
        wanted = needs(policies)
    except (Unresolvable, KeyError) as error:
        yield Check("IAM", False, f"the template cannot be resolved for this stack: {error}")
        return
    for handler, requests in wanted.items():
        function = policies.functions[handler]
        role = policies.role_arn(handler)
        refused = []
        try:
            for request in requests:
                decision = simulate(iam, role, request.action, request.resource, dict(request.context))
                if decision != "allowed":
                    refused.append(f"{request.action} on {request.resource}: {decision}")
        except LetterShopError as error:
            yield Check(
                f"IAM {function}", False, f"could not simulate: {error}", "grant iam:SimulatePrincipalPolicy"
            )
            continue
        if refused:
            yield Check(
                f"IAM {function}",
                False,
                f"role {role} is refused {len(refused)} of {len(requests)} request(s): " + "; ".join(refused),
                "deploy the template's role unchanged; look for permission boundaries or SCPs",
            )
        else:
            yield Check(
                f"IAM {function}", True, f"role {role} may make all {len(requests)} request(s) it needs"
            )


def _alarm_topic(topic: str | None) -> Check:
    if not topic:
        return Check("alarms", None, "not tried: no output AlarmTopicArn")
    try:
        confirmed, pending = topic_subscriptions(aws_client("sns"), topic)
    except LetterShopError as error:
        return Check("alarms", False, str(error))
    if confirmed:
        return Check("alarms", True, f"topic {topic} has {confirmed} confirmed subscription(s)")
    fix = (
        "confirm the subscription mail"
        if pending
        else "set AlarmEmail (make deploy) or subscribe an endpoint"
    )
    return Check("alarms", False, f"topic {topic} has no confirmed subscription ({pending} pending)", fix)


@app.command("check")
@handled
def check_command(
    ctx: typer.Context,
    channel_id: Annotated[
        str | None, typer.Option("--channel", help="also run `channel check` on it")
    ] = None,
) -> None:
    """Change nothing: outputs, tables, buckets, schedule group, the roles' IAM, alarms, a channel."""
    stack = stack_of(ctx)
    if not stack.stack_name:
        raise CliError("which stack? pass --stack NAME (stack check reads the deployed stack)")
    failed = report(stack_checks(describe_stack(aws_client("cloudformation"), stack.stack_name)))
    if channel_id:
        failed += report(run_checks(stack.channel(channel_id), stack))
    if failed:
        raise CliError(f"{failed} check(s) of stack {stack.stack_name} failed")
    say(f"stack {stack.stack_name}: every check passed")
