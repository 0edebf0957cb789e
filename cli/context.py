"""What every command shares: where the stack is, the consoles, and how a problem ends a command."""

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
from rich.console import Console

from adapters.channels import ChannelTable
from adapters.stack_outputs import stack_outputs
from app.root import aws_client
from domain.channel import Channel, InvalidChannel, load_channel
from domain.errors import LetterShopError
from service.telemetry import logger
from settings import PollSettings

# Where each resource name comes from: the stack output (template.yaml) and the variable the
# functions read (settings.py, schedule_settings.py).
RESOURCES = {
    "channels_table": ("ChannelsTableName", "LETTERSHOP_CHANNELS_TABLE"),
    "state_table": ("StateTableName", "LETTERSHOP_STATE_TABLE"),
    "scripts_bucket": ("ScriptsBucketName", "LETTERSHOP_SCRIPTS_BUCKET"),
    "archive_bucket": ("ArchiveBucketName", "LETTERSHOP_ARCHIVE_BUCKET"),
    "schedule_group": ("ScheduleGroupName", "LETTERSHOP_SCHEDULE_GROUP"),
}


class CliError(Exception):
    """A problem the operator can act on: printed as one plain message, exit status 1."""


def _console(*, stderr: bool = False) -> Console:
    width = None if sys.stdout.isatty() else 160
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)


def out() -> Console:
    return _console()


def err() -> Console:
    return _console(stderr=True)


def say(text: str = "") -> None:
    """A plain line on stdout (no markup: mail text and errors contain brackets)."""
    out().print(text, markup=False, highlight=False, soft_wrap=True)


def warn(text: str) -> None:
    err().print(text, markup=False, highlight=False, soft_wrap=True, style="yellow")


def fail(text: str) -> typer.Exit:
    err().print(f"error: {text}", markup=False, highlight=False, soft_wrap=True, style="red")
    return typer.Exit(1)


def handled[**P, R](command: Callable[P, R]) -> Callable[P, R]:
    """Every expected failure ends the command with a plain message and exit status 1, no traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CliError as error:
            raise fail(str(error)) from None
        except (NoCredentialsError, NoRegionError) as error:
            raise fail(_no_credentials(error)) from None
        except LetterShopError as error:
            if isinstance(error.__cause__, NoCredentialsError | NoRegionError):  # an adapter's call
                raise fail(_no_credentials(error.__cause__)) from None
            raise fail(str(error)) from None
        except (ClientError, BotoCoreError) as error:
            raise fail(f"AWS: {error}") from None
        except OSError as error:
            raise fail(str(error)) from None

    return wrapper


def _no_credentials(error: Exception) -> str:
    return f"AWS: {error} (use your normal AWS credentials and region)"


@dataclass
class Stack:
    """The deployed stack's resource names: from ``--stack NAME``'s outputs, else the environment."""

    stack_name: str | None = None
    _outputs: dict[str, str] | None = field(default=None, repr=False)

    def name(self, resource: str) -> str:
        value = self.optional(resource)
        if value is None:
            output, variable = RESOURCES[resource]
            if self.stack_name:
                raise CliError(f"stack {self.stack_name} has no output {output}")
            raise CliError(f"which stack? pass --stack NAME, or set {variable} (as the functions have it)")
        return value

    def optional(self, resource: str) -> str | None:
        output, variable = RESOURCES[resource]
        if self.stack_name:
            return self.outputs().get(output)
        return os.environ.get(variable) or None

    def outputs(self) -> dict[str, str]:
        if self._outputs is None:
            assert self.stack_name is not None  # noqa: S101  # outputs are read only for --stack
            self._outputs = stack_outputs(aws_client("cloudformation"), self.stack_name)
        return self._outputs

    @property
    def channels_table(self) -> str:
        return self.name("channels_table")

    @property
    def state_table(self) -> str:
        return self.name("state_table")

    @property
    def scripts_bucket(self) -> str:
        return self.name("scripts_bucket")

    @property
    def archive_bucket(self) -> str:
        return self.name("archive_bucket")

    def poll_settings(self) -> PollSettings:
        return PollSettings(
            channels_table=self.channels_table,
            state_table=self.state_table,
            scripts_bucket=self.scripts_bucket,
            archive_bucket=self.archive_bucket,
        )

    def channel_item(self, channel_id: str) -> dict[str, Any]:
        item = ChannelTable(self.channels_table, aws_client("dynamodb")).get(channel_id)
        if item is None:
            raise CliError(f"there is no channel {channel_id} in table {self.channels_table}")
        return item

    def channel(self, channel_id: str) -> Channel:
        """The channel as the poll would load it; an invalid item ends the command with its problems."""
        item = self.channel_item(channel_id)
        try:
            return load_channel(item)
        except InvalidChannel as error:
            raise CliError(problems_text(error)) from None


def stack_of(ctx: typer.Context) -> Stack:
    stack = ctx.obj
    if not isinstance(stack, Stack):
        stack = ctx.obj = Stack()
    return stack


def problems_text(error: InvalidChannel) -> str:
    lines = [f"channel {error.channel_id} is not valid ({len(error.errors)} problem(s)):"]
    lines += [f"  {name}: {reason}" for name, reason in error.errors]
    return "\n".join(lines)


@contextmanager
def service_logs(verbose: bool) -> Iterator[None]:
    """The service's JSON log lines: on stderr with ``--verbose``, else none (the command reports)."""
    level = logger.log_level
    handler = logger.registered_handler
    previous = None
    if verbose:
        previous = handler.setStream(sys.stderr) if hasattr(handler, "setStream") else None
        logger.setLevel("DEBUG")
    else:
        logger.setLevel("CRITICAL")
    try:
        yield
    finally:
        logger.setLevel(level)
        if previous is not None and hasattr(handler, "setStream"):
            handler.setStream(previous)


# ------------------------------------------------------------------ items as files

_deserializer = TypeDeserializer()
_serializer = TypeSerializer()
_TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "L", "M", "SS", "NS", "BS"})


def read_item(path: Path) -> dict[str, Any]:
    """A channel item from a JSON file: plain JSON, or DynamoDB JSON as the console shows it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise CliError(f"{path}: {error.strerror or error}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CliError(f"{path} is not JSON: {error}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path} must hold one JSON object (the channel item)")
    if data and all(isinstance(v, dict) and len(v) == 1 and next(iter(v)) in _TYPES for v in data.values()):
        data = {name: _deserializer.deserialize(value) for name, value in data.items()}
    return data


def to_dynamodb(item: dict[str, Any]) -> dict[str, Any]:
    """Plain JSON values as a typed DynamoDB item; absent (null) attributes are left out."""
    return {name: _serializer.serialize(_numbers(value)) for name, value in item.items() if value is not None}


def _numbers(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_numbers(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """DynamoDB's Decimals and sets as JSON values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
