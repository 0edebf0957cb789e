"""The outputs of a deployed CloudFormation stack: where ``lettershop --stack NAME`` finds the
names of the stack's tables, buckets and schedule group (the functions read them from their
environment instead)."""

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify


def stack_outputs(client: Any, stack_name: str) -> dict[str, str]:
    """Every output of the stack, by key, through an injected ``cloudformation`` client."""
    try:
        answer = client.describe_stacks(StackName=stack_name)
    except (ClientError, BotoCoreError) as error:
        raise classify(error, f"reading the outputs of stack {stack_name}") from error
    [stack] = answer["Stacks"]
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}
