"""The Graph-shaped server and the authorization server without the rest of the stack, for the
Graph adapters' tests (``test_graph_mailbox.py``, ``test_graph_send.py``): module fixtures
``parts`` and ``graph`` (import both), a token source asking the authorization server directly,
and a mailbox with an app allowed to use it."""

import json
import secrets
import ssl
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pytest

from adapters.graph import GraphAccount, GraphMailbox
from adapters.network import TlsContexts
from adapters.oauth import AccessToken
from devstack.graph import GraphServer
from devstack.oauth import AuthorizationServer
from devstack.stack import MICROSOFT_SCOPE
from devstack.tls import TlsFiles, make_tls_files

BOTH = frozenset({"Mail.ReadWrite", "Mail.Send"})


@dataclass
class Parts:
    tls: TlsFiles
    oauth: AuthorizationServer
    graph: GraphServer


@dataclass
class Tokens:
    """A ``TokenSource``: client-credentials tokens of one app for ``scope``, the first one
    ``preset`` (to hand the adapter a stale or foreign token), each marked as cached after its first use."""

    parts: Parts
    client_id: str
    secret: str
    scope: str
    preset: str | None = None
    fetched: int = 0
    forgotten: list[str] = field(default_factory=list)
    _current: str | None = None

    def token(self) -> AccessToken:
        if self._current is not None:
            return AccessToken(self._current, cached=True)
        if self.preset is not None:
            self._current, self.preset = self.preset, None
            return AccessToken(self._current, cached=True)
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.secret,
            "scope": self.scope,
        }
        request = urllib.request.Request(  # noqa: S310  # the local https server
            self.parts.oauth.token_url, data=urllib.parse.urlencode(form).encode(), method="POST"
        )
        context = ssl.create_default_context(cafile=str(self.parts.tls.ca_file))
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:  # noqa: S310
            self._current = str(json.load(answer)["access_token"])
        self.fetched += 1
        return AccessToken(self._current, cached=False)

    def forget(self, token: AccessToken) -> None:
        self.forgotten.append(token.value)
        if self._current == token.value:
            self._current = None


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Parts]:
    tls = make_tls_files(tmp_path_factory.mktemp("graph-tls"))
    with AuthorizationServer(tls) as oauth, GraphServer(tls, oauth.introspector()) as graph:
        yield Parts(tls, oauth, graph)


@pytest.fixture
def graph(parts: Parts, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphServer]:
    monkeypatch.setenv("SSL_CERT_FILE", str(parts.tls.ca_file))  # as the stack's environment does
    parts.graph.clear()
    parts.oauth.clear()
    yield parts.graph
    parts.graph.clear()


@dataclass
class Box:
    user: str
    tokens: Tokens
    waits: list[float] = field(default_factory=list)

    def account(self, parts: Parts, **changes: object) -> GraphAccount:
        account = GraphAccount(
            endpoint=parts.graph.endpoint,
            mailbox=self.user,
            tokens=self.tokens,
            tls=TlsContexts(),
            sleep=self.waits.append,
        )
        return replace(account, **changes)  # type: ignore[arg-type]

    def mailbox(self, parts: Parts, **changes: object) -> GraphMailbox:
        return GraphMailbox(self.account(parts, **changes))


def new_box(parts: Parts, roles: frozenset[str] = BOTH, *, scope: str | None = None, add: bool = True) -> Box:
    user = f"box-{secrets.token_hex(3)}@contoso.example"
    if add:
        parts.graph.add_mailbox(user)
    client_id, secret = parts.oauth.add_client(user, {parts.graph.scope, MICROSOFT_SCOPE}, roles)
    return Box(user, Tokens(parts, client_id, secret, scope or parts.graph.scope))
