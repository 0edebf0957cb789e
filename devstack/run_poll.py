"""Run one poll in its own process, as a Lambda invocation would: ``python -m devstack.run_poll``.

Prints the handler's result as one JSON line (or ``{"raised": ...}``). For the crash tests,
``--kill-at STEP`` makes the process SIGKILL itself the first time the poll reaches that step —
through the ``checkpoint`` parameter of ``service.poll.poll_channel``, which the deployed handler
never passes.
The environment (``LocalStack.env()``) is inherited from the caller.
"""

import argparse
import functools
import json
import os
import signal

from devstack.invoke import FakeLambdaContext, invoke_poll


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("channel_id")
    parser.add_argument("--kill-at", default=None)
    parser.add_argument("--remaining-ms", type=int, default=300_000)
    args = parser.parse_args()
    import handlers.poll  # noqa: PLC0415  # after devstack.invoke put src/ on the path; a warm start

    if os.environ.get("LETTERSHOP_IAM_RECORD_DIR"):  # the test suite's IAM check records this poll too
        from tests.integration.iam_recorder import record_this_process  # noqa: PLC0415

        record_this_process()

    if args.kill_at:

        def checkpoint(step: str) -> None:
            if step == args.kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

        # the handler calls the service through its module global: wrap that one name
        vars(handlers.poll)["poll_channel"] = functools.partial(
            vars(handlers.poll)["poll_channel"], checkpoint=checkpoint
        )
    try:
        result = invoke_poll(
            {"channel_id": args.channel_id}, FakeLambdaContext(remaining_ms=args.remaining_ms)
        )
    except Exception as error:  # reported to the parent test, which decides
        result = {"raised": repr(error)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
