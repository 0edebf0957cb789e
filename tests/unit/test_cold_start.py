"""The poll handler's import, the cold start (issue 11): what only an invocation needs stays out of it.

Each check runs a fresh interpreter with the environment Lambda gives the poll function
(``bench.coldstart.lambda_environment``: tracing active, as deployed), the one ``make bench`` times.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.coldstart import lambda_environment

ROOT = Path(__file__).resolve().parents[2]
# Imported by the first invocation, or only by the channels that need them; never by the import.
HEAVY = (
    "aws_xray_sdk",  # Powertools' Tracer, made by the first invocation (service.telemetry)
    "wrapt",  # the X-Ray SDK's patching
    "boto3",  # the first AWS client (adapters.clients), Powertools parameters (adapters.secrets)
    "botocore.session",
    "botocore.client",
    "s3transfer",
    "urllib3",
    "pydantic_settings",  # the function's settings, read by the first invocation
    "asyncio",
    "authlib",  # OAuth 2.0 channels only (adapters.oauth)
    "requests",
    "cryptography",
)


def in_lambda(code: str) -> Any:
    """What ``code`` prints as JSON, run in a fresh interpreter in the poll function's environment."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=lambda_environment(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_poll_handler_loads_no_heavy_module() -> None:
    loaded = in_lambda(
        "import json, sys, handlers.poll\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )

    assert loaded == []


def test_importing_the_poll_handler_builds_no_channel_validator() -> None:
    """pydantic's ``defer_build``: the channel model is built when the first item is validated."""
    complete = in_lambda(
        "import json, handlers.poll; from domain.channel import Channel; "
        "print(json.dumps(Channel.__pydantic_complete__))"
    )

    assert complete is False


def test_the_first_invocation_makes_the_tracer_with_xray_on_and_aws_calls_patched() -> None:
    """The deployed behaviour stays: in Lambda, X-Ray traces the handler and every AWS call."""
    state = in_lambda(
        "import json, sys, handlers.poll\n"
        "from service.telemetry import tracer\n"
        "before = 'aws_xray_sdk' in sys.modules\n"
        "made = tracer.tracer\n"
        "from aws_xray_sdk.core import patcher\n"
        "print(json.dumps({'before': before, 'disabled': made.disabled, 'again': tracer.tracer is made,\n"
        "                  'patched': sorted(patcher._PATCHED_MODULES)}))"
    )

    assert state["before"] is False
    assert state["disabled"] is False
    assert state["again"] is True
    assert "botocore" in state["patched"]
