"""What the alarms and the dashboard of the rendered template watch, and whether the code emits it.

CloudWatch matches a metric by namespace, name and dimensions; an alarm on a metric the code never
emits (a name typo, a dimension missing) stays quiet forever. This module reads every alarm
(``MetricName``, ``Metrics[].MetricStat`` and Metrics Insights queries in ``Metrics[].Expression``)
and every dashboard widget (``SEARCH`` expressions and plain metric rows), and compares them with
the EMF documents the handlers printed (``tests/integration/emf_recorder.py``):

* a custom metric (namespace ``LetterShop``) watched must have been emitted with the dimensions the
  watch needs: exactly those of a ``SCHEMA(...)``, a ``SEARCH`` schema ``{ns,dims}`` or a plain metric,
  at least those a ``WHERE``/``GROUP BY`` names, with the values it filters on;
* a metric of an AWS namespace (``AWS/Lambda`` ...) is not EMF: its dimension must name a resource
  of the template of the right type, and its name must be one the service publishes;
* every metric emitted must be watched somewhere, or be listed as deliberately unwatched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tools.iam_template import Resolver as IamResolver
from tools.iam_template import StackIdentity

REGION = "eu-central-1"
ACCOUNT = "123456789012"

# The dimension of an AWS namespace's metric -> the template resource types it may name.
AWS_DIMENSIONS = {
    ("AWS/Lambda", "FunctionName"): {"AWS::Lambda::Function"},
    ("AWS/SQS", "QueueName"): {"AWS::SQS::Queue"},
}
# The metrics those services publish (CloudWatch docs: Lambda function metrics, SQS metrics).
AWS_METRICS = {
    "AWS/Lambda": {
        "AsyncEventAge",
        "AsyncEventsDropped",
        "AsyncEventsReceived",
        "ClaimedAccountConcurrency",
        "ConcurrentExecutions",
        "DeadLetterErrors",
        "DestinationDeliveryFailures",
        "Duration",
        "Errors",
        "Invocations",
        "IteratorAge",
        "PostRuntimeExtensionsDuration",
        "ProvisionedConcurrencySpilloverInvocations",
        "ProvisionedConcurrencyUtilization",
        "ProvisionedConcurrentExecutions",
        "RecursiveInvocationsDropped",
        "Throttles",
        "UnreservedConcurrentExecutions",
    },
    "AWS/SQS": {
        "ApproximateAgeOfOldestMessage",
        "ApproximateNumberOfMessagesDelayed",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesVisible",
        "NumberOfEmptyReceives",
        "NumberOfMessagesDeleted",
        "NumberOfMessagesReceived",
        "NumberOfMessagesSent",
        "SentMessageSize",
    },
}


@dataclass(frozen=True)
class Emitted:
    """One metric of one EMF document: namespace, name, its dimension set and their values."""

    namespace: str
    name: str
    dimensions: frozenset[str]
    values: tuple[tuple[str, str], ...]
    test: str = ""

    def describe(self) -> str:
        dims = ", ".join(f"{k}={v}" for k, v in self.values)
        return f"{self.namespace} {self.name} [{dims}]"


@dataclass(frozen=True)
class Watch:
    """A metric an alarm or a widget reads: ``exact`` dimensions (else at least these) and values."""

    where: str
    namespace: str
    name: str
    dimensions: frozenset[str]
    exact: bool
    values: tuple[tuple[str, str], ...] = ()

    def matches(self, emitted: Emitted) -> bool:
        if (emitted.namespace, emitted.name) != (self.namespace, self.name):
            return False
        if self.exact and emitted.dimensions != self.dimensions:
            return False
        return self.dimensions <= emitted.dimensions and set(self.values) <= set(emitted.values)

    def describe(self) -> str:
        dims = ", ".join(sorted(self.dimensions)) or "none"
        kind = "exactly" if self.exact else "at least"
        values = "".join(f", {k}={v}" for k, v in self.values)
        return f"{self.namespace} {self.name} with {kind} the dimensions {dims}{values}"


def emitted_in(document: Mapping[str, Any], test: str = "") -> Iterator[Emitted]:
    """The metrics of one EMF document (``_aws.CloudWatchMetrics``), one per dimension set."""
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            values = tuple(sorted((name, str(document[name])) for name in dimension_set))
            for metric in directive["Metrics"]:
                yield Emitted(directive["Namespace"], metric["Name"], frozenset(dimension_set), values, test)


class Resolver:
    """The intrinsics of the rendered template, resolved for a stack of the given name (the IAM
    check's resolver, ``tools.iam_template``), and which resource a physical name belongs to."""

    def __init__(self, cfn: Mapping[str, Any], stack_name: str) -> None:
        self.resources: Mapping[str, Any] = cfn["Resources"]
        self._stack = IamResolver(
            cfn, StackIdentity(stack_name=stack_name, account=ACCOUNT, region=REGION, physical={})
        )

    def resource_named(self, physical: str) -> tuple[str, str] | None:
        """(logical id, type) of the resource this name resolves to, if any."""
        for logical, resource in self.resources.items():
            if physical == self._stack.physical(logical):
                return logical, resource["Type"]
        return None

    def __call__(self, value: Any) -> Any:
        return self._stack.resolve(value)


class NotUnderstood(ValueError):
    """An alarm or widget expression this module cannot read: extend it rather than skip it."""


# SELECT FUNC(metric) FROM "ns" | ns | SCHEMA("ns", dim, ...) [WHERE] [GROUP BY] [ORDER BY] [LIMIT n]
_INSIGHTS = re.compile(
    r"""\s*SELECT\s+\w+\(\s*(?P<metric>"[^"]+"|\w+)\s*\)\s+FROM\s+"""
    r"""(?:SCHEMA\((?P<schema>[^)]*)\)|(?P<namespace>"[^"]+"|[\w/.-]+))"""
    r"""(?:\s+WHERE\s+(?P<where>.+?))?(?:\s+GROUP\s+BY\s+(?P<group>.+?))?"""
    r"""(?:\s+ORDER\s+BY\s+.+?)?(?:\s+LIMIT\s+\d+)?\s*""",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(r"""\s*(?P<dim>"[^"]+"|\w+)\s*=\s*'(?P<value>[^']*)'\s*""")
_SEARCH = re.compile(r"""\s*SEARCH\(\s*'(?P<query>[^']*)'\s*,.*\)\s*""", re.DOTALL)
_SEARCH_TERM = re.compile(r"""(?P<key>\w+)="(?P<value>[^"]*)"|(?P<other>\S+)""")


def _unquote(identifier: str) -> str:
    return identifier.strip().strip('"')


def insights_query(where: str, query: str) -> Watch:
    """The metric a Metrics Insights query reads: ``SCHEMA`` fixes the dimension set, ``WHERE``
    (``dim = 'value'`` joined by AND) and ``GROUP BY`` need their dimensions."""
    match = _INSIGHTS.fullmatch(query)
    if match is None:
        raise NotUnderstood(f"{where}: not a Metrics Insights query this check reads: {query}")
    values: list[tuple[str, str]] = []
    if match["where"]:
        for condition in re.split(r"\s+AND\s+", match["where"], flags=re.IGNORECASE):
            term = _CONDITION.fullmatch(condition)
            if term is None:
                raise NotUnderstood(f"{where}: WHERE condition {condition!r} (only dim = 'value' AND ...)")
            values.append((_unquote(term["dim"]), term["value"]))
    grouped = [_unquote(d) for d in match["group"].split(",")] if match["group"] else []
    if match["schema"] is not None:
        namespace, *schema = (_unquote(part) for part in match["schema"].split(","))
        dimensions, exact = frozenset(schema), True
        outside = {d for d, _ in values} | set(grouped)
        if not outside <= dimensions:
            raise NotUnderstood(f"{where}: {sorted(outside - dimensions)} not in the SCHEMA of {query}")
    else:
        namespace = _unquote(match["namespace"])
        dimensions, exact = frozenset([d for d, _ in values] + grouped), False
    return Watch(where, namespace, _unquote(match["metric"]), dimensions, exact, tuple(sorted(values)))


def search_expression(where: str, expression: str) -> Watch:
    """The metric a dashboard's ``SEARCH('{ns,dim,...} MetricName="X" dim="v"', ...)`` finds: the
    schema in braces is the exact dimension set; ``MetricName`` is required."""
    match = _SEARCH.fullmatch(expression)
    query = match["query"] if match else ""
    schema = re.match(r"\s*\{([^}]*)\}", query)
    if schema is None:
        raise NotUnderstood(f"{where}: not a SEARCH over a schema: {expression}")
    namespace, *dims = (_unquote(part) for part in schema.group(1).split(","))
    terms = {}
    for term in _SEARCH_TERM.finditer(query[schema.end() :]):
        if term["other"]:
            raise NotUnderstood(f'{where}: SEARCH term {term["other"]!r} (only key="value")')
        terms[term["key"]] = term["value"]
    if "MetricName" not in terms:
        raise NotUnderstood(f"{where}: SEARCH without MetricName: {expression}")
    name = terms.pop("MetricName")
    return Watch(where, namespace, name, frozenset(dims), True, tuple(sorted(terms.items())))


def plain_metric(where: str, namespace: str, name: str, dimensions: Mapping[str, str]) -> Watch:
    """A metric named in full (an alarm's ``MetricName``, a widget's metric row): exact dimensions."""
    return Watch(where, namespace, name, frozenset(dimensions), True, tuple(sorted(dimensions.items())))


def alarm_watches(name: str, props: Mapping[str, Any]) -> Iterator[Watch]:
    where = f"alarm {name}"
    if "MetricName" in props:
        dims = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
        yield plain_metric(where, props["Namespace"], props["MetricName"], dims)
    for query in props.get("Metrics", []):
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
            yield plain_metric(where, metric["Namespace"], metric["MetricName"], dims)
        elif query.get("Expression", "").lstrip().upper().startswith("SELECT"):
            yield insights_query(where, query["Expression"])
        elif "SEARCH" in query.get("Expression", "").upper():
            raise NotUnderstood(f"{where}: CloudWatch cannot alarm on a SEARCH expression")
        # Any other expression is metric math over the ids above, read already.


def widget_watches(title: str, rows: Iterable[list[Any]]) -> Iterator[Watch]:
    """A metric widget's rows: ``[{"expression": ...}]`` or ``[ns, name, dim, value, ..., {options}]``
    (``"."`` repeats the previous row's item at that place)."""
    where = f"dashboard widget {title!r}"
    previous: list[Any] = []
    for row in rows:
        items = [item for item in row if not isinstance(item, dict)]
        options = next((item for item in row if isinstance(item, dict)), {})
        if not items:
            if "expression" not in options:
                raise NotUnderstood(f"{where}: a row without metric or expression: {row}")
            if "SEARCH(" in options["expression"].upper():
                yield search_expression(where, options["expression"])
            continue  # metric math over the rows' ids
        items = [previous[i] if item == "." and i < len(previous) else item for i, item in enumerate(items)]
        previous = items
        namespace, name, *pairs = items
        yield plain_metric(where, namespace, name, dict(zip(pairs[::2], pairs[1::2], strict=True)))


def template_watches(cfn: Mapping[str, Any], resolve: Resolver) -> list[Watch]:
    """Every metric of every alarm and dashboard widget of the rendered template, intrinsics resolved."""
    watches: list[Watch] = []
    for name, resource in cfn["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            watches.extend(alarm_watches(name, resolve(resource["Properties"])))
        elif resource["Type"] == "AWS::CloudWatch::Dashboard":
            body = json.loads(resolve(resource["Properties"]["DashboardBody"]))
            for widget in body["widgets"]:
                if widget["type"] == "metric":
                    props = widget["properties"]
                    title = props.get("title", f"{name} at {widget.get('x')},{widget.get('y')}")
                    watches.extend(widget_watches(title, props["metrics"]))
    return watches


def check_aws_metric(watch: Watch, resolve: Resolver) -> list[str]:
    """An AWS namespace's metric: a name the service publishes, dimensions naming the template's resources."""
    problems = []
    if watch.name not in AWS_METRICS.get(watch.namespace, set()):
        problems.append(f"{watch.where}: {watch.namespace} publishes no metric {watch.name!r}")
    for dimension, value in watch.values:
        types = AWS_DIMENSIONS.get((watch.namespace, dimension))
        resource = resolve.resource_named(value)
        if types is None:
            problems.append(f"{watch.where}: {watch.namespace} {dimension} is not in AWS_DIMENSIONS")
        elif resource is None or resource[1] not in types:
            problems.append(
                f"{watch.where}: {watch.namespace} {watch.name} {dimension}={value} names no "
                f"{' or '.join(sorted(types))} of the template"
            )
    return problems


def problems(
    watches: Iterable[Watch],
    emitted: Iterable[Emitted],
    unwatched: Mapping[str, str],
    resolve: Resolver,
) -> list[str]:
    """What is wrong: a watched metric never emitted as watched, an emitted metric nobody watches
    and not in ``unwatched`` (metric name -> why), an ``unwatched`` entry that is watched or never
    emitted, an AWS metric the template cannot have."""
    watches, emitted = list(watches), set(emitted)
    found: list[str] = []
    for watch in watches:
        if watch.namespace.startswith("AWS/"):
            found.extend(check_aws_metric(watch, resolve))
        elif not any(watch.matches(e) for e in emitted):
            same_name = sorted({e.describe() for e in emitted if e.name == watch.name})
            seen = f"; emitted only as {', '.join(same_name)}" if same_name else "; never emitted at all"
            found.append(f"{watch.where} watches {watch.describe()}: no integration test emitted it{seen}")
    watched_names = {w.name for w in watches if not w.namespace.startswith("AWS/")}
    for e in sorted(emitted, key=lambda e: (e.name, e.values)):
        if not any(w.matches(e) for w in watches) and e.name not in unwatched:
            found.append(
                f"{e.describe()} (emitted in {e.test or 'a test'}) is neither alarmed nor on the dashboard "
                "nor listed as deliberately unwatched"
            )
    emitted_names = {e.name for e in emitted}
    for name in sorted(unwatched):
        if name in watched_names:
            found.append(f"{name} is listed as unwatched, but an alarm or widget watches it")
        elif name not in emitted_names:
            found.append(f"{name} is listed as unwatched, but no integration test emitted it")
    return list(dict.fromkeys(found))
