"""The functions' IAM policies as AWS will hold them: template.yaml rendered, resolved and evaluated.

``render`` runs the SAM transform offline (samtranslator, the library CloudFormation uses), so
``AWS::Serverless::Function`` roles and SAM policy templates are expanded as in a deployment.
``StackPolicies`` then resolves the intrinsics (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``, ``Fn::Join``,
``Fn::If`` with the template's conditions) for one stack's physical names, collects each
function's role statements (inline policies and ``AWS::IAM::Policy`` resources attached to it) and
the resource policies that can deny (bucket, queue and topic policies), and answers whether a
request (action, resource, condition context) is allowed: an explicit ``Deny`` wins, then any
``Allow`` of the role (or of a resource policy naming the role or everyone).

The physical names are CloudFormation's ``PhysicalResourceId`` (what ``Ref`` returns), so the same
map works for the test stack (``TEST_STACK``) and for a deployed one (``lettershop stack check``).
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping
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


@dataclass(frozen=True)
class Statement:
    """One resolved policy statement and where it comes from (``Role/policy/Sid``)."""

    origin: str
    body: Mapping[str, Any]

    @property
    def effect(self) -> str:
        return str(self.body["Effect"])


@dataclass(frozen=True)
class Request:
    """What IAM authorizes: one action on one resource, with the request's condition keys."""

    action: str
    resource: str
    context: Mapping[str, str | list[str]] = field(default_factory=dict)


class StackPolicies:
    """Each function's statements (by its ``Handler``) and the resource policies, resolved."""

    def __init__(self, template: Mapping[str, Any], stack: StackIdentity) -> None:
        self.stack = stack
        self.resolver = Resolver(template, stack)
        resources: Mapping[str, Any] = template["Resources"]
        self.roles: dict[str, str] = {}  # handler -> role logical id
        self.functions: dict[str, str] = {}  # handler -> function logical id
        for logical, resource in resources.items():
            if resource["Type"] == "AWS::Lambda::Function":
                handler = str(resource["Properties"]["Handler"])
                role = resource["Properties"]["Role"]
                if not (isinstance(role, dict) and "Fn::GetAtt" in role):
                    raise Unresolvable(f"{logical}: Role is not a role of this template ({role!r})")
                target = role["Fn::GetAtt"]
                self.roles[handler] = target.split(".")[0] if isinstance(target, str) else target[0]
                self.functions[handler] = logical
        self.identity: dict[str, list[Statement]] = {role: [] for role in self.roles.values()}
        self.resource_policies: list[Statement] = []
        for logical, resource in resources.items():
            self._collect(logical, resource)

    def _collect(self, logical: str, resource: Mapping[str, Any]) -> None:
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::IAM::Role" and logical in self.identity:
            if props.get("ManagedPolicyArns"):
                raise Unresolvable(
                    f"{logical}: managed policies {props['ManagedPolicyArns']} cannot be read offline"
                )
            for policy in props.get("Policies", []):
                self._add(
                    self.identity[logical], f"{logical}/{policy['PolicyName']}", policy["PolicyDocument"]
                )
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for role in props.get("Roles", []):
                if isinstance(role, dict) and role.get("Ref") in self.identity:
                    self._add(self.identity[role["Ref"]], logical, props["PolicyDocument"])
        elif kind in ("AWS::S3::BucketPolicy", "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
            self._add(self.resource_policies, logical, props["PolicyDocument"])

    def _add(self, into: list[Statement], origin: str, document: Any) -> None:
        resolved = self.resolver.resolve(copy.deepcopy(document))
        for index, body in enumerate(as_list(resolved["Statement"])):
            into.append(Statement(f"{origin}/{body.get('Sid', index)}", body))

    def statements(self, handler: str) -> list[Statement]:
        return self.identity[self.roles[handler]]

    def role_arn(self, handler: str) -> str:
        return self.resolver.get_att(self.roles[handler], "Arn")

    def decide(self, handler: str, request: Request) -> tuple[bool, list[Statement]]:
        """Whether ``handler``'s role may make ``request``; with the statements that decided it."""
        role_arn = self.role_arn(handler)
        denies = [s for s in self._applicable(handler, role_arn, request) if s.effect == "Deny"]
        if denies:
            return False, denies
        allows = [s for s in self._applicable(handler, role_arn, request) if s.effect == "Allow"]
        return bool(allows), allows

    def _applicable(self, handler: str, role_arn: str, request: Request) -> Iterator[Statement]:
        for statement in self.statements(handler):
            if matches(statement.body, request):
                yield statement
        for statement in self.resource_policies:
            if _names_principal(statement.body.get("Principal"), role_arn) and matches(
                statement.body, request
            ):
                yield statement


def _names_principal(principal: Any, role_arn: str) -> bool:
    if principal == "*":
        return True
    if isinstance(principal, dict):
        return any(value in ("*", role_arn) for value in as_list(principal.get("AWS", [])))
    return False


def like(pattern: str, value: str, *, case: bool = True) -> bool:
    """IAM wildcards: ``*`` any run of characters, ``?`` one character."""
    regex = fnmatch.translate(pattern.replace("[", "[[]"))
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def matches(body: Mapping[str, Any], request: Request) -> bool:
    """Whether a statement applies to the request (actions, resources, conditions)."""
    if "Action" in body:
        if not any(like(a, request.action, case=False) for a in as_list(body["Action"])):
            return False
    elif any(like(a, request.action, case=False) for a in as_list(body["NotAction"])):
        return False
    if "Resource" in body:
        if not any(like(r, request.resource) for r in as_list(body["Resource"])):
            return False
    elif any(like(r, request.resource) for r in as_list(body["NotResource"])):
        return False
    return all(
        _condition(operator, key, as_list(expected), request.context)
        for operator, keys in body.get("Condition", {}).items()
        for key, expected in keys.items()
    )


_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda want, got: want == got,
    "StringNotEquals": lambda want, got: want != got,
    "StringEqualsIgnoreCase": lambda want, got: want.lower() == got.lower(),
    "StringLike": like,
    "StringNotLike": lambda want, got: not like(want, got),
    "ArnEquals": lambda want, got: want == got,
    "ArnLike": like,
    "Bool": lambda want, got: str(want).lower() == got.lower(),
}


def _condition(operator: str, key: str, expected: list[Any], context: Mapping[str, Any]) -> bool:
    """One condition block entry (``IfExists`` and the ``ForAllValues``/``ForAnyValue`` sets included)."""
    quantifier, _, test_name = operator.rpartition(":")
    if_exists = test_name.endswith("IfExists")
    test = _STRING_TESTS.get(test_name.removesuffix("IfExists"))
    if test is None:
        raise Unresolvable(f"condition operator {operator} is not supported by the IAM check")
    present = {k.lower(): v for k, v in context.items()}
    if key.lower() not in present:
        return if_exists or quantifier == "ForAllValues" or test_name.startswith(("StringNot", "ArnNot"))
    values = [str(v) for v in as_list(present[key.lower()])]
    negated = test_name.startswith("StringNot")

    def one(value: str) -> bool:
        results = [test(str(want), value) for want in expected]
        return all(results) if negated else any(results)

    if quantifier == "ForAllValues":
        return all(one(value) for value in values)
    if quantifier == "ForAnyValue":
        return any(one(value) for value in values)
    return len(values) == 1 and one(values[0])
