"""The alarm check (tests/watched_metrics.py, tests/integration/emf_recorder.py) reads what it must
and fails when an alarm watches a metric never emitted, or a metric is emitted and never watched."""

import json
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aws_lambda_powertools.metrics
import pytest
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from service.telemetry import NAMESPACE, SERVICE, metrics
from tests.integration import emf_recorder
from tests.integration.emf_recorder import PRINTING_MODULES, EmfRecorder, incompleteness
from tests.unit.test_template import _transformed
from tests.watched_metrics import (
    Emitted,
    NotUnderstood,
    Resolver,
    emitted_in,
    insights_query,
    problems,
    search_expression,
    template_watches,
    widget_watches,
)

STACK = "lettershop"
UNWATCHED = {"MessagesRecognized": "the sum of the outcomes", "PollLocked": "harmless now and then"}


@pytest.fixture
def cfn() -> dict[str, Any]:
    template: dict[str, Any] = json.loads(_transformed())
    return template


def emitted(name: str, **dims: str) -> Emitted:
    return Emitted("LetterShop", name, frozenset(dims), tuple(sorted(dims.items())), "tests/integration/t.py")


def per_channel(name: str) -> Emitted:
    return emitted(name, channel_id="acme", service=STACK)


def everything_the_template_watches() -> list[Emitted]:
    """Emissions that satisfy today's alarms and widgets, and the listed unwatched metrics."""
    names = [
        "PollErrors",
        "MessageQuarantined",
        "MessageUnretrievable",
        "InvalidChannelConfig",
        "StaleChannel",
    ]
    names += ["MessagesProcessed", "MessagesFailed", "MessagesRejected", "MessagesDeferred", "PollDuration"]
    return [
        *(per_channel(name) for name in [*names, *UNWATCHED]),
        emitted("ScriptFailed", channel_id="acme", stage="prescript", service=STACK),
        emitted("SerialRangeLow", service=STACK),
        emitted("WatchdogRuns", service=STACK),
    ]


def found(cfn: dict[str, Any], emissions: list[Emitted], unwatched: dict[str, str] = UNWATCHED) -> list[str]:
    resolve = Resolver(cfn, STACK)
    return problems(template_watches(cfn, resolve), emissions, unwatched, resolve)


def add_alarm(cfn: dict[str, Any], name: str, props: dict[str, Any]) -> None:
    cfn["Resources"][name] = {"Type": "AWS::CloudWatch::Alarm", "Properties": props}


def test_the_template_passes_when_every_watched_metric_was_emitted(cfn: dict[str, Any]) -> None:
    assert found(cfn, everything_the_template_watches()) == []


def test_an_alarm_on_a_metric_never_emitted_fails_naming_alarm_and_metric(cfn: dict[str, Any]) -> None:
    query = "SELECT SUM(PollError) FROM \"LetterShop\" WHERE service = '${AWS::StackName}'"
    add_alarm(cfn, "TypoAlarm", {"Metrics": [{"Id": "typo", "Expression": {"Fn::Sub": query}}]})

    assert found(cfn, everything_the_template_watches()) == [
        "alarm TypoAlarm watches LetterShop PollError with at least the dimensions service, "
        "service=lettershop: no integration test emitted it; never emitted at all"
    ]


def test_an_emitted_metric_neither_watched_nor_listed_fails_naming_it(cfn: dict[str, Any]) -> None:
    emissions = [*everything_the_template_watches(), per_channel("RepliesSent")]

    assert found(cfn, emissions) == [
        "LetterShop RepliesSent [channel_id=acme, service=lettershop] (emitted in tests/integration/t.py) "
        "is neither alarmed nor on the dashboard nor listed as deliberately unwatched"
    ]


def test_a_metric_emitted_without_the_dimension_the_alarm_filters_on_fails(cfn: dict[str, Any]) -> None:
    emissions = [e for e in everything_the_template_watches() if e.name != "ScriptFailed"]
    emissions.append(emitted("ScriptFailed", channel_id="acme", stage="prescript"))  # no service

    problem, *others = found(cfn, emissions)

    assert problem == (
        "alarm ScriptFailedAlarm watches LetterShop ScriptFailed with at least the dimensions service, "
        "service=lettershop: no integration test emitted it; emitted only as "
        "LetterShop ScriptFailed [channel_id=acme, stage=prescript]"
    )
    assert others == [
        "LetterShop ScriptFailed [channel_id=acme, stage=prescript] (emitted in tests/integration/t.py) "
        "is neither alarmed nor on the dashboard nor listed as deliberately unwatched"
    ]


def test_a_dashboard_search_needs_exactly_its_schema_dimensions(cfn: dict[str, Any]) -> None:
    emissions = [e for e in everything_the_template_watches() if e.name != "PollDuration"]
    emissions.append(emitted("PollDuration", channel_id="acme", service=STACK, stage="x"))

    assert found(cfn, emissions)[0].startswith(
        "dashboard widget 'Poll duration, maximum (ms)' watches LetterShop PollDuration with exactly the "
        "dimensions channel_id, service, service=lettershop: no integration test emitted it"
    )


def test_an_unwatched_entry_must_be_emitted_and_not_watched(cfn: dict[str, Any]) -> None:
    unwatched = {**UNWATCHED, "PollErrors": "wrongly listed", "Gone": "no longer emitted"}

    assert found(cfn, everything_the_template_watches(), unwatched) == [
        "Gone is listed as unwatched, but no integration test emitted it",
        "PollErrors is listed as unwatched, but an alarm or widget watches it",
    ]


def test_aws_metrics_must_exist_and_name_a_resource_of_the_template(cfn: dict[str, Any]) -> None:
    add_alarm(cfn, "Typo", {"Namespace": "AWS/Lambda", "MetricName": "Error", "Dimensions": []})
    dims = [{"Name": "FunctionName", "Value": {"Ref": "DeadLetterQueue"}}]
    add_alarm(cfn, "WrongResource", {"Namespace": "AWS/Lambda", "MetricName": "Errors", "Dimensions": dims})

    assert found(cfn, everything_the_template_watches()) == [
        "alarm Typo: AWS/Lambda publishes no metric 'Error'",
        "alarm WrongResource: AWS/Lambda Errors FunctionName=lettershop-DeadLetterQueue names no "
        "AWS::Lambda::Function of the template",
    ]


@pytest.mark.parametrize(
    ("query", "dimensions", "exact", "values"),
    [
        (
            "SELECT SUM(PollErrors) FROM \"LetterShop\" WHERE service = 'x'",
            {"service"},
            False,
            {("service", "x")},
        ),
        (
            'SELECT SUM(ScriptFailed) FROM SCHEMA("LetterShop", channel_id, service)',
            {"channel_id", "service"},
            True,
            set(),
        ),
        (
            'SELECT MAX("PollDuration") FROM SCHEMA("LetterShop", channel_id, service) '
            "WHERE service = 'x' AND channel_id = 'acme' GROUP BY channel_id ORDER BY MAX() DESC LIMIT 10",
            {"channel_id", "service"},
            True,
            {("service", "x"), ("channel_id", "acme")},
        ),
        ("select avg(PollDuration) from LetterShop group by channel_id", {"channel_id"}, False, set()),
    ],
)
def test_metrics_insights_queries_are_read(
    query: str, dimensions: set[str], exact: bool, values: set[tuple[str, str]]
) -> None:
    watch = insights_query("alarm A", query)

    assert (watch.namespace, set(watch.dimensions), watch.exact, set(watch.values)) == (
        "LetterShop",
        dimensions,
        exact,
        values,
    )
    assert watch.name in {"PollErrors", "ScriptFailed", "PollDuration"}


@pytest.mark.parametrize(
    "query",
    [
        "SELECT SUM(PollErrors) FROM \"LetterShop\" WHERE service != 'x'",
        "SELECT SUM(PollErrors) FROM SCHEMA(\"LetterShop\", service) WHERE channel_id = 'x'",
        "SELECT PollErrors FROM LetterShop",
    ],
)
def test_queries_the_check_cannot_read_fail_rather_than_pass(query: str) -> None:
    with pytest.raises(NotUnderstood, match="alarm A"):
        insights_query("alarm A", query)


def test_searches_and_metric_rows_are_read() -> None:
    search = search_expression(
        "w", "SEARCH('{LetterShop,channel_id,service} MetricName=\"X\" service=\"s\"', 'Sum', 300)"
    )
    rows: list[list[Any]] = [
        ["AWS/Lambda", "Errors", "FunctionName", "f"],
        [".", "Throttles", ".", "."],
        [{"expression": "m1+m2"}],
    ]

    assert (search.name, search.dimensions, search.exact, search.values) == (
        "X",
        frozenset({"channel_id", "service"}),
        True,
        (("service", "s"),),
    )
    assert [(w.namespace, w.name, w.values) for w in widget_watches("w", rows)] == [
        ("AWS/Lambda", "Errors", (("FunctionName", "f"),)),
        ("AWS/Lambda", "Throttles", (("FunctionName", "f"),)),
    ]
    with pytest.raises(NotUnderstood):
        search_expression("w", "SEARCH('MetricName=\"X\"', 'Sum', 300)")


def test_the_functions_emit_under_the_stack_name_and_namespace_the_alarms_read(cfn: dict[str, Any]) -> None:
    resolve = Resolver(cfn, stack_name="stack-under-test")
    functions = {n: r for n, r in cfn["Resources"].items() if r["Type"] == "AWS::Lambda::Function"}

    assert functions
    for name, function in functions.items():
        env = resolve(function["Properties"]["Environment"]["Variables"])
        assert (env["POWERTOOLS_SERVICE_NAME"], env["POWERTOOLS_METRICS_NAMESPACE"]) == (
            "stack-under-test",
            NAMESPACE,
        ), name


def test_the_recorder_patches_every_module_of_powertools_metrics_that_prints() -> None:
    package = Path(aws_lambda_powertools.metrics.__file__).parent
    printing = {
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if "print(" in p.read_text(encoding="utf-8") and "datadog" not in p.parts  # Datadog: not EMF
    }

    assert printing == {Path(m.__file__ or "").relative_to(package).as_posix() for m in PRINTING_MODULES}


def emit_both() -> None:
    with single_metric(name="ScriptFailed", unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="channel_id", value="acme")
    metrics.add_metric(name="PollLocked", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()


def handler_of_no_metrics(event: object, context: object) -> None:
    """A handler that returns before its metrics are flushed (by the ``log_metrics`` around it)."""


handler_of_no_metrics.__module__ = "handlers.fake"


def as_a_handler(function: Callable[[], None]) -> None:
    """Call ``function`` from code of a module named as the Lambda entry points are (``handlers.*``)."""
    exec("function()", {"__name__": "handlers.fake", "function": function})  # noqa: S102


def test_the_recorder_keeps_the_emf_a_handler_prints_during_an_integration_test(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = EmfRecorder(None)
    for module in PRINTING_MODULES:
        monkeypatch.setattr(module, "print", recorder.print, raising=False)
    item: Any = SimpleNamespace(
        nodeid="tests/integration/test_x.py::t", path=emf_recorder.FOLDER / "test_x.py"
    )
    run = recorder.pytest_runtest_protocol(item)
    next(run)

    emit_both()  # not from a handler: an adapter a test drives directly
    in_a_thread = threading.Thread(target=lambda: as_a_handler(emit_both))  # invocations at once
    in_a_thread.start()
    in_a_thread.join()
    assert recorder.documents == []
    as_a_handler(emit_both)
    metrics.add_metric(name="PollLocked", unit=MetricUnit.Count, value=2)
    metrics.log_metrics(lambda_handler=handler_of_no_metrics)({}, None)

    assert [(e.name, e.test) for _, doc in recorder.documents for e in emitted_in(doc, _)] == [
        ("ScriptFailed", "tests/integration/test_x.py::t"),
        ("PollLocked", "tests/integration/test_x.py::t"),
        ("PollLocked", "tests/integration/test_x.py::t"),  # flushed by log_metrics after the handler
    ]
    assert capsys.readouterr().out.count('"ScriptFailed":[1.0]') == 3  # every document still printed
    assert [e.values for _, doc in recorder.documents for e in emitted_in(doc)][1] == (("service", SERVICE),)


def items(*names: str) -> list[Any]:
    return [
        SimpleNamespace(nodeid=f"tests/integration/{n}", path=emf_recorder.FOLDER / n.split("::")[0])
        for n in names
    ]


def every_file() -> list[str]:
    return [f"{p.name}::test" for p in sorted(emf_recorder.FOLDER.glob("test_*.py"))]


def test_the_check_runs_only_when_every_integration_test_ran() -> None:
    config: Any = SimpleNamespace(args=[])
    whole = items(*every_file())

    assert incompleteness(config, whole, whole) is None
    assert (
        incompleteness(config, whole, whole[1:])
        == f"1 integration tests were deselected (e.g. {whole[0].nodeid})"
    )
    assert incompleteness(config, whole[1:], whole[1:]) == (
        f"1 of {len(whole) - len(emf_recorder.ELSEWHERE)} integration test files not collected "
        f"(e.g. {Path(whole[0].path).name})"
    )
    # the rehearsal skips as a whole without a build; its handler's EMF is another process's anyway
    no_build = [item for item in whole if Path(item.path).name not in emf_recorder.ELSEWHERE]
    assert incompleteness(config, no_build, no_build) is None
    config.args = ["tests/integration/test_cli.py::test_x", "tests/integration"]
    assert incompleteness(config, whole, whole) == (
        "only some tests of a file were asked for (tests/integration/test_cli.py::test_x)"
    )


def test_a_failing_check_names_the_integration_tests_that_did_not_run_through() -> None:
    recorder = EmfRecorder(None)
    assert recorder.caveat() == ""

    for nodeid, outcome in [("a.py::t", "failed"), ("b.py::t", "skipped"), ("c.py::t", "skipped")]:
        report: Any = SimpleNamespace(
            nodeid=f"tests/integration/{nodeid}", fspath=str(emf_recorder.FOLDER / nodeid[:4])
        )
        report.failed, report.skipped = outcome == "failed", outcome == "skipped"
        recorder.pytest_runtest_logreport(report)

    assert recorder.caveat() == (
        "\nintegration tests that did not run through: 1 failed (e.g. tests/integration/a.py::t); "
        "2 skipped (e.g. tests/integration/b.py::t)"
    )
