"""Rehearse the built artifact inside Lambda's limits: the handler of ``make build``'s build folder,
run by the Lambda runtime's stand-in in a sandbox shaped like Lambda.

* the code: the function's import-checked build folder (``.aws-sam/build/<Function>``, or on a machine
  that cannot load the template's architecture the build for its own, ``.aws-sam/check-<machine>/build``,
  see ``tools/check_artifact.py``), first on ``sys.path`` of ``.venv-tools/lambda-runtime/bin/python -I``
  (Python with only Powertools and boto3): nothing of ``src/`` or the project's virtualenv;
* the filesystem (Bubblewrap, ``bwrap``): ``/`` read-only, ``/tmp`` a tmpfs of the function's
  ``EphemeralStorage`` (512 MB by default), no ``HOME``; the network is shared, so the handler reaches
  the local stack on 127.0.0.1;
* memory: the template's ``MemorySize``. The handler's peak resident memory (``VmHWM``) must stay within
  it. Where this machine lets us make a memory cgroup, the whole sandbox also runs in one limited to
  ``MemorySize`` plus ``EphemeralStorage`` (the kernel charges the pages of the tmpfs ``/tmp`` to the
  cgroup, Lambda does not): beyond that the kernel kills it;
* time: the handler gets a context counting down from the template's ``Timeout`` and is killed after it
  (plus Lambda's 10 s for the cold start's import).

``rehearse(...)`` returns a :class:`Rehearsal`; its ``problems()`` name each limit broken. The
integration tests (``tests/integration/test_rehearsal.py``, ``make rehearse``) drive it against the
local stack.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.aws import load_template
from tools.cgroup import MemoryCgroup
from tools.check_artifact import MACHINES, ROOT, Function, lambda_environment, lambda_functions

BUILD_DIR = ROOT / ".aws-sam" / "build"
RUNTIME_PYTHON = ROOT / ".venv-tools" / "lambda-runtime" / "bin" / "python"
INIT_SECONDS = 10  # Lambda's limit on the cold start's import, outside the function's Timeout
MIB = 1024 * 1024
# The runner prints its report on one line after this mark (the handler's logs go to stdout too).
MARK = "@@lambda-rehearsal@@ "

# Runs in the Lambda runtime's interpreter (python -I) inside the sandbox:
# argv = folder, module, attribute, event (JSON), function name, memory (MB), timeout (s).
RUNNER = r"""
import importlib, json, os, shutil, sys, time, traceback, uuid

folder, module, attribute, event, name, memory, timeout = sys.argv[1:8]


class Context:
    function_name = name
    function_version = "$LATEST"
    memory_limit_in_mb = int(memory)
    invoked_function_arn = "arn:aws:lambda:eu-central-1:123456789012:function:" + name
    log_group_name = "/aws/lambda/" + name
    aws_request_id = str(uuid.uuid4())

    def __init__(self):
        self.deadline = time.monotonic() + int(timeout)

    def get_remaining_time_in_millis(self):
        return max(0, int((self.deadline - time.monotonic()) * 1000))


report = {"result": None, "raised": None}
sys.path.insert(0, folder)
started = time.monotonic()
try:
    handler = getattr(importlib.import_module(module), attribute)
    report["init_s"] = time.monotonic() - started
    started = time.monotonic()
    report["result"] = handler(json.loads(event), Context())
except BaseException as error:
    report["raised"] = f"{type(error).__name__}: {error}"
    report["traceback"] = traceback.format_exc()[-3000:]
report["duration_s"] = time.monotonic() - started
with open("/proc/self/status", encoding="ascii") as status:
    peak = [line.split()[1] for line in status if line.startswith("VmHWM:")]
report["peak_rss_bytes"] = int(peak[0]) * 1024 if peak else None
report["tmp_left_bytes"] = shutil.disk_usage("/tmp").used
writable = []
for probe in (folder, os.path.expanduser("~"), "/var/tmp"):
    try:
        with open(os.path.join(probe, ".rehearsal-probe"), "w"):
            writable.append(probe)
    except OSError:
        pass
report["writable_outside_tmp"] = writable
sys.stdout.flush()
print("@@lambda-rehearsal@@ " + json.dumps(report, default=str), flush=True)
"""


class NotBuilt(LookupError):
    """There is no build to rehearse (``make build`` has not run)."""


@dataclass(frozen=True)
class Limits:
    memory_mb: int
    ephemeral_mb: int
    timeout_s: int

    @classmethod
    def of(cls, function: Function) -> Limits:
        return cls(function.memory_size, function.ephemeral_storage_mb, function.timeout)


@dataclass(frozen=True)
class Target:
    """A function of the build: its template entry and the folder its handler is imported from."""

    function: Function
    folder: Path

    @property
    def limits(self) -> Limits:
        return Limits.of(self.function)


def machine() -> str:
    return MACHINES.get(platform.machine().lower(), platform.machine())


def find_targets(build_dir: Path = BUILD_DIR, this_machine: str | None = None) -> dict[str, Target]:
    """Each Python function of the build by its logical id, with the folder this machine can import:
    the build itself, or the check build for this machine's architecture when the template's is
    another (``make build`` makes both)."""
    this_machine = this_machine or machine()
    built_template = build_dir / "template.yaml"
    if not built_template.is_file():
        raise NotBuilt(f"{built_template} is missing: `make build` (or `make rehearse`) builds it")
    targets = {}
    for function in lambda_functions(load_template(built_template)):
        if not function.is_python_zip:
            continue
        folder = build_dir / function.code_uri
        if function.architecture != this_machine:
            folder = build_dir.with_name(f"check-{this_machine}") / "build" / function.code_uri
        if not folder.is_dir():
            raise NotBuilt(
                f"{folder} is missing ({function.architecture} wheels cannot be loaded on {this_machine}): "
                "run `make build`, which builds it"
            )
        targets[function.logical_id] = Target(function, folder.resolve())
    return targets


@dataclass(frozen=True)
class Rehearsal:
    """What one invocation in the sandbox did."""

    limits: Limits
    returncode: int | None  # None: killed after the timeout
    report: dict[str, Any] | None  # the runner's report, None when it never printed one
    output: str  # stdout without the report line, and stderr
    cgroup: str | None  # the memory cgroup the sandbox ran in, or why there was none
    cgroup_peak_bytes: int | None
    oom_killed: bool

    @property
    def result(self) -> Any:
        return (self.report or {}).get("result")

    def problems(self) -> list[str]:
        """Each limit broken and each way the invocation failed; empty when it ran within all."""
        limits, report = self.limits, self.report or {}
        problems = []
        if self.returncode is None:
            problems.append(f"killed after the Timeout of {limits.timeout_s} s (+{INIT_SECONDS} s init)")
        if self.oom_killed:
            problems.append(f"killed by the memory cgroup ({self.cgroup})")
        if self.report is None:
            problems.append(f"the runner ended with status {self.returncode} without a report")
        if report.get("raised"):
            problems.append(f"the handler raised {report['raised']}\n{report.get('traceback', '')}")
        if report.get("duration_s", 0) > limits.timeout_s:
            problems.append(
                f"the handler took {report['duration_s']:.1f} s, the Timeout is {limits.timeout_s} s"
            )
        if report.get("init_s", 0) > INIT_SECONDS:
            problems.append(f"the import took {report['init_s']:.1f} s, Lambda allows {INIT_SECONDS} s")
        peak = report.get("peak_rss_bytes")
        if peak is not None and peak > limits.memory_mb * MIB:
            problems.append(f"peak RSS {peak / MIB:.0f} MiB exceeds MemorySize {limits.memory_mb} MB")
        if report.get("writable_outside_tmp"):
            problems.append(f"the sandbox let it write outside /tmp: {report['writable_outside_tmp']}")
        return problems

    def summary(self) -> str:
        report = self.report or {}
        peak, took = report.get("peak_rss_bytes") or 0, report.get("duration_s", 0)
        return (
            f"{took:.1f} s of {self.limits.timeout_s} s, peak RSS {peak / MIB:.0f} MiB "
            f"of {self.limits.memory_mb} MB, memory cgroup: {self.cgroup}"
        )


def sandbox_command(limits: Limits, folder: Path, readable_in_tmp: list[Path]) -> list[str]:
    """``bwrap``: a read-only root, a fresh /dev and /proc, /tmp a tmpfs of the ephemeral storage's
    size (with the files of the host's /tmp the handler needs bound read-only into it), the network
    shared, the sandbox gone with its parent."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise FileNotFoundError("bwrap is missing: apt-get install bubblewrap (make system-packages)")
    command = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    command += ["--size", str(limits.ephemeral_mb * MIB), "--tmpfs", "/tmp"]  # noqa: S108  # the sandbox's
    for path in readable_in_tmp:
        command += ["--ro-bind", str(path), str(path)]
    command += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session"]
    return [*command, "--chdir", str(folder)]


def _under(path: Path, folder: Path) -> bool:
    """Whether ``path`` lies in ``folder`` as written or once its links are followed."""
    return path.absolute().is_relative_to(folder) or path.resolve().is_relative_to(folder)


def rehearse(
    target: Target,
    event: Mapping[str, Any],
    environment: Mapping[str, str],
    *,
    runtime_python: Path = RUNTIME_PYTHON,
    limits: Limits | None = None,
) -> Rehearsal:
    """Invoke the target's handler once with ``event`` in the sandbox, with Lambda's environment for
    the function overlaid by ``environment`` (the local stack's endpoint, CA file and names)."""
    limits = limits or target.limits
    function, folder = target.function, target.folder
    env = {**lambda_environment(function, folder), **environment}
    env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = str(limits.memory_mb)
    env.pop("HOME", None)
    name = env["AWS_LAMBDA_FUNCTION_NAME"]
    host_tmp = Path(tempfile.gettempdir()).resolve()
    venv = runtime_python.absolute().parent.parent  # the interpreter needs its pyvenv.cfg and packages
    needed = [folder, venv, *(Path(v) for v in env.values() if v.startswith("/"))]
    in_tmp = sorted({p.absolute() for p in needed if p.exists() and _under(p, host_tmp)})
    command = [
        *sandbox_command(limits, folder, in_tmp),
        *(str(runtime_python.absolute()), "-I", "-c", RUNNER, str(folder)),
        *(function.module, function.attribute, json.dumps(event), name),
        *(str(limits.memory_mb), str(limits.timeout_s)),
    ]
    ceiling = (limits.memory_mb + limits.ephemeral_mb) * MIB
    cgroup, why_not = MemoryCgroup.create(f"lettershop-rehearsal-{uuid.uuid4().hex[:12]}", ceiling)
    try:
        try:
            completed = subprocess.run(
                [*cgroup.enter_command(), *command] if cgroup else command,
                env=env,
                capture_output=True,
                text=True,
                timeout=limits.timeout_s + INIT_SECONDS,
                check=False,
            )
            returncode, stdout, stderr = completed.returncode, completed.stdout, completed.stderr
        except subprocess.TimeoutExpired as expired:
            returncode, stdout, stderr = None, _text(expired.stdout), _text(expired.stderr)
        peak, oom = (cgroup.peak_bytes(), cgroup.oom_killed()) if cgroup else (None, False)
    finally:
        if cgroup:
            cgroup.remove()
    report, lines = None, []
    for line in stdout.split("\n"):
        if line.startswith(MARK):
            report = json.loads(line.removeprefix(MARK))
        else:
            lines.append(line)
    return Rehearsal(
        limits=limits,
        returncode=returncode,
        report=report,
        output="\n".join([*lines, stderr]),
        cgroup=cgroup.describe() if cgroup else why_not,
        cgroup_peak_bytes=peak,
        oom_killed=oom,
    )


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""
