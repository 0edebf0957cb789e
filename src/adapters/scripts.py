"""Pre- and postscripts (DESIGN §4): fetched from the scripts bucket, run as a limited child process.

``S3ScriptRunner`` implements ``service.ports.ScriptRunner``: it resolves which object a channel's
script is (``script_store``), runs it on the file (``script_runner``), logs how long it took and how it
ended, and turns every failure into ``domain.errors.ScriptFailed`` with a reason the partner can read.
What the sandbox does and does not prevent: ``docs/scripts.md``.
"""

import textwrap
from pathlib import Path
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric

from adapters.process_guard import protect_from_children
from adapters.script_runner import (
    MIB,
    Limits,
    ScriptRun,
    last_lines,
    run_script,
    script_environment,
)
from adapters.script_store import S3ScriptStore, ScriptCache, describe, script_key
from domain.errors import ScriptFailed, TransientError
from service.ports import ScriptCall
from service.telemetry import NAMESPACE, logger

STAGE_NAMES = {"pre": "prescript", "post": "postscript"}
# Each LETTERSHOP_* value is cut to this many characters (docs/scripts.md): at most 4 KiB in UTF-8,
# far below Linux's 128 KiB limit of one environment string.
MAX_VARIABLE_CHARS = 1000


class S3ScriptRunner:
    """Runs a channel's scripts from ``bucket`` with an injected ``s3`` client; ``cache`` is the warm
    state's script cache (default: a private, cold one)."""

    def __init__(
        self,
        bucket: str,
        client: Any,
        *,
        cache: ScriptCache | None = None,
        limits: Limits | None = None,
        work_root: Path | None = None,
    ) -> None:
        self._store = S3ScriptStore(bucket, client, cache if cache is not None else ScriptCache())
        self._limits = limits or Limits()
        self._work_root = work_root
        protect_from_children()

    def run(self, call: ScriptCall, data: bytes) -> bytes:
        stage = STAGE_NAMES[call.stage]
        where = {"stage": call.stage, "script": call.name, "bucket": self._store.bucket}
        try:
            key = script_key(
                call.name, use_standard_script=call.use_standard_script, partner_id=call.partner_id
            )
            where["key"] = key
            script = self._store.fetch(key)
        except ScriptFailed as error:
            _count_failure(call)
            raise ScriptFailed(f"{stage} failed: {error}") from error
        where |= {"etag": script.etag, "source": script.source}

        try:
            run = run_script(
                call.name,
                script.body,
                data,
                file_name=_work_file_name(call),
                env=script_environment(_variables(call)),
                timeout_seconds=call.timeout_seconds,
                limits=self._limits,
                work_root=self._work_root,
            )
        except OSError as error:  # no room in /tmp, no process left to start: the Lambda's trouble
            logger.error("%s could not be started: %s", stage, error, extra=where)
            raise TransientError(f"{stage} {call.name} could not be started: {error}") from error
        details = {
            **where,
            "duration_ms": run.duration_ms,
            "exit_code": run.exit_code,
            "signal": run.signal_name,
            "timed_out": run.timed_out,
            "workdir_removed": run.workdir_removed,
            "swept_processes": run.swept,
        }
        if run.file is not None:
            logger.info("%s ran", stage, extra={**details, "stdout_tail": last_lines(run.stdout_tail)})
            return run.file
        reason = _reason(run, self._limits)
        stderr = last_lines(run.stderr_tail)
        logger.warning(
            "%s failed: %s",
            stage,
            reason,
            extra={**details, "stderr_tail": stderr, "stdout_tail": last_lines(run.stdout_tail)},
        )
        _count_failure(call)
        message = f"{stage} failed: {describe(key)} {reason}"
        if stderr:
            message += "; the end of its error output:\n" + textwrap.indent(stderr, "    ")
        raise ScriptFailed(message)


def _variables(call: ScriptCall) -> dict[str, str]:
    """The ``LETTERSHOP_*`` values of §4 (``LETTERSHOP_FILE`` is added by the runner), each cut to
    ``MAX_VARIABLE_CHARS`` and without NUL, so no header can make the script's start fail."""
    values = {
        "LETTERSHOP_STAGE": call.stage,
        "LETTERSHOP_FILENAME": call.filename,
        "LETTERSHOP_CHANNEL_ID": call.channel_id,
        "LETTERSHOP_PARTNER_ID": call.partner_id,
        "LETTERSHOP_SENDER": call.sender,
        "LETTERSHOP_SUBJECT": call.subject,
    }
    return {name: value.replace("\x00", "")[:MAX_VARIABLE_CHARS] for name, value in values.items()}


def _work_file_name(call: ScriptCall) -> str:
    """``import.csv`` / ``export.csv``: the attachment's name is never used as a path (§3)."""
    suffix = Path(call.filename).suffix.lower()
    if not suffix[1:].isalnum() or not suffix[1:].isascii() or len(suffix) > 10:
        suffix = ""
    return f"{'import' if call.stage == 'pre' else 'export'}{suffix}"


def _reason(run: ScriptRun, limits: Limits) -> str:
    reason = run.problem or "failed"
    stderr = run.stderr_tail
    if run.exit_code not in (None, 0):
        if b"MemoryError" in stderr:
            reason += f" (out of memory: the limit is {limits.memory_bytes // MIB} MiB)"
        elif b"File too large" in stderr:
            reason += f" (a file larger than the limit of {limits.file_bytes // MIB} MiB)"
    return reason


def _count_failure(call: ScriptCall) -> None:
    # The namespace is passed, not left to POWERTOOLS_METRICS_NAMESPACE: without that variable
    # single_metric raises, and a script failure would turn into an unexpected error.
    with single_metric(
        name="ScriptFailed",
        unit=MetricUnit.Count,
        value=1,
        namespace=NAMESPACE,
        default_dimensions={"channel_id": call.channel_id, "stage": call.stage},
    ):
        pass
