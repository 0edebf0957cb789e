"""Guarding the function's process against the scripts it starts (DESIGN §4), through Linux ``prctl``.

* non-dumpable: a script running as the same user cannot read ``/proc/<pid>/environ`` or ``mem`` of
  the function, where its AWS credentials are (root is not stopped by this);
* child subreaper: a process a script orphans (``setsid`` and a double fork) is re-parented to the
  function instead of to PID 1, so ``sweep`` finds and kills it after the run.
"""

import contextlib
import ctypes
import functools
import os
import signal
import sys
import time

_SWEEP_SECONDS = 5.0
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    """``prctl(option, value)`` through libc; whether it succeeded (False off Linux)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):  # not glibc/musl: nothing to call
        return False


def protect_from_children() -> None:
    """Mark this process non-dumpable, so a script (same user) cannot read its ``/proc/<pid>/environ``
    or ``/proc/<pid>/mem`` - where the Lambda's AWS credentials are. Root is not stopped by this."""
    _prctl(_PR_SET_DUMPABLE, 0)


@functools.cache
def become_subreaper() -> bool:
    """Make this process a child subreaper (once): a process a script orphans - ``setsid`` and a double
    fork - is re-parented to us instead of to PID 1, so the sweep after the run can find and kill it."""
    return _prctl(_PR_SET_CHILD_SUBREAPER, 1)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def children() -> set[tuple[int, int]]:
    """This process's children, live or zombie, as ``(pid, start time)`` (a reused pid is not the same
    process), from ``/proc/<pid>/stat``."""
    if not os.path.isdir("/proc"):  # not Linux: no sweep (and no subreaper either)
        return set()
    me = os.getpid()
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid ... starttime(22) ...": comm may contain spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 19 and int(fields[1]) == me:
            found.add((int(entry), int(fields[19])))
    return found


def sweep(before: set[tuple[int, int]]) -> int:
    """``SIGKILL`` and reap every child of this process that is not in *before*; how many there were.

    Killing one re-parents its own children to us (we are the subreaper), so repeat until none is new.
    """
    swept: set[int] = set()
    deadline = time.monotonic() + _SWEEP_SECONDS
    while time.monotonic() < deadline:
        strays = [pid for pid, _ in children() - before]
        if not strays:
            break
        for pid in strays:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in strays:
            _reap(pid, deadline)
        swept.update(strays)
    return len(swept)


def _reap(pid: int, deadline: float) -> None:
    """Wait for the killed child *pid* (only this pid: other children have owners of their own)."""
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] or time.monotonic() >= deadline:
                return
        except ChildProcessError:  # already reaped
            return
        time.sleep(0.002)
