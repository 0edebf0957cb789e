"""The composition root (``app.root``) answers once what the logins of a channel read, for the poll
and for ``lettershop channel check`` alike; and the program is put together without circles: the
command line imports nothing from ``handlers/``, no module of ``src/`` imports one that imports it
back."""

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.graph import GraphMailbox
from adapters.graph_send import GraphReplySender
from app.root import AwsRoot, password_secrets, pop3_account, smtp_account
from app.warm import WarmState
from domain.errors import ChannelFailure
from settings import PollSettings
from tests.unit.fakes import make_channel

ROOT = Path(__file__).resolve().parents[2]
OAUTH = {
    "oauth_provider": "microsoft",
    "oauth_tenant": "contoso.onmicrosoft.com",
    "oauth_client_id": "app-1",
    "oauth_secret": "lettershop/acme/oauth",
}
SMTP_AUTH = {
    "smtp_auth": True,
    "smtp_username": "lettershop",
    "smtp_password_secret": "lettershop/acme/smtp",
}


@pytest.fixture(autouse=True)
def passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets Manager as the logins see it: each password names its secret."""
    monkeypatch.setattr(
        "adapters.secrets.SecretStore.password",
        lambda _store, secret_id, *, setting: f"{setting}:{secret_id}",
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, [("POP3", "lettershop/acme/pop3", "pop3_password_secret")]),
        (
            SMTP_AUTH,
            [
                ("POP3", "lettershop/acme/pop3", "pop3_password_secret"),
                ("SMTP", "lettershop/acme/smtp", "smtp_password_secret"),
            ],
        ),
        (SMTP_AUTH | {"smtp_auth": False}, [("POP3", "lettershop/acme/pop3", "pop3_password_secret")]),
        (
            SMTP_AUTH | {"reply_via": "ses", "smtp_host": None},
            [("POP3", "lettershop/acme/pop3", "pop3_password_secret")],
        ),
        (
            SMTP_AUTH | OAUTH | {"smtp_login": "oauth2", "smtp_security": "starttls"},
            [("POP3", "lettershop/acme/pop3", "pop3_password_secret")],
        ),
        (
            SMTP_AUTH
            | OAUTH
            | {"pop3_login": "oauth2", "pop3_password_secret": None, "pop3_security": "tls"},
            [("SMTP", "lettershop/acme/smtp", "smtp_password_secret")],
        ),
    ],
)
def test_the_check_tries_exactly_the_password_secrets_the_logins_read(
    changes: dict[str, Any], expected: list[tuple[str, str, str]]
) -> None:
    channel = make_channel(**changes)

    found = [(secret.login, secret.secret_id, secret.setting) for secret in password_secrets(channel)]

    assert found == expected
    read = {pop3_account(channel).password}
    if channel.reply_via == "smtp":
        read.add(smtp_account(channel).password)
    assert read - {None} == {f"{setting}:{secret_id}" for _, secret_id, setting in expected}


SETTINGS = PollSettings(
    channels_table="channels", state_table="state", scripts_bucket="scripts", archive_bucket="archive"
)
GRAPH_MAILBOX = {
    "mailbox_protocol": "graph",
    "graph_mailbox": "lettershop@contoso.example",
    "pop3_host": None,
    "pop3_username": None,
    "pop3_password_secret": None,
}


def test_a_graph_mailbox_is_read_through_graph_with_the_graph_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")  # clients are made, no request is sent
    channel = make_channel(**OAUTH | GRAPH_MAILBOX)

    mailbox = AwsRoot(SETTINGS, warm=WarmState()).ports(channel).mailbox

    assert isinstance(mailbox, GraphMailbox)
    assert password_secrets(channel) == []
    with pytest.raises(ChannelFailure, match="not read over POP3"):
        pop3_account(channel)


@pytest.mark.parametrize(
    "changes",
    [
        OAUTH | GRAPH_MAILBOX | {"reply_via": "graph"},
        OAUTH | {"reply_via": "graph", "graph_mailbox": "lettershop@contoso.example"},
    ],
)
def test_reply_via_graph_sends_through_graph_as_graph_mailbox(
    changes: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")  # clients are made, no request is sent
    channel = make_channel(**changes)

    replies = AwsRoot(SETTINGS, warm=WarmState()).ports(channel).replies

    assert isinstance(replies, GraphReplySender)
    assert [s.setting for s in password_secrets(channel)] == (
        [] if channel.mailbox_protocol == "graph" else ["pop3_password_secret"]
    )


def test_save_to_sent_items_false_stops_the_poll_before_the_mailbox_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    channel = make_channel(**OAUTH | GRAPH_MAILBOX | {"reply_via": "graph", "save_to_sent_items": False})

    with pytest.raises(ChannelFailure, match="not built yet") as failed:
        AwsRoot(SETTINGS, warm=WarmState()).ports(channel)

    assert failed.value.setting == "save_to_sent_items"


def imports_of(path: Path) -> Iterator[str]:
    """Every module ``path`` imports, at its top or inside a function (``from a import b`` imports
    ``a.b`` when that is a module)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def names_imported(path: Path) -> set[str]:
    return {
        alias.name
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def module_graph(folder: Path, prefix: str = "") -> dict[str, set[str]]:
    modules = {
        prefix + ".".join(path.relative_to(folder).with_suffix("").parts).removesuffix(".__init__"): path
        for path in folder.rglob("*.py")
    }
    graph = {}
    for name, path in modules.items():
        imported = {module for module in imports_of(path) if module in modules and module != name}
        # ``from package import module`` runs the package first: that is no edge back to it
        graph[name] = {module for module in imported if not any(m.startswith(module + ".") for m in imported)}
    return graph


def test_the_command_line_imports_nothing_from_the_handlers() -> None:
    imported = {module for path in (ROOT / "cli").rglob("*.py") for module in imports_of(path)}

    assert sorted(module for module in imported if module.split(".")[0] == "handlers") == []
    assert "app.root" in imported  # it builds its ports through the composition root


def test_no_module_of_src_imports_one_that_imports_it_back() -> None:
    graph = module_graph(ROOT / "src")

    def reaches(start: str) -> set[str]:
        seen: set[str] = set()
        todo = list(graph[start])
        while todo:
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo += graph.get(module, ())
        return seen

    assert sorted(name for name in graph if name in reaches(name)) == []


def test_the_command_line_assembles_no_ports_of_its_own() -> None:
    """The poll, dry run, replay and check take their ports and logins from the root: the command
    line builds none of the adapters the root wires for them."""
    wired = {
        "DryRunMailbox", "DryRunArchive", "OverlayLedger", "PlaceholderSerials", "GrantedLease",
        "UnlimitedReplies", "ReadOnlyMemory", "RecordingReplySender", "ReplayMailbox", "ReplayMemory",
        "Pop3Mailbox", "Pop3Account", "pop3_account", "Ports", "GraphMailbox", "GraphAccount",
        "GraphReplySender", "graph_account",
    }  # fmt: skip
    built = {path.name: sorted(names_imported(path) & wired) for path in sorted((ROOT / "cli").rglob("*.py"))}

    assert {name: names for name, names in built.items() if names} == {}
