"""The S3 archive: raw inbound mail, the replies (with their export files) and the quarantine, all
encrypted at rest.

A message whose raw bytes are not safely archived is never deleted from the mailbox (DESIGN §6).
A write that fails for throttling or the network is transient (the message is tried again at the
next poll); one the bucket refuses (access denied, no such bucket) is the deployment's failure
(``aws_errors.classify``): the poll stops, naming the stack, and no message is charged an attempt.
"""

import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code, s3_missing
from domain.archive_keys import (
    ArchivedMessage,
    ReplyKey,
    area_prefix,
    inbound_key,
    parse_archive_key,
    parse_reply_key,
    quarantine_key,
    reason_key,
    reply_key,
)
from domain.errors import TransientError
from domain.ledger import StoredReply
from domain.outcomes import Outcome

ENCRYPTION = {"ServerSideEncryption": "AES256"}
SINGLE_PUT_BYTES = 8 * 1024 * 1024
PART_BYTES = 8 * 1024 * 1024
PARTS_AT_ONCE = 2


@dataclass(frozen=True)
class ArchivedReply:
    """A stored reply as the bucket lists it."""

    key: ReplyKey
    size: int
    stored: datetime


@dataclass(frozen=True)
class ArchivedRaw:
    """A raw message (``inbound/`` or ``quarantine/``) as the bucket lists it."""

    message: ArchivedMessage
    size: int
    stored: datetime


NO_CONTINUE_HOOK = "lettershop-no-100-continue-for-small-bodies"
SMALL_BODY_BYTES = 1024 * 1024


def _no_continue_for_small_bodies(params: dict[str, Any], **_kwargs: Any) -> None:
    """botocore asks S3 for ``100 Continue`` before the body of every ``PutObject`` (``Expect:
    100-continue``): a round trip, to learn early that a large upload would be refused. For a body
    of at most ``SMALL_BODY_BYTES`` (a reply, a small raw message) the body goes with the headers:
    one round trip per object instead of two (issue 21)."""
    from botocore.utils import determine_content_length  # noqa: PLC0415  # botocore: with the client

    headers = params.get("headers", {})
    if "Expect" not in headers:
        return
    size = determine_content_length(params.get("body"))
    if size is not None and size <= SMALL_BODY_BYTES:
        del headers["Expect"]


class S3Archive:
    """Implements ``service.ports.Archive`` on the archive bucket, with an injected ``s3`` client."""

    def __init__(self, bucket: str, client: Any) -> None:
        self._bucket = bucket
        self._client = client
        # once per client (the warm one is shared by every poll of the instance); after botocore's
        # own handler of the event, which adds the header
        client.meta.events.register_last(
            "before-call.s3", _no_continue_for_small_bodies, unique_id=NO_CONTINUE_HOOK
        )

    def store_inbound(self, channel_id: str, digest: str, raw: BinaryIO, received: datetime) -> str:
        key = inbound_key(channel_id, digest, received)
        self._upload(key, raw, "message/rfc822")
        return key

    def quarantine(
        self, channel_id: str, digest: str, raw: BinaryIO, reason: Mapping[str, object], received: datetime
    ) -> str:
        key = quarantine_key(channel_id, digest, received)
        self._upload(key, raw, "message/rfc822")
        self._put(reason_key(key), json.dumps(reason, indent=2, default=str).encode(), "application/json")
        return key

    def store_reply(
        self,
        channel_id: str,
        digest: str,
        data: bytes,
        received: datetime,
        *,
        outcome: Outcome,
        recipient: str,
    ) -> str:
        """One object: the reply, which carries the export files of a processed message
        (``exports/…``; an error report goes to ``replies/…``), with its outcome and its one
        recipient in the object's metadata. Its key is its own (``archive_keys.reply_key``), and the
        write is conditional (``If-None-Match: *``): it never replaces a reply stored before."""
        key = reply_key(channel_id, digest, received, outcome)
        metadata = {"outcome": outcome.value, "recipient": quote(recipient, safe="@")}
        self._put(key, data, "message/rfc822", metadata, only_new=True)
        return key

    def stored_reply(self, channel_id: str, digest: str, received: datetime) -> StoredReply | None:
        """The reply stored for this message by a poll that started at ``received``, if any."""
        for outcome in (Outcome.PROCESSED, Outcome.FAILED):
            found = self.reply_at(reply_key(channel_id, digest, received, outcome))
            if found is not None:
                return found
        return None

    def reply_at(self, key: str) -> StoredReply | None:
        """The reply stored at ``key`` (its recipient and outcome), None when there is none."""
        try:
            head = self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as error:
            if s3_missing(error):
                return None
            raise classify(error, f"looking for a stored reply at s3://{self._bucket}/{key}") from error
        except BotoCoreError as error:
            raise classify(error, f"looking for a stored reply at s3://{self._bucket}/{key}") from error
        metadata = head.get("Metadata", {})
        return StoredReply(key, unquote(metadata["recipient"]), Outcome(metadata["outcome"]))

    def replies(self, prefix: str) -> list[ArchivedReply]:
        """Every stored reply under ``prefix`` (``domain.archive_keys``), oldest first: for the
        command line (``s3:ListBucket``); the poll never lists the archive."""
        found = []
        for obj in self._listing(prefix):
            parsed = parse_reply_key(obj["Key"])
            if parsed is not None:
                found.append(ArchivedReply(parsed, obj["Size"], obj["LastModified"]))
        return sorted(found, key=lambda reply: (reply.stored, reply.key.key))

    def raw_messages(self, channel_id: str, *, quarantined: bool) -> list[ArchivedRaw]:
        """A channel's raw messages in ``inbound/`` (or ``quarantine/``), newest first: for the
        command line (``lettershop message list``)."""
        found = []
        for obj in self._listing(area_prefix(channel_id, quarantined=quarantined)):
            parsed = parse_archive_key(obj["Key"])
            if parsed is not None:
                found.append(ArchivedRaw(parsed, obj["Size"], obj["LastModified"]))
        return sorted(found, key=lambda raw: raw.stored, reverse=True)

    def quarantine_reason(self, quarantined: str) -> str | None:
        """Why the raw message at ``quarantined`` was quarantined (its ``.json`` record's
        ``reason``); None when there is no readable record."""
        key = reason_key(quarantined)
        try:
            body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as error:
            if s3_missing(error):
                return None
            raise classify(error, f"reading s3://{self._bucket}/{key}") from error
        except BotoCoreError as error:
            raise classify(error, f"reading s3://{self._bucket}/{key}") from error
        try:
            record = json.loads(body)
        except ValueError:
            return None
        return str(record.get("reason", "")) if isinstance(record, dict) else None

    def _listing(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under ``prefix`` (all pages), in key order."""
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix
            ):
                yield from page.get("Contents", [])
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"listing s3://{self._bucket}/{prefix}") from error

    def load(self, key: str) -> bytes:
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=key)
            return bytes(answer["Body"].read())
        except (ClientError, BotoCoreError) as error:
            raise TransientError(f"archive s3://{self._bucket}/{key} not readable: {error}") from error

    def _upload(self, key: str, body: BinaryIO, content_type: str) -> None:
        """Store ``body``: up to ``SINGLE_PUT_BYTES`` with one ``PutObject`` (no transfer threads),
        larger ones streamed in parts of ``TRANSFER.multipart_chunksize``, ``max_concurrency`` at a
        time, so the memory they take is bounded (``TRANSFER``); the caller keeps ``body`` open,
        and it is positioned at 0 again afterwards."""
        size = body.seek(0, io.SEEK_END)
        body.seek(0)
        if size <= SINGLE_PUT_BYTES:
            try:
                self._put(key, body.read(), content_type)
            finally:
                body.seek(0)
            return
        from boto3.exceptions import S3UploadFailedError  # noqa: PLC0415  # boto3: not at cold start

        try:
            self._client.upload_fileobj(
                _KeptOpen(body),
                self._bucket,
                key,
                ExtraArgs={"ContentType": content_type, **ENCRYPTION},
                Config=_transfer_config(),
            )
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"archive s3://{self._bucket}/{key} not written") from error
        except S3UploadFailedError as error:  # the transfer manager's own, around a part that failed
            raise TransientError(f"archive s3://{self._bucket}/{key} not written: {error}") from error
        finally:
            body.seek(0)

    def _put(
        self,
        key: str,
        data: bytes,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        *,
        only_new: bool = False,
    ) -> None:
        """``only_new``: written only where no object is (``If-None-Match: *``); one that is there is
        kept, and this write fails as transient (the next poll claims the message at another time,
        so its reply gets another key)."""
        condition = {"IfNoneMatch": "*"} if only_new else {}
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
                Metadata=dict(metadata or {}),
                **condition,
                **ENCRYPTION,
            )
        except ClientError as error:
            if error_code(error) in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise TransientError(
                    f"archive s3://{self._bucket}/{key} not written: a reply is stored there already "
                    "(kept, never replaced)"
                ) from error
            raise classify(error, f"archive s3://{self._bucket}/{key} not written") from error
        except BotoCoreError as error:
            raise classify(error, f"archive s3://{self._bucket}/{key} not written") from error


class _KeptOpen(io.RawIOBase):
    """A read-only view of a file that S3's transfer manager may close without closing the file."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()


@cache
def _transfer_config() -> Any:
    """Parts of 8 MB, two at a time: a large raw message takes about 16 MB of buffers while it is
    stored (boto3's default, ten at a time, would take 80 MB of the function's 512)."""
    from boto3.s3.transfer import TransferConfig  # noqa: PLC0415  # only large messages need it

    return TransferConfig(
        multipart_threshold=SINGLE_PUT_BYTES,
        multipart_chunksize=PART_BYTES,
        max_concurrency=PARTS_AT_ONCE,
        max_io_queue=PARTS_AT_ONCE,
    )
