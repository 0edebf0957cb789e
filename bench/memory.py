"""Peak RSS of real polls (``bench.polls.memory``) in a process of their own: ``python -m bench.memory``.

``bench.polls`` runs this as a subprocess with a local stack of its own, so that nothing the bench did
before (the domain figures leave the bench's process with a heap of hundreds of MB, and the SMTP
server that takes the poll's reply runs in that process) changes what the poll's process peaks at:
measured in the bench's own process after the domain figures, the same poll of the same 5.3 MB import
grew by 79 to 157 MB instead of 59 MB. Prints the lines; the exit status is 1 when a budget is not met.
"""

import sys

from bench.polls import failed, local_stack, memory


def main() -> None:
    try:
        with local_stack() as stack:
            ok = memory(stack)
    except Exception as error:  # the stack did not start (or stop): one FAIL line says so
        ok = failed("real poll: peak RSS growth", error)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
