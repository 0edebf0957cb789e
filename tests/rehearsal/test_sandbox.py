"""The sandbox of the Lambda rehearsal (``tools/rehearse.py``) bites: writes outside ``/tmp`` are
refused, ``/tmp`` is full at the function's ``EphemeralStorage``, memory beyond ``MemorySize`` is killed
or reported, a handler past its ``Timeout`` is reported and killed; the limits are the template's and
the build imported is this machine's. A stdlib-only handler in a folder of its own: no build needed
(``tests/integration/test_rehearsal.py`` rehearses the build)."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.aws import load_template
from tools import rehearse
from tools.check_artifact import ROOT, Function, lambda_functions

FAKE_HANDLER = """
import errno, os, time

def handler(event, context):
    if event["do"] == "write":
        written = []
        for folder in (os.path.dirname(__file__), os.path.expanduser("~"), "/var/tmp", "/tmp"):
            try:
                with open(os.path.join(folder, "probe"), "w") as out:
                    out.write("x")
                written.append(folder)
            except OSError as error:
                assert error.errno in (errno.EROFS, errno.EACCES), error
        return {"written": written, "home": os.environ.get("HOME")}
    if event["do"] == "fill_tmp":
        written = 0
        try:
            with open("/tmp/fill", "wb") as out:
                for _ in range(event["mb"]):
                    out.write(b"x" * 1024 * 1024)
                    out.flush()
                    os.fsync(out.fileno())
                    written += 1024 * 1024
        except OSError as error:
            return {"written": written, "errno": error.errno}
        return {"written": written, "errno": None}
    if event["do"] == "allocate":
        block = bytearray(event["mb"] * 1024 * 1024)
        return {"allocated": len(block), "remaining_ms": context.get_remaining_time_in_millis()}
    time.sleep(event["s"])
    return {"slept": event["s"]}
"""
FAKE_LIMITS = rehearse.Limits(memory_mb=128, ephemeral_mb=16, timeout_s=2)


@pytest.fixture
def fake(tmp_path: Path) -> rehearse.Target:
    """A function of one stdlib-only handler in a folder of its own, with small limits."""
    folder = tmp_path / "build" / "Fake"
    folder.mkdir(parents=True)
    (folder / "fake.py").write_text(FAKE_HANDLER)
    function = Function(
        logical_id="Fake",
        handler="fake.handler",
        runtime="python3.13",
        architecture=rehearse.machine(),
        code_uri="Fake",
        memory_size=FAKE_LIMITS.memory_mb,
        environment={},
        layer_versions=(),
        timeout=FAKE_LIMITS.timeout_s,
        ephemeral_storage_mb=FAKE_LIMITS.ephemeral_mb,
    )
    return rehearse.Target(function, folder)


def sandboxed(target: rehearse.Target, event: dict[str, object]) -> rehearse.Rehearsal:
    return rehearse.rehearse(target, event, {}, runtime_python=Path(sys.executable))


def test_the_sandbox_writes_only_to_tmp_and_has_no_home(fake: rehearse.Target) -> None:
    rehearsal = sandboxed(fake, {"do": "write"})

    assert rehearsal.problems() == [], rehearsal.output
    assert rehearsal.result == {"written": ["/tmp"], "home": None}


def test_the_sandbox_tmp_holds_the_ephemeral_storage_and_no_more(fake: rehearse.Target) -> None:
    rehearsal = sandboxed(fake, {"do": "fill_tmp", "mb": 32})

    assert rehearsal.result["errno"] == errno.ENOSPC, rehearsal.output
    assert 8 * rehearse.MIB <= rehearsal.result["written"] <= FAKE_LIMITS.ephemeral_mb * rehearse.MIB


def test_the_sandbox_refuses_more_memory_than_memory_size(fake: rehearse.Target) -> None:
    within = sandboxed(fake, {"do": "allocate", "mb": 32})
    beyond = sandboxed(fake, {"do": "allocate", "mb": 400})

    assert within.problems() == [], within.output
    assert 0 < within.result["remaining_ms"] <= FAKE_LIMITS.timeout_s * 1000
    [problem, *_] = beyond.problems()
    assert problem.startswith("killed by the memory cgroup") or "exceeds MemorySize 128 MB" in problem, (
        problem
    )


def test_a_peak_rss_beyond_memory_size_is_a_problem_without_a_cgroup() -> None:
    report: dict[str, Any] = {
        "result": {},
        "raised": None,
        "duration_s": 1.0,
        "init_s": 0.5,
        "peak_rss_bytes": 129 * rehearse.MIB,
    }
    rehearsal = rehearse.Rehearsal(FAKE_LIMITS, 0, report, "", "none", None, oom_killed=False)

    assert rehearsal.problems() == ["peak RSS 129 MiB exceeds MemorySize 128 MB"]


def test_the_sandbox_holds_the_handler_to_its_timeout(fake: rehearse.Target) -> None:
    late = sandboxed(fake, {"do": "sleep", "s": 3})
    hung = sandboxed(fake, {"do": "sleep", "s": 60})

    assert [p.split(",")[0] for p in late.problems()] == ["the handler took 3.0 s"]
    assert hung.problems()[0] == f"killed after the Timeout of 2 s (+{rehearse.INIT_SECONDS} s init)"


def test_the_limits_are_the_templates() -> None:
    functions = {f.logical_id: f for f in lambda_functions(load_template(ROOT / "template.yaml"))}

    assert rehearse.Limits.of(functions["PollFunction"]) == rehearse.Limits(512, 512, 300)
    assert rehearse.Limits.of(functions["ScheduleSyncFunction"]) == rehearse.Limits(256, 512, 120)


def test_a_build_of_another_architecture_is_rehearsed_from_this_machines_build(tmp_path: Path) -> None:
    build = tmp_path / ".aws-sam" / "build"
    properties = {
        "Handler": "fake.handler",
        "Runtime": "python3.13",
        "CodeUri": "Fake",
        "EphemeralStorage": {"Size": 1024},
    }
    template: dict[str, Any] = {
        "Resources": {"Fake": {"Type": "AWS::Serverless::Function", "Properties": properties}}
    }
    for folder in (build, tmp_path / ".aws-sam" / "check-x86_64" / "build"):
        (folder / "Fake").mkdir(parents=True)
        (folder / "template.yaml").write_text(json.dumps(template))
    template["Globals"] = {"Function": {"Architectures": ["arm64"]}}
    (build / "template.yaml").write_text(json.dumps(template))

    [arm] = rehearse.find_targets(build, "x86_64").values()
    [same] = rehearse.find_targets(build, "arm64").values()

    assert arm.folder == (tmp_path / ".aws-sam" / "check-x86_64" / "build" / "Fake").resolve()
    assert same.folder == (build / "Fake").resolve()
    assert arm.limits == rehearse.Limits(memory_mb=128, ephemeral_mb=1024, timeout_s=3)
    with pytest.raises(rehearse.NotBuilt, match="arm64 wheels cannot be loaded on aarch-none"):
        rehearse.find_targets(build, "aarch-none")
