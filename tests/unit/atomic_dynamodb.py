"""An in-memory DynamoDB client with the documented atomicity, for the requests the state table uses.

Why it exists (issue 17): moto's ``TransactWriteItems`` is not atomic. Under concurrent requests two
transactions whose ``Update`` is conditioned on the same counter value can both succeed (seen about
1 round in 20 on a busy machine), which real DynamoDB never allows: "TransactWriteItems is a
synchronous write operation that groups up to 100 action requests ... The actions are completed
atomically so that either all of them succeed, or all of them fail" and "a condition expression
... is evaluated ... before the write" (Amazon DynamoDB Developer Guide, "Amazon DynamoDB
Transactions: How it works", and "Condition expressions"). A test of "no serial is handed out twice"
against moto therefore proves nothing and flickers. This client gives the semantics the service
relies on, under one lock:

* ``UpdateItem`` / ``PutItem``: the condition is checked and the write applied in one step; a failed
  condition raises ``ConditionalCheckFailedException`` (with the old item when
  ``ReturnValuesOnConditionCheckFailure`` is ``ALL_OLD``) and writes nothing.
* ``TransactWriteItems``: every condition is checked, then every write applied, in one step; a failed
  condition cancels the whole request (``TransactionCanceledException`` with one
  ``CancellationReasons`` entry per item) and nothing is written.

``atomic=False`` gives moto's gap on purpose (a transaction's checks and writes are two steps with
a pause between): the uniqueness test shows it would catch that gap, so it can fail.

Only what the expressions of ``adapters.serials``, ``adapters.state`` and ``adapters.status`` need
is understood: ``SET`` (a value, or ``if_not_exists(name, value)``), ``ADD`` and ``REMOVE`` clauses;
``ReturnValues`` ``UPDATED_NEW`` and ``ALL_NEW``; conditions of ``attribute_not_exists`` /
``attribute_exists`` and comparisons joined by ``AND``/``OR`` (``AND`` binds tighter). Anything else
raises ``NotImplementedError``, so the fake never guesses.
"""

import copy
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

Item = dict[str, dict[str, Any]]

_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
}
_FUNCTION = re.compile(r"(attribute_not_exists|attribute_exists)\(\s*([#\w]+)\s*\)")
_IF_NOT_EXISTS = re.compile(r"if_not_exists\(\s*([#\w]+)\s*,\s*(:\w+)\s*\)")
_COMPARISON = re.compile(r"([#:\w]+)\s*(<>|<=|>=|=|<|>)\s*([#:\w]+)")


class AtomicDynamoDb:
    """The boto3 DynamoDB client methods ``get_item``, ``put_item``, ``update_item`` and
    ``transact_write_items``, over one dict of tables keyed by ``pk``."""

    def __init__(self, *, atomic: bool = True, pause: Callable[[], object] = lambda: time.sleep(0)) -> None:
        self.tables: dict[str, dict[str, Item]] = {}
        self.calls: list[str] = []
        self._atomic = atomic
        self._pause = pause  # between a non-atomic transaction's checks and its writes
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the client's methods

    def get_item(self, *, TableName: str, Key: Item, **_: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append("GetItem")
            item = self._table(TableName).get(_pk(Key))
            return {"Item": copy.deepcopy(item)} if item is not None else {}

    def put_item(self, *, TableName: str, Item: Item, **request: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append("PutItem")
            request = {"Key": {"pk": Item["pk"]}, **request}
            self._check(TableName, request, "PutItem")
            self._table(TableName)[_pk(Item)] = copy.deepcopy(Item)
            return {}

    def update_item(self, *, TableName: str, **request: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append("UpdateItem")
            self._check(TableName, request, "UpdateItem")
            new = self._updated(TableName, request)
            self._table(TableName)[_pk(request["Key"])] = new
            if request.get("ReturnValues") == "UPDATED_NEW":
                names = _updated_names(request)
                return {"Attributes": {name: copy.deepcopy(new[name]) for name in names if name in new}}
            if request.get("ReturnValues") == "ALL_NEW":
                return {"Attributes": copy.deepcopy(new)}
            return {}

    def transact_write_items(self, *, TransactItems: list[Mapping[str, Any]]) -> dict[str, Any]:
        if len(TransactItems) > 100:
            raise NotImplementedError("more than 100 items is a ValidationException in DynamoDB")
        with self._lock:
            self.calls.append("TransactWriteItems")
            self._check_all(TransactItems)
            if self._atomic:
                self._apply_all(TransactItems)
                return {}
        self._pause()  # moto's gap: another request runs between the checks and the writes
        with self._lock:
            self._apply_all(TransactItems)
        return {}

    # ------------------------------------------------------------------------- semantics

    def _table(self, name: str) -> dict[str, Item]:
        if name not in self.tables:
            raise _error("ResourceNotFoundException", "Requested resource not found", "GetItem")
        return self.tables[name]

    def create_table(self, name: str) -> None:
        self.tables[name] = {}

    def _check(self, table: str, request: Mapping[str, Any], operation: str) -> None:
        old = self._table(table).get(_pk(request["Key"]))
        if not _holds(request, old):
            extra = {}
            if request.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and old is not None:
                extra = {"Item": copy.deepcopy(old)}
            raise _error(
                "ConditionalCheckFailedException", "The conditional request failed", operation, extra
            )

    def _check_all(self, items: list[Mapping[str, Any]]) -> None:
        reasons = []
        for action in items:
            [(kind, request)] = action.items()
            if kind not in ("Update", "Put", "ConditionCheck"):
                raise NotImplementedError(f"transaction item {kind}")
            key = request["Key"] if kind != "Put" else {"pk": request["Item"]["pk"]}
            old = self._table(request["TableName"]).get(_pk(key))
            ok = _holds(request, old)
            reasons.append({"Code": "None"} if ok else {"Code": "ConditionalCheckFailed"})
        if any(reason["Code"] != "None" for reason in reasons):
            raise _error(
                "TransactionCanceledException",
                "Transaction cancelled, please refer cancellation reasons for specific reasons",
                "TransactWriteItems",
                {"CancellationReasons": reasons},
            )

    def _apply_all(self, items: list[Mapping[str, Any]]) -> None:
        for action in items:
            [(kind, request)] = action.items()
            table = self._table(request["TableName"])
            if kind == "Put":
                table[_pk(request["Item"])] = copy.deepcopy(request["Item"])
            elif kind == "Update":
                table[_pk(request["Key"])] = self._updated(request["TableName"], request)

    def _updated(self, table: str, request: Mapping[str, Any]) -> Item:
        old = self._table(table).get(_pk(request["Key"]))
        new: Item = copy.deepcopy(old) if old is not None else copy.deepcopy(dict(request["Key"]))
        names = request.get("ExpressionAttributeNames", {})
        values = request.get("ExpressionAttributeValues", {})
        for verb, clause in _clauses(request["UpdateExpression"]):
            for part in re.split(r",(?![^(]*\))", clause):  # not the comma inside if_not_exists(...)
                if verb == "SET":
                    target, _, value = (token.strip() for token in part.partition("="))
                    name = names.get(target, target)
                    default = _IF_NOT_EXISTS.fullmatch(value)
                    if default is None:
                        new[name] = copy.deepcopy(values[value])
                    elif names.get(default[1], default[1]) not in new:
                        new[name] = copy.deepcopy(values[default[2]])
                elif verb == "REMOVE":
                    target = part.strip()
                    new.pop(names.get(target, target), None)
                else:  # ADD: a number attribute, created at 0
                    target, value = part.split()
                    name = names.get(target, target)
                    current = int(new[name]["N"]) if name in new else 0
                    new[name] = {"N": str(current + int(values[value]["N"]))}
        return new


def _holds(request: Mapping[str, Any], item: Item | None) -> bool:
    """Whether the request's ``ConditionExpression`` holds for ``item`` (None: no such item)."""
    expression = request.get("ConditionExpression")
    if expression is None:
        return True
    names = request.get("ExpressionAttributeNames", {})
    values = request.get("ExpressionAttributeValues", {})
    return any(
        all(_atom(term.strip(), item, names, values) for term in re.split(r"\s+AND\s+", alternative))
        for alternative in re.split(r"\s+OR\s+", expression)
    )


def _atom(term: str, item: Item | None, names: Mapping[str, str], values: Mapping[str, Any]) -> bool:
    function = _FUNCTION.fullmatch(term)
    if function is not None:
        exists = item is not None and names.get(function[2], function[2]) in item
        return exists if function[1] == "attribute_exists" else not exists
    comparison = _COMPARISON.fullmatch(term)
    if comparison is None:
        raise NotImplementedError(f"condition {term!r}")
    left, right = (_operand(side, item, names, values) for side in (comparison[1], comparison[3]))
    if left is None or right is None or type(left) is not type(right):
        return False  # a missing attribute or a type mismatch never satisfies a comparison
    return _COMPARE[comparison[2]](left, right)


def _operand(token: str, item: Item | None, names: Mapping[str, str], values: Mapping[str, Any]) -> Any:
    typed = values[token] if token.startswith(":") else (item or {}).get(names.get(token, token))
    if typed is None:
        return None
    [(kind, value)] = typed.items()
    if kind == "N":
        return int(value)
    if kind == "S":
        return value
    raise NotImplementedError(f"comparing a {kind} value")


def _clauses(expression: str) -> list[tuple[str, str]]:
    parts = re.split(r"\b(SET|ADD|REMOVE|DELETE)\b", expression)
    if parts[0].strip():
        raise NotImplementedError(f"update expression {expression!r}")
    clauses = list(zip(parts[1::2], (part.strip() for part in parts[2::2]), strict=True))
    if any(verb not in ("SET", "ADD", "REMOVE") for verb, _ in clauses):
        raise NotImplementedError(f"update expression {expression!r}")
    return clauses


def _updated_names(request: Mapping[str, Any]) -> list[str]:
    names = request.get("ExpressionAttributeNames", {})
    found = []
    for verb, clause in _clauses(request["UpdateExpression"]):
        if verb == "REMOVE":
            continue
        for part in re.split(r",(?![^(]*\))", clause):
            target = part.split("=")[0].strip() if verb == "SET" else part.split()[0]
            found.append(names.get(target, target))
    return found


def _pk(key: Mapping[str, Any]) -> str:
    return str(key["pk"]["S"])


def _error(code: str, message: str, operation: str, extra: Mapping[str, Any] | None = None) -> ClientError:
    response: dict[str, Any] = {"Error": {"Code": code, "Message": message}, **(extra or {})}
    return ClientError(response, operation)  # type: ignore[arg-type]
