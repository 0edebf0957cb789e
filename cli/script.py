"""``lettershop script test|put|get``: the original's "Script" dialog.

``test`` runs a script in the same sandbox as the poll function (``adapters.script_runner``: private
folder, clean environment, limits, timeout) on a sample file, and shows how it ended, its output and
the resulting file. ``put`` compiles a script before it uploads it to ``standard/<name>`` or
``partners/<partner>/<name>`` (docs/scripts.md); ``get`` downloads one.
"""

from pathlib import Path
from typing import Annotated, Literal

import typer

from adapters.script_runner import Limits, last_lines, run_script, script_environment
from adapters.script_store import (
    MAX_SCRIPT_BYTES,
    S3ScriptStore,
    ScriptCache,
    StoredScript,
    describe,
    script_key,
)
from app.root import aws_client
from cli.context import CliError, handled, say, stack_of
from domain.errors import ScriptFailed
from domain.script_name import SCRIPT_NAME_RULE, is_script_name

app = typer.Typer(help="Pre- and postscripts: test one locally, upload, download.", no_args_is_help=True)

Stage = Literal["pre", "post"]
PARTNER_HELP = "a partner's script (partners/<P>/), not a standard one"


@app.command("test")
@handled
def script_test(  # noqa: PLR0917  # Typer: one parameter per option
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="a local .py file, or the name of a script in the bucket")],
    file: Annotated[Path, typer.Argument(help="the sample file to run it on")],
    partner: Annotated[str | None, typer.Option("--partner", help=PARTNER_HELP)] = None,
    stage: Annotated[Stage, typer.Option(help="pre: an import file; post: an export file")] = "pre",
    timeout: Annotated[int, typer.Option(help="seconds, as script_timeout_seconds")] = 60,
    channel_id: Annotated[str, typer.Option("--channel", help="LETTERSHOP_CHANNEL_ID")] = "test",
    sender: Annotated[str, typer.Option(help="LETTERSHOP_SENDER")] = "orders@partner.example",
    subject: Annotated[str, typer.Option(help="LETTERSHOP_SUBJECT")] = "LetterShop import",
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="write the resulting file here")
    ] = None,
) -> None:
    """Run a script in the poll function's sandbox on a sample file; show how it ended."""
    local = Path(name)
    if local.is_file():
        body, script_name = local.read_bytes(), local.name
    else:
        key = _key(name, partner)
        body, script_name = _fetch(ctx, key).body, name
        say(f"script: {describe(key)} from the scripts bucket")
    if not is_script_name(script_name):
        raise CliError(f"{script_name}: a script is {SCRIPT_NAME_RULE}")
    data = file.read_bytes()
    if not data:
        raise CliError(f"{file} is empty")
    partner_id = partner or channel_id
    suffix = file.suffix.lower() if file.suffix[1:].isalnum() and len(file.suffix) <= 10 else ""
    env = script_environment(
        {
            "LETTERSHOP_STAGE": stage,
            "LETTERSHOP_FILENAME": file.name,
            "LETTERSHOP_CHANNEL_ID": channel_id,
            "LETTERSHOP_PARTNER_ID": partner_id,
            "LETTERSHOP_SENDER": sender,
            "LETTERSHOP_SUBJECT": subject,
        }
    )
    run = run_script(
        script_name,
        body,
        data,
        file_name=f"{'import' if stage == 'pre' else 'export'}{suffix}",
        env=env,
        timeout_seconds=timeout,
        limits=Limits(),
    )
    if run.timed_out:
        ended = f"timed out: did not finish within {timeout} s and was stopped"
    elif run.signal_name:
        ended = f"killed by {run.signal_name}"
    else:
        ended = f"exit code {run.exit_code}"
    say(f"{script_name} ({stage}script) on {file.name}: {ended}, {run.duration_ms} ms")
    if run.problem:
        say(f"problem: {run.problem}")
    say("--- stderr ---")
    say(last_lines(run.stderr_tail, lines=40, chars=6000) or "(empty)")
    say("--- stdout ---")
    say(last_lines(run.stdout_tail, lines=40, chars=6000) or "(empty)")
    if run.file is not None:
        if output is not None:
            output.write_bytes(run.file)
            say(f"--- resulting file: written to {output} ({len(run.file)} bytes) ---")
        else:
            say(f"--- resulting file ({len(run.file)} bytes) ---")
            say(run.file.decode("utf-8", "replace").rstrip("\n"))
    if not run.ok:
        raise typer.Exit(1)


@app.command("put")
@handled
def put_command(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="the local .py file")],
    name: Annotated[
        str | None, typer.Option(help="the script's name in the bucket (default: the file's)")
    ] = None,
    partner: Annotated[str | None, typer.Option("--partner", help=PARTNER_HELP)] = None,
) -> None:
    """Check a script's syntax, then upload it to standard/<name> or partners/<partner>/<name>."""
    body = file.read_bytes()
    script_name = name or file.name
    key = _key(script_name, partner)
    if len(body) > MAX_SCRIPT_BYTES:
        raise CliError(f"{file} is larger than {MAX_SCRIPT_BYTES // 1024} KiB, the most the function runs")
    try:
        compile(body, str(file), "exec")
    except SyntaxError as error:
        raise CliError(
            f"{file} does not compile: {error.msg} (line {error.lineno}); nothing uploaded"
        ) from None
    except ValueError as error:
        raise CliError(f"{file} does not compile: {error}; nothing uploaded") from None
    store = S3ScriptStore(stack_bucket(ctx), aws_client("s3"), ScriptCache())
    etag = store.upload(key, body)
    say(f"uploaded {describe(key)} to s3://{store.bucket}/{key} (ETag {etag})")
    use = "true" if partner is None else "false"
    say(f'use it: "prescript" or "postscript": "{script_name}" with "use_standard_script": {use}')


@app.command("get")
@handled
def get_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="the script's name, e.g. to_canonical.py")],
    partner: Annotated[str | None, typer.Option("--partner", help=PARTNER_HELP)] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="write it here, not to stdout")
    ] = None,
) -> None:
    """Download a script from standard/<name> or partners/<partner>/<name>."""
    script = _fetch(ctx, _key(name, partner))
    if output is None:
        typer.echo(script.body.decode("utf-8", "replace"), nl=False)
        return
    output.write_bytes(script.body)
    say(f"{describe(script.key)} written to {output} ({len(script.body)} bytes)")


def _key(name: str, partner: str | None) -> str:
    try:
        return script_key(name, use_standard_script=partner is None, partner_id=partner or "")
    except ScriptFailed as error:
        raise CliError(str(error)) from None


def stack_bucket(ctx: typer.Context) -> str:
    return stack_of(ctx).scripts_bucket


def _fetch(ctx: typer.Context, key: str) -> StoredScript:
    try:
        return S3ScriptStore(stack_bucket(ctx), aws_client("s3"), ScriptCache()).fetch(key)
    except ScriptFailed as error:
        raise CliError(str(error)) from None
