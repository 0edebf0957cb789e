"""Cold start: ``import handlers.poll`` in a fresh interpreter vs ``import boto3`` alone (issue 11).

Each import runs in its own subprocess with the environment the Lambda runtime gives the poll
function (``template.yaml``: Powertools settings, ``LETTERSHOP_*``; the runtime's ``AWS_*`` variables
and ``_HANDLER``; tracing active as deployed, so Powertools' Tracer behaves as it does in Lambda).
Only the ``import`` statement is timed, not the interpreter's own start; best of several runs, taken
alternately. One more run under ``python -X importtime`` says where the handler's import time goes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass

from bench.common import ROOT, SRC

RUNS = 5
TIMER = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"


def lambda_environment() -> dict[str, str]:
    """What the poll function's process sees in Lambda (no credentials: nothing is called)."""
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "SYSTEMROOT") if name in os.environ}
    return keep | {
        "PYTHONPATH": str(SRC),
        "LAMBDA_TASK_ROOT": str(SRC),
        "_HANDLER": "handlers.poll.handler",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_FUNCTION_NAME": "lettershop-PollFunction",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_REGION": "eu-central-1",
        "AWS_DEFAULT_REGION": "eu-central-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        # template.yaml, Globals and PollFunction
        "POWERTOOLS_SERVICE_NAME": "lettershop",
        "POWERTOOLS_METRICS_NAMESPACE": "LetterShop",
        "POWERTOOLS_LOG_LEVEL": "INFO",
        "LETTERSHOP_CHANNELS_TABLE": "lettershop-ChannelsTable-1A2B3C",
        "LETTERSHOP_STATE_TABLE": "lettershop-StateTable-1A2B3C",
        "LETTERSHOP_SCRIPTS_BUCKET": "lettershop-scriptsbucket-1a2b3c",
        "LETTERSHOP_ARCHIVE_BUCKET": "lettershop-archivebucket-1a2b3c",
        "LETTERSHOP_TIME_MARGIN_SECONDS": "30",
    }


def python(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter run with ``args`` in the checkout, its output captured."""
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def import_seconds(module: str, env: dict[str, str]) -> float:
    """Seconds ``import <module>`` takes in a fresh interpreter."""
    done = python(["-c", TIMER.format(module=module)], env)
    if done.returncode != 0:
        raise RuntimeError(f"import {module} failed:\n{done.stderr[-2000:]}")
    return float(done.stdout.strip().splitlines()[-1])


_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def self_time_by_package(importtime_stderr: str) -> dict[str, float]:
    """Seconds of ``-X importtime`` self time, summed per top-level package (``pydantic``, ``domain``)."""
    totals: dict[str, float] = defaultdict(float)
    for line in importtime_stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            totals[match.group(4).split(".")[0]] += int(match.group(1)) / 1e6
    return dict(totals)


def importtime_breakdown(module: str, env: dict[str, str], top: int = 8) -> list[tuple[str, float]]:
    """The ``top`` packages by self time while importing ``module`` (one run, ``-X importtime``)."""
    done = python(["-X", "importtime", "-c", f"import {module}"], env)
    totals = self_time_by_package(done.stderr)
    return sorted(totals.items(), key=lambda item: -item[1])[:top]


@dataclass(frozen=True)
class ColdStart:
    handler_s: float
    boto3_s: float
    breakdown: list[tuple[str, float]]

    @property
    def ratio(self) -> float:
        return self.handler_s / self.boto3_s


def measure(runs: int = RUNS) -> ColdStart:
    env = lambda_environment()
    import_seconds("handlers.poll", env)  # writes the bytecode caches of a clean clone once
    handler_s, boto3_s = [], []
    for _ in range(runs):
        handler_s.append(import_seconds("handlers.poll", env))
        boto3_s.append(import_seconds("boto3", env))
    return ColdStart(min(handler_s), min(boto3_s), importtime_breakdown("handlers.poll", env))
