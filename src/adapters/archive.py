"""The S3 archive: raw inbound mail, export files and the quarantine, all encrypted at rest.

Every failure here is transient on purpose: a message whose raw bytes are not safely archived is
never deleted from the mailbox (DESIGN §6), so it is tried again at the next poll.
"""

import io
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError

from domain.errors import TransientError

ENCRYPTION = {"ServerSideEncryption": "AES256"}


class S3Archive:
    """Implements ``service.ports.Archive`` on the archive bucket, with an injected ``s3`` client."""

    def __init__(self, bucket: str, client: Any) -> None:
        self._bucket = bucket
        self._client = client

    def store_inbound(self, channel_id: str, digest: str, raw: BinaryIO, received: datetime) -> str:
        key = f"inbound/{_day(channel_id, received)}/{digest}.eml"
        self._upload(key, raw, "message/rfc822")
        return key

    def store_export(self, channel_id: str, digest: str, name: str, data: bytes, received: datetime) -> str:
        key = f"exports/{_day(channel_id, received)}/{digest}/{name}"
        self._put(key, data, "text/csv")
        return key

    def quarantine(
        self, channel_id: str, digest: str, raw: BinaryIO, reason: Mapping[str, object], received: datetime
    ) -> str:
        key = f"quarantine/{_day(channel_id, received)}/{digest}"
        self._upload(f"{key}.eml", raw, "message/rfc822")
        self._put(f"{key}.json", json.dumps(reason, indent=2, default=str).encode(), "application/json")
        return f"{key}.eml"

    def store_reply(self, channel_id: str, digest: str, data: bytes, received: datetime) -> str:
        key = f"replies/{_day(channel_id, received)}/{digest}.eml"
        self._put(key, data, "message/rfc822")
        return key

    def load(self, key: str) -> bytes:
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=key)
            return bytes(answer["Body"].read())
        except (ClientError, BotoCoreError) as error:
            raise TransientError(f"archive s3://{self._bucket}/{key} not readable: {error}") from error

    def _upload(self, key: str, body: BinaryIO, content_type: str) -> None:
        """Stream ``body`` (multipart when large); the caller keeps it open and positioned at 0."""
        body.seek(0)
        try:
            self._client.upload_fileobj(
                _KeptOpen(body), self._bucket, key, ExtraArgs={"ContentType": content_type, **ENCRYPTION}
            )
        except (ClientError, BotoCoreError) as error:
            raise TransientError(f"archive s3://{self._bucket}/{key} not written: {error}") from error
        finally:
            body.seek(0)

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self._client.put_object(
                Bucket=self._bucket, Key=key, Body=data, ContentType=content_type, **ENCRYPTION
            )
        except (ClientError, BotoCoreError) as error:
            raise TransientError(f"archive s3://{self._bucket}/{key} not written: {error}") from error


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


def _day(channel_id: str, received: datetime) -> str:
    return f"{channel_id}/{received:%Y/%m/%d}"
