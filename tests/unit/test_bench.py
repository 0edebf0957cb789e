"""The bench's helpers work (``make bench`` itself measures; nothing here is timed)."""

import os

import boto3
import pytest
from botocore.stub import Stubber

from bench.coldstart import lambda_environment, self_time_by_package
from bench.common import interleaved_medians, verdict
from bench.polls import Poll
from bench.probes import ApiCalls, CallWindow, quiet_stdout


def test_a_budget_line_says_pass_or_fail_and_returns_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert verdict(True, "warm empty poll: AWS calls 1 (budget <= 1)") is True
    assert verdict(False, "drain: 0.09x (budget >= 0.25x)") is False
    assert capsys.readouterr().out.splitlines() == [
        "  PASS  warm empty poll: AWS calls 1 (budget <= 1)",
        "  FAIL  drain: 0.09x (budget >= 0.25x)",
    ]


def test_interleaved_medians_run_both_alike() -> None:
    order: list[str] = []

    def run(name: str, seconds: float) -> float:
        order.append(name)
        return seconds

    ours, baseline = interleaved_medians(3, lambda: run("ours", 2.0), lambda: run("base", 1.0))
    assert order == ["ours", "base"] * 3
    assert (ours, baseline) == (2.0, 1.0)


def test_every_botocore_call_is_counted_in_its_window_and_the_probe_is_removed_after() -> None:
    client = boto3.client(
        "dynamodb", region_name="eu-central-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(client) as stub:
        stub.add_response("get_item", {}, {"TableName": "t", "Key": {"k": {"S": "a"}}})
        stub.add_response("get_item", {}, {"TableName": "t", "Key": {"k": {"S": "b"}}})
        with ApiCalls() as calls:
            client.get_item(TableName="t", Key={"k": {"S": "a"}})  # before the window: not in it
            with calls.window() as window:
                client.get_item(TableName="t", Key={"k": {"S": "b"}})
        assert calls.calls == ["dynamodb.GetItem", "dynamodb.GetItem"]
        assert window.count == 1
        assert window.breakdown() == "dynamodb.GetItem 1"
        stub.add_response("get_item", {}, {"TableName": "t", "Key": {"k": {"S": "c"}}})
        client.get_item(TableName="t", Key={"k": {"S": "c"}})
    assert len(calls.calls) == 2


def test_a_breakdown_lists_the_most_frequent_call_first() -> None:
    window = CallWindow(["s3.PutObject", "dynamodb.PutItem", "dynamodb.PutItem"])
    assert window.breakdown() == "dynamodb.PutItem 2, s3.PutObject 1"
    assert CallWindow().breakdown() == "none"


def test_what_the_poll_writes_to_file_descriptor_1_is_counted_not_shown() -> None:
    with quiet_stdout() as written:
        os.write(1, b'{"level": "INFO"}\n{"_aws": {}}\n')
    assert (written.size, written.lines) == (31, 2)


def test_importtime_self_time_is_summed_per_top_level_package() -> None:
    stderr = (
        "import time: self [us] | cumulative | imported package\n"
        "import time:       100 |        100 |     pydantic.fields\n"
        "import time:       250 |        350 |   pydantic\n"
        "import time:      1000 |       1000 | domain.channel\n"
    )
    assert self_time_by_package(stderr) == pytest.approx({"pydantic": 0.00035, "domain": 0.001})


def test_the_cold_start_runs_in_the_environment_the_template_gives_the_function() -> None:
    env = lambda_environment()
    assert env["_HANDLER"] == "handlers.poll.handler"
    assert {"POWERTOOLS_SERVICE_NAME", "LETTERSHOP_CHANNELS_TABLE", "LETTERSHOP_STATE_TABLE"} <= env.keys()
    assert "AWS_ACCESS_KEY_ID" not in env


def test_a_poll_result_is_checked_for_its_status_and_counts() -> None:
    poll = Poll({"status": "ok", "seen": 0}, 0.01, CallWindow(), 0, 0)
    assert poll.counts(seen=0) is None
    assert poll.counts(seen=1) is not None
    assert Poll({"raised": "PollFailed()"}, 0.01, CallWindow(), 0, 0).counts() is not None
