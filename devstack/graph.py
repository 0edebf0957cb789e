"""A Microsoft Graph-shaped mail API on 127.0.0.1 (HTTPS), for the Graph transport (issue 22).

There is no Microsoft server here, so this server answers exactly the requests the Graph channel
makes, as Microsoft Learn documents them, and nothing else (any other request: 404, or 400 for a
query option it does not model). Each behaviour cites the page it follows, next to its code:

* ``GET /v1.0/users/{mailbox}/mailFolders/{inbox}/messages`` with ``$select``, ``$top``,
  ``$orderby=receivedDateTime``; paging by ``@odata.nextLink``; ids as the
  ``Prefer: IdType="ImmutableId"`` header asks (per request);
* ``GET /v1.0/users/{mailbox}/mailFolders/{inbox}``: the folder's ``totalItemCount``;
* ``GET /v1.0/users/{mailbox}/messages/{id}/$value``: the MIME, streamed;
* ``DELETE /v1.0/users/{mailbox}/messages/{id}`` (to Deleted Items) and
  ``POST .../messages/{id}/permanentDelete``;
* ``POST /v1.0/users/{mailbox}/sendMail`` with base64 MIME (``text/plain``), 4 MB at most (413);
* ``POST /v1.0/users/{mailbox}/messages`` (a draft from base64 MIME), ``POST .../attachments/
  createUploadSession`` and ``PUT`` of byte ranges to its pre-authenticated ``uploadUrl``, then
  ``POST .../messages/{id}/send``;
* every Graph request carries a bearer token of the local authorization server
  (``devstack.oauth``), checked by introspection: issued for this server's audience (the scope
  ``<origin>/.default``), with the application permission the request needs (``Mail.ReadWrite`` to
  read, delete and draft, ``Mail.Send`` to send) and for the one mailbox the app may use (Exchange
  RBAC for Applications);
* test controls: :meth:`GraphServer.fail_next` (429 with ``Retry-After``, 503, 504),
  :attr:`GraphServer.requests` (every request and its status), :attr:`GraphServer.sent`.

Known differences, on purpose: Exchange re-renders the MIME it stores and sends (``$value`` of a
delivered message is not byte for byte what was delivered; the local server returns the delivered
bytes); error ``code`` strings other than those quoted from the pages are the local server's own.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import policy
from email.parser import BytesParser
from typing import Any, Literal

from flask import Flask, Response, request

from devstack.server import LocalServer
from devstack.tls import HOST, TlsFiles
from devstack.wsgi import ThreadedWsgi

READ_ROLE = "Mail.ReadWrite"
SEND_ROLE = "Mail.Send"
# https://learn.microsoft.com/en-us/graph/api/user-post-messages ("payloads are currently limited
# to 4 MB ... HTTP 413 Request Entity Too Large"); the same limit answers a larger sendMail body
# (https://learn.microsoft.com/en-us/graph/errors: 413, "the request size exceeds the maximum limit").
REQUEST_LIMIT = 4 * 1024 * 1024
# https://learn.microsoft.com/en-us/graph/api/attachment-createuploadsession: "Use this approach to
# attach a file if the file size is between 3 MB and 150 MB", "upload ranges of bytes (up to 4 MB
# each time)"; "By default, this message size limit is 35 MB" (the tenant may change it).
UPLOAD_MIN = 3 * 1024 * 1024
UPLOAD_MAX = 150 * 1024 * 1024
UPLOAD_RANGE_MAX = 4 * 1024 * 1024
MESSAGE_SIZE_LIMIT = 35 * 1024 * 1024
# https://learn.microsoft.com/en-us/graph/api/user-list-messages: "The default page size is 10
# messages. Use $top to customize the page size, within the range of 1 and 1000."
DEFAULT_TOP = 10
MAX_TOP = 1000
CHUNK = 64 * 1024

# The message properties the local server models (https://learn.microsoft.com/en-us/graph/api/
# resources/message); $select of any other is refused with 400, as Graph refuses an unknown one.
PROPERTIES = (
    "id",
    "subject",
    "from",
    "sender",
    "toRecipients",
    "internetMessageId",
    "receivedDateTime",
    "hasAttachments",
    "parentFolderId",
)
# Well-known folder names (https://learn.microsoft.com/en-us/graph/api/resources/mailfolder).
FOLDERS = {"inbox": "Inbox", "drafts": "Drafts", "sentitems": "Sent Items", "deleteditems": "Deleted Items"}
Folder = Literal["inbox", "drafts", "sentitems", "deleteditems"]


@dataclass(frozen=True)
class Attachment:
    """A file attached to a draft through an upload session."""

    name: str
    content_type: str
    content: bytes


@dataclass
class StoredMessage:
    """A message in a mailbox: its immutable id (kept for its life in the mailbox) and its REST id
    (changed by a move: https://learn.microsoft.com/en-us/graph/outlook-immutable-id)."""

    immutable_id: str
    rest_id: str
    folder: Folder
    raw: bytes
    received: datetime
    attachments: list[Attachment] = field(default_factory=list)

    def moved_to(self, folder: Folder) -> None:
        self.folder = folder
        self.rest_id = _new_id("AAMkAG")


@dataclass(frozen=True)
class SentMail:
    """A message the server sent: the MIME as given, and the files uploaded to its draft."""

    mailbox: str
    mime: bytes
    attachments: tuple[Attachment, ...]
    via: Literal["sendMail", "draft"]

    @property
    def recipients(self) -> list[str]:
        headers = BytesParser(policy=policy.default).parsebytes(self.mime, headersonly=True)
        fields = [str(value) for name in ("to", "cc", "bcc") for value in headers.get_all(name) or []]
        return [address for _, address in email.utils.getaddresses(fields)]


@dataclass(frozen=True)
class GraphRequest:
    """One request and the status it was answered with."""

    method: str
    path: str
    query: dict[str, str]
    status: int


@dataclass
class _UploadSession:
    mailbox: str
    message_id: str
    name: str
    content_type: str
    size: int
    token: str
    expires: datetime
    received: bytearray = field(default_factory=bytearray)


@dataclass
class _Fault:
    status: int
    retry_after: int | None


class GraphError(Exception):
    """An answer other than success: status, Graph's error ``code`` and ``message``
    (https://learn.microsoft.com/en-us/graph/errors: "a JSON error response object")."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


class GraphServer(LocalServer):
    """The Graph-shaped server; ``introspect(token)`` asks the authorization server (RFC 7662)."""

    host = HOST

    def __init__(self, tls: TlsFiles, introspect: Callable[[str], dict[str, Any]]) -> None:
        self.tls = tls
        self._introspect = introspect
        self.port = 0
        self.message_size_limit = MESSAGE_SIZE_LIMIT
        self._mailboxes: dict[str, list[StoredMessage]] = {}
        self._sessions: dict[str, _UploadSession] = {}
        self._faults: list[_Fault] = []
        self._requests: list[GraphRequest] = []
        self._sent: list[SentMail] = []
        self._lock = threading.Lock()
        self._http = ThreadedWsgi("graph-server")

    # -------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self.port = self._http.start(self._app(), self.tls)

    def stop(self) -> None:
        self._http.stop()

    @property
    def origin(self) -> str:
        return f"https://{HOST}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The service root, the channel's ``graph_endpoint``."""
        return f"{self.origin}/v1.0"

    @property
    def scope(self) -> str:
        """The scope an app asks a token for this server with (its audience): ``<origin>/.default``,
        as ``https://graph.microsoft.com/.default`` is Graph's."""
        return f"{self.origin}/.default"

    # -------------------------------------------------------------- mailboxes

    def add_mailbox(self, mailbox: str) -> None:
        with self._lock:
            self._mailboxes.setdefault(mailbox.lower(), [])

    def deliver(self, mailbox: str, raw: bytes, *, received: datetime | None = None) -> str:
        """Put ``raw`` into the mailbox's Inbox; its immutable id."""
        with self._lock:
            box = self._box(mailbox)
            stored = StoredMessage(
                _new_id("AAkALg"), _new_id("AAMkAG"), "inbox", raw, received or datetime.now(UTC)
            )
            box.append(stored)
            return stored.immutable_id

    def messages(self, mailbox: str, folder: Folder = "inbox") -> list[StoredMessage]:
        with self._lock:
            return [message for message in self._box(mailbox) if message.folder == folder]

    def move(self, mailbox: str, message_id: str, folder: Folder) -> None:
        """Another client moves a message (its REST id changes, its immutable id does not)."""
        with self._lock:
            self._find(mailbox, message_id).moved_to(folder)

    def remove(self, mailbox: str, message_id: str) -> None:
        """Another client deletes a message for good (``permanentDelete``, or empties Deleted Items)."""
        with self._lock:
            self._box(mailbox).remove(self._find(mailbox, message_id))

    def fail_next(self, count: int, status: int = 429, *, retry_after: int | None = 1) -> None:
        """The next ``count`` Graph requests (after their token is checked) answer ``status``:
        429 with ``Retry-After`` (https://learn.microsoft.com/en-us/graph/throttling: "Returns HTTP
        status code 429 Too Many Requests", "a suggested wait time in the response header"), or
        503 (Retry-After optional) / 504 (https://learn.microsoft.com/en-us/graph/errors)."""
        if status not in (429, 503, 504) or count < 1:
            raise ValueError("fail_next takes a count >= 1 and status 429, 503 or 504")
        with self._lock:
            self._faults += [_Fault(status, retry_after)] * count

    @property
    def requests(self) -> list[GraphRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def sent(self) -> list[SentMail]:
        with self._lock:
            return list(self._sent)

    def clear(self) -> None:
        """Forget mailboxes, sessions, faults, requests and sent mail."""
        with self._lock:
            self._mailboxes.clear()
            self._sessions.clear()
            self._faults.clear()
            self._requests.clear()
            self._sent.clear()
        self.message_size_limit = MESSAGE_SIZE_LIMIT

    def _box(self, mailbox: str) -> list[StoredMessage]:
        box = self._mailboxes.get(mailbox.lower())
        if box is None:
            # an unknown user: 404 (https://learn.microsoft.com/en-us/graph/errors)
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{mailbox}' is invalid.")
        return box

    def _find(self, mailbox: str, message_id: str) -> StoredMessage:
        """By immutable or REST id: Graph takes either in a request
        (https://learn.microsoft.com/en-us/graph/outlook-immutable-id)."""
        for message in self._box(mailbox):
            if message_id in (message.immutable_id, message.rest_id):
                return message
        # https://learn.microsoft.com/en-us/graph/errors: 404 "The requested resource doesn't exist."
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    # -------------------------------------------------------------------- app

    def _app(self) -> Flask:
        app = Flask("lettershop-graph")
        app.config["MAX_CONTENT_LENGTH"] = None
        routes: list[tuple[str, str, Callable[..., Response]]] = [
            ("GET", "/v1.0/users/<mailbox>/mailFolders/<folder>/messages", self._list),
            ("GET", "/v1.0/users/<mailbox>/mailFolders/<folder>", self._folder),
            ("GET", "/v1.0/users/<mailbox>/messages/<message_id>/$value", self._value),
            ("DELETE", "/v1.0/users/<mailbox>/messages/<message_id>", self._delete),
            ("POST", "/v1.0/users/<mailbox>/messages/<message_id>/permanentDelete", self._permanent_delete),
            ("POST", "/v1.0/users/<mailbox>/sendMail", self._send_mail),
            ("POST", "/v1.0/users/<mailbox>/messages", self._create_draft),
            (
                "POST",
                "/v1.0/users/<mailbox>/messages/<message_id>/attachments/createUploadSession",
                self._create_upload_session,
            ),
            ("POST", "/v1.0/users/<mailbox>/messages/<message_id>/send", self._send_draft),
        ]
        for method, rule, view in routes:
            app.add_url_rule(rule, view.__name__, self._graph_view(view), methods=[method])
        app.add_url_rule("/upload/<session_id>", "upload", self._answered(self._upload), methods=["PUT"])

        @app.errorhandler(404)
        @app.errorhandler(405)
        def not_modelled(error: Exception) -> Response:
            status = int(getattr(error, "code", 404))
            return self._record(
                _error(GraphError(status, "NotModelled", "not a request the local server models"))
            )

        return app

    def _graph_view(self, view: Callable[..., Response]) -> Callable[..., Response]:
        """A Graph request: token, injected fault, then the view (which checks role and mailbox)."""

        def handle(**kwargs: str) -> Response:
            claims = self._token()
            with self._lock:
                fault = self._faults.pop(0) if self._faults else None
            if fault is not None:
                headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
                code = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "GatewayTimeout"}[
                    fault.status
                ]
                raise GraphError(fault.status, code, "injected by the test", headers)
            return view(claims, **kwargs)

        handle.__name__ = view.__name__
        return self._answered(handle)

    def _answered(self, view: Callable[..., Response]) -> Callable[..., Response]:
        def answer(**kwargs: str) -> Response:
            try:
                response = view(**kwargs)
            except GraphError as error:
                response = _error(error)
            return self._record(response)

        return answer

    def _record(self, response: Response) -> Response:
        with self._lock:
            self._requests.append(
                GraphRequest(request.method, request.path, dict(request.args), response.status_code)
            )
        return response

    def _token(self) -> dict[str, Any]:
        """https://learn.microsoft.com/en-us/graph/errors: 401 "Required authentication information
        is either missing or not valid for the resource" — no token, one the authorization server
        does not know as active, or one issued for another audience (e.g. the Exchange scope
        ``https://outlook.office365.com/.default`` of a POP3 login)."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        claims = self._introspect(token)
        if not claims.get("active"):
            raise GraphError(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
            )
        if self.scope not in str(claims.get("scope", "")).split():
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            )
        return claims

    @staticmethod
    def _allowed(claims: dict[str, Any], mailbox: str, role: str) -> None:
        """https://learn.microsoft.com/en-us/graph/errors: 403 "Access is denied to the requested
        resource. The user might not have enough permission": the application permission not
        consented (https://learn.microsoft.com/en-us/graph/permissions-reference), or the mailbox
        outside the app's management scope (Exchange RBAC for Applications,
        https://learn.microsoft.com/en-us/exchange/permissions-exo/application-rbac)."""
        if role not in claims.get("roles", []):
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        if str(claims.get("username", "")).lower() != mailbox.lower():
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")

    # ------------------------------------------------------------------ reads

    def _list(self, claims: dict[str, Any], mailbox: str, folder: str) -> Response:
        """https://learn.microsoft.com/en-us/graph/api/mailfolder-list-messages and
        https://learn.microsoft.com/en-us/graph/api/user-list-messages: ``$top`` 1 to 1000 (default 10),
        ``$select`` "the exact properties you need"; "To get the next page of messages, simply apply
        the entire URL returned in @odata.nextLink" — built here with ``$skip``, which the page says
        the API uses to count the items it has gone through."""
        self._allowed(claims, mailbox, READ_ROLE)
        known = {"$select", "$top", "$skip", "$orderby"}
        unknown = set(request.args) - known
        if unknown:
            raise GraphError(
                400, "NotModelled", f"query options not modelled here: {', '.join(sorted(unknown))}"
            )
        select = _selected(request.args.get("$select"))
        top = _number(request.args.get("$top"), DEFAULT_TOP, "$top", 1, MAX_TOP)
        skip = _number(request.args.get("$skip"), 0, "$skip", 0, None)
        newest_first = _order(request.args.get("$orderby"))
        immutable = _immutable(request.headers.get("Prefer", ""))
        with self._lock:
            box = [m for m in self._box(mailbox) if m.folder == _folder(folder)]
            ordered = sorted(box, key=lambda m: m.received, reverse=newest_first)
            page = ordered[skip : skip + top]
            values = [_render(m, select, immutable=immutable) for m in page]
            more = skip + top < len(ordered)
        body: dict[str, Any] = {"value": values}
        if more:
            query = dict(request.args) | {"$skip": str(skip + top)}
            encoded = urllib.parse.urlencode(query, safe="$,", quote_via=urllib.parse.quote)
            body["@odata.nextLink"] = f"{self.origin}{request.path}?{encoded}"
        return _json(200, body, immutable=immutable)

    def _folder(self, claims: dict[str, Any], mailbox: str, folder: str) -> Response:
        """https://learn.microsoft.com/en-us/graph/api/mailfolder-get: ``totalItemCount``."""
        self._allowed(claims, mailbox, READ_ROLE)
        name = _folder(folder)
        with self._lock:
            count = sum(1 for m in self._box(mailbox) if m.folder == name)
        return _json(200, {"id": name, "displayName": FOLDERS[name], "totalItemCount": count})

    def _value(self, claims: dict[str, Any], mailbox: str, message_id: str) -> Response:
        """https://learn.microsoft.com/graph/outlook-get-mime-message: "append a $value segment to a
        get-message operation" to get the message in MIME format; streamed. (The page shows no
        Content-Type; a client must not depend on it.)"""
        self._allowed(claims, mailbox, READ_ROLE)
        with self._lock:
            raw = self._find(mailbox, message_id).raw

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(raw), CHUNK):
                yield raw[start : start + CHUNK]

        return Response(
            chunks(), status=200, headers={"Content-Length": str(len(raw))}, mimetype="message/rfc822"
        )

    # ---------------------------------------------------------------- deletes

    def _delete(self, claims: dict[str, Any], mailbox: str, message_id: str) -> Response:
        """https://learn.microsoft.com/en-us/graph/api/message-delete (``Mail.ReadWrite``): 204; the
        message moves to Deleted Items (a new REST id); deleted there, it leaves the folders a client
        sees (https://learn.microsoft.com/en-us/graph/api/message-permanentdelete: the dumpster)."""
        self._allowed(claims, mailbox, READ_ROLE)
        with self._lock:
            message = self._find(mailbox, message_id)
            if message.folder == "deleteditems":
                self._box(mailbox).remove(message)
            else:
                message.moved_to("deleteditems")
        return Response(status=204)

    def _permanent_delete(self, claims: dict[str, Any], mailbox: str, message_id: str) -> Response:
        """https://learn.microsoft.com/en-us/graph/api/message-permanentdelete: ``POST``, no body,
        204; the message goes to the Purges folder, out of every client's reach (global service
        only, the page says: not in the US Government and China clouds)."""
        self._allowed(claims, mailbox, READ_ROLE)
        with self._lock:
            message = self._find(mailbox, message_id)
            self._box(mailbox).remove(message)
        return Response(status=204)

    # ------------------------------------------------------------------ sends

    def _mime_body(self) -> bytes:
        """The base64 MIME of ``sendMail`` and of a draft (``Content-Type: text/plain``,
        https://learn.microsoft.com/en-us/graph/outlook-send-mime-message), at most 4 MB
        (413, :data:`REQUEST_LIMIT`); bad base64 is 400 ``ErrorMimeContentInvalidBase64String``
        "Invalid base64 string for MIME content." (https://learn.microsoft.com/en-us/graph/api/user-sendmail)."""
        if request.mimetype != "text/plain":
            raise GraphError(415, "NotModelled", "the local server models the MIME form (text/plain) only")
        length = request.content_length
        if length is None or length > REQUEST_LIMIT:
            raise GraphError(413, "RequestEntityTooLarge", "The request size exceeds the maximum limit.")
        body = request.get_data(cache=False)
        if len(body) > REQUEST_LIMIT:
            raise GraphError(413, "RequestEntityTooLarge", "The request size exceeds the maximum limit.")
        try:
            mime = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError):
            raise GraphError(
                400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
            ) from None
        if not mime:
            raise GraphError(
                400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
            )
        return mime

    def _send_mail(self, claims: dict[str, Any], mailbox: str) -> Response:
        """https://learn.microsoft.com/en-us/graph/api/user-sendmail (``Mail.Send``): 202 Accepted,
        no body; "This method saves the message in the Sent Items folder" (the MIME form has no
        ``saveToSentItems``: that is a parameter of the JSON form)."""
        self._allowed(claims, mailbox, SEND_ROLE)
        mime = self._mime_body()
        mail = SentMail(mailbox, mime, (), "sendMail")
        _check_recipients(mail)
        with self._lock:
            box = self._box(mailbox)
            self._sent.append(mail)
            box.append(
                StoredMessage(_new_id("AAkALg"), _new_id("AAMkAG"), "sentitems", mime, datetime.now(UTC))
            )
        return Response(status=202)

    def _create_draft(self, claims: dict[str, Any], mailbox: str) -> Response:
        """https://learn.microsoft.com/en-us/graph/api/user-post-messages (``Mail.ReadWrite``): a
        draft from base64 MIME, saved in Drafts; 201 Created with the message."""
        self._allowed(claims, mailbox, READ_ROLE)
        mime = self._mime_body()
        immutable = _immutable(request.headers.get("Prefer", ""))
        with self._lock:
            draft = StoredMessage(_new_id("AAkALg"), _new_id("AAMkAG"), "drafts", mime, datetime.now(UTC))
            self._box(mailbox).append(draft)
            body = _render(draft, PROPERTIES, immutable=immutable)
        return _json(201, body, immutable=immutable)

    def _create_upload_session(self, claims: dict[str, Any], mailbox: str, message_id: str) -> Response:
        """https://learn.microsoft.com/en-us/graph/api/attachment-createuploadsession and
        https://learn.microsoft.com/graph/outlook-large-attachments: ``{"AttachmentItem":
        {"attachmentType": "file", "name", "size"}}`` -> 201 with ``uploadUrl`` (pre-authenticated),
        ``expirationDateTime`` and ``nextExpectedRanges: ["0-"]``; for a file of 3 MB to 150 MB."""
        self._allowed(claims, mailbox, READ_ROLE)
        item = (request.get_json(silent=True) or {}).get("AttachmentItem")
        if not isinstance(item, dict) or item.get("attachmentType") != "file":
            raise GraphError(
                400, "ErrorInvalidRequest", "AttachmentItem with attachmentType file is required."
            )
        name, size = item.get("name"), item.get("size")
        if not isinstance(name, str) or not name or not isinstance(size, int) or isinstance(size, bool):
            raise GraphError(400, "ErrorInvalidRequest", "AttachmentItem needs a name and a size.")
        if not UPLOAD_MIN <= size <= UPLOAD_MAX:
            raise GraphError(
                400,
                "ErrorAttachmentSizeOutOfRange",
                f"An upload session takes a file of {UPLOAD_MIN} to {UPLOAD_MAX} bytes.",
            )
        with self._lock:
            draft = self._find(mailbox, message_id)
            if draft.folder != "drafts":
                raise GraphError(400, "ErrorInvalidOperation", "Attachments are uploaded to a draft.")
            session_id, token = secrets.token_hex(12), secrets.token_urlsafe(24)
            expires = datetime.now(UTC) + timedelta(minutes=15)
            self._sessions[session_id] = _UploadSession(
                mailbox,
                draft.immutable_id,
                name,
                str(item.get("contentType") or "application/octet-stream"),
                size,
                token,
                expires,
            )
        return _json(
            201,
            {
                "uploadUrl": f"{self.origin}/upload/{session_id}?authtoken={token}",
                "expirationDateTime": _iso(expires),
                "nextExpectedRanges": ["0-"],
            },
        )

    def _upload(self, session_id: str) -> Response:
        """https://learn.microsoft.com/graph/outlook-large-attachments: ``PUT`` the bytes in order,
        with ``Content-Range: bytes {start}-{end}/{total}`` and ``Content-Length``; 200 with
        ``nextExpectedRanges: ["{start}"]``, the last one 201 Created with a ``Location``. "Do not
        specify an Authorization request header": the URL is pre-authenticated — the local server
        refuses one (401), so a client that would send its Graph token to another domain is caught.
        Out of order: 416 (https://learn.microsoft.com/en-us/graph/errors, "The specified byte range
        is invalid or unavailable"); more than 4 MB in one PUT: 413."""
        if "Authorization" in request.headers:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "The upload URL is pre-authenticated: no Authorization header.",
            )
        with self._lock:
            session = self._sessions.get(session_id)
        if session is None or not secrets.compare_digest(request.args.get("authtoken", ""), session.token):
            raise GraphError(404, "ErrorItemNotFound", "No such upload session.")
        if datetime.now(UTC) > session.expires:
            raise GraphError(404, "ErrorItemNotFound", "The upload session has expired.")
        start, end, total = _content_range(request.headers.get("Content-Range", ""))
        body = request.get_data(cache=False)
        if end - start + 1 > UPLOAD_RANGE_MAX:
            raise GraphError(413, "RequestEntityTooLarge", "Upload at most 4 MB in one request.")
        if total != session.size or start != len(session.received) or len(body) != end - start + 1:
            raise GraphError(
                416, "InvalidRange", f"The next expected range starts at {len(session.received)}."
            )
        with self._lock:
            session.received += body
            if len(session.received) < session.size:
                return _json(
                    200,
                    {
                        "expirationDateTime": _iso(session.expires),
                        "nextExpectedRanges": [str(len(session.received))],
                    },
                )
            del self._sessions[session_id]
            draft = self._find(session.mailbox, session.message_id)
            draft.attachments.append(Attachment(session.name, session.content_type, bytes(session.received)))
            attachment_id = _new_id("AAMkAGAtt")
        draft_url = f"{self.endpoint}/users/{session.mailbox}/messages/{session.message_id}"
        location = f"{draft_url}/attachments/{attachment_id}"
        return Response(status=201, headers={"Location": location})

    def _send_draft(self, claims: dict[str, Any], mailbox: str, message_id: str) -> Response:
        """https://learn.microsoft.com/en-us/graph/api/message-send (``Mail.Send``): 202 Accepted; the
        draft is sent and saved in Sent Items. A message larger than the tenant's limit (35 MB by
        default, https://learn.microsoft.com/en-us/graph/api/attachment-createuploadsession) is
        refused: 400 (the local server's code)."""
        self._allowed(claims, mailbox, SEND_ROLE)
        with self._lock:
            draft = self._find(mailbox, message_id)
            if draft.folder != "drafts":
                raise GraphError(400, "ErrorInvalidOperation", "Only a draft can be sent.")
            mail = SentMail(mailbox, draft.raw, tuple(draft.attachments), "draft")
            size = len(draft.raw) + sum(len(a.content) for a in draft.attachments)
            if size > self.message_size_limit:
                raise GraphError(
                    400,
                    "ErrorMessageSizeExceeded",
                    f"The message is larger than {self.message_size_limit} bytes.",
                )
            _check_recipients(mail)
            draft.moved_to("sentitems")
            self._sent.append(mail)
        return Response(status=202)


# ------------------------------------------------------------------- helpers


def _new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(24).replace("-", "A").replace("_", "B") + "AAA="


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _error(error: GraphError) -> Response:
    return _json(
        error.status, {"error": {"code": error.code, "message": error.message}}, headers=error.headers
    )


def _json(
    status: int, body: dict[str, Any], *, immutable: bool = False, headers: dict[str, str] | None = None
) -> Response:
    response = Response(status=status, mimetype="application/json")
    response.set_data(json.dumps(body))
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if immutable:
        response.headers["Preference-Applied"] = 'IdType="ImmutableId"'
    return response


def _immutable(prefer: str) -> bool:
    """https://learn.microsoft.com/en-us/graph/outlook-immutable-id: ``Prefer: IdType="ImmutableId"``
    "only applies to the request it is included with"."""
    return any(part.strip().replace(" ", "") == 'IdType="ImmutableId"' for part in prefer.split(","))


def _folder(name: str) -> Folder:
    folder = name.lower()
    if folder not in FOLDERS:
        raise GraphError(
            404, "ErrorInvalidIdMalformed", "the local server models well-known folder names only"
        )
    return folder  # type: ignore[return-value]


def _selected(value: str | None) -> tuple[str, ...]:
    if value is None:
        return PROPERTIES
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    for name in names:
        if name not in PROPERTIES:
            raise GraphError(
                400,
                "BadRequest",
                f"Could not find a property named '{name}' on type 'microsoft.graph.message'.",
            )
    return ("id", *(name for name in names if name != "id"))


def _number(value: str | None, default: int, name: str, low: int, high: int | None) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) < low or (high is not None and int(value) > high):
        raise GraphError(400, "BadRequest", f"Invalid value for {name}: {value!r}.")
    return int(value)


def _order(value: str | None) -> bool:
    """``$orderby`` (https://learn.microsoft.com/en-us/graph/query-parameters#orderby-parameter) of
    ``receivedDateTime``, the only ordering modelled; without it, newest first."""
    if value is None:
        return True
    field_name, _, direction = value.strip().partition(" ")
    if field_name != "receivedDateTime" or direction.strip().lower() not in ("", "asc", "desc"):
        raise GraphError(400, "NotModelled", "only $orderby=receivedDateTime [asc|desc] is modelled here")
    return direction.strip().lower() == "desc"


def _address(value: Any) -> dict[str, Any] | None:
    addresses = getattr(value, "addresses", ())
    if not addresses:
        return None
    first = addresses[0]
    return {"emailAddress": {"name": first.display_name or first.addr_spec, "address": first.addr_spec}}


def _render(message: StoredMessage, select: tuple[str, ...], *, immutable: bool) -> dict[str, Any]:
    """The message resource (https://learn.microsoft.com/en-us/graph/api/resources/message) with
    the selected properties; ``id`` always."""
    headers = BytesParser(policy=policy.default).parsebytes(message.raw, headersonly=True)

    def header(name: str) -> Any:
        try:
            return headers[name]
        except (ValueError, IndexError, TypeError):  # a header the parser cannot read
            return None

    sender = _address(header("from"))
    recipients = [
        {"emailAddress": {"name": a.display_name or a.addr_spec, "address": a.addr_spec}}
        for value in (header("to"),)
        for a in getattr(value, "addresses", ())
    ]
    every = {
        "id": message.immutable_id if immutable else message.rest_id,
        "subject": str(header("subject") or ""),
        "from": sender,
        "sender": _address(header("sender")) or sender,
        "toRecipients": recipients,
        "internetMessageId": str(header("message-id") or "") or None,
        "receivedDateTime": _iso(message.received),
        "hasAttachments": bool(message.attachments) or headers.get_content_type() == "multipart/mixed",
        "parentFolderId": message.folder,
    }
    return {name: every[name] for name in select}


def _check_recipients(mail: SentMail) -> None:
    """A message without a recipient, or with an address that is not one, is refused: 400
    ``ErrorInvalidRecipients`` (the local server's reading of the 400 of
    https://learn.microsoft.com/en-us/graph/errors)."""
    recipients = mail.recipients
    if not recipients or any("@" not in address or " " in address for address in recipients):
        raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient is not valid.")


def _content_range(value: str) -> tuple[int, int, int]:
    unit, _, spec = value.partition(" ")
    span, _, total = spec.partition("/")
    first, _, last = span.partition("-")
    if (
        unit != "bytes"
        or not (first.isdigit() and last.isdigit() and total.isdigit())
        or int(last) < int(first)
    ):
        raise GraphError(400, "InvalidRange", "Content-Range must be bytes {start}-{end}/{total}.")
    return int(first), int(last), int(total)
