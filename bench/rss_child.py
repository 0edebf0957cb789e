"""One Lambda-like process for ``bench.polls``: ``python -m bench.rss_child OUT EMPTY WARM MEASURED``.

Run by the bench with the local stack's environment. It imports the handler (timed: the cold
start's import), polls channel ``EMPTY`` (an empty mailbox: the cold first poll), polls ``WARM`` (one
small import: every module, client and secret of a real answer is loaded), then records its resident
set, polls ``MEASURED`` (one message carrying the large import) and writes to ``OUT`` as JSON: the
import and cold poll seconds, the RSS before, the peak RSS after (``VmHWM``, reset just before the
measured poll), each poll's result.
The growth, peak minus RSS before, is the poll's own: the servers it talks to run in other processes.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import SRC

if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))


def resident_bytes() -> int:
    """The process's resident set now (``/proc/self/statm``), in bytes."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_bytes() -> int:
    """The peak resident set since ``reset_peak`` (``VmHWM`` of ``/proc/self/status``, in kB).

    Not ``ru_maxrss``: a child started from Python starts with its parent's peak there, and the
    bench parent holds the import files and the message when it starts the child."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak() -> None:
    """Make the peak resident set the current one (``clear_refs`` 5, Linux), so that what
    ``peak_bytes`` reports afterwards is the measured poll's own."""
    Path("/proc/self/clear_refs").write_text("5")


def poll_once(channel_id: str) -> dict[str, Any]:
    from devstack.invoke import FakeLambdaContext, invoke_poll  # noqa: PLC0415  # after the timed import

    try:
        return invoke_poll({"channel_id": channel_id}, FakeLambdaContext())
    except Exception as error:  # reported to the bench, which prints it with a FAIL line
        return {"raised": repr(error)}


def main() -> None:
    out, empty, warm, measured = sys.argv[1:5]
    started = time.perf_counter()
    import handlers.poll  # noqa: F401, PLC0415  # the cold start's import, timed

    import_s = time.perf_counter() - started
    started = time.perf_counter()
    empty_result = poll_once(empty)
    cold_poll_s = time.perf_counter() - started
    warm_result = poll_once(warm)
    gc.collect()
    before = resident_bytes()
    reset_peak()
    started = time.perf_counter()
    result = poll_once(measured)
    seconds = time.perf_counter() - started
    report = {
        "import_s": import_s,
        "cold_empty_poll_s": cold_poll_s,
        "empty_result": empty_result,
        "warm_result": warm_result,
        "rss_before": before,
        "peak_after": peak_bytes(),
        "poll_s": seconds,
        "result": result,
    }
    Path(out).write_text(json.dumps(report))


if __name__ == "__main__":
    main()
