"""The functions' IAM policies as AWS will hold them, and IAM's decision for one request.

``StackPolicies`` collects each function's role statements from the rendered, resolved template
(``tools.iam_template``): inline policies and ``AWS::IAM::Policy`` resources attached to the role,
and the resource policies that can deny (bucket, queue and topic policies). ``decide`` answers
whether a request (action, resource, condition context) is allowed: an explicit ``Deny`` wins,
then any ``Allow`` of the role (or of a resource policy naming the role or everyone). Wildcards,
``NotAction``/``NotResource``, the string, ARN and Bool condition operators with ``IfExists`` and
``ForAllValues``/``ForAnyValue`` are evaluated; any other operator raises ``Unresolvable``.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.iam_template import Resolver, StackIdentity, Unresolvable, as_list


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
