"""Replies through Microsoft Graph (``reply_via: graph``, issue 22): ``service.ports.ReplySender``.

The stored reply's bytes are sent as MIME, as the mailbox ``graph_mailbox``:

* up to 4 MB of request (the base64 MIME): ``POST /users/{mailbox}/sendMail`` with
  ``Content-Type: text/plain`` (https://learn.microsoft.com/en-us/graph/api/user-sendmail;
  https://learn.microsoft.com/en-us/graph/outlook-send-mime-message), 202 Accepted;
* larger (exports often are): its attachments of 3 MB or more are taken out, the rest becomes a
  draft (``POST /users/{mailbox}/messages``, base64 MIME,
  https://learn.microsoft.com/en-us/graph/api/user-post-messages), each of them is uploaded in an
  upload session (``createUploadSession``, then ``PUT`` of ranges of at most 4 MB to its
  pre-authenticated ``uploadUrl`` without an ``Authorization`` header,
  https://learn.microsoft.com/graph/outlook-large-attachments), and the draft is sent
  (``POST .../messages/{id}/send``, https://learn.microsoft.com/en-us/graph/api/message-send).

The recipients are the MIME's (Graph has no envelope): the stored reply's ``To`` is the recorded
recipient, and a reply whose ``To``/``Cc``/``Bcc`` name anyone else is refused here, never sent.
Exchange re-renders the MIME it sends (the headers we set, the body and the attachments stay).
Graph's MIME send always keeps a copy in Sent Items (``saveToSentItems`` is a parameter of the
JSON form only): ``save_to_sent_items: false`` is not built yet and stops the poll naming it.

Whose failure: 400 ``ErrorInvalidRecipients`` refuses this message (``UndeliverableReply``); 413, or
a message over the tenant's size limit (``ErrorMessageSizeExceeded``), or an attachment over 150 MB:
``ReplyTooLarge``; 401/403 (``Mail.Send`` not consented) are the channel's; 429/503/504 and network
trouble are transient (``adapters.graph``).
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import urllib.parse
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

from adapters.graph import GraphAccount, GraphClient, GraphRefused
from domain.errors import ChannelFailure, ReplyTooLarge, TransientError, UndeliverableReply

REQUEST_LIMIT = 4 * 1024 * 1024  # the base64 MIME of one sendMail or draft request
UPLOAD_MIN = 3 * 1024 * 1024  # an upload session takes a file of 3 MB ...
UPLOAD_MAX = 150 * 1024 * 1024  # ... to 150 MB
UPLOAD_RANGE = 4 * 1024 * 1024  # bytes per PUT
SIZE_CODES = frozenset({"ErrorMessageSizeExceeded", "RequestEntityTooLarge"})
RECIPIENT_CODES = frozenset({"ErrorInvalidRecipients"})


class GraphReplySender:
    """Implements ``service.ports.ReplySender`` through Graph, as ``account.mailbox``."""

    def __init__(self, account: GraphAccount, *, save_to_sent_items: bool = True) -> None:
        self._account = account
        self._save = save_to_sent_items
        self._client: GraphClient | None = None

    def prepare(self) -> None:
        """Nothing to get ready: the token is the warm state's and a request opens its connection
        (``ReplySender.prepare`` on main since issue 21; never raises)."""

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def send(self, data: bytes, *, sender: str, recipient: str) -> None:
        if not self._save:
            raise ChannelFailure(
                "save_to_sent_items false: Graph's MIME send always keeps a copy in Sent Items, and "
                "removing it afterwards is not built yet (issue 22); set it to true",
                setting="save_to_sent_items",
            )
        message = BytesParser(policy=policy.default).parsebytes(data)
        _only_to(message, recipient)
        client = self._connected()
        try:
            if _base64_size(len(data)) <= REQUEST_LIMIT:
                client.json(
                    "POST",
                    f"{client.user_path}/sendMail",
                    empty=True,
                    body=_base64(data),
                    content_type="text/plain",
                )
            else:
                self._send_large(client, message, len(data))
        except GraphRefused as error:
            raise _own_refusal(error, recipient, len(data)) from error

    def probe(self) -> str:
        """Whether the app may send as the mailbox, sending nothing (``channel check``): an empty
        ``sendMail`` request. Graph checks the token and its ``Mail.Send`` permission for the
        mailbox (401/403: raised as for a reply), then refuses the empty MIME with 400
        ``ErrorMimeContentInvalidBase64String`` (https://learn.microsoft.com/en-us/graph/api/user-sendmail):
        that refusal is the answer wanted; a 202 would mean a message was accepted, which an empty
        body cannot be."""
        client = self._connected()
        try:
            client.json(
                "POST", f"{client.user_path}/sendMail", empty=True, body=b"", content_type="text/plain"
            )
        except GraphRefused as error:
            if error.status == 400:
                mailbox = self._account.mailbox
                return f"the app may send as {mailbox} (an empty sendMail was refused as empty: {error.code})"
            raise
        finally:
            self.close()
        raise ChannelFailure("Microsoft Graph accepted an empty sendMail request", setting="graph_endpoint")

    def _connected(self) -> GraphClient:
        if self._client is None:
            self._client = GraphClient(self._account)
            self._client.sending = True
        return self._client

    def _send_large(self, client: GraphClient, message: EmailMessage, size: int) -> None:
        """A draft of the reply without its large attachments, those uploaded, then sent."""
        large = _take_large_attachments(message)
        draft = message.as_bytes(policy=policy.SMTP)
        if not large or _base64_size(len(draft)) > REQUEST_LIMIT:
            raise ReplyTooLarge(
                f"the reply ({size} bytes) is more than Graph takes in one request (4 MB of base64 MIME) "
                "and its attachments of less than 3 MB do not fit one either",
                size=size,
                limit=None,
            )
        for _, _, content in large:
            if len(content) > UPLOAD_MAX:
                raise ReplyTooLarge(
                    f"an attachment of {len(content)} bytes is more than an upload session takes",
                    size=size,
                    limit=UPLOAD_MAX,
                )
        created = client.json(
            "POST", f"{client.user_path}/messages", body=_base64(draft), content_type="text/plain"
        )
        draft_id = created.get("id")
        if not isinstance(draft_id, str) or not draft_id:
            raise TransientError("Microsoft Graph created the draft without an id")
        draft_path = f"{client.user_path}/messages/{urllib.parse.quote(draft_id, safe='')}"
        for name, content_type, content in large:
            item = {
                "AttachmentItem": {
                    "attachmentType": "file",
                    "name": name,
                    "size": len(content),
                    "contentType": content_type,
                }
            }
            session = client.json(
                "POST",
                f"{draft_path}/attachments/createUploadSession",
                body=json.dumps(item).encode(),
                content_type="application/json",
            )
            upload_url = session.get("uploadUrl")
            if not isinstance(upload_url, str) or not upload_url.startswith("https://"):
                raise TransientError("Microsoft Graph created an upload session without an https uploadUrl")
            self._upload(upload_url, content)
        client.json("POST", f"{draft_path}/send", empty=True)

    def _upload(self, url: str, content: bytes) -> None:
        """``PUT`` the file in order, 4 MB at a time, to the pre-authenticated URL: no token is sent
        (the URL may be of another domain, ``outlook.office.com``)."""
        parts = urllib.parse.urlsplit(url)
        path = urllib.parse.urlunsplit(("", "", parts.path, parts.query, ""))
        connection = http.client.HTTPSConnection(
            parts.hostname or "",
            parts.port or 443,
            timeout=self._account.timeout,
            context=self._account.tls.context(),
        )
        try:
            for start in range(0, len(content), UPLOAD_RANGE):
                chunk = content[start : start + UPLOAD_RANGE]
                end = start + len(chunk) - 1
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(len(chunk)),
                    "Content-Range": f"bytes {start}-{end}/{len(content)}",
                }
                try:
                    connection.request("PUT", path, body=chunk, headers=headers)
                    answer = connection.getresponse()
                    answer.read()
                except (OSError, http.client.HTTPException) as error:
                    raise TransientError(
                        f"the attachment upload to {parts.hostname} broke off: {error}"
                    ) from error
                if answer.status not in (200, 201):
                    raise TransientError(
                        f"the attachment upload to {parts.hostname} answered {answer.status}"
                    )
        finally:
            connection.close()


def _base64(data: bytes) -> bytes:
    return base64.b64encode(data)


def _base64_size(size: int) -> int:
    return 4 * ((size + 2) // 3)


def _only_to(message: Message, recipient: str) -> None:
    """Graph sends to the MIME's recipients: exactly the recorded one, or nothing is sent."""
    fields = [str(value) for name in ("to", "cc", "bcc") for value in message.get_all(name) or []]
    found = [address.lower() for _, address in email.utils.getaddresses(fields)]
    if found != [recipient.lower()]:
        raise UndeliverableReply(
            f"the stored reply is addressed to {', '.join(found) or 'nobody'}, not to the recorded recipient "
            f"{recipient}: not sent through Graph"
        )


def _take_large_attachments(message: EmailMessage) -> list[tuple[str, str, bytes]]:
    """Remove the attachments of 3 MB or more from ``message``: ``(name, content type, bytes)``."""
    taken: list[tuple[str, str, bytes]] = []
    if not message.is_multipart():
        return taken
    kept: list[Message[str, str] | str] = []
    for part in message.iter_parts():
        content = part.get_payload(decode=True) if part.get_content_disposition() == "attachment" else None
        if isinstance(content, bytes) and len(content) >= UPLOAD_MIN:
            taken.append((part.get_filename() or "attachment", part.get_content_type(), content))
        else:
            kept.append(part)
    if taken:
        message.set_payload(kept)
    return taken


def _own_refusal(error: GraphRefused, recipient: str, size: int) -> Exception:
    """A refusal of this message (recipient, size) settles it alone; any other is the channel's."""
    if error.code in RECIPIENT_CODES:
        return UndeliverableReply(f"Microsoft Graph refused the recipient {recipient}: {error}")
    if error.status == 413 or error.code in SIZE_CODES:
        return ReplyTooLarge(
            f"Microsoft Graph refused the reply of {size} bytes: {error}", size=size, limit=None
        )
    return error
