"""``make bench``: every figure against its same-run baseline, one PASS/FAIL line per budget.

* ``bench.parsing`` — the domain's hot paths: import processing and message parsing against the
  standard library, the 20 MB streamed import, the pathological messages of issue 10;
* ``bench.polls`` — the poll on the local stack (Dovecot, aiosmtpd, moto): issue 11's table (empty
  polls, a shared mailbox of 1,000 foreign mails, the cold start's import, a drain of 100 messages)
  and issue 10's peak RSS of a real poll;
* ``bench.latency`` — issue 21's goals: the poll and a bare client through the same latency proxies
  (``python -m bench.latency`` runs only these).

The exit status is 1 when any budget line says FAIL.
"""

import sys
import time

from bench import parsing, polls


def main() -> None:
    started = time.perf_counter()
    ok = parsing.main()
    ok = polls.main() and ok
    verdicts = "every budget met" if ok else "FAIL: a budget is not met"
    print(f"bench: {verdicts} ({time.perf_counter() - started:.0f} s)")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
