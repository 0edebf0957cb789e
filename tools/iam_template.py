"""template.yaml as CloudFormation holds it for one stack: rendered, its intrinsics resolved.

``render`` runs the SAM transform offline (samtranslator, the library CloudFormation uses), so
``AWS::Serverless::Function`` roles and SAM policy templates are expanded as in a deployment.
``Resolver`` evaluates the intrinsics (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``,
``Fn::If`` with the template's conditions, ...) for one stack's physical names.

The physical names are CloudFormation's ``PhysicalResourceId`` (what ``Ref`` returns), so the same
resolution works for the test stack (``TEST_STACK``) and for a deployed one (``lettershop stack check``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devstack.aws import load_template


@dataclass(frozen=True)
class StackIdentity:
    """Where a stack lives and what CloudFormation named its resources (logical id → Ref value)."""

    stack_name: str
    account: str
    region: str
    physical: Mapping[str, str]
    parameters: Mapping[str, str] = field(default_factory=dict)
    partition: str = "aws"


# The integration tests' stack: the names devstack.aws.StackNames creates in moto, moto's default
# account, and the ARNs tests/integration/test_schedules.py gives the schedule sync function.
TEST_STACK = StackIdentity(
    stack_name="lettershop",
    account="123456789012",
    region="eu-central-1",
    physical={
        "ChannelsTable": "lettershop-channels",
        "StateTable": "lettershop-state",
        "ScriptsBucket": "lettershop-scripts",
        "ArchiveBucket": "lettershop-archive",
        "ScheduleGroup": "lettershop-channels",
        "PollFunction": "lettershop-poll",
        "ScheduleSyncFunction": "lettershop-schedule-sync",
        "SchedulerRole": "lettershop-scheduler",
        "DeadLetterQueue": "https://sqs.eu-central-1.amazonaws.com/123456789012/lettershop-dead-letters",
    },
    # devstack.invoke.SENDER_ADDRESS is lettershop@operator.example: SES replies come from it.
    parameters={"SenderDomain": "operator.example"},
)


def render() -> dict[str, Any]:
    """template.yaml after the SAM transform (CloudFormation's own view of it)."""
    import boto3  # noqa: PLC0415
    from samtranslator.parser.parser import Parser  # noqa: PLC0415
    from samtranslator.translator.translator import Translator  # noqa: PLC0415

    template = load_template()
    template["Globals"]["Function"]["CodeUri"] = "s3://lettershop-artifacts/src.zip"  # as `sam package` does
    session = boto3.Session(
        region_name="eu-central-1",
        aws_access_key_id="offline",
        aws_secret_access_key="offline",  # noqa: S106 - no AWS call
    )
    translator = Translator({}, Parser(), boto_session=session)
    result: dict[str, Any] = translator.translate(template, parameter_values={}, get_managed_policy_map=dict)
    return result


class Unresolvable(ValueError):
    """An intrinsic or a resource the resolver cannot give a value for (fails the check loudly)."""


class Resolver:
    """Intrinsic functions of a rendered template, evaluated for one stack."""

    def __init__(self, template: Mapping[str, Any], stack: StackIdentity) -> None:
        self.template = template
        self.stack = stack
        params = {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
        params.update(stack.parameters)
        self.refs: dict[str, Any] = {
            **params,
            "AWS::StackName": stack.stack_name,
            "AWS::AccountId": stack.account,
            "AWS::Region": stack.region,
            "AWS::Partition": stack.partition,
            "AWS::URLSuffix": "amazonaws.com",
        }
        for name, spec in template.get("Parameters", {}).items():
            if spec.get("Type") == "CommaDelimitedList":
                self.refs[name] = str(self.refs[name]).split(",")
        self._conditions: dict[str, bool] = {}

    # ------------------------------------------------------------ resources

    def _type(self, logical: str) -> str:
        resource = self.template["Resources"].get(logical)
        if resource is None:
            raise Unresolvable(f"no resource {logical}")
        return str(resource["Type"])

    def physical(self, logical: str) -> str:
        if logical in self.stack.physical:
            return self.stack.physical[logical]
        kind = self._type(logical)
        if kind == "AWS::Logs::LogGroup":
            name = self.template["Resources"][logical]["Properties"].get("LogGroupName")
            if name is not None:
                return str(self.resolve(name))
        if kind == "AWS::SNS::Topic":
            return self._arn("sns", f"{self.stack.stack_name}-{logical}")
        return f"{self.stack.stack_name}-{logical}"

    def _arn(self, service: str, rest: str, *, region: bool = True, account: bool = True) -> str:
        where = self.stack.region if region else ""
        who = self.stack.account if account else ""
        return f"arn:{self.stack.partition}:{service}:{where}:{who}:{rest}"

    def get_att(self, logical: str, attribute: str) -> str:
        kind, name = self._type(logical), self.physical(logical)
        arns = {
            "AWS::DynamoDB::Table": lambda: self._arn("dynamodb", f"table/{name}"),
            "AWS::S3::Bucket": lambda: f"arn:{self.stack.partition}:s3:::{name}",
            "AWS::SQS::Queue": lambda: self._arn("sqs", name.rsplit("/", 1)[-1]),
            "AWS::Lambda::Function": lambda: self._arn("lambda", f"function:{name}"),
            "AWS::IAM::Role": lambda: self._arn("iam", f"role/{name}", region=False),
            "AWS::Logs::LogGroup": lambda: self._arn("logs", f"log-group:{name}:*"),
            "AWS::Scheduler::ScheduleGroup": lambda: self._arn("scheduler", f"schedule-group/{name}"),
            "AWS::SNS::Topic": lambda: name,
            "AWS::CloudWatch::Alarm": lambda: self._arn("cloudwatch", f"alarm:{name}"),
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]()
        if (kind, attribute) == ("AWS::DynamoDB::Table", "StreamArn"):
            return self._arn("dynamodb", f"table/{name}/stream/*")
        if (kind, attribute) == ("AWS::SQS::Queue", "QueueName"):
            return name.rsplit("/", 1)[-1]
        raise Unresolvable(f"Fn::GetAtt {logical}.{attribute} ({kind})")

    # ----------------------------------------------------------- conditions

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            self._conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self._conditions[name]

    # ------------------------------------------------------------ functions

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic evaluated; ``AWS::NoValue`` members dropped."""
        if isinstance(value, list):
            resolved = [self.resolve(member) for member in value]
            return [member for member in resolved if member is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            function = self._functions().get(key)
            if function is not None:
                return function(arg)
            if key.startswith("Fn::"):
                raise Unresolvable(f"{key} is not supported")
        resolved_dict = {key: self.resolve(member) for key, member in value.items()}
        return {key: member for key, member in resolved_dict.items() if member is not _NO_VALUE}

    def _functions(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": self._ref,
            "Fn::GetAtt": lambda arg: self.get_att(*(arg.split(".", 1) if isinstance(arg, str) else arg)),
            "Fn::Sub": self._sub,
            "Fn::Join": lambda arg: arg[0].join(str(member) for member in self.resolve(arg[1])),
            "Fn::If": lambda arg: self.resolve(arg[1] if self.condition(arg[0]) else arg[2]),
            "Fn::Equals": lambda arg: len({str(side) for side in self.resolve(arg)}) == 1,
            "Fn::Not": lambda arg: not self.resolve(arg[0]),
            "Fn::And": lambda arg: all(self.resolve(arg)),
            "Fn::Or": lambda arg: any(self.resolve(arg)),
            "Condition": self.condition,
            "Fn::Select": lambda arg: self.resolve(arg[1])[int(self.resolve(arg[0]))],
        }

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        return self.refs[name] if name in self.refs else self.physical(name)

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if name in self.refs:
                return str(self.refs[name])
            if "." in name:
                logical, attribute = name.split(".", 1)
                return self.get_att(logical, attribute)
            return self.physical(name)

        return re.sub(r"\$\{([^}]+)\}", one, text)


_NO_VALUE = object()


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
