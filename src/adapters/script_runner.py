"""Run one pre- or postscript as a limited child process (DESIGN §4).

What this does, per run:

* a fresh private working directory (``mkdtemp``, mode 0700) holds a copy of the script and the file
  to work on; it is the child's cwd and is removed afterwards, whatever happened;
* ``sys.executable -I <script>``: isolated mode, so no ``PYTHON*`` variables, no user site-packages
  and neither the cwd nor the script's folder on ``sys.path``;
* an environment built from scratch: ``PATH``, ``LANG`` and the ``LETTERSHOP_*`` values of §4,
  nothing else of the Lambda's environment (no AWS credentials, no table or bucket names);
* stdin is ``/dev/null``, no other file descriptor of the Lambda is inherited;
* its own session and process group: at the end (success, failure or timeout) the whole group is
  killed with ``SIGKILL``, so children it forked do not outlive it;
* a sweep for what left the group (``setsid``, a double fork; ``process_guard``): this process is
  a child subreaper, so every process the script orphans becomes our child; after the run, every
  child that appeared since the run started is killed with ``SIGKILL`` and reaped. Children this
  process had before the run (in tests: Dovecot, moto) are left alone. Runs must not overlap (the
  poll runs one at a time);
* resource limits, set in the child by a tiny launcher that calls ``setrlimit`` and then ``exec``s
  the real interpreter (``preexec_fn`` is not safe in a process with threads): CPU seconds,
  address space, size of any file written, number of processes (not enforced for root), open
  files, and no core dumps;
* stdout and stderr are read through pipes while it runs, keeping only the last bytes of each, so a
  script that prints a gigabyte costs the Lambda neither memory nor disk.

What it cannot do without kernel isolation (none is available in Lambda) is in ``docs/scripts.md``.
"""

import os
import re
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from adapters.process_guard import become_subreaper, children, kill_group, sweep

KIB = 1024
MIB = 1024 * KIB

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
DEFAULT_LANG = "C.UTF-8"
_POLL_SECONDS = 0.02
_DRAIN_SECONDS = 1.0

# Runs in the child before the script: set the limits, then become the script's interpreter (same pid,
# so the process group and the timeout still apply). argv: limits as "NAME=soft", "--", the script.
_LAUNCHER = """\
import os, resource, sys
args = sys.argv[1:]
while (arg := args.pop(0)) != "--":
    name, value = arg.split("=")
    which = getattr(resource, name)
    hard = resource.getrlimit(which)[1]
    soft = int(value)
    new_hard = soft + 1 if name == "RLIMIT_CPU" else soft
    if hard != resource.RLIM_INFINITY:
        soft, new_hard = min(soft, hard), min(new_hard, hard)
    resource.setrlimit(which, (soft, new_hard))
os.umask(0o077)
os.execv(sys.executable, [sys.executable, "-I", *args])
"""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one script run; CPU seconds follow the channel's ``script_timeout_seconds``.

    The defaults leave room for the poll function itself within its 512 MB.
    ``processes`` counts every process of the user (RLIMIT_NPROC) and is not enforced for root.
    """

    memory_bytes: int = 256 * MIB
    file_bytes: int = 100 * MIB
    processes: int = 64
    open_files: int = 256
    output_tail_bytes: int = 64 * KIB


@dataclass(frozen=True)
class ScriptRun:
    """How one run ended; ``problem`` is None exactly when it succeeded."""

    exit_code: int | None
    signal_name: str | None
    timed_out: bool
    duration_ms: int
    stdout_tail: bytes
    stderr_tail: bytes
    file: bytes | None
    problem: str | None
    workdir_removed: bool
    swept: int = 0  # processes it left behind outside its group, killed (or reaped) after the run

    @property
    def ok(self) -> bool:
        return self.problem is None


def script_environment(values: Mapping[str, str]) -> dict[str, str]:
    """The child's whole environment: ``PATH``, ``LANG`` and *values* (made safe for ``execve``)."""
    env = {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "LANG": os.environ.get("LANG") or DEFAULT_LANG,
    }
    for name, value in values.items():
        # Mail headers may carry NUL or undecodable characters: execve accepts neither.
        env[name] = value.encode("utf-8", "replace").decode("utf-8").replace("\0", "")
    return env


def run_script(
    script_name: str,
    body: bytes,
    data: bytes,
    *,
    file_name: str,
    env: Mapping[str, str],
    timeout_seconds: float,
    limits: Limits,
    work_root: Path | None = None,
) -> ScriptRun:
    """Run *body* (saved as *script_name*) on *data* (saved as *file_name*); never raises for the script."""
    if "/" in script_name or "\0" in script_name or script_name.startswith("."):
        raise ValueError(f"unsafe script name {script_name!r}")
    if "/" in file_name or "\0" in file_name or file_name.startswith("."):
        raise ValueError(f"unsafe file name {file_name!r}")
    workdir = Path(tempfile.mkdtemp(prefix="lettershop-script-", dir=work_root))
    try:
        script = workdir / script_name
        script.write_bytes(body)
        target = workdir / file_name
        target.write_bytes(data)
        child_env = {**env, "LETTERSHOP_FILE": str(target)}
        run = _run(script, target, child_env, timeout_seconds, limits)
    finally:
        removed = remove_tree(workdir)
    return replace(run, workdir_removed=removed)


def _run(script: Path, target: Path, env: dict[str, str], timeout: float, limits: Limits) -> ScriptRun:
    """Start the script in its folder, read its output until it exits or times out, kill its group."""
    rlimits = {
        "RLIMIT_CPU": max(1, int(timeout) + 1),
        "RLIMIT_AS": limits.memory_bytes,
        "RLIMIT_FSIZE": limits.file_bytes,
        "RLIMIT_NPROC": limits.processes,
        "RLIMIT_NOFILE": limits.open_files,
        "RLIMIT_CORE": 0,
    }
    argv = [
        sys.executable,
        "-I",
        "-S",
        "-c",
        _LAUNCHER,
        *(f"{name}={value}" for name, value in rlimits.items()),
        "--",
        str(script),
    ]
    become_subreaper()
    children_before = children()
    started = time.monotonic()
    process = subprocess.Popen(
        argv,
        cwd=script.parent,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        close_fds=True,
        start_new_session=True,
    )
    assert process.stdout is not None  # noqa: S101  # PIPE was asked for
    assert process.stderr is not None  # noqa: S101
    stdout, stderr = _Tail(limits.output_tail_bytes), _Tail(limits.output_tail_bytes)
    tails = {process.stdout.fileno(): stdout, process.stderr.fileno(): stderr}
    timed_out = False
    with selectors.DefaultSelector() as selector:
        for fd in tails:
            os.set_blocking(fd, False)
            selector.register(fd, selectors.EVENT_READ)
        try:
            deadline = started + timeout
            while not _has_exited(process.pid):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                _read_ready(selector, tails, min(_POLL_SECONDS, remaining))
        finally:
            # The leader is not reaped yet (a zombie at most), so its process group id cannot have been
            # reused: killing the group hits the script and every child it left, never a stranger.
            kill_group(process.pid)
            process.wait()
            # Before the file is read: nothing the script started may still be changing it.
            swept = sweep(children_before)
        duration_ms = round((time.monotonic() - started) * 1000)
        drain_until = time.monotonic() + _DRAIN_SECONDS
        while selector.get_map() and time.monotonic() < drain_until:
            _read_ready(selector, tails, _POLL_SECONDS)
    process.stdout.close()
    process.stderr.close()

    returncode = process.returncode
    exit_code = returncode if returncode >= 0 else None
    signal_name = None if returncode >= 0 else _signal_name(-returncode)
    file, file_problem = (None, None) if timed_out else _read_result(target, limits.file_bytes)
    problem = _problem(exit_code, signal_name, timed_out, timeout, limits) or file_problem
    return ScriptRun(
        exit_code=exit_code,
        signal_name=None if timed_out else signal_name,
        timed_out=timed_out,
        duration_ms=duration_ms,
        stdout_tail=stdout.data,
        stderr_tail=stderr.data,
        file=file if problem is None else None,
        problem=problem,
        workdir_removed=False,
        swept=swept,
    )


class _Tail:
    """The last *size* bytes of a stream, however much flows through."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buffer = bytearray()

    def add(self, chunk: bytes) -> None:
        self.buffer += chunk
        if len(self.buffer) > 2 * self.size:
            del self.buffer[: len(self.buffer) - self.size]

    @property
    def data(self) -> bytes:
        return bytes(self.buffer[-self.size :])


def _has_exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (``WNOWAIT``)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped elsewhere: gone all the same
        return True


def _read_ready(selector: selectors.BaseSelector, tails: dict[int, _Tail], timeout: float) -> None:
    if not selector.get_map():
        time.sleep(timeout)
        return
    for key, _ in selector.select(timeout):
        fd = key.fd
        try:
            chunk = os.read(fd, 64 * KIB)
        except BlockingIOError:
            continue
        if chunk:
            tails[fd].add(chunk)
        else:
            selector.unregister(fd)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _problem(
    exit_code: int | None, signal_name: str | None, timed_out: bool, timeout: float, limits: Limits
) -> str | None:
    if timed_out:
        return f"did not finish within {timeout:g} s and was stopped"
    if exit_code == 0:
        return None
    if exit_code is not None:
        return f"exited with code {exit_code}"
    reasons = {
        "SIGXCPU": f"used more than its CPU time limit of {max(1, int(timeout) + 1)} s",
        "SIGXFSZ": f"wrote a file larger than the limit of {limits.file_bytes // MIB} MiB",
        "SIGKILL": "was killed (SIGKILL; out of memory?)",
    }
    return reasons.get(signal_name or "", f"was killed by {signal_name}")


def _read_result(target: Path, limit: int) -> tuple[bytes | None, str | None]:
    """The file the script left: a regular file (not a link, pipe or device), not empty."""
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None, "deleted its file (LETTERSHOP_FILE)"
    except OSError:
        return None, "left something at LETTERSHOP_FILE that is not a regular file"
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, "left something at LETTERSHOP_FILE that is not a regular file"
        if info.st_size == 0:
            return None, "left its file (LETTERSHOP_FILE) empty"
        if info.st_size > limit:
            return None, f"left a file larger than {limit // MIB} MiB"
        return handle.read(limit + 1), None


def remove_tree(path: Path) -> bool:
    """Remove *path* even when the script took away permissions inside it; whether it is gone."""

    def allow_and_retry(function: object, failed: str, _error: BaseException) -> None:
        parent = os.path.dirname(failed)
        try:
            os.chmod(parent, stat.S_IRWXU)
            if os.path.isdir(failed) and not os.path.islink(failed):
                os.chmod(failed, stat.S_IRWXU)
                shutil.rmtree(failed, ignore_errors=True)
            else:
                os.unlink(failed)
        except OSError:
            pass

    shutil.rmtree(path, onexc=allow_and_retry)
    return not path.exists()


def last_lines(output: bytes, lines: int = 10, chars: int = 1500) -> str:
    """The end of a script's output as printable text, for a log line and the partner's error reply."""
    text = output.decode("utf-8", "replace")
    text = re.sub(r"[^\S\n]+", " ", text)
    text = "".join(ch for ch in text if ch == "\n" or ch.isprintable())
    tail = "\n".join(line.rstrip() for line in text.strip().splitlines()[-lines:])
    return tail[-chars:]
