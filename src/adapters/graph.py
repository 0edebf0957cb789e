"""A Microsoft 365 mailbox read through Microsoft Graph (issue 22): ``service.ports.Mailbox``.

The requests (each as Microsoft Learn documents it; the local stack's ``devstack/graph.py`` serves
the same contract):

* the inbox is listed with ``GET /users/{mailbox}/mailFolders/inbox/messages`` asking only for what
  screening needs (``$select=id,subject``) in pages of ``$top`` (at most 1000), following
  ``@odata.nextLink`` as given, up to :attr:`GraphAccount.max_pages` pages
  (https://learn.microsoft.com/en-us/graph/api/user-list-messages). Every request carries
  ``Prefer: IdType="ImmutableId"``: an id survives moves, so the mailbox memory and the log key on it
  (https://learn.microsoft.com/en-us/graph/outlook-immutable-id). The listing gives the decoded
  subject (a foreign message is screened out without a request of its own) and no size (the size
  cap applies to the bytes downloaded: ``service.message``);
* a message's headers (for the screening of a recognised message) are the start of its MIME,
  ``GET /users/{mailbox}/messages/{id}/$value`` read to the end of the header block, at most
  ``MAX_SCREENED_HEADER_BYTES``; the connection is then dropped, the body never read
  (https://learn.microsoft.com/graph/outlook-get-mime-message);
* the message is downloaded with the same ``$value``, streamed into the spool;
* deleting is ``DELETE /users/{mailbox}/messages/{id}``, which moves it to Deleted Items
  (https://learn.microsoft.com/en-us/graph/api/message-delete), not ``permanentDelete``: the raw
  message is in the archive before it is deleted, the mailbox's owner can still see what the channel
  took, the tenant's retention empties Deleted Items, and ``permanentDelete`` is not offered in the
  US Government and China clouds (https://learn.microsoft.com/en-us/graph/api/message-permanentdelete).
  Unlike POP3's ``DELE``, a Graph deletion takes effect at once, not at the end of the session.

Whose failure (DESIGN §6, https://learn.microsoft.com/en-us/graph/errors): 401 (a token Graph does
not take) after one renewal of a cached token, and 403 (the application permission ``Mail.ReadWrite``
not consented, the mailbox outside the app's RBAC scope) are a ``ChannelFailure`` that says what to
grant; 404 for a message means another client deleted or moved it: the message is gone (a deletion
of a message already gone succeeded); 429, 503 and 504 wait for ``Retry-After`` within
:attr:`GraphAccount.max_wait_seconds` for the session, then are transient
(https://learn.microsoft.com/en-us/graph/throttling); a network error is transient.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from adapters.network import TlsContexts, unknown_host
from adapters.oauth import AccessToken, TokenSource
from domain.bounds import MAX_SCREENED_HEADER_BYTES
from domain.errors import ChannelFailure, ConnectionLost, TransientError
from service.ports import MessageRef

IMMUTABLE_IDS = 'IdType="ImmutableId"'
PAGE_SIZE = 1000  # the most $top takes: a mailbox of up to 1000 messages is one request
MAX_PAGE_BYTES = 32 * 1024 * 1024  # a page of 1000 lean entries is well under 1 MiB
CHUNK = 64 * 1024
RETRIED_STATUSES = frozenset({429, 503, 504})
TOKEN_SETTINGS = "oauth_tenant, oauth_client_id, oauth_secret (the app's token for Microsoft Graph)"  # noqa: S105  # names
ACCESS_SETTINGS = "graph_mailbox, oauth_client_id (the app's Graph permissions and RBAC scope)"


class MessageGone(TransientError):
    """Graph answered 404 for a message: another client deleted or moved it out of reach."""


class GraphRefused(ChannelFailure):
    """Graph refused a request with another 4xx: ``status`` and Graph's error ``code`` (a sender
    tells the message's own refusals from the channel's by them)."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message, setting="graph_endpoint")
        self.status = status
        self.code = code


@dataclass(frozen=True)
class GraphAccount:
    endpoint: str  # the service root, e.g. https://graph.microsoft.com/v1.0
    mailbox: str
    tokens: TokenSource
    timeout: float = 30.0
    max_pages: int = 10
    page_size: int = PAGE_SIZE
    max_wait_seconds: float = 10.0  # Retry-After waited for in one session, in all
    tls: TlsContexts = field(default_factory=TlsContexts, compare=False, repr=False)
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False, repr=False)


class GraphMailbox:
    """Implements ``service.ports.Mailbox`` for one Graph mailbox."""

    def __init__(self, account: GraphAccount) -> None:
        self._account = account

    @contextmanager
    def session(self) -> Iterator[GraphSession]:
        session = GraphSession(GraphClient(self._account))
        try:
            yield session
        finally:
            session.close()

    def inbox_count(self) -> int:
        """The inbox's ``totalItemCount`` (``lettershop channel check``;
        https://learn.microsoft.com/en-us/graph/api/mailfolder-get)."""
        client = GraphClient(self._account)
        try:
            answer = client.json("GET", f"{client.user_path}/mailFolders/inbox")
        finally:
            client.close()
        count = answer.get("totalItemCount")
        return count if isinstance(count, int) else 0


class GraphSession:
    """One poll's look at the inbox; implements ``service.ports.MailboxSession``."""

    def __init__(self, client: GraphClient) -> None:
        self._client = client
        self._ids: list[str] = []

    def messages(self) -> list[MessageRef]:
        """The inbox, oldest first as a POP3 listing is (new mail at its end: the mailbox memory's
        ``tail`` and ``resume`` rely on that); listed newest first, so that past the page budget it
        is the oldest messages that are not seen, never the new ones."""
        client = self._client
        query = urllib.parse.urlencode(
            {
                "$select": "id,subject",
                "$top": str(client.account.page_size),
                "$orderby": "receivedDateTime desc",
            },
            safe="$,",
            quote_via=urllib.parse.quote,
        )
        url: str | None = f"{client.user_path}/mailFolders/inbox/messages?{query}"
        listed: list[tuple[str, str]] = []
        pages = 0
        while url is not None and pages < client.account.max_pages:
            page = client.json("GET", url)
            pages += 1
            for entry in page.get("value", []):
                if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                    subject = entry.get("subject")
                    listed.append((entry["id"], subject if isinstance(subject, str) else ""))
            link = page.get("@odata.nextLink")
            url = link if isinstance(link, str) and link else None
        listed.reverse()
        self._ids = [uid for uid, _ in listed]
        return [
            MessageRef(number, 0, uid, subject=subject) for number, (uid, subject) in enumerate(listed, 1)
        ]

    def headers(self, number: int) -> bytes:
        """The header block: the start of the MIME, read up to its blank line; the rest is not read."""
        kept = bytearray()
        with self._client.stream("GET", self._value(number)) as answer, _broken_off("headers"):
            while len(kept) < MAX_SCREENED_HEADER_BYTES:
                line = answer.readline(MAX_SCREENED_HEADER_BYTES - len(kept))
                if not line or line in (b"\r\n", b"\n"):
                    break
                kept += line
        return bytes(kept) + b"\r\n"

    def retrieve(self, number: int, sink: BinaryIO) -> None:
        """The MIME streamed into ``sink``. A download that breaks off is ``ConnectionLost``, as a
        broken ``RETR`` is: no attempt is charged, and a message whose download keeps breaking is
        skipped after ``max_attempts`` (``service.retrieval``)."""
        with self._client.stream("GET", self._value(number)) as answer, _broken_off("download"):
            while chunk := answer.read(CHUNK):
                sink.write(chunk)
            if answer.length:  # http.client's read(n) ends quietly at a premature end of the body
                raise http.client.IncompleteRead(b"", answer.length)

    def delete(self, number: int) -> None:
        """Deleted at once (to Deleted Items); a message already gone counts as deleted."""
        with suppress(MessageGone):
            self._client.json("DELETE", self._message(number), empty=True)

    def close(self) -> None:
        self._client.close()

    def _message(self, number: int) -> str:
        return f"{self._client.user_path}/messages/{urllib.parse.quote(self._ids[number - 1], safe='')}"

    def _value(self, number: int) -> str:
        return f"{self._message(number)}/$value"


@contextmanager
def _broken_off(what: str) -> Iterator[None]:
    try:
        yield
    except (OSError, http.client.HTTPException) as error:
        raise ConnectionLost(f"Microsoft Graph: the {what} of the message broke off: {error!r}") from error


class GraphClient:
    """Requests to the Graph service root of one account over one HTTPS connection (reopened when
    it was dropped): bearer token, immutable ids, errors classified (module docstring)."""

    def __init__(self, account: GraphAccount) -> None:
        self.account = account
        endpoint = urllib.parse.urlsplit(account.endpoint)
        self._host = endpoint.hostname or ""
        self._port = endpoint.port or 443
        self._origin = f"{endpoint.scheme}://{endpoint.netloc}".lower()
        self._root = endpoint.path.rstrip("/")
        self._connection: http.client.HTTPSConnection | None = None
        self._waited = 0.0
        self.sending = False  # a sender's client: a 403 asks for Mail.Send
        self.user_path = f"{self._root}/users/{urllib.parse.quote(account.mailbox, safe='@')}"

    def json(
        self,
        method: str,
        target: str,
        *,
        empty: bool = False,
        body: bytes | None = None,
        content_type: str = "",
    ) -> dict[str, Any]:
        """One request whose answer is JSON (or, ``empty``, nothing)."""
        with self.stream(method, target, body=body, content_type=content_type) as answer:
            try:
                if empty:
                    answer.read()
                    return {}
                body = answer.read(MAX_PAGE_BYTES + 1)
            except (OSError, http.client.HTTPException) as error:
                raise TransientError(f"Microsoft Graph's answer to {method} broke off: {error!r}") from error
            if answer.length:  # cut short (read(n) does not say so itself)
                raise TransientError(f"Microsoft Graph's answer to {method} broke off")
        if len(body) > MAX_PAGE_BYTES:
            raise TransientError(f"Microsoft Graph answered more than {MAX_PAGE_BYTES} bytes for {method}")
        try:
            parsed = json.loads(body)
        except ValueError as error:
            raise TransientError(f"Microsoft Graph answered {method} with no JSON: {error}") from None
        return parsed if isinstance(parsed, dict) else {}

    @contextmanager
    def stream(
        self, method: str, target: str, *, body: bytes | None = None, content_type: str = ""
    ) -> Iterator[http.client.HTTPResponse]:
        """A successful answer, to be read inside the block; a block left before the answer's end
        drops the connection (the next request opens another)."""
        answer = self._answer(method, self._path(target), body, content_type)
        try:
            yield answer
        except BaseException:
            self.close()
            raise
        if not answer.isclosed():
            self.close()  # not read to its end: the connection cannot carry another request

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _path(self, target: str) -> str:
        """A path of the service root, or a ``@odata.nextLink``: only of the same origin (the token is
        never sent anywhere else)."""
        if target.startswith("/"):
            return target
        parts = urllib.parse.urlsplit(target)
        if f"{parts.scheme}://{parts.netloc}".lower() != self._origin:
            raise ChannelFailure(
                f"Microsoft Graph gave a link to another host ({parts.netloc}); it is not followed",
                setting="graph_endpoint",
            )
        return urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))

    def _answer(
        self, method: str, path: str, body: bytes | None, content_type: str
    ) -> http.client.HTTPResponse:
        token = self.account.tokens.token()
        renewed = False
        while True:
            answer = self._send(method, path, token, body, content_type)
            if answer.status < 300:
                return answer
            code, error = _error_of(answer)
            if not answer.isclosed():
                self.close()
            if answer.status == 401 and token.cached and not renewed:
                self.account.tokens.forget(token)
                token, renewed = self.account.tokens.token(), True
                continue
            if answer.status in RETRIED_STATUSES and self._wait(answer):
                continue
            raise self._failure(answer.status, code, error, method)

    def _send(
        self, method: str, path: str, token: AccessToken, body: bytes | None, content_type: str
    ) -> http.client.HTTPResponse:
        headers = {
            "Authorization": f"Bearer {token.value}",
            "Prefer": IMMUTABLE_IDS,
            "Accept": "application/json",
        }
        if content_type:
            headers["Content-Type"] = content_type
        if body is not None or method in ("POST", "PUT"):
            headers["Content-Length"] = str(len(body or b""))
        for attempt in (1, 2):
            connection = self._connect()
            try:
                connection.request(method, path, body=body, headers=headers)
                return connection.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                self.close()  # a kept connection the server had closed: once more on a new one
                if attempt == 2:
                    raise TransientError(f"Microsoft Graph dropped the connection: {error}") from error
            except ssl.SSLError as error:
                self.close()
                raise ChannelFailure(
                    f"Microsoft Graph at {self._host}: TLS failed: {error}", setting="graph_endpoint"
                ) from error
            except (OSError, http.client.HTTPException) as error:
                self.close()
                if isinstance(error, OSError) and unknown_host(error):
                    raise ChannelFailure(
                        f"Microsoft Graph host {self._host} is not a known host name: {error}",
                        setting="graph_endpoint",
                    ) from error
                raise TransientError(f"Microsoft Graph at {self._host} not reachable: {error}") from error
        raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self) -> http.client.HTTPSConnection:
        if self._connection is None:
            self._connection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.account.timeout, context=self.account.tls.context()
            )
        return self._connection

    def _wait(self, answer: http.client.HTTPResponse) -> bool:
        """Wait as ``Retry-After`` asks when it fits the session's budget; else False."""
        value = answer.headers.get("Retry-After", "")
        seconds = float(value) if value.strip().isdigit() else 1.0
        if self._waited + seconds > self.account.max_wait_seconds:
            return False
        self._waited += seconds
        self.account.sleep(seconds)
        return True

    def _failure(self, status: int, code: str, error: str, method: str) -> Exception:
        mailbox = self.account.mailbox
        if status == 401:
            return ChannelFailure(
                f"Microsoft Graph refused the app's token ({error}): check the tenant, client id and "
                "secret, and that the token is asked for Graph",
                setting=TOKEN_SETTINGS,
            )
        if status == 403:
            role = "Mail.Send (a reply over 4 MB: also Mail.ReadWrite)" if self.sending else "Mail.ReadWrite"
            return ChannelFailure(
                f"Microsoft Graph denied the app access to mailbox {mailbox} ({error}): grant the "
                f"application permission {role} with admin consent, and include the mailbox in the "
                "app's Exchange RBAC management scope",
                setting=ACCESS_SETTINGS,
            )
        if status == 404 and code in ("ErrorInvalidUser", "ResourceNotFound", "MailboxNotEnabledForRESTAPI"):
            return ChannelFailure(
                f"Microsoft Graph does not know mailbox {mailbox} ({error})", setting="graph_mailbox"
            )
        if status == 404:
            return MessageGone(f"the message is no longer in mailbox {mailbox} ({error})")
        if status in RETRIED_STATUSES or status >= 500:
            return TransientError(f"Microsoft Graph answered {status} ({error}); the next poll tries again")
        return GraphRefused(
            f"Microsoft Graph answered {method} with {status} ({error})", status=status, code=code
        )


def _error_of(answer: http.client.HTTPResponse) -> tuple[str, str]:
    """Graph's error ``code`` and ``code: message``, read from the start of the answer."""
    body = answer.read(64 * 1024)
    try:
        error = json.loads(body).get("error", {})
        code = str(error.get("code", "?"))
        return code, f"{code}: {error.get('message', '')}".strip()
    except (ValueError, AttributeError):
        return "?", f"HTTP {answer.status}"
