"""Scripts in the S3 scripts bucket (DESIGN §4), cached on local disk by ETag.

A warm Lambda keeps ``/tmp`` and its memory between invocations. The first use of a script downloads
it; every later use is one conditional ``GetObject`` (``If-None-Match: <cached ETag>``) that S3 answers
with ``304 Not Modified`` and no body, unless the script was changed, when it answers with the new one.

Which ETag and SHA-256 each cached file has is remembered in memory, not on disk: scripts run as
the same user and could write into the cache folder, so a file that no longer matches its recorded
hash is ignored and downloaded again.
"""

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from adapters.aws_errors import classify, error_code, s3_missing
from domain.errors import ScriptFailed
from domain.script_name import SCRIPT_NAME_RULE, is_script_name
from service.telemetry import logger

MAX_SCRIPT_BYTES = 1024 * 1024
ENCRYPTION = {"ServerSideEncryption": "AES256"}
_NOT_MODIFIED = frozenset({"304", "NotModified"})


def script_key(name: str, *, use_standard_script: bool, partner_id: str) -> str:
    """``standard/<name>`` or ``partners/<partner_id>/<name>``; names that would leave the prefix fail."""
    if not is_script_name(name):
        raise ScriptFailed(f"'{name}' is not a script name ({SCRIPT_NAME_RULE})")
    if use_standard_script:
        return f"standard/{name}"
    if not partner_id or "/" in partner_id or partner_id in {".", ".."}:
        raise ScriptFailed(f"partner id '{partner_id}' cannot name a folder of partner scripts")
    return f"partners/{partner_id}/{name}"


def describe(key: str) -> str:
    """A key in the operator's words: "the standard script x.py", "script x.py of partner acme"."""
    parts = key.split("/")
    if parts[0] == "standard":
        return f"the standard script '{parts[-1]}'"
    return f"the script '{parts[-1]}' of partner '{parts[1]}'"


@dataclass(frozen=True)
class StoredScript:
    key: str
    etag: str
    body: bytes
    source: Literal["download", "cache"]


@dataclass(frozen=True)
class _Entry:
    etag: str
    sha256: str
    path: Path


class ScriptCache:
    """Script bodies on disk, one file per S3 object and ETag; the index lives in this process.

    The folder is made on first use with ``mkdtemp`` (private, and unique to this process, so two
    processes on one machine - tests, the demo - never share or clean up each other's cache).
    """

    def __init__(self, root: Path | None = None) -> None:
        self._root = root
        self._directory: Path | None = None
        self._index: dict[tuple[str, str], _Entry] = {}

    @property
    def directory(self) -> Path | None:
        """The cache folder, once something was cached."""
        return self._directory

    def get(self, bucket: str, key: str) -> tuple[str, bytes] | None:
        """``(etag, body)`` of the cached copy, when there is one and it is unchanged on disk."""
        entry = self._index.get((bucket, key))
        if entry is None:
            return None
        try:
            body = entry.path.read_bytes()
        except OSError:
            body = None
        if body is None or hashlib.sha256(body).hexdigest() != entry.sha256:
            logger.warning(
                "cached script changed or vanished on disk; downloading it again",
                extra={"bucket": bucket, "key": key, "cache_file": str(entry.path)},
            )
            self._forget(bucket, key)
            return None
        return entry.etag, body

    def put(self, bucket: str, key: str, etag: str, body: bytes) -> None:
        self._forget(bucket, key)
        if self._directory is None or not self._directory.is_dir():
            self._directory = Path(tempfile.mkdtemp(prefix="lettershop-scripts-", dir=self._root))
        name = hashlib.sha256(f"{bucket}/{key}".encode()).hexdigest()[:32]
        version = hashlib.sha256(etag.encode()).hexdigest()[:16]
        path = self._directory / f"{name}-{version}.py"
        partial = self._directory / f"{name}-{version}.part"
        partial.write_bytes(body)
        partial.replace(path)
        self._index[(bucket, key)] = _Entry(etag, hashlib.sha256(body).hexdigest(), path)

    def clear(self) -> None:
        """Forget everything and remove the folder (a cold start, for tests)."""
        self._index.clear()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def _forget(self, bucket: str, key: str) -> None:
        entry = self._index.pop((bucket, key), None)
        if entry is not None:
            entry.path.unlink(missing_ok=True)


class S3ScriptStore:
    """Fetches scripts from the scripts bucket through a :class:`ScriptCache` (the warm state's)."""

    def __init__(self, bucket: str, client: Any, cache: ScriptCache) -> None:
        self.bucket = bucket
        self._client = client
        self._cache = cache

    def fetch(self, key: str) -> StoredScript:
        """The script at *key*; ``ScriptFailed`` naming it when it does not exist."""
        cached = self._cache.get(self.bucket, key)
        request: dict[str, str] = {"Bucket": self.bucket, "Key": key}
        if cached is not None:
            request["IfNoneMatch"] = cached[0]
        try:
            response = self._client.get_object(**request)
            if int(response.get("ContentLength") or 0) > MAX_SCRIPT_BYTES:
                response["Body"].close()
                raise ScriptFailed(f"{describe(key)} is larger than {MAX_SCRIPT_BYTES // 1024} KiB")
            body: bytes = response["Body"].read(MAX_SCRIPT_BYTES + 1)
        except ClientError as error:
            code = error_code(error)
            if cached is not None and code in _NOT_MODIFIED:
                return StoredScript(key, cached[0], cached[1], "cache")
            if s3_missing(error):
                logger.error("configured script does not exist", extra={"bucket": self.bucket, "key": key})
                raise ScriptFailed(f"{describe(key)} does not exist") from error
            raise classify(error, f"script s3://{self.bucket}/{key}") from error
        except BotoCoreError as error:
            raise classify(error, f"script s3://{self.bucket}/{key}") from error
        if len(body) > MAX_SCRIPT_BYTES:
            raise ScriptFailed(f"{describe(key)} is larger than {MAX_SCRIPT_BYTES // 1024} KiB")
        etag = str(response.get("ETag") or "")
        if etag:
            self._cache.put(self.bucket, key, etag, body)
        return StoredScript(key, etag, body, "download")

    def upload(self, key: str, body: bytes) -> str:
        """Store a script at *key* (encrypted at rest), for ``lettershop script put``; its ETag."""
        try:
            answer = self._client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="text/x-python", **ENCRYPTION
            )
        except (ClientError, BotoCoreError) as error:
            raise classify(error, f"uploading {describe(key)} to s3://{self.bucket}/{key}") from error
        return str(answer.get("ETag", "?"))
