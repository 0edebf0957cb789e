"""moto in server mode: DynamoDB, S3, Secrets Manager, SES and Scheduler over real HTTP.

The handler reaches it through boto3's own ``AWS_ENDPOINT_URL`` (DESIGN §8), exactly as it would
reach AWS; nothing in the code under test knows it is talking to moto.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from devstack.server import LocalServer
from devstack.tls import HOST, die_with_parent, free_port

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

# Never send requests for 127.0.0.1 through an HTTP proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MotoError(RuntimeError):
    """moto_server did not come up; the message carries its output."""


_live: set[MotoServer] = set()  # strong refs: a forgotten server is still stopped at exit


@atexit.register
def _stop_leftovers() -> None:
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop()


class MotoServer(LocalServer):
    """``moto_server -H 127.0.0.1 -p <free port>`` from this virtualenv."""

    host = HOST

    def __init__(self, log_dir: str | os.PathLike[str] | None = None) -> None:
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._own_log_dir = False
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    # -------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("moto server already started")
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="moto-"))
            self._own_log_dir = True
        self.log_path = self._log_dir / "moto_server.log"
        _live.add(self)
        executable = Path(sys.executable).parent / "moto_server"
        last_error: MotoError | None = None
        for _attempt in range(3):  # the free port may be taken before moto binds it
            self.port = free_port()
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    [*die_with_parent(), str(executable), "-H", HOST, "-p", str(self.port)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            try:
                self._wait_ready()
                return
            except MotoError as err:
                last_error = err
                self._kill()
                if "Address already in use" not in str(err):
                    break
        assert last_error is not None
        raise last_error

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise MotoError(f"moto_server exited with status {self._proc.returncode}\n{self.log_text()}")
            try:
                self._request("GET", "/moto-api/data.json", timeout=1)
                return
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
        raise MotoError(f"moto_server did not answer within {START_TIMEOUT:.0f} s\n{self.log_text()}")

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """Stop the server; idempotent."""
        try:
            self._kill()
        finally:
            _live.discard(self)
            if self._own_log_dir and self._log_dir is not None:
                with contextlib.suppress(OSError):
                    for path in self._log_dir.iterdir():
                        path.unlink()
                    self._log_dir.rmdir()
                self._log_dir = None
                self._own_log_dir = False

    def log_text(self) -> str:
        if self.log_path is None:
            return ""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # ---------------------------------------------------------------- moto-api

    def _request(self, method: str, path: str, timeout: float = 10) -> bytes:
        # Always http://127.0.0.1:<port>/moto-api/..., never a caller-supplied URL.
        url = self.endpoint_url + path
        data = b"" if method == "POST" else None
        request = urllib.request.Request(url, method=method, data=data)  # noqa: S310
        with _opener.open(request, timeout=timeout) as response:
            return bytes(response.read())

    def reset(self) -> None:
        """Forget every resource in every service (``POST /moto-api/reset``)."""
        self._request("POST", "/moto-api/reset")

    def data(self) -> dict[str, Any]:
        """moto's model dump (``GET /moto-api/data.json``): ``{service: {Model: [attrs...]}}``."""
        result: dict[str, Any] = json.loads(self._request("GET", "/moto-api/data.json"))
        return result

    def ses_messages(self) -> list[dict[str, Any]]:
        """Every message sent through SES/SESv2 since the last reset.

        Raw sends (``ses.RawMessage``) come as ``{"id", "source", "destinations", "raw_data",
        "raw"}`` with ``raw`` the message bytes, followed by simple sends (``ses.Message``) as
        ``{"id", "source", "destinations", "subject", "body"}``; each kind in send order. moto
        adds the To/Cc addresses of a raw message to ``destinations`` again, so a recipient may be
        listed twice.
        """
        ses = self.data().get("ses", {})
        messages: list[dict[str, Any]] = []
        for item in ses.get("RawMessage", []):
            entry = dict(item)
            entry["raw"] = str(item.get("raw_data", "")).encode("utf-8")
            messages.append(entry)
        messages.extend(dict(item) for item in ses.get("Message", []))
        return messages
