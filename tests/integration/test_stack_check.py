"""``lettershop --stack NAME stack check`` against a stack deployed in moto (read only).

moto serves CloudFormation, DynamoDB, S3, Scheduler and SNS; it does not implement IAM's
``SimulatePrincipalPolicy``, so here the IAM step reports that it could not simulate (the
decisions themselves are tested with a recording IAM client in tests/unit/test_stack_check.py).
"""

from typer.testing import CliRunner, Result

from cli.main import app
from devstack import aws
from devstack.aws import load_template
from devstack.invoke import store_channel
from devstack.stack import LocalStack

runner = CliRunner()


def lettershop(*args: str) -> Result:
    result = runner.invoke(app, list(args), env={"POWERTOOLS_METRICS_DISABLED": "true"})
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def deploy(stack: LocalStack, name: str, *, subscribe: bool = True, schedule_group: str | None = None) -> str:
    """A CloudFormation stack in moto with every output of the template, naming the local resources."""
    sns = aws.client("sns", stack.endpoint_url)
    topic: str = sns.create_topic(Name=f"{name}-alarms")["TopicArn"]
    if subscribe:
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint="arn:aws:sqs:eu-central-1:123456789012:ops")
    outputs = {key: f"{name}-{key}" for key in load_template()["Outputs"]}
    outputs |= {
        "ChannelsTableName": stack.names.channels_table,
        "StateTableName": stack.names.state_table,
        "ScriptsBucketName": stack.names.scripts_bucket,
        "ArchiveBucketName": stack.names.archive_bucket,
        "ScheduleGroupName": schedule_group or stack.names.schedule_group,
        "AlarmTopicArn": topic,
    }
    aws.deploy_outputs(stack.endpoint_url, name, outputs)
    return topic


def lines(result: Result) -> dict[str, str]:
    """``check name`` → its mark (``ok``, ``FAIL``, ``skip``)."""
    found = {}
    for line in result.stdout.splitlines():
        mark, _, rest = line.partition(" ")
        if mark in ("ok", "FAIL", "skip"):
            found[rest.strip().split(":", 1)[0]] = mark
    return found


def test_a_deployed_stack_passes_every_check_moto_serves(stack: LocalStack, mailbox: tuple[str, str]) -> None:
    deploy(stack, "lettershop-smoke")
    store_channel(stack, mailbox)

    result = lettershop("--stack", "lettershop-smoke", "stack", "check", "--channel", "acme")

    assert lines(result) == {
        "outputs": "ok",
        "table": "ok",
        "bucket": "ok",
        "schedule group": "ok",
        "IAM PollFunction": "FAIL",  # moto: SimulatePrincipalPolicy is not implemented
        "IAM ScheduleSyncFunction": "FAIL",
        "alarms": "ok",
        "POP3 password": "ok",
        "SMTP password": "ok",
        "POP3": "ok",
        "SMTP": "ok",
    }, result.stdout
    assert "could not simulate" in result.stdout
    assert f"all {len(load_template()['Outputs'])} outputs resolve" in result.stdout
    assert "table lettershop-state exists" in result.stdout
    assert result.exit_code == 1


def test_a_missing_schedule_group_and_an_unconfirmed_alarm_topic_fail(stack: LocalStack) -> None:
    deploy(stack, "lettershop-broken", subscribe=False, schedule_group="no-such-group")

    result = lettershop("--stack", "lettershop-broken", "stack", "check")

    assert lines(result)["schedule group"] == "FAIL"
    assert "schedule group no-such-group does not exist" in result.stdout
    assert lines(result)["alarms"] == "FAIL"
    assert "has no confirmed subscription (0 pending)" in result.stdout
    assert result.exit_code == 1


def test_stack_check_needs_a_stack() -> None:
    result = lettershop("stack", "check")

    assert result.exit_code == 1
    assert "pass --stack NAME" in result.stderr
