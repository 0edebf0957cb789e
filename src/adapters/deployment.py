"""A deployed stack, read only: for ``lettershop stack check`` after ``make deploy`` (docs/deploy.md).

Each function takes an injected boto3 client of its service; nothing here writes. AWS errors
become our errors through ``adapters.aws_errors.classify``, except the "not found" answers, which
are the answer.
"""

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from adapters.aws_errors import S3_MISSING, classify, error_code

# HeadBucket answers 404 without a body (S3_MISSING); the other services name their code.
MISSING = S3_MISSING | frozenset({"ResourceNotFoundException", "NoSuchBucket", "NotFoundException"})


@dataclass(frozen=True)
class StackDescription:
    """Where the stack lives (from its ARN), its parameters and its outputs."""

    name: str
    account: str
    region: str
    partition: str
    status: str
    parameters: dict[str, str]
    outputs: dict[str, str]
    resources: dict[str, str]  # logical id -> physical id (what Ref gives)


def describe_stack(client: Any, stack_name: str) -> StackDescription:
    """The stack, through an injected ``cloudformation`` client (DescribeStacks, ListStackResources)."""
    try:
        [stack] = client.describe_stacks(StackName=stack_name)["Stacks"]
        resources: dict[str, str] = {}
        for page in client.get_paginator("list_stack_resources").paginate(StackName=stack_name):
            for summary in page.get("StackResourceSummaries", []):
                resources[summary["LogicalResourceId"]] = summary.get("PhysicalResourceId", "")
    except (ClientError, BotoCoreError) as error:
        raise classify(error, f"reading stack {stack_name}") from error
    _, partition, _, region, account, _ = str(stack["StackId"]).split(":", 5)
    return StackDescription(
        name=stack_name,
        account=account,
        region=region,
        partition=partition,
        status=str(stack.get("StackStatus", "?")),
        parameters={p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])},
        outputs={o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])},
        resources=resources,
    )


def _exists(call: Any, what: str, **kwargs: Any) -> bool:
    try:
        call(**kwargs)
    except ClientError as error:
        if error_code(error) in MISSING:
            return False
        raise classify(error, what) from error
    except BotoCoreError as error:
        raise classify(error, what) from error
    return True


def table_exists(client: Any, name: str) -> bool:
    """Through a ``dynamodb`` client (``DescribeTable``)."""
    return _exists(client.describe_table, f"describing table {name}", TableName=name)


def bucket_exists(client: Any, name: str) -> bool:
    """Through an ``s3`` client (``HeadBucket``)."""
    return _exists(client.head_bucket, f"looking for bucket {name}", Bucket=name)


def schedule_group_exists(client: Any, name: str) -> bool:
    """Through a ``scheduler`` client (``GetScheduleGroup``)."""
    return _exists(client.get_schedule_group, f"looking for schedule group {name}", Name=name)


def topic_subscriptions(client: Any, topic_arn: str) -> tuple[int, int]:
    """``(confirmed, pending)`` subscriptions of an SNS topic, through an ``sns`` client."""
    confirmed = pending = 0
    try:
        for page in client.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
            for subscription in page.get("Subscriptions", []):
                if str(subscription.get("SubscriptionArn", "")).startswith("arn:"):
                    confirmed += 1
                else:
                    pending += 1  # "PendingConfirmation"
    except (ClientError, BotoCoreError) as error:
        raise classify(error, f"listing the subscriptions of topic {topic_arn}") from error
    return confirmed, pending


def simulate(
    client: Any, principal_arn: str, action: str, resource: str, context: dict[str, str | list[str]]
) -> str:
    """IAM's decision (``allowed``, ``implicitDeny``, ``explicitDeny``) for one request of the role,
    through an ``iam`` client (``SimulatePrincipalPolicy``: identity policies, boundaries, SCPs)."""
    entries = [
        {
            "ContextKeyName": key,
            "ContextKeyValues": value if isinstance(value, list) else [value],
            "ContextKeyType": "stringList" if isinstance(value, list) else "string",
        }
        for key, value in context.items()
    ]
    try:
        answer = client.simulate_principal_policy(
            PolicySourceArn=principal_arn,
            ActionNames=[action],
            ResourceArns=[resource],
            ContextEntries=entries,
        )
    except (ClientError, BotoCoreError, ResponseParserError) as error:  # moto: a 500 page, not XML
        raise classify(error, f"simulating {action} on {resource} for {principal_arn}") from error
    [result] = answer["EvaluationResults"]
    return str(result["EvalDecision"])
