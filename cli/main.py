"""``lettershop``: the operator's command line (docs/cli.md).

::

    lettershop [--stack NAME] [--verbose] channel schema|example|validate|put|list|show|check
    lettershop poll ID [--dry-run]
    lettershop message list ID [--quarantined] | replay KEY [--force]
    lettershop script test NAME FILE | put FILE | get NAME
    lettershop --stack NAME stack check [--channel ID]

Resource names come from the outputs of ``--stack NAME`` (CloudFormation), else from the same
environment variables as the functions (``LETTERSHOP_CHANNELS_TABLE``, ...). AWS credentials,
region and endpoints are boto3's own (``AWS_PROFILE``, ``AWS_ENDPOINT_URL``, ...).
"""

import os
from typing import Annotated

import typer

from cli import channel, message, script
from cli import poll as poll_commands
from cli import stack as stack_commands
from cli.context import Stack, service_logs

app = typer.Typer(
    name="lettershop",
    help="Operate the LetterShop e-mail channel: channels, polls, messages, scripts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(channel.app, name="channel")
app.add_typer(message.app, name="message")
app.add_typer(script.app, name="script")
app.add_typer(stack_commands.app, name="stack")
poll_commands.register(app)


@app.callback()
def main(
    ctx: typer.Context,
    stack: Annotated[
        str | None,
        typer.Option("--stack", help="the CloudFormation stack to work on (default: LETTERSHOP_* variables)"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show the service's log lines")] = False,
) -> None:
    ctx.obj = Stack(stack_name=stack)
    ctx.with_resource(service_logs(verbose))


def run() -> None:
    """The console script: metrics are the functions' business, not the operator's terminal."""
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    app()


if __name__ == "__main__":
    run()
